"""gad.exact against brute force: every string over a toy alphabet, scored by the model token by
token and checked by lark; and the metrics built on it."""

from __future__ import annotations

import itertools
import math

import lark
import pytest
import torch

import gad
from gad.errors import ConfigurationError
from gad.exact import exact_distribution, expected_future_grammaticality
from gad.lm import HuggingFaceLM, UniformLM, random_hf_model
from gad.metrics import empirical_distribution, iid_kl_curve, importance_estimate, kl_curve, kl_divergence
from gad.samplers import Sample

from problems import AB, AB_COMPILED, AB_GRAMMAR, BITS, SKEWED, SKEWED_COMPILED, TOKENS, random_table

EOS = 2


def brute_force(lm, info, grammar_text, max_length, temperature=1.0, prompt=()):
    """{token ids ending with EOS: P_T} for every token sequence whose text lark accepts."""
    parser = lark.Lark(grammar_text, parser="earley", lexer="dynamic_complete")
    eos = info.eos_token_ids[0]
    words = [t for t in range(info.vocab_size) if t != eos]
    out = {}
    for n in range(max_length):
        for body in itertools.product(words, repeat=n):
            try:
                parser.parse(b"".join(info.token_bytes[t] for t in body).decode())
            except lark.exceptions.LarkError:
                continue
            w = body + (eos,)
            logp = 0.0
            for i, t in enumerate(w):
                row = lm.next_token_logprobs([list(prompt) + list(w[:i])])[0].double()
                logp += float(torch.log_softmax(row / temperature, dim=-1)[t])
            out[w] = logp
    return out


def test_skewed_grammar_has_17_equally_likely_sentences() -> None:
    dist = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)
    q = dist.probs()
    assert len(dist) == 17
    assert math.fsum(q.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(v == pytest.approx(1 / 17, rel=1e-6) for v in q.values())
    assert dist.z == pytest.approx(17 / 3**6, rel=1e-6)
    assert dist.open_mass == 0 and dist.pruned_mass == 0 and dist.leftover == 0
    assert (0, 0, 0, 0, 0, EOS) in q


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_matches_brute_force_on_random_models(seed: int, temperature: float) -> None:
    lm = random_table(len(TOKENS), 5, seed)
    dist = exact_distribution(lm, AB_COMPILED, max_length=4, temperature=temperature)
    expected = brute_force(lm, AB, AB_GRAMMAR, 4, temperature)
    assert set(dist.logp) == set(expected)
    for w, logp in expected.items():
        assert dist.logp[w] == pytest.approx(logp, abs=1e-5)
    assert math.fsum(dist.probs().values()) == pytest.approx(1.0, abs=1e-12)
    if temperature != 1.0:  # logp_model is the untempered model
        w = next(iter(expected))
        assert dist.logp_model[w] == pytest.approx(brute_force(lm, AB, AB_GRAMMAR, 4)[w], abs=1e-5)


def test_leftover_mass_is_reported_not_dropped() -> None:
    # Bound 5: no sentence fits (they need 6 tokens); the 17 viable 5-token prefixes stay open.
    dist = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=5)
    assert len(dist) == 0 and dist.z == 0 and dist.probs() == {}
    assert dist.open_mass == pytest.approx(17 / 3**5, rel=1e-6)
    # Pruning: what is dropped is counted, and the bounds bracket the true Z.
    lm = random_table(len(TOKENS), 6, 3)
    full = exact_distribution(lm, AB_COMPILED, max_length=5)
    pruned = exact_distribution(lm, AB_COMPILED, max_length=5, min_prob=0.05)
    assert pruned.pruned_mass > 0 and len(pruned) < len(full)
    low, high = pruned.z_bounds
    assert low <= full.z + 1e-12 and full.z <= high + 1e-12
    # Mass conservation: sentences + open + pruned + what the mask cut never exceeds 1, and
    # a looser bound only moves mass from "open" to sentences.
    short = exact_distribution(lm, AB_COMPILED, max_length=2)
    assert short.z <= full.z and short.z + short.open_mass >= full.z - 1e-12


