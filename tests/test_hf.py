"""GrammarLogitsProcessor: driven by hand like `generate` drives it, then inside `model.generate`
with a tiny random model in every decoding mode, then the docstring example with SmolLM2."""

from __future__ import annotations

import doctest
import json
import os
import re
from pathlib import Path

import lark
import pytest
import torch

import gad
from gad.errors import ConfigurationError, DeadEndError
from gad.integrations import hf
from toy import ARITHMETIC, EOS, GRAMMARS, JSON_GRAMMAR, TOKENS, ids, tiny_model, toy_compiled, toy_info

MODEL_VOCAB = 40  # the model has more logits than the tokenizer has tokens
INFO = toy_info(MODEL_VOCAB)
COMPILED = {"arithmetic": toy_compiled(ARITHMETIC, MODEL_VOCAB), "json": toy_compiled(JSON_GRAMMAR, MODEL_VOCAB)}
SHORT = 'start: "1" ("+" "2")?'
COMPILED["short"] = toy_compiled(SHORT, MODEL_VOCAB)
SOURCES = {"arithmetic": ARITHMETIC, "json": JSON_GRAMMAR, "short": SHORT}
MODEL = tiny_model(MODEL_VOCAB, seed=1)


def fresh_mask(name: str, history: list[int]) -> torch.Tensor:
    matcher = gad.GrammarMatcher(COMPILED[name])
    for token in history:
        assert matcher.accept_token(token)
    return matcher.next_token_mask()


# -- driving the processor by hand ----------------------------------------------------------------


def test_rows_follow_their_own_history_when_reordered() -> None:
    """Like beam search: between steps rows are reordered, duplicated and dropped."""
    processor = gad.GrammarLogitsProcessor(COMPILED["json"])
    prompt = [5, 5]  # never fed to the grammar
    histories: list[list[int]] = [[], [], []]
    steps = [  # each new row: (the index of its parent row, its new token)
        [(0, b"["), (1, b"{"), (2, b"[")],
        [(1, b'"a'), (0, b"1"), (1, b'{"')],  # row 1 twice, row 2 dropped; '{{"' is not JSON
        [(1, b","), (0, b'":'), (1, b"]")],
    ]
    for step in [None, *steps]:
        if step is not None:
            histories = [histories[parent] + ids(token) for parent, token in step]
        out = processor(torch.tensor([prompt + h for h in histories]), torch.zeros(len(histories), MODEL_VOCAB))
        for history, row in zip(histories, out):
            allowed = row > -torch.inf
            if history[-2:] == ids(b"{", b'{"'):
                assert allowed.nonzero().flatten().tolist() == [EOS]  # a dead row: only EOS, to end it
            else:
                assert torch.equal(allowed[: len(TOKENS)], fresh_mask("json", history)[: len(TOKENS)])
                assert not allowed[len(TOKENS) :].any()
    assert processor.num_generations == 1 and processor.prompt_length == 2


def test_eos_only_where_the_grammar_is_complete() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["arithmetic"])
    sequence = torch.tensor([[3, 3]])
    for token in [*ids(b"1+", b"2", b" ", b"*", b"(", b"12", b")"), EOS]:
        out = processor(sequence, torch.zeros(1, MODEL_VOCAB))
        history = sequence[0, 2:].tolist()
        complete = bool(history) and history[-1] in ids(b"2", b" ", b")")
        assert bool(out[0, EOS] > -torch.inf) == complete, history
        sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
    # After EOS (and padding with EOS), a finished row allows only EOS.
    for _ in range(2):
        out = processor(sequence, torch.zeros(1, MODEL_VOCAB))
        assert (out[0] > -torch.inf).nonzero().flatten().tolist() == [EOS]
        sequence = torch.cat([sequence, torch.tensor([[EOS]])], dim=1)
    assert processor.num_generations == 1
    assert processor.is_complete(sequence).tolist() == [True]


