"""SMC with AWRS against `gad.exact`: Ẑ and the unnormalised posterior Ẑ·π̂(w) are unbiased (their
means over independent runs equal Z and P(w) within 5 standard errors estimated from the runs),
the posterior approaches Q as particles grow, a dead end that fools GCD is sampled correctly, EOS
is forced at the length limit with the exact weight, critics and twists change the target as
documented, resampling is unbiased, seeds reproduce runs, and a Hugging Face model's KV cache
follows resampling."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import gad
from gad.errors import ConfigurationError, DeadEndError
from gad.exact import exact_distribution
from gad.lm import HuggingFaceLM, UniformLM, random_hf_model
from gad.samplers.smc import RESAMPLING, SMC, effective_sample_size, resample

from problems import BITS, DEAD_END, DEAD_END_INFO, DEAD_END_LM, SKEWED, SKEWED_COMPILED, BigramLM

SKEWED_EXACT = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)


N_DEAD = 6
DEAD_EXACT = exact_distribution(DEAD_END_LM, DEAD_END, max_length=N_DEAD)
AD = (0, 3, 4)


def tokens(particle) -> tuple[int, ...]:
    return particle.token_ids


def runs(smc: SMC, n_particles: int, repeats: int, max_new_tokens: int, seed: int = 0) -> list:
    return [smc.run([], n_particles, max_new_tokens=max_new_tokens, seed=seed + r) for r in range(repeats)]


def within(values: np.ndarray, target: float, sigmas: float = 5.0) -> bool:
    """The mean of independent `values` is within `sigmas` standard errors of `target` (plus a
    float32 rounding floor)."""
    se = values.std(ddof=1) / math.sqrt(len(values))
    return abs(values.mean() - target) <= sigmas * se + 1e-6 * abs(target)


# -- unbiasedness -----------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["recursive", "two-run", "geometric", "exact"])
def test_z_hat_is_unbiased(estimator: str) -> None:
    """E[Ẑ] = Z = P(L(G) ∩ length ≤ 6) on the skewed grammar, for a small population that resamples."""
    results = runs(SMC(UniformLM(3), SKEWED_COMPILED, estimator=estimator), 8, 150, 6)
    z_hat = np.exp([r.log_marginal_likelihood for r in results])
    assert within(z_hat, SKEWED_EXACT.z)
    assert sum(len(r.resampled_at) for r in results) > 0


# A 200-token vocabulary (14 letters and 185 letter pairs, EOS) where the model gives EOS 0.3 and
# each other token 0.7/199, and the grammar allows 2 or 3 letters from a-g: a step finds an
# allowed token only after ~30 rejections, so with mask_after=2 nearly every step switches to
# the mask — the path where the two-run and geometric weights used to be biased upwards.
_LETTERS = "abcdefghijklmn"
_WORDS = [c.encode() for c in _LETTERS] + [(a + b).encode() for a in _LETTERS for b in _LETTERS]
WIDE_INFO = gad.TokenizerInfo.from_vocab(_WORDS[:199] + [b"<eos>"], eos_token_id=199)
WIDE = gad.GrammarCompiler(WIDE_INFO).compile(gad.Grammar.from_lark("start: /[a-g]{2,3}/"))
WIDE_LM = gad.TableLM({}, vocab_size=200, default=[0.7 / 199] * 199 + [0.3])


@pytest.mark.parametrize("estimator", ["recursive", "two-run", "geometric"])
def test_z_hat_is_unbiased_when_steps_switch_to_the_mask(estimator: str) -> None:
    """E[Ẑ] = Z within 4 standard errors, with enough runs that 4 standard errors are below 5% of
    Z, on a problem where almost every step switches to the mask (``mask_after=2``)."""
    exact = exact_distribution(WIDE_LM, WIDE, max_length=4)
    smc = SMC(WIDE_LM, WIDE, estimator=estimator, mask_after=2)
    results = runs(smc, 16, 1000, 4)
    masks = sum(sum(r.masks_per_step) for r in results)
    assert masks > 0.5 * sum(sum(r.tokens_per_step) for r in results)  # most steps switched
    z_hat = np.exp([r.log_marginal_likelihood for r in results])
    se = z_hat.std(ddof=1) / math.sqrt(len(z_hat))
    assert 4 * se < 0.05 * exact.z
    assert abs(z_hat.mean() - exact.z) <= 4 * se


@pytest.mark.parametrize("resampling", RESAMPLING)
def test_unnormalised_posterior_is_unbiased_for_each_sentence(resampling: str) -> None:
    """E[Ẑ · π̂(w)] = P(w) · 1[w ∈ L(G)] for every sentence w: the sharpest check of SMC, exact for
    any number of particles (here 16, on the dead-end grammar, EOS forced at the limit)."""
    smc = SMC(DEAD_END_LM, DEAD_END, resampling=resampling)
    results = runs(smc, 16, 150, N_DEAD)
    for w, logp in DEAD_EXACT.logp.items():
        unnormalised = np.array([
            math.exp(r.log_marginal_likelihood) * r.posterior(key=tokens).get(w, 0.0) for r in results
        ])  # fmt: skip
        assert within(unnormalised, math.exp(logp)), (w, unnormalised.mean(), math.exp(logp))


def test_temperature_comes_before_the_grammar() -> None:
    """At T = 0.5 the target is the tempered model conditioned on the grammar: E[Ẑ] is the exact Z
    of ``P^(1/T)`` (renormalised per step), and the posterior follows its Q."""
    exact = exact_distribution(DEAD_END_LM, DEAD_END, max_length=N_DEAD, temperature=0.5)
    results = runs(SMC(DEAD_END_LM, DEAD_END, temperature=0.5), 16, 150, N_DEAD)
    assert within(np.exp([r.log_marginal_likelihood for r in results]), exact.z)
    assert abs(exact.z - DEAD_EXACT.z) > 0.1 * DEAD_EXACT.z


def test_gcd_is_fooled_by_the_dead_end_and_smc_is_not() -> None:
    q = DEAD_EXACT.probs()[AD]
    assert 0.45 < q < 0.6
    n = 1000
    gcd = gad.GCDSampler(DEAD_END_LM, DEAD_END).sample([], n=n, max_new_tokens=N_DEAD, seed=0)
    frequency = sum(s.token_ids == AD for s in gcd) / n
    assert abs(frequency - q) > 20 * math.sqrt(q * (1 - q) / n)  # GCD: about 0.05
    results = runs(SMC(DEAD_END_LM, DEAD_END), 256, 25, N_DEAD)
    posterior = np.array([r.posterior(key=tokens).get(AD, 0.0) for r in results])
    assert within(posterior, q)


def test_posterior_approaches_exact_q_as_particles_grow() -> None:
    exact = DEAD_EXACT.probs()

    def tv(result) -> float:
        post = result.posterior(key=tokens)
        return 0.5 * sum(abs(post.get(w, 0.0) - q) for w, q in exact.items()) + 0.5 * sum(
            v for w, v in post.items() if w not in exact
        )

    distances = {}
    for n_particles in (8, 64, 512):
        values = np.array([tv(r) for r in runs(SMC(DEAD_END_LM, DEAD_END), n_particles, 12, N_DEAD)])
        distances[n_particles] = (values.mean(), values.std(ddof=1) / math.sqrt(len(values)))
    (d8, s8), (d64, s64), (d512, s512) = distances[8], distances[64], distances[512]
    assert d8 - d64 > 3 * math.hypot(s8, s64) and d64 - d512 > 3 * math.hypot(s64, s512), distances
    assert d512 < 0.1


# -- ends: EOS, the length limit, dead particles ------------------------------------------------------


def test_eos_is_forced_at_the_limit_with_the_exact_weight() -> None:
    """With max_new_tokens = 3 only "ac", "ad" (2 tokens + EOS) fit: a particle at the limit takes
    EOS with weight P(EOS | u) if u is a sentence, else it stops with weight 0 ("length")."""
    exact = exact_distribution(DEAD_END_LM, DEAD_END, max_length=3)
    assert set(exact.logp) == {(0, 2, 4), (0, 3, 4)}
    results = runs(SMC(DEAD_END_LM, DEAD_END, ess_threshold=0.0), 32, 100, 3)
    for r in results:
        for p in r.particles:
            assert len(p.token_ids) <= 3
            if p.finish_reason == "length":
                assert p.log_weight == -math.inf and p.token_ids[-1] != 4 and len(p.token_ids) == 2
            else:
                assert p.complete and p.token_ids[-1] == 4 and p.log_weight > -math.inf
    z_hat = np.exp([r.log_marginal_likelihood for r in results])
    assert within(z_hat, exact.z)


def test_particles_stop_at_eos_while_others_go_on() -> None:
    result = SMC(DEAD_END_LM, DEAD_END).run([], 64, max_new_tokens=N_DEAD, seed=1)
    steps = result.tokens_per_step
    assert steps[0] == steps[1] == 64 and steps[-1] < steps[2]
    assert len(result.ess_history) == len(steps) == len(result.checks_per_step)
    lengths = Counter(len(p.token_ids) for p in result.particles)
    assert len(lengths) > 1


def test_all_particles_dead_is_not_a_crash() -> None:
    result = SMC(UniformLM(3), SKEWED_COMPILED).run([], 8, max_new_tokens=3, seed=0)  # sentences need 6
    assert result.log_marginal_likelihood == -math.inf and result.posterior() == {}
    assert all(p.finish_reason == "length" and not p.complete for p in result.particles)
    assert np.all(result.weights == 0) and result.ess == 0
    with pytest.raises(ConfigurationError, match="weight 0"):
        result.draw(4)
    with pytest.raises(DeadEndError, match="every one of the 8 SMC particles has weight 0"):
        SMC(UniformLM(3), SKEWED_COMPILED).sample([], 8, max_new_tokens=3, seed=0)
    # the model puts almost all its mass on a token the grammar rejects; max_rejects=1
    info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    compiled = gad.GrammarCompiler(info).compile('start: "0"+')
    lm = BigramLM({0: [1e-9, 1, 1e-9], 1: [1, 1, 1], 2: [1, 1, 1]}, start=[1e-9, 1, 1e-9])
    rejected = SMC(lm, compiled, max_rejects=1, mask_after=None).run([], 8, max_new_tokens=4, seed=0)
    assert all(p.finish_reason == "rejected" for p in rejected.particles)
    assert rejected.log_marginal_likelihood == -math.inf
    # with the mask fallback the same particles survive, with their (tiny) exact weights
    rescued = SMC(lm, compiled, max_rejects=1, mask_after=1).run([], 8, max_new_tokens=4, seed=0)
    assert all(p.complete for p in rescued.particles) and sum(rescued.masks_per_step) > 0
    assert -60 < rescued.log_marginal_likelihood < -40  # three tokens of probability 1e-9, then EOS


# -- critic and twist ---------------------------------------------------------------------------------


def ones_at_most_two(text: str) -> bool:
    return text.count("1") <= 2


def ones_penalty(text: str) -> float:
    return -0.7 * text.count("1")


@pytest.mark.parametrize(
    "critic, twist",
    [(ones_at_most_two, False), (ones_at_most_two, True), (ones_penalty, False), (ones_penalty, True)],
)
def test_critic_reweights_the_target(critic, twist) -> None:
    """Target P · 1[L(G)] · φ: E[Ẑ · π̂(w)] = P(w) φ(w), at the end or as a twist on prefixes
    (both critics are monotone in the prefix, so they are valid twists)."""
    phi = {}
    for w, logp in SKEWED_EXACT.logp.items():
        value = critic(BITS.decode_bytes(w).decode())
        phi[w] = logp + (0.0 if value is True else -math.inf if value is False else value)
    smc = SMC(UniformLM(3), SKEWED_COMPILED, critic=critic, twist=twist)
    results = runs(smc, 16, 100, 6)
    for w, log_gamma in phi.items():
        unnormalised = np.array([
            math.exp(r.log_marginal_likelihood) * r.posterior(key=tokens).get(w, 0.0) for r in results
        ])  # fmt: skip
        assert within(unnormalised, math.exp(log_gamma)), (w, unnormalised.mean(), math.exp(log_gamma))
    if twist and critic is ones_at_most_two:  # the twist kills particles as soon as a third "1" comes
        assert any(p.finish_reason == "rejected" for r in results for p in r.particles)


def test_critic_errors() -> None:
    with pytest.raises(ConfigurationError, match="`twist=True` evaluates the critic on prefixes, but there is no `critic`"):
        SMC(UniformLM(3), SKEWED_COMPILED, twist=True)
    with pytest.raises(ConfigurationError, match="`critic` has to be a callable"):
        SMC(UniformLM(3), SKEWED_COMPILED, critic="json")  # type: ignore[arg-type]
    smc = SMC(UniformLM(3), SKEWED_COMPILED, critic=lambda text: "yes")  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigurationError, match="`critic` returned 'yes'"):
        smc.run([], 4, max_new_tokens=6, seed=0)


# -- resampling and the population ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", RESAMPLING)
def test_resampling_is_unbiased(scheme: str) -> None:
    w = np.array([0.05, 0.4, 0.0, 0.3, 0.25])
    n, repeats = 7, 3000
    rng = np.random.default_rng(0)
    counts = np.array([np.bincount(resample(w, n, rng, scheme), minlength=5) for _ in range(repeats)])
    assert counts.sum(axis=1).tolist() == [n] * repeats and counts[:, 2].max() == 0
    mean, se = counts.mean(axis=0), counts.std(axis=0, ddof=1) / math.sqrt(repeats)
    assert np.all(np.abs(mean - n * w) <= 5 * se + 1e-12)
    if scheme == "systematic":  # each count is floor or ceil of n·w
        assert np.all((counts >= np.floor(n * w)) & (counts <= np.ceil(n * w)))


def test_effective_sample_size() -> None:
    assert effective_sample_size([0.0, 0.0, 0.0, 0.0]) == pytest.approx(4)
    assert effective_sample_size([0.0, -math.inf, -math.inf]) == pytest.approx(1)
    assert effective_sample_size([-math.inf, -math.inf]) == 0
    assert effective_sample_size(np.log([1, 3])) == pytest.approx(16 / 10)


def test_seeds_reproduce_runs() -> None:
    smc = SMC(DEAD_END_LM, DEAD_END, ess_threshold=0.9)
    a, b = (smc.run([], 32, max_new_tokens=N_DEAD, seed=5) for _ in range(2))
    assert a == b
    assert smc.run([], 32, max_new_tokens=N_DEAD, seed=6).particles != a.particles
    assert a.resampled_at and sum(a.checks_per_step) > 0


def test_result_fields() -> None:
    result = SMC(DEAD_END_LM, DEAD_END).run([], 64, max_new_tokens=N_DEAD, seed=0)
    assert result.weights.sum() == pytest.approx(1)
    assert all(0 <= e <= 64 for e in result.ess_history)
    assert math.exp(result.log_marginal_likelihood) == pytest.approx(np.exp(result.log_weights).mean())
    posterior = result.posterior()
    assert sum(posterior.values()) == pytest.approx(1) and list(posterior.values()) == sorted(posterior.values(), reverse=True)
    assert set(posterior) <= {"ac", "ad", "bc", "abc", "abbc", "abbbc"} and "ad" in posterior
    for p in result.particles:
        assert p.text == DEAD_END_INFO.decode_bytes(p.token_ids).decode()
    drawn = result.draw(10, seed=0)
    assert len(drawn) == 10 and all(p.complete for p in drawn)
    assert 1 <= result.checks_per_token <= 3
    assert "64 particles" in repr(result)


def test_without_resampling_the_weight_is_model_over_proposal() -> None:
    """No resampling, T = 1, no critic: each particle's weight is P(w) / q̂(w), q̂ the AWRS proposal
    with every step's normaliser replaced by its estimate."""
    result = SMC(DEAD_END_LM, DEAD_END, ess_threshold=0.0).run([], 64, max_new_tokens=N_DEAD, seed=0)
    assert result.resampled_at == ()
    for p in result.particles:
        if p.complete:
            assert p.log_weight == pytest.approx(p.logprob_model - p.logprob_proposal, abs=1e-5)


