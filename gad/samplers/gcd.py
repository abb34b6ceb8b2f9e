"""GCD: grammar-constrained decoding, greedy or ancestral, batched over sequences.

At each step of sequence u the next token is drawn from

    q(t | u) = P_T(t | u) · 1[t allowed after u] / Σ_t' P_T(t' | u) · 1[t' allowed after u],
    P_T(t | u) ∝ P(t | u)^(1/T),

where "allowed" is the constraint's mask (EOS only after a complete sentence), or,
greedily, ``argmax_t q(t | u)`` (the lowest id among ties). This guarantees grammatical output but
not the model's distribution conditioned on the grammar, ``P(w | w ∈ L(G))``: GCD weights each
prefix by its local mass only, not by its expected future grammaticality (Park et al. 2024, §2);
the ASAp and SMC samplers correct for that.

**Order of temperature and mask.** The temperature is applied to the model's distribution
*before* the grammar: the constrained distribution is that of the tempered model. For GCD the
order makes no difference (masking and renormalising commutes with the power 1/T), but for
samplers that reweight by expected future grammaticality it does: the target is
``P_T(w | w ∈ L(G))``, and reweighting first and warping after would sample some other
distribution. Samplers that extend this one keep the same order.

**Seeds.** Sequence i of a call with ``seed=s`` draws from its own ``torch.Generator`` seeded with
``s + i``, one uniform number per token (inverse-CDF sampling), so its tokens do not depend on the
other sequences of the batch: ``sample(p, n=4, seed=s)[i]`` equals ``sample(p, n=1, seed=s + i)[0]``
(up to the model's floating-point differences between batched and single forward passes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from gad.constraint import ConstraintLike
from gad.errors import DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers.base import Sample, Sampler, check_sampling_args, draw, temper

__all__ = ["GCDSampler"]


class GCDSampler(Sampler):
    """Greedy or ancestral sampling under the grammar's token masks (see the module docstring).

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (or a constraint factory); its
            EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the mask.
        greedy: take the most likely allowed token instead of sampling.
    """

    name = "gcd"
    guarantee = "biased"
    summary = "grammar-constrained decoding: greedy or ancestral sampling under the mask"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
    ) -> None:
        super().__init__(lm, compiled, temperature=temperature)
        self.greedy = bool(greedy)

    @classmethod
    def for_generate(cls, lm: LanguageModel, compiled: ConstraintLike, *, temperature: float, greedy: bool) -> GCDSampler:
        return cls(lm, compiled, temperature=temperature, greedy=greedy)

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[Sample]:
        """Draw `n` sequences after `prompt_ids`, in one batch.

        Args:
            prompt_ids: the context; it is given to the model but never to the grammar.
            n: how many sequences.
            max_new_tokens: a sequence still without EOS after this many tokens stops with
                ``finish_reason="length"`` (incomplete).
            seed: sequence i uses a generator seeded with ``seed + i``; None draws a fresh seed.
            progress: called with 1 after each decoding step (e.g. ``tqdm.update``).

        Raises:
            DeadEndError: no allowed token has positive probability under the model.
        """
        check_sampling_args(n=n, max_new_tokens=max_new_tokens, seed=seed)
        prompt = self.check_prompt(prompt_ids)
        eos = frozenset(self.eos_ids)
        base = self.base_seed(seed)
        generators = [] if self.greedy else [torch.Generator().manual_seed(base + i) for i in range(n)]
        constraints = [self.constraints() for _ in range(n)]
        generated: list[list[int]] = [[] for _ in range(n)]
        logp_model = [0.0] * n
        logp_sampler = [0.0] * n
        finished: list[str | None] = [None] * n
        active = list(range(n))

        for _ in range(max_new_tokens):
            logprobs = self.lm.next_token_logprobs([prompt + generated[i] for i in active])
            mask = self._masks([constraints[i] for i in active], [generated[i] for i in active], logprobs.shape[-1])
            masked = np.where(mask, temper(logprobs, self.temperature), -np.inf)
            if np.isneginf(masked).all(axis=-1).any():
                raise DeadEndError(
                    "the model gives probability 0 to every token the grammar allows next; "
                    "nothing can be sampled"
                )
            if self.greedy:
                chosen = masked.argmax(axis=-1).tolist()
                q = None
            else:
                q = masked - np.logaddexp.reduce(masked, axis=-1, keepdims=True)
                weights = np.exp(q)
                chosen = [
                    draw(weights[b], float(torch.rand(1, generator=generators[i], dtype=torch.float64)))
                    for b, i in enumerate(active)
                ]
            still_active = []
            for b, i in enumerate(active):
                token = chosen[b]
                if not constraints[i].accept_token(token):
                    raise GadError(f"internal error: the grammar rejected token {token}, which its mask allowed")
                generated[i].append(token)
                logp_model[i] += float(logprobs[b, token])
                if q is not None:
                    logp_sampler[i] += float(q[b, token])
                if token in eos:
                    finished[i] = "eos"
                else:
                    still_active.append(i)
            active = still_active
            if progress is not None:
                progress(1)
            if not active:
                break
        return [
            Sample(tuple(generated[i]), logp_model[i], logp_sampler[i], finished[i] or "length")  # type: ignore[arg-type]
            for i in range(n)
        ]

    def _masks(self, constraints: list, generated: list[list[int]], size: int) -> np.ndarray:
        """``bool[B, size]``: each row's mask; rows with equal histories share one computation."""
        first: dict[tuple[int, ...], int] = {}
        rows = [first.setdefault(tuple(tokens), b) for b, tokens in enumerate(generated)]
        unique = sorted(set(rows))
        masks = self.masks([constraints[b] for b in unique], size)
        where = {b: k for k, b in enumerate(unique)}
        return masks[[where[b] for b in rows]]

    def __repr__(self) -> str:
        mode = "greedy" if self.greedy else f"temperature={self.temperature}"
        return f"GCDSampler({self.lm!r}, {mode})"
