"""Lark EBNF → `Grammar`, through lark's own grammar loader (no second grammar-file parser).

lark expands EBNF (`?`, `*`, `+`, `[...]`, `~ n`, templates) into BNF rules and resolves
`%import common.X`; we keep its rules and terminal regexes and turn lark's errors into
`GrammarError`s that carry the source name, line and column.
"""

from __future__ import annotations

import re

from lark.exceptions import LarkError
from lark.load_grammar import load_grammar

from gad.errors import GadError, GrammarError, UndefinedRuleError, UnsupportedGrammarError
from gad.grammar.ir import Grammar, Rule, SourceText, Terminal

_AT_LINE_COLUMN = re.compile(r"at line (\d+) column (\d+)")
_UNDEFINED = re.compile(r"(?:Rule|Terminal|Using an undefined rule|Using an undefined terminal)\s+'?([^' ]+)'?")


def load_lark(
    text: str,
    *,
    start: str = "start",
    source: str = "<grammar>",
    import_paths: list[str] | None = None,
) -> Grammar:
    """Parse Lark grammar ``text`` and build a validated `Grammar` rooted at ``start``."""
    if not isinstance(text, str):
        raise GrammarError(f"grammar text must be a str, not {type(text).__name__}", source=source)
    src = SourceText(source, text)
    try:
        lark_grammar, _ = load_grammar(text, source, import_paths or [], False)
        lark_terminals, lark_rules, ignore = lark_grammar.compile([start], set())
    except LarkError as exc:
        raise _grammar_error(src, exc) from None
    except GadError:
        raise
    except Exception as exc:  # lark lets some malformed input escape as KeyError, ValueError, ...
        raise GrammarError(f"malformed grammar ({type(exc).__name__}: {exc})", source=source) from None

    terminals: dict[str, Terminal] = {}
    for term in lark_terminals:
        regex = term.pattern.to_regexp()
        try:
            terminal = Terminal.compile(term.name, regex, lexer=True)
        except GrammarError as exc:
            line, column = _locate_pattern(src, term.pattern.value)
            message = exc.message if term.name in exc.message else f"terminal {term.name}: {exc.message}"
            raise type(exc)(message, source=source, line=line, column=column, text=text) from None
        terminals[term.name] = terminal

    rules = []
    for lark_rule in lark_rules:
        rhs = tuple(symbol.name for symbol in lark_rule.expansion)
        for symbol in lark_rule.expansion:
            if symbol.is_term and symbol.name not in terminals:
                raise src.error(
                    UnsupportedGrammarError,
                    f"terminal {symbol.name!r} has no pattern (declared with %declare?); "
                    "gad needs every terminal's regular language",
                    symbol.name,
                )
        rules.append(Rule(str(lark_rule.origin.name), rhs))
    return Grammar(rules, terminals, start=start, ignore=tuple(ignore), source=src)


def _locate_pattern(src: SourceText, value: str) -> tuple[int | None, int | None]:
    """Where a terminal's pattern is written: as ``/regex/``, as ``"string"``, or anywhere."""
    for written in (f"/{value}/", f'"{value}"', value):
        if value and written in src.text:
            return src.locate(written)
    return None, None


def _grammar_error(src: SourceText, exc: LarkError) -> GrammarError:
    message = str(exc).strip().split("\n")[0]
    position = _AT_LINE_COLUMN.search(str(exc))
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    if position:
        line, column = int(position.group(1)), int(position.group(2))
        message = _AT_LINE_COLUMN.sub("", message).rstrip(" ,:")
    cls = GrammarError
    undefined = _UNDEFINED.search(message)
    if "not defined" in message or "undefined" in message.lower():
        cls = UndefinedRuleError
        if undefined and line is None:
            line, column = src.locate(undefined.group(1))
    if isinstance(line, int) and line < 1:
        line = column = None
    return cls(message, source=src.name, line=line, column=column, text=src.text)
