"""`gad.decoding` and the `gad.generate` / `gad.stream` features it carries: batches of prompts,
chat messages, top-k / top-p, jump-forward, streaming.

Oracles: `GCDSampler` (itself tested against exact enumeration in test_generate.py) for the draws,
the model's own logits recomputed by a fresh `HuggingFaceLM` for every score, a brute-force
truncation and fresh matchers for the sampling distribution, lark's parser for the outputs.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from toy import ARITHMETIC, EOS, JSON_GRAMMAR, TOKENS, lark_parses, tiny_model, toy_compiled, toy_info

import gad
from gad.decoding import Decoder, ForcedTokenizer, truncate
from gad.errors import ConfigurationError
from gad.generate import encode_prompt
from gad.lm import HuggingFaceLM, LanguageModel, NGramLM, UniformLM
from gad.samplers.gcd import GCDSampler

INFO = toy_info()
MODEL_VOCAB = 40
JSON_MODEL = NGramLM.fit(
    [[19, 24, 25, 11, 17, 2, 21, 11, 3, 18, 20, EOS], [17, 27, 21, 11, 28, 18, EOS], [23, 26, 23, EOS]],
    order=3, vocab_size=len(TOKENS), smoothing=0.05,
)  # fmt: skip


def run(decoder: Decoder) -> list[dict[int, list[int]]]:
    steps = []
    while not decoder.done:
        steps.append(decoder.step())
    return steps


# -- the draws are GCD's --------------------------------------------------------------------------


@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("grammar", [ARITHMETIC, JSON_GRAMMAR], ids=["arithmetic", "json"])
def test_decoder_draws_what_the_gcd_sampler_draws(grammar: str, greedy: bool) -> None:
    compiled = toy_compiled(grammar)
    lm = JSON_MODEL if grammar is JSON_GRAMMAR else UniformLM(len(TOKENS))
    expected = GCDSampler(lm, compiled, temperature=0.8, greedy=greedy).sample([5], 6, max_new_tokens=15, seed=3)
    decoder = Decoder(lm, compiled, [[5]], n=6, max_new_tokens=15, temperature=0.8, greedy=greedy, seed=3)
    run(decoder)
    for got, want in zip(decoder.samples[0], expected, strict=True):
        assert got.token_ids == want.token_ids and got.finish_reason == want.finish_reason
        assert got.logprob_model == pytest.approx(want.logprob_model, abs=1e-5)
        assert got.logprob_sampler == pytest.approx(want.logprob_sampler, abs=1e-5)


def test_a_batch_of_prompts_equals_each_prompt_alone() -> None:
    """A transformers model: prompts of different lengths share the model calls (left padding,
    one KV cache), and each prompt gets what it gets alone."""
    model = tiny_model(MODEL_VOCAB, seed=1)
    compiled = toy_compiled(JSON_GRAMMAR, MODEL_VOCAB)
    info = toy_info(MODEL_VOCAB)
    prompts = [[1], [2, 5, 7], [9, 9]]
    together = gad.generate(model, info, prompts, compiled, n=3, max_new_tokens=8, seed=4, temperature=2.0)
    assert len(together) == 3 and all(len(r) == 3 for r in together)
    for prompt, results in zip(prompts, together):
        alone = gad.generate(model, info, prompt, compiled, n=3, max_new_tokens=8, seed=4, temperature=2.0)
        assert [r.token_ids for r in results] == [r.token_ids for r in alone]
        for r, a in zip(results, alone):
            assert r.logprob_model == pytest.approx(a.logprob_model, abs=1e-4)
            assert r.logprob_sampler == pytest.approx(a.logprob_sampler, abs=1e-4)


# -- top-k / top-p --------------------------------------------------------------------------------


def brute_force_kept(row: list[float], top_k: int | None, top_p: float | None) -> set[int]:
    order = sorted(range(len(row)), key=lambda t: (-row[t], t))
    if top_k is not None:
        order = order[:top_k]
    if top_p is not None:
        weights = [math.exp(row[t]) for t in order]
        total, mass, kept = sum(weights), 0.0, []
        for t, w in zip(order, weights):
            kept.append(t)
            mass += w / total
            if mass >= top_p - 1e-12:
                break
        order = kept
    return set(order)


@pytest.mark.parametrize("top_k, top_p", [(1, None), (3, None), (None, 0.5), (None, 0.95), (4, 0.7), (40, None)])
def test_truncate_keeps_the_brute_force_set(top_k: int | None, top_p: float | None) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 12, generator=generator).round(decimals=1)  # rounding makes ties
    out = truncate(torch.log_softmax(logits, dim=-1), top_k, top_p)
    for row, kept in zip(torch.log_softmax(logits, dim=-1).tolist(), out.tolist()):
        assert {t for t, v in enumerate(kept) if v > -math.inf} == brute_force_kept(row, top_k, top_p)


class Random(LanguageModel):
    """A fixed random distribution after each prefix (a function of the prefix)."""

    def __init__(self, vocab_size: int) -> None:
        self._vocab_size = vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def next_token_logprobs(self, prefixes):
        rows = []
        for prefix in prefixes:
            generator = torch.Generator().manual_seed(hash(tuple(prefix)) % 2**31)
            rows.append(torch.log_softmax(torch.randn(self._vocab_size, generator=generator), dim=-1))
        return torch.stack(rows)


RANDOM_LM = Random(len(TOKENS))


@pytest.mark.parametrize("top_k, top_p", [(2, None), (None, 0.6), (3, 0.8)])
def test_top_k_top_p_sample_the_truncated_model_under_the_grammar(top_k: int | None, top_p: float | None) -> None:
    """Every step's ``q`` is recomputed from the model's own distribution: temperature, mask (a
    fresh matcher), truncation of the allowed tokens (brute force), normalisation; the result's
    log-probabilities are the sums of those, and every token is in the truncated set."""
    compiled = toy_compiled(JSON_GRAMMAR)
    results = gad.generate(
        RANDOM_LM, INFO, [5], compiled, n=8, max_new_tokens=12, seed=2, top_k=top_k, top_p=top_p, temperature=1.5
    )
    cut = 0  # steps where the truncation removed a token the grammar allows
    for r in results:
        matcher = gad.GrammarMatcher(compiled)
        logp_model = logp_sampler = 0.0
        for j, token in enumerate(r.token_ids):
            row = RANDOM_LM.next_token_logprobs([[5, *r.token_ids[:j]]])[0]
            tempered = torch.log_softmax(row.double() / 1.5, dim=-1)
            grammatical = matcher.allowed_token_ids()
            masked = torch.full_like(tempered, -math.inf)
            masked[grammatical] = tempered[grammatical]
            allowed = set(grammatical) & brute_force_kept(masked.tolist(), top_k, top_p)
            cut += len(allowed) < len(grammatical)
            assert token in allowed
            logp_sampler += float(tempered[token] - torch.logsumexp(tempered[sorted(allowed)], dim=0))
            logp_model += float(row[token])
            assert matcher.accept_token(token)
        assert r.logprob_model == pytest.approx(logp_model, abs=1e-4)
        assert r.logprob_sampler == pytest.approx(logp_sampler, abs=1e-4)
        if r.complete:
            assert lark_parses(JSON_GRAMMAR, r.text)
    assert cut > 0


class Fixed(LanguageModel):
    """The same distribution after every prefix."""

    def __init__(self, logprobs: list[float]) -> None:
        self.row = torch.log_softmax(torch.tensor(logprobs), dim=-1)

    @property
    def vocab_size(self) -> int:
        return len(self.row)

    def next_token_logprobs(self, prefixes):
        return self.row.expand(len(prefixes), -1).clone()


def test_top_k_applies_to_the_allowed_tokens() -> None:
    """The model's favourite token is not allowed; top_k=1 keeps the most likely *allowed* one (no
    dead end), so every seed gives the greedy result; top_k=2 samples both allowed tokens."""
    info = gad.TokenizerInfo.from_vocab([b"a", b"b", b"c", b"<eos>"], eos_token_id=3)
    compiled = gad.GrammarCompiler(info).compile('start: "a" | "b"')
    lm = Fixed([1.0, 0.0, 5.0, 0.5])  # "c" is the most likely token; the grammar wants "a" or "b"
    greedy = gad.generate(lm, info, [3], compiled, greedy=True)[0]
    assert greedy.text == "a"
    for seed in range(5):
        result = gad.generate(lm, info, [3], compiled, top_k=1, seed=seed)[0]
        assert result.token_ids == greedy.token_ids and result.logprob_sampler == pytest.approx(0.0)
    texts = {r.text for r in gad.generate(lm, info, [3], compiled, top_k=2, n=40, seed=0)}
    assert texts == {"a", "b"}


# -- jump-forward ---------------------------------------------------------------------------------


class Longest(LanguageModel):
    """Longer tokens are more likely (lower id first among equals): greedy decoding picks the
    longest allowed token, as canonical longest-match tokenization does."""

    def __init__(self, tokens: list[bytes]) -> None:
        self.row = torch.log_softmax(torch.tensor([2.0 * len(t) - 1e-3 * i for i, t in enumerate(tokens)]), dim=-1)

    @property
    def vocab_size(self) -> int:
        return len(self.row)

    def next_token_logprobs(self, prefixes):
        return self.row.expand(len(prefixes), -1).clone()


FIXED_KEY = r'start: "{\"a\": [" DIGIT ("," DIGIT)* "]}"' + '\nDIGIT: "1" | "2"'


def test_jump_forward_is_greedy_gcd_without_it() -> None:
    """Under greedy decoding, where the most likely allowed token is the canonical one, jumping
    gives exactly the tokens and scores of GCD without jump-forward — with fewer decisions."""
    compiled = toy_compiled(FIXED_KEY)
    lm = Longest(TOKENS)
    plain = Decoder(lm, compiled, [[EOS]], max_new_tokens=20, greedy=True)
    jumped = Decoder(lm, compiled, [[EOS]], max_new_tokens=20, greedy=True, jump_forward=ForcedTokenizer(INFO))
    plain_steps, jumped_steps = run(plain), run(jumped)
    assert jumped.samples[0][0].token_ids == plain.samples[0][0].token_ids
    assert jumped.samples[0][0].logprob_model == pytest.approx(plain.samples[0][0].logprob_model, abs=1e-5)
    text = b"".join(INFO.token_bytes[t] for t in jumped.samples[0][0].token_ids[:-1]).decode()
    assert lark_parses(FIXED_KEY, text) and text.startswith('{"a": [')
    # '{"', 'a', '":', ' ' are forced and jumped in the first step ('[' is left to the model).
    assert jumped_steps[0][0] == [TOKENS.index(t) for t in (b'{"', b"a", b'":', b" ")]
    assert len(jumped_steps) < len(plain_steps)


def test_jump_forward_scores_every_token_with_the_model() -> None:
    """Sampling with a transformers model: jumped tokens count in ``logprob_model`` (recomputed
    from the model's own logits) and not in ``logprob_sampler``; outputs are grammatical."""
    model = tiny_model(MODEL_VOCAB, seed=2)
    compiled = toy_compiled(FIXED_KEY, MODEL_VOCAB)
    results = gad.generate(
        model, toy_info(MODEL_VOCAB), [7, 7], compiled, n=4, max_new_tokens=14, seed=1, jump_forward=True
    )
    oracle = HuggingFaceLM(tiny_model(MODEL_VOCAB, seed=2))
    for r in results:
        rows = oracle.next_token_logprobs([[7, 7, *r.token_ids[:j]] for j in range(len(r.token_ids))])
        assert r.logprob_model == pytest.approx(sum(float(rows[j, t]) for j, t in enumerate(r.token_ids)), abs=1e-3)
        assert r.token_ids[:4] == tuple(TOKENS.index(t) for t in (b'{"', b"a", b'":', b" "))
        if r.complete:
            assert lark_parses(FIXED_KEY, r.text)
        # Only the four jumped tokens are not drawn: logprob_sampler sums log q over the others.
        logq = 0.0
        matcher = gad.GrammarMatcher(compiled)
        for j, token in enumerate(r.token_ids):
            allowed = matcher.allowed_token_ids()
            if j >= 4:
                logq += float(rows[j, token] - torch.logsumexp(rows[j, allowed], dim=0))
            assert matcher.accept_token(token)
        assert r.logprob_sampler == pytest.approx(logq, abs=1e-3)


def test_forced_text_uses_the_tokenizers_own_encoding(smollm2_tokenizer) -> None:
    info = gad.TokenizerInfo.from_huggingface(smollm2_tokenizer)
    forced = ForcedTokenizer(info, lambda s: smollm2_tokenizer.encode(s, add_special_tokens=False))
    for text in ['": ', '{"name": "', "\n  }", "héllo wörld"]:
        tokens = forced(text.encode())
        assert tokens == smollm2_tokenizer.encode(text, add_special_tokens=False)
        assert b"".join(info.token_bytes[t] for t in tokens) == text.encode()
    longest = ForcedTokenizer(info)  # no encoder: longest match, still spelling the bytes
    assert b"".join(info.token_bytes[t] for t in longest('{"name": "'.encode())) == b'{"name": "'


# -- streaming ------------------------------------------------------------------------------------


def test_stream_yields_the_text_of_generate() -> None:
    compiled = toy_compiled(JSON_GRAMMAR)
    for seed in range(3):
        stream = gad.stream(JSON_MODEL, INFO, [5], compiled, max_new_tokens=20, seed=seed)
        deltas = list(stream)
        result = gad.generate(JSON_MODEL, INFO, [5], compiled, max_new_tokens=20, seed=seed)[0]
        assert "".join(deltas) == result.text == stream.result.text
        assert stream.result.token_ids == result.token_ids
        assert list(stream) == []


def test_stream_never_splits_a_character() -> None:
    tokens = [b"<eos>", b"\xc3", b"\xa9", b"e", b"\xc3\xa9"]
    info = gad.TokenizerInfo.from_vocab(tokens, eos_token_id=0)
    compiled = gad.GrammarCompiler(info).compile('start: ("é" | "e")+')
    deltas = list(gad.stream(UniformLM(5), info, [0], compiled, max_new_tokens=30, seed=1))
    text = "".join(deltas)
    assert "\ufffd" not in text and set(text) <= {"é", "e"} and "é" in text
    assert all(d for d in deltas)


# -- prompts: chat messages and batches -----------------------------------------------------------


def test_messages_go_through_the_chat_template(smollm2_tokenizer) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Can fish fly?"},
    ]
    ids = encode_prompt(smollm2_tokenizer, messages)
    text = smollm2_tokenizer.decode(ids)
    assert text.index("You answer in one word.") < text.index("Can fish fly?")
    assert text.rstrip().endswith("<|im_start|>assistant")
    assert "<|im_start|>system" in text and "<|im_start|>user" in text


