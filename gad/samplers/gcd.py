"""GCD: grammar-constrained decoding, greedy or ancestral, batched over sequences.

At each step of sequence u the next token is drawn from

    q(t | u) = P_T(t | u) · 1[t allowed after u] / Σ_t' P_T(t' | u) · 1[t' allowed after u],
    P_T(t | u) ∝ P(t | u)^(1/T),

where "allowed" is `GrammarMatcher.next_token_mask()` (EOS only after a complete sentence), or,
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

import secrets
from collections.abc import Callable, Sequence

import torch

from gad.compiler import CompiledGrammar
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.matcher import GrammarMatcher
from gad.samplers import Sample, fit_mask

__all__ = ["GCDSampler", "check_sampling_args"]


def check_sampling_args(
    *, n: int = 1, max_new_tokens: int = 1, temperature: float = 1.0, seed: int | None = None
) -> None:
    """Raise `ConfigurationError` for a bad `n`, `max_new_tokens`, `temperature` or `seed`."""
    for name, value in (("n", n), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"`{name}` has to be a strictly positive int, but is {value!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 < temperature < float("inf")
    ):
        raise ConfigurationError(
            f"`temperature` has to be a strictly positive float, but is {temperature!r}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigurationError(f"`seed` has to be None or a non-negative int, but is {seed!r}")


class GCDSampler:
    """Greedy or ancestral sampling under the grammar's token masks (see the module docstring).

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer; its EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the mask.
        greedy: take the most likely allowed token instead of sampling.
    """

    name = "gcd"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: CompiledGrammar,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
    ) -> None:
        if not isinstance(lm, LanguageModel):
            raise ConfigurationError(f"`lm` has to be a gad.LanguageModel, but is {type(lm).__name__}")
        if not isinstance(compiled, CompiledGrammar):
            raise ConfigurationError(
                f"`compiled` has to be a gad.CompiledGrammar, but is {type(compiled).__name__}"
            )
        check_sampling_args(temperature=temperature)
        if not compiled.tokenizer_info.eos_token_ids:
            raise ConfigurationError(
                "the grammar's TokenizerInfo has no EOS token, so no sample could ever be complete; "
                "build it with eos_token_ids=..."
            )
        self.lm = lm
        self.compiled = compiled
        self.temperature = float(temperature)
        self.greedy = bool(greedy)

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
        prompt = [int(t) for t in prompt_ids]
        vocab = self.lm.vocab_size
        if any(not 0 <= t < vocab for t in prompt):
            raise ConfigurationError(f"a prompt token id is outside the model's vocabulary [0, {vocab})")
        eos = frozenset(self.compiled.tokenizer_info.eos_token_ids)
        base = secrets.randbits(62) if seed is None else seed
        generators = [] if self.greedy else [torch.Generator().manual_seed(base + i) for i in range(n)]
        matchers = [GrammarMatcher(self.compiled) for _ in range(n)]
        generated: list[list[int]] = [[] for _ in range(n)]
        logp_model = [0.0] * n
        logp_sampler = [0.0] * n
        finished: list[str | None] = [None] * n
        active = list(range(n))

        for _ in range(max_new_tokens):
            logprobs = self.lm.next_token_logprobs([prompt + generated[i] for i in active])
            mask = self._masks([matchers[i] for i in active], [generated[i] for i in active], logprobs.shape[-1])
            scaled = logprobs if self.temperature == 1.0 else logprobs / self.temperature
            masked = scaled.masked_fill(~mask, float("-inf"))
            if torch.isneginf(masked).all(dim=-1).any():
                raise DeadEndError(
                    "the model gives probability 0 to every token the grammar allows next; "
                    "nothing can be sampled"
                )
            if self.greedy:
                chosen = masked.argmax(dim=-1).tolist()
                q = None
            else:
                q = torch.log_softmax(masked, dim=-1)
                uniforms = torch.cat([torch.rand(1, generator=generators[i], dtype=torch.float64) for i in active])
                chosen = _inverse_cdf(q, uniforms)
            still_active = []
            for b, i in enumerate(active):
                token = chosen[b]
                if not matchers[i].accept_token(token):
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

    def _masks(self, matchers: list[GrammarMatcher], generated: list[list[int]], size: int) -> torch.Tensor:
        """``bool[B, size]``: each matcher's mask; rows with equal histories share one computation."""
        cache: dict[tuple[int, ...], torch.Tensor] = {}
        rows = []
        for matcher, tokens in zip(matchers, generated):
            key = tuple(tokens)
            row = cache.get(key)
            if row is None:
                row = cache[key] = fit_mask(matcher.next_token_mask(), size)
            rows.append(row)
        return torch.stack(rows)

    def __repr__(self) -> str:
        mode = "greedy" if self.greedy else f"temperature={self.temperature}"
        return f"GCDSampler({self.lm!r}, {mode})"


def _inverse_cdf(logq: torch.Tensor, uniforms: torch.Tensor) -> list[int]:
    """Row b's token: the first t with ``cdf_b(t) > u_b · cdf_b(V-1)``, in float64.

    Tokens of probability 0 are never chosen (their cdf step is empty); a uniform that rounds to
    the very end picks the last token of positive probability.
    """
    probs = logq.double().exp()
    cdf = probs.cumsum(dim=-1)
    target = (uniforms * cdf[:, -1])[:, None]
    chosen = torch.searchsorted(cdf, target, right=True)[:, 0]
    out = []
    for b, t in enumerate(chosen.tolist()):
        if t >= probs.shape[-1] or probs[b, t] <= 0:
            t = int(torch.nonzero(probs[b] > 0)[-1])
        out.append(t)
    return out