def test_scores_are_not_modified_in_place() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["json"])
    scores = torch.randn(2, MODEL_VOCAB)
    before = scores.clone()
    out = processor(torch.tensor([[1], [2]]), scores)
    assert torch.equal(scores, before)
    assert out is not scores and torch.isneginf(out).any()
    allowed = ~torch.isneginf(out)
    assert torch.equal(out[allowed], scores[allowed])


@pytest.mark.parametrize("logits", [MODEL_VOCAB, len(TOKENS), 64])
def test_mask_is_sized_to_the_logits(logits: int) -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["json"])
    out = processor(torch.tensor([[1]]), torch.zeros(1, logits))
    assert out.shape == (1, logits)
    assert torch.isneginf(out[0, len(TOKENS) :]).all()


def test_a_new_call_is_noticed() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["json"])
    seq = torch.tensor([[1, 2]])
    processor(seq, torch.zeros(1, MODEL_VOCAB))
    processor(torch.tensor([[1, 2, ids(b"[")[0]]]), torch.zeros(1, MODEL_VOCAB))
    assert processor.prompt_length == 2 and processor.num_generations == 1
    # A different prompt of the length that a continuation would have: a new generation.
    out = processor(torch.tensor([[9, 9, 9, 9]]), torch.zeros(1, MODEL_VOCAB))
    assert processor.prompt_length == 4 and processor.num_generations == 2
    assert torch.equal(out[0, : len(TOKENS)] > -torch.inf, fresh_mask("json", [])[: len(TOKENS)])
    # A shorter input: a new generation.
    processor(torch.tensor([[1]]), torch.zeros(1, MODEL_VOCAB))
    assert processor.prompt_length == 1 and processor.num_generations == 3


def test_is_complete() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["arithmetic"])
    with pytest.raises(ConfigurationError, match="prompt_length"):
        processor.is_complete(torch.tensor([[1, 2]]))
    rows = torch.tensor([
        [9, 9, *ids(b"1+", b"2"), EOS, EOS],  # complete, padded with EOS
        [9, 9, *ids(b"1+", b"2", b"*", b"2")],  # a sentence, but cut: no EOS
        [9, 9, *ids(b"1+"), EOS, EOS, EOS],  # EOS where the grammar does not allow it
        [9, 9, *ids(b"(", b")", b"2"), EOS],  # not grammatical
    ])  # fmt: skip
    assert processor.is_complete(rows, prompt_length=2).tolist() == [True, False, False, False]
    assert processor.is_complete(rows.tolist(), prompt_length=2).tolist() == [True, False, False, False]


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="`compiled` has to be a gad.CompiledGrammar"):
        gad.GrammarLogitsProcessor(ARITHMETIC)  # type: ignore[arg-type]
    processor = gad.GrammarLogitsProcessor(COMPILED["json"])
    with pytest.raises(ConfigurationError, match="batch_size"):
        processor(torch.tensor([1, 2]), torch.zeros(2, MODEL_VOCAB))


def test_import_gad_does_not_import_transformers() -> None:
    import subprocess
    import sys

    code = "import sys, gad; assert 'transformers' not in sys.modules; gad.GrammarLogitsProcessor; assert 'transformers' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path(gad.__file__).parent.parent)})
    assert gad.GrammarLogitsProcessor is hf.GrammarLogitsProcessor
    assert "GrammarLogitsProcessor" in gad.__all__ and "GrammarLogitsProcessor" in dir(gad)


# -- inside model.generate ------------------------------------------------------------------------


def text_of(row: list[int]) -> str:
    return INFO.decode_bytes([t for t in row if t != EOS]).decode("utf-8", errors="replace")


