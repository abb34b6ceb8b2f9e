"""JSON Schema → `Grammar` (`convert`: the converter and its layout; `loading`: reading, checking
and reference resolution; the lexical automata are in `gad.grammar.json_tokens` and
`gad.grammar.json_numbers`)."""

from gad.grammar.json_schema.convert import (
    DEFAULT_WHITESPACE,
    SUPPORTED_FORMATS,
    SchemaConversion,
    SchemaWarning,
    convert_json_schema,
    json_schema_to_grammar,
)

__all__ = [
    "DEFAULT_WHITESPACE",
    "SUPPORTED_FORMATS",
    "SchemaConversion",
    "SchemaWarning",
    "convert_json_schema",
    "json_schema_to_grammar",
]
