"""CARS against `gad.exact`: its accepted samples are exact draws of Q_N (Pearson's chi-square test
against the enumerated Q, with a sample size at which the same test rejects a 5% total-variation
bias with probability ≥ 0.9 — and rejects GCD), on problems with a dead end, a length limit that
cuts sentences, temperature, bounded tries and warm starts; its acceptance rate rises and beats
plain rejection sampling; ``logprob_sampler`` is the proposal probability; tries save and load;
budgets and dead ends are reported, never passed off as samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import gad
from gad.errors import ConfigurationError, DeadEndError
from gad.exact import exact_distribution
from gad.lm import UniformLM
from gad.metrics import chi_square_power, chi_square_test
from gad.samplers.asap import ASApSampler
from gad.samplers.cars import CARSSampler

from problems import AB_COMPILED, BITS, DEAD_END, DEAD_END_LM, SKEWED, SKEWED_COMPILED, TOKENS, random_table

ALPHA = 1e-3


AB_LM = random_table(len(TOKENS), 5, 3)

# name: (lm, compiled, max_new_tokens, temperature)
PROBLEMS = {
    "skewed": (UniformLM(3), SKEWED_COMPILED, 6, 1.0),
    "dead-end": (DEAD_END_LM, DEAD_END, 6, 1.0),
    "dead-end-cut": (DEAD_END_LM, DEAD_END, 4, 1.0),  # "ab…bc" longer than 4 tokens is cut
    "dead-end-cold": (DEAD_END_LM, DEAD_END, 6, 0.5),
    "random-table": (AB_LM, AB_COMPILED, 5, 0.8),
}
N = 3000


def exact(problem: str):
    lm, compiled, limit, temperature = PROBLEMS[problem]
    return exact_distribution(lm, compiled, max_length=limit, temperature=temperature)


def test_the_test_sees_a_5_percent_bias_and_gcd() -> None:
    """At N samples the chi-square test at level ALPHA rejects a 5% total-variation bias at least
    90% of the time on every problem, and rejects GCD's samples where GCD is biased."""
    for problem in PROBLEMS:
        assert chi_square_power(exact(problem), N, bias=0.05, alpha=ALPHA, trials=100) >= 0.9, problem
    for problem in ("skewed", "dead-end"):
        lm, compiled, limit, temperature = PROBLEMS[problem]
        gcd = gad.GCDSampler(lm, compiled, temperature=temperature).sample([], n=N, max_new_tokens=limit, seed=0)
        assert chi_square_test(gcd, exact(problem)).p_value < ALPHA, problem


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_accepted_samples_are_draws_of_q(problem: str, batch_size: int) -> None:
    lm, compiled, limit, temperature = PROBLEMS[problem]
    sampler = CARSSampler(lm, compiled, temperature=temperature, batch_size=batch_size)
    samples = sampler.sample([], n=N, max_new_tokens=limit, seed=batch_size)
    assert len(samples) == N and all(s.complete for s in samples)
    result = chi_square_test(samples, exact(problem))
    assert result.outside == 0 and result.p_value > ALPHA, result


def test_samples_are_exact_from_the_first_attempt() -> None:
    """Exactness does not wait for the trie to fill: the first sample of many fresh samplers is
    already a draw of Q (GCD's first sample is not)."""
    q = exact("dead-end")
    firsts = [CARSSampler(DEAD_END_LM, DEAD_END).sample([], n=1, max_new_tokens=6, seed=s)[0] for s in range(N)]
    assert chi_square_test(firsts, q).p_value > ALPHA


def test_a_bounded_trie_stays_exact() -> None:
    lm, compiled, limit, temperature = PROBLEMS["random-table"]
    sampler = CARSSampler(lm, compiled, temperature=temperature, max_nodes=3)
    samples = sampler.sample([], n=N, max_new_tokens=limit, seed=0)
    assert sampler.stats()["nodes"] <= 3
    assert chi_square_test(samples, exact("random-table")).p_value > ALPHA


def test_acceptance_rises_and_beats_plain_rejection() -> None:
    """Plain rejection sampling (CARS with nothing learned) needs 1/Z attempts per sample; CARS
    needs fewer and fewer as its trie fills, and is at 1 once it is complete."""
    q = exact("skewed")  # Z = 17/729: plain rejection needs about 43 attempts per sample
    sampler = CARSSampler(UniformLM(3), SKEWED_COMPILED, batch_size=4)
    sampler.sample([], n=20, max_new_tokens=6, seed=0)
    first = sampler.stats()
    assert first["attempts"] < 20 / q.z / 4
    sampler.sample([], n=200, max_new_tokens=6, seed=1)
    after = sampler.stats()
    late_rate = (after["accepted"] - first["accepted"]) / (after["attempts"] - first["attempts"])
    assert late_rate > first["acceptance_rate"]
    assert sampler.trie([], 6).root.value == pytest.approx(q.z, rel=1e-9)  # every dead prefix known
    sampler.sample([], n=50, max_new_tokens=6, seed=2)
    stats = sampler.stats()
    # The trie is complete: every attempt is accepted (a last batch may draw a few beyond 50).
    assert 50 <= stats["attempts"] - after["attempts"] == stats["accepted"] - after["accepted"] < 50 + 4
    assert stats["model_calls_per_sample"] == stats["model_calls"] / stats["accepted"]
    assert stats["checks_per_sample"] == stats["tokens"] / stats["accepted"]