def assert_grammatical(name: str, sequences: torch.Tensor, prompt_length: int, complete: torch.Tensor) -> None:
    """Complete rows parse with lark (and json.loads); the others are viable prefixes."""
    for row, ok in zip(sequences[:, prompt_length:].tolist(), complete.tolist()):
        generated = row[: row.index(EOS) + 1] if EOS in row else row
        if ok:
            text = text_of(generated)
            lark.Lark(SOURCES[name], parser="earley", lexer="dynamic_complete").parse(text)
            if name == "json":
                json.loads(text)
        else:
            matcher = gad.GrammarMatcher(COMPILED[name])
            assert all(matcher.accept_token(t) for t in generated if t != EOS), text_of(generated)


MODES = {
    "greedy": {"do_sample": False},
    "sample": {"do_sample": True, "num_return_sequences": 3},
    "beam": {"do_sample": False, "num_beams": 4, "num_return_sequences": 4},
    "beam-sample": {"do_sample": True, "num_beams": 3, "num_return_sequences": 2},
}


@pytest.mark.parametrize("name", ["arithmetic", "json"])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_of_generate_is_grammatical(name: str, mode: str) -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED[name])
    # Left-padded prompts of different lengths (padding id = EOS, masked out).
    input_ids = torch.tensor([[1, 2, 3, 4], [EOS, EOS, 5, 6], [EOS, 7, 8, 9]])
    attention_mask = (torch.arange(4) >= torch.tensor([[0], [2], [1]])).long()
    torch.manual_seed(0)
    out = MODEL.generate(
        input_ids=input_ids, attention_mask=attention_mask, logits_processor=[processor],
        max_new_tokens=12, pad_token_id=EOS, eos_token_id=EOS, **MODES[mode],
    )  # fmt: skip
    assert out.shape[0] == 3 * MODES[mode].get("num_return_sequences", 1)
    complete = processor.is_complete(out)
    assert processor.prompt_length == 4
    assert_grammatical(name, out, 4, complete)


def test_batch_equals_single_sequences_greedy() -> None:
    prompts = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    processor = gad.GrammarLogitsProcessor(COMPILED["json"])
    width = max(map(len, prompts))
    input_ids = torch.tensor([[EOS] * (width - len(p)) + p for p in prompts])
    attention_mask = (input_ids != EOS).long()
    kwargs = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": EOS, "eos_token_id": EOS}
    batch = MODEL.generate(input_ids=input_ids, attention_mask=attention_mask, logits_processor=[processor], **kwargs)
    for b, prompt in enumerate(prompts):
        single = MODEL.generate(input_ids=torch.tensor([prompt]), logits_processor=[processor], **kwargs)
        generated = single[0, len(prompt) :].tolist()
        assert batch[b, width : width + len(generated)].tolist() == generated


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_reuse_across_generate_calls(mode: str) -> None:
    reused = gad.GrammarLogitsProcessor(COMPILED["json"])
    kwargs = {"max_new_tokens": 8, "pad_token_id": EOS, "eos_token_id": EOS, **MODES[mode]}
    for prompt in ([[1, 2, 3]], [[4, 5, 6, 7, 8]], [[1, 2]], [[1, 2, 3]]):
        input_ids = torch.tensor(prompt)
        with_reused = MODEL.generate(input_ids=input_ids, logits_processor=[reused], **kwargs)
        fresh = gad.GrammarLogitsProcessor(COMPILED["json"])
        with_fresh = MODEL.generate(input_ids=input_ids, logits_processor=[fresh], **kwargs)
        assert torch.equal(with_reused, with_fresh)
        assert reused.is_complete(with_reused).tolist() == fresh.is_complete(with_fresh).tolist()
    assert reused.num_generations == 4


TIGHT = 'start: "0" | "1" "1"'  # so few allowed tokens that beam search keeps -inf candidates