def test_prefix_gives_the_expected_future_grammaticality() -> None:
    lm = UniformLM(3)
    assert expected_future_grammaticality(lm, SKEWED_COMPILED, (1,), max_length=6) == pytest.approx(16 / 3**5, rel=1e-6)
    assert expected_future_grammaticality(lm, SKEWED_COMPILED, (0,), max_length=6) == pytest.approx(1 / 3**5, rel=1e-6)
    assert expected_future_grammaticality(lm, SKEWED_COMPILED, (0, 1), max_length=6) == 0.0  # rejected prefix
    dist = exact_distribution(lm, SKEWED_COMPILED, max_length=6, prefix=(1, 0))
    assert len(dist) == 8 and all(w[:2] == (1, 0) for w in dist)


def test_works_with_a_hugging_face_model() -> None:
    model = HuggingFaceLM(random_hf_model(3, seed=1))
    dist = exact_distribution(model, SKEWED_COMPILED, [EOS], max_length=6, batch_size=4)
    expected = brute_force(model, BITS, SKEWED, 6, prompt=[EOS])
    assert set(dist.logp) == set(expected)
    for w, logp in expected.items():
        assert dist.logp[w] == pytest.approx(logp, abs=1e-4)
    assert math.fsum(dist.probs().values()) == pytest.approx(1.0, abs=1e-9)


def test_argument_errors() -> None:
    with pytest.raises(ConfigurationError, match="max_length"):
        exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=0)
    with pytest.raises(ConfigurationError, match="temperature"):
        exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=3, temperature=0)
    with pytest.raises(ConfigurationError, match="max_expanded"):
        exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6, max_expanded=10)


# -- metrics -------------------------------------------------------------------------------------


def test_kl_of_the_exact_distribution_is_zero_and_of_gcd_is_known() -> None:
    dist = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)
    # An empirical distribution equal to Q: KL 0.
    assert kl_divergence(list(dist), dist) == pytest.approx(0.0, abs=1e-12)
    # GCD's distribution on the skewed grammar: 1/2 on 00000, 1/32 on each other sentence.
    gcd = {w: (0.5 if w[0] == 0 else 1 / 32) for w in dist}
    expected = 0.5 * math.log(0.5 * 17) + 0.5 * math.log(17 / 32)
    samples = [w for w, p in gcd.items() for _ in range(round(p * 64))]
    assert kl_divergence(samples, dist) == pytest.approx(expected, rel=1e-9)
    # A sentence Q does not know: infinite.
    assert kl_divergence([(1, 1, EOS)], dist) == math.inf
    # By text: tokenizations add up (here one tokenization per text).
    assert kl_divergence(samples, dist, key=lambda w: BITS.decode_bytes(w)) == pytest.approx(expected, rel=1e-9)


def test_incomplete_samples_are_left_out_and_counted() -> None:
    samples = [Sample((0, 0, 0, 0, 0, EOS), -1.0, -1.0, "eos"), Sample((1, 1), -1.0, -1.0, "length")]
    empirical, incomplete = empirical_distribution(samples)
    assert empirical == {(0, 0, 0, 0, 0, EOS): 1.0} and incomplete == 1
    dist = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)
    curve = kl_curve([samples[1], samples[0]], dist, checkpoints=[1, 2])
    assert curve[0] == (1, math.inf) and curve[1][1] == pytest.approx(math.log(17))


def test_iid_floor_shrinks_like_k_over_2n() -> None:
    dist = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)
    floor = dict(iid_kl_curve(dist, [100, 1000], repeats=30))
    for n in (100, 1000):  # E[KL] ≈ (K - 1) / 2n for K equally likely outcomes
        assert floor[n] == pytest.approx(16 / (2 * n), rel=0.35)


def test_importance_estimate_recovers_z_and_the_ideal_expectation() -> None:
    lm = random_table(len(TOKENS), 6, 4)
    dist = exact_distribution(lm, AB_COMPILED, max_length=5)
    sampler = gad.GCDSampler(lm, AB_COMPILED)
    samples = sampler.sample([], n=4000, max_new_tokens=5, seed=0)
    estimate = importance_estimate(samples)
    assert math.exp(estimate.log_z) == pytest.approx(dist.z, rel=0.1)
    assert estimate.expected_logprob == pytest.approx(dist.expected_logprob(), abs=0.1)
    assert 0 < estimate.ess <= len(samples)
