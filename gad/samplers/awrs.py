"""AWRS: adaptive weighted rejection sampling of one token (Lipkin et al., COLM 2025).

**Setting** (the paper's notation). At a prefix u the model gives ``P(t) = P_T(t | u)`` (the
tempered model, temperature applied first, as in `gad.samplers.gcd`); the constraint is the
grammar's ``c(t) = 1[t allowed after u]`` (EOS allowed only where u is a complete sentence). The
locally constrained distribution and its normaliser are

    P_c(t) = P(t) · c(t) / Z,        Z = Σ_t P(t) · c(t).

**Adaptive rejection sampling (ARS).** Draw tokens *without replacement* from P — the order of
the Gumbel-max keys ``log P(t) + G_t``, drawn lazily (see `_race`) — and check each with the
grammar until one passes. The first allowed token x is an exact sample of P_c, after ``|R1| + 1`` checks instead of
a whole-vocabulary mask (R1: the tokens rejected before x; usually none or one). Tokens that can
never be grammar text (special ids other than EOS, padding ids beyond the tokenizer) are removed
from P beforehand without a check, their mass with them.

**The weight.** SMC needs, with x, a weight ``W ≥ 0`` that is *properly weighted*:
``E[W | x] = Z`` for every x, i.e. ``E[W · f(x)] = Σ_t P(t) c(t) f(t)`` for all f. Each estimator
below has that property exactly (checked against exact enumeration of the orderings on small
vocabularies, and statistically in ``tests/test_awrs.py``); ``m = 1 − Σ_{r∈R1} P(r)`` is the mass
left after the first run's rejections:

* ``"recursive"`` (default): from ``E f(X) = P(x) f(x) + (1 − P(x)) E[f(X) | X ≠ x]`` applied along
  the run, ``W = P(x) + (m − P(x)) · c(y)`` where y is the next token of the same ordering (a draw
  from P without R1 ∪ {x}): one extra check. Exact (zero variance) when x is the only allowed
  token left.
* ``"two-run"``: the paper's estimator, ``W = m / (|R1| + |R2| + 1)``, with R2 the rejections of a
  second, independent run of ARS over the vocabulary without R1 (fresh keys; x itself may be
  drawn again, at no cost). Conditionally unbiased only with R1 removed from the second run: an
  independent run over the whole vocabulary underestimates Z.
* ``"geometric"``: a with-replacement rejection sampler simulated from without-replacement runs:
  before each draw, the draws that would have hit an already rejected token are added as a
  Geometric(m) count (no check needed), until two acceptances; W = Z_P / (n_rejections + 1), the
  unbiased negative-binomial estimator (genlm-control's `geometric_awrs`). Fewest checks when one
  token dominates P (the second acceptance is usually x again, cached).
* ``"exact"``: the whole mask (`GrammarMatcher.next_token_mask`), x drawn from P_c and W = Z
  itself: the full-masking baseline and test oracle (no single-token checks, one mask a step).

**Work bound.** ARS needs about 1/Z checks, so a step where the model gives little mass to what
the grammar allows (prose where JSON must close) can check thousands of tokens. Two bounds:

* ``mask_after`` (`AWRSSampler` default 64, about twice the cost of one of gad's masks): once a
  run has rejected that many tokens, the step computes the whole mask and finishes exactly — x is
  drawn from P_c (if the first run has not found it; R1 is masked out, so this is the rest of the
  run's distribution) and W = Z. Given x, W is then Z itself, so the step stays properly
  weighted, with lower variance; ``AWRSStep.masked`` records it.
* ``max_rejects`` bounds the rejections of each run (the first run, and the second run of
  "two-run"/"geometric"); a step that would need more, or whose whole vocabulary is rejected
  (Z = 0 under P), returns ``token=None`` with ``log_weight = −inf``: the particle is dropped,
  never an exception. With a finite ``max_rejects`` (and no ``mask_after`` below it) the weights
  are biased downwards by the probability of running out (``E[W] = Z − E[W; budget exceeded]``);
  the default (None) is unbounded and unbiased.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gad.compiler import CompiledGrammar
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.matcher import GrammarMatcher
from gad.samplers import Sample, fit_mask
from gad.samplers.gcd import check_sampling_args

__all__ = ["ESTIMATORS", "AWRSSampler", "AWRSStep", "WeightedSample", "awrs_step"]

#: The weight estimators `AWRSSampler` and `awrs_step` accept (see the module docstring).
ESTIMATORS = ("recursive", "two-run", "geometric", "exact")


@dataclass(frozen=True)
class AWRSStep:
    """One token drawn by AWRS.

    Attributes:
        token: the first allowed token of the run, an exact draw from ``P_c``; None when the
            step failed (every token with positive probability rejected, or `max_rejects` hit).
        log_weight: ``log W``, W properly weighted for ``Z = Σ_t P(t) c(t)`` (``E[W | token] = Z``);
            ``-inf`` when the step failed.
        checks: how many distinct tokens the grammar was asked about, one at a time.
        rejections: how many of them it rejected.
        masked: whether the step computed the whole mask (estimator "exact", or ``mask_after``).
    """

    token: int | None
    log_weight: float
    checks: int
    rejections: int
    masked: bool = False


_FAILED = float("-inf")


def _check_estimator(estimator: str, max_rejects: int | None, mask_after: int | None = None) -> None:
    if estimator not in ESTIMATORS:
        raise ConfigurationError(
            f"`estimator` has to be one of {', '.join(repr(e) for e in ESTIMATORS)}, but is {estimator!r}"
        )
    for name, value in (("max_rejects", max_rejects), ("mask_after", mask_after)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigurationError(f"`{name}` has to be None or a strictly positive int, but is {value!r}")


def _race(p: np.ndarray, rng: np.random.Generator, removed: Sequence[int] = ()) -> Iterator[int]:
    """The tokens of ``p > 0`` (minus `removed`) in the order of one draw without replacement
    from ``p`` (normalised) — the order of the Gumbel-max keys ``log p_t + G_t``. Tokens with
    ``p_t = 0`` never come.

    Drawn lazily, without a key per token: each draw is an inverse-CDF draw *with* replacement
    (one uniform and a binary search) that is redrawn when it hits a token already drawn — which
    is a draw from the remaining tokens, so the sequence is exactly a without-replacement order.
    Once the drawn tokens hold half of the mass the CDF is rebuilt without them, so a draw never
    costs more than two tries on average; a step costs one O(V) cumulative sum.
    """
    q = p
    if len(removed):
        q = p.copy()
        q[np.asarray(removed, dtype=np.int64)] = 0.0
    size = q.shape[0]
    cdf = np.cumsum(q)
    total = float(cdf[-1])
    drawn: set[int] = set()
    fresh: list[int] = []  # drawn since the last rebuild
    drawn_mass = 0.0
    while total > 0:
        if drawn_mass > 0.5 * total:
            q = q.copy()
            q[np.asarray(fresh, dtype=np.int64)] = 0.0
            cdf = np.cumsum(q)
            total = float(cdf[-1])
            fresh.clear()
            drawn_mass = 0.0
            continue
        t = int(np.searchsorted(cdf, rng.random() * total, side="right"))
        if t >= size or t in drawn or q[t] <= 0:  # rounding at the very end, or already drawn
            continue
        drawn.add(t)
        fresh.append(t)
        drawn_mass += float(q[t])
        yield t


def _remaining(p: np.ndarray, total: float, rejected: list[int], rejected_mass: float) -> float:
    """``Σ_{t ∉ rejected} p_t``, without the cancellation of ``total − rejected_mass`` when the
    rejected tokens held most of the mass."""
    if rejected_mass <= 0.5 * total:
        return total - rejected_mass
    rest = p.copy()
    rest[np.asarray(rejected, dtype=np.int64)] = 0.0
    return float(rest.sum())


def awrs_step(
    p: np.ndarray,
    allowed: Callable[[int], bool],
    rng: np.random.Generator,
    *,
    estimator: str = "recursive",
    max_rejects: int | None = None,
    mask: Callable[[], np.ndarray] | None = None,
    mask_after: int | None = None,
) -> AWRSStep:
    """Draw one token by adaptive rejection sampling and estimate ``Z = Σ_t p_t · c(t)``.

    Args:
        p: ``float64[V]``, non-negative: P with the tokens known to be rejected already set to 0
            (it may sum to less than 1; W then estimates the allowed part of that mass).
        allowed: c, the constraint: called at most once per token (answers are cached).
        rng: the source of randomness.
        estimator: "recursive", "two-run" or "geometric" (see the module docstring); "exact"
            needs the whole mask and is only available through `AWRSSampler`.
        max_rejects: the most rejections per run (None: unbounded).
        mask: c for every token at once, ``bool[V]`` (e.g. the matcher's mask), for `mask_after`.
        mask_after: once a run has rejected this many tokens, finish the step with `mask`:
            the token from ``p`` masked, the weight Z exactly (None: never).

    Returns:
        an `AWRSStep`; its weight is properly weighted for Z (see the module docstring).
    """
    _check_estimator(estimator, max_rejects, mask_after)
    if estimator == "exact":
        raise ConfigurationError("estimator 'exact' needs the mask: use AWRSSampler(estimator='exact')")
    if mask_after is not None and mask is None:
        raise ConfigurationError("`mask_after` needs `mask`, the constraint for every token at once")
    cache: dict[int, bool] = {}
    checks = 0

    def check(t: int) -> bool:
        nonlocal checks
        verdict = cache.get(t)
        if verdict is None:
            verdict = cache[t] = bool(allowed(t))
            checks += 1
        return verdict

    budget = math.inf if max_rejects is None else max_rejects
    switch = math.inf if mask_after is None else mask_after
    total = float(p.sum())
    if not total > 0:
        return AWRSStep(None, _FAILED, 0, 0)

    def exact(x: int | None, rejections: int) -> AWRSStep:
        """Finish with the whole mask: W = Z, and x drawn from P_c unless the first run has it."""
        masked = np.where(mask(), p, 0.0)  # type: ignore[misc]
        z = float(masked.sum())
        if not z > 0:
            return AWRSStep(None, _FAILED, checks, rejections, masked=True)
        if x is None:
            x = next(_race(masked, rng))
        return AWRSStep(x, math.log(z), checks, rejections, masked=True)

    if estimator == "geometric":
        return _geometric(p, total, check, rng, budget, switch, exact, lambda: checks)

    # The first run: ARS.
    order = _race(p, rng)
    rejected: list[int] = []
    rejected_mass = 0.0
    x = None
    for t in order:
        if check(t):
            x = t
            break
        rejected.append(t)
        rejected_mass += float(p[t])
        if len(rejected) >= switch:
            return exact(None, len(rejected))
        if len(rejected) >= budget:
            return AWRSStep(None, _FAILED, checks, len(rejected))
    if x is None:
        return AWRSStep(None, _FAILED, checks, len(rejected))
    m = _remaining(p, total, rejected, rejected_mass)

    if estimator == "recursive":
        y = next(order, None)
        if y is None:  # x was the last token of positive mass: P(x) = m
            w = float(p[x])
        elif check(y):
            w = m
        else:
            w = float(p[x])
        rejections = len(rejected) + (y is not None and not cache[y])
        return AWRSStep(x, math.log(w), checks, rejections)

    # "two-run": a second, independent ARS run over V \ R1.
    second = 0
    for t in _race(p, rng, rejected):
        if check(t):
            break
        second += 1
        if second >= switch:
            return exact(x, len(rejected) + second)
        if second >= budget:
            return AWRSStep(None, _FAILED, checks, len(rejected) + second)
    w = m / (len(rejected) + second + 1)
    return AWRSStep(x, math.log(w), checks, len(rejected) + second)


def _geometric(
    p: np.ndarray,
    total: float,
    check: Callable[[int], bool],
    rng: np.random.Generator,
    budget: float,
    switch: float,
    exact: Callable[[int | None, int], AWRSStep],
    checks: Callable[[], int],
) -> AWRSStep:
    """With-replacement rejection sampling until two acceptances, simulated: each draw of a new
    token is preceded by the Geometric number of draws that would have hit a rejected token."""
    rejected: list[int] = []
    rejected_mass = 0.0
    draws_rejected = 0  # with-replacement rejections, the simulated ones included
    x = None
    for run in range(2):
        run_rejections = 0
        accepted = False
        for t in _race(p, rng, rejected):
            if rejected:
                left = _remaining(p, total, rejected, rejected_mass) / total
                if not left > 0:
                    return AWRSStep(None, _FAILED, checks(), len(rejected))
                draws_rejected += int(rng.geometric(min(left, 1.0))) - 1
            if check(t):
                accepted = True
                if x is None:
                    x = t
                break
            rejected.append(t)
            rejected_mass += float(p[t])
            draws_rejected += 1
            run_rejections += 1
            if run_rejections >= switch:
                return exact(x, len(rejected))
            if run_rejections >= budget:
                return AWRSStep(None, _FAILED, checks(), len(rejected))
        if not accepted:  # only possible in the first run: nothing is allowed
            return AWRSStep(None, _FAILED, checks(), len(rejected))
    w = total / (draws_rejected + 1)
    return AWRSStep(x, math.log(w), checks(), len(rejected))


def _matcher_check(matcher: GrammarMatcher) -> Callable[[int], bool]:
    """c(t) for one matcher: accept the token, and roll it back if it was accepted (a rejected
    token leaves the state unchanged). EOS passes only after a complete sentence."""

    def allowed(token: int) -> bool:
        if matcher.accept_token(token):
            matcher.rollback(1)
            return True
        return False

    return allowed


@dataclass(frozen=True)
class WeightedSample(Sample):
    """A `Sample` with its importance weight.

    Attributes:
        log_weight: ``Σ_i log W_i``, the log importance weight of the sequence for the target
            ``Q_N(w) ∝ P_T(w) · 1[w ∈ L(G), |w| ≤ N]``: its exponential is an unbiased estimate of
            ``P_T(L(G) ∩ length ≤ N)`` (``Z`` of `gad.exact`). ``-inf`` for an incomplete sequence
            (``finish_reason`` "length": cut at ``max_new_tokens``; "rejected": a step found no
            allowed token within its budget) — it is not in the language.
        checks: the single-token grammar checks of each step.
        masked_steps: how many steps computed the whole mask (``mask_after``, or "exact").
    """

    log_weight: float = 0.0
    checks: tuple[int, ...] = ()
    masked_steps: int = 0


class AWRSSampler:
    """One token at a time by adaptive weighted rejection sampling (see the module docstring).

    `propose` is the per-step kernel `gad.SMC` uses; `sample` draws independent sequences (each
    token an exact draw from the masked model, like GCD, but with a handful of grammar checks
    instead of a mask) and returns each with its importance weight.

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer; its EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the grammar.
        estimator: the weight estimator: "recursive" (default), "two-run", "geometric" or "exact".
        max_rejects: the most rejections per run of a step (None: unbounded); a step that needs
            more fails with weight 0 instead.
        mask_after: after this many rejections in a run, finish the step with the whole mask
            (exact, properly weighted; default 64, about twice the cost of one mask; None: never).

    >>> import gad
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> samples = gad.AWRSSampler(gad.UniformLM(3), compiled).sample([], n=2000, max_new_tokens=6, seed=0)
    >>> z = sum(math.exp(s.log_weight) for s in samples) / len(samples)   # exact: 17 / 3**6
    >>> abs(z - 17 / 3**6) < 0.002
    True
    """

    name = "awrs"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: CompiledGrammar,
        *,
        temperature: float = 1.0,
        estimator: str = "recursive",
        max_rejects: int | None = None,
        mask_after: int | None = 64,
    ) -> None:
        if not isinstance(lm, LanguageModel):
            raise ConfigurationError(f"`lm` has to be a gad.LanguageModel, but is {type(lm).__name__}")
        if not isinstance(compiled, CompiledGrammar):
            raise ConfigurationError(
                f"`compiled` has to be a gad.CompiledGrammar, but is {type(compiled).__name__}"
            )
        check_sampling_args(temperature=temperature)
        _check_estimator(estimator, max_rejects, mask_after)
        if not compiled.tokenizer_info.eos_token_ids:
            raise ConfigurationError(
                "the grammar's TokenizerInfo has no EOS token, so no sample could ever be complete; "
                "build it with eos_token_ids=..."
            )
        self.lm = lm
        self.compiled = compiled
        self.temperature = float(temperature)
        self.estimator = estimator
        self.max_rejects = max_rejects
        self.mask_after = mask_after
        self.eos_ids = tuple(compiled.tokenizer_info.eos_token_ids)
        self._possible: dict[int, np.ndarray] = {}

    def possible(self, size: int) -> np.ndarray:
        """``bool[size]``: the ids that may ever be allowed (grammar text or EOS); special ids and
        ids beyond the tokenizer never are, so AWRS removes them from P without a check."""
        mask = self._possible.get(size)
        if mask is None:
            info = self.compiled.tokenizer_info
            full = np.ones(info.vocab_size, dtype=np.bool_)
            specials = [t for t in info.special_ids if t not in info.eos_token_ids]
            full[np.asarray(specials, dtype=np.int64)] = False
            mask = self._possible[size] = fit_mask(torch.from_numpy(full), size).numpy()
        return mask

    def masses(self, logprobs: torch.Tensor) -> np.ndarray:
        """``float64[B, V]``: ``P_T(t | u_b)`` (tempered, renormalised in float64) with the ids
        that can never be allowed set to 0, from the model's ``(B, V)`` log-probabilities."""
        # numpy, not torch: small element-wise ops stay single-threaded (torch's thread pool can
        # cost milliseconds per call on a busy machine).
        rows = np.asarray(logprobs.detach().cpu().numpy(), dtype=np.float64)
        if rows.ndim != 2:
            raise ConfigurationError(f"`logprobs` has to be a (batch, vocab) tensor, but has shape {tuple(rows.shape)}")
        if self.temperature != 1.0:
            rows = rows / self.temperature
        top = rows.max(axis=-1, keepdims=True)
        p = np.exp(rows - np.where(np.isfinite(top), top, 0.0))
        p /= p.sum(axis=-1, keepdims=True)
        return p * self.possible(p.shape[-1])

    def propose(self, p: np.ndarray, matcher: GrammarMatcher, rng: np.random.Generator) -> AWRSStep:
        """Draw the next token of `matcher`'s sequence from ``p`` (a row of `masses`) and weight it.

        The matcher is left as it was: the caller accepts the returned token.
        This method does not change the matcher state.
        """
        size = p.shape[0]

        def mask() -> np.ndarray:
            try:
                return fit_mask(matcher.next_token_mask(), size).numpy()
            except DeadEndError:
                return np.zeros(size, dtype=np.bool_)

        if self.estimator != "exact":
            return awrs_step(
                p, _matcher_check(matcher), rng, estimator=self.estimator, max_rejects=self.max_rejects,
                mask=mask, mask_after=self.mask_after,
            )  # fmt: skip
        masked = np.where(mask(), p, 0.0)
        z = float(masked.sum())
        if not z > 0:
            return AWRSStep(None, _FAILED, 0, 0, masked=True)
        return AWRSStep(next(_race(masked, rng)), math.log(z), 0, 0, masked=True)

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[WeightedSample]:
        """Draw `n` independent weighted sequences after `prompt_ids`, in one batch.

        Each token is an exact draw from the masked model (GCD's distribution); each sequence
        carries ``log_weight``, so ``mean(exp(log_weight))`` estimates ``Z`` without bias and
        weighting by it targets ``Q_N`` (importance sampling; `gad.SMC` adds resampling). A
        sequence still without EOS after `max_new_tokens` tokens stops with
        ``finish_reason="length"`` and weight 0. ``logprob_sampler`` is ``Σ_i log P_T(t_i) − log W_i``
        (the normaliser of each step's distribution is known only through its estimate W_i), so
        that at ``T = 1`` ``logprob_model − logprob_sampler`` is the log weight and
        `gad.metrics.importance_estimate` applies unchanged.

        Args:
            prompt_ids: the context; it is given to the model but never to the grammar.
            n: how many sequences.
            max_new_tokens: the length limit.
            seed: sequence i uses ``numpy.random.default_rng(seed + i)``, so it does not depend on
                the others; None draws a fresh seed.
            progress: called with 1 after each decoding step.

        A step that fails (no allowed token with positive probability, or `max_rejects` hit) ends
        its sequence with ``finish_reason="rejected"`` and weight 0; it never raises.
        """
        check_sampling_args(n=n, max_new_tokens=max_new_tokens, seed=seed)
        prompt = [int(t) for t in prompt_ids]
        vocab = self.lm.vocab_size
        if any(not 0 <= t < vocab for t in prompt):
            raise ConfigurationError(f"a prompt token id is outside the model's vocabulary [0, {vocab})")
        base = secrets.randbits(62) if seed is None else seed
        rngs = [np.random.default_rng(base + i) for i in range(n)]
        matchers = [GrammarMatcher(self.compiled) for _ in range(n)]
        tokens: list[list[int]] = [[] for _ in range(n)]
        logp_model = [0.0] * n
        logp_sampler = [0.0] * n
        log_weight = [0.0] * n
        checks: list[list[int]] = [[] for _ in range(n)]
        masked = [0] * n
        finished: list[str | None] = [None] * n
        eos = set(self.eos_ids)
        active = list(range(n))
        for _ in range(max_new_tokens):
            logprobs = self.lm.next_token_logprobs([prompt + tokens[i] for i in active])
            p = self.masses(logprobs)
            still = []
            for b, i in enumerate(active):
                step = self.propose(p[b], matchers[i], rngs[i])
                checks[i].append(step.checks)
                masked[i] += step.masked
                if step.token is None:  # nothing allowed within the budget: weight 0, stop
                    finished[i] = "rejected"
                    log_weight[i] = _FAILED
                    continue
                token = step.token
                if not matchers[i].accept_token(token):
                    raise GadError(f"internal error: the grammar rejected token {token}, which AWRS accepted")
                tokens[i].append(token)
                logp_model[i] += float(logprobs[b, token])
                logp_sampler[i] += math.log(p[b, token]) - step.log_weight
                log_weight[i] += step.log_weight
                if token in eos:
                    finished[i] = "eos"
                else:
                    still.append(i)
            active = still
            if progress is not None:
                progress(1)
            if not active:
                break
        return [
            WeightedSample(
                tuple(tokens[i]), logp_model[i], logp_sampler[i], finished[i] or "length",  # type: ignore[arg-type]
                log_weight=log_weight[i] if finished[i] == "eos" else _FAILED, checks=tuple(checks[i]),
                masked_steps=masked[i],
            )
            for i in range(n)
        ]

    def __repr__(self) -> str:
        return (
            f"AWRSSampler({self.lm!r}, estimator={self.estimator!r}, temperature={self.temperature}, "
            f"mask_after={self.mask_after})"
        )
