"""ASAp: the distortion GCD makes and ASAp corrects (statistical tests with fixed seeds and
tolerances of 5 binomial standard deviations), ĉ's invariants against the exact c, the length
limit, temperature, separate problems, persistence, and the Hugging Face logits processor."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gad
from gad.errors import ConfigurationError
from gad.exact import exact_distribution, expected_future_grammaticality
from gad.lm import HuggingFaceLM, UniformLM, random_hf_model
from gad.metrics import kl_divergence
from gad.samplers.asap import ASApSampler, TrieStore

from problems import AB, AB_COMPILED, BITS, SKEWED_COMPILED, TOKENS, random_table

EOS = 2
ZEROS = (0, 0, 0, 0, 0, EOS)


def five_sigma(p: float, n: int) -> float:
    """5 standard deviations of a frequency of n Bernoulli(p) draws."""
    return 5 * math.sqrt(p * (1 - p) / n)


def conditional(dist, prefix: tuple[int, ...]) -> dict[int, float]:
    """Q(t | prefix) from an exact distribution over whole sentences."""
    mass: dict[int, float] = {}
    for w, q in dist.probs().items():
        if w[: len(prefix)] == prefix and len(w) > len(prefix):
            mass[w[len(prefix)]] = mass.get(w[len(prefix)], 0.0) + q
    total = sum(mass.values())
    return {t: m / total for t, m in mass.items()}


def complete_trie(
    sampler: ASApSampler, prompt, max_new_tokens: int, z: float, limit: int = 5000, rtol: float = 1e-9
) -> None:
    """Sample until the root's ĉ equals the exact Z (every viable node with mass visited)."""
    trie = sampler.trie(prompt, max_new_tokens)
    for k in range(limit):
        if abs(trie.root.value - z) <= rtol * z:
            return
        sampler.sample(prompt, n=sampler.batch_size, max_new_tokens=max_new_tokens, seed=10_000 + k)
    raise AssertionError(f"the trie did not converge: root ĉ {trie.root.value} vs Z {z}")


# -- the distortion and its correction --------------------------------------------------------------


def test_gcd_picks_00000_half_of_the_time() -> None:
    n = 2000
    samples = gad.GCDSampler(UniformLM(3), SKEWED_COMPILED).sample([], n=n, max_new_tokens=6, seed=0)
    frequency = sum(s.token_ids == ZEROS for s in samples) / n
    assert abs(frequency - 0.5) <= five_sigma(0.5, n)


