"""JSON Schema → `Grammar`: "give me JSON that matches this schema" as a context-free grammar.

Every document the grammar accepts validates against the schema (the grammar is **sound**), and
every valid document written in the grammar's canonical layout is accepted:

* properties appear in the order the schema lists them (``properties``, then ``required`` names
  that ``properties`` does not list, then additional properties);
* whitespace between tokens is at most *n* characters of ``[ \\t\\n\\r]`` (``whitespace=n``,
  default 16) or none (``whitespace="compact"``); never before the first or after the last token;
* integers are written without fraction or exponent and never as ``-0``; numbers with bounds are
  written without exponent;
* strings constrained by ``pattern``/``format``, enum/const strings, and keys of additional
  properties (when named properties exist) use raw characters plus the escapes a JSON encoder
  needs: ``\\" \\\\ \\/ \\b \\f \\n \\r \\t`` and ``\\u00XX`` for control characters. Other strings
  accept every RFC 8259 escape, ``\\uXXXX`` and surrogate pairs included (lone surrogates are
  rejected everywhere: they are not text).

Keywords that cannot be compiled exactly raise `UnsupportedSchemaError` naming the keyword and its
JSON pointer; ``lenient=True`` drops them instead (the grammar is then looser there) and reports
each one. The README has the table of supported keywords.

Semantics follow JSON Schema 2020-12 as the `jsonschema` library implements it (the tests' oracle):
``pattern`` is searched with Python's `re` (``re.search``), lengths count code points, ``format`` is
an assertion (a string must really be a date, a UUID, ...), ``$ref`` may have sibling keywords
(drafts 4-7 ignore them, as those drafts say: `loading` drops them).
Draft 4-7 forms are read too: ``definitions``, boolean ``exclusiveMinimum``/``exclusiveMaximum``,
array-valued ``items`` with ``additionalItems``.

Every terminal is a real regex (`Terminal.regex`, whole-input semantics); the regexes of strings and
numbers, and the automata of the slow ones (counted lengths, intersections of constraints), come
from `gad.grammar.json_tokens`.

This module walks the schema (references, ``allOf`` merging, ``anyOf``/``oneOf``, ``enum``/
``const``); the rules of each kind of value are in `objects`, `arrays` and `scalars`, mixins of the
one `_Converter`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import jsonschema
import referencing
import referencing.exceptions

from gad.errors import ConfigurationError, EmptyLanguageError, SchemaError, UnsupportedSchemaError
from gad.grammar.ir import Grammar, Rule, SourceText, Terminal
from gad.grammar.json_numbers import INTEGER_REGEX, NUMBER_REGEX
from gad.grammar.json_schema.arrays import ArrayRules
from gad.grammar.json_schema.loading import load_schema, pointer, prepare
from gad.grammar.json_schema.negation import NotExpressible, conditional, dependencies, negate
from gad.grammar.json_schema.objects import ObjectRules, pattern_problem, property_schema
from gad.grammar.json_schema.scalars import ScalarRules, as_list
from gad.grammar.json_tokens import STRING_REGEX, SUPPORTED_FORMATS, spaced_dfa
from gad.grammar.regex import ByteDFA, compile_regex

__all__ = [
    "DEFAULT_WHITESPACE",
    "SUPPORTED_FORMATS",
    "SchemaConversion",
    "SchemaWarning",
    "convert_json_schema",
    "json_schema_to_grammar",
]


class SchemaWarning(UserWarning):
    """``lenient=True`` dropped keywords it cannot compile (the grammar is looser where it did), or
    a keyword was read as an annotation (a ``format`` JSON Schema does not define)."""


@dataclass(frozen=True)
class SchemaConversion:
    """A converted schema: the grammar; in lenient mode, what was dropped (``"kw at #/ptr: why"``);
    and what was read as an annotation."""

    grammar: Grammar
    dropped: tuple[str, ...]
    notes: tuple[str, ...] = ()  # keywords read as annotations, not constraints (unknown formats)


# -- keywords ---------------------------------------------------------------------------------------

_TYPES = ("null", "boolean", "object", "array", "number", "string", "integer")
_REWRITTEN = ("not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies")  # negation.py
_UNSUPPORTED = {
    "$dynamicRef": "dynamic references are not supported",
    "$recursiveRef": "dynamic references are not supported",
}
_ASSERTIONS = {
    "type", "enum", "const", "allOf", "anyOf", "oneOf", "$ref",
    "properties", "required", "additionalProperties", "minProperties", "maxProperties",
    "patternProperties", "propertyNames",
    "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems",
    "contains", "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems",
    "pattern", "minLength", "maxLength", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
}  # fmt: skip
# unevaluatedProperties/Items are read as additionalProperties/items once the in-place subschemas
# ($ref, allOf) are merged in; next to these keywords that reading would not be exact.
_CONDITIONAL = ("anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "dependencies")
_UNEVALUATED = {"unevaluatedProperties": _CONDITIONAL, "unevaluatedItems": (*_CONDITIONAL, "contains")}
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains")
_WS = "[ \\t\\n\\r]"
DEFAULT_WHITESPACE = 16


# -- public entry points -----------------------------------------------------------------------------


def convert_json_schema(
    schema: Any,
    *,
    whitespace: str | int = DEFAULT_WHITESPACE,
    lenient: bool = False,
    extra_properties: bool = True,
    registry: referencing.Registry | None = None,
    property_order: str = "schema",
) -> SchemaConversion:
    """Compile a JSON Schema to a `Grammar`; see `json_schema_to_grammar`. Never warns: in lenient
    mode the dropped keywords are in the result's ``dropped``."""
    root = load_schema(schema)
    if isinstance(whitespace, bool) or not (whitespace == "compact" or (isinstance(whitespace, int) and whitespace >= 0)):
        raise ConfigurationError(f'`whitespace` has to be "compact" or a non-negative int, but is {whitespace!r}')
    if property_order not in ("schema", "any"):
        raise ConfigurationError(f'`property_order` has to be "schema" or "any", but is {property_order!r}')
    converter = _Converter(root, 0 if whitespace == "compact" else int(whitespace), bool(lenient), bool(extra_properties), registry)
    converter.any_order = property_order == "any"
    try:
        grammar = converter.build()
    except RecursionError:  # a $ref/allOf chain deeper than the walk's stack (nesting is bounded up front)
        raise SchemaError("the schema's references and subschemas nest too deeply to convert", pointer="#") from None
    return SchemaConversion(grammar, tuple(converter.dropped), tuple(converter.notes))


