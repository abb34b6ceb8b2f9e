"""`Grammar.from_json_schema`: soundness and completeness against the `jsonschema` library.

Oracles, all independent of the code under test:

* `jsonschema` (Draft 2020-12, with its format checker) validates every document produced by random
  walks through the matcher's masks (no language model: tokens are drawn from `allowed_token_ids`);
* hand-written valid documents (and, where it applies, ones from `hypothesis-jsonschema`), written
  in the grammar's canonical layout, walk through the matcher and end in an accepting state;
* invalid documents (checked invalid by `jsonschema`) are rejected;
* exact `Decimal` comparisons for the number-range regexes, Python's `re.search` for patterns.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from decimal import Decimal

import jsonschema
import jsonschema.validators
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gad
from gad.errors import SchemaError, UnsupportedSchemaError
from gad.grammar.json_schema import SchemaWarning, convert_json_schema
from fractions import Fraction

from gad.grammar.json_numbers import NumberSpec, float_safe, number_dfa
from gad.grammar.json_tokens import SUPPORTED_FORMATS, encode_search
from gad.grammar.regex import compile_regex

FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER

# A toy vocabulary of byte pieces: every printable ASCII byte, JSON punctuation runs, escapes,
# pieces of multi-byte characters ("é" whole and split, "中"), whitespace, and EOS.
VOCAB = (
    [bytes([b]) for b in range(0x20, 0x7F)]
    + [b'{"', b'":', b'",', b'"}', b"},", b"],", b"true", b"false", b"null", b"\\n", b"\\u00", b"\\\\", b'\\"',
       b"\n", b"\t", b"  ", "é".encode(), b"\xc3", b"\xa9", "中".encode(), "文".encode(), b"2024", b"-0", b"@", b"00", b"e-"]
    + [b"<eos>"]
)  # fmt: skip
EOS = len(VOCAB) - 1
INFO = gad.TokenizerInfo.from_vocab(VOCAB, eos_token_id=EOS)
COMPILER = gad.GrammarCompiler(INFO)


def matcher_for(schema, **options) -> gad.GrammarMatcher:
    return gad.GrammarMatcher(COMPILER.compile(gad.Grammar.from_json_schema(schema, **options)))


def accepts(schema_or_matcher, text: str, **options) -> bool:
    m = schema_or_matcher if isinstance(schema_or_matcher, gad.GrammarMatcher) else matcher_for(schema_or_matcher, **options)
    m = m.fork()
    return m.accept_string(text) and m.is_accepting() and m.accept_token(EOS)


def is_valid(doc, schema) -> bool:
    try:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator, format_checker=FORMAT_CHECKER)
    except jsonschema.ValidationError:
        return False
    return True


def dumps(doc) -> str:
    """The grammar's compact layout: no whitespace, key order as given, no exponent, no -0."""
    if isinstance(doc, float):
        if doc == 0:
            return "0.0"
        text = repr(doc)
        return format(Decimal(text), "f") if "e" in text else text
    if isinstance(doc, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + dumps(v) for k, v in doc.items()) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(dumps(v) for v in doc) + "]"
    return json.dumps(doc, ensure_ascii=False)


def random_walk(matcher: gad.GrammarMatcher, rng: random.Random, max_steps: int = 300) -> str | None:
    """Draw allowed tokens uniformly (EOS with probability 1/2 when allowed) until EOS; once past
    half the budget, prefer tokens that close things. None if the budget runs out."""
    m = matcher.fork()
    out = b""
    closing = [VOCAB.index(p) for p in (b'"', b"}", b"]", b"0", b"1", b"a", b"null", b"-0")]
    for step in range(max_steps):
        allowed = m.allowed_token_ids()
        if EOS in allowed and (rng.random() < 0.5 or len(allowed) == 1):
            assert m.accept_token(EOS)
            return out.decode("utf-8")
        choices = [t for t in allowed if t != EOS]
        if step > max_steps // 2:
            preferred = [t for t in closing if t in choices]
            choices = preferred[:1] or choices
        token = rng.choice(choices)
        assert m.accept_token(token)
        out += VOCAB[token]
    return None


# -- the corpus: (name, schema, valid documents in canonical layout, invalid documents) ------------

PERSON = {  # json-schema.org "person" example
    "$id": "https://example.com/person.schema.json",
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Person",
    "type": "object",
    "properties": {
        "firstName": {"type": "string", "description": "The person's first name."},
        "lastName": {"type": "string"},
        "age": {"description": "Age in years", "type": "integer", "minimum": 0},
    },
}
GEO = {  # json-schema.org "geographical location"
    "title": "Longitude and Latitude Values",
    "required": ["latitude", "longitude"],
    "type": "object",
    "properties": {
        "latitude": {"type": "number", "minimum": -90, "maximum": 90},
        "longitude": {"type": "number", "minimum": -180, "maximum": 180},
    },
}
ARRAYS = {  # json-schema.org "arrays of things", with $defs
    "type": "object",
    "properties": {
        "fruits": {"type": "array", "items": {"type": "string"}},
        "vegetables": {"type": "array", "items": {"$ref": "#/$defs/veggie"}},
    },
    "$defs": {
        "veggie": {
            "type": "object",
            "required": ["veggieName", "veggieLike"],
            "properties": {
                "veggieName": {"type": "string", "description": "The name of the vegetable."},
                "veggieLike": {"type": "boolean"},
            },
        }
    },
}
CALENDAR = {  # json-schema.org "calendar", trimmed
    "type": "object",
    "required": ["dtstart", "summary"],
    "properties": {
        "startDate": {"type": "string", "format": "date"},
        "dtstart": {"type": "string", "format": "date-time"},
        "summary": {"type": "string"},
        "uid": {"type": "string", "format": "uuid"},
        "url": {"type": "string", "format": "uri"},
        "duration": {"type": "string", "format": "time"},
    },
    "additionalProperties": False,
}
TREE = {  # recursion through $defs
    "$ref": "#/$defs/node",
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
}
PET = {  # OpenAPI pet store "Pet", draft-7 style
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "Category": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
        "Tag": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
    },
    "type": "object",
    "required": ["name", "photoUrls"],
    "properties": {
        "id": {"type": "integer", "format": "int64"} if False else {"type": "integer"},
        "category": {"$ref": "#/definitions/Category"},
        "name": {"type": "string", "examples": ["doggie"]},
        "photoUrls": {"type": "array", "items": {"type": "string"}},
        "tags": {"type": "array", "items": {"$ref": "#/definitions/Tag"}},
        "status": {"type": "string", "enum": ["available", "pending", "sold"]},
    },
}
GEOJSON_POINT = {
    "type": "object",
    "required": ["type", "coordinates"],
    "properties": {
        "type": {"type": "string", "enum": ["Point"]},
        "coordinates": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}},
        "bbox": {"type": "array", "minItems": 4, "items": {"type": "number"}},
    },
}
SHAPES = {  # a discriminated union, as pydantic writes it
    "oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "exclusiveMinimum": 0}},
         "required": ["kind", "r"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "rect"}, "w": {"type": "integer", "minimum": 1},
         "h": {"type": "integer", "minimum": 1}}, "required": ["kind", "w", "h"], "additionalProperties": False},
    ]
}  # fmt: skip
EXTRACTION = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "age": {"type": ["integer", "null"], "minimum": 0, "maximum": 130},
        "email": {"type": "string", "format": "email"},
        "city": {"anyOf": [{"type": "string", "pattern": "^[A-Z][a-z]+( [A-Z][a-z]+)*$"}, {"type": "null"}]},
        "languages": {"type": "array", "items": {"enum": ["en", "fr", "de", "中文"]}, "maxItems": 4},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
