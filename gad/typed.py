"""Typed output: a Python type (or a JSON Schema) as the grammar, and the parsed value back.

`output_schema` turns a pydantic model, a dataclass, a ``TypedDict``, ``Literal[...]``, an
``enum.Enum``, ``list[...]``, ``int``, ``bool`` … into its JSON Schema with pydantic's
``TypeAdapter``; `parse_value` reads a complete generation back into that type (the grammar is
sound, so only validators JSON Schema cannot express can refuse it). `choice` is the grammar of a
fixed set of strings. Pure functions; pydantic is imported only when a Python type is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar

__all__ = ["choice", "output_schema", "parse_value"]


def _adapter(output_type: Any) -> Any:
    try:
        from pydantic import TypeAdapter
    except ImportError:  # pragma: no cover - pydantic is a dependency of the test extra
        raise ConfigurationError("`output_type` as a Python type needs pydantic: pip install pydantic") from None
    try:
        return TypeAdapter(output_type)
    except Exception as exc:  # pydantic's errors for types it cannot describe
        raise ConfigurationError(f"`output_type` {output_type!r} has no JSON Schema: {exc}") from None


def output_schema(output_type: Any) -> dict | bool:
    """The JSON Schema of `output_type`: a dict or bool is taken as a schema already; any other
    type goes through pydantic (``TypeAdapter(output_type).json_schema()``)."""
    if isinstance(output_type, (dict, bool)):
        return output_type
    try:
        return _adapter(output_type).json_schema()
    except ConfigurationError:
        raise
    except Exception as exc:  # e.g. PydanticInvalidForJsonSchema
        raise ConfigurationError(f"`output_type` {output_type!r} has no JSON Schema: {exc}") from None


def parse_value(text: str, output_type: Any) -> Any:
    """`text` (a complete generation) as a value of `output_type`: ``json.loads`` for a JSON
    Schema, pydantic's ``validate_json`` for a Python type. Returns None when the type's own
    validators (beyond its JSON Schema) refuse the text."""
    if isinstance(output_type, (dict, bool)):
        return json.loads(text)
    try:
        return _adapter(output_type).validate_json(text)
    except ValueError:  # pydantic.ValidationError is a ValueError
        return None


def choice(options: Sequence[str]) -> Grammar:
    """The grammar whose sentences are exactly the strings `options` (at least one, each a str)."""
    if isinstance(options, str) or not isinstance(options, Sequence) or not options:
        raise ConfigurationError(f"`options` has to be a non-empty list of strings, but is {options!r}")
    bad = [o for o in options if not isinstance(o, str)]
    if bad:
        raise ConfigurationError(f"`options` has to hold strings only, but holds {bad[0]!r}")
    return Grammar.from_regex("|".join(re.escape(o) for o in dict.fromkeys(options)))
