"""Mutated regexes: a `GadError`, or an automaton whose full matches are exactly Python's.

Oracle: Python's `re` on the same pattern — `re.fullmatch` on strings drawn from the pattern's
own matches (`hypothesis.strategies.from_regex`), their near misses and arbitrary text. A pattern
gad compiles but `re` refuses is a failure too: gad reads Python's regex syntax.
"""

from __future__ import annotations

import re

import lark
import pytest
from fuzzing import FUZZ, mutated
from hypothesis import given
from hypothesis import strategies as st

from gad.errors import GadError
from gad.grammar.regex import compile_regex


def lark_common_regexes() -> list[str]:
    """The terminals of lark's ``common.lark``, as the regexes lark builds from them."""
    text = "start: " + " | ".join(NAMES) + "\n" + "".join(f"%import common.{n}\n" for n in NAMES)
    parser = lark.Lark(text, parser="earley", lexer="dynamic")
    return sorted({t.pattern.to_regexp() for t in parser.terminals if t.name in NAMES})


NAMES = ["SIGNED_NUMBER", "ESCAPED_STRING", "CNAME", "WS", "NEWLINE", "CPP_COMMENT", "C_COMMENT", "HEXDIGIT"]
SOURCES = lark_common_regexes() + [
    r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"',
    r"(?:\d{1,3}\.){3}\d{1,3}",
    r"[a-z]+?(?=[A-Z])[A-Z]\w*",
    r"(?!not)[a-z]{2,5}",
    r"(ab|a)(c|bcd)(d*)",
    r"[^\s,]+(,[^\s,]+){0,4}",
    r"(?i:ab)[\u00e9\u4e2d]?.",
]
ALPHABET = "ab9.|*+?(){}[]^$\\-,:=!<dswDSW0123"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # re's "possible nested set" on mutants


@st.composite
def text_near(draw: st.DrawFn, rx: re.Pattern[str]) -> str:
    """A full match of `rx`, maybe with one character changed, or arbitrary short text."""
    options = [st.text(alphabet="ab9 .,-\n\"\\AZé中", max_size=10)]
    try:
        options.append(st.from_regex(rx, fullmatch=True))
    except Exception:  # hypothesis cannot generate from every regex (lookbehinds, ...)
        pass
    s = draw(st.one_of(options))
    if s and draw(st.booleans()):
        i = draw(st.integers(0, len(s) - 1))
        s = s[:i] + draw(st.sampled_from("ab9 .\"\\")) + s[i + 1 :]
    return s


@FUZZ
@given(data=st.data())
def test_mutated_regexes(data):
    pattern = data.draw(st.sampled_from(SOURCES).flatmap(lambda p: mutated(p, ALPHABET)), label="pattern")
    try:
        dfa = compile_regex(pattern)
    except GadError as error:
        assert str(error)
        return
    rx = re.compile(pattern)  # raises re.error (failing the test) if gad read what Python refuses
    for _ in range(6):
        s = data.draw(text_near(rx), label="text")
        try:
            b = s.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: outside the automaton's domain
            continue
        assert dfa.fullmatch(b) == (rx.fullmatch(s) is not None), (pattern, s)