MIXED = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": r"^[A-Z]{2}-\d{3}$"},
        "price": {"type": "number", "minimum": 0.5, "exclusiveMaximum": 100},
        "qty": {"type": "integer", "exclusiveMinimum": -3, "maximum": 12},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
        "note": {"type": "string", "maxLength": 5},
        "meta": {"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 2},
        "extra": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                            {"properties": {"a": {"minimum": 10}, "b": {"const": [1, {"x": None}]}}, "required": ["b"]}]},
    },
    "additionalProperties": {"type": "boolean"},
}  # fmt: skip
TYPELESS = {"minLength": 2, "maximum": 5, "items": {"type": "null"}, "properties": {"k": {"type": "boolean"}}}

PATTERN_PROPERTIES = {  # a key gets its properties entry and every pattern it matches
    "type": "object",
    "properties": {"id": {"type": "integer"}, "x_id": {"minimum": 5}},
    "patternProperties": {"^x_": {"type": "integer"}, "_id$": {"type": "integer", "maximum": 100}, "é": {"type": "string"}},
    "additionalProperties": {"type": "boolean"},
}

CORPUS = [
    ("person", PERSON,
     ['{"firstName":"John","lastName":"Doe","age":21}', "{}", '{"age":0}', '{"firstName":"é\\"\\n","nick":[1,{}]}'],
     ['{"age":-1}', '{"age":1.5}', '{"firstName":3}', '{"lastName":"a",}']),
    ("geo", GEO,
     ['{"latitude":48.858093,"longitude":2.294694}', '{"latitude":-90,"longitude":180}', '{"latitude":0,"longitude":-0.5}'],
     ['{"latitude":90.5,"longitude":0}', '{"longitude":0}', '{"latitude":1,"longitude":-180.0001}']),
    ("arrays", ARRAYS,
     ['{"fruits":["apple","orange","pear"],"vegetables":[{"veggieName":"potato","veggieLike":true},'
      '{"veggieName":"broccoli","veggieLike":false}]}', '{"vegetables":[]}'],
     ['{"vegetables":[{"veggieName":"potato"}]}', '{"fruits":[1]}']),
    ("calendar", CALENDAR,
     ['{"startDate":"2024-02-29","dtstart":"2024-06-01T10:00:00Z","summary":"x",'
      '"uid":"123e4567-e89b-12d3-a456-426614174000","url":"https://example.com/a?b=1#c","duration":"23:59:59.5+02:00"}',
      '{"dtstart":"1999-12-31t23:59:59.123-05:30","summary":""}'],
     ['{"startDate":"2023-02-29","dtstart":"2024-06-01T10:00:00Z","summary":"x"}',
      '{"dtstart":"2024-06-01 10:00:00Z","summary":"x"}', '{"dtstart":"2024-06-01T10:00:00Z","summary":"x","uid":"123"}',
      '{"dtstart":"2024-06-01T10:00:00Z","summary":"x","url":"not a uri"}',
      '{"dtstart":"2024-06-01T10:00:00Z","summary":"x","x":1}']),
    ("tree", TREE,
     ['{"value":1}', '{"value":1,"children":[{"value":2,"children":[]},{"value":-3,"children":[{"value":4}]}]}'],
     ['{"value":1,"children":[{}]}', '{"value":1,"children":[{"value":1},{"value":2},{"value":3},{"value":4}]}']),
    ("pet", PET,
     ['{"id":10,"category":{"id":1,"name":"Dogs"},"name":"doggie","photoUrls":["u"],"tags":[{"id":0}],"status":"sold"}',
      '{"name":"x","photoUrls":[]}'],
     ['{"name":"x"}', '{"name":"x","photoUrls":[],"status":"lost"}']),
    ("geojson-point", GEOJSON_POINT,
     ['{"type":"Point","coordinates":[125.6,10.1]}', '{"type":"Point","coordinates":[1,2,3],"bbox":[0,0,1,1.5]}'],
     ['{"type":"Point","coordinates":[125.6]}', '{"type":"Line","coordinates":[1,2]}',
      '{"type":"Point","coordinates":[1,2],"bbox":[1,2,3]}']),
    ("shapes", SHAPES,
     ['{"kind":"circle","r":0.5}', '{"kind":"rect","w":2,"h":3}'],
     ['{"kind":"circle","r":0}', '{"kind":"rect","w":2}', '{"kind":"circle","r":1,"w":2}']),
    ("extraction", EXTRACTION,
     ['{"name":"Ada Lovelace","age":36,"email":"ada@example.org","city":"London","languages":["en","中文"]}',
      '{"name":"B","age":null,"city":null}', '{"name":"C","age":0,"city":"New York"}'],
     ['{"name":"","age":3}', '{"name":"x","age":131}', '{"name":"x","age":1,"city":"london"}',
      '{"name":"x","age":1,"languages":["es"]}', '{"name":"x","age":1,"email":"nope"}']),
    ("mixed", MIXED,
     ['{"id":"AB-123","price":0.5,"qty":-2,"pair":["a",true],"note":"1234\\"","meta":{"a":1,"b":2},'
      '"extra":{"a":10,"b":[1,{"x":null}]},"flag":false}', '{"price":99.99999,"pair":["x"],"meta":{}}', '{"qty":12}'],
     ['{"id":"AB-1234"}', '{"price":100}', '{"price":0.49}', '{"qty":-3}', '{"pair":["a",true,1]}',
      '{"note":"123456"}', '{"meta":{"a":1,"b":2,"c":3}}', '{"extra":{"a":9,"b":[1,{"x":null}]}}',
      '{"extra":{"a":10}}', '{"zzz":1}']),
    ("typeless", TYPELESS,
     ['"ab"', "5", "-1.5", "null", "[null]", '{"k":true}', "true", "[]"],
     ['"a"', "6", "[1]", '{"k":1}']),
    ("const-enum", {"enum": [1, "two", [3], {"four": 4}, None, True]},
     ["1", '"two"', "[3]", '{"four":4}', "null", "true"], ["2", "false", '"three"', "[3,3]"]),
    ("boolean-true", True, ["1", '{"a":[]}', '"x"'], []),
    ("type-list", {"type": ["string", "integer"], "maxLength": 2, "minimum": 3},
     ['"ab"', "3", "100"], ['"abc"', "2", "3.5", "null"]),
    ("pattern-properties", PATTERN_PROPERTIES,
     ['{"id":1}', '{"id":1,"x_a":3}', '{"x_id":50}', '{"a_id":7}', '{"zz":true}', '{"é":"s"}', '{"x_b_id":99}',
      '{"x_id":5,"q":false}', '{"id":2,"x_a":1,"zz":false,"a_id":3}'],
     ['{"x_a":"s"}', '{"x_id":3}', '{"x_id":101}', '{"a_id":true}', '{"zz":1}', '{"é":1}', '{"x_b_id":101}',
      '{"xé":1}', '{"x\\u005fa":"s"}', '{"id":"1"}']),
    ("property-names", {"type": "object", "properties": {"ab": {}, "toolongname": {}},
                        "propertyNames": {"maxLength": 3, "pattern": "^[a-z]+$"}},
     ["{}", '{"ab":1}', '{"abc":[]}', '{"ab":1,"x":2}', '{"x":1,"y":2}'],
     ['{"toolongname":1}', '{"ABC":1}', '{"abcd":1}', '{"a1":1}', '{"":1}']),
    ("pattern-properties-allof", {"allOf": [{"patternProperties": {"^a": {"type": "integer"}}},
                                            {"patternProperties": {"b$": {"minimum": 10}}, "properties": {"ab": {"maximum": 20}}}]},
     ['{"a":1}', '{"ab":15}', '{"axb":12}', '{"b":"s"}', '{"zz":null}', '{"ab":15,"a":-1}'],
     ['{"a":"s"}', '{"ab":25}', '{"ab":5}', '{"axb":5}', '{"axb":"s"}', '{"ab":15,"a":"s"}']),
    ("contains", {"type": "array", "contains": {"type": "integer"}},
     ["[1]", '["a",1]', '[1,2,"b"]', '[null,"x",3]'], ["[]", '["a"]', '["a",null]']),
    ("contains-counted", {"type": "array", "items": {"type": "boolean"}, "contains": {"const": True},
                          "minContains": 2, "maxContains": 3},
     ["[true,true]", "[true,false,true]", "[false,true,true,true,false]"],
     ["[true]", "[true,true,true,true]", "[]", "[false,false]", '[true,true,"x"]']),
    ("contains-prefix", {"prefixItems": [{"type": "string"}], "contains": {"type": "string"}, "minContains": 2, "maxItems": 3},
     ['["a","b"]', '["a",1,"b"]', '["a","b","c"]'], ['["a"]', '[1,"b","c"]', '["a",1,2]', '["a","b","c","d"]']),
    ("contains-at-most-one", {"type": "array", "contains": {"minimum": 5}, "maxContains": 1},
     ["[5]", "[1,5]", "[7,4]"], ["[]", "[5,6]", "[1,2]", "[9,9,1]", '[1,5,"x"]']),  # "x" matches too
    ("unevaluated-properties", {"$defs": {"base": {"properties": {"id": {"type": "integer"}}, "patternProperties": {"^x": {}}}},
                                "$ref": "#/$defs/base", "properties": {"name": {"type": "string"}},
                                "unevaluatedProperties": False},
     ['{"name":"a"}', '{"name":"a","id":1}', '{"id":2,"xyz":null}', "{}"],
     ['{"other":1}', '{"name":"a","q":1}', '{"id":"1"}']),
    ("unevaluated-nested", {"allOf": [{"properties": {"a": {}}, "unevaluatedProperties": False}],
                            "properties": {"b": {}}},  # the inner one sees only "a": "b" is refused there
     ['{"a":1}', "{}"], ['{"b":1}', '{"a":1,"b":2}']),
    ("unevaluated-explicit-additional", {"allOf": [{"additionalProperties": True}], "unevaluatedProperties": False},
     ['{"q":1}', "{}"], []),  # additionalProperties evaluates every property, even when true
    ("unevaluated-items", {"prefixItems": [{"type": "integer"}], "allOf": [{"prefixItems": [True, {"type": "string"}]}],
                           "unevaluatedItems": {"type": "boolean"}},
     ["[1]", '[1,"a"]', '[1,"a",true,false]'], ['[1,"a",2]', '["a"]', '[1,2]']),

]  # fmt: skip


