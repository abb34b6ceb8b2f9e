"""AWRS: adaptive weighted rejection sampling of one token (Lipkin et al., COLM 2025).

**Setting** (the paper's notation). At a prefix u the model gives ``P(t) = P_T(t | u)`` (the
tempered model, temperature applied first, as in `gad.samplers.gcd`); the constraint is the
grammar's ``c(t) = 1[t allowed after u]`` (EOS allowed only where u is a complete sentence). The
locally constrained distribution and its normaliser are

    P_c(t) = P(t) · c(t) / Z,        Z = Σ_t P(t) · c(t).

**Adaptive rejection sampling (ARS).** Draw tokens *without replacement* from P — the order of
the Gumbel-max keys ``log P(t) + G_t``, drawn lazily (see `Race`) — and check each with the
grammar until one passes. The first allowed token x is an exact sample of P_c, after
``|R1| + 1`` checks instead of a whole-vocabulary mask (R1: the tokens rejected before x; usually
none or one). Tokens that can never be grammar text (special ids other than EOS, padding ids
beyond the tokenizer) are removed from P beforehand without a check, their mass with them.

**The weight.** SMC needs, with x, a weight ``W ≥ 0`` that is *properly weighted*:
``E[W · f(x)] = Σ_t P(t) c(t) f(t)`` for all f (equivalently ``E[W | x] = Z`` for every x).
``m = 1 − Σ_{r∈R1} P(r)`` is the mass left after the first run's rejections:

* ``"recursive"`` (default): from ``E f(X) = P(x) f(x) + (1 − P(x)) E[f(X) | X ≠ x]`` applied along
  the run, ``W = P(x) + (m − P(x)) · c(y)`` where y is the next token of the same ordering (a draw
  from P without R1 ∪ {x}): one extra check. Exact (zero variance) when x is the only allowed
  token left. It is properly weighted *at every point of the run*: given the tokens rejected so
  far, the rest of the run is the same estimator on the smaller vocabulary.
* ``"two-run"``: the paper's estimator, ``W = m / (|R1| + |R2| + 1)``, with R2 the rejections of a
  second, independent run of ARS over the vocabulary without R1 (fresh keys; x itself may be
  drawn again, at no cost). Conditionally unbiased only with R1 removed from the second run: an
  independent run over the whole vocabulary underestimates Z.
* ``"geometric"``: a with-replacement rejection sampler simulated from without-replacement runs:
  before each draw, the draws that would have hit an already rejected token are added as a
  Geometric(m) count (no check needed), until two acceptances; ``W = Z_P / (n_rejections + 1)``,
  the unbiased negative-binomial estimator (genlm-control's `geometric_awrs`). Fewest checks when
  one token dominates P (the second acceptance is usually x again, cached).
* ``"exact"``: the whole mask (the constraint's bitmask), x drawn from P_c and W = Z itself: the
  full-masking baseline and test oracle (no single-token checks, one mask a step).

Each is checked in ``tests/test_awrs.py`` exactly, by enumerating every draw order of small
vocabularies through the implementation itself, and statistically, with enough draws to see a
5% bias.

**Work bounds.** ARS needs about 1/Z checks, so a step where the model gives little mass to what
the grammar allows (prose where JSON must close) can check thousands of tokens. Two bounds, both
keeping every estimator properly weighted:

* ``mask_after`` (`AWRSSampler` default 64, about twice the cost of one of gad's masks): once a
  run has rejected that many tokens, the step computes the whole mask once and *finishes the same
  estimator with the mask as its oracle*, at no further check: "recursive" returns ``W = Z`` and
  x from P_c (its conditional expectation given the history, which is what makes the switch
  exact for it); "two-run" finishes both runs at once (`Race.until_allowed`: the rest of a run's
  order is drawn in one vectorised Gumbel step, the mask deciding each token); "geometric" adds
  the remaining with-replacement rejections as ``Geometric(Z / Z_P) − 1`` counts, which is their
  exact law once Z is known. (Returning ``W = Z`` for the last two, as gad did before, biased
  them upwards by up to +28% per step, and Ẑ of whole SMC runs by a factor 4–5.)
  ``AWRSStep.masked`` records the switch.
* ``max_rejects`` bounds the rejections of a step. "recursive" makes its last allowed draw an
  importance-sampling draw (genlm-control's budget rule): a token accepted after
  ``max_rejects − 1`` rejections gets ``W = m`` without the extra check, and a token rejected
  there ends the step with ``W = 0`` — properly weighted, with the failures part of the
  estimator (their weight 0 is what the other draws' weights make up for). "geometric" stops its
  with-replacement count at ``max_rejects`` rejections (phantom ones included) and returns
  ``W = Z_P · a / (a + max_rejects − 1)`` with ``a ∈ {0, 1}`` acceptances so far (the
  Rao–Blackwellised first-draw indicator under that stopping rule: unbiased). "two-run" has no
  properly weighted budgeted form: it refuses `max_rejects` (use `mask_after`). A failed step
  returns ``token=None`` with ``log_weight = −inf``: the particle is dropped, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gad.constraint import Constraint, ConstraintLike, fit_mask, next_token_mask
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers.base import Sample, Sampler, check_sampling_args, temper

__all__ = ["ESTIMATORS", "AWRSSampler", "AWRSStep", "Race", "WeightedSample", "awrs_step"]

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
        rejections: how many of them it rejected (tokens the mask decided are not counted).
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
    if estimator == "two-run" and max_rejects is not None:
        raise ConfigurationError(
            "the 'two-run' estimator has no properly weighted form with `max_rejects` (its weight depends "
            "on the whole count of rejections); bound its work with `mask_after`, or use 'recursive' or "
            "'geometric' with `max_rejects`"
        )


class Race:
    """The tokens of ``p > 0`` (minus `removed`) in the order of one draw without replacement
    from ``p`` (normalised) — the order of the Gumbel-max keys ``log p_t + G_t``. Tokens with
    ``p_t = 0`` never come.

    Iterating draws lazily, without a key per token: each draw is an inverse-CDF draw *with*
    replacement (one uniform and a binary search) that is redrawn when it hits a token already
    drawn — which is a draw from the remaining tokens, so the sequence is exactly a
    without-replacement order. Once the drawn tokens hold half of the mass the CDF is rebuilt
    without them, so a draw never costs more than two tries on average; a step costs one O(V)
    cumulative sum. `until_allowed` finishes the order in one vectorised step.
    """

    def __init__(self, p: np.ndarray, rng: np.random.Generator, removed: Sequence[int] = ()) -> None:
        q = p
        if len(removed):
            q = p.copy()
            q[np.asarray(removed, dtype=np.int64)] = 0.0
        self._rng = rng
        self._rebuild(q)

    def _rebuild(self, q: np.ndarray) -> None:
        self._q = q
        self._cdf = np.cumsum(q)
        self._total = float(self._cdf[-1]) if q.size else 0.0
        self._drawn: set[int] = set()
        self._fresh: list[int] = []  # drawn since the last rebuild
        self._drawn_mass = 0.0

    def __iter__(self) -> Race:
        return self

    def __next__(self) -> int:
        while self._total > 0:
            if self._drawn_mass > 0.5 * self._total:
                q = self._q.copy()
                q[np.asarray(self._fresh, dtype=np.int64)] = 0.0
                self._rebuild(q)
                continue
            t = int(np.searchsorted(self._cdf, self._rng.random() * self._total, side="right"))
            if t >= self._q.shape[0] or t in self._drawn or self._q[t] <= 0:  # rounding at the end, or drawn
                continue
            self._drawn.add(t)
            self._fresh.append(t)
            self._drawn_mass += float(self._q[t])
            return t
        raise StopIteration

    def remaining(self) -> np.ndarray:
        """``float64[V]``: ``p`` over the tokens not yet drawn (0 elsewhere). A fresh array."""
        q = self._q.copy()
        if self._fresh:
            q[np.asarray(self._fresh, dtype=np.int64)] = 0.0
        return q

    def until_allowed(self, allowed: np.ndarray) -> tuple[list[int], int | None]:
        """Finish the order up to its first token with ``allowed[t]``, deciding each token by
        `allowed` instead of a check: ``(the tokens that come before it, in no particular order;
        that token, or None if no allowed token is left)``. The race continues after it.

        Exact: given the tokens drawn so far, the rest of the order is a fresh Plackett–Luce
        order of the remaining tokens, i.e. the order of fresh Gumbel keys.
        """
        q = self.remaining()
        live = q > 0
        keys = np.full(q.shape[0], -np.inf)
        keys[live] = np.log(q[live]) + self._rng.gumbel(size=int(live.sum()))
        good = live & allowed[: q.shape[0]]
        if good.any():
            x = int(np.argmax(np.where(good, keys, -np.inf)))
            before = np.flatnonzero(live & ~good & (keys > keys[x]))
            q[before] = 0.0
            q[x] = 0.0
            self._rebuild(q)
            return before.tolist(), x
        self._rebuild(np.zeros_like(q))
        return np.flatnonzero(live).tolist(), None


def _remaining(p: np.ndarray, total: float, rejected: list[int], rejected_mass: float) -> float:
    """``Σ_{t ∉ rejected} p_t``, without the cancellation of ``total − rejected_mass`` when the
    rejected tokens held most of the mass."""
    if rejected_mass <= 0.5 * total:
        return total - rejected_mass
    rest = p.copy()
    rest[np.asarray(rejected, dtype=np.int64)] = 0.0
    return float(rest.sum())


#: Makes the without-replacement order of one run: ``race(p, rng, removed)``.
RaceFactory = Callable[[np.ndarray, np.random.Generator, Sequence[int]], Race]


def awrs_step(
    p: np.ndarray,
    allowed: Callable[[int], bool],
    rng: np.random.Generator,
    *,
    estimator: str = "recursive",
    max_rejects: int | None = None,
    mask: Callable[[], np.ndarray] | None = None,
    mask_after: int | None = None,
    race: RaceFactory = Race,
) -> AWRSStep:
    """Draw one token by adaptive rejection sampling and estimate ``Z = Σ_t p_t · c(t)``.

    Args:
        p: ``float64[V]``, non-negative: P with the tokens known to be rejected already set to 0
            (it may sum to less than 1; W then estimates the allowed part of that mass).
        allowed: c, the constraint: called at most once per token (answers are cached).
        rng: the source of randomness.
        estimator: "recursive", "two-run" or "geometric" (see the module docstring); "exact"
            needs the whole mask and is only available through `AWRSSampler`.
        max_rejects: the most rejections of the step (None: unbounded); see the module docstring.
        mask: c for every token at once, ``bool[V]`` (e.g. the constraint's mask), for `mask_after`.
        mask_after: once a run has rejected this many tokens, finish the step with `mask` as the
            oracle (None: never).
        race: makes each run's draw order (default `Race`, the Gumbel order); the tests pass an
            enumeration of every order with its probability.

    Returns:
        an `AWRSStep`; its weight is properly weighted for Z (see the module docstring).
    """
    _check_estimator(estimator, max_rejects, mask_after)
    if estimator == "exact":
        raise ConfigurationError("estimator 'exact' needs the mask: use AWRSSampler(estimator='exact')")
    if mask_after is not None and mask is None:
        raise ConfigurationError("`mask_after` needs `mask`, the constraint for every token at once")
    cache: dict[int, bool] = {}
    counts = {"checks": 0, "rejections": 0}

    def check(t: int) -> bool:
        verdict = cache.get(t)
        if verdict is None:
            verdict = cache[t] = bool(allowed(t))
            counts["checks"] += 1
            counts["rejections"] += not verdict
        return verdict

    def done(token: int | None, w: float, masked: bool = False) -> AWRSStep:
        log_w = math.log(w) if token is not None and w > 0 else _FAILED
        return AWRSStep(token if log_w > _FAILED else None, log_w, counts["checks"], counts["rejections"], masked)

    total = float(p.sum())
    if not total > 0:
        return done(None, 0.0)
    budget = math.inf if max_rejects is None else max_rejects
    switch = math.inf if mask_after is None else mask_after
    if estimator == "geometric":
        return _geometric(p, total, check, rng, budget, switch, mask, race, done)

    # The first run: ARS.
    order = race(p, rng, ())
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
            allowed_all = mask()  # type: ignore[misc]
            more, x = order.until_allowed(allowed_all)  # x: the rest's first allowed token, from P_c
            if x is None:
                return done(None, 0.0, masked=True)
            if estimator == "recursive":  # W = Z: the rest's expectation given x
                return done(x, float(p[allowed_all[: p.shape[0]]].sum()), masked=True)
            rejected += more
            rejected_mass += float(p[more].sum()) if more else 0.0
            m = _remaining(p, total, rejected, rejected_mass)
            _, second = _second_run(p, rng, rejected, check, math.inf, allowed_all, race)
            return done(x, m / (len(rejected) + second + 1), masked=True)
        if len(rejected) >= budget:  # (recursive only) the budget's last draw was rejected
            return done(None, 0.0)
    if x is None:
        return done(None, 0.0)
    m = _remaining(p, total, rejected, rejected_mass)

    if estimator == "recursive":
        if len(rejected) == budget - 1:  # the budget's last draw: importance weight, no extra check
            return done(x, m)
        y = next(order, None)
        if y is None:  # x was the last token of positive mass: P(x) = m
            return done(x, float(p[x]))
        return done(x, m if check(y) else float(p[x]))

    # "two-run": a second, independent ARS run over V \ R1.
    masked, second = _second_run(p, rng, rejected, check, switch, mask, race)
    return done(x, m / (len(rejected) + second + 1), masked=masked)


def _second_run(
    p: np.ndarray,
    rng: np.random.Generator,
    rejected: list[int],
    check: Callable[[int], bool],
    switch: float,
    mask: np.ndarray | Callable[[], np.ndarray] | None,
    race: RaceFactory,
) -> tuple[bool, int]:
    """The two-run estimator's second run over ``V \\ R1``: (whether the mask was used, |R2|).
    With a mask array the whole run is decided by it; with a mask function the run switches to it
    after `switch` rejections."""
    order = race(p, rng, rejected)
    if isinstance(mask, np.ndarray):
        return True, len(order.until_allowed(mask)[0])
    second = 0
    for t in order:
        if check(t):
            return False, second
        second += 1
        if second >= switch:
            return True, second + len(order.until_allowed(mask())[0])  # type: ignore[misc]
    raise GadError("internal error: the second AWRS run found no allowed token, but the first did")


def _geometric(
    p: np.ndarray,
    total: float,
    check: Callable[[int], bool],
    rng: np.random.Generator,
    budget: float,
    switch: float,
    mask: Callable[[], np.ndarray] | None,
    race: RaceFactory,
    done: Callable[..., AWRSStep],
) -> AWRSStep:
    """With-replacement rejection sampling until two acceptances, simulated: each draw of a new
    token is preceded by the Geometric number of draws that would have hit a rejected token.
    Stops at `budget` with-replacement rejections (the estimator then uses the acceptances so
    far); after `switch` rejections in a run, the rest of the count comes from the mask."""
    rejected: list[int] = []
    rejected_mass = 0.0
    count = 0  # with-replacement rejections, the simulated ones included
    accepts = 0
    x = None
    z: float | None = None  # the allowed mass, once the mask is known
    masked: np.ndarray | None = None

    def stopped() -> AWRSStep:  # the budget ran out with `accepts` (0 or 1) acceptances
        w = total * accepts / (accepts + budget - 1) if accepts else 0.0
        return done(x, w, masked=z is not None)

    for _ in range(2):
        if z is None:
            run_rejections = 0
            accepted = False
            for t in race(p, rng, rejected):
                if rejected:
                    left = _remaining(p, total, rejected, rejected_mass) / total
                    if not left > 0:
                        return done(None, 0.0)
                    count += int(rng.geometric(min(left, 1.0))) - 1
                    if count >= budget:
                        return stopped()
                if check(t):
                    accepted = True
                    x = t if x is None else x
                    break
                rejected.append(t)
                rejected_mass += float(p[t])
                count += 1
                run_rejections += 1
                if count >= budget:
                    return stopped()
                if run_rejections >= switch:
                    masked = np.where(mask()[: p.shape[0]], p, 0.0)  # type: ignore[misc]
                    z = float(masked.sum())
                    break
            if accepted:
                accepts += 1
                continue
            if z is None:  # only possible in the first run: nothing is allowed
                return done(None, 0.0)
        # The mask is known: the rejections before this run's acceptance are Geometric(z / total) − 1.
        if not z > 0:
            return done(None, 0.0, masked=True)
        count += int(rng.geometric(min(z / total, 1.0))) - 1
        if count >= budget:
            return stopped()
        accepts += 1
        if x is None:
            x = next(Race(masked, rng))  # type: ignore[arg-type]
    return done(x, total / (count + 1), masked=z is not None)


def _constraint_check(constraint: Constraint) -> Callable[[int], bool]:
    """c(t) for one constraint: accept the token, and roll it back if it was accepted (a rejected
    token leaves the state unchanged). EOS passes only after a complete sentence."""

    def allowed(token: int) -> bool:
        if constraint.accept_token(token):
            constraint.rollback(1)
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


class AWRSSampler(Sampler):
    """One token at a time by adaptive weighted rejection sampling (see the module docstring).

    `propose` is the per-step kernel `gad.SMC` uses; `sample` draws independent sequences (each
    token an exact draw from the masked model, like GCD, but with a handful of grammar checks
    instead of a mask) and returns each with its importance weight.

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (or a constraint factory); its
            EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the grammar.
        estimator: the weight estimator: "recursive" (default), "two-run", "geometric" or "exact".
        max_rejects: the most rejections of a step (None: unbounded); see the module docstring.
        mask_after: after this many rejections in a run, finish the step with the whole mask
            (properly weighted for every estimator; default 64, about twice the cost of one mask;
            None: never).

    >>> import gad
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> samples = gad.AWRSSampler(gad.UniformLM(3), compiled).sample([], n=2000, max_new_tokens=6, seed=0)
    >>> z = sum(math.exp(s.log_weight) for s in samples) / len(samples)   # exact: 17 / 3**6
    >>> abs(z - 17 / 3**6) < 0.002
    True
    """

    name = "awrs"
    guarantee = "properly weighted"
    summary = "adaptive weighted rejection sampling: GCD's tokens with a few checks each, and importance weights"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        temperature: float = 1.0,
        estimator: str = "recursive",
        max_rejects: int | None = None,
        mask_after: int | None = 64,
    ) -> None:
        super().__init__(lm, compiled, temperature=temperature)
        _check_estimator(estimator, max_rejects, mask_after)
        self.estimator = estimator
        self.max_rejects = max_rejects
        self.mask_after = mask_after
        self._possible: dict[int, np.ndarray] = {}

    def possible(self, size: int) -> np.ndarray:
        """``bool[size]``: the ids that may ever be allowed (grammar text or EOS); special ids and
        ids beyond the tokenizer never are, so AWRS removes them from P without a check."""
        mask = self._possible.get(size)
        if mask is None:
            full = np.ones(self.constraints.vocab_size, dtype=np.bool_)
            full[np.asarray(self.constraints.never_allowed, dtype=np.int64)] = False
            mask = self._possible[size] = fit_mask(torch.from_numpy(full), size).numpy()
        return mask

    def masses(self, logprobs: torch.Tensor) -> np.ndarray:
        """``float64[B, V]``: ``P_T(t | u_b)`` (tempered, renormalised in float64) with the ids
        that can never be allowed set to 0, from the model's ``(B, V)`` log-probabilities."""
        if logprobs.dim() != 2:
            raise ConfigurationError(f"`logprobs` has to be a (batch, vocab) tensor, but has shape {tuple(logprobs.shape)}")
        p = np.exp(temper(logprobs, self.temperature))
        return p * self.possible(p.shape[-1])

    def propose(self, p: np.ndarray, constraint: Constraint, rng: np.random.Generator) -> AWRSStep:
        """Draw the next token of `constraint`'s sequence from ``p`` (a row of `masses`) and weight it.

        The caller accepts the returned token. This method does not change the constraint's state.
        """
        size = p.shape[0]

        def mask() -> np.ndarray:
            try:
                return next_token_mask(constraint, self.constraints.vocab_size, size)
            except DeadEndError:
                return np.zeros(size, dtype=np.bool_)

        if self.estimator != "exact":
            return awrs_step(
                p, _constraint_check(constraint), rng, estimator=self.estimator, max_rejects=self.max_rejects,
                mask=mask, mask_after=self.mask_after,
            )  # fmt: skip
        masked = np.where(mask(), p, 0.0)
        z = float(masked.sum())
        if not z > 0:
            return AWRSStep(None, _FAILED, 0, 0, masked=True)
        return AWRSStep(next(Race(masked, rng)), math.log(z), 0, 0, masked=True)

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
        prompt = self.check_prompt(prompt_ids)
        base = self.base_seed(seed)
        rngs = [np.random.default_rng(base + i) for i in range(n)]
        constraints = [self.constraints() for _ in range(n)]
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
                step = self.propose(p[b], constraints[i], rngs[i])
                checks[i].append(step.checks)
                masked[i] += step.masked
                if step.token is None:  # nothing allowed within the budget: weight 0, stop
                    finished[i] = "rejected"
                    log_weight[i] = _FAILED
                    continue
                token = step.token
                if not constraints[i].accept_token(token):
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
