"""GBNF (llama.cpp's grammar format) → `Grammar`.

The syntax is llama.cpp's (``common/grammar-parser``): ``name ::= alternatives``, one rule per
line (a rule continues on the next line after ``::=``, after ``|`` and inside parentheses);
``|``; grouping ``( )``; ``*`` ``+`` ``?`` ``{m}`` ``{m,}`` ``{m,n}`` on the item before them;
string literals ``"..."``; character classes ``[...]`` with ranges and ``^`` negation; ``.``
(any character); the escapes ``\\xHH \\uHHHH \\UHHHHHHHH \\t \\n \\r \\\\ \\" \\[ \\] \\-``
(``\\-`` in classes); ``#`` comments; ``root`` is the start rule. Rule names are letters, digits,
``-`` and (as transformers-cfg allows) ``_``.

The meaning is llama.cpp's: a sentence is a string of characters (code points, UTF-8 encoded)
that ``root`` derives, with nothing skipped between symbols (GBNF has no ``%ignore`` and no
lexer). Literals and character classes become terminals (consecutive literals in a sequence
become one), repetitions become rules (``x*``: ``R ::= ε | R x``; ``x{m,n}``: m copies, then
n - m nested optional ones).

Differences from llama.cpp, all refusals with a located `GrammarError`: a rule defined twice
(llama.cpp silently keeps the last definition), and a rule used but never defined, unless
``undefined="empty"``: then every alternative that needs it is dropped, as the ASAp reference
code does for the depth-bounded constituency grammars.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gad.errors import GrammarError, UndefinedRuleError
from gad.grammar.fusion import fuse_regular_rules
from gad.grammar.ir import Grammar, Rule, SourceText, Terminal

__all__ = ["load_gbnf"]

MAX_NESTING = 200
"""Deepest parenthesis nesting accepted (the parser recurses once per level)."""

MAX_SYMBOLS = 1_000_000
"""Most grammar symbols the expansion of counted repetitions may make."""

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


@dataclass
class _Item:
    """One element of a sequence: ``kind`` is "lit" (``value``: str), "class" (``value``:
    (negated, ((lo, hi), ...)) in code points), "any", "ref" (``value``: rule name) or "group"
    (``value``: list of alternatives, each a list of items); repeated ``lo..hi`` times (hi None:
    unbounded). ``pos`` is its offset in the text."""

    kind: str
    value: object
    pos: int
    lo: int = 1
    hi: int | None = 1


class _Parser:
    def __init__(self, text: str, src: SourceText) -> None:
        self.text = text
        self.src = src
        self.rules: dict[str, list[list[_Item]]] = {}
        self.where: dict[str, int] = {}

    # -- errors ---------------------------------------------------------------------------------

    def error(self, message: str, pos: int, cls: type[GrammarError] = GrammarError) -> GrammarError:
        line, column = self.src.position(pos)
        return cls(message, source=self.src.name, line=line, column=column, text=self.text)

    # -- lexical --------------------------------------------------------------------------------

    def space(self, pos: int, newlines: bool) -> int:
        text, n = self.text, len(self.text)
        while pos < n:
            c = text[pos]
            if c in " \t" or (newlines and c in "\r\n"):
                pos += 1
            elif c == "#":
                while pos < n and text[pos] not in "\r\n":
                    pos += 1
            else:
                break
        return pos

    def name(self, pos: int) -> int:
        end = pos
        while end < len(self.text) and (self.text[end].isascii() and (self.text[end].isalnum() or self.text[end] in "-_")):
            end += 1
        return end

    def char(self, pos: int, closing: str) -> tuple[int, int]:
        """One (possibly escaped) character at ``pos``: its code point and the position after."""
        text = self.text
        if pos >= len(text):
            raise self.error(f"unexpected end of input: expecting {closing!r}", pos)
        if text[pos] != "\\":
            return ord(text[pos]), pos + 1
        if pos + 1 >= len(text):
            raise self.error("unexpected end of input after '\\'", pos)
        kind = text[pos + 1]
        if kind in _HEX_ESCAPES:
            digits = text[pos + 2 : pos + 2 + _HEX_ESCAPES[kind]]
            if len(digits) != _HEX_ESCAPES[kind] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.error(f"escape \\{kind} needs {_HEX_ESCAPES[kind]} hex digits", pos)
            value = int(digits, 16)
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise self.error(f"escape \\{kind}{digits} is not a Unicode scalar value", pos)
            return value, pos + 2 + len(digits)
        if kind in _ESCAPES:
            return ord(_ESCAPES[kind]), pos + 2
        raise self.error(f"unknown escape \\{kind}", pos)

    # -- grammar --------------------------------------------------------------------------------

    def parse(self) -> None:
        pos = self.space(0, True)
        while pos < len(self.text):
            pos = self.rule(pos)

    def rule(self, pos: int) -> int:
        end = self.name(pos)
        if end == pos:
            raise self.error(f"expecting a rule name, found {self.text[pos]!r}", pos)
        name = self.text[pos:end]
        after = self.space(end, False)
        if not self.text.startswith("::=", after):
            raise self.error(f"expecting '::=' after the rule name {name!r}", after)
        if name in self.rules:
            first = self.error("", self.where[name])
            raise self.error(
                f"rule {name!r} is defined twice (first at line {first.line}); llama.cpp would silently"
                " keep the last definition",
                pos,
            )
        self.where[name] = pos
        alternatives, pos = self.alternatives(self.space(after + 3, True), 0)
        self.rules[name] = alternatives
        if pos < len(self.text) and self.text[pos] not in "\r\n":
            raise self.error(f"expecting the end of the rule {name!r}, found {self.text[pos]!r}", pos)
        return self.space(pos, True)

    def alternatives(self, pos: int, depth: int) -> tuple[list[list[_Item]], int]:
        seqs = []
        seq, pos = self.sequence(pos, depth)
        seqs.append(seq)
        while pos < len(self.text) and self.text[pos] == "|":
            seq, pos = self.sequence(self.space(pos + 1, True), depth)
            seqs.append(seq)
        return seqs, pos

    def sequence(self, pos: int, depth: int) -> tuple[list[_Item], int]:
        text = self.text
        nested = depth > 0
        items: list[_Item] = []
        while pos < len(text):
            c = text[pos]
            start = pos
            if c == '"':
                chars = []
                pos += 1
                while pos < len(text) and text[pos] != '"':
                    cp, pos = self.char(pos, '"')
                    chars.append(chr(cp))
                if pos >= len(text):
                    raise self.error("unterminated string literal", start)
                items.append(_Item("lit", "".join(chars), start))
                pos = self.space(pos + 1, nested)
            elif c == "[":
                pos += 1
                negated = pos < len(text) and text[pos] == "^"
                pos += negated
                ranges = []
                while pos < len(text) and text[pos] != "]":
                    lo, pos = self.char(pos, "]")
                    hi = lo
                    if pos + 1 < len(text) and text[pos] == "-" and text[pos + 1] != "]":
                        hi, pos = self.char(pos + 1, "]")
                        if hi < lo:
                            raise self.error(f"character range {chr(lo)!r}-{chr(hi)!r} is reversed", start)
                    ranges.append((lo, hi))
                if pos >= len(text):
                    raise self.error("unterminated character class", start)
                items.append(_Item("class", (negated, tuple(ranges)), start))
                pos = self.space(pos + 1, nested)
            elif c == ".":
                items.append(_Item("any", None, start))
                pos = self.space(pos + 1, nested)
            elif c == "(":
                if depth >= MAX_NESTING:
                    raise self.error(f"parentheses nested more than {MAX_NESTING} deep", start)
                alternatives, pos = self.alternatives(self.space(pos + 1, True), depth + 1)
                if pos >= len(text) or text[pos] != ")":
                    raise self.error("expecting ')' to close this '('", start)
                items.append(_Item("group", alternatives, start))
                pos = self.space(pos + 1, nested)
            elif c in "*+?{":
                if not items:
                    raise self.error(f"{c!r} has no item before it to repeat", start)
                item = items[-1]
                if (item.lo, item.hi) != (1, 1):  # x** : wrap the repetition in a group
                    item = _Item("group", [[item]], item.pos)
                    items[-1] = item
                if c == "{":
                    item.lo, item.hi, pos = self.counts(pos)
                else:
                    item.lo, item.hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                    pos += 1
                pos = self.space(pos, nested)
            else:
                end = self.name(pos)
                if end == pos:
                    break
                items.append(_Item("ref", text[pos:end], start))
                pos = self.space(end, nested)
        return items, pos

    def counts(self, pos: int) -> tuple[int, int | None, int]:
        match = re.compile(r"\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}").match(self.text, pos)
        if match is None:
            raise self.error("expecting {m}, {m,} or {m,n}", pos)
        lo = int(match.group(1))
        hi: int | None = lo if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
        if hi is not None and hi < lo:
            raise self.error(f"repetition {{{lo},{hi}}} has its maximum below its minimum", pos)
        if lo > MAX_SYMBOLS or (hi or 0) > MAX_SYMBOLS:
            raise self.error(f"repetition count above {MAX_SYMBOLS:,}", pos)
        return lo, hi, match.end()


class _Lowering:
    """AST → BNF rules and terminals."""

    def __init__(self, parser: _Parser, undefined: str) -> None:
        self.parser = parser
        self.undefined = undefined
        self.rules: list[Rule] = []
        self.terminals: dict[str, Terminal] = {}
        self.by_regex: dict[str, str] = {}
        self.fresh = 0
        self.symbols = 0

    def new_rule(self, owner: str) -> str:
        self.fresh += 1
        return f"{owner}#{self.fresh}"

    def add(self, lhs: str, rhs: tuple[str, ...]) -> None:
        self.symbols += len(rhs) + 1
        if self.symbols > MAX_SYMBOLS:
            raise self.parser.error(f"the grammar expands to more than {MAX_SYMBOLS:,} symbols", 0)
        self.rules.append(Rule(lhs, rhs))

    def terminal(self, regex: str, pos: int) -> str:
        name = self.by_regex.get(regex)
        if name is None:
            name = self.by_regex[regex] = f"#{len(self.by_regex)}"
            try:
                self.terminals[name] = Terminal.compile(name, regex)
            except GrammarError as exc:
                raise self.parser.error(exc.message, pos, type(exc)) from None
        return name

    def lower(self) -> None:
        for name, alternatives in self.parser.rules.items():
            for seq in alternatives:
                rhs = self.sequence(seq, name)
                if rhs is not None:
                    self.add(name, rhs)

    def sequence(self, seq: list[_Item], owner: str) -> tuple[str, ...] | None:
        """The symbols of ``seq``; None if it needs an undefined rule (``undefined="empty"``)."""
        out: list[str] = []
        literal: list[str] = []
        literal_pos = 0
        for item in seq:
            if item.kind == "lit" and (item.lo, item.hi) == (1, 1):
                if not literal:
                    literal_pos = item.pos
                literal.append(item.value)  # type: ignore[arg-type]
                continue
            if literal:
                out.extend(self.literal("".join(literal), literal_pos))
                literal = []
            symbol = self.item(item, owner)
            if symbol is None:
                return None
            out.extend(symbol)
        if literal:
            out.extend(self.literal("".join(literal), literal_pos))
        return tuple(out)

    def literal(self, text: str, pos: int) -> list[str]:
        return [self.terminal(re.escape(text), pos)] if text else []  # "" is ε

    def item(self, item: _Item, owner: str) -> list[str] | None:
        base = self.atom(item, owner)
        if base is None:
            return None if item.lo > 0 else []
        if (item.lo, item.hi) == (1, 1) or not base:
            return base
        out = base * item.lo
        if item.hi is None:  # R ::= ε | R x
            rule = self.new_rule(owner)
            self.add(rule, ())
            self.add(rule, (rule, *base))
            return out + [rule]
        tail: list[str] = []
        for _ in range(item.hi - item.lo):  # O_k ::= ε | x O_{k-1}
            rule = self.new_rule(owner)
            self.add(rule, ())
            self.add(rule, (*base, *tail))
            tail = [rule]
        return out + tail

    def atom(self, item: _Item, owner: str) -> list[str] | None:
        if item.kind == "lit":
            return self.literal(item.value, item.pos)  # type: ignore[arg-type]
        if item.kind == "class":
            negated, ranges = item.value  # type: ignore[misc]
            body = "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}" for lo, hi in ranges)
            if not body:
                regex = "(?s:.)" if negated else "[^\\s\\S]"
            else:
                regex = f"[{'^' if negated else ''}{body}]"
            return [self.terminal(regex, item.pos)]
        if item.kind == "any":
            return [self.terminal("(?s:.)", item.pos)]
        if item.kind == "ref":
            name = item.value
            if name not in self.parser.rules:
                if self.undefined == "empty":
                    return None
                raise self.parser.error(
                    f"rule {name!r} is used but never defined (pass undefined=\"empty\" to drop the"
                    " alternatives that use it)",
                    item.pos,
                    UndefinedRuleError,
                )
            return [name]  # type: ignore[list-item]
        # group: inline a single sequence, else a rule with one alternative per sequence
        alternatives = item.value
        if len(alternatives) == 1:  # type: ignore[arg-type]
            seq = self.sequence(alternatives[0], owner)  # type: ignore[index]
            return None if seq is None else list(seq)
        rule = self.new_rule(owner)
        kept = 0
        for seq in alternatives:  # type: ignore[union-attr]
            rhs = self.sequence(seq, owner)
            if rhs is not None:
                self.add(rule, rhs)
                kept += 1
        return [rule] if kept else None


def _class_char(cp: int) -> str:
    """A code point written for a regex character class."""
    c = chr(cp)
    if c.isascii() and (c.isalnum() or c in " _"):
        return c
    return f"\\U{cp:08x}"


def load_gbnf(
    text: str, *, start: str = "root", source: str = "<grammar>", undefined: str = "error", fuse: bool = True
) -> Grammar:
    """Parse GBNF ``text`` into a validated `Grammar` rooted at ``start`` (see the module docstring).

    ``undefined``: "error" (default) refuses a rule that is used but not defined, with its
    location; "empty" treats it as a rule with no alternatives (the alternatives that need it
    are dropped). ``fuse``: turn the regular rules into single terminals
    (`gad.grammar.fusion.fuse_regular_rules`; same language, cheaper masks). Raises `GrammarError`
    (with file, line and column) for malformed text.
    """
    if not isinstance(text, str):
        raise GrammarError(f"grammar text must be a str, not {type(text).__name__}", source=source)
    if undefined not in ("error", "empty"):
        raise GrammarError(f'`undefined` has to be "error" or "empty", not {undefined!r}', source=source)
    src = SourceText(source, text)
    parser = _Parser(text, src)
    parser.parse()
    if start not in parser.rules:
        raise GrammarError(f"the start rule {start!r} is not defined", source=source)
    lowering = _Lowering(parser, undefined)
    lowering.lower()
    rules = lowering.rules
    while True:  # with undefined="empty": drop what needs a rule left without alternatives
        used = {rule.lhs for rule in rules}
        kept = [r for r in rules if all(s in used or s in lowering.terminals for s in r.rhs)]
        if len(kept) == len(rules):
            break
        rules = kept
    if start not in used:
        raise parser.error(f"the start rule {start!r} has no alternative left", parser.where[start], UndefinedRuleError)
    grammar = Grammar(rules, lowering.terminals, start=start, source=src)
    return fuse_regular_rules(grammar) if fuse else grammar
