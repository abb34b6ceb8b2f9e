"""Triggered grammars (`gad.structural`): free text and JSON tool calls.

Oracles: Python's `in` and `re` (the free-text terminal is exactly the texts without a trigger),
`json` and `jsonschema` (every call of a random walk through the masks parses, names a tool, and
validates against that tool's schema), and the walk's own text (free text never holds a trigger).
"""

from __future__ import annotations

import functools
import json
import random
import re

import jsonschema
import pydantic
import pytest

import gad
from gad.structural import text_excluding, tool_calls


def test_text_excluding_is_exactly_the_texts_without_a_trigger():
    triggers = ["<tool_call>", "<|python_tag|>", "aab", "ab"]
    terminal = text_excluding(triggers)
    pattern = re.compile(terminal.regex, re.DOTALL)
    rng = random.Random(0)
    alphabet = ["a", "b", "<", ">", "|", "_", "tool", "call", "<tool_call", "python_tag", "é", "\n", "x"]
    texts = ["", "a", "ab", "aab", "ba", "<tool_call>", "<tool_call", "x<tool_call>y", "<|python_tag|", "é"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(3000)]
    for text in texts:
        expected = not any(t in text for t in triggers)
        assert terminal.dfa.fullmatch(text.encode()) == expected == bool(pattern.fullmatch(text)), text
    assert not terminal.dfa.fullmatch(b"\xff")  # UTF-8 text only
    with pytest.raises(gad.ConfigurationError):
        text_excluding([])
    with pytest.raises(gad.ConfigurationError):
        text_excluding(["x", ""])


class Add(pydantic.BaseModel):
    a: int
    b: int


WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}, Add]
SCHEMAS = {"get_weather": WEATHER, "Add": Add.model_json_schema()}

WORDS = ["Sure", " ", "let", " me", " check", ".", "\n", "<", ">", "/", "tool", "_call", "<tool_call>", "\n</tool_call>",
         "</tool_call>", "<|python_tag|>", "<|", "python", "_tag", "|>", '{"name": ', '"get_weather"', '"Add"', '"name"',
         ', "arguments": ', ', "parameters": ', "{", "}", '"city"', '"unit"', '"a"', '"b"', ": ", ":", ", ", ",",
         '"', '"c"', '"f"', "Paris", "Oslo", "x", "1", "2", "-", "0", "12", "\\n", "\\u00e9", "name", "arguments", "parameters", "city", "unit", "get_weather", "Add",
         *"abcdefghijklmnopqrstuvwxyzA_ {}[]:,\"0123456789"]  # fmt: skip
VOCAB = [w.encode() for w in dict.fromkeys(WORDS)] + [b"<eos>"]
EOS = len(VOCAB) - 1
INFO = gad.TokenizerInfo.from_vocab(VOCAB, eos_token_id=EOS)
CLOSERS = {VOCAB.index(w.encode()) for w in ['"', "}", "\n</tool_call>", "</tool_call>", ", ", '"c"', "1", "Oslo"]}
OPENERS = {VOCAB.index(w.encode()) for w in ["<tool_call>", "<|python_tag|>"]}


@functools.cache
def compiled(format: str, **options) -> gad.CompiledGrammar:
    return gad.GrammarCompiler(INFO).compile(tool_calls(TOOLS, format, **options))


def walk(matcher: gad.GrammarMatcher, rng: random.Random, max_steps: int = 250) -> str | None:
    """Random allowed tokens; a call's opening marker 30% of the time it is allowed, closing
    tokens more often as the walk grows; EOS a tenth of the time it is allowed."""
    m = matcher.fork()
    out = b""
    for step in range(max_steps):
        allowed = m.allowed_token_ids()
        if EOS in allowed and (rng.random() < 0.1 or len(allowed) == 1):
            assert m.accept_token(EOS)
            return out.decode()
        choices = [t for t in allowed if t != EOS]
        closing = [t for t in choices if t in CLOSERS]
        opening = [t for t in choices if t in OPENERS]
        if opening and rng.random() < 0.3:
            choices = opening
        elif closing and rng.random() < min(0.9, step / 60):
            choices = closing
        token = rng.choice(choices)
        assert m.accept_token(token)
        out += VOCAB[token]
    return None