@pytest.mark.parametrize("batch_size", [1, 16])
def test_asap_picks_00000_one_time_in_17(batch_size: int) -> None:
    n = 2000
    sampler = ASApSampler(UniformLM(3), SKEWED_COMPILED, batch_size=batch_size)
    samples = sampler.sample([], n=n, max_new_tokens=6, seed=0)
    assert all(s.complete for s in samples)
    # The trie is complete long before the second half (37 nodes), so from then on ASAp draws
    # exactly from Q: each of the 17 sentences has probability 1/17.
    late = samples[n // 2 :]
    counts = Counter(s.token_ids for s in late)
    assert len(counts) == 17
    for w, count in counts.items():
        assert abs(count / len(late) - 1 / 17) <= five_sigma(1 / 17, len(late)), w
    # Over all samples the early, GCD-like ones still show, but far less than GCD's 1/2.
    overall = sum(s.token_ids == ZEROS for s in samples) / n
    assert overall < 1 / 17 + 0.03
    exact = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)
    assert sampler.trie([], 6).root.value == pytest.approx(exact.z, rel=1e-9)
    assert kl_divergence(samples, exact) < 0.1 < kl_divergence(
        gad.GCDSampler(UniformLM(3), SKEWED_COMPILED).sample([], n=n, max_new_tokens=6, seed=0), exact
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_a_complete_trie_gives_the_exact_conditionals(temperature: float) -> None:
    """Once every viable prefix is in the trie, q(t | u) = Q_T(t | u) at every node: the target is
    the tempered model conditioned on the grammar (temperature first, then reweighting)."""
    lm = random_table(len(TOKENS), 6, 7)
    exact = exact_distribution(lm, AB_COMPILED, max_length=5, temperature=temperature)
    sampler = ASApSampler(lm, AB_COMPILED, temperature=temperature, batch_size=4)
    complete_trie(sampler, [], 5, exact.z)
    trie = sampler.trie([], 5)
    for node in trie.nodes():
        if not node.expanded or node.value == 0:
            continue
        u = node.tokens()
        q = trie.next_token_distribution(u)
        expected = conditional(exact, u)
        assert {t for t, v in q.items() if v > 0} == set(expected)
        for t, v in expected.items():
            assert q[t] == pytest.approx(v, rel=1e-9)


# -- ĉ invariants -----------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), batch_size=st.sampled_from([1, 3]), temperature=st.sampled_from([1.0, 0.7]))
def test_c_hat_never_increases_and_bounds_the_exact_c(seed: int, batch_size: int, temperature: float) -> None:
    lm = random_table(len(TOKENS), 6, seed)
    sampler = ASApSampler(lm, AB_COMPILED, temperature=temperature, batch_size=batch_size)
    exact_c: dict[tuple[int, ...], float] = {}
    previous: dict[tuple[int, ...], float] = {}
    for k in range(12):
        sampler.sample([], n=batch_size, max_new_tokens=5, seed=seed + k)
        for node in sampler.trie([], 5).nodes():
            u = node.tokens()
            if u not in exact_c:
                exact_c[u] = expected_future_grammaticality(lm, AB_COMPILED, u, max_length=5, temperature=temperature)
            assert node.value >= exact_c[u] * (1 - 1e-9) - 1e-15, u
            assert node.value <= previous.get(u, 1.0), u
            previous[u] = node.value
            if node.expanded:  # the stored ĉ(u) is Σ_t P_T(t | u) ĉ(ut)
                assert node.value == pytest.approx(float(np.dot(node.p, node.c)), rel=1e-12)


def test_samples_cut_by_the_length_limit_count_as_ungrammatical() -> None:
    # Sentences 0^k 1: with N = 4 tokens (EOS included) only k ≤ 2 fit. GCD runs into the limit
    # whenever it draws three 0s (1/8 of the time); ASAp learns that the prefix 000 has ĉ = 0.
    compiled = gad.GrammarCompiler(BITS).compile(gad.Grammar.from_lark('start: /0*1/'))
    n = 800
    gcd = gad.GCDSampler(UniformLM(3), compiled).sample([], n=n, max_new_tokens=4, seed=0)
    cut = sum(not s.complete for s in gcd) / n
    assert abs(cut - 1 / 8) <= five_sigma(1 / 8, n)
    sampler = ASApSampler(UniformLM(3), compiled, batch_size=4)
    samples = sampler.sample([], n=n, max_new_tokens=4, seed=0)
    assert sum(not s.complete for s in samples) <= sampler.batch_size
    assert all(s.finish_reason == "length" and len(s.token_ids) == 4 for s in samples if not s.complete)
    trie = sampler.trie([], 4)
    assert trie.find((0, 0, 0)).value == 0.0
    # The target is Q_4: P(1) : P(01) : P(001) = 1/9 : 1/27 : 1/81.
    exact = exact_distribution(UniformLM(3), compiled, max_length=4)
    assert trie.root.value == pytest.approx(exact.z, rel=1e-9)
    late = samples[n // 2 :]
    for w, q in exact.probs().items():
        frequency = sum(s.token_ids == w for s in late) / len(late)
        assert abs(frequency - q) <= five_sigma(q, len(late)), w


# -- problems, batches, bookkeeping -------------------------------------------------------------------


def test_problems_never_share_a_trie() -> None:
    lm = UniformLM(3)
    sampler = ASApSampler(lm, SKEWED_COMPILED)
    sampler.sample([0], n=8, max_new_tokens=6, seed=0)
    sampler.sample([1], n=8, max_new_tokens=6, seed=0)
    sampler.sample([1], n=8, max_new_tokens=7, seed=0)
    assert set(sampler.store.tries) == {((0,), 6), ((1,), 6), ((1,), 7)}
    assert all(t.num_samples == 8 for t in sampler.store.tries.values())
    # A second sampler starts from nothing (no state shared through defaults or globals).
    other = ASApSampler(lm, SKEWED_COMPILED)
    assert other.store.tries == {} and other.store is not sampler.store
    assert other.trie([0], 6).num_nodes == 1


def test_a_batch_shares_and_updates_one_trie() -> None:
    sampler = ASApSampler(UniformLM(3), SKEWED_COMPILED, batch_size=32)
    samples = sampler.sample([], n=32, max_new_tokens=6, seed=0)
    trie = sampler.trie([], 6)
    prefixes = {s.token_ids[:k] for s in samples for k in range(len(s.token_ids))}
    assert all(trie.find(u) is not None and trie.find(u).expanded for u in prefixes)
    assert trie.num_nodes == len(prefixes) and trie.num_samples == 32 == trie.num_complete
    assert trie.root.value < 1.0


def test_sample_log_probabilities() -> None:
    lm = random_table(len(TOKENS), 6, 2)
    sampler = ASApSampler(lm, AB_COMPILED, batch_size=1)
    first = sampler.sample([], n=1, max_new_tokens=5, seed=3)[0]
    model = sum(float(lm.next_token_logprobs([first.token_ids[:i]])[0, t]) for i, t in enumerate(first.token_ids))
    assert first.logprob_model == pytest.approx(model, abs=1e-5)
    # The first sample of an empty trie is a GCD sample: q = P restricted to the mask.
    gcd = 0.0
    matcher = gad.GrammarMatcher(AB_COMPILED)
    for i, t in enumerate(first.token_ids):
        p = lm.next_token_logprobs([first.token_ids[:i]])[0].exp().double()
        mask = matcher.next_token_mask()
        gcd += math.log(float(p[t] / p[mask].sum()))
        matcher.accept_token(t)
    assert first.logprob_sampler == pytest.approx(gcd, abs=1e-6)


def test_max_nodes_bounds_the_trie_and_sampling_still_works() -> None:
    sampler = ASApSampler(UniformLM(3), SKEWED_COMPILED, max_nodes=5, batch_size=4)
    samples = sampler.sample([], n=200, max_new_tokens=6, seed=0)
    assert sampler.trie([], 6).num_nodes == 5
    assert all(s.complete for s in samples)
    stats = sampler.stats()
    assert stats["nodes"] == 5 and stats["samples"] == 200
    trie = sampler.trie([], 6)
    assert stats["entries"] == sum(len(n.ids) for n in trie.nodes() if n.expanded)
    assert stats["bytes"] == stats["entries"] * 24 + 5 * 200


def test_argument_errors() -> None:
    with pytest.raises(ConfigurationError, match="temperature"):
        ASApSampler(UniformLM(3), SKEWED_COMPILED, temperature=0)
    with pytest.raises(ConfigurationError, match="`batch_size`"):
        ASApSampler(UniformLM(3), SKEWED_COMPILED, batch_size=0)
    with pytest.raises(ConfigurationError, match="max_nodes"):
        ASApSampler(UniformLM(3), SKEWED_COMPILED, max_nodes=0)
    store = TrieStore(SKEWED_COMPILED, temperature=2.0)
    with pytest.raises(ConfigurationError, match="temperature 2.0"):
        ASApSampler(UniformLM(3), SKEWED_COMPILED, store=store)


# -- persistence -------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    lm = random_table(len(TOKENS), 6, 5)
    sampler = ASApSampler(lm, AB_COMPILED, temperature=0.8, batch_size=3)
    sampler.sample([], n=30, max_new_tokens=5, seed=0)
    sampler.sample([1], n=6, max_new_tokens=4, seed=0)
    path = tmp_path / "tries" / "asap.npz"
    sampler.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["asap.npz"]  # no temporary file left
    loaded = ASApSampler.load(path, lm, AB_COMPILED, batch_size=3)
    assert loaded.temperature == 0.8 and set(loaded.store.tries) == set(sampler.store.tries)
    for key, trie in sampler.store.tries.items():
        twin = loaded.store.tries[key]
        assert twin.stats() == trie.stats()
        for node in trie.nodes():
            u = node.tokens()
            other = twin.find(u)
            assert other is not None and other.value == node.value
            if node.expanded:
                assert trie.next_token_distribution(u) == twin.next_token_distribution(u)
    # Continuing from the saved state draws exactly what continuing the original draws.
    a = sampler.sample([], n=9, max_new_tokens=5, seed=42)
    b = loaded.sample([], n=9, max_new_tokens=5, seed=42)
    assert a == b


def test_load_refuses_other_problems(tmp_path: Path) -> None:
    lm = random_table(len(TOKENS), 6, 5)
    sampler = ASApSampler(lm, AB_COMPILED)
    sampler.sample([], n=8, max_new_tokens=5, seed=0)
    path = tmp_path / "asap.npz"
    sampler.save(path)
    other_grammar = gad.GrammarCompiler(AB).compile(gad.Grammar.from_lark('start: "a"+'))
    with pytest.raises(ConfigurationError, match="different grammar"):
        ASApSampler.load(path, lm, other_grammar)
    with pytest.raises(ConfigurationError, match="another model"):
        ASApSampler.load(path, random_table(len(TOKENS), 6, 6), AB_COMPILED)
    # Another format version, and a file that is not a trie at all.
    with np.load(path) as data:
        arrays = dict(data)
    arrays["meta"] = np.frombuffer(bytes(arrays["meta"]).replace(b'"version": 1', b'"version": 99'), dtype=np.uint8)
    np.savez(tmp_path / "v99.npz", **arrays)
    with pytest.raises(ConfigurationError, match="version 99"):
        ASApSampler.load(tmp_path / "v99.npz", lm, AB_COMPILED)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigurationError, match="not a readable ASAp trie"):
        ASApSampler.load(tmp_path / "junk.npz", lm, AB_COMPILED)


# -- Hugging Face ------------------------------------------------------------------------------------


def test_asap_with_a_hugging_face_model_converges() -> None:
    lm = HuggingFaceLM(random_hf_model(3, seed=2))
    exact = exact_distribution(lm, SKEWED_COMPILED, [EOS], max_length=6)
    sampler = ASApSampler(lm, SKEWED_COMPILED, batch_size=8)
    # The model's batched and incremental forward passes differ in the last float32 bits, and
    # some sentences are very unlikely: converge to 0.1%.
    complete_trie(sampler, [EOS], 6, exact.z, limit=200, rtol=1e-3)
    trie = sampler.trie([EOS], 6)
    q = trie.next_token_distribution(())
    for t, v in conditional(exact, ()).items():
        assert q[t] == pytest.approx(v, rel=1e-3)


def test_logits_processor_matches_the_sampler_and_keeps_scores() -> None:
    from gad.integrations.asap_hf import ASApLogitsProcessor

    model = random_hf_model(3, seed=2)
    sampler = ASApSampler(HuggingFaceLM(model), SKEWED_COMPILED, batch_size=4)
    sampler.sample([EOS], n=40, max_new_tokens=6, seed=0)
    processor = ASApLogitsProcessor(SKEWED_COMPILED, 6, store=sampler.store)
    input_ids = torch.tensor([[EOS]])
    scores = model(input_ids).logits[:, -1].detach()
    before = scores.clone()
    out = processor(input_ids, scores)
    assert torch.equal(scores, before)
    q = sampler.trie([EOS], 6).next_token_distribution(())
    assert torch.allclose(out[0].exp(), torch.tensor([q.get(t, 0.0) for t in range(3)], dtype=out.dtype), atol=1e-6)

    # Inside model.generate: every row is a sentence, and the tries grow and persist.
    processor = ASApLogitsProcessor(SKEWED_COMPILED, 6)
    torch.manual_seed(0)
    for _ in range(3):
        out = model.generate(
            torch.tensor([[EOS]] * 4), attention_mask=torch.ones(4, 1, dtype=torch.long), logits_processor=[processor],
            do_sample=True, max_new_tokens=6, top_k=0, pad_token_id=EOS, eos_token_id=EOS,
        )
        assert processor.is_complete(out).all()
    trie = processor.store.get([EOS], 6)
    assert trie.num_samples == 12 and trie.num_nodes > 6 and processor.num_generations == 3


# -- gad.generate -------------------------------------------------------------------------------------


def test_generate_dispatches_to_asap() -> None:
    results = gad.generate(UniformLM(3), BITS, [], SKEWED_COMPILED, sampler="asap", n=400, max_new_tokens=6, seed=0)
    assert len(results) == 400 and all(r.complete for r in results)
    late = results[200:]
    frequency = sum(r.text == "00000" for r in late) / len(late)
    assert abs(frequency - 1 / 17) <= five_sigma(1 / 17, len(late))
    again = gad.generate(UniformLM(3), BITS, [], SKEWED_COMPILED, sampler="asap", n=400, max_new_tokens=6, seed=0)
    assert again == results  # a fresh trie per call: same seed, same samples
    with pytest.raises(ConfigurationError, match="greedy"):
        gad.generate(UniformLM(3), BITS, [], SKEWED_COMPILED, sampler="asap", greedy=True)
