"""gad.generate and the GCD sampler: exact distributions on toy models, seeds, grammar validity,
arguments; one test with the real SmolLM2."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

import gad
from gad.errors import ConfigurationError, DeadEndError
from gad.lm import NGramLM, TableLM, UniformLM
from gad.lm_testing import random_hf_model
from gad.samplers.gcd import GCDSampler
from toy import ARITHMETIC, EOS, GRAMMARS, JSON_GRAMMAR, TOKENS, lark_parses, toy_info

INFO = toy_info()


def tokenize(text: str) -> list[int]:
    """Greedy longest-match tokenization with the toy vocabulary (for training toy models)."""
    data, ids = text.encode(), []
    while data:
        best = max((t for t in range(1, len(TOKENS)) if data.startswith(TOKENS[t])), key=lambda t: len(TOKENS[t]))
        ids.append(best)
        data = data[len(TOKENS[best]) :]
    return ids


def is_viable_prefix(compiled: gad.CompiledGrammar, token_ids: tuple[int, ...]) -> bool:
    matcher = gad.GrammarMatcher(compiled)
    return all(matcher.accept_token(t) for t in token_ids)


def check_results(results: list[gad.GenerationResult], grammar_text: str, compiled: gad.CompiledGrammar) -> None:
    """Complete results parse with an independent parser; incomplete ones are viable prefixes."""
    for r in results:
        assert r.complete == (r.finish_reason == "eos")
        if r.complete:
            assert r.token_ids[-1] in compiled.tokenizer_info.eos_token_ids
            assert lark_parses(grammar_text, r.text), r.text
            if grammar_text is JSON_GRAMMAR:
                json.loads(r.text)
        else:
            assert is_viable_prefix(compiled, r.token_ids), r.text


def corpus_model(texts: list[str], order: int = 3) -> NGramLM:
    return NGramLM.fit([tokenize(t) + [EOS] for t in texts], order=order, vocab_size=len(TOKENS), smoothing=0.05)


ARITHMETIC_MODEL = corpus_model(["1+2", "(1+2)*12", "2/1", "12 - 2", "-1", "1.5*2"])
JSON_MODEL = corpus_model(['{"a": [1, 2]}', '[true, null]', '{"a": {"a": 12}}', '"a"', "[1.5]"])


# -- every output is grammatical ------------------------------------------------------------------


@pytest.mark.parametrize(
    "grammar_text, model",
    [(ARITHMETIC, ARITHMETIC_MODEL), (JSON_GRAMMAR, JSON_MODEL), (ARITHMETIC, UniformLM(len(TOKENS)))],
    ids=["arithmetic-ngram", "json-ngram", "arithmetic-uniform"],
)
@pytest.mark.parametrize("greedy, temperature", [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_every_output_is_grammatical(grammar_text: str, model, greedy: bool, temperature: float) -> None:
    compiled = gad.GrammarCompiler(INFO).compile(grammar_text)
    results = gad.generate(model, INFO, [], compiled, n=12, max_new_tokens=25, seed=1, greedy=greedy, temperature=temperature)
    assert len(results) == 12
    check_results(results, grammar_text, compiled)
    if model is not ARITHMETIC_MODEL or not greedy:
        assert any(r.complete for r in results)


def test_tiny_hf_model_outputs_are_grammatical() -> None:
    compiled = gad.GrammarCompiler(gad.TokenizerInfo.from_vocab(TOKENS, eos_token_id=EOS, vocab_size=48)).compile(JSON_GRAMMAR)
    model = random_hf_model(48, seed=2)  # more logits than tokens: ids 33..47 are never allowed
    results = gad.generate(model, compiled.tokenizer_info, [1, 2], compiled, n=6, max_new_tokens=20, seed=0)
    check_results(results, JSON_GRAMMAR, compiled)
    assert all(t < len(TOKENS) for r in results for t in r.token_ids)


# -- seeds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [JSON_MODEL, random_hf_model(len(TOKENS), seed=5)], ids=["ngram", "tiny-llama"])
def test_batch_equals_single_sequences_under_the_same_seed(model) -> None:
    compiled = gad.GrammarCompiler(INFO).compile(JSON_GRAMMAR)
    batch = gad.generate(model, INFO, [19], compiled, n=5, max_new_tokens=15, seed=10)
    singles = [gad.generate(model, INFO, [19], compiled, n=1, max_new_tokens=15, seed=10 + i)[0] for i in range(5)]
    assert [r.token_ids for r in batch] == [r.token_ids for r in singles]
    for a, b in zip(batch, singles):
        assert a.logprob_model == pytest.approx(b.logprob_model, abs=1e-4)
        assert a.logprob_sampler == pytest.approx(b.logprob_sampler, abs=1e-4)
    assert len({r.token_ids for r in batch}) > 1, "different sequences of a batch should differ"
    again = gad.generate(model, INFO, [19], compiled, n=5, max_new_tokens=15, seed=10)
    assert again == batch


# -- exact distributions on a finite language -----------------------------------------------------

# The language {"a", "ab", "bb"} over the vocabulary <eos>, "a", "b", "ab".
SMALL_TOKENS = [b"<eos>", b"a", b"b", b"ab"]
SMALL_LANGUAGE = {b"a", b"ab", b"bb"}
SMALL_GRAMMAR = 'start: "a" | "ab" | "bb"'
SMALL_INFO = gad.TokenizerInfo.from_vocab(SMALL_TOKENS, eos_token_id=0)
# P(· | prefix) of a fixed model (weights, normalised by TableLM); other prefixes: uniform.
SMALL_TABLE = {(): [1, 2, 3, 4], (1,): [5, 1, 2, 2], (2,): [1, 1, 1, 1], (3,): [1, 3, 3, 3], (1, 2): [1, 1, 1, 1]}


def allowed(prefix: bytes, token: int) -> bool:
    """The brute-force oracle: does some sentence start with prefix + token (EOS: is a sentence)?"""
    if token == 0:
        return prefix in SMALL_LANGUAGE
    return any(s.startswith(prefix + SMALL_TOKENS[token]) for s in SMALL_LANGUAGE)


def gcd_distribution(temperature: float) -> dict[tuple[int, ...], float]:
    """The exact probability of each complete token sequence under GCD, by enumeration."""
    probs = {k: torch.tensor(v, dtype=torch.float64) / sum(v) for k, v in SMALL_TABLE.items()}
    out: dict[tuple[int, ...], float] = {}

    def walk(tokens: tuple[int, ...], mass: float) -> None:
        text = b"".join(SMALL_TOKENS[t] for t in tokens)
        p = probs.get(tokens, torch.full((4,), 0.25, dtype=torch.float64)) ** (1 / temperature)
        q = torch.tensor([p[t] if allowed(text, t) else 0.0 for t in range(4)])
        q = q / q.sum()
        for t in range(4):
            if q[t] > 0:
                if t == 0:
                    out[tokens + (0,)] = mass * float(q[t])
                else:
                    walk(tokens + (t,), mass * float(q[t]))

    walk((), 1.0)
    return out


def model_logprob(tokens: tuple[int, ...]) -> float:
    total = 0.0
    for i, t in enumerate(tokens):
        row = SMALL_TABLE.get(tokens[:i], [1, 1, 1, 1])
        total += math.log(row[t] / sum(row))
    return total


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_gcd_samples_its_exact_distribution(temperature: float) -> None:
    lm = TableLM(SMALL_TABLE, vocab_size=4, default="uniform")
    exact = gcd_distribution(temperature)
    assert sum(exact.values()) == pytest.approx(1.0)
    n = 3000
    results = gad.generate(lm, SMALL_INFO, [], SMALL_GRAMMAR, n=n, max_new_tokens=5, seed=0, temperature=temperature)
    counts = Counter(r.token_ids for r in results)
    assert set(counts) <= set(exact)
    total_variation = 0.5 * sum(abs(counts[k] / n - p) for k, p in exact.items())
    assert total_variation < 0.03, (counts, exact)
    for r in results[:50]:
        assert r.complete and r.text.encode() in SMALL_LANGUAGE
        assert r.logprob_sampler == pytest.approx(math.log(exact[r.token_ids]), abs=1e-6)
        assert r.logprob_model == pytest.approx(model_logprob(r.token_ids), abs=1e-5)


def test_greedy_takes_the_most_likely_allowed_token() -> None:
    lm = TableLM(SMALL_TABLE, vocab_size=4, default="uniform")
    # From (): "ab" (weight 4) is the most likely token and allowed; then only EOS.
    (result,) = gad.generate(lm, SMALL_INFO, [], SMALL_GRAMMAR, greedy=True)
    assert result.token_ids == (3, 0) and result.text == "ab" and result.complete
    assert result.logprob_sampler == 0.0
    assert result.logprob_model == pytest.approx(math.log(0.4) + math.log(0.1))
    # EOS is never allowed before the text is a sentence: the model prefers EOS after "b" (1/4,
    # ties broken by the lowest id), but only "b" can follow.
    table = {(): [9, 0, 1, 0], (2,): [9, 1, 1, 1]}
    (result,) = gad.generate(TableLM(table, 4, default="uniform"), SMALL_INFO, [], SMALL_GRAMMAR, greedy=True)
    assert result.token_ids == (2, 2, 0) and result.text == "bb"


def test_length_limit_is_incomplete_even_on_a_sentence() -> None:
    # After "a" the text is a sentence, but the sequence is cut before the model ended it.
    table = {(): [0, 1, 0, 0]}
    (result,) = gad.generate(TableLM(table, 4, default="uniform"), SMALL_INFO, [], SMALL_GRAMMAR, max_new_tokens=1)
    assert result.text == "a" and result.token_ids == (1,)
    assert not result.complete and result.finish_reason == "length"


def test_zero_probability_on_every_allowed_token_is_a_dead_end() -> None:
    lm = TableLM({(): [1, 1, 0, 0], (2,): [1, 1, 0, 1]}, vocab_size=4)
    with pytest.raises(DeadEndError, match="probability 0"):
        gad.generate(lm, SMALL_INFO, [], 'start: "bb"', seed=0)


def test_gcd_sampler_reports_progress() -> None:
    compiled = gad.GrammarCompiler(SMALL_INFO).compile(SMALL_GRAMMAR)
    steps = []
    samples = GCDSampler(UniformLM(4), compiled).sample([], 3, max_new_tokens=4, seed=0, progress=steps.append)
    assert len(samples) == 3 and steps and set(steps) == {1}
    assert len(steps) == max(len(s.token_ids) for s in samples)


# -- grammar and prompt forms, arguments ----------------------------------------------------------


def test_grammar_forms(tmp_path: Path) -> None:
    path = tmp_path / "small.lark"
    path.write_text(SMALL_GRAMMAR)
    lm = TableLM(SMALL_TABLE, vocab_size=4, default="uniform")
    forms = [
        SMALL_GRAMMAR, path, str(path), gad.Grammar.from_lark(SMALL_GRAMMAR),
        gad.GrammarCompiler(SMALL_INFO).compile(SMALL_GRAMMAR),
    ]  # fmt: skip
    outputs = {gad.generate(lm, SMALL_INFO, [], g, n=4, seed=3)[0].token_ids for g in forms}
    assert len(outputs) == 1


def test_text_prompts_with_a_hugging_face_tokenizer(gpt2_tokenizer) -> None:
    model = random_hf_model(len(gpt2_tokenizer), seed=0)
    grammar = 'start: "yes" | "no"'
    results = gad.generate(model, gpt2_tokenizer, "Is it?", grammar, n=2, max_new_tokens=4, seed=0)
    for r in results:
        assert r.complete and r.text in {"yes", "no"}
        assert r.token_ids[-1] == gpt2_tokenizer.eos_token_id
    # The compiled grammar is cached per tokenizer: the second call compiles nothing.
    first = gad.compile_grammar(grammar, gpt2_tokenizer, model)
    assert gad.compile_grammar(grammar, gpt2_tokenizer, model) is first
    assert first.vocab_size == model.config.vocab_size
    with pytest.raises(ConfigurationError, match="no chat template"):
        gad.generate(model, gpt2_tokenizer, "Is it?", grammar, chat_template=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0}, r"^`temperature` has to be a strictly positive float, but is 0$"),
        ({"temperature": -1.5}, "`temperature` has to be a strictly positive float, but is -1.5"),
        ({"temperature": float("inf")}, "`temperature`"),
        ({"n": 0}, "`n` has to be a strictly positive int, but is 0"),
        ({"max_new_tokens": 0}, "`max_new_tokens` has to be a strictly positive int"),
        ({"seed": -1}, "`seed` has to be None or a non-negative int"),
        ({"sampler": "smc", "greedy": True}, "`greedy` has no meaning for sampler 'smc'"),
        ({"sampler": "beam"}, "`sampler` has to be one of 'gcd', 'asap', 'smc'"),
        ({"prompt": "text"}, "a text prompt needs a transformers tokenizer"),
        ({"grammar": 42}, "`grammar` has to be"),
        ({"model": "gpt2"}, "`model` has to be"),
    ],
)
def test_argument_errors(kwargs: dict, match: str) -> None:
    args = {"model": UniformLM(4), "tokenizer": SMALL_INFO, "prompt": [], "grammar": SMALL_GRAMMAR, **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        gad.generate(**args)


def test_a_grammar_without_eos_cannot_be_sampled() -> None:
    info = gad.TokenizerInfo([b"a", b"b"])
    with pytest.raises(ConfigurationError, match="no EOS token"):
        gad.generate(UniformLM(2), info, [], 'start: "a"')


def test_result_is_frozen() -> None:
    (result,) = gad.generate(UniformLM(4), SMALL_INFO, [], SMALL_GRAMMAR, seed=0)
    with pytest.raises(AttributeError):
        result.text = "x"  # type: ignore[misc]


# -- the real model -------------------------------------------------------------------------------


def test_smollm2_json() -> None:
    from gad.assets import load_default_model

    model, tokenizer = load_default_model()
    prompt = "Give a short JSON object describing a fictional person, with the keys name, age and city."
    (greedy,) = gad.generate(model, tokenizer, prompt, GRAMMARS / "json.lark", greedy=True, max_new_tokens=40)
    assert greedy.complete, greedy
    assert set(json.loads(greedy.text)) == {"name", "age", "city"}
    compiled = gad.compile_grammar(GRAMMARS / "json.lark", tokenizer, model)
    sampled = gad.generate(model, tokenizer, prompt, compiled, n=2, max_new_tokens=8, seed=0)
    check_results(sampled, JSON_GRAMMAR, compiled)
    for r in itertools.chain([greedy], sampled):
        assert math.isfinite(r.logprob_model) and r.logprob_model <= 0


def test_a_shipped_grammar_by_name():
    import gad

    from gad.generate import compile_grammar

    info = gad.TokenizerInfo.from_vocab([b"<eos>"] + [bytes([b]) for b in range(32, 127)], eos_token_id=0)
    matcher = gad.GrammarMatcher(compile_grammar("sql", info))
    assert matcher.accept_string("SELECT 'x', 'y'") and matcher.is_accepting()
    assert not gad.GrammarMatcher(compile_grammar("json", info)).accept_string("SELECT")


# -- typed output ---------------------------------------------------------------------------------

BYTE_INFO = gad.TokenizerInfo.from_vocab([b"<eos>"] + [bytes([b]) for b in range(32, 127)], eos_token_id=0)
BYTE_LM = UniformLM(len(BYTE_INFO.token_bytes))


def test_output_types_give_parsed_values() -> None:
    import dataclasses
    import enum
    from typing import Literal

    import jsonschema
    import pydantic

    class Color(enum.Enum):
        RED = "red"
        BLUE = "blue"

    class Pet(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")  # additionalProperties: false
        ok: bool
        color: Color
        kind: Literal["cat", "dog"]

    @dataclasses.dataclass
    class Flag:
        on: bool

    for output_type in (Pet, Flag, Color, Literal["x", "yz"], bool, list[bool]):
        schema = pydantic.TypeAdapter(output_type).json_schema()
        results = gad.generate(BYTE_LM, BYTE_INFO, [], output_type=output_type, n=6, max_new_tokens=300, seed=1)
        assert sum(r.complete for r in results) >= 4, output_type
        for r in results:
            if not r.complete:
                assert r.value is None
                continue
            jsonschema.validate(json.loads(r.text), schema)  # the text is valid JSON of the schema
            assert pydantic.TypeAdapter(output_type).validate_json(r.text) == r.value  # and parsed as the type
            expected = {Pet: Pet, Flag: Flag, Color: Color, bool: bool, list[bool]: list}.get(output_type, str)
            assert isinstance(r.value, expected), (output_type, r.value)
    # a JSON Schema dict: the value is the parsed JSON
    (r,) = gad.generate(BYTE_LM, BYTE_INFO, [], output_type={"enum": [1, "two"]}, max_new_tokens=10, seed=0)
    assert r.complete and r.value in (1, "two") and r.value == json.loads(r.text)


def test_output_type_validators_beyond_the_schema_leave_value_none() -> None:
    import pydantic

    class Never(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        flag: bool

        @pydantic.field_validator("flag")
        @classmethod
        def refuse(cls, value: bool) -> bool:
            raise ValueError("no")

    (r,) = gad.generate(BYTE_LM, BYTE_INFO, [], output_type=Never, max_new_tokens=300, seed=0)
    assert r.complete and json.loads(r.text)["flag"] in (True, False) and r.value is None


def test_choice_is_exactly_its_strings() -> None:
    options = ["yes", "no", "maybe", "no"]
    results = gad.generate(BYTE_LM, BYTE_INFO, [], gad.choice(options), n=12, max_new_tokens=10, seed=0)
    assert all(r.complete and r.text in options for r in results)
    assert {r.text for r in results} == {"yes", "no", "maybe"}  # each reachable (12 draws, 3 options)
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(BYTE_INFO).compile(gad.choice(["a.b", "c"])))
    assert not matcher.fork().accept_string("axb") and matcher.accept_string("a.b") and matcher.is_accepting()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gad.generate(BYTE_LM, BYTE_INFO, [], 'start: "a"', output_type=bool), "not both"),
        (lambda: gad.generate(BYTE_LM, BYTE_INFO, [], output_type=object()), "output_type"),
        (lambda: gad.choice([]), "non-empty"),
        (lambda: gad.choice("yes"), "non-empty"),
        (lambda: gad.choice(["a", 1]), "strings only"),
    ],
)
def test_typed_output_errors(call, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        call()