@pytest.mark.parametrize("grammar", ["json", "tight"])
def test_beam_search_follows_reordering(grammar: str) -> None:
    """Every row beam search shows the processor is masked by its own history (rows whose history
    the grammar rejects get only EOS), and every returned beam is grammatical."""
    compiled = COMPILED[grammar] if grammar in COMPILED else gad.GrammarCompiler(INFO).compile(TIGHT)
    seen: list[tuple[list[int], bool]] = []

    class Recorder(gad.GrammarLogitsProcessor):
        def __call__(self, input_ids, scores):
            out = super().__call__(input_ids, scores)
            only_eos = (out > -torch.inf).sum(dim=-1).eq(1) & (out[:, EOS] > -torch.inf)
            seen.extend(zip(input_ids[:, 3:].tolist(), only_eos.tolist()))
            return out

    processor = Recorder(compiled)
    out = MODEL.generate(
        input_ids=torch.tensor([[1, 2, 3]]), logits_processor=[processor], max_new_tokens=8,
        num_beams=5, num_return_sequences=5, do_sample=False, pad_token_id=EOS, eos_token_id=EOS,
    )  # fmt: skip
    complete = processor.is_complete(out)
    for row, ok in zip(out[:, 3:].tolist(), complete.tolist()):
        matcher = gad.GrammarMatcher(compiled)
        grammatical = [matcher.accept_token(t) for t in (row[: row.index(EOS) + 1] if EOS in row else row)]
        assert all(grammatical) and ok == (EOS in row and matcher.is_terminated())
    assert len({tuple(row) for row, _ in seen if len(row) == 2}) > 1  # the beams did diverge
    for row, only_eos in seen:
        matcher = gad.GrammarMatcher(compiled)
        ended = False  # rejected, or EOS accepted: then only EOS is allowed
        for token in row:
            if matcher.is_terminated() or not matcher.accept_token(token):
                ended = True
                break
        ended = ended or matcher.is_terminated() or matcher.allowed_token_ids() == [EOS]
        assert only_eos == ended, row


# -- the real model -------------------------------------------------------------------------------


def test_docstring_example_with_smollm2(monkeypatch) -> None:
    """The class docstring's example runs as written, with SmolLM2 (offline)."""
    # Markdown fences, as transformers' docstrings have them, are not part of the expected output.
    docstring = re.sub(r"^\s*```.*$", "", hf.GrammarLogitsProcessor.__doc__, flags=re.MULTILINE)
    examples = doctest.DocTestParser().get_examples(docstring)
    assert examples
    test = doctest.DocTest(examples, {}, "GrammarLogitsProcessor", None, 0, None)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    monkeypatch.chdir(GRAMMARS.parent)
    runner.run(test)
    assert runner.failures == 0


def test_processors_reject_mismatched_shapes():
    import gad
    from gad.errors import ConfigurationError

    info = gad.TokenizerInfo.from_vocab([b"a", b"b", b"<eos>"], eos_token_id=2)
    compiled = gad.GrammarCompiler(info).compile('start: "a"+')
    processor = gad.GrammarLogitsProcessor(compiled)
    for input_ids, scores in [
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3)),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 3)),
        (torch.zeros(3, dtype=torch.long), torch.zeros(1, 3)),
    ]:
        with pytest.raises(ConfigurationError, match="has to be \\(batch_size, sequence_length\\)"):
            processor(input_ids, scores)


# -- misuse is refused, never silently restarted (issues 19 and 21) -------------------------------


def test_called_twice_on_one_step_is_refused_and_changes_nothing() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["short"])
    scores = torch.zeros(1, MODEL_VOCAB)
    processor(torch.tensor([[9, 9]]), scores)
    step = torch.tensor([[9, 9, *ids(b"1")]])
    expected = processor(step, scores)
    with pytest.raises(ConfigurationError, match="called twice on one step"):
        processor(step, scores)
    # The state is as before the refused call: the next step continues the same generation.
    out = processor(torch.tensor([[9, 9, *ids(b"1", b"+")]]), scores)
    assert processor.num_generations == 1
    assert (out[0] > -torch.inf).nonzero().flatten().tolist() == ids(b"2")
    assert torch.equal(expected[0, : len(TOKENS)] > -torch.inf, fresh_mask("short", ids(b"1"))[: len(TOKENS)])
    # What a silent restart would have accepted ("1" after "1") is not complete.
    assert processor.is_complete(torch.tensor([[9, 9, *ids(b"1", b"1"), EOS]])).tolist() == [False]