@pytest.mark.parametrize("name, schema, valid, invalid", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_documents(name, schema, valid, invalid):
    m = matcher_for(schema)
    for text in valid:
        assert is_valid(json.loads(text), schema), f"test data: {text} should be valid"
        assert accepts(m, text), f"{name}: valid document rejected: {text}"
    for text in invalid:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        assert doc is None or not is_valid(doc, schema), f"test data: {text} should be invalid"
        assert not accepts(m, text), f"{name}: invalid document accepted: {text}"


@pytest.mark.parametrize("name, schema", [(c[0], c[1]) for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_random_walks_validate(name, schema):
    """Every complete document the masks allow validates (soundness), for 25 walks per schema."""
    m = matcher_for(schema)
    rng = random.Random(name)
    done = 0
    for _ in range(25):
        text = random_walk(m, rng)
        if text is None:
            continue
        done += 1
        doc = json.loads(text)
        assert is_valid(doc, schema), f"{name}: generated document does not validate: {text}"
    assert done >= 15


def test_property_names_refusing_a_required_name_leave_no_document():
    with pytest.raises(SchemaError, match="no JSON document"):
        gad.Grammar.from_json_schema({"type": "object", "required": ["TooLong"], "propertyNames": {"maxLength": 3}})


@pytest.mark.parametrize(
    "schema, keyword",
    [({"allOf": [{"patternProperties": {"^a": {}}}, {"additionalProperties": False}]}, "patternProperties"),
     ({"propertyNames": {"enum": ["a", "b"]}}, "propertyNames"),
     ({"patternProperties": {f"^{c}": {} for c in "abcdefg"}}, "patternProperties"),
     ({"contains": {"type": "integer"}, "maxContains": 2}, "maxContains"),  # "not integer" is not writable
     ({"allOf": [{"contains": {"type": "string"}}, {"contains": {"type": "null"}}]}, "contains"),
     ({"anyOf": [{"properties": {"a": {}}}], "unevaluatedProperties": False}, "unevaluatedProperties"),
     ({"contains": {"type": "string"}, "unevaluatedItems": False}, "unevaluatedItems")],
)  # fmt: skip
def test_key_and_contains_constraints_beyond_the_supported_ones_are_named(schema, keyword):
    with pytest.raises(UnsupportedSchemaError) as info:
        gad.Grammar.from_json_schema(schema)
    assert info.value.keyword == keyword


ANY_ORDER = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {}},
             "required": ["a", "b"], "additionalProperties": {"type": "boolean"}, "maxProperties": 4}


def test_any_property_order_accepts_exactly_the_valid_orders():
    m = matcher_for(ANY_ORDER, property_order="any")
    values = {"a": 1, "b": "x", "c": None, "z": True, "y": False}
    for size in range(0, 6):
        for keys in itertools.permutations(values, size):
            doc = {k: values[k] for k in keys}
            assert accepts(m, dumps(doc)) == is_valid(doc, ANY_ORDER), doc
    assert not accepts(m, '{"a":1,"b":"x","a":2}')  # a named property at most once
    assert not accepts(m, '{"b":"x","a":"1"}')
    rng = random.Random(0)
    walks = [random_walk(m, rng) for _ in range(25)]
    assert all(is_valid(json.loads(w), ANY_ORDER) for w in walks if w is not None)
    assert len({tuple(json.loads(w)) for w in walks if w is not None}) > 3  # orders vary


def test_any_property_order_is_bounded():
    schema = {"type": "object", "properties": {f"p{i}": {} for i in range(11)}}
    with pytest.raises(UnsupportedSchemaError, match="property_order='any' over 11 properties"):
        gad.Grammar.from_json_schema(schema, property_order="any")
    with pytest.raises(gad.ConfigurationError, match="property_order"):
        gad.Grammar.from_json_schema(schema, property_order="sorted")


def test_whitespace_bounded():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}
    assert accepts(schema, '{ "a" : [ 1 ,\n2 ] }', whitespace=1)
    assert accepts(schema, '{\n  "a": [\n    1,\n    2\n  ]\n}', whitespace=5)
    assert accepts(schema, '{"a":[1,2]}', whitespace=5)
    assert not accepts(schema, '{\n      "a":[]}', whitespace=5)  # six characters
    assert not accepts(schema, ' {"a":[]}', whitespace=5)  # none before the first token
    assert not accepts(schema, '{ "a":[]}', whitespace="compact")
    assert accepts(schema, '{\n' + ' ' * 15 + '"a": []}') and not accepts(schema, '{\n' + ' ' * 16 + '"a": []}')  # default 16
    assert accepts(schema, "{ }", whitespace=1) and accepts(schema, '{"a":[ ]}', whitespace=1)
    with pytest.raises(gad.ConfigurationError, match="whitespace"):
        gad.Grammar.from_json_schema(schema, whitespace="pretty")


