"""Exact masks with real tokenizers: GPT-2, SmolLM2 (byte-level BPE), Mistral (SentencePiece with
byte fallback) and Llama-3 (128k byte-level BPE), on the shipped JSON and arithmetic grammars.

Oracles: the brute-force mask of `gad.testing` (every token fed alone to a fork), and lark's own
Earley parser on complete strings.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import lark
import numpy as np
import pytest

import gad
from gad.assets import load_tokenizer
from gad.testing import brute_force_allowed

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
TOKENIZERS = ["gpt2", "smollm2", "mistral", "llama3"]

PRETTY_JSON = (
    '{\n  "name": "Zo\\u00eb \\"Z\\" M\u00fcller",\n  "city": "\u6771\u4eac \U0001f5fc",\n'
    '  "tags": ["a\\\\b", "tab\\tnew\\nline", ""],\n  "score": -12.5e-3,\n'
    '  "ok": true,\n  "none": null,\n  "nested": {"deep": [[1, 2], [], {}]}\n}'
)
DOCUMENTS = {
    "json": [PRETTY_JSON, '[1,2,{"k":"v"},false]', '"caf\u00e9 \u4e2d\u6587"'],
    "arithmetic": ["12 * (3.5 - -4) / 7", "((1+2))*3-4/5"],
}
NOT_IN_LANGUAGE = {
    "json": ['{"a": 1,}', '{"a" 1}', "[01]", '"\\q"', '{"k": tru}'],
    "arithmetic": ["1 + * 2", "(1", "1 2", "3.", "4)"],
}


@lru_cache(maxsize=None)
def tokenizer_info(name: str) -> gad.TokenizerInfo:
    return gad.TokenizerInfo.from_huggingface(load_tokenizer(name))


@lru_cache(maxsize=None)
def compiled(tokenizer: str, grammar: str) -> gad.CompiledGrammar:
    return gad.GrammarCompiler(tokenizer_info(tokenizer)).compile(
        gad.Grammar.from_file(GRAMMARS / f"{grammar}.lark")
    )


def encode(tokenizer: str, text: str) -> list[int]:
    return load_tokenizer(tokenizer).encode(text, add_special_tokens=False)


def lark_accepts(grammar: str, text: str) -> bool:
    parser = lark.Lark((GRAMMARS / f"{grammar}.lark").read_text(), parser="earley", lexer="dynamic_complete")
    try:
        parser.parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


CASES = [(t, g, d) for t in TOKENIZERS for g, docs in DOCUMENTS.items() for d in docs]


@pytest.mark.parametrize("tokenizer, grammar, document", CASES)
def test_masks_equal_brute_force(tokenizer, grammar, document):
    """At a spread of prefixes of each document, the mask equals the brute-force mask."""
    token_ids = encode(tokenizer, document)
    checks = 4 if tokenizer == "llama3" else 7
    positions = set(np.linspace(0, len(token_ids), checks).round().astype(int).tolist())
    matcher = gad.GrammarMatcher(compiled(tokenizer, grammar))
    for k in range(len(token_ids) + 1):
        if k in positions:
            mask = matcher.next_token_mask().numpy()
            oracle = brute_force_allowed(matcher)
            wrong = np.flatnonzero(mask != oracle).tolist()
            assert wrong == [], f"prefix {k}: tokens {wrong[:10]} differ"
        if k < len(token_ids):
            assert matcher.accept_token(token_ids[k])


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("grammar", DOCUMENTS)
def test_sentences_walk_through_and_end_with_eos(tokenizer, grammar):
    """Every document lark accepts, tokenized, is accepted token by token and then allows EOS."""
    info = tokenizer_info(tokenizer)
    for document in DOCUMENTS[grammar]:
        token_ids = encode(tokenizer, document)
        text = info.decode_bytes(token_ids).decode("utf-8")
        assert lark_accepts(grammar, text)
        matcher = gad.GrammarMatcher(compiled(tokenizer, grammar))
        for token in token_ids:
            assert matcher.accept_token(token), (document, token, info.token_bytes[token])
        assert matcher.is_accepting()
        assert matcher.next_token_mask()[info.eos_token_ids[0]]
        assert matcher.accept_token(info.eos_token_ids[0])


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("grammar", DOCUMENTS)
def test_non_sentences_are_rejected(tokenizer, grammar):
    info = tokenizer_info(tokenizer)
    for document in NOT_IN_LANGUAGE[grammar]:
        token_ids = encode(tokenizer, document)
        assert not lark_accepts(grammar, info.decode_bytes(token_ids).decode("utf-8"))
        matcher = gad.GrammarMatcher(compiled(tokenizer, grammar))
        accepted_all = all(matcher.accept_token(t) for t in token_ids)
        assert not (accepted_all and matcher.accept_token(info.eos_token_ids[0])), document


@pytest.mark.parametrize("tokenizer", ["gpt2", "mistral"])
def test_tokens_of_a_sentence_are_in_every_mask(tokenizer):
    """The strongest form of the walk-through check: each next token is inside the full mask."""
    for grammar, documents in DOCUMENTS.items():
        for document in documents[:2]:
            matcher = gad.GrammarMatcher(compiled(tokenizer, grammar))
            for token in encode(tokenizer, document):
                assert matcher.next_token_mask()[token]
                matcher.accept_token(token)


def test_random_walks_with_gpt2_parse_with_lark():
    info = tokenizer_info("gpt2")
    rng = random.Random(1)
    finished = 0
    for _ in range(6):
        matcher = gad.GrammarMatcher(compiled("gpt2", "arithmetic"))
        text = b""
        for _ in range(25):
            allowed = matcher.allowed_token_ids()
            if info.eos_token_ids[0] in allowed and rng.random() < 0.4:
                assert matcher.accept_token(info.eos_token_ids[0])
                break
            token = rng.choice([t for t in allowed if t not in info.eos_token_ids])
            assert matcher.accept_token(token)
            text += info.token_bytes[token]
        if matcher.is_terminated():
            finished += 1
            assert lark_accepts("arithmetic", text.decode("utf-8")), text
    assert finished >= 3


def test_special_tokens_are_never_allowed():
    for tokenizer in TOKENIZERS:
        info = tokenizer_info(tokenizer)
        matcher = gad.GrammarMatcher(compiled(tokenizer, "json"))
        matcher.accept_string('{"a": [1')
        mask = matcher.next_token_mask().numpy()
        special = sorted(info.special_ids)
        assert not mask[special].any()
