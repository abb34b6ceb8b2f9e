"""The small sampling problems shared by the sampler tests (`test_asap.py`, `test_cars.py`,
`test_exact.py`, `test_mcmc.py`, `test_smc.py`, `test_awrs.py`): grammars over tiny vocabularies
whose exact constrained distribution `gad.exact` can enumerate, and the models they are run with.

A plain module (as `toy.py`): test modules import it, pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

import gad
from gad.lm import LanguageModel, TableLM

# grammars/skewed.lark over the bits "0", "1" and EOS: GCD is far from Q there.
SKEWED = (Path(__file__).resolve().parent.parent / "grammars" / "skewed.lark").read_text()
BITS = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
SKEWED_COMPILED = gad.GrammarCompiler(BITS).compile(gad.Grammar.from_lark(SKEWED))

# A grammar with sentences of several lengths and a multi-byte token.
TOKENS = [b"a", b"b", b"ab", b"<eos>"]
AB = gad.TokenizerInfo.from_vocab(TOKENS, eos_token_id=3)
AB_GRAMMAR = 'start: "a" "b"* | "b" "a" "a"?'
AB_COMPILED = gad.GrammarCompiler(AB).compile(gad.Grammar.from_lark(AB_GRAMMAR))


def random_table(vocab: int, max_length: int, seed: int) -> TableLM:
    """A model with a different random next-token distribution after every prefix."""
    rng = np.random.default_rng(seed)
    table = {
        prefix: rng.dirichlet(np.ones(vocab))
        for n in range(max_length + 1)
        for prefix in itertools.product(range(vocab), repeat=n)
    }
    return TableLM(table, vocab_size=vocab)


class BigramLM(LanguageModel):
    """``P(t | u)`` depends on u's last token only (``start`` for the empty prefix)."""

    def __init__(self, rows: dict[int, list[float]], start: list[float]) -> None:
        def log(w: list[float]) -> torch.Tensor:
            return torch.log(torch.tensor(w, dtype=torch.float64) / sum(w)).float()

        self.rows = {k: log(v) for k, v in rows.items()}
        self.start = log(start)

    @property
    def vocab_size(self) -> int:
        return self.start.shape[0]

    def next_token_logprobs(self, prefixes):
        return torch.stack([self.rows[int(p[-1])] if len(p) else self.start for p in prefixes])


# The dead end: start: "a" "b"* "c" | "a" "d". After "a" the model much prefers "b" (0.9 against
# 0.05 for "d"), but after "b" it wants to stop (EOS 0.68), which the grammar forbids: the b-branch
# holds little grammatical mass. GCD picks "ad" ~5% of the time; Q gives it about half.
DEAD_END_INFO = gad.TokenizerInfo.from_vocab([b"a", b"b", b"c", b"d", b"<eos>"], eos_token_id=4)
DEAD_END = gad.GrammarCompiler(DEAD_END_INFO).compile(gad.Grammar.from_lark('start: "a" "b"* "c" | "a" "d"'))
DEAD_END_LM = BigramLM(
    {
        0: [0.001, 0.9, 0.02, 0.05, 0.03],
        1: [0.001, 0.3, 0.02, 0.001, 0.68],
        2: [0.025, 0.025, 0.025, 0.025, 0.9],
        3: [0.025, 0.025, 0.025, 0.025, 0.9],
        4: [1, 1, 1, 1, 1],
    },
    start=[1, 0.001, 0.001, 0.001, 0.001],
)