def test_property_order_follows_schema():
    schema = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}, "required": ["a", "b"]}
    assert accepts(schema, '{"b":1,"a":2}')
    assert not accepts(schema, '{"a":2,"b":1}')


def test_extra_properties_option():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert accepts(schema, '{"a":1,"b":2}')
    assert not accepts(schema, '{"a":1,"b":2}', extra_properties=False)
    assert accepts(schema, '{"a":1}', extra_properties=False)
    assert accepts({"type": "object"}, '{"z":[]}', extra_properties=False)  # a free-form dict stays free


def test_additional_property_keys_never_repeat_named_ones():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}
    assert accepts(schema, '{"a":1,"ab":"x"}')
    assert not accepts(schema, '{"a":1,"a":"x"}')
    assert not accepts(schema, '{"a":"x"}')
    assert not accepts(schema, '{"\\u0061":"x"}')  # another spelling of "a"


def test_strings_count_characters_not_bytes_or_escapes():
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    for text, ok in [('"ab"', True), ('"中文字"', True), ('"\\n\\u00e9"', True), ('"\\ud83d\\ude00x"', True),
                     ('"a"', False), ('"abcd"', False), ('"\\ud83d\\ude00"', False), ('"\\ud83dx"', False)]:  # fmt: skip
        assert accepts(schema, text) == ok, text
        if ok:
            assert is_valid(json.loads(text), schema)


def test_lone_surrogates_are_not_text():
    assert not accepts({"type": "string"}, '"\\ud800"')
    assert accepts({"type": "string"}, '"\\ud800\\udc00"')


@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
def test_format_regexes_are_within_the_format_checker(fmt):
    """Every string the format regex generates passes `jsonschema`'s format checker."""
    regex = SUPPORTED_FORMATS[fmt]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(re.compile(regex, re.ASCII), fullmatch=True))
    def check(text):
        assert FORMAT_CHECKER.conforms(text, fmt), (fmt, text)

    check()


# -- strings: patterns ------------------------------------------------------------------------------