def json_schema_to_grammar(
    schema: Any,
    *,
    whitespace: str | int = DEFAULT_WHITESPACE,
    lenient: bool = False,
    extra_properties: bool = True,
    registry: referencing.Registry | None = None,
    property_order: str = "schema",
) -> Grammar:
    """The grammar of the JSON documents that validate against ``schema``.

    Args:
        schema: a dict (or ``True``/``False``), a JSON string, or a pydantic model class (its
            ``model_json_schema()``).
        whitespace: an int n: at most n whitespace characters (space, tab, newline, carriage
            return) between any two tokens (default 16: room for the layouts models write, from
            ``{"a": 1}`` to indented pretty-printing a few levels deep; bounded, so a model cannot
            loop on whitespace), or ``"compact"``: none at all, ``{"a":1,"b":[2,3]}``. Small models
            extract better when they may space their JSON as they were trained to.
        lenient: drop keywords that cannot be compiled exactly instead of raising; a
            `SchemaWarning` lists each one with its JSON pointer.
        extra_properties: with False, objects that declare ``properties`` or ``required`` but say
            nothing about ``additionalProperties`` admit no other property (usually what one wants
            from a language model; still sound). The default follows JSON Schema: they admit any.
        registry: a `referencing.Registry` of the documents remote ``$ref``s may name (keyed by
            their URI); nothing is ever fetched.
        property_order: ``"schema"`` (default): named properties in the schema's order, then any
            others; ``"any"``: named and other properties in any order, each named one at most
            once (2**k states for k named properties of one object: at most 10 of them, else
            `UnsupportedSchemaError`).

    Raises:
        UnsupportedSchemaError: a keyword that cannot be compiled exactly (message: keyword and
            JSON pointer, e.g. ``unsupported keyword 'not' at #/properties/age``).
        SchemaError: a malformed schema, an unresolvable ``$ref``, or a schema no document satisfies.
    """
    result = convert_json_schema(
        schema, whitespace=whitespace, lenient=lenient, extra_properties=extra_properties, registry=registry,
        property_order=property_order,
    )
    if result.dropped:
        warnings.warn(
            SchemaWarning("lenient JSON Schema: dropped " + "; ".join(result.dropped)), stacklevel=3
        )
    if result.notes:
        warnings.warn(SchemaWarning("JSON Schema: " + "; ".join(result.notes)), stacklevel=3)
    return result.grammar


# -- the converter ------------------------------------------------------------------------------------


