"""The grammar IR every front end (Lark, JSON Schema, regex) compiles to.

A `Grammar` is a plain context-free grammar in BNF whose terminals are regular languages, each held
as a byte-level DFA. Its language is the scannerless one: a sentence is any byte string obtained by
replacing every terminal of a derivation with a string of that terminal's language, with `%ignore`
terminals allowed between any two terminals and at both ends. Lexing is therefore not greedy and
terminal priorities play no role (the same language lark's Earley parser recognises with
``lexer="dynamic_complete"``), which is what makes token masks exact for any tokenization.

Construction validates the grammar: every symbol is defined, the start rule exists, unproductive
rules are pruned, and an empty language is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gad.errors import EmptyLanguageError, GrammarError, UndefinedRuleError, UnsupportedGrammarError
from gad.grammar.regex import ByteDFA, compile_regex, compile_terminal


@dataclass(frozen=True)
class Terminal:
    """A named regular language over bytes.

    ``whole_input``: the regex describes a whole output, so ``^``/``$`` and lookarounds at its
    edges are allowed (`Grammar.from_regex`). ``lexer``: the language is what lark's lexer takes
    as one token of this terminal, ``{w : re.match(regex, w) spans all of w}``
    (`gad.grammar.regex.compile_terminal`): lazy quantifiers and alternation order count, so lark's
    ``ESCAPED_STRING`` (``".*?..."``) does not contain ``"a"b"``, which its full-match language
    would. Otherwise the language is the regex's full matches.
    """

    name: str
    regex: str
    dfa: ByteDFA = field(repr=False, compare=False)
    whole_input: bool = False
    lexer: bool = False

    @classmethod
    def compile(cls, name: str, regex: str, *, whole_input: bool = False, lexer: bool = False) -> Terminal:
        """Compile ``regex``; raises `GrammarError` subclasses naming the terminal."""
        if not lexer:
            return cls(name, regex, compile_regex(regex, name=name, whole_input=whole_input), whole_input)
        read = compile_terminal(regex, name=name)
        if read.follow:
            raise UnsupportedGrammarError(
                f"terminal {name}: a lookahead at the end of the regex {regex!r} constrains the text after"
                " the terminal, which gad does not support yet (lookarounds decided inside the match are"
                " supported)"
            )
        return cls(name, regex, read.dfa, whole_input, lexer)


@dataclass(frozen=True)
class Rule:
    """``lhs -> rhs``; each rhs symbol names a rule (nonterminal) or a terminal of the grammar."""

    lhs: str
    rhs: tuple[str, ...]


@dataclass(frozen=True)
class SourceText:
    """Where a grammar came from, so errors can point at a line and column."""

    name: str
    text: str

    def locate(self, needle: str) -> tuple[int | None, int | None]:
        """1-based (line, column) of the first occurrence of ``needle`` used as a symbol."""
        match = re.search(r"(?<![\w$])" + re.escape(needle) + r"(?![\w$])", self.text)
        if match is None:
            match = re.search(re.escape(needle), self.text)
        if match is None:
            return None, None
        return self.position(match.start())

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of character `offset` of the text."""
        return self.text.count("\n", 0, offset) + 1, offset - (self.text.rfind("\n", 0, offset) + 1) + 1

    def error(self, cls: type[GrammarError], message: str, needle: str | None = None) -> GrammarError:
        line, column = self.locate(needle) if needle else (None, None)
        return cls(message, source=self.name, line=line, column=column, text=self.text)


