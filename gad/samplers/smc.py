"""SMC: sequential Monte Carlo over AWRS particles (Lipkin et al. 2025; Loula et al. 2025).

**Target.** ``Q_N(w) ∝ γ(w) = P_T(w) · 1[w ∈ L(G), |w| ≤ N] · φ(w)``: the tempered model
conditioned on the grammar, with sequences of at most ``N = max_new_tokens`` tokens (EOS
included) — what `gad.exact.exact_distribution` enumerates with ``max_length = N`` — and an
optional *critic* φ (a potential on the finished text, e.g. a JSON Schema or SQL-schema check;
1 when there is none).

**Particles.** N particles each extend their sequence by one token per step, all in one batched
model call (`HuggingFaceLM` reuses its KV cache: the cache is keyed by prefix, so particles that
resampling copied, reordered or dropped still extend the cached rows). A particle's token is an
AWRS draw from the masked model and its log weight accumulates ``log W_i``, an unbiased estimate
of the local normaliser ``Z_i = Σ_v P_T(v | w_<i) · 1[v allowed after w_<i]``
(`gad.samplers.awrs`). Masking alone (GCD) samples w with probability
``Π_i P_T(w_i | w_<i) · 1[w_i allowed] / Z_i``, which overweights prefixes with few grammatical
futures; ``Π_i Z_i`` is exactly the correction, so the weighted particles target Q_N.

**Resampling.** After every step the effective sample size ``ESS = (Σ w)² / Σ w²`` is recorded;
when it falls below ``ess_threshold · N`` the whole population (finished particles included) is
resampled — multinomial, stratified or systematic, all unbiased: particle i gets ``N · w̄_i``
offspring on average — and every particle takes the average weight. Copies share their token
tuples and fork their matchers (`GrammarMatcher.fork` copies a list of references).

**Ends.** A particle that draws EOS stops (the grammar allows EOS only after a complete
sentence) while the others go on. At step N only EOS keeps a particle inside Q_N's support, so
EOS is *forced*: it is drawn among the EOS ids ∝ P_T and the weight is multiplied by their mass
``P_T(EOS | u)`` if the text is a complete sentence, by 0 otherwise (``finish_reason="length"``)
— the exact weight of that step, not a silent truncation. A particle whose AWRS step fails (no
allowed token within ``max_rejects``) gets weight 0 and stops (``finish_reason="rejected"``).

**Estimates.** ``log Ẑ = log mean_i w_i`` (each resampling folds the mean into the weights) is an
unbiased estimate, in Ẑ, of ``Z = Σ_w γ(w)`` (`gad.exact`'s ``z`` when there is no critic), and
the normalised weights give the posterior over distinct complete texts, which converges to Q_N as
the number of particles grows.

**Critic and twist.** ``critic(text)`` returns a bool or a log-potential (a float, −inf rejects)
and multiplies the weight of each finished sentence: the target becomes ``P · 1[L(G)] · φ``.
``twist=True`` also evaluates it on every prefix as an SMC twist ψ: intermediate weights are
multiplied by ``ψ(u_t) / ψ(u_{t−1})`` (and by ``ψ("")`` at the start), so resampling already
favours prefixes the critic likes, while the final weights, in which the ψ telescope away, keep
the target and Ẑ unchanged. A twist must not give 0 to a prefix some of whose completions the
critic accepts (those completions would be lost); give a separate prefix function as ``twist``
when the critic cannot judge prefixes.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import tqdm

from gad.constraint import Constraint, ConstraintLike
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers.awrs import AWRSSampler
from gad.samplers.base import FinishReason, Sample, Sampler, check_sampling_args, draw

__all__ = ["RESAMPLING", "SMC", "Critic", "Particle", "SMCResult", "effective_sample_size", "resample"]

#: The resampling schemes `SMC` accepts.
RESAMPLING = ("multinomial", "stratified", "systematic")

#: A critic: the text (EOS excluded) → a bool (False rejects) or a log-potential (−inf rejects).
Critic = Callable[[str], Union[bool, float]]

_NEG_INF = float("-inf")


# -- weights and resampling -----------------------------------------------------------------------


def _log_mean_exp(log_w: np.ndarray) -> float:
    top = float(np.max(log_w))
    if top == _NEG_INF:
        return _NEG_INF
    return top + math.log(float(np.exp(log_w - top).sum()) / log_w.shape[0])


def normalized_weights(log_w: np.ndarray) -> np.ndarray:
    """``w̄_i = w_i / Σ_j w_j`` from log weights (all zero when every weight is 0)."""
    top = float(np.max(log_w))
    if top == _NEG_INF:
        return np.zeros_like(log_w)
    w = np.exp(log_w - top)
    return w / w.sum()


def effective_sample_size(log_weights: Sequence[float] | np.ndarray) -> float:
    """``ESS = (Σ w)² / Σ w² = 1 / Σ w̄²`` (0 when every weight is 0)."""
    w = normalized_weights(np.asarray(log_weights, dtype=np.float64))
    total = float((w * w).sum())
    return 1.0 / total if total > 0 else 0.0


def resample(weights: np.ndarray, n: int, rng: np.random.Generator, scheme: str = "systematic") -> np.ndarray:
    """``int64[n]``: ancestor indices, ascending, with ``E[#{k : a_k = i}] = n · w̄_i``.

    Args:
        weights: non-negative weights (normalised here), not all zero.
        n: how many offspring in all.
        rng: the source of randomness.
        scheme: "multinomial" (n i.i.d. draws), "stratified" (one uniform in each of the n
            strata ``[k/n, (k+1)/n)``) or "systematic" (one uniform shared by the strata: the
            lowest variance of the three, the usual default).
    """
    if scheme not in RESAMPLING:
        raise ConfigurationError(
            f"`resampling` has to be one of {', '.join(repr(s) for s in RESAMPLING)}, but is {scheme!r}"
        )
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if not total > 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigurationError("resampling needs finite non-negative weights that are not all zero")
    cdf = np.cumsum(w / total)
    cdf[-1] = 1.0
    if scheme == "multinomial":
        points = np.sort(rng.random(n))
    elif scheme == "stratified":
        points = (np.arange(n) + rng.random(n)) / n
    else:
        points = (np.arange(n) + rng.random()) / n
    ancestors = np.searchsorted(cdf, points, side="right")
    return np.minimum(ancestors, w.shape[0] - 1).astype(np.int64)


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Particle:
    """One particle at the end of a run.

    Attributes:
        token_ids: the generated ids, ending with an EOS id when ``finish_reason == "eos"``.
        text: their text (exact bytes, EOS excluded; invalid UTF-8 replaced); "" when the
            constraint factory cannot decode (`gad.constraint.ConstraintFactory.decode` is None).
        log_weight: its final log weight (the mean of the weights is Ẑ; −inf: weight 0).
        logprob_model: ``Σ_i log P(token_ids[i] | prefix)``, temperature 1, no mask.
        logprob_proposal: ``Σ_i log P_T(token_ids[i] | prefix) − log W_i`` along the particle's own
            history: the log-probability of its tokens under the masked model, each step's
            normaliser replaced by its AWRS estimate W_i (at a forced EOS, the exact EOS mass).
        finish_reason: "eos" (a sentence of the grammar), "length" (not a sentence when EOS was
            forced at ``max_new_tokens``) or "rejected" (an AWRS step or the twist gave 0).
    """

    token_ids: tuple[int, ...]
    text: str
    log_weight: float
    logprob_model: float
    logprob_proposal: float
    finish_reason: FinishReason

    @property
    def complete(self) -> bool:
        """True iff the particle ended with EOS: its text is a sentence of the grammar."""
        return self.finish_reason == "eos"


@dataclass(frozen=True)
class SMCResult:
    """What one `SMC.run` returns.

    Attributes:
        particles: the N particles, in order.
        log_marginal_likelihood: ``log Ẑ`` (−inf when every weight is 0); Ẑ is an unbiased
            estimate of ``Z = Σ_w P_T(w) · 1[w ∈ L(G), |w| ≤ N] · φ(w)``.
        ess_history: the ESS after each step, before any resampling of that step.
        resampled_at: the steps (0-based) after which the population was resampled.
        checks_per_step: the single-token grammar checks AWRS made at each step, summed over
            particles.
        masks_per_step: the whole masks computed at each step (``mask_after``, or "exact").
        tokens_per_step: the tokens sampled at each step (the particles still running).
    """

    particles: tuple[Particle, ...]
    log_marginal_likelihood: float
    ess_history: tuple[float, ...]
    resampled_at: tuple[int, ...]
    checks_per_step: tuple[int, ...] = field(repr=False)
    masks_per_step: tuple[int, ...] = field(repr=False)
    tokens_per_step: tuple[int, ...] = field(repr=False)

    @property
    def log_weights(self) -> np.ndarray:
        """``float64[N]``: each particle's log weight."""
        return np.array([p.log_weight for p in self.particles], dtype=np.float64)

    @property
    def weights(self) -> np.ndarray:
        """``float64[N]``: the normalised weights ``w̄_i`` (all 0 when Ẑ = 0)."""
        return normalized_weights(self.log_weights)

    @property
    def ess(self) -> float:
        """The final effective sample size."""
        return effective_sample_size(self.log_weights)

    @property
    def checks_per_token(self) -> float:
        """Grammar checks per sampled token (forced EOS steps count as tokens without checks)."""
        tokens = sum(self.tokens_per_step)
        return sum(self.checks_per_step) / tokens if tokens else 0.0

    def posterior(self, key: Callable[[Particle], Hashable] | None = None) -> dict[Hashable, float]:
        """The weighted particles as a distribution over distinct complete strings: ``{text: Σ w̄}``
        (`key` maps a particle to something else to group by, e.g. ``lambda p: p.token_ids``),
        most probable first; particles of weight 0 are left out (empty when Ẑ = 0)."""
        out: dict[Hashable, float] = {}
        for particle, w in zip(self.particles, self.weights.tolist()):
            if w > 0:
                k = particle.text if key is None else key(particle)
                out[k] = out.get(k, 0.0) + w
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def draw(self, n: int, seed: int | None = None, scheme: str = "systematic") -> list[Particle]:
        """`n` particles resampled from the final weights (draws from the posterior), in
        particle order. Raises `ConfigurationError` when every weight is 0."""
        w = self.weights
        if not w.sum() > 0:
            raise ConfigurationError("every particle has weight 0 (Ẑ = 0): there is no posterior to draw from")
        rng = np.random.default_rng(secrets.randbits(62) if seed is None else seed)
        return [self.particles[i] for i in resample(w, n, rng, scheme).tolist()]

    def __repr__(self) -> str:
        complete = sum(p.complete for p in self.particles)
        return (
            f"SMCResult({len(self.particles)} particles, {complete} complete, "
            f"log Ẑ={self.log_marginal_likelihood:.4g}, ESS={self.ess:.3g}, "
            f"{len(self.resampled_at)} resampling steps, {self.checks_per_token:.2f} checks/token)"
        )


# -- the sampler ----------------------------------------------------------------------------------


class _State:
    """One running particle (mutable; copies share the immutable token tuple)."""

    __slots__ = ("tokens", "matcher", "log_weight", "logp_model", "logp_proposal", "finish", "twist")

    def __init__(self, matcher: Constraint, log_weight: float, twist: float) -> None:
        self.tokens: tuple[int, ...] = ()
        self.matcher = matcher
        self.log_weight = log_weight
        self.logp_model = 0.0
        self.logp_proposal = 0.0
        self.finish: str | None = None
        self.twist = twist

    def copy(self) -> _State:
        twin = _State(self.matcher.fork(), self.log_weight, self.twist)
        twin.tokens = self.tokens
        twin.logp_model = self.logp_model
        twin.logp_proposal = self.logp_proposal
        twin.finish = self.finish
        return twin


def _potential(fn: Critic, text: str, what: str) -> float:
    value = fn(text)
    if isinstance(value, (bool, np.bool_)):
        return 0.0 if value else _NEG_INF
    if isinstance(value, (int, float, np.integer, np.floating)) and not math.isnan(value) and value != math.inf:
        return float(value)
    raise ConfigurationError(
        f"`{what}` returned {value!r} for {text[:40]!r}: it has to return a bool or a log-potential "
        "(a float, -inf to reject)"
    )


class SMC(Sampler):
    """Sequential Monte Carlo with AWRS proposals (see the module docstring).

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (or a constraint factory); its
            EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the grammar.
        estimator: AWRS's weight estimator ("recursive", "two-run", "geometric", or "exact" for
            full masks; see `gad.samplers.awrs`). Every one is properly weighted, with or without
            `mask_after` and `max_rejects`, so Ẑ is unbiased with each.
        max_rejects: the most rejections per AWRS step (None: unbounded).
        mask_after: after this many rejections in an AWRS run, finish the step with the whole
            mask (default 64; None: never).
        ess_threshold: resample when ``ESS < ess_threshold · N``; 0 never resamples (importance
            sampling), 1 resamples after every step.
        resampling: "systematic" (default), "stratified" or "multinomial".
        critic: a potential on the finished text (see the module docstring).
        twist: True to evaluate `critic` on every prefix as a twist, or a separate prefix
            function (same return convention) to use as the twist.

    >>> import gad
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> result = gad.SMC(gad.UniformLM(3), compiled).run([], n_particles=256, max_new_tokens=6, seed=0)
    >>> round(result.posterior()["00000"], 2)      # exact: 1/17 = 0.06; GCD: 0.5
    0.06
    """

    name = "smc"
    guarantee = "consistent"
    summary = "sequential Monte Carlo with -n AWRS particles: consistent in n, unbiased Ẑ"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        temperature: float = 1.0,
        estimator: str = "recursive",
        max_rejects: int | None = None,
        mask_after: int | None = 64,
        ess_threshold: float = 0.5,
        resampling: str = "systematic",
        critic: Critic | None = None,
        twist: bool | Critic = False,
    ) -> None:
        super().__init__(lm, compiled, temperature=temperature)
        self.awrs = AWRSSampler(
            lm, self.constraints, temperature=temperature, estimator=estimator, max_rejects=max_rejects,
            mask_after=mask_after,
        )  # fmt: skip
        if (
            isinstance(ess_threshold, bool)
            or not isinstance(ess_threshold, (int, float))
            or not 0 <= ess_threshold <= 1
        ):
            raise ConfigurationError(f"`ess_threshold` has to be a float in [0, 1], but is {ess_threshold!r}")
        if resampling not in RESAMPLING:
            raise ConfigurationError(
                f"`resampling` has to be one of {', '.join(repr(s) for s in RESAMPLING)}, but is {resampling!r}"
            )
        if critic is not None and not callable(critic):
            raise ConfigurationError(f"`critic` has to be a callable on the text, but is {type(critic).__name__}")
        if twist is True:
            if critic is None:
                raise ConfigurationError("`twist=True` evaluates the critic on prefixes, but there is no `critic`")
            twist_fn: Critic | None = critic
        elif twist is False or twist is None:
            twist_fn = None
        elif callable(twist):
            twist_fn = twist
        else:
            raise ConfigurationError(
                f"`twist` has to be a bool or a callable on the text, but is {type(twist).__name__}"
            )
        if (critic is not None or twist_fn is not None) and self.constraints.decode is None:
            raise ConfigurationError(
                "a critic or twist reads the text, but the constraint factory has no `decode`: "
                "give a gad.constraint.ConstraintFactory with decode=..."
            )
        self.ess_threshold = float(ess_threshold)
        self.resampling = resampling
        self.critic = critic
        self.twist = twist_fn

    def _text(self, tokens: Sequence[int]) -> str:
        decode = self.constraints.decode
        return "" if decode is None else decode(tokens).decode("utf-8", errors="replace")

    def run(
        self,
        prompt_ids: Sequence[int],
        n_particles: int = 16,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: bool | Callable[[int], object] = False,
    ) -> SMCResult:
        """Run SMC with `n_particles` particles after `prompt_ids`.

        Args:
            prompt_ids: the context; it is given to the model but never to the grammar.
            n_particles: N.
            max_new_tokens: the length limit (EOS included); EOS is forced at the last step.
            seed: seeds the one ``numpy.random.Generator`` of the run (AWRS draws and
                resampling): equal seeds give equal results; None draws a fresh seed.
            progress: True for a progress bar on stderr (steps, ESS, running particles), or a
                callable called with 1 after each step.
        """
        check_sampling_args(n=n_particles, max_new_tokens=max_new_tokens, seed=seed)
        prompt = self.check_prompt(prompt_ids)
        rng = np.random.default_rng(self.base_seed(seed))
        bar = None
        if progress is True:
            bar = tqdm.tqdm(total=max_new_tokens, desc="smc", unit="step", leave=False)
            tick: Callable[[int], object] | None = bar.update
        else:
            tick = progress or None
        try:
            return self._run(prompt, n_particles, max_new_tokens, rng, tick, bar)
        finally:
            if bar is not None:
                bar.close()

    def _run(self, prompt: list[int], n: int, max_new_tokens: int, rng: np.random.Generator,
             tick: Callable[[int], object] | None, bar: tqdm.tqdm | None) -> SMCResult:  # fmt: skip
        awrs = self.awrs
        eos_ids = awrs.eos_ids
        eos = frozenset(eos_ids)
        start_twist = _potential(self.twist, "", "twist") if self.twist is not None else 0.0
        states = [_State(self.constraints(), start_twist, start_twist) for _ in range(n)]
        if start_twist == _NEG_INF:
            for s in states:
                s.finish = "rejected"
        ess_history: list[float] = []
        resampled_at: list[int] = []
        checks_per_step: list[int] = []
        masks_per_step: list[int] = []
        tokens_per_step: list[int] = []

        for step in range(max_new_tokens):
            active = [s for s in states if s.finish is None]
            if not active:
                break
            logprobs = self.lm.next_token_logprobs([prompt + list(s.tokens) for s in active])
            p = awrs.masses(logprobs)
            forced = step == max_new_tokens - 1
            checks = masks = 0
            for b, s in enumerate(active):
                if forced:
                    token, log_w = self._force_eos(p[b], s.matcher, eos_ids, rng)
                    if token is None:
                        s.log_weight, s.finish = _NEG_INF, "length"
                        continue
                else:
                    proposal = awrs.propose(p[b], s.matcher, rng)
                    checks += proposal.checks
                    masks += proposal.masked
                    if proposal.token is None:
                        s.log_weight, s.finish = _NEG_INF, "rejected"
                        continue
                    token, log_w = proposal.token, proposal.log_weight
                if not s.matcher.accept_token(token):
                    raise GadError(f"internal error: the grammar rejected token {token}, which AWRS accepted")
                s.tokens = s.tokens + (token,)
                s.logp_model += float(logprobs[b, token])
                s.logp_proposal += math.log(p[b, token]) - log_w
                s.log_weight += log_w
                if token in eos:
                    s.finish = "eos"
                    if self.critic is not None:
                        s.log_weight += _potential(self.critic, self._text(s.tokens), "critic") - s.twist
                elif self.twist is not None:
                    value = _potential(self.twist, self._text(s.tokens), "twist")
                    if value == _NEG_INF:
                        s.log_weight, s.finish = _NEG_INF, "rejected"
                    else:
                        s.log_weight += value - s.twist
                        s.twist = value
            checks_per_step.append(checks)
            masks_per_step.append(masks)
            tokens_per_step.append(len(active))

            log_w = np.array([s.log_weight for s in states], dtype=np.float64)
            ess = effective_sample_size(log_w)
            ess_history.append(ess)
            running = any(s.finish is None for s in states)
            if bar is not None:
                bar.set_postfix(ess=f"{ess:.1f}", running=sum(s.finish is None for s in states), refresh=False)
            if tick is not None:
                tick(1)
            if float(np.max(log_w)) == _NEG_INF:
                break  # every particle has weight 0: nothing left to resample from
            if running and ess < self.ess_threshold * n:
                states = self._resample(states, log_w, rng)
                resampled_at.append(step)

        log_w = np.array([s.log_weight for s in states], dtype=np.float64)
        particles = tuple(
            Particle(
                s.tokens, self._text(s.tokens), s.log_weight, s.logp_model, s.logp_proposal,
                s.finish or "length",  # type: ignore[arg-type]
            )  # fmt: skip
            for s in states
        )
        return SMCResult(
            particles, _log_mean_exp(log_w), tuple(ess_history), tuple(resampled_at),
            tuple(checks_per_step), tuple(masks_per_step), tuple(tokens_per_step),
        )  # fmt: skip

    def _force_eos(
        self, p: np.ndarray, matcher: Constraint, eos_ids: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[int | None, float]:
        """The last step: EOS among the EOS ids ∝ P_T, weight ``P_T(EOS)`` if the text is a
        sentence; (None, −inf) otherwise."""
        if not matcher.is_accepting():
            return None, _NEG_INF
        ids = [e for e in eos_ids if e < p.shape[0]]
        mass = p[ids]
        total = float(mass.sum())
        if not total > 0:
            return None, _NEG_INF
        return ids[draw(mass, rng.random())], math.log(total)

    def _resample(self, states: list[_State], log_w: np.ndarray, rng: np.random.Generator) -> list[_State]:
        """Resample the population; every particle gets the mean weight. The first copy of an
        ancestor takes its state over, the others fork its matcher and share its tokens."""
        mean = _log_mean_exp(log_w)
        ancestors = resample(normalized_weights(log_w), len(states), rng, self.resampling)
        taken: set[int] = set()
        out = []
        for a in ancestors.tolist():
            state = states[a] if a not in taken else states[a].copy()
            taken.add(a)
            out.append(state)
        for state in out:
            state.log_weight = mean
        return out

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[Sample]:
        """`n` sequences drawn from the posterior of one run with `n` particles (what
        ``gad.generate(sampler="smc")`` returns): the final weights resampled once (systematic).
        More particles, closer to ``Q_N``; one particle is plain AWRS, i.e. GCD's distribution.

        Each sample's ``logprob_sampler`` is its particle's ``logprob_proposal`` (the AWRS proposal,
        resampling aside); the samples are sentences of the grammar. For the weights, the
        posterior and Ẑ, use `run`.

        Raises:
            DeadEndError: every particle has weight 0 (no complete sentence within
                ``max_new_tokens``, or every particle rejected).
        """
        result = self.run(prompt_ids, n, max_new_tokens=max_new_tokens, seed=seed, progress=progress or False)
        if result.log_marginal_likelihood == _NEG_INF:
            reasons = Counter(p.finish_reason for p in result.particles)
            raise DeadEndError(
                f"every one of the {n} SMC particles has weight 0 ({dict(reasons)}): no complete "
                f"sentence within max_new_tokens={max_new_tokens}; raise it, or use more particles"
            )
        picks = result.draw(n, seed=None if seed is None else seed + 1)
        return [Sample(p.token_ids, p.logprob_model, p.logprob_proposal, p.finish_reason) for p in picks]

    def __repr__(self) -> str:
        return (
            f"SMC({self.lm!r}, estimator={self.awrs.estimator!r}, ess_threshold={self.ess_threshold}, "
            f"resampling={self.resampling!r})"
        )
