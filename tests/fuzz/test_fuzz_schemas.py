"""Generated JSON Schemas, valid and not: a `GadError`, or a grammar whose documents are valid.

Oracles: `jsonschema` — a schema gad converts must pass its draft's metaschema
(`check_schema`), and every document drawn through the masks must validate, formats included.
The schemas mix ordinary keywords with the values that broke converters before: huge and
negative counts, non-finite and out-of-float-range bounds, keyword values of the wrong type.
"""

from __future__ import annotations

import json
import random

import jsonschema
from fuzzing import BYTE_COMPILER, FUZZ
from hypothesis import given
from hypothesis import strategies as st

import gad
from gad.errors import GadError
from gad.testing import random_walk

VALIDATOR = jsonschema.Draft202012Validator
CLOSING = [ord(c) for c in '"}]0a']
NAMES = st.sampled_from(["a", "b", "id", "é"])
COUNTS = st.one_of(st.integers(0, 4), st.sampled_from([-1, 2000, 10**6, 2.5, float("inf"), float("nan"), "3", None]))
BOUNDS = st.one_of(
    st.integers(-50, 50),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from([1e308, -1e308, 10**400, float("inf"), float("nan"), "1", 0.1]),
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([0.5, "a", "", "é"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(NAMES, inner, max_size=2),
    max_leaves=4,
)
TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])


def keywords(schema: st.SearchStrategy) -> dict[str, st.SearchStrategy]:
    names = st.lists(NAMES, max_size=3)
    return {
        "type": st.one_of(TYPES, st.lists(TYPES, min_size=1, max_size=3, unique=True), st.sampled_from(["date", 3])),
        "properties": st.dictionaries(NAMES, schema, max_size=3),
        "required": st.one_of(names, st.just("a")),
        "additionalProperties": st.one_of(schema, st.just("date")),
        "items": schema,
        "prefixItems": st.lists(schema, max_size=2),
        "minItems": COUNTS, "maxItems": COUNTS, "minLength": COUNTS, "maxLength": COUNTS,
        "minProperties": COUNTS, "maxProperties": COUNTS,
        "minimum": BOUNDS, "maximum": BOUNDS, "exclusiveMinimum": BOUNDS, "exclusiveMaximum": BOUNDS,
        "multipleOf": st.one_of(st.sampled_from([2, 0.5, 3, 0, -1, 0.1]), BOUNDS),
        "enum": st.lists(VALUES, max_size=3),
        "const": VALUES,
        "pattern": st.sampled_from(["^a+$", "[0-9]{2}", "(", "é|b", "^(a|b)*$", "\\p{L}"]),
        "format": st.sampled_from(["date", "email", "uuid", "date-time", "ipv4", "made-up"]),
        "anyOf": st.lists(schema, min_size=1, max_size=3),
        "oneOf": st.lists(schema, min_size=1, max_size=2),
        "allOf": st.lists(schema, min_size=1, max_size=2),
        "not": schema,
        "$ref": st.sampled_from(["#", "#/$defs/a", "#/$defs/missing", "#/properties", "http://x.example/s"]),
        "$defs": st.fixed_dictionaries({"a": schema}),
        "uniqueItems": st.one_of(st.booleans(), st.just(["nope"])),
        "contains": schema,
        "minContains": COUNTS, "maxContains": COUNTS,
        "unevaluatedProperties": schema, "unevaluatedItems": schema,
        "propertyNames": schema,
        "patternProperties": st.dictionaries(st.sampled_from(["^a", "b$"]), schema, max_size=1),
        "dependentRequired": st.dictionaries(NAMES, names, max_size=1),
    }


def _schemas() -> st.SearchStrategy:
    """A schema: a boolean, ``{}``, or up to four keywords with values from `keywords` (built once)."""
    table = keywords(SCHEMAS)
    return st.one_of(
        st.booleans(),
        st.just({}),
        st.lists(st.sampled_from(sorted(table)), max_size=4, unique=True).flatmap(
            lambda names: st.fixed_dictionaries({n: table[n] for n in names})
        ),
    )


SCHEMAS = st.deferred(_schemas)


def closing_first(rng: random.Random):
    """Past half the walk, a byte that closes strings, objects, arrays or numbers when one is allowed."""

    def choose(step: int, choices, _walker) -> int:
        closing = [c for c in CLOSING if c in choices] if step > 60 else []
        return closing[0] if closing else rng.choice(choices)

    return choose


@FUZZ
@given(schema=SCHEMAS, seed=st.integers(0, 2**16))
def test_generated_schemas(schema, seed):
    try:
        compiled = BYTE_COMPILER.compile(gad.Grammar.from_json_schema(schema))
    except GadError as error:
        assert str(error)
        return
    VALIDATOR.check_schema(schema)  # gad converted it, so it must be a valid schema
    validator = VALIDATOR(schema, format_checker=VALIDATOR.FORMAT_CHECKER)
    rng = random.Random(seed)
    matcher = gad.GrammarMatcher(compiled)
    for _ in range(4):
        text = random_walk(matcher, rng, 150, stop_probability=0.5, choose=closing_first(rng))
        if text is not None:
            try:
                document = json.loads(text.decode("utf-8"), object_pairs_hook=distinct_keys)
            except RepeatedKey:
                continue
            assert validator.is_valid(document), (schema, text)


class RepeatedKey(Exception):
    """Two additional properties may share a key (README, "Limits and errors"): the parsed object
    then has fewer properties than were written, which ``minProperties`` can see, so such documents
    are not checked against the schema."""


def distinct_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise RepeatedKey(keys)
    return dict(pairs)