def test_messages_generate_one_result_list_per_conversation(smollm2_tokenizer) -> None:
    from gad.lm_testing import random_hf_model

    model = random_hf_model(len(smollm2_tokenizer), seed=0)
    grammar = 'start: "yes" | "no"'
    conversations = [
        [{"role": "system", "content": "Answer yes or no."}, {"role": "user", "content": "Is ice cold?"}],
        [{"role": "user", "content": "Is fire cold?"}],
    ]
    batch = gad.generate(model, smollm2_tokenizer, messages=conversations, grammar=grammar, n=2, max_new_tokens=6, seed=0)
    assert len(batch) == 2 and all(len(results) == 2 for results in batch)
    for conversation, results in zip(conversations, batch):
        alone = gad.generate(model, smollm2_tokenizer, messages=conversation, grammar=grammar, n=2, max_new_tokens=6, seed=0)
        assert [r.token_ids for r in results] == [r.token_ids for r in alone]
        assert all(r.text in ("yes", "no") for r in results if r.complete)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"messages": [{"role": "user"}]}, r'`messages`\[0\] has to be a dict with str "role" and "content"'),
        ({"messages": "hello"}, "`messages` has to be a non-empty list of chat messages"),
        ({"messages": [], "prompt": None}, "`messages` has to be a non-empty list"),
        ({"prompt": [1], "messages": [{"role": "user", "content": "x"}]}, "not both"),
        ({"prompt": [[1], 2.5]}, "`prompt` has to be text, token ids or chat messages"),
        ({"prompt": [1], "top_k": 0}, "`top_k`"),
        ({"prompt": [1], "top_p": 1.5}, "`top_p`"),
        ({"prompt": [1], "sampler": "asap", "top_k": 3}, "GCD option"),
        ({"prompt": [1], "sampler": "smc", "jump_forward": True}, "GCD option"),
        ({"prompt": [1], "seed": 2**64}, r"\[0, 2\*\*63\)"),
    ],
)
def test_bad_prompts_and_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        gad.generate(JSON_MODEL, INFO, grammar=toy_compiled(JSON_GRAMMAR), **kwargs)


def test_generation_does_not_warn() -> None:
    """gad's own use of transformers (the KV cache above all) triggers no deprecation warning."""
    model = tiny_model(MODEL_VOCAB, seed=3)
    compiled = toy_compiled(JSON_GRAMMAR, MODEL_VOCAB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gad.generate(model, toy_info(MODEL_VOCAB), [[1], [2, 3]], compiled, n=2, max_new_tokens=5, seed=0, jump_forward=True)
        gad.generate(model, toy_info(MODEL_VOCAB), [1], compiled, n=2, max_new_tokens=5, seed=0)
