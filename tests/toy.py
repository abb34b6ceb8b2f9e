"""The toy vocabulary, grammars and tiny transformers models shared by the generation tests
(`test_generate.py`, `test_hf.py`, `test_cli.py`); `conftest.py` exposes the models as fixtures.

A plain module rather than conftest constants: test modules import it (pytest puts ``tests/`` on
``sys.path``), and importing ``conftest`` itself is not supported by pytest.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lark

import gad
from gad.lm_testing import random_hf_model

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
ARITHMETIC = (GRAMMARS / "arithmetic.lark").read_text()
JSON_GRAMMAR = (GRAMMARS / "json.lark").read_text()

# A toy vocabulary with tokens that cross terminal boundaries ("1+", "],") and whitespace.
TOKENS = [
    b"<eos>", b"0", b"1", b"2", b"12", b"+", b"-", b"*", b"/", b"(", b")", b" ", b"1+", b"+(", b"2)",
    b".", b".5", b"[", b"]", b"{", b"}", b",", b":", b'"', b'"a', b'":', b"a", b"true", b"null",
    b"\n", b"],", b"},", b'{"',
]  # fmt: skip
EOS = 0


def ids(*pieces: bytes) -> list[int]:
    """The toy token ids of `pieces`, each one token."""
    return [TOKENS.index(p) for p in pieces]


@functools.lru_cache(maxsize=None)
def toy_info(vocab_size: int | None = None) -> gad.TokenizerInfo:
    """The toy vocabulary's `TokenizerInfo`, its mask padded to `vocab_size` logits."""
    return gad.TokenizerInfo.from_vocab(TOKENS, eos_token_id=EOS, vocab_size=vocab_size)


@functools.lru_cache(maxsize=None)
def toy_compiled(grammar: str, vocab_size: int | None = None) -> gad.CompiledGrammar:
    """`grammar` (Lark text) compiled for `toy_info(vocab_size)`, once per process."""
    return gad.GrammarCompiler(toy_info(vocab_size)).compile(grammar)


@functools.lru_cache(maxsize=None)
def tiny_model(vocab_size: int, seed: int = 0, architecture: str = "llama"):
    """`gad.lm_testing.random_hf_model`, built once per process (the tests never change it)."""
    return random_hf_model(vocab_size, seed=seed, architecture=architecture)


def lark_parses(grammar_text: str, text: str) -> bool:
    """The independent oracle: lark's own Earley parser accepts `text`."""
    try:
        lark.Lark(grammar_text, parser="earley", lexer="dynamic_complete").parse(text)
    except lark.exceptions.LarkError:
        return False
    return True
