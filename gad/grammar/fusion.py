"""Regular-rule fusion: rules whose language is regular become single terminals.

A character-level grammar (GBNF writes ``ident ::= [a-z] [a-z0-9_]*``) has a terminal per
character, so almost every multi-byte token crosses terminal boundaries and its mask needs the
parser. `fuse_regular_rules` rewrites, bottom-up, every rule that only uses terminals and rules
already fused, and recurses at most at its own ends, into one terminal (a byte DFA):

    A ::= P₁ A | … | A S₁ | … | Q₁ | …   ⇒   A = (P₁|…)* (Q₁|…) (S₁|…)*

(each step of a derivation prepends a P or appends an S, so this is exact). The terminal's regex
is composed from the regexes of its parts and compiled by `gad.grammar.regex.compile_regex`, with
its budgets; a rule whose automaton would exceed ``max_states`` stays a rule.

Only sound without ``%ignore``: ignored text may appear between two terminals, and fusing them
would remove that place. A grammar with ``%ignore`` is returned unchanged. A terminal takes part
only when its regex's full matches are its language (always, except for lark terminals whose
``re.match`` reading differs, `gad.grammar.ir.Terminal`), checked on the canonical automata.
"""

from __future__ import annotations

from gad.errors import GadError
from gad.grammar.dfa import AutomatonBudget
from gad.grammar.ir import Grammar, Rule, Terminal
from gad.grammar.regex import compile_regex

__all__ = ["fuse_regular_rules"]

MAX_REGEX_CHARS = 20_000
"""Longest composed regex tried (a rule used many times is inlined each time)."""


def fuse_regular_rules(grammar: Grammar, *, max_states: int = 2_000) -> Grammar:
    """``grammar`` with its regular rules fused into terminals (same language; see the module
    docstring). Returns ``grammar`` itself when it has ``%ignore`` terminals or nothing fuses."""
    if grammar.ignore:
        return grammar
    budget = AutomatonBudget(dfa_states=max_states, byte_states=4 * max_states, work=200_000)
    regex: dict[str, str] = {}  # symbol -> a regex whose full matches are its language
    for name, terminal in grammar.terminals.items():
        if terminal.whole_input:  # its anchors and lookarounds refer to the whole input
            continue
        if not terminal.lexer or _full_matches_are_the_language(terminal):
            regex[name] = terminal.regex
    by_lhs: dict[str, list[tuple[str, ...]]] = {}
    for rule in grammar.rules:
        by_lhs.setdefault(rule.lhs, []).append(rule.rhs)
    fused: dict[str, Terminal] = {}
    for lhs in _bottom_up(by_lhs):
        text = _rule_regex(lhs, by_lhs[lhs], regex)
        if text is None or len(text) > MAX_REGEX_CHARS:
            continue
        name = lhs if lhs != grammar.start else f"{lhs}#fused"
        try:
            dfa = compile_regex(text, name=name, budget=budget)
        except GadError:  # over budget (or a part that cannot be composed): keep the rule
            continue
        regex[lhs] = text
        fused[lhs] = Terminal(name, text, dfa)
    if not fused:
        return grammar
    terminals = dict(grammar.terminals)
    rules: list[Rule] = []
    for lhs, rhss in by_lhs.items():
        if lhs not in fused:
            rules.extend(Rule(lhs, rhs) for rhs in rhss)
    for lhs, terminal in fused.items():
        terminals[terminal.name] = terminal
    if grammar.start in fused:
        rules.append(Rule(grammar.start, (fused[grammar.start].name,)))
    used = {s for rule in rules for s in rule.rhs} | set(grammar.ignore)
    terminals = {n: t for n, t in terminals.items() if n in used}
    return Grammar(rules, terminals, start=grammar.start, source=grammar.source)


def _full_matches_are_the_language(terminal: Terminal) -> bool:
    try:
        full = compile_regex(terminal.regex)
    except GadError:
        return False
    return full.table == terminal.dfa.table and full.accepting == terminal.dfa.accepting


def _rule_regex(lhs: str, rhss: list[tuple[str, ...]], regex: dict[str, str]) -> str | None:
    """``(P…)*(Q…)(S…)*`` for the alternatives of ``lhs``, or None if it is not of that shape
    or uses a symbol without a regex."""
    prefixes, middles, suffixes = [], [], []
    for rhs in rhss:
        inner = [s for s in rhs if s == lhs]
        if not inner:
            middles.append(rhs)
        elif rhs == (lhs,):
            continue  # A ::= A adds nothing
        elif len(inner) == 1 and rhs[-1] == lhs:
            prefixes.append(rhs[:-1])
        elif len(inner) == 1 and rhs[0] == lhs:
            suffixes.append(rhs[1:])
        else:
            return None
    if not middles:
        return None

    def alternation(seqs: list[tuple[str, ...]]) -> str | None:
        parts = []
        for seq in seqs:
            if any(s not in regex for s in seq):
                return None
            parts.append("".join(f"(?:{regex[s]})" for s in seq))
        return "(?:" + "|".join(parts) + ")"

    pieces = [alternation(prefixes) if prefixes else "", alternation(middles), alternation(suffixes) if suffixes else ""]
    if any(p is None for p in pieces):
        return None
    p, q, s = pieces
    return (f"{p}*" if p else "") + q + (f"{s}*" if s else "")  # type: ignore[operator]


def _bottom_up(by_lhs: dict[str, list[tuple[str, ...]]]) -> list[str]:
    """Rules whose strongly connected component is themselves alone, dependencies first
    (iterative Tarjan; rules in larger components are recursive through others: not fused)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[str] = []
    for root in by_lhs:
        if root in index:
            continue
        work = [(root, iter([s for rhs in by_lhs[root] for s in rhs if s in by_lhs]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter([s for rhs in by_lhs[child] for s in rhs if s in by_lhs])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) == 1:
                    out.append(node)
    return out
