"""GrammarMatcher on toy vocabularies: the API contract, errors, and masks against brute force."""

from __future__ import annotations

import random
from pathlib import Path

import lark
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gad
from gad.errors import DeadEndError, GadError, RollbackError, TokenError
from gad.testing import brute_force_allowed, check_masks, random_walk

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
ARITHMETIC = (GRAMMARS / "arithmetic.lark").read_text()
JSON = (GRAMMARS / "json.lark").read_text()

# A toy vocabulary with multi-character tokens, tokens that cross terminal boundaries ("1+",
# "),"), whitespace, and pieces of multi-byte UTF-8 characters ("é" split into two tokens).
TOY_TOKENS = [
    b"<eos>", b"0", b"1", b"2", b"12", b"+", b"-", b"*", b"/", b"(", b")", b" ", b"  ",
    b"1+", b"+(", b"()", b"2)", b".", b".5", b"[", b"]", b"{", b"}", b",", b":", b'"', b'"a',
    b'":', b"a", b"\\", b"\\n", b"\\u", b"00e9", b"e", b"E+", b"true", b"tr", b"ue", b"null",
    b"\xc3", b"\xa9", "é".encode(), b"\n", b"],", b"},", b'{"',
]
EOS = 0


def toy_info(vocab_size: int | None = None) -> gad.TokenizerInfo:
    return gad.TokenizerInfo.from_vocab(TOY_TOKENS, eos_token_id=EOS, vocab_size=vocab_size)


def toy_matcher(grammar_text: str, vocab_size: int | None = None) -> gad.GrammarMatcher:
    compiled = gad.GrammarCompiler(toy_info(vocab_size)).compile(gad.Grammar.from_lark(grammar_text))
    return gad.GrammarMatcher(compiled)


def ids(*pieces: bytes) -> list[int]:
    return [TOY_TOKENS.index(p) for p in pieces]


def lark_accepts(grammar_text: str, text: str) -> bool:
    try:
        lark.Lark(grammar_text, parser="earley", lexer="dynamic_complete").parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


@pytest.mark.parametrize(
    "grammar, pieces",
    [
        (ARITHMETIC, [b"1+", b"(", b"2)", b"*", b"12", b" ", b"-", b"1"]),
        (ARITHMETIC, [b"(", b"(", b"1", b")", b")", b"/", b".5"]),
        (JSON, [b"{", b'"a', b'":', b" ", b"[", b"1", b",", b"true", b"],", b'"', b"\\u", b"00e9", b'"']),
        (JSON, [b'"', b"\xc3", b"\xa9", "é".encode(), b"\\n", b'"']),
        (JSON, [b"[", b"tr", b"ue", b",", b"null", b"]"]),
    ],
)
def test_masks_equal_brute_force_along_a_walk(grammar, pieces):
    matcher = toy_matcher(grammar)
    assert check_masks(matcher, ids(*pieces)) == []


def test_eos_allowed_exactly_when_complete():
    matcher = toy_matcher(ARITHMETIC)
    for piece, complete in [(b"1+", False), (b"2", True), (b"*", False), (b"(", False), (b"1", False), (b")", True)]:
        assert matcher.accept_token(ids(piece)[0])
        assert matcher.is_accepting() == complete
        assert bool(matcher.next_token_mask()[EOS]) == complete


def test_rejected_token_leaves_state_unchanged():
    matcher = toy_matcher(ARITHMETIC)
    matcher.accept_token(ids(b"1+")[0])
    before = matcher.next_token_mask().clone()
    for bad in ids(b")", b"*", b"+", b"true") + [EOS]:
        assert not matcher.accept_token(bad)
        assert matcher.num_accepted == 1
        assert np.array_equal(matcher.next_token_mask().numpy(), before.numpy())
    assert matcher.accept_token(ids(b"2")[0]) and matcher.is_accepting()


def test_partial_utf8_token_then_rest():
    matcher = toy_matcher(JSON)
    assert matcher.accept_token(ids(b'"')[0])
    assert matcher.accept_token(ids(b"\xc3")[0])  # half of "é"
    mask = matcher.next_token_mask()
    assert mask[ids(b"\xa9")[0]]  # its continuation byte
    assert not mask[ids(b'"')[0]]  # a string cannot end inside a character
    assert not mask[ids(b"a")[0]]