PATTERNS = [r"^[a-z]+$", r"ab", r"^\d{3}-\d{4}$", r"(?i)^hello", r"x$|^y", r'^[^"\\]*$', r"é.\n", r"^(a|b)*c?$", r"^\w+@\w+$"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_strings_match_re_search(pattern):
    schema = {"type": "string", "pattern": pattern}
    m = matcher_for(schema)
    dfa = compile_regex('"' + encode_search(pattern) + '"', whole_input=True)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.from_regex(pattern), st.text(alphabet="abcxyHELOhelo0123-@é\"\\\n", max_size=8)))
    def check(text):
        encoded = json.dumps(text, ensure_ascii=False)
        assert dfa.fullmatch(encoded.encode()) == bool(re.search(pattern, text)), (pattern, text)

    check()
    rng = random.Random(pattern)
    for _ in range(10):
        text = random_walk(m, rng)
        if text is not None:
            assert re.search(pattern, json.loads(text)), (pattern, text)


def test_unsupported_patterns_name_the_keyword():
    with pytest.raises(UnsupportedSchemaError, match=r"'pattern' at #/properties/p.*lookbehind"):
        gad.Grammar.from_json_schema({"properties": {"p": {"type": "string", "pattern": "(?<=a)b"}}})
    with pytest.raises(UnsupportedSchemaError, match=r"'pattern' at #"):
        gad.Grammar.from_json_schema({"type": "string", "pattern": r"(a)\1"})


# -- numbers ---------------------------------------------------------------------------------------


def decimals(rng: random.Random, n: int) -> list[str]:
    out = ["0", "1", "-1", "0.0", "-0", "10", "0.5", "-0.5", "100", "99.999"]
    for _ in range(n):
        whole = str(rng.choice([0, rng.randint(0, 20), rng.randint(0, 10**6)]))
        text = ("-" if rng.random() < 0.4 else "") + whole
        if rng.random() < 0.6:
            text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))
        out.append(text)
    return out


@pytest.mark.parametrize(
    "low, high",
    [(0, None), (None, 0), (-5, 17), (3, 3), (-120, -7), (None, -11), (7, None), (0, 999), (-1000, 1000), (95, 1204)],
)
def test_integer_range_automaton(low, high):
    dfa = number_dfa(NumberSpec(integer=True, lo=None if low is None else Decimal(low), hi=None if high is None else Decimal(high)))
    for n in range(-1300, 1300):
        assert dfa.fullmatch(str(n).encode()) == ((low is None or n >= low) and (high is None or n <= high)), n
    assert not dfa.fullmatch(b"-0") and not dfa.fullmatch(b"007")
    assert dfa.fullmatch(str(10**30).encode()) == (high is None)


@pytest.mark.parametrize(
    "low, high",
    [("0", None), (None, "0"), ("-2.5", "3.25"), ("0.05", "0.5"), ("-10", "-0.125"), ("1.5", "1.75"), ("0.001", "0.0105"),
     (None, "-3.5"), ("12.34", None), ("0", "0"), ("-0.5", "0"), ("3", "3")],
)  # fmt: skip
def test_decimal_range_automaton(low, high):
    lo = Decimal(low) if low is not None else None
    hi = Decimal(high) if high is not None else None
    dfa = number_dfa(NumberSpec(lo=lo, hi=hi))
    for text in decimals(random.Random(f"{low}{high}"), 1500):
        value = Decimal(text)
        expected = (lo is None or value >= lo) and (hi is None or value <= hi) and not text.startswith("-0")
        expected = expected or (text.startswith("-0") and value != 0 and (lo is None or value >= lo) and (hi is None or value <= hi))
        assert dfa.fullmatch(text.encode()) == expected, (low, high, text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.floats(-1e6, 1e6), st.integers(-10**6, 10**6), st.floats(-1e-5, 1e-5)),
    st.booleans(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(14, 22),
)
def test_float_bounds_stay_sound_after_float_rounding(bound, up, strict, shift, digits):
    """A decimal inside the closed bound parses to a float inside the schema's bound; and the
    shortest repr of the last double inside is itself inside (nothing natural is lost)."""
    c = float_safe(bound, up=up, strict=strict)
    # a decimal right at the closed bound, nudged in the last places
    x = c + Decimal(shift) * Decimal(1).scaleb(c.adjusted() - digits if c else -digits)
    inside = x >= c if up else x <= c
    if inside and abs(x) >= Decimal("1e-20") or x == 0:
        f = float(x)
        assert (f > bound if strict else f >= bound) if up else (f < bound if strict else f <= bound), (bound, c, x)
    last = float(bound)
    while (last < bound or (strict and last == bound)) if up else (last > bound or (strict and last == bound)):
        last = math.nextafter(last, math.inf if up else -math.inf)
    if abs(last) > 1e-20 or last == 0:
        assert (Decimal(repr(last)) >= c) if up else (Decimal(repr(last)) <= c), (bound, last, c)


def test_number_bounds_in_the_grammar():
    schema = {"type": "number", "exclusiveMaximum": 0.1}
    assert not accepts(schema, "0.1") and accepts(schema, "0.0999") and accepts(schema, "0.09999999999999999")
    assert not accepts(schema, "0.10000000000000000001")  # parses to 0.1 itself
    assert accepts({"type": "number", "exclusiveMaximum": 1000}, "999.9999999999999")
    assert not accepts({"type": "number", "exclusiveMaximum": 1000}, "999.99999999999999")  # parses to 1000.0
    assert accepts({"type": "number", "exclusiveMinimum": 0}, "0.001") and not accepts({"type": "number", "exclusiveMinimum": 0}, "0")


@pytest.mark.parametrize("divisor", [Fraction(7), Fraction(12), Fraction(1, 4), Fraction(3, 2), Fraction(1, 20)])
def test_multiple_of_automaton_is_exact(divisor):
    dfa = number_dfa(NumberSpec(multiples=(divisor,)))
    for text in decimals(random.Random(str(divisor)), 1500) + ["0.25", "1.5", "-3.75", "84", "0.05", "0.1"]:
        expected = Fraction(Decimal(text)) % divisor == 0 and not text.startswith("-0")
        expected = expected or (text.startswith("-0") and Decimal(text) != 0 and Fraction(Decimal(text)) % divisor == 0)
        assert dfa.fullmatch(text.encode()) == expected, (divisor, text)


