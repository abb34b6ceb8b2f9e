"""Distribution metrics for samplers: KL to the exact distribution, and the expectation metric.

A sampler's output is a sequence of samples (`gad.samplers.Sample`, `gad.GenerationResult`, or
token-id tuples). Two measures, each as a function of the number of samples n (Park et al. 2024,
§5, measure ASAp the same way):

* **KL divergence** ``KL(P̂_n ‖ Q) = Σ_w P̂_n(w) · log(P̂_n(w) / Q(w))`` between the empirical
  distribution P̂_n of the first n complete samples and the exact constrained distribution Q
  (`gad.exact`). Incomplete samples (cut at the length limit) are left out of P̂_n and counted
  apart: they are not sentences, and Q gives them no mass. A complete sample Q does not know (only
  possible when the enumeration was bounded more tightly than the sampler) makes the KL infinite.
  Even a perfect sampler has a positive KL at finite n (about ``(K - 1) / 2n`` for K equally
  likely sentences): `iid_kl_curve` gives that floor by drawing from Q itself.
* **Expectation**: the running mean of ``log P(w)`` (the model's log-probability at temperature 1)
  over the complete samples, against the ideal ``E_Q[log P(w)]``. When Q cannot be enumerated,
  `importance_estimate` gives a consistent estimate of the ideal (and of ``Z``) from any sampler's
  own samples, weighting each by ``P(w) / q(w)`` (``logprob_model - logprob_sampler``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gad.errors import ConfigurationError
from gad.exact import ExactDistribution, as_probabilities

__all__ = [
    "PRUNED",
    "ImportanceEstimate",
    "empirical_distribution",
    "expected_logprob_curve",
    "importance_estimate",
    "iid_kl_curve",
    "kl_curve",
    "kl_divergence",
]

Key = Callable[[tuple[int, ...]], Hashable]


def _token_ids(sample: Any) -> tuple[tuple[int, ...], bool]:
    """(token ids, complete) of a Sample / GenerationResult / token tuple (tuples count as complete)."""
    if hasattr(sample, "token_ids"):
        return tuple(sample.token_ids), bool(sample.complete)
    return tuple(int(t) for t in sample), True


def empirical_distribution(samples: Iterable[Any], key: Key | None = None) -> tuple[dict[Hashable, float], int]:
    """``(P̂, incomplete)``: the frequency of each complete sample (through `key`, default the
    token ids) and the number of incomplete samples left out."""
    counts: Counter[Hashable] = Counter()
    incomplete = 0
    for sample in samples:
        ids, complete = _token_ids(sample)
        if not complete:
            incomplete += 1
            continue
        counts[key(ids) if key is not None else ids] += 1
    total = sum(counts.values())
    return ({k: v / total for k, v in counts.items()} if total else {}), incomplete


def _kl(empirical: Mapping[Hashable, float], target: Mapping[Hashable, float]) -> float:
    total = 0.0
    for k, p in empirical.items():
        q = target.get(k, 0.0)
        if q <= 0:
            return math.inf
        total += p * math.log(p / q)
    return max(total, 0.0)


#: The outcome that pools every sample the enumeration pruned (``pool_pruned=True``).
PRUNED = "<pruned>"


def _target(
    exact: ExactDistribution | Mapping[Hashable, float], key: Key | None, pool_pruned: bool = False
) -> dict[Hashable, float]:
    if isinstance(exact, ExactDistribution) and key is not None:
        target = exact.marginal(key)
    else:
        target = as_probabilities(exact)
    if pool_pruned:
        if not isinstance(exact, ExactDistribution):
            raise ConfigurationError("`pool_pruned` needs an ExactDistribution (it knows its pruned mass)")
        other = exact.pruned_mass / (exact.z + exact.pruned_mass) if exact.pruned_mass > 0 else 0.0
        target = {k: v * (1 - other) for k, v in target.items()}
        target[PRUNED] = other
    return target


def _pooled(key: Key | None, target: Mapping[Hashable, float], pool_pruned: bool) -> Key | None:
    """`key`, sending outcomes the target does not know to `PRUNED` when pooling."""
    if not pool_pruned:
        return key

    def pooled(ids: tuple[int, ...]) -> Hashable:
        k = key(ids) if key is not None else ids
        return k if k in target else PRUNED

    return pooled


def kl_divergence(
    samples: Iterable[Any],
    exact: ExactDistribution | Mapping[Hashable, float],
    key: Key | None = None,
    *,
    pool_pruned: bool = False,
) -> float:
    """``KL(P̂ ‖ Q)`` in nats over the complete samples (see the module docstring).

    Args:
        samples: `Sample`s, `GenerationResult`s or token-id tuples.
        exact: Q, an `ExactDistribution` or a mapping from key to (unnormalised) probability.
        key: map token ids to what is compared (e.g. the decoded text, so that different
            tokenizations of one sentence add up); applied to both sides.
        pool_pruned: for an enumeration with ``min_prob > 0``: samples outside the enumerated
            sentences count as one outcome of probability ``pruned_mass / (Z + pruned_mass)`` (an
            upper bound on their true total), the other Q(w) scaled down to match. The result is
            then an approximation, good to about that fraction; without pooling such samples make
            the KL infinite.
    """
    target = _target(exact, key, pool_pruned)
    empirical, _ = empirical_distribution(samples, _pooled(key, target, pool_pruned))
    if not empirical:
        raise ConfigurationError("no complete sample: the KL divergence is undefined")
    return _kl(empirical, target)


def _checkpoints(n: int, checkpoints: Sequence[int] | None) -> list[int]:
    if checkpoints is None:
        points = sorted({int(round(x)) for x in np.geomspace(1, n, num=min(n, 30))} | {n})
    else:
        points = sorted({int(c) for c in checkpoints if 1 <= int(c) <= n})
    return points


def kl_curve(
    samples: Sequence[Any],
    exact: ExactDistribution | Mapping[Hashable, float],
    checkpoints: Sequence[int] | None = None,
    key: Key | None = None,
    *,
    pool_pruned: bool = False,
) -> list[tuple[int, float]]:
    """``[(n, KL(P̂_n ‖ Q))]`` for the first n samples, at each checkpoint n (default: 30 points
    spaced geometrically up to ``len(samples)``). P̂_n leaves out incomplete samples; a checkpoint
    with no complete sample yet gives ``inf``. `key` and `pool_pruned` as in `kl_divergence`."""
    target = _target(exact, key, pool_pruned)
    key = _pooled(key, target, pool_pruned)
    counts: Counter[Hashable] = Counter()
    complete = 0
    out = []
    points = _checkpoints(len(samples), checkpoints)
    j = 0
    for i, sample in enumerate(samples, start=1):
        ids, ok = _token_ids(sample)
        if ok:
            counts[key(ids) if key is not None else ids] += 1
            complete += 1
        while j < len(points) and points[j] == i:
            out.append((i, _kl({k: v / complete for k, v in counts.items()}, target) if complete else math.inf))
            j += 1
    return out


def iid_kl_curve(
    exact: ExactDistribution,
    checkpoints: Sequence[int],
    *,
    repeats: int = 20,
    seed: int = 0,
    key: Key | None = None,
) -> list[tuple[int, float]]:
    """The KL a perfect sampler gets: ``[(n, mean over repeats of KL(P̂_n ‖ Q))]`` with P̂_n the
    empirical distribution of n independent draws from Q."""
    n = max(checkpoints)
    curves = [kl_curve(exact.sample(n, seed=seed + r), exact, checkpoints, key) for r in range(repeats)]
    return [(point, float(np.mean([c[k][1] for c in curves]))) for k, (point, _) in enumerate(curves[0])]


def expected_logprob_curve(samples: Sequence[Any], checkpoints: Sequence[int] | None = None) -> list[tuple[int, float]]:
    """``[(n, mean log P(w) over the complete samples among the first n)]`` (``logprob_model``:
    temperature 1, no mask); ``nan`` before the first complete sample. Compare with
    `ExactDistribution.expected_logprob` or `importance_estimate`."""
    points = _checkpoints(len(samples), checkpoints)
    total, complete, j, out = 0.0, 0, 0, []
    for i, sample in enumerate(samples, start=1):
        if sample.complete:
            total += sample.logprob_model
            complete += 1
        while j < len(points) and points[j] == i:
            out.append((i, total / complete if complete else math.nan))
            j += 1
    return out


@dataclass(frozen=True)
class ImportanceEstimate:
    """Self-normalised importance-sampling estimates from a sampler's own samples.

    Attributes:
        log_z: ``log Ẑ``, ``Ẑ = mean_i w_i`` with ``w_i = P(w_i) / q_i(w_i)`` (0 weight for an
            incomplete sample): an unbiased estimate of ``Z = P(L(G) ∩ length ≤ N)``.
        expected_logprob: ``Σ_i w_i log P(w_i) / Σ_i w_i``, a consistent estimate of
            ``E_Q[log P(w)]``.
        ess: the effective sample size ``(Σ w)² / Σ w²`` — how many samples the estimate is worth.
    """

    log_z: float
    expected_logprob: float
    ess: float


def importance_estimate(samples: Sequence[Any]) -> ImportanceEstimate:
    """Estimate ``Z`` and ``E_Q[log P]`` from samples carrying ``logprob_model`` and
    ``logprob_sampler`` (any sampler at temperature 1 whose per-token proposal covers every
    grammatical continuation: GCD, ASAp). ASAp's proposal adapts, but each q_i is fixed before
    sample i's token is drawn, so each weight stays unbiased for Z."""
    log_w = np.array([s.logprob_model - s.logprob_sampler if s.complete else -np.inf for s in samples])
    if len(log_w) == 0 or not np.isfinite(log_w).any():
        raise ConfigurationError("no complete sample: nothing to estimate from")
    top = log_w.max()
    w = np.exp(log_w - top)
    logp = np.array([s.logprob_model if s.complete else 0.0 for s in samples])
    log_z = float(top + math.log(w.sum() / len(w)))
    return ImportanceEstimate(log_z, float((w * logp).sum() / w.sum()), float(w.sum() ** 2 / (w**2).sum()))
