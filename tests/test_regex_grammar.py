"""`Grammar.from_regex` (Python `re` syntax), and the same regex as a terminal in a Lark grammar.

Oracle: Python's `re.fullmatch`. Strings come from hypothesis (`st.from_regex`, so every one
matches, and free text over the pattern's alphabet, checked with `re`); each is fed one byte-token
at a time, every token must be set in the mask before it is accepted, and EOS must be allowed at the
end exactly when `re.fullmatch` says the string matches.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gad

# Every single byte is a token (so any UTF-8 text can be spelled, one byte at a time), plus a few
# multi-byte tokens, plus EOS.
VOCAB = [bytes([b]) for b in range(256)] + [b"ab", b"foo", "é".encode(), b"@x", b"<eos>"]
EOS = len(VOCAB) - 1
INFO = gad.TokenizerInfo.from_vocab(VOCAB, eos_token_id=EOS)
COMPILER = gad.GrammarCompiler(INFO)

PATTERNS = [
    r"[a-z]+@[a-z]+\.(com|org)",
    r"\d{3}-\d{4}",
    r"(foo|bar)+baz?",
    r"(?i)hello",
    r"é+中?ü{0,2}",
    r"[^\n]{0,5}",
    r"(ab)*|c",
    r"\w+",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?",
    r"[\u4e00-\u9fff]{1,3}",
    r"(a|b)*abb",
    r"x{2,}",
]
ALPHABET = "abcfoz019-.@ \nHhEeLlOoéü中文x_"


def walk(matcher: gad.GrammarMatcher, text: str) -> bool:
    """Feed ``text`` byte by byte, checking the mask before each token; then EOS. True if all passed."""
    m = matcher.fork()
    for byte in text.encode("utf-8"):
        mask = m.next_token_mask()
        allowed = m.fork().accept_token(byte)
        assert bool(mask[byte]) == allowed, (text, byte)
        if not allowed:
            return False
        assert m.accept_token(byte)
    eos_allowed = bool(m.next_token_mask()[EOS])
    assert eos_allowed == m.is_accepting()
    return eos_allowed and m.accept_token(EOS)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_matching_strings_walk_through_and_allow_eos(pattern):
    matcher = gad.GrammarMatcher(COMPILER.compile(gad.Grammar.from_regex(pattern)))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(re.compile(pattern), fullmatch=True))
    def check(text):
        assert walk(matcher, text), text

    check()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_other_strings_are_rejected(pattern):
    matcher = gad.GrammarMatcher(COMPILER.compile(gad.Grammar.from_regex(pattern)))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.text(alphabet=ALPHABET, max_size=8))
    def check(text):
        assert walk(matcher, text) == (re.fullmatch(pattern, text) is not None), text

    check()


def test_regex_as_a_terminal_in_a_lark_grammar():
    """The same regex works as a Lark terminal: a comma-separated list of e-mail addresses."""
    pattern = r"[a-z]+@[a-z]+\.(com|org)"
    grammar = gad.Grammar.from_lark(f'start: EMAIL (", " EMAIL)*\nEMAIL: /{pattern}/')
    matcher = gad.GrammarMatcher(COMPILER.compile(grammar))
    assert walk(matcher, "a@b.com, xy@z.org")
    assert not walk(matcher, "a@b.com,xy@z.org")
    assert not walk(matcher, "a@b.net")


def test_invalid_and_unsupported_regexes_raise_grammar_errors():
    with pytest.raises(gad.GrammarError, match="invalid regex"):
        gad.Grammar.from_regex("(unclosed")
    with pytest.raises(gad.UnsupportedGrammarError):
        gad.Grammar.from_regex(r"(a)\1")