def test_progress() -> None:
    ticks = []
    SMC(UniformLM(3), SKEWED_COMPILED).run([], 4, max_new_tokens=6, seed=0, progress=ticks.append)
    assert ticks == [1] * 6
    SMC(UniformLM(3), SKEWED_COMPILED).run([], 4, max_new_tokens=6, seed=0, progress=True)


def test_argument_errors() -> None:
    for kwargs, match in [
        ({"ess_threshold": 1.5}, r"`ess_threshold` has to be a float in \[0, 1\], but is 1.5"),
        ({"resampling": "residual"}, "`resampling` has to be one of 'multinomial', 'stratified', 'systematic'"),
        ({"estimator": "paper"}, "`estimator` has to be one of"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            SMC(UniformLM(3), SKEWED_COMPILED, **kwargs)
    with pytest.raises(ConfigurationError, match="`n` has to be a strictly positive int"):
        SMC(UniformLM(3), SKEWED_COMPILED).run([], 0)


# -- gad.generate and Hugging Face models -----------------------------------------------------------


def test_generate_dispatches_smc() -> None:
    results = gad.generate(UniformLM(3), BITS, [], SKEWED, sampler="smc", n=128, max_new_tokens=6, seed=0)
    assert len(results) == 128 and all(r.complete for r in results)
    zeros = sum(r.text == "00000" for r in results) / len(results)
    assert zeros < 0.25  # GCD: 0.5; Q: 1/17
    again = gad.generate(UniformLM(3), BITS, [], SKEWED, sampler="smc", n=128, max_new_tokens=6, seed=0)
    assert again == results


def test_hugging_face_cache_follows_resampling() -> None:
    """Resampling after every step reorders, duplicates and drops rows; HuggingFaceLM keys its
    cache by prefix, so each step is one incremental forward pass, and the run equals one that
    recomputes every prefix from scratch."""

    class Uncached(HuggingFaceLM):
        def next_token_logprobs(self, prefixes):
            self.reset()
            return super().next_token_logprobs(prefixes)

    model = random_hf_model(5, seed=3)
    cached = HuggingFaceLM(model)
    prompt = [1, 2]
    result = SMC(cached, DEAD_END, ess_threshold=1.0).run(prompt, 16, max_new_tokens=N_DEAD, seed=0)
    assert cached.stats["full"] == 1 and cached.stats["incremental"] == len(result.tokens_per_step) - 1
    assert len(result.resampled_at) >= 2
    reference = SMC(Uncached(model), DEAD_END, ess_threshold=1.0).run(prompt, 16, max_new_tokens=N_DEAD, seed=0)
    assert [p.token_ids for p in result.particles] == [p.token_ids for p in reference.particles]
    assert np.allclose(result.log_weights, reference.log_weights, atol=1e-4)