@pytest.mark.parametrize(
    "schema",
    [{"type": "integer", "multipleOf": 7}, {"type": "number", "multipleOf": 12}, {"type": "number", "multipleOf": 0.25},
     {"type": "number", "multipleOf": 1.5, "minimum": -20}, {"allOf": [{"multipleOf": 2}, {"multipleOf": 3}], "type": "integer"},
     {"type": "number", "multipleOf": 1}],
)  # fmt: skip
def test_multiple_of_in_the_grammar_agrees_with_jsonschema(schema):
    """Every text the grammar accepts validates (`jsonschema` divides floats: the grammar keeps to
    values where that is exact); exact multiples in the integer layout are accepted."""
    m = matcher_for(schema)
    for text in decimals(random.Random(json.dumps(schema)), 600) + ["0", "42", "-36", "1.5", "0.75", "3.0", "1e3"]:
        if accepts(m, text):
            assert is_valid(json.loads(text), schema), text
    for n in range(-40, 41):
        assert accepts(m, str(n)) == is_valid(n, schema), n


def test_multiple_of_with_an_inexact_float_divisor_is_unsupported():
    with pytest.raises(UnsupportedSchemaError, match=r"'multipleOf' at #/properties/x"):
        gad.Grammar.from_json_schema({"properties": {"x": {"type": "number", "multipleOf": 0.01}}})


# -- errors, lenient mode, inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema, keyword, pointer",
    [
        ({"properties": {"a": {"not": {"type": "string", "pattern": "^x"}}}}, "not", "#/properties/a/not"),
        ({"items": {"uniqueItems": True}}, "uniqueItems", "#/items"),
        ({"patternProperties": {f"^{c}": {} for c in "abcdefg"}}, "patternProperties", "#"),
        ({"$defs": {"a/b": {"if": {"multipleOf": 2}}}, "$ref": "#/$defs/a~1b"}, "if", "#/$defs/a~1b/if"),
        ({"type": "string", "format": "hostname"}, "format", "#"),
        ({"oneOf": [{"type": "integer"}, {"minimum": 3}]}, "oneOf", "#"),
        ({"$ref": "https://example.com/other.json"}, "$ref", "#"),
    ],
)
def test_unsupported_keywords_raise_with_pointer(schema, keyword, pointer):
    with pytest.raises(UnsupportedSchemaError) as info:
        gad.Grammar.from_json_schema(schema)
    assert info.value.keyword == keyword and info.value.pointer == pointer
    assert f"{keyword!r} at {pointer}" in str(info.value)
    assert isinstance(info.value, gad.GrammarError)


def test_lenient_mode_reports_what_it_dropped():
    schema = {"type": "object", "properties": {"a": {"type": "integer", "not": {"const": 3}}, "b": {"type": "array", "uniqueItems": True}}}
    with pytest.warns(SchemaWarning, match=r"'not' at #/properties/a.*'uniqueItems' at #/properties/b"):
        grammar = gad.Grammar.from_json_schema(schema, lenient=True)
    m = gad.GrammarMatcher(COMPILER.compile(grammar))
    assert accepts(m, '{"a":3,"b":[1,1]}')  # looser where it dropped, as reported
    result = convert_json_schema(schema, lenient=True)
    assert len(result.dropped) == 2


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "integr"}, "invalid schema at #/type"),
        ({"properties": {"a": {"minLength": -1}}}, "invalid schema at #/properties/a/minLength"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"required": "a"}, "invalid schema at #/required"),
        ({"additionalProperties": "date"}, "invalid schema at #/additionalProperties"),
        ({"items": {"uniqueItems": ["nope"]}}, "invalid schema at #/items/uniqueItems"),
        ('{"minLength": Infinity}', "Infinity is not a JSON number"),
        ({"maximum": float("nan")}, "#/maximum is nan, which is not a JSON number"),
        ({"properties": {1: {}}}, "JSON object keys are strings"),
        (json.loads('{"items":' * 200 + "{}" + "}" * 200), "nests deeper than 128 levels"),
        (False, "no document"),
        ({"type": "object", "required": ["a"], "additionalProperties": False}, "no JSON document"),
        ("{not json", "not valid JSON"),
        ({"type": "string", "pattern": "(unclosed"}, "'pattern' at #/pattern"),
    ],
)
def test_malformed_schemas(schema, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        gad.Grammar.from_json_schema(schema)


def test_schema_as_json_string_and_pydantic_model():
    pydantic = pytest.importorskip("pydantic")
    from typing import Literal, Optional

    class Address(pydantic.BaseModel):
        street: str
        zip: str = pydantic.Field(pattern=r"^\d{5}$")

    class Person(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        name: str = pydantic.Field(max_length=10)
        kind: Literal["a", "b"]
        age: Optional[int] = None
        addresses: list[Address] = []

    schema = Person.model_json_schema()
    m = gad.GrammarMatcher(COMPILER.compile(gad.Grammar.from_json_schema(Person)))
    doc = '{"name":"Bo","kind":"b","age":null,"addresses":[{"street":"Main","zip":"12345"}]}'
    assert accepts(m, doc) and is_valid(json.loads(doc), schema)
    Person.model_validate_json(doc)
    assert not accepts(m, '{"name":"Bo","kind":"c"}')
    rng = random.Random(1)
    for _ in range(10):
        text = random_walk(m, rng)
        if text is not None:
            Person.model_validate_json(text)
    assert accepts(json.dumps({"type": "integer"}), "12")


VALID_DOCUMENTS = [  # (schema, a hypothesis strategy for documents valid under it, written in schema order)
    (
        {"type": "object", "properties": {"a": {"type": "integer", "minimum": -5, "maximum": 500},
         "b": {"type": "string", "maxLength": 4}, "c": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
         "required": ["a"], "additionalProperties": False},
        st.fixed_dictionaries({"a": st.integers(-5, 500)},
                              optional={"b": st.text(max_size=4), "c": st.lists(st.booleans(), max_size=3)}),
    ),
    (
        {"type": "array", "items": {"type": "number", "minimum": -2.5, "exclusiveMaximum": 1000}, "maxItems": 4},
        st.lists(st.one_of(st.integers(-2, 999), st.floats(-2.5, 1000, exclude_max=True)), max_size=4),
    ),
    (
        {"anyOf": [{"type": "string", "pattern": "^[a-c]{2,4}$"}, {"type": "null"}, {"enum": [1, [2]]}]},
        st.one_of(st.from_regex("^[a-c]{2,4}$"), st.none(), st.sampled_from([1, [2]])),
    ),
    ({"type": "string"}, st.text()),
]  # fmt: skip


@pytest.mark.parametrize("schema, documents", VALID_DOCUMENTS)
def test_generated_valid_documents_walk_through(schema, documents):
    m = matcher_for(schema)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(documents)
    def check(doc):
        if isinstance(doc, dict):  # the grammar writes properties in schema order
            order = list(schema["properties"])
            doc = {k: doc[k] for k in sorted(doc, key=order.index)}
        text = dumps(doc)
        if re.search("[\ud800-\udfff]", text):
            return  # lone surrogates are not text
        assert is_valid(doc, schema)
        assert accepts(m, text), text

    check()


def test_hand_built_automata_equal_the_regex_compilers(tmp_path):
    """Terminals built here (counted lengths) are the automata `compile_regex` gives for their
    regex, so a compiled schema grammar survives save/load. (Intersections — a pattern and a length
    bound on one string — are written as lookaheads, which `compile_regex` finds too large today.)"""
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "minLength": 1, "maxLength": 3},
        "b": {"type": "string", "pattern": "^x"}, "c": {"type": "string", "format": "date"}}}  # fmt: skip
    grammar = gad.Grammar.from_json_schema(schema)
    for terminal in grammar.terminals.values():
        again = compile_regex(terminal.regex, whole_input=True)
        assert (again.table, again.accepting) == (terminal.dfa.table, terminal.dfa.accepting), terminal.name
    compiled = COMPILER.compile(grammar)
    compiled.save(tmp_path / "schema.npz")
    loaded = gad.CompiledGrammar.load(tmp_path / "schema.npz", INFO)
    m = gad.GrammarMatcher(loaded)
    assert accepts(m, "{\"a\":\"xy\",\"b\":\"x@a.bc\"}") and not accepts(m, "{\"b\":\"y@a.bc\"}")