def test_a_batch_size_that_changes_mid_generation_is_refused() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["short"])
    processor(torch.tensor([[9], [8]]), torch.zeros(2, MODEL_VOCAB))
    with pytest.raises(ConfigurationError, match="batch size changed from 2 to 1"):
        processor(torch.tensor([[9, *ids(b"1")]]), torch.zeros(1, MODEL_VOCAB))


def test_float_input_ids_are_refused() -> None:
    processor = gad.GrammarLogitsProcessor(COMPILED["short"])
    with pytest.raises(ConfigurationError, match="integer token ids"):
        processor(torch.tensor([[9.0, 1.0]]), torch.zeros(1, MODEL_VOCAB))


@pytest.mark.parametrize("extra", [{"assistant_model": "model"}, {"prompt_lookup_num_tokens": 3}], ids=["assisted", "prompt-lookup"])
@pytest.mark.parametrize("kind", ["gcd", "asap"])
def test_assisted_and_prompt_lookup_decoding_are_refused(extra: dict, kind: str) -> None:
    compiled = COMPILED["short"]
    processor = gad.GrammarLogitsProcessor(compiled) if kind == "gcd" else gad.ASApLogitsProcessor(compiled, max_new_tokens=6)
    if "assistant_model" in extra:
        extra = {"assistant_model": tiny_model(MODEL_VOCAB, seed=2)}
    prompt = torch.tensor([[9, 9, 9, 9]])
    with pytest.raises(ConfigurationError, match="assisted decoding"):
        MODEL.generate(
            prompt, attention_mask=torch.ones_like(prompt), logits_processor=[processor], max_new_tokens=6,
            do_sample=False, pad_token_id=EOS, eos_token_id=EOS, **extra,
        )  # fmt: skip


@pytest.mark.parametrize("do_sample", [False, True])
def test_min_new_tokens_that_the_grammar_cannot_meet_is_a_dead_end(do_sample: bool) -> None:
    """After "1+2" the grammar allows only EOS; `min_new_tokens` bans it: a clear error, never NaN
    or EOS padding passed off as output. With a reachable minimum the output is grammatical."""
    compiled = COMPILED["short"]
    processor = gad.GrammarLogitsProcessor(compiled)
    prompt = torch.tensor([[9, 9]])
    kwargs = dict(attention_mask=torch.ones_like(prompt), logits_processor=[processor], max_new_tokens=8,
                  do_sample=do_sample, pad_token_id=EOS, eos_token_id=EOS)  # fmt: skip
    with pytest.raises(DeadEndError, match="allows only EOS here.*min_new_tokens"):
        MODEL.generate(prompt, min_new_tokens=5, **kwargs)
    out = MODEL.generate(prompt, min_new_tokens=2, **kwargs)
    assert processor.is_complete(out).tolist() == [True]
    generated = out[0, 2:].tolist()
    assert b"".join(TOKENS[t] for t in generated[: generated.index(EOS)]) == b"1+2"


def test_asap_processor_under_min_new_tokens_is_a_dead_end() -> None:
    processor = gad.ASApLogitsProcessor(COMPILED["short"], max_new_tokens=8)
    prompt = torch.tensor([[9, 9]])
    with pytest.raises(DeadEndError, match="min_new_tokens"):
        MODEL.generate(
            prompt, attention_mask=torch.ones_like(prompt), logits_processor=[processor], max_new_tokens=8,
            min_new_tokens=5, do_sample=True, top_k=0, pad_token_id=EOS, eos_token_id=EOS,
        )  # fmt: skip
