"""Incremental, persistent Earley recogniser over bytes, for any context-free grammar.

The grammar's terminals are byte DFAs; the parser is scannerless: at every byte position where a
terminal may start, each expected terminal begins its own DFA run ("lexeme"), and whenever a run
reaches an accepting DFA state the terminal is scanned into a new Earley set at that byte. So a
lexeme is never cut greedily; every split of the bytes into terminals is tried, and the language
recognised is exactly the grammar's (see `gad.grammar.ir`).

Persistence is what makes `fork` and `rollback` free: Earley sets are immutable once built and
items point at their origin *set object* (not an index), so a `ParserState` is just a tuple of live
lexemes plus the set at its position; advancing a byte builds new objects and never touches old
ones. Ambiguous, left-recursive and empty rules are handled by the standard agenda closure with
Aycock & Horspool's nullable fix (an item predicting a nullable nonterminal also steps over it);
nothing recurses in Python, so nesting depth is unbounded.

Right recursion is linear thanks to Leo's optimisation (Leo 1991, "A general context-free parsing
algorithm running in linear time on every LR(k) grammar"): when the only item of an origin set
waiting for nonterminal B is ``A → α • B`` (B last: a *deterministic reduction path*), completing
B adds only the topmost item of that path instead of every item along it. For ``s: "a" s | "a"``
each set then holds a constant number of items, where plain Earley holds one per byte read.

`%ignore` terminals are transparent: an ignore lexeme started at set S that completes yields S's
items again at the new position. Live lexemes are kept without duplicates, so a run of ignored
bytes (whitespace) leaves the state no larger than it was.
"""

from __future__ import annotations

import weakref

from gad.grammar.ir import Grammar

# An Earley item is a tuple (rule index, dot position, origin EarleySet).
Item = tuple


class EarleyTables:
    """Integer tables for one grammar: rules, nullable set, terminal DFAs (built once, shared)."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        used_terminals = sorted({s for r in grammar.rules for s in r.rhs if s in grammar.terminals})
        nonterminals = sorted(grammar.nonterminals)
        self.nonterminal_names = ["$accept"] + nonterminals
        nt_index = {name: i for i, name in enumerate(self.nonterminal_names)}
        # Terminal ids: grammar terminals first, then one id per %ignore terminal (an ignore
        # terminal that also appears in rules gets two ids: its two roles behave differently).
        self.terminal_names = used_terminals + [name for name in grammar.ignore]
        self.num_scan_terminals = len(used_terminals)
        t_index = {name: i for i, name in enumerate(used_terminals)}
        self.ignore_ids = tuple(range(len(used_terminals), len(self.terminal_names)))
        self.dfas = [grammar.terminals[name].dfa for name in self.terminal_names]
        self.dfa_tables = [dfa.table for dfa in self.dfas]
        self.dfa_initial = [dfa.initial for dfa in self.dfas]
        self.dfa_accepting = [[q in dfa.accepting for q in range(len(dfa.table))] for dfa in self.dfas]
        # A state with no live successor cannot extend the lexeme: drop it after scanning.
        self.dfa_continues = [[max(row) >= 0 for row in dfa.table] for dfa in self.dfas]

        # Rule 0 is the augmented start rule $accept -> start.
        self.rule_lhs = [0]
        self.rule_rhs: list[tuple[int, ...]] = [(nt_index[grammar.start],)]
        for rule in grammar.rules:
            self.rule_lhs.append(nt_index[rule.lhs])
            # Nonterminal n is encoded as n >= 0, terminal t as ~t < 0.
            self.rule_rhs.append(
                tuple(nt_index[s] if s in nt_index else ~t_index[s] for s in rule.rhs)
            )
        self.rules_of: list[list[int]] = [[] for _ in self.nonterminal_names]
        for index, lhs in enumerate(self.rule_lhs):
            self.rules_of[lhs].append(index)
        # next_symbol[r][d]: the symbol after the dot, or None for a completed item.
        self.next_symbol = [list(rhs) + [None] for rhs in self.rule_rhs]
        self.rule_length = [len(rhs) for rhs in self.rule_rhs]
        self.nullable = self._nullable()

    def live_bytes(self, terminal: int, dfa_state: int) -> frozenset[int]:
        """The bytes that keep ``terminal``'s run alive from ``dfa_state``."""
        return frozenset(b for b, nxt in enumerate(self.dfa_tables[terminal][dfa_state]) if nxt >= 0)

    def _nullable(self) -> frozenset[int]:
        """Symbols that derive the empty string: nonterminals (ids >= 0) and terminals whose
        regex matches the empty string (codes ~t < 0, zero-width terminals)."""
        nullable: set[int] = {
            ~t for t in range(self.num_scan_terminals) if self.dfa_accepting[t][self.dfa_initial[t]]
        }
        changed = True
        while changed:
            changed = False
            for lhs, rhs in zip(self.rule_lhs, self.rule_rhs):
                if lhs not in nullable and all(s in nullable for s in rhs):
                    nullable.add(lhs)
                    changed = True
        return frozenset(nullable)