def test_anchors_counts_and_unsupported_anchor_positions():
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#point"}, "tags": {"type": "object", "additionalProperties": {"type": "integer"},
                                                         "minProperties": 1, "maxProperties": 2}},
        "$defs": {"pt": {"$anchor": "point", "type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                         "minItems": 2, "items": False}},
    }  # fmt: skip
    m = matcher_for(schema)
    for text, ok in [('{"p":[1,2]}', True), ('{"p":[1]}', False), ('{"tags":{"a":1}}', True), ('{"tags":{}}', False),
                     ('{"tags":{"a":1,"b":2}}', True), ('{"tags":{"a":1,"b":2,"c":3}}', False)]:  # fmt: skip
        assert accepts(m, text) == ok == is_valid(json.loads(text), schema), text
    with pytest.raises(UnsupportedSchemaError, match="'pattern' at #.*anchors"):
        gad.Grammar.from_json_schema({"type": "string", "pattern": "a(^b)"})


# -- references resolve by JSON Schema's rules (issue 20) --------------------------------------------

REFERENCE_CASES = [
    # B1: an anchor is scoped to its $id resource: "#x" is the root's x (maximum 2), not other/'s
    ({"$ref": "#x", "$defs": {"a": {"$anchor": "x", "type": "integer", "maximum": 2},
                              "b": {"$id": "https://example.com/other/", "$anchor": "x", "type": "integer", "maximum": 10}}},
     ["1", "2", "5", "10", "11"]),
    # B2: "#/..." inside a subschema with its own $id resolves in that resource
    ({"$id": "https://example.com/root", "properties": {"p": {"$id": "https://example.com/sub/", "$ref": "#/$defs/t",
                                                              "$defs": {"t": {"type": "integer"}}}},
      "$defs": {"t": {"type": "string"}}},
     ['{"p":1}', '{"p":"a"}', "{}"]),
    # relative $ref against the $id of the enclosing resource, and a urn: base
    ({"$id": "https://example.com/a/root.json", "properties": {"q": {"$ref": "item.json"}},
      "$defs": {"i": {"$id": "item.json", "type": "boolean"}}},
     ['{"q":true}', '{"q":1}']),
    ({"$id": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed", "properties": {"r": {"$ref": "#/$defs/n"}},
      "$defs": {"n": {"type": "null"}}},
     ['{"r":null}', '{"r":0}']),
]  # fmt: skip


@pytest.mark.parametrize("schema, texts", REFERENCE_CASES)
def test_references_resolve_like_jsonschema(schema, texts):
    m = matcher_for(schema)
    for text in texts:
        assert accepts(m, text) == is_valid(json.loads(text), schema), text


def test_draft7_fragment_ids_are_anchors():
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "allOf": [{"$ref": "#foo"}],
              "definitions": {"A": {"$id": "#foo", "type": "integer"}}}  # fmt: skip
    m = matcher_for(schema)
    for text in ["1", '"a"']:
        assert accepts(m, text) == jsonschema.Draft7Validator(schema).is_valid(json.loads(text)), text


def test_remote_references_are_unsupported_not_fetched():
    with pytest.raises(UnsupportedSchemaError, match=r"'\$ref' at #/properties/a: 'https://example.com/x.json' is outside"):
        gad.Grammar.from_json_schema({"properties": {"a": {"$ref": "https://example.com/x.json"}}})


# -- bounded counts are built without recursion (issues 17, 20) ---------------------------------------


@pytest.mark.parametrize(
    "schema, sizes",
    [({"type": "array", "maxItems": 1000}, [0, 999, 1000, 1001]),
     ({"type": "array", "items": {"type": "integer"}, "minItems": 999, "maxItems": 1000}, [998, 999, 1000, 1001]),
     ({"type": "object", "maxProperties": 600}, [0, 600, 601]),
     ({"type": "object", "minProperties": 600}, [599, 600, 601])],
)  # fmt: skip
def test_large_counts_convert_and_count_exactly(schema, sizes):
    m = matcher_for(schema, whitespace="compact")
    for n in sizes:
        doc = [0] * n if schema["type"] == "array" else {f"k{i}": 0 for i in range(n)}
        assert accepts(m, json.dumps(doc, separators=(",", ":"))) == is_valid(doc, schema), n


@pytest.mark.parametrize("schema", [{"type": "integer", "minimum": 10**400},
                                    {"type": "integer", "exclusiveMaximum": -(10**400)}])  # fmt: skip
def test_integer_bounds_beyond_float_range_are_exact(schema):
    # Found by tests/fuzz: such a bound raised OverflowError (int too large to convert to float).
    m = matcher_for(schema, whitespace="compact")
    for doc in (10**400, 10**400 - 1, 10**400 + 1, -(10**400), -(10**400) - 1, -(10**400) + 1, 0):
        assert accepts(m, str(doc)) == is_valid(doc, schema), doc