class _Converter(ObjectRules, ArrayRules, ScalarRules):
    """Walks the schema, one nonterminal per distinct (sub)schema; recursion through ``$ref`` is
    recursion in the grammar."""

    def __init__(self, schema: Any, ws: int, lenient: bool, extra_properties: bool, registry: referencing.Registry | None) -> None:
        self.original = schema
        self.registry = registry
        self.ws = f"{_WS}{{0,{ws}}}" if ws else ""
        self.ws_n = ws
        self.lenient = lenient
        self.extra_properties = extra_properties
        self.any_order = False  # property_order="any"
        self.dropped: list[str] = []
        self.notes: list[str] = []
        self.rules: list[Rule] = []
        self.terminals: dict[str, Terminal] = {}
        self._terminal_by_regex: dict[str, str] = {}
        self._memo: dict[str, str] = {}
        self._names: set[str] = set()
        self._any: str | None = None

    # -- bookkeeping --------------------------------------------------------------------------------

    def build(self) -> Grammar:
        prepared = prepare(self.original, self.unsupported, self.registry)
        self.root, self.resolver = prepared.schema, prepared.resolver
        root = self.node(self.root, "#")
        if root is None:
            raise SchemaError("the schema is `false`: no document validates", pointer="#")
        self.rules.insert(0, Rule("start", (root,)))
        self.rules = _productive(self.rules, self.terminals)
        if not any(rule.lhs == "start" for rule in self.rules):
            raise SchemaError("no JSON document satisfies the schema (at #)", pointer="#")
        source = SourceText("<json schema>", json.dumps(self.original, indent=1))
        try:
            return Grammar(self.rules, self.terminals, start="start", source=source)
        except EmptyLanguageError:
            raise SchemaError("no JSON document satisfies the schema (at #)", pointer="#") from None

    def unsupported(self, keyword: str, ptr: str, why: str) -> None:
        """Raise, or (lenient) record that ``keyword`` at ``ptr`` is dropped."""
        if not self.lenient:
            raise UnsupportedSchemaError(f"unsupported keyword {keyword!r} at {ptr}: {why}", pointer=ptr, keyword=keyword)
        entry = f"{keyword!r} at {ptr}: {why}"
        if entry not in self.dropped:
            self.dropped.append(entry)

    def new_name(self, ptr: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "_", ptr.lower()).strip("_")[-40:] or "root"
        name, i = f"s_{base}", 1
        while name in self._names:
            i += 1
            name = f"s_{base}_{i}"
        self._names.add(name)
        return name

    def terminal(self, hint: str, regex: str, dfa: ByteDFA | None = None) -> str:
        """The terminal for ``regex`` (a whole-input regex); ``dfa``, when given, is its automaton."""
        name = self._terminal_by_regex.get(regex)
        if name is None:
            name, i = hint, 1
            while name in self.terminals:
                i += 1
                name = f"{hint}_{i}"
            if dfa is None:
                dfa = compile_regex(regex, whole_input=True)
            self.terminals[name] = Terminal(name, regex, dfa, whole_input=True)
            self._terminal_by_regex[regex] = name
        return name

    def punct(self, which: str) -> str:
        w = self.ws
        regex = {
            "LBRACE": r"\{" + w, "RBRACE": w + r"\}", "EMPTY_OBJECT": r"\{" + w + r"\}",
            "LSQB": r"\[" + w, "RSQB": w + r"\]", "EMPTY_ARRAY": r"\[" + w + r"\]",
            "COMMA": w + "," + w, "TRUE": "true", "FALSE": "false", "NULL": "null",
            "STRING": STRING_REGEX, "NUMBER": NUMBER_REGEX, "INTEGER": INTEGER_REGEX,
            "KEY": STRING_REGEX + w + ":" + w,
        }[which]  # fmt: skip
        return self.terminal(which, regex)

    def key(self, name: str) -> str:
        dfa = spaced_dfa(json.dumps(name, ensure_ascii=False).encode(), self.ws_n, b":", self.ws_n)
        return self.terminal("KEY", dfa.pattern, dfa)

    # -- schema nodes ---------------------------------------------------------------------------------

    def node(self, schema: Any, ptr: str) -> str | None:
        """The nonterminal for ``schema``, or None when no value satisfies it (``false``)."""
        if schema is True:
            return self.any_value()
        if schema is False:
            return None
        s = self.clean(schema, ptr)
        if not s:
            return self.any_value()
        key = json.dumps(s, default=str)
        name = self._memo.get(key)
        if name is None:
            name = self._memo[key] = self.new_name(ptr)
            for alternative in self.alternatives(s, ptr):
                self.rules.append(Rule(name, alternative))
        return name

    def clean(self, schema: Any, ptr: str) -> dict:
        """Assertion keywords only, checked and normalised (draft-4..7 forms rewritten)."""
        if isinstance(schema, bool):
            return {} if schema else {"enum": []}
        if not isinstance(schema, dict):
            raise SchemaError(f"a schema must be an object or a boolean, not {type(schema).__name__} (at {ptr})", pointer=ptr)
        s: dict = {}
        for k, v in schema.items():
            if k in _UNSUPPORTED:
                self.unsupported(k, ptr, _UNSUPPORTED[k])
            elif k in _ASSERTIONS:
                s[k] = v
        problem = isinstance(s.get("patternProperties"), dict) and pattern_problem(s["patternProperties"])
        if problem:
            self.unsupported("patternProperties", ptr, problem)
            del s["patternProperties"]
            if "additionalProperties" in s:
                # (lenient) additionalProperties covers only the names patternProperties does not
                # take: with patternProperties dropped it would be stricter than the schema.
                self.unsupported("additionalProperties", ptr, "it depends on the dropped 'patternProperties'")
                del s["additionalProperties"]
        for k, blockers in _UNEVALUATED.items():
            found = [b for b in blockers if b in schema]
            if k in s and found:
                self.unsupported(k, ptr, f"next to {found[0]!r}, whose subschemas evaluate items or properties "
                                 "only where they validate, it is not supported")  # fmt: skip
                del s[k]
        if any(k in schema for k in _REWRITTEN):
            extra = self.rewritten(schema, ptr)
            if extra:
                s["allOf"] = [*s.get("allOf", []), *extra]
        for k in ("exclusiveMinimum", "exclusiveMaximum"):  # draft 4: a flag on minimum/maximum
            if isinstance(s.get(k), bool):
                flag, plain = s.pop(k), "minimum" if k == "exclusiveMinimum" else "maximum"
                if flag and plain in s:
                    s[k] = s.pop(plain)
        if isinstance(s.get("items"), list):  # draft 4-2019: tuple validation
            s["prefixItems"] = s.pop("items")
            if "additionalItems" in s:
                s["items"] = s.pop("additionalItems")
        s.pop("additionalItems", None)
        self._check_values(s, ptr)
        if s.get("uniqueItems") is True and not (isinstance(s.get("maxItems"), int) and s["maxItems"] <= 1):
            self.unsupported("uniqueItems", ptr, "distinct array items cannot be expressed by a context-free grammar")
        s.pop("uniqueItems", None)
        return s

    def rewritten(self, schema: dict, ptr: str) -> list:
        """``not``, ``if``/``then``/``else`` and dependencies as schemas to conjoin (see `negation`)."""
        out: list = []
        if "not" in schema:
            try:
                out.append({"anyOf": negate(self.flatten(schema["not"], pointer(ptr, "not"), ()))})
            except NotExpressible as exc:
                self.unsupported("not", pointer(ptr, "not"), f"{exc} ({exc.keyword!r})")
        if "if" in schema:
            condition = schema["if"]
            try:
                negated = negate(self.flatten(condition, pointer(ptr, "if"), ()))
            except NotExpressible as exc:
                self.unsupported("if", pointer(ptr, "if"), f"the condition cannot be negated: {exc} ({exc.keyword!r})")
            else:
                out.append(conditional(condition, schema.get("then", True), schema.get("else", True), negated))
        required = dict(schema.get("dependentRequired", {}))
        schemas = dict(schema.get("dependentSchemas", {}))
        for k, v in schema.get("dependencies", {}).items():  # draft 4-7: either form
            (required if isinstance(v, list) else schemas)[k] = v
        return out + dependencies(required, schemas)

    def _check_values(self, s: dict, ptr: str) -> None:
        def bad(k: str, what: str) -> SchemaError:
            return SchemaError(f"{k!r} at {ptr} must be {what}, not {s[k]!r}", pointer=ptr, keyword=k)

        if "type" in s:
            types = s["type"] if isinstance(s["type"], list) else [s["type"]]
            if not types or any(t not in _TYPES for t in types):
                raise bad("type", f"one of {', '.join(_TYPES)} or a non-empty list of them")
        for k in _COUNTS:
            if k in s and (isinstance(s[k], bool) or not isinstance(s[k], (int, float)) or s[k] < 0 or s[k] != int(s[k])):
                raise bad(k, "a non-negative integer")
            if k in s:
                s[k] = int(s[k])
        for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if k in s and not _finite_number(s[k]):
                raise bad(k, "a number")
        for m in as_list(s.get("multipleOf")):
            if not _finite_number(m) or m <= 0:
                raise bad("multipleOf", "a number greater than 0")
        if "required" in s and (not isinstance(s["required"], list) or not all(isinstance(r, str) for r in s["required"])):
            raise bad("required", "a list of strings")
        if "properties" in s and not isinstance(s["properties"], dict):
            raise bad("properties", "an object")
        for k in ("allOf", "anyOf", "oneOf", "prefixItems"):
            if k in s and (not isinstance(s[k], list) or (not s[k] and k != "prefixItems")):
                raise bad(k, "a non-empty list of schemas")
        if "enum" in s and not isinstance(s["enum"], list):
            raise bad("enum", "a list")
        for k in ("pattern", "format"):
            if k in s and not (isinstance(s[k], str) or (isinstance(s[k], list) and all(isinstance(p, str) for p in s[k]))):
                raise bad(k, "a string")
        patterns = as_list(s.get("pattern"))
        compilable = []
        for p in patterns:
            try:
                re.compile(p)
                compilable.append(p)
            except re.error as exc:  # e.g. ECMA-262's \p{L}: valid JSON Schema, not Python's `re`
                self.unsupported("pattern", ptr, f"{p!r} is not a regex Python's `re` can compile ({exc})")
        if len(compilable) != len(patterns):  # lenient: the others were dropped
            if compilable:
                s["pattern"] = compilable if len(compilable) > 1 else compilable[0]
            else:
                del s["pattern"]
        if "$ref" in s and not isinstance(s["$ref"], str):
            raise bad("$ref", "a string")

    def alternatives(self, s: dict, ptr: str) -> list[tuple[str, ...]]:
        if "$ref" in s or "allOf" in s:
            merged = self.flatten(s, ptr, ())
            if merged is False:
                return []
            name = self.node(merged, ptr + ("/allOf" if "allOf" in s else ""))
            return [(name,)] if name else []
        for kw in ("anyOf", "oneOf"):
            if kw in s:
                rest = {k: v for k, v in s.items() if k != kw}
                branches = [(b, pointer(ptr, kw, i)) for i, b in enumerate(s[kw])]
                if rest:
                    branches = [(self.merge(rest, self.flatten(b, p, ()), p), p) for b, p in branches]
                    branches = [(b, p) for b, p in branches if b is not False]
                if kw == "oneOf":
                    self.check_exclusive(branches, ptr)
                names = [self.node(b, p) for b, p in branches]
                return [(n,) for n in dict.fromkeys(names) if n]
        return self.base_alternatives(s, ptr)

    def base_alternatives(self, s: dict, ptr: str) -> list[tuple[str, ...]]:
        s = _settle_unevaluated(s)
        types = set(s["type"] if isinstance(s.get("type"), list) else [s.get("type")] if "type" in s else _TYPES)
        if "enum" in s or "const" in s:
            values = list(s["enum"]) if "enum" in s else [s["const"]]
            if "enum" in s and "const" in s:
                values = [v for v in values if _json_equal(v, s["const"])]
            rest = {k: v for k, v in s.items() if k not in ("enum", "const")}
            kept: list[Any] = []
            for v in values:
                if not any(_json_equal(v, u) for u in kept) and self.conforms(v, rest, ptr):
                    kept.append(v)
            return self.literal_alternatives(kept, ptr)
        out: list[tuple[str, ...]] = []
        if "null" in types:
            out.append((self.punct("NULL"),))
        if "boolean" in types:
            out += [(self.punct("TRUE"),), (self.punct("FALSE"),)]
        if "string" in types:
            term = self.string_terminal(s, ptr)
            if term:
                out.append((term,))
        if "number" in types or "integer" in types:
            term = self.number_terminal(s, ptr, integer="number" not in types or 1 in as_list(s.get("multipleOf")))
            if term:
                out.append((term,))
        if "object" in types:
            out += self.object_alternatives(s, ptr)
        if "array" in types:
            out += self.array_alternatives(s, ptr)
        return out

    # -- $ref, allOf ------------------------------------------------------------------------------------

    def resolve(self, ref: str, ptr: str) -> tuple[Any, str]:
        """The target of an (absolute) ``$ref`` at ``ptr``, and the pointer to name it by."""
        try:
            return self.resolver.lookup(ref).contents, ref
        except referencing.exceptions.Unresolvable as exc:
            document = ref.split("#")[0]
            try:
                self.resolver.lookup(document)
            except referencing.exceptions.Unresolvable:
                self.unsupported("$ref", ptr, f"{ref!r} is outside the schema, and nothing is fetched: {exc}")
                return True, ptr
            raise SchemaError(f"$ref {ref!r} at {ptr} does not resolve", pointer=ptr, keyword="$ref") from None

    def flatten(self, schema: Any, ptr: str, seen: tuple[str, ...]) -> dict | bool:
        """``schema`` with its top-level ``$ref`` and ``allOf`` merged in: a cleaned dict or False."""
        if schema is True:
            return {}
        if schema is False:
            return False
        s = self.clean(schema, ptr)
        if "$ref" in s:
            ref = s.pop("$ref")
            if ref in seen:
                self.unsupported("$ref", ptr, f"{ref!r} refers back to itself through allOf/$ref without nesting")
            else:
                target, tptr = self.resolve(ref, ptr)
                s = self.merge(s, self.flatten(target, tptr, seen + (ref,)), ptr)
        if s is not False and "allOf" in s:
            subs = s.pop("allOf")
            for i, sub in enumerate(subs):
                s = self.merge(s, self.flatten(sub, pointer(ptr, "allOf", i), seen), ptr)
                if s is False:
                    break
        return s if s is False else _settle_unevaluated(s)

    def merge(self, a: dict | bool, b: dict | bool, ptr: str = "#") -> dict | bool:
        """The conjunction of two flattened schemas as one schema (False when unsatisfiable)."""
        if a is False or b is False:
            return False
        a, b = dict(a), dict(b)  # type: ignore[arg-type]
        out = dict(a)
        structural = ("properties", "additionalProperties", "patternProperties", "prefixItems", "items")
        for k in structural:
            out.pop(k, None)
        for k, v in b.items():
            if k in structural:
                continue
            if k not in out:
                out[k] = v
                continue
            x = out[k]
            if k == "type":
                types = _type_intersection(x, v)
                if not types:
                    return False
                out[k] = types
            elif k == "enum":
                out[k] = [e for e in x if any(_json_equal(e, f) for f in v)]
            elif k == "const":
                if not _json_equal(x, v):
                    return False
            elif k == "required":
                out[k] = list(dict.fromkeys(x + v))
            elif k in ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum"):
                out[k] = max(x, v)
            elif k in ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum"):
                out[k] = min(x, v)
            elif k in ("pattern", "format"):
                out[k] = list(dict.fromkeys(as_list(x) + as_list(v)))
            elif k in ("anyOf", "oneOf"):  # (∨ A) ∧ (∨ B) = ∨_i (A_i ∧ (∨ B))
                out[k] = [{"allOf": [ai, {k: v}]} for ai in x]
            elif k == "multipleOf":
                out[k] = list(as_list(x)) + [m for m in as_list(v) if m not in as_list(x)]
            elif k == "propertyNames":
                out[k] = _conj(x, v)
            elif k in ("contains", "minContains", "maxContains") and not _json_equal(x, v):
                # two `contains` may be met by different items: not one `contains`
                self.unsupported("contains", ptr, "an allOf of two different 'contains' is not supported")
                out.pop("contains", None)  # (lenient) looser than the schema, as dropping is
        # properties: a name's schema is its entry, else the patterns it matches (kept in the
        # union of both operands' patterns), else additionalProperties, in each operand
        if any(k in s for s in (a, b) for k in ("properties", "additionalProperties", "patternProperties")):
            pa, pb = a.get("properties", {}), b.get("properties", {})
            apa, apb = a.get("additionalProperties", True), b.get("additionalProperties", True)
            pata, patb = a.get("patternProperties", {}), b.get("patternProperties", {})
            if (pata and apb is not True) or (patb and apa is not True):
                # a key matching only one side's patterns would need the other side's
                # additionalProperties too, which one schema of this form cannot say
                self.unsupported("patternProperties", ptr, "an allOf of objects where one has patternProperties "
                                 "and another additionalProperties is not supported")  # fmt: skip
                pata = patb = {}
                apa = apb = True  # (lenient) looser than the schema, as dropping is

            def named(props: dict, patterns: dict, ap: Any, n: str) -> Any:
                if n in props:
                    return props[n]
                return True if any(re.search(p, n) for p in patterns) else ap

            props = {n: _conj(named(pa, pata, apa, n), named(pb, patb, apb, n))
                     for n in list(pa) + [n for n in pb if n not in pa]}  # fmt: skip
            if props:
                out["properties"] = props
            patterns = dict(pata)
            for p, sub in patb.items():
                patterns[p] = _conj(patterns[p], sub) if p in patterns else sub
            if patterns:
                out["patternProperties"] = patterns
            ap = _conj(apa, apb)
            if ap is not True or "additionalProperties" in a or "additionalProperties" in b:
                out["additionalProperties"] = ap  # explicit: it evaluates every other property
        if any(k in s for s in (a, b) for k in ("prefixItems", "items")):
            xa, xb = a.get("prefixItems", []), b.get("prefixItems", [])
            ia, ib = a.get("items", True), b.get("items", True)
            n = max(len(xa), len(xb))
            prefix = [_conj(xa[j] if j < len(xa) else ia, xb[j] if j < len(xb) else ib) for j in range(n)]
            if prefix:
                out["prefixItems"] = prefix
            items = _conj(ia, ib)
            if items is not True or "items" in a or "items" in b:
                out["items"] = items  # explicit: it evaluates every other item
        return out

    # -- oneOf ------------------------------------------------------------------------------------------

    def check_exclusive(self, branches: list[tuple[Any, str]], ptr: str) -> None:
        """oneOf is a union only when no value satisfies two branches; prove that or give up."""
        flat = [self.flatten(b, p, ()) for b, p in branches]
        for i in range(len(flat)):
            for j in range(i + 1, len(flat)):
                if not self.disjoint(flat[i], flat[j], 0):
                    self.unsupported(
                        "oneOf", ptr,
                        f"branches {i} and {j} may both match a value, and 'exactly one' cannot be expressed "
                        "(distinguish them by type, by const/enum values, or by a required property with "
                        "distinct const values; or use anyOf)",
                    )  # fmt: skip
                    return

    def disjoint(self, a: dict | bool, b: dict | bool, depth: int) -> bool:
        if a is False or b is False:
            return True
        if depth > 8:
            return False
        ta, tb = _value_types(a), _value_types(b)
        common = ta & tb
        if not common:
            return True
        va, vb = _values(a), _values(b)
        if va is not None and vb is not None:
            return not any(_json_equal(x, y) for x in va for y in vb)
        if common <= {"object"}:
            ra, rb = set(a.get("required", [])), set(b.get("required", []))
            for name in ra & rb:
                sa = self.flatten(property_schema(a, name, a.get("additionalProperties", True)), "#", ())
                sb = self.flatten(property_schema(b, name, b.get("additionalProperties", True)), "#", ())
                if self.disjoint(sa, sb, depth + 1):
                    return True
            for x, y, rx in ((a, b, ra), (b, a, rb)):
                unnamed = {n for n in rx - set(y.get("properties", {})) if property_schema(y, n, None) is None}
                if y.get("additionalProperties") is False and unnamed:
                    return True
        return False

    # -- values: enum and const -------------------------------------------------------------------------

    def conforms(self, value: Any, schema: Any, ptr: str) -> bool:
        """Whether ``value`` validates against ``schema`` (the keywords this module supports)."""
        if schema is True or schema is False:
            return schema
        s = self.clean(schema, ptr)
        if any(k in s for k in _UNEVALUATED):  # only after $ref and allOf are merged in
            flat = self.flatten(schema, ptr, ())
            if flat is False:
                return False
            s = flat
        if "$ref" in s:
            target, tptr = self.resolve(s["$ref"], ptr)
            if not self.conforms(value, target, tptr):
                return False
        if not all(self.conforms(value, x, ptr) for x in s.get("allOf", [])):
            return False
        if "anyOf" in s and not any(self.conforms(value, x, ptr) for x in s["anyOf"]):
            return False
        if "oneOf" in s and sum(self.conforms(value, x, ptr) for x in s["oneOf"]) != 1:
            return False
        if "enum" in s and not any(_json_equal(value, e) for e in s["enum"]):
            return False
        if "const" in s and not _json_equal(value, s["const"]):
            return False
        if "type" in s and not any(_is_type(value, t) for t in as_list(s["type"])):
            return False
        if isinstance(value, str):
            if not s.get("minLength", 0) <= len(value) <= s.get("maxLength", math.inf):
                return False
            if not all(re.search(p, value) for p in as_list(s.get("pattern"))):
                return False
            for f in as_list(s.get("format")):
                if f in SUPPORTED_FORMATS and not re.fullmatch(SUPPORTED_FORMATS[f], value):
                    return False
        elif _is_type(value, "number"):
            if "minimum" in s and not value >= s["minimum"]:
                return False
            if "maximum" in s and not value <= s["maximum"]:
                return False
            if "exclusiveMinimum" in s and not value > s["exclusiveMinimum"]:
                return False
            if "exclusiveMaximum" in s and not value < s["exclusiveMaximum"]:
                return False
            for m in as_list(s.get("multipleOf")):
                if not jsonschema.Draft202012Validator({"multipleOf": m}).is_valid(value):
                    return False
        elif isinstance(value, dict):
            names_ok = s.get("propertyNames", True)
            if not all(r in value for r in s.get("required", [])):
                return False
            if not s.get("minProperties", 0) <= len(value) <= s.get("maxProperties", math.inf):
                return False
            for k, v in value.items():
                if not self.conforms(k, names_ok, pointer(ptr, "propertyNames")):
                    return False
                if not self.conforms(v, property_schema(s, k, s.get("additionalProperties", True)), pointer(ptr, "properties", k)):
                    return False
        elif isinstance(value, list):
            prefix, items = s.get("prefixItems", []), s.get("items", True)
            if not s.get("minItems", 0) <= len(value) <= s.get("maxItems", math.inf):
                return False
            for j, v in enumerate(value):
                if not self.conforms(v, prefix[j] if j < len(prefix) else items, pointer(ptr, "items", j)):
                    return False
            if "contains" in s:
                hits = sum(self.conforms(v, s["contains"], pointer(ptr, "contains")) for v in value)
                if not s.get("minContains", 1) <= hits <= s.get("maxContains", math.inf):
                    return False
        return True

    def literal_alternatives(self, values: list[Any], ptr: str) -> list[tuple[str, ...]]:
        scalars = [v for v in values if not isinstance(v, (dict, list))]
        out: list[tuple[str, ...]] = []
        if scalars:
            regex = "|".join(re.escape(_dump(v, ptr)) for v in scalars)
            out.append((self.terminal("CONST", regex),))
        out += [self.literal(v, ptr) for v in values if isinstance(v, (dict, list))]
        return out

    def literal(self, value: Any, ptr: str) -> tuple[str, ...]:
        if isinstance(value, dict):
            if not value:
                return (self.punct("EMPTY_OBJECT"),)
            seq: list[str] = [self.punct("LBRACE")]
            for i, (k, v) in enumerate(value.items()):
                if i:
                    seq.append(self.punct("COMMA"))
                seq += [self.key(k), *self.literal(v, ptr)]
            return (*seq, self.punct("RBRACE"))
        if isinstance(value, list):
            if not value:
                return (self.punct("EMPTY_ARRAY"),)
            seq = [self.punct("LSQB")]
            for i, v in enumerate(value):
                if i:
                    seq.append(self.punct("COMMA"))
                seq += self.literal(v, ptr)
            return (*seq, self.punct("RSQB"))
        return (self.terminal("CONST", re.escape(_dump(value, ptr))),)

    # -- any value --------------------------------------------------------------------------------------

    def any_value(self) -> str:
        if self._any is None:
            self._any = name = "any_value"
            obj, members, arr, items = "any_object", "any_members", "any_array", "any_items"
            p = self.punct
            for alt in [(obj,), (arr,), (p("STRING"),), (p("NUMBER"),), (p("TRUE"),), (p("FALSE"),), (p("NULL"),)]:
                self.rules.append(Rule(name, alt))
            self.rules += [
                Rule(obj, (p("EMPTY_OBJECT"),)), Rule(obj, (p("LBRACE"), members, p("RBRACE"))),
                Rule(members, (p("KEY"), name)), Rule(members, (members, p("COMMA"), p("KEY"), name)),
                Rule(arr, (p("EMPTY_ARRAY"),)), Rule(arr, (p("LSQB"), items, p("RSQB"))),
                Rule(items, (name,)), Rule(items, (items, p("COMMA"), name)),
            ]  # fmt: skip
            self._names.update((name, obj, members, arr, items))
        return self._any