class EarleySet:
    """The closed set of Earley items at one terminal boundary. Immutable once built.

    ``waiting[n]``: items whose dot is before nonterminal n (completion advances them);
    ``scan[t]``: items whose dot is before terminal t; ``starts``: the lexemes that begin here
    (every expected terminal and every %ignore terminal, in its DFA's initial state).
    ``leo`` memoises, per nonterminal, the topmost item of its deterministic reduction path
    (False: none); ``memo`` is a slot for the mask code's memo (`gad.masks`), never read here.
    """

    __slots__ = ("items", "waiting", "scan", "accepting", "starts", "expected", "goto", "leo", "memo", "__weakref__")

    def __init__(self, tables: EarleyTables, kernel: list[Item], copied: list[EarleySet], root: EarleySet | None) -> None:
        items: set[Item] = set()
        waiting: dict[int, list[Item]] = {}
        scan: dict[int, list[Item]] = {}
        agenda: list[Item] = []
        for item in kernel:
            if item not in items:
                items.add(item)
                agenda.append(item)
        for other in copied:
            for item in other.items:
                if item not in items:
                    items.add(item)
                    agenda.append(item)
        next_symbol, rule_lhs, rules_of, nullable = (
            tables.next_symbol, tables.rule_lhs, tables.rules_of, tables.nullable
        )
        # Items predicted here point at `self` as their origin; `self.waiting` is the dict being
        # filled, which completion of an empty rule never needs (see the nullable step below).
        self.waiting = waiting
        self.leo: dict[int, Item | bool] = {}
        while agenda:
            item = agenda.pop()
            rule, dot, origin = item
            symbol = next_symbol[rule][dot]
            if symbol is None:  # complete: advance the items in the origin set waiting for lhs
                lhs = rule_lhs[rule]
                top = _leo_item(tables, origin, lhs) if origin is not self else False
                if top:
                    if top not in items:
                        items.add(top)
                        agenda.append(top)
                    continue
                for p_rule, p_dot, p_origin in origin.waiting.get(lhs, ()):
                    new = (p_rule, p_dot + 1, p_origin)
                    if new not in items:
                        items.add(new)
                        agenda.append(new)
            elif symbol >= 0:  # predict
                if symbol not in waiting:
                    waiting[symbol] = []
                    for r in rules_of[symbol]:
                        new = (r, 0, self)
                        if new not in items:
                            items.add(new)
                            agenda.append(new)
                waiting[symbol].append(item)
                if symbol in nullable:  # Aycock & Horspool: step over a nullable nonterminal now
                    new = (rule, dot + 1, origin)
                    if new not in items:
                        items.add(new)
                        agenda.append(new)
            else:
                scan.setdefault(~symbol, []).append(item)
                if symbol in nullable:  # a zero-width terminal may also match nothing here
                    new = (rule, dot + 1, origin)
                    if new not in items:
                        items.add(new)
                        agenda.append(new)
        self.items = items
        self.scan = scan
        self.accepting = (0, 1, root or self) in items
        lexeme_terminals = list(scan) + list(tables.ignore_ids)
        initial = tables.dfa_initial
        self.starts = tuple((t, self, initial[t]) for t in lexeme_terminals)
        self.expected = frozenset(lexeme_terminals)
        # Sets reached by scanning terminals from here (created on first use); weak, so the
        # states a mask explores and drops do not stay alive through the root set.
        self.goto: weakref.WeakValueDictionary | None = None
        self.memo: object = None


def _leo_item(tables: EarleyTables, origin: EarleySet, lhs: int) -> Item | bool:
    """The topmost item of ``lhs``'s deterministic reduction path from ``origin``, or False.

    The path exists when ``origin`` holds exactly one item waiting for ``lhs`` and that item
    ends with it (``A → α • lhs``): completing ``lhs`` completes ``A`` too, and so on up. The
    walk is iterative and memoised on every set it passes (sets are closed, so it never
    changes), which keeps right recursion linear however deep it goes.
    """
    path: list[tuple[EarleySet, int]] = []
    top: Item | bool = False
    while True:
        known = origin.leo.get(lhs)
        if known is not None:
            top = known
            break
        waiting = origin.waiting.get(lhs, ())
        if len(waiting) != 1:
            origin.leo[lhs] = False
            top = False
            break
        p_rule, p_dot, p_origin = waiting[0]
        if p_dot + 1 != tables.rule_length[p_rule]:
            origin.leo[lhs] = False
            top = False
            break
        path.append((origin, lhs))
        top = (p_rule, p_dot + 1, p_origin)
        if p_origin is origin:  # an item predicted in the set itself: stop here
            break
        origin, lhs = p_origin, tables.rule_lhs[p_rule]
    # Every set on the path shares the path's top; a path ending where the next set has none
    # ends at the last item walked.
    result: Item | bool = top
    for step_origin, step_lhs in reversed(path):
        if not result:
            p_rule, p_dot, p_origin = step_origin.waiting[step_lhs][0]
            result = (p_rule, p_dot + 1, p_origin)
        step_origin.leo[step_lhs] = result
    return result