class Grammar:
    """A validated context-free grammar with regular terminals (see the module docstring)."""

    def __init__(
        self,
        rules: list[Rule] | tuple[Rule, ...],
        terminals: dict[str, Terminal],
        start: str = "start",
        ignore: tuple[str, ...] = (),
        source: SourceText | None = None,
    ) -> None:
        self.source = source or SourceText("<grammar>", "")
        self.start = start
        self.terminals = dict(terminals)
        self.ignore = tuple(ignore)
        self._check_defined(rules)
        self.rules = self._productive_reachable(tuple(rules))

    # -- front ends -------------------------------------------------------------------------------

    @classmethod
    def from_lark(cls, text: str, start: str = "start", *, source: str = "<grammar>", fuse: bool = False) -> Grammar:
        """Load Lark EBNF text (rules, terminals, `?rule`, templates, `%import common.X`, `%ignore`).
        ``fuse=True`` turns its regular rules into single terminals (`gad.grammar.fusion`; same
        language, cheaper masks for character-level grammars; grammars with ``%ignore`` are left
        as they are). Off by default for Lark: fused rules disappear from ``grammar.rules``."""
        from gad.grammar.fusion import fuse_regular_rules
        from gad.grammar.lark_loader import load_lark

        grammar = load_lark(text, start=start, source=source)
        return fuse_regular_rules(grammar) if fuse else grammar

    @classmethod
    def from_gbnf(
        cls, text: str, start: str = "root", *, source: str = "<grammar>", undefined: str = "error", fuse: bool = True
    ) -> Grammar:
        """Load GBNF text (llama.cpp's format; `gad.grammar.gbnf`). ``undefined="empty"`` drops
        the alternatives that use an undefined rule instead of refusing the grammar; ``fuse``
        turns its regular rules into single terminals (`gad.grammar.fusion`)."""
        from gad.grammar.gbnf import load_gbnf

        return load_gbnf(text, start=start, source=source, undefined=undefined, fuse=fuse)

    @classmethod
    def from_file(cls, path: str | Path, start: str | None = None, *, fuse: bool | None = None) -> Grammar:
        """Load a ``.lark`` file (start rule ``start``; `%import` of sibling files resolves
        relative to it) or a ``.gbnf`` file (start rule ``root``), by extension. ``fuse``: as in
        `from_lark` and `from_gbnf` (None: their defaults, off for Lark and on for GBNF)."""
        from gad.grammar.lark_loader import load_lark

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GrammarError(f"cannot read grammar file: {exc.strerror}", source=str(path)) from None
        except UnicodeDecodeError as exc:
            raise GrammarError(f"grammar file is not UTF-8 ({exc.reason})", source=str(path)) from None
        if path.suffix.lower() == ".gbnf":
            return cls.from_gbnf(text, start=start or "root", source=str(path), fuse=fuse is not False)
        from gad.grammar.fusion import fuse_regular_rules

        grammar = load_lark(text, start=start or "start", source=str(path), import_paths=[str(path.parent)])
        return fuse_regular_rules(grammar) if fuse else grammar

    @classmethod
    def from_regex(cls, pattern: str) -> Grammar:
        """A grammar whose language is the regular language of ``pattern`` (Python `re` syntax)."""
        source = SourceText("<regex>", pattern)
        terminal = Terminal.compile("REGEX", pattern, whole_input=True)
        return cls([Rule("start", ("REGEX",))], {"REGEX": terminal}, source=source)

    @classmethod
    def from_json_schema(
        cls,
        schema: object,
        *,
        whitespace: str | int = 16,
        lenient: bool = False,
        extra_properties: bool = True,
        registry: object = None,
        property_order: str = "schema",
    ) -> Grammar:
        """The JSON documents valid under ``schema`` (a dict, a JSON string or a pydantic model
        class); see `gad.grammar.json_schema.json_schema_to_grammar` for the options."""
        from gad.grammar.json_schema import json_schema_to_grammar

        return json_schema_to_grammar(
            schema, whitespace=whitespace, lenient=lenient, extra_properties=extra_properties, registry=registry,
            property_order=property_order,
        )

    # -- validation -------------------------------------------------------------------------------

    @property
    def nonterminals(self) -> set[str]:
        return {rule.lhs for rule in self.rules}

    def _check_defined(self, rules: tuple[Rule, ...] | list[Rule]) -> None:
        defined = {rule.lhs for rule in rules}
        if self.start not in defined:
            raise self.source.error(UndefinedRuleError, f"start rule {self.start!r} is not defined")
        for rule in rules:
            for symbol in rule.rhs:
                if symbol not in defined and symbol not in self.terminals:
                    raise self.source.error(
                        UndefinedRuleError,
                        f"symbol {symbol!r} is used in rule {rule.lhs!r} but never defined",
                        symbol,
                    )
        for name in self.ignore:
            if name not in self.terminals:
                raise self.source.error(UndefinedRuleError, f"%ignore names undefined terminal {name!r}", name)

    def _productive_reachable(self, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        """Drop rules that derive no string or cannot be reached; masks stay exact only without them.

        Linear worklist algorithms: each rule counts its not-yet-productive symbols, and the
        rules that use a symbol are indexed by it, so large generated grammars stay fast.
        """
        missing = [sum(1 for s in rule.rhs if s not in self.terminals) for rule in rules]
        users: dict[str, list[int]] = {}
        for index, rule in enumerate(rules):
            for symbol in rule.rhs:
                if symbol not in self.terminals:
                    users.setdefault(symbol, []).append(index)
        productive: set[str] = set()
        frontier = [rule.lhs for rule, count in zip(rules, missing) if count == 0]
        while frontier:
            lhs = frontier.pop()
            if lhs in productive:
                continue
            productive.add(lhs)
            for index in set(users.get(lhs, ())):
                missing[index] -= sum(1 for s in rules[index].rhs if s == lhs)
                if missing[index] == 0:
                    frontier.append(rules[index].lhs)
        if self.start not in productive:
            raise self.source.error(
                EmptyLanguageError,
                f"the grammar accepts no string: rule {self.start!r} never derives a finite sentence",
                self.start,
            )
        kept = [r for r in rules if all(s in productive or s in self.terminals for s in r.rhs)]
        by_lhs: dict[str, list[Rule]] = {}
        for rule in kept:
            by_lhs.setdefault(rule.lhs, []).append(rule)
        reachable = {self.start}
        frontier = [self.start]
        while frontier:
            for rule in by_lhs.get(frontier.pop(), ()):
                for symbol in rule.rhs:
                    if symbol not in reachable and symbol not in self.terminals:
                        reachable.add(symbol)
                        frontier.append(symbol)
        return tuple(r for r in kept if r.lhs in reachable)

    def __repr__(self) -> str:
        return (
            f"Grammar(start={self.start!r}, rules={len(self.rules)}, "
            f"terminals={len(self.terminals)}, ignore={list(self.ignore)})"
        )
