"""Loading Lark grammars: what is supported, and that bad grammars get clear, located errors."""

from __future__ import annotations

import re
from pathlib import Path

import lark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gad
from gad.errors import (
    EmptyLanguageError,
    GadError,
    GrammarError,
    UndefinedRuleError,
    UnsupportedGrammarError,
)

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
# Every single byte is a token: matchers then accept exactly the grammar's byte strings.
BYTES = gad.TokenizerInfo.from_vocab([b"<eos>"] + [bytes([b]) for b in range(256)], eos_token_id=0)


@pytest.mark.parametrize("name", ["json", "arithmetic", "ambiguous"])
def test_shipped_grammars_load(name):
    grammar = gad.Grammar.from_file(GRAMMARS / f"{name}.lark")
    assert grammar.rules
    assert all(s in grammar.terminals or s in grammar.nonterminals for r in grammar.rules for s in r.rhs)


def test_lark_constructs_are_expanded():
    grammar = gad.Grammar.from_lark(
        """
        _sep{x, sep}: x (sep x)*
        start: _sep{item, ","} "."?
        ?item: WORD | "[" [item+] "]" | "x"i ~ 2
        %import common.WORD
        %import common.WS
        %ignore WS
        """
    )
    assert "WORD" in grammar.terminals
    assert grammar.ignore == ("WS",)
    # `"x"i` keeps its case-insensitive flag in the terminal regex.
    assert any("(?i:" in t.regex for t in grammar.terminals.values())


def test_unproductive_rules_are_pruned_but_language_kept():
    grammar = gad.Grammar.from_lark('start: "a" | loop\nloop: loop "b"\n')
    assert "loop" not in grammar.nonterminals


# grammar text, error class, expected (line, column) or None when lark gives no position.
BAD_GRAMMARS = [
    ('start: foo "a"\n', UndefinedRuleError, (1, 8)),
    ('start: "a"\n  | FOO\n', UndefinedRuleError, (2, 5)),
    ('start: "a" |\n  ) b\n', GrammarError, (2, 3)),
    ('start: "abc\n', GrammarError, (1, 8)),
    ('foo: "a"\n', UndefinedRuleError, None),
    ('start: a\na: a "x"\n', EmptyLanguageError, None),
    ('start: /a(?=b)/ "b"\n', UnsupportedGrammarError, (1, 8)),
    ('start: /(a)\\1/\n', UnsupportedGrammarError, None),
    ('%declare X\nstart: X\n', UnsupportedGrammarError, (1, 10)),
    ('start: "a"\nstart: "b"\n', GrammarError, None),
    ('start: ""\n', GrammarError, None),
    ('start: NOPE\n%import common.NOPE\n', GrammarError, None),
]


@pytest.mark.parametrize("text, error, position", BAD_GRAMMARS)
def test_bad_grammar_raises_located_error(text, error, position):
    with pytest.raises(error) as info:
        gad.Grammar.from_lark(text, source="bad.lark")
    exc = info.value
    assert isinstance(exc, GadError)
    assert "bad.lark" in str(exc)
    if position is not None:
        assert (exc.line, exc.column) == position, str(exc)
        assert "^" in str(exc)  # caret line of context


def test_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.lark"
    with pytest.raises(GrammarError, match="nope.lark"):
        gad.Grammar.from_file(missing)


def test_file_imports_resolve_next_to_the_file(tmp_path):
    (tmp_path / "words.lark").write_text('WORD: /[a-z]+/\n')
    main = tmp_path / "main.lark"
    main.write_text('start: WORD ("," WORD)*\n%import .words.WORD\n')
    grammar = gad.Grammar.from_file(main)
    assert "WORD" in grammar.terminals


def test_non_string_grammar_is_rejected():
    with pytest.raises(GrammarError):
        gad.Grammar.from_lark(b'start: "a"')  # type: ignore[arg-type]


JSON_TEXT = (GRAMMARS / "json.lark").read_text()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_never_raises_a_foreign_exception(text):
    try:
        gad.Grammar.from_lark(text)
    except GadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(JSON_TEXT)), st.integers(0, 40), st.text(max_size=6))
def test_mutated_grammars_never_raise_a_foreign_exception(position, cut, insert):
    text = JSON_TEXT[:position] + insert + JSON_TEXT[position + cut :]
    try:
        gad.Grammar.from_lark(text)
    except GadError:
        pass


def test_lazy_terminals_mean_what_lark_lexes():
    """lark's ESCAPED_STRING is lazy (`".*?..."`): its lexer ends the string at the first
    unescaped quote, so `"a"b"` is not one string, although the regex fully matches it."""
    text = 'start: "[" ESCAPED_STRING ("," ESCAPED_STRING)* "]"\n%import common.ESCAPED_STRING\n'
    grammar = gad.Grammar.from_lark(text)
    assert grammar.terminals["ESCAPED_STRING"].lexer
    lark_parser = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    for document, expected in [('["a"b"]', False), ('["a","b"]', True), ('["a\\"b"]', True), ('[""]', True)]:
        matcher = gad.GrammarMatcher(gad.GrammarCompiler(BYTES).compile(grammar))
        assert (matcher.accept_string(document) and matcher.is_accepting()) == expected
        try:
            lark_parser.parse(document)
            assert expected
        except lark.exceptions.LarkError:
            assert not expected


@pytest.mark.parametrize(
    "pattern, accepted, rejected",
    [
        (r"\d{3}-\d{4}", ["555-1234"], ["5551234", "555-123", "555-12345"]),
        (r"^(yes|no)$", ["yes", "no"], ["yesno", "maybe", ""]),
        (r"[a-z]+@[a-z]+\.(com|org)", ["a@b.com", "zz@ex.org"], ["a@b.net", "@b.com"]),
        (r"(?i:select) \w+", ["SELECT x", "select é"], ["selectx", "SELECT"]),
    ],
)
def test_from_regex_language_equals_python_re(pattern, accepted, rejected):
    compiled = gad.GrammarCompiler(BYTES).compile(gad.Grammar.from_regex(pattern))
    for text in accepted + rejected:
        matcher = gad.GrammarMatcher(compiled)
        ok = matcher.accept_string(text) and matcher.is_accepting()
        assert ok == (re.fullmatch(pattern, text) is not None) == (text in accepted), text
