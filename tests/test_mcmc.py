"""MCMC against `gad.exact`: the proposal probability q(x' | x) equals a brute-force sum over cuts
of GCD probabilities computed here from the model and the matcher's masks; the transition kernel
built from q and the acceptance ratio leaves Q exactly invariant (π K = π over every pair of
sentences); chains started from exact draws of Q are still draws of Q after several steps
(Pearson's chi-square against Q, at a size where the test rejects a 5% total-variation bias —
and rejects the same sampler without the Hastings correction); chains from GCD starts approach
Q; a move whose reverse is impossible is never accepted; seeds reproduce runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gad
from gad.errors import ConfigurationError
from gad.lm import UniformLM
from gad.metrics import chi_square_power, chi_square_test
from gad.samplers.mcmc import MCMCSampler

from problems import BITS, DEAD_END, DEAD_END_LM, SKEWED, SKEWED_COMPILED
from test_cars import PROBLEMS, exact

ALPHA = 1e-3
PROPOSALS = ["prefix", "priority", "restart"]


def gcd_logprob(lm, compiled, prefix: tuple[int, ...], token: int, temperature: float) -> float:
    """log g(token | prefix): the tempered model renormalised over the matcher's allowed tokens."""
    matcher = gad.GrammarMatcher(compiled)
    for t in prefix:
        assert matcher.accept_token(t)
    logits = lm.next_token_logprobs([list(prefix)])[0].double()
    tempered = torch.log_softmax(logits / temperature, dim=-1)
    mask = matcher.next_token_mask()[: tempered.shape[0]]
    return float(tempered[token] - torch.logsumexp(tempered[mask], dim=0))


def brute_force_q(sampler: MCMCSampler, lm, compiled, x, y, temperature: float) -> float:
    """q(y | x) = Σ over cuts i (y_<i = x_<i, i < |x|) of ρ(i | x) · Π_{j ≥ i} g(y_j | y_<j)."""
    rho = sampler.cut_weights(sampler.score([], x))
    total = 0.0
    for i in range(len(x)):
        if tuple(x[:i]) != tuple(y[:i]) or i >= len(y):
            break
        logp = sum(gcd_logprob(lm, compiled, tuple(y[:j]), y[j], temperature) for j in range(i, len(y)))
        total += rho[i] * math.exp(logp)
    return total


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("problem", ["dead-end-cold", "random-table"])
def test_proposal_probability_is_the_sum_over_cuts(problem: str, proposal: str) -> None:
    lm, compiled, limit, temperature = PROBLEMS[problem]
    sampler = MCMCSampler(lm, compiled, temperature=temperature, proposal=proposal)
    sentences = list(exact(problem).probs())
    states = {w: sampler.score([], w) for w in sentences}
    for x in sentences:
        for y in sentences:
            expected = brute_force_q(sampler, lm, compiled, x, y, temperature)
            got = math.exp(sampler.log_proposal(states[x], states[y]))
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-12), (x, y)


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("problem", ["dead-end-cold", "random-table", "skewed"])
def test_the_kernel_leaves_q_invariant(problem: str, proposal: str) -> None:
    """K(x, y) = q(y | x) α(x, y) for y ≠ x (proposals that are not sentences stay put): π K = π."""
    lm, compiled, limit, temperature = PROBLEMS[problem]
    sampler = MCMCSampler(lm, compiled, temperature=temperature, proposal=proposal)
    q = exact(problem).probs()
    sentences = list(q)
    states = [sampler.score([], w) for w in sentences]
    kernel = np.zeros((len(sentences), len(sentences)))
    for a, x in enumerate(states):
        for b, y in enumerate(states):
            if a != b:
                kernel[a, b] = math.exp(sampler.log_proposal(x, y) + sampler.log_acceptance(x, y))
        kernel[a, a] = 1 - kernel[a].sum()
    pi = np.array([q[w] for w in sentences])
    assert np.all(kernel >= -1e-12)
    np.testing.assert_allclose(pi @ kernel, pi, rtol=1e-6, atol=1e-12)


N = 3000


def test_the_test_sees_a_5_percent_bias() -> None:
    for problem in ("dead-end", "skewed", "random-table"):
        assert chi_square_power(exact(problem), N, bias=0.05, alpha=ALPHA, trials=100) >= 0.9, problem


class NoHastings(MCMCSampler):
    """The bug the acceptance ratio exists to prevent: α = π(y)/π(x), ignoring q."""

    def log_acceptance(self, current, proposed) -> float:
        if not proposed.complete:
            return -math.inf
        return min(0.0, proposed.log_target - current.log_target) if current.complete else 0.0


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("problem", ["dead-end", "random-table"])
def test_chains_started_at_q_stay_at_q(problem: str, proposal: str) -> None:
    lm, compiled, limit, temperature = PROBLEMS[problem]
    q = exact(problem)
    init = q.sample(N, seed=1)
    sampler = MCMCSampler(lm, compiled, temperature=temperature, proposal=proposal)
    result = sampler.run([], N, steps=3, max_new_tokens=limit, seed=2, init=init)
    assert result.acceptance_rate > 0.05  # the chains do move
    for k in (1, 3):
        assert chi_square_test(result.after(k), q).p_value > ALPHA, k