def _productive(rules: list[Rule], terminals: dict[str, Terminal]) -> list[Rule]:
    """The rules all of whose symbols derive some string (unsatisfiable subschemas have none);
    a worklist over the rules, linear in the grammar's size."""
    missing = [sum(1 for x in set(r.rhs) if x not in terminals) for r in rules]
    waiting: dict[str, list[int]] = {}
    for i, r in enumerate(rules):
        for x in set(r.rhs):
            if x not in terminals:
                waiting.setdefault(x, []).append(i)
    productive: set[str] = set()
    ready = [rules[i].lhs for i in range(len(rules)) if missing[i] == 0]
    while ready:
        name = ready.pop()
        if name in productive:
            continue
        productive.add(name)
        for i in waiting.get(name, ()):
            missing[i] -= 1
            if missing[i] == 0:
                ready.append(rules[i].lhs)
    return [r for r in rules if r.lhs in productive and all(x in productive or x in terminals for x in r.rhs)]


# -- helpers on schemas and values ----------------------------------------------------------------------



def _conj(x: Any, y: Any) -> Any:
    if x is True:
        return y
    if y is True:
        return x
    if x is False or y is False:
        return False
    return {"allOf": [x, y]}


def _type_intersection(x: Any, y: Any) -> list[str]:
    a, b = set(as_list(x)), set(as_list(y))
    if "number" in a:
        a.add("integer")
    if "number" in b:
        b.add("integer")
    return [t for t in _TYPES if t in a & b]