def test_rollback_restores_earlier_masks():
    matcher = toy_matcher(ARITHMETIC)
    masks = [matcher.next_token_mask().numpy().copy()]
    walk = ids(b"(", b"1+", b"2)", b"*", b"12")
    for token in walk:
        assert matcher.accept_token(token)
        masks.append(matcher.next_token_mask().numpy().copy())
    assert matcher.accept_token(EOS) and matcher.is_terminated()
    assert not matcher.next_token_mask().any()
    assert not matcher.accept_token(ids(b"1")[0])
    matcher.rollback(1)  # undo EOS
    assert not matcher.is_terminated()
    for k in range(len(walk), 0, -1):
        assert np.array_equal(matcher.next_token_mask().numpy(), masks[k])
        matcher.rollback(1)
    assert np.array_equal(matcher.next_token_mask().numpy(), masks[0])
    with pytest.raises(RollbackError, match="only 0"):
        matcher.rollback(1)
    with pytest.raises(RollbackError):
        matcher.rollback(-1)


def test_rollback_past_start_names_the_counts():
    matcher = toy_matcher(ARITHMETIC)
    matcher.accept_token(ids(b"1")[0])
    with pytest.raises(RollbackError, match="cannot roll back 3 tokens: only 1"):
        matcher.rollback(3)
    assert matcher.num_accepted == 1  # nothing was undone


def test_fork_is_independent():
    matcher = toy_matcher(ARITHMETIC)
    matcher.accept_token(ids(b"(")[0])
    twin = matcher.fork()
    assert twin.accept_token(ids(b"1")[0]) and twin.accept_token(ids(b")")[0])
    assert twin.is_accepting() and not matcher.is_accepting()
    assert matcher.num_accepted == 1 and twin.num_accepted == 3
    assert matcher.accept_token(ids(b"2)")[0]) and matcher.is_accepting()


@pytest.mark.parametrize("bad", [-1, len(TOY_TOKENS), 10**9])
def test_token_id_out_of_range(bad):
    matcher = toy_matcher(ARITHMETIC)
    with pytest.raises(TokenError, match=f"token id {bad} is out of range"):
        matcher.accept_token(bad)
    assert matcher.num_accepted == 0


@pytest.mark.parametrize("bad", [1.0, "1", None, True])
def test_token_id_wrong_type(bad):
    with pytest.raises(TokenError):
        toy_matcher(ARITHMETIC).accept_token(bad)


def test_padded_vocabulary_ids_are_never_allowed():
    matcher = toy_matcher(JSON, vocab_size=len(TOY_TOKENS) + 7)
    assert matcher.next_token_mask().shape == (len(TOY_TOKENS) + 7,)
    assert matcher.accept_token(ids(b'"')[0])
    mask = matcher.next_token_mask()
    assert not mask[len(TOY_TOKENS) :].any()
    assert not matcher.accept_token(len(TOY_TOKENS) + 3)


def test_dead_end_raises():
    info = gad.TokenizerInfo.from_vocab([b"<eos>", b"a"], eos_token_id=0)
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile('start: "a" "b"'))
    assert matcher.accept_token(1)
    with pytest.raises(DeadEndError):
        matcher.next_token_mask()


def test_errors_share_one_root():
    for cls in (TokenError, RollbackError, DeadEndError, gad.GrammarError, gad.ConfigurationError):
        assert issubclass(cls, GadError)
    with pytest.raises(gad.ConfigurationError):
        gad.GrammarMatcher("not compiled")  # type: ignore[arg-type]


def test_deep_nesting_through_tokens():
    matcher = toy_matcher(JSON)
    depth = 3000
    for _ in range(depth):
        assert matcher.accept_token(ids(b"[")[0])
    assert check_masks(matcher, []) == []
    for _ in range(depth):
        assert matcher.accept_token(ids(b"]")[0])
    assert matcher.is_accepting()
    matcher.rollback(2 * depth)
    assert matcher.num_accepted == 0


@pytest.mark.parametrize("grammar", [ARITHMETIC, JSON, (GRAMMARS / "ambiguous.lark").read_text()])
def test_random_walks_produce_sentences_lark_parses(grammar):
    rng = random.Random(0)
    finished = 0
    for _ in range(60):
        text = random_walk(toy_matcher(grammar), rng, max_steps=30)
        if text is not None:
            finished += 1
            assert lark_accepts(grammar, text.decode("utf-8")), text
    assert finished >= 10


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_random_walk_masks_equal_brute_force(rng):
    matcher = toy_matcher(JSON)
    for _ in range(8):
        mask = matcher.next_token_mask().numpy()
        assert np.array_equal(mask, brute_force_allowed(matcher))
        choices = [t for t in np.flatnonzero(mask).tolist() if t != EOS]
        if not choices:
            break
        assert matcher.accept_token(rng.choice(choices))