def test_logprob_sampler_is_the_proposal_probability() -> None:
    """With the trie complete, one attempt proposes w with probability P_T(w) / Z and is always
    accepted: ``logprob_sampler = log P_T(w) − log Z``, and ``logprob_model`` is log P(w)."""
    q = exact("dead-end-cold")
    cold = exact_distribution(DEAD_END_LM, DEAD_END, max_length=6, temperature=1.0)
    sampler = CARSSampler(DEAD_END_LM, DEAD_END, temperature=0.5)
    for k in range(200):
        sampler.sample([], n=8, max_new_tokens=6, seed=k)
        if abs(sampler.trie([], 6).root.value - q.z) <= 1e-9 * q.z:
            break
    for s in sampler.sample([], n=50, max_new_tokens=6, seed=999):
        assert s.logprob_sampler == pytest.approx(q.logp[s.token_ids] - math.log(q.z), abs=1e-5)
        assert s.logprob_model == pytest.approx(cold.logp_model[s.token_ids], abs=1e-5)


def test_save_load_continues_exactly(tmp_path: Path) -> None:
    lm, compiled, limit, temperature = PROBLEMS["random-table"]
    sampler = CARSSampler(lm, compiled, temperature=temperature, batch_size=3)
    sampler.sample([], n=20, max_new_tokens=limit, seed=0)
    path = tmp_path / "cars.npz"
    sampler.save(path)
    loaded = CARSSampler.load(path, lm, compiled, batch_size=3)
    assert loaded.store.stats() == sampler.store.stats()
    assert loaded.sample([], n=9, max_new_tokens=limit, seed=7) == sampler.sample([], n=9, max_new_tokens=limit, seed=7)
    with pytest.raises(ConfigurationError, match="another model"):
        CARSSampler.load(path, random_table(len(TOKENS), 5, 4), compiled)


def test_an_asap_trie_warm_starts_cars(tmp_path: Path) -> None:
    """The tries are the same: ASAp's learned ĉ is CARS's excluded mass, and CARS stays exact."""
    lm, compiled, limit, temperature = PROBLEMS["dead-end"]
    asap = ASApSampler(lm, compiled, temperature=temperature)
    asap.sample([], n=64, max_new_tokens=limit, seed=0)
    asap.save(tmp_path / "asap.npz")
    cars = CARSSampler.load(tmp_path / "asap.npz", lm, compiled)
    samples = cars.sample([], n=N, max_new_tokens=limit, seed=1)
    assert chi_square_test(samples, exact("dead-end")).p_value > ALPHA


def test_same_seed_twice_does_not_repeat_the_random_numbers() -> None:
    """Attempt k of a trie draws from (seed, k): a second call with the same seed continues with
    fresh random numbers instead of replaying the first call's against a different trie."""
    sampler = CARSSampler(UniformLM(3), SKEWED_COMPILED)
    calls = [sampler.sample([], n=200, max_new_tokens=6, seed=5) for _ in range(2)]
    assert [s.token_ids for s in calls[0]] != [s.token_ids for s in calls[1]]
    assert chi_square_test(calls[0] + calls[1], exact("skewed")).p_value > ALPHA


def test_max_attempts_returns_rejected_attempts_not_samples() -> None:
    sampler = CARSSampler(UniformLM(3), SKEWED_COMPILED, batch_size=1, max_attempts=1)
    samples = sampler.sample([], n=30, max_new_tokens=6, seed=0)
    assert len(samples) == 30
    rejected = [s for s in samples if not s.complete]
    assert rejected and all(s.finish_reason == "rejected" for s in rejected)
    assert sampler.stats()["attempts"] == 30


def test_no_sentence_within_the_limit_is_a_dead_end() -> None:
    with pytest.raises(DeadEndError, match="no sentence of the grammar within max_new_tokens=3"):
        CARSSampler(UniformLM(3), SKEWED_COMPILED).sample([], n=1, max_new_tokens=3, seed=0)


def test_argument_errors() -> None:
    with pytest.raises(ConfigurationError, match="`max_attempts` has to be a strictly positive int"):
        CARSSampler(UniformLM(3), SKEWED_COMPILED, max_attempts=0)
    with pytest.raises(ConfigurationError, match="`n` has to be a strictly positive int"):
        CARSSampler(UniformLM(3), SKEWED_COMPILED).sample([], n=0)


def test_generate_dispatches_cars() -> None:
    results = gad.generate(UniformLM(3), BITS, [], SKEWED, sampler="cars", n=1000, max_new_tokens=6, seed=0)
    assert len(results) == 1000 and all(r.complete for r in results)
    assert chi_square_test(results, exact("skewed")).p_value > ALPHA
