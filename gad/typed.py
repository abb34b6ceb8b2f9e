"""Typed output: a Python type (or a JSON Schema) as the grammar, and the parsed value back.

`typed_output` turns a pydantic model, a dataclass, a ``TypedDict``, ``Literal[...]``, an
``enum.Enum``, ``list[...]``, ``int``, ``bool`` … into its JSON Schema with pydantic's
``TypeAdapter``, and gives the parser that reads a complete generation back into that type (the
grammar is sound, so only validators JSON Schema cannot express can refuse it). `choice` is the grammar of a
fixed set of strings. Pure functions; pydantic is imported only when a Python type is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar

__all__ = ["choice", "typed_output"]


def _adapter(output_type: Any) -> Any:
    try:
        from pydantic import TypeAdapter
    except ImportError:  # pragma: no cover - pydantic is a dependency of the test extra
        raise ConfigurationError("`output_type` as a Python type needs pydantic: pip install pydantic") from None
    try:
        return TypeAdapter(output_type)
    except Exception as exc:  # pydantic's errors for types it cannot describe
        raise ConfigurationError(f"`output_type` {output_type!r} has no JSON Schema: {exc}") from None


def typed_output(output_type: Any) -> tuple[dict | bool, Callable[[str], Any]]:
    """The JSON Schema of `output_type` and the parser of a complete generation into it.

    A dict or bool is a JSON Schema already, parsed with ``json.loads``; any other type goes
    through pydantic (``TypeAdapter``, built once): its ``json_schema()``, and ``validate_json``,
    which gives None when the type's own validators (beyond its JSON Schema) refuse the text.
    """
    if isinstance(output_type, (dict, bool)):
        return output_type, json.loads
    adapter = _adapter(output_type)
    try:
        schema = adapter.json_schema()
    except Exception as exc:  # e.g. PydanticInvalidForJsonSchema
        raise ConfigurationError(f"`output_type` {output_type!r} has no JSON Schema: {exc}") from None

    def parse(text: str) -> Any:
        try:
            return adapter.validate_json(text)
        except ValueError:  # pydantic.ValidationError is a ValueError
            return None

    return schema, parse


def choice(options: Sequence[str]) -> Grammar:
    """The grammar whose sentences are exactly the strings `options` (at least one, each a str)."""
    if isinstance(options, str) or not isinstance(options, Sequence) or not options:
        raise ConfigurationError(f"`options` has to be a non-empty list of strings, but is {options!r}")
    bad = [o for o in options if not isinstance(o, str)]
    if bad:
        raise ConfigurationError(f"`options` has to hold strings only, but holds {bad[0]!r}")
    return Grammar.from_regex("|".join(re.escape(o) for o in dict.fromkeys(options)))