def _value_types(s: dict) -> set[str]:
    """Kinds of JSON value (integer folded into number) a flattened schema may accept."""
    values = _values(s)
    if values is not None:
        return {_kind(v) for v in values}
    if "type" not in s:
        return {"null", "boolean", "object", "array", "number", "string"}
    return {"number" if t == "integer" else t for t in as_list(s["type"])}


def _values(s: dict) -> list | None:
    if "const" in s:
        return [s["const"]]
    if "enum" in s:
        return list(s["enum"])
    return None


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "array"}.get(type(v), "string")


def _settle_unevaluated(s: dict) -> dict:
    """`s` with ``unevaluatedProperties``/``unevaluatedItems`` read as ``additionalProperties``/
    ``items``: exact once every in-place subschema is merged into `s` (`_UNEVALUATED` refuses the
    rest), since then what the others leave unevaluated is exactly what those two would cover."""
    if not any(k in s for k in _UNEVALUATED):
        return s
    s = dict(s)
    for k, plain in (("unevaluatedProperties", "additionalProperties"), ("unevaluatedItems", "items")):
        if k in s:
            value = s.pop(k)
            s.setdefault(plain, value)
    return s


def _finite_number(value: object) -> bool:
    """A JSON number: an int of any size (never converted to float), or a finite float."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_type(v: Any, t: str) -> bool:
    if t == "integer":
        return _is_type(v, "number") and (isinstance(v, int) or float(v).is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return _kind(v) == t


def _json_equal(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return a == b


def _dump(value: Any, ptr: str) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(f"enum/const value {value!r} at {ptr} is not JSON", pointer=ptr)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"enum/const value at {ptr} is not JSON: {exc}", pointer=ptr) from None
