"""Triggered grammars: free text, and after a trigger string a JSON tool call that follows the
schema of the tool it names (``gad.structural.tool_calls(tools, format="hermes")``).

The free text is `text_excluding(triggers)`: every UTF-8 text in which no trigger occurs, an exact
automaton (the UTF-8 automaton times an Aho-Corasick automaton of the triggers, minimised), so a
trigger can only ever start a call. Each call is one JSON document of the JSON-Schema grammar of
``{"anyOf": [one object schema per tool]}``: ``{"name": <the tool's name>, "arguments": <its
schema>}`` (Llama-3 says ``"parameters"``).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar, Rule, Terminal
from gad.grammar.regex import DEAD, ByteDFA, compile_regex
from gad.grammar.regex import _finish as _minimal_dfa  # the regex compiler's canonical form

__all__ = ["FORMATS", "ToolCallFormat", "text_excluding", "tool_calls"]


@dataclass(frozen=True)
class ToolCallFormat:
    """How one chat format writes a call: ``begin`` JSON ``end``, with ``arguments_key`` holding
    the arguments; ``parallel``: whether several calls may follow each other."""

    begin: str
    end: str
    arguments_key: str = "arguments"
    parallel: bool = True


FORMATS: dict[str, ToolCallFormat] = {
    # Hermes / Qwen 2.5 / Qwen 3: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
    "hermes": ToolCallFormat("<tool_call>\n", "\n</tool_call>"),
    # Llama 3.1+: <|python_tag|>{"name": ..., "parameters": {...}}, one call, then the turn ends.
    "llama3": ToolCallFormat("<|python_tag|>", "", arguments_key="parameters", parallel=False),
}


def text_excluding(strings: Iterable[str], *, name: str = "TEXT") -> Terminal:
    """The terminal of every UTF-8 text (the empty one too) in which none of ``strings`` occurs.

    Exact: a product of the UTF-8 automaton with the Aho-Corasick automaton of ``strings``, whose
    states that have just read one of them are dropped, then minimised. Its ``regex`` is the
    equivalent Python pattern ``(?:(?!s1|s2|...)[\\s\\S])*`` (for display and `re` checks).
    """
    patterns = sorted({s.encode("utf-8") for s in strings})
    if not patterns or b"" in patterns:
        raise ConfigurationError(f"`strings` has to hold at least one non-empty string, but is {sorted(patterns)!r}")
    goto, bad = _aho_corasick(patterns)
    text = compile_regex(r"[\s\S]*", name=name)
    index: dict[tuple[int, int], int] = {(text.initial, 0): 0}
    queue, rows, accepting = deque([(text.initial, 0)]), [], set()
    while queue:  # breadth-first product, states numbered in order of discovery
        u, a = queue.popleft()
        row = []
        for byte in range(256):
            u2, a2 = text.table[u][byte], goto[a][byte]
            if u2 == DEAD or bad[a2]:
                row.append(DEAD)
                continue
            if (u2, a2) not in index:
                index[(u2, a2)] = len(index)
                queue.append((u2, a2))
            row.append(index[(u2, a2)])
        rows.append(tuple(row))
        if u in text.accepting:
            accepting.add(len(rows) - 1)
    table, final = _minimal_dfa(rows, accepting, 0)  # never empty: "" contains no string
    regex = "(?:(?!" + "|".join(re.escape(p.decode()) for p in patterns) + r")[\s\S])*"
    return Terminal(name, regex, ByteDFA(table, final, 0, regex), whole_input=True)


def _aho_corasick(patterns: list[bytes]) -> tuple[list[list[int]], list[bool]]:
    """The complete Aho-Corasick automaton: ``goto[state][byte]``, and whether a state has just
    read a pattern (``bad``)."""
    goto: list[list[int]] = [[DEAD] * 256]
    bad = [False]
    for pattern in patterns:
        node = 0
        for byte in pattern:
            if goto[node][byte] == DEAD:
                goto[node][byte] = len(goto)
                goto.append([DEAD] * 256)
                bad.append(False)
            node = goto[node][byte]
        bad[node] = True
    fail = [0] * len(goto)
    queue: deque[int] = deque()
    for byte in range(256):
        child = goto[0][byte]
        if child == DEAD:
            goto[0][byte] = 0
        else:
            queue.append(child)
    while queue:
        node = queue.popleft()
        bad[node] = bad[node] or bad[fail[node]]
        for byte in range(256):
            child = goto[node][byte]
            if child == DEAD:
                goto[node][byte] = goto[fail[node]][byte]
            else:
                fail[child] = goto[fail[node]][byte]
                queue.append(child)
    return goto, bad


def tool_calls(
    tools: Mapping[str, Any] | Sequence[Any],
    format: str = "hermes",  # noqa: A002  (the chat format's name, as in the chat templates)
    *,
    begin: str | None = None,
    end: str | None = None,
    mode: str = "optional",
    parallel: bool | None = None,
    text_before: bool = True,
    text_after: bool = False,
    whitespace: str | int = 16,
) -> Grammar:
    """Free text with tool calls: ``text begin call end (ws begin call end)* [text]``, where the text never holds
    ``begin`` (without its leading and trailing whitespace: the trigger) and each call is a JSON object naming one of ``tools`` with arguments valid under
    that tool's schema.

    Args:
        tools: ``{name: JSON Schema or pydantic model class}``, or a list of OpenAI-style tools
            (``{"type": "function", "function": {"name", "parameters"}}`` or just the inner
            ``{"name", "parameters"}``) or of pydantic model classes (named after the class).
        format: ``"hermes"`` (also Qwen), ``"llama3"``, or ``"generic"`` with ``begin``/``end``.
        begin, end: the strings around each call (``format="generic"``), or overrides.
        mode: ``"optional"`` (text alone is a sentence) or ``"required"`` (at least one call).
        parallel: whether several calls may come one after another (up to 8 whitespace characters
            between them); the format's default when None.
        text_before: whether free text may come before the first call (False: the output opens
            with a call, as for OpenAI's ``tool_choice="required"``).
        text_after: whether free text may follow the last call; by default the output stops
            there (the application runs the tool and continues the conversation).
        whitespace: JSON whitespace inside a call, as in `Grammar.from_json_schema`.
    """
    if format == "generic":
        if begin is None or end is None:
            raise ConfigurationError('format="generic" needs both `begin` and `end` strings')
        style = ToolCallFormat(begin, end)
    elif format in FORMATS:
        style = FORMATS[format]
        style = ToolCallFormat(style.begin if begin is None else begin, style.end if end is None else end,
                               style.arguments_key, style.parallel)  # fmt: skip
    else:
        raise ConfigurationError(f"`format` has to be one of {sorted(FORMATS) + ['generic']}, but is {format!r}")
    if not style.begin:
        raise ConfigurationError("`begin` has to be a non-empty string: it is the trigger of a call")
    if mode not in ("optional", "required"):
        raise ConfigurationError(f'`mode` has to be "optional" or "required", but is {mode!r}')
    several = style.parallel if parallel is None else parallel

    schemas = _tool_schemas(tools)
    call_schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": name}, style.arguments_key: schema},
                "required": ["name", style.arguments_key],
                "additionalProperties": False,
            }
            for name, schema in schemas.items()
        ]
    }
    call = Grammar.from_json_schema(call_schema, whitespace=whitespace, extra_properties=False)
    if call.ignore:  # pragma: no cover - JSON grammars spell their whitespace
        raise ConfigurationError("the JSON grammar of the calls has %ignore terminals")
    rename = {s: f"call_{s}" for s in {r.lhs for r in call.rules} | set(call.terminals)}
    rules = [Rule(rename[r.lhs], tuple(rename[s] for s in r.rhs)) for r in call.rules]
    terminals = {rename[n]: Terminal(rename[n], t.regex, t.dfa, t.whole_input, t.lexer) for n, t in call.terminals.items()}
    terminals["TEXT"] = text_excluding([style.begin.strip() or style.begin])  # the trigger, without its layout
    terminals["BEGIN"] = Terminal.compile("BEGIN", re.escape(style.begin))
    call_rhs: tuple[str, ...] = ("BEGIN", rename[call.start])
    if style.end:
        terminals["END"] = Terminal.compile("END", re.escape(style.end))
        call_rhs += ("END",)
    rules.append(Rule("tool_call", call_rhs))
    rules.append(Rule("calls", ("tool_call",)))
    if several:
        terminals["BETWEEN"] = Terminal.compile("BETWEEN", r"[ \t\r\n]{0,8}")
        rules.append(Rule("calls", ("calls", "BETWEEN", "tool_call")))
    rules.append(Rule("start", ("TEXT",) * text_before + ("calls",) + ("TEXT",) * text_after))
    if mode == "optional":
        rules.append(Rule("start", ("TEXT",)))
    return Grammar(rules, terminals, start="start")


def _tool_schemas(tools: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """``{name: JSON Schema}`` of ``tools`` (see `tool_calls`)."""
    items: list[tuple[str, Any]] = []
    if isinstance(tools, Mapping):
        items = [(name, schema) for name, schema in tools.items()]
    elif isinstance(tools, Sequence) and not isinstance(tools, str):
        for i, tool in enumerate(tools):
            if isinstance(tool, type) and hasattr(tool, "model_json_schema"):
                items.append((tool.__name__, tool))
            elif isinstance(tool, Mapping):
                function = tool.get("function", tool)
                if not (isinstance(function, Mapping) and isinstance(function.get("name"), str)):
                    raise ConfigurationError(f"tools[{i}] has no string 'name' (nor 'function.name')")
                items.append((function["name"], function.get("parameters", {"type": "object"})))
            else:
                raise ConfigurationError(f"tools[{i}] has to be a tool dict or a pydantic model class, not {type(tool).__name__}")
    else:
        raise ConfigurationError(f"`tools` has to be a dict or a list of tools, but is {type(tools).__name__}")
    if not items:
        raise ConfigurationError("`tools` is empty: give at least one tool")
    out: dict[str, Any] = {}
    for name, schema in items:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"every tool needs a non-empty string name, but one is {name!r}")
        if name in out:
            raise ConfigurationError(f"two tools are named {name!r}")
        if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
            schema = schema.model_json_schema()
        out[name] = schema
    return out