def test_the_stationarity_test_catches_a_missing_hastings_correction() -> None:
    lm, compiled, limit, temperature = PROBLEMS["dead-end"]
    q = exact("dead-end")
    result = NoHastings(lm, compiled, proposal="restart").run(
        [], N, steps=3, max_new_tokens=limit, seed=2, init=q.sample(N, seed=1)
    )
    assert chi_square_test(result.after(3), q).p_value < ALPHA


def test_chains_from_gcd_approach_q() -> None:
    """On the skewed grammar GCD's first states are far from Q (χ² p ≈ 0); after 30 steps the
    chains' states are indistinguishable from Q at this size, and their KL to Q is below GCD's."""
    q = exact("skewed")
    result = MCMCSampler(UniformLM(3), SKEWED_COMPILED, proposal="priority").run([], 1000, steps=30, max_new_tokens=6, seed=0)
    assert chi_square_test(result.after(0), q).p_value < 1e-10
    assert chi_square_test(result.after(30), q).p_value > ALPHA
    assert gad.metrics.kl_divergence(result.after(30), q) < gad.metrics.kl_divergence(result.after(0), q) / 5


def test_an_impossible_reverse_move_is_never_accepted() -> None:
    """A custom ρ that cuts "1…" sentences only at their EOS: from "00000" a cut at 0 can propose
    "1…", but from "1…" nothing leads back, so α = 0 and no chain ever leaves "00000"."""

    def rho(state) -> np.ndarray:
        weights = np.zeros(len(state.token_ids))
        weights[0 if state.token_ids[0] == 0 else -1] = 1.0
        return weights

    sampler = MCMCSampler(UniformLM(3), SKEWED_COMPILED, proposal=rho)
    zeros, other = sampler.score([], (0, 0, 0, 0, 0, 2)), sampler.score([], (1, 0, 1, 0, 1, 2))
    assert sampler.log_proposal(zeros, other) > -math.inf
    assert sampler.log_proposal(other, zeros) == -math.inf
    assert sampler.log_acceptance(zeros, other) == -math.inf
    result = sampler.run([], 50, steps=5, max_new_tokens=6, seed=0, init=[(0, 0, 0, 0, 0, 2)] * 50)
    assert all(s.token_ids == (0, 0, 0, 0, 0, 2) for chain in result.chains for s in chain)
    assert not all(a for chain in result.accepted for a in chain)  # the "1…" proposals were refused


def test_an_incomplete_start_accepts_the_first_sentence() -> None:
    sampler = MCMCSampler(UniformLM(3), SKEWED_COMPILED, proposal="restart")
    result = sampler.run([], 8, steps=1, max_new_tokens=6, seed=0, init=[(1, 0)] * 8)
    assert all(not s.complete for s in result.after(0))
    for c in range(8):
        assert result.accepted[c][0] == result.proposal_complete[c][0] == result.chains[c][1].complete


def test_seeds_reproduce_runs_and_sample_is_the_final_state() -> None:
    sampler = MCMCSampler(DEAD_END_LM, DEAD_END, steps=4)
    a = sampler.run([], 6, max_new_tokens=6, seed=3)
    b = sampler.run([], 6, max_new_tokens=6, seed=3)
    assert a == b
    assert sampler.sample([], 6, max_new_tokens=6, seed=3) == a.final()
    assert all(len(chain) == 5 for chain in a.chains)
    # Continuing from the final states neither rescores them (no model call) nor changes them.
    calls = sampler.counts["model_calls"]
    again = sampler.run([], 6, steps=0, max_new_tokens=6, init=a.states)
    assert again.after(0) == a.final() and sampler.counts["model_calls"] == calls


def test_argument_errors() -> None:
    with pytest.raises(ConfigurationError, match="`proposal` has to be one of 'prefix', 'priority', 'restart'"):
        MCMCSampler(UniformLM(3), SKEWED_COMPILED, proposal="gibbs")
    with pytest.raises(ConfigurationError, match="`steps` has to be a non-negative int"):
        MCMCSampler(UniformLM(3), SKEWED_COMPILED, steps=-1)
    sampler = MCMCSampler(UniformLM(3), SKEWED_COMPILED)
    with pytest.raises(ConfigurationError, match="`init` has 1 sequences for 2 chains"):
        sampler.run([], 2, max_new_tokens=6, init=[(0, 2)])
    with pytest.raises(ConfigurationError, match="token 2 is not allowed"):
        sampler.run([], 1, max_new_tokens=6, init=[(0, 2)])
    with pytest.raises(ConfigurationError, match="EOS before its end"):
        sampler.run([], 1, max_new_tokens=6, init=[(2, 0)])
    bad = MCMCSampler(UniformLM(3), SKEWED_COMPILED, proposal=lambda state: np.zeros(len(state.token_ids)))
    with pytest.raises(ConfigurationError, match="finite non-negative weights, not all 0"):
        bad.run([], 1, steps=1, max_new_tokens=6, seed=0)


def test_generate_dispatches_mcmc() -> None:
    results = gad.generate(UniformLM(3), BITS, [], SKEWED, sampler="mcmc", n=64, max_new_tokens=6, seed=0)
    assert len(results) == 64 and all(r.complete for r in results)