def check_output(text: str, begin: str, end: str, arguments_key: str) -> int:
    """Splits ``text`` at every occurrence of the trigger (``begin`` without its layout) and
    asserts that each one starts a call: the rest of ``begin``, a JSON object naming a tool with
    arguments valid under its schema, ``end``. So free text never holds a trigger. Returns the
    number of calls."""
    trigger = begin.strip()
    layout = begin[begin.index(trigger) + len(trigger) :]
    calls = 0
    parts = text.split(trigger)[1:]
    for k, part in enumerate(parts):
        assert part.startswith(layout), text
        body, found, free_text = part[len(layout) :].partition(end) if end else (part[len(layout) :], "", "")
        assert found == end, text
        if k < len(parts) - 1:
            assert free_text.strip(" \t\r\n") == "", text  # parallel calls: only layout between them
        call = json.loads(body)
        assert set(call) == {"name", arguments_key}, call
        jsonschema.validate(call[arguments_key], SCHEMAS[call["name"]])
        calls += 1
    return calls


@pytest.mark.parametrize(
    "format, options, begin, end, key",
    [
        ("hermes", {}, "<tool_call>\n", "\n</tool_call>", "arguments"),
        ("llama3", {}, "<|python_tag|>", "", "parameters"),
        ("generic", {"begin": "<tool>", "end": "</tool>", "mode": "required", "text_after": True}, "<tool>", "</tool>", "arguments"),
    ],
)  # fmt: skip
def test_random_walks_give_valid_calls_and_trigger_free_text(format, options, begin, end, key):
    if format == "generic":  # its markers must be spellable in the toy vocabulary
        options = {**options, "begin": "<tool_call>", "end": "</tool_call>"}
        begin, end = "<tool_call>", "</tool_call>"
    matcher = gad.GrammarMatcher(compiled(format, **options))
    rng = random.Random(1)
    finished = with_calls = 0
    for _ in range(60):
        text = walk(matcher, rng)
        if text is None:
            continue
        finished += 1
        calls = check_output(text, begin, end, key)
        if options.get("mode") == "required":
            assert calls >= 1, text
        if format == "llama3":
            assert calls <= 1 and (calls == 0 or text.endswith("}")), text
        if calls and not options.get("text_after"):
            assert text.endswith(end or "}"), text  # the output stops after the last call
        with_calls += calls > 0
    assert finished >= 20 and with_calls >= 5, (finished, with_calls)


def test_calls_are_checked_against_the_named_schema():
    m = gad.GrammarMatcher(compiled("hermes"))
    assert m.accept_string('Let me look.<tool_call>\n{"name": "Add", "arguments": {"a": 1, "b": 2}}\n</tool_call>')
    assert m.is_accepting()
    for bad in ['<tool_call>\n{"name": "Add", "arguments": {"city": "Oslo"}}\n</tool_call>',
                '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "k"}}\n</tool_call>',
                '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>',
                '<tool_call>\n{"name": "Add", "arguments": {"a": 1, "b": 2}}\n</tool_call> and more text']:  # fmt: skip
        m = gad.GrammarMatcher(compiled("hermes"))
        assert not (m.accept_string(bad) and m.is_accepting()), bad
    plain = gad.GrammarMatcher(compiled("hermes"))
    assert plain.accept_string("No tool is needed.") and plain.is_accepting()
    required = gad.GrammarMatcher(compiled("hermes", mode="required"))
    assert required.accept_string("No tool is needed.") and not required.is_accepting()
    first = gad.GrammarMatcher(compiled("hermes", mode="required", text_before=False))
    assert not first.accept_string("Sure.") and first.accept_string("<tool_call>\n{")


def test_bad_arguments():
    with pytest.raises(gad.ConfigurationError, match="format"):
        tool_calls(TOOLS, "chatml")
    with pytest.raises(gad.ConfigurationError, match="begin"):
        tool_calls(TOOLS, "generic")
    with pytest.raises(gad.ConfigurationError, match="two tools"):
        tool_calls([Add, Add])
    with pytest.raises(gad.ConfigurationError, match="empty"):
        tool_calls([])
    with pytest.raises(gad.ConfigurationError, match="mode"):
        tool_calls(TOOLS, mode="sometimes")
