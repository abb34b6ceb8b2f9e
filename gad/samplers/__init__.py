"""Samplers: draw sequences from a `LanguageModel` under a grammar's token masks.

Every sampler takes its constraint (a `CompiledGrammar`, through `GrammarMatcher`) and its model
(a `gad.lm.LanguageModel`) and nothing else, and returns `Sample` objects. `gad.generate` is the
high-level entry point that dispatches on the sampler's name.

- `gad.samplers.gcd`: grammar-constrained decoding — greedy or ancestral sampling under the mask.
- `gad.samplers.asap`: grammar-aligned sampling — reweights by learned expected futures (ASAp).
- `gad.samplers.awrs`: adaptive weighted rejection sampling — a few grammar checks per token
  instead of a mask, and an unbiased importance weight.
- `gad.samplers.smc`: sequential Monte Carlo over AWRS particles, with resampling.

This module holds what the samplers share; it imports none of them, so each sampler module can
import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["FinishReason", "Sample", "fit_mask"]

FinishReason = Literal["eos", "length", "rejected"]


@dataclass(frozen=True)
class Sample:
    """One sequence drawn by a sampler.

    Attributes:
        token_ids: the generated token ids (the prompt excluded); they end with the EOS id when
            ``finish_reason == "eos"``.
        logprob_model: ``Σ_i log P(token_ids[i] | prompt, token_ids[:i])`` under the model itself:
            temperature 1, no mask, no reweighting. The EOS token is included.
        logprob_sampler: ``Σ_i log q_i(token_ids[i])`` where ``q_i`` is the distribution the
            sampler actually drew token i from (after temperature, mask and any reweighting);
            0.0 for greedy decoding, whose choices are deterministic.
        finish_reason: "eos" when the sequence ended with EOS (which the grammar allows only
            after a complete sentence), "length" when it hit ``max_new_tokens`` first,
            "rejected" (weighted samplers only: `gad.samplers.awrs`, `gad.samplers.smc`) when a
            step found no allowed token within its budget and the sequence got weight 0.
    """

    token_ids: tuple[int, ...]
    logprob_model: float
    logprob_sampler: float
    finish_reason: FinishReason

    @property
    def complete(self) -> bool:
        """True iff the sequence ended with EOS, i.e. its text is a sentence of the grammar.

        A sequence cut at ``max_new_tokens`` is incomplete even if its text happens to be a
        sentence: the model had not chosen to end it there.
        """
        return self.finish_reason == "eos"


def fit_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A token mask cut or padded (with False) to length `size`, the model's logits size.

    A mask is as long as the tokenizer's `vocab_size`; a model may have more logits (padding
    rows, never allowed) or, rarely, fewer (the tokens it lacks can never be produced).
    """
    length = mask.shape[-1]
    if length == size:
        return mask
    if length > size:
        return mask[..., :size]
    padded = torch.zeros((*mask.shape[:-1], size), dtype=torch.bool)
    padded[..., :length] = mask
    return padded