def test_lenient_length_bound_above_the_cap_drops_it():
    result = convert_json_schema({"type": "string", "maxLength": 20000}, lenient=True)
    assert result.dropped and "maxLength" in result.dropped[0]


def test_unknown_formats_are_annotations_and_known_ones_are_checked():
    schema = {"type": "string", "format": "semver"}
    with pytest.warns(SchemaWarning, match="'format' at #: 'semver' is not a format JSON Schema defines"):
        grammar = gad.Grammar.from_json_schema(schema)
    m = gad.GrammarMatcher(COMPILER.compile(grammar))
    for text in ['"1.2.3"', '"not a version"']:
        assert accepts(m, text) == is_valid(json.loads(text), schema)  # jsonschema ignores it too
    with pytest.raises(UnsupportedSchemaError, match="'format' at #/properties/h.*'hostname'"):
        gad.Grammar.from_json_schema({"properties": {"h": {"type": "string", "format": "hostname"}}})


def test_remote_references_from_a_registry():
    import referencing
    import referencing.jsonschema

    remote = {"$id": "https://example.com/defs.json", "$defs": {"n": {"type": "integer", "maximum": 3},
                                                                "m": {"$ref": "#/$defs/n"}}}  # fmt: skip
    registry = referencing.Registry().with_resource(remote["$id"], referencing.jsonschema.DRAFT202012.create_resource(remote))
    schema = {"properties": {"a": {"$ref": "https://example.com/defs.json#/$defs/m"}}}
    m = matcher_for(schema, registry=registry)
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    for text in ['{"a":3}', '{"a":4}', '{"a":"x"}']:
        assert accepts(m, text) == validator.is_valid(json.loads(text)), text
    with pytest.raises(gad.errors.ConfigurationError, match="referencing.Registry"):
        gad.Grammar.from_json_schema(schema, registry={"x": 1})


# -- not, if/then/else, dependencies (rewritten as unions; verdicts from jsonschema) -------------------

DOCUMENTS = ["null", "true", "false", "0", "7", "-3", "2.5", '""', '"ab"', '"abcd"', "[]", "[1]", "[1,2,3]", "{}",
             '{"a":1}', '{"b":2}', '{"a":1,"b":2}', '{"a":"x","b":2}', '{"a":null}', '{"kind":"circle","r":1}',
             '{"kind":"square","side":2}', '{"kind":"square","r":1}', '{"kind":"circle","side":2}']  # fmt: skip


@pytest.mark.parametrize(
    "schema",
    [{"not": {"type": "null"}}, {"not": {"type": ["string", "number"]}}, {"not": {"enum": [None, False]}},
     {"not": {"required": ["a"]}}, {"not": {"minimum": 0}}, {"not": {"exclusiveMaximum": 5, "type": "number"}},
     {"not": {"minLength": 3}}, {"not": {"maxItems": 1}}, {"not": {"properties": {"a": {"type": "string"}}}},
     {"not": {"anyOf": [{"type": "string"}, {"type": "array"}]}}, {"not": {"not": {"type": "boolean"}}},
     {"not": {"$ref": "#/$defs/o"}, "$defs": {"o": {"type": "object", "maxProperties": 1}}},
     {"if": {"properties": {"kind": {"const": True}}, "required": ["kind"]}, "then": {"required": ["r"]}},
     {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"maxProperties": 0}},
     {"if": {"type": "string"}, "then": {"minLength": 3}, "else": {"type": ["integer", "object"]}},
     {"dependentRequired": {"b": ["a"]}}, {"dependentSchemas": {"a": {"properties": {"b": {"maximum": 1}}}}},
     {"$schema": "http://json-schema.org/draft-07/schema#", "dependencies": {"b": ["a"], "a": {"maxProperties": 1}}}],
)  # fmt: skip
def test_rewritten_keywords_agree_with_jsonschema(schema):
    m = matcher_for(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    for text in DOCUMENTS:
        assert accepts(m, text) == cls(schema).is_valid(json.loads(text)), text


@pytest.mark.parametrize("dialect", ["http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2020-12/schema"])
def test_ref_siblings_mean_what_each_draft_says(dialect):
    # Draft 7 ignores every keyword next to $ref; 2020-12 applies them. jsonschema is the oracle.
    schema = {"$schema": dialect, "definitions": {"a": {"type": "array"}}, "$ref": "#/definitions/a", "maxItems": 1}
    for document in ([1], [1, 2], {"x": 1}):
        expected = jsonschema.validators.validator_for(schema)(schema).is_valid(document)
        assert accepts(schema, json.dumps(document)) == expected, (dialect, document)


@pytest.mark.filterwarnings("ignore::gad.grammar.json_schema.convert.SchemaWarning")  # lenient names each drop
def test_lenient_drop_of_pattern_properties_also_drops_additional_properties():
    # B7: dropping patternProperties alone would make additionalProperties: false refuse {"x1": 1}.
    # (More than MAX_PATTERN_PROPERTIES = 6 patterns are unsupported, and lenient mode drops them.)
    patterns = {f"^{c}": {"type": "integer"} for c in "uvwxyz"} | {"^t": {}}
    schema = {"type": "object", "patternProperties": patterns, "additionalProperties": False}
    conversion = gad.grammar.json_schema.convert_json_schema(schema, lenient=True)
    assert any("additionalProperties" in d for d in conversion.dropped)
    for document in ({"x1": 1}, {"x1": 1, "x2": 2}):
        assert jsonschema.Draft202012Validator(schema).is_valid(document)
        assert accepts(schema, json.dumps(document), lenient=True)


@pytest.mark.filterwarnings("ignore::gad.grammar.json_schema.convert.SchemaWarning")
def test_patterns_python_cannot_compile_are_unsupported_so_lenient_drops_them():
    schema = {"type": "string", "pattern": "\\p{L}+"}
    with pytest.raises(gad.UnsupportedSchemaError, match="pattern"):
        gad.Grammar.from_json_schema(schema)
    conversion = gad.grammar.json_schema.convert_json_schema(schema, lenient=True)
    assert any("pattern" in d for d in conversion.dropped)
    assert accepts(schema, '"héllo"', lenient=True)