class ParserState:
    """An immutable parser configuration at one byte position.

    ``lexemes`` holds the live terminal runs as (terminal id, origin set, DFA state), without
    duplicates; ``earley_set`` is the Earley set at this position when a terminal boundary lies
    here, else None.
    """

    __slots__ = ("lexemes", "earley_set")

    def __init__(self, lexemes: tuple, earley_set: EarleySet | None) -> None:
        self.lexemes = lexemes
        self.earley_set = earley_set


class EarleyParser:
    """Runs `EarleyTables` over bytes: ``advance(state, byte) -> ParserState | None``."""

    def __init__(self, tables: EarleyTables) -> None:
        self.tables = tables
        # The root set's kernel is the augmented start item (rule 0, dot 0), whose origin is
        # the root itself: allocate the object first so the item can point at it.
        self.root = EarleySet.__new__(EarleySet)
        EarleySet.__init__(self.root, tables, [(0, 0, self.root)], [], None)
        self.initial = ParserState(self.root.starts, self.root)

    def is_accepting(self, state: ParserState) -> bool:
        """True when the bytes so far form a complete sentence."""
        return state.earley_set is not None and state.earley_set.accepting

    def advance(self, state: ParserState, byte: int) -> ParserState | None:
        """The state after one more byte, or None when no sentence has the bytes so far as prefix."""
        tables = self.tables
        dfa_tables, dfa_accepting, dfa_continues = tables.dfa_tables, tables.dfa_accepting, tables.dfa_continues
        kept = []
        completed = []
        for lexeme in state.lexemes:
            terminal, origin, dfa_state = lexeme
            nxt = dfa_tables[terminal][dfa_state][byte]
            if nxt < 0:
                continue
            if dfa_continues[terminal][nxt]:
                kept.append((terminal, origin, nxt))
            if dfa_accepting[terminal][nxt]:
                completed.append((terminal, origin))
        if not completed:
            return ParserState(_unique(kept), None) if kept else None
        new_set = self._complete(completed)
        if not kept and not new_set.starts and not new_set.accepting:
            return None
        return ParserState(_unique(kept + list(new_set.starts)), new_set)

    def scan_terminal(self, terminal: int, origin: EarleySet) -> EarleySet:
        """The Earley set right after ``terminal``, started at ``origin``, ends."""
        return self._complete([(terminal, origin)])

    def live_bytes(self, state: ParserState) -> set[int]:
        """The bytes that can come next (each keeps some lexeme alive)."""
        result: set[int] = set()
        for terminal, _, dfa_state in state.lexemes:
            result |= self.tables.live_bytes(terminal, dfa_state)
        return result

    def _complete(self, completed: list[tuple[int, EarleySet]]) -> EarleySet:
        """The Earley set reached when the terminals in ``completed`` end at the same byte."""
        first_origin = completed[0][1]
        if all(origin is first_origin for _, origin in completed):
            key = tuple(sorted({terminal for terminal, _ in completed}))
            cached = first_origin.goto.get(key) if first_origin.goto is not None else None
            if cached is not None:
                return cached
        else:
            key = None
        ignore_ids = self.tables.ignore_ids
        kernel: list[Item] = []
        copied: list[EarleySet] = []
        for terminal, origin in completed:
            if terminal in ignore_ids:
                if origin not in copied:
                    copied.append(origin)
            else:
                kernel.extend((r, d + 1, o) for r, d, o in origin.scan[terminal])
        if not kernel and len(copied) == 1:
            result = copied[0]  # only whitespace was read: the configuration is unchanged
        else:
            result = EarleySet(self.tables, kernel, copied, self.root)
        if key is not None:
            if first_origin.goto is None:
                first_origin.goto = weakref.WeakValueDictionary()
            first_origin.goto[key] = result
        return result

    def advance_bytes(self, state: ParserState, data: bytes) -> ParserState | None:
        """Advance over ``data``; None as soon as a byte is rejected."""
        for byte in data:
            state = self.advance(state, byte)
            if state is None:
                return None
        return state


def _unique(lexemes: list) -> tuple:
    """``lexemes`` without repeats, first occurrences in order: two runs of one terminal from
    one origin in one DFA state have the same future, so one of them is enough."""
    return tuple(dict.fromkeys(lexemes)) if len(lexemes) > 1 else tuple(lexemes)
