"""Mutated Lark and GBNF grammars: a `GadError`, or a grammar whose sentences lark parses.

Oracle: lark's own Earley parser (``lexer="dynamic_complete"``, the same scannerless language) on
the mutated text, wherever lark loads it: every random sentence gad's masks produce must parse.
"""

from __future__ import annotations

import lark
import pytest
from fuzzing import BYTE_COMPILER, DATA, FUZZ, GRAMMARS, mutated, sentences
from hypothesis import given
from hypothesis import strategies as st

import gad
from gad.errors import GadError

LARK_SOURCES = {name: (GRAMMARS / f"{name}.lark").read_text() for name in ("json", "arithmetic", "ambiguous")}
LARK_ALPHABET = 'abz_AZ09 "\'/\\|()[]{}*+?~.,:;%!\n#^$-'
GBNF_SOURCES = {name: (DATA / "gbnf" / f"{name}.gbnf").read_text() for name in ("json", "arithmetic", "list")}
GBNF_ALPHABET = 'abz-09 "\'|()[]{}*+?.,:;^\\\n#'


def lark_parser(text: str) -> lark.Lark | None:
    try:
        return lark.Lark(text, parser="earley", lexer="dynamic_complete")
    except Exception:  # lark refuses it (its errors are not all LarkErrors)
        return None


@pytest.mark.parametrize("name", sorted(LARK_SOURCES))
@FUZZ
@given(data=st.data())
def test_mutated_lark_grammars(name, data):
    text = data.draw(mutated(LARK_SOURCES[name], LARK_ALPHABET), label="grammar")
    try:
        grammar = gad.Grammar.from_lark(text)
        compiled = BYTE_COMPILER.compile(grammar)
    except GadError as error:
        assert str(error)  # a message, with its location when lark gave one
        return
    parser = lark_parser(text)
    if parser is None:
        return  # gad's only extension over lark is the empty literal ""
    for sentence in sentences(compiled, seed=len(text), count=4):
        parser.parse(sentence.decode("utf-8"))  # lark raises if gad's masks left the language


@pytest.mark.parametrize("name", sorted(GBNF_SOURCES))
@FUZZ
@given(data=st.data())
def test_mutated_gbnf_grammars(name, data):
    text = data.draw(mutated(GBNF_SOURCES[name], GBNF_ALPHABET), label="grammar")
    try:
        compiled = BYTE_COMPILER.compile(gad.Grammar.from_gbnf(text))
    except GadError as error:
        assert str(error)
        return
    for sentence in sentences(compiled, seed=len(text), count=3):  # every sentence re-reads whole
        matcher = gad.GrammarMatcher(compiled)
        assert matcher.accept_bytes(sentence) and matcher.is_accepting()
