"""A schema from the user → a validated root schema whose references resolve by JSON Schema's rules.

`load_schema` reads the input (a dict, a boolean, JSON text, a pydantic model or TypeAdapter);
`prepare` checks it and sets up reference resolution:

* every value is JSON (string keys, finite numbers: JSON has no ``NaN`` or ``Infinity``) and the
  nesting is at most `MAX_DEPTH` levels; checked iteratively;
* the schema validates against its draft's metaschema (`jsonschema`'s own metaschemas and format
  checker): an invalid schema (``"additionalProperties": "date"``, ``"minLength": -1``) is a
  `SchemaError` naming the JSON pointer of the offending value; a ``pattern`` Python's `re` cannot
  compile (``\\p{L}``) is unsupported rather than invalid;
* every ``$ref`` is rewritten to an absolute URI against the base URI of the ``$id`` resource it
  sits in, and a `referencing` registry of the (rewritten) schema resolves them: anchors are scoped
  to their resource, ``#/...`` pointers to the innermost ``$id``. Nothing is fetched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import referencing
import referencing.exceptions
import referencing.jsonschema

from gad.errors import ConfigurationError, SchemaError

__all__ = ["MAX_DEPTH", "Root", "join", "load_schema", "pointer", "prepare"]

MAX_DEPTH = 128
"""The deepest nesting of objects and arrays a schema may have (the converter walks subschemas
recursively; deeper schemas are refused with a `SchemaError`)."""

Unsupported = Callable[[str, str, str], None]  # (keyword, pointer, why): raise, or record (lenient)


def pointer(base: str, *tokens: object) -> str:
    """``base`` extended by JSON-pointer tokens (escaped)."""
    return base + "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (RFC 3986; a fragment-only ref also for ``urn:`` bases)."""
    if ref.startswith("#"):
        return base.split("#")[0] + ref
    from urllib.parse import urljoin

    return urljoin(base, ref)


def load_schema(schema: Any) -> Any:
    """The schema as a JSON value (dict or bool); JSON text is parsed without NaN/Infinity."""
    if isinstance(schema, (dict, bool)):
        return schema
    if isinstance(schema, (str, bytes, bytearray)):
        try:
            return json.loads(schema, parse_constant=_no_constant)
        except _NotJSON as exc:
            raise SchemaError(f"the schema is not valid JSON: {exc} is not a JSON number") from None
        except RecursionError:
            raise SchemaError("the schema is not valid JSON: nested too deeply for the JSON parser") from None
        except ValueError as exc:
            raise SchemaError(f"the schema is not valid JSON: {exc}") from None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):  # a pydantic model class
        return schema.model_json_schema()
    if hasattr(schema, "json_schema") and callable(schema.json_schema):  # a pydantic TypeAdapter
        return schema.json_schema()
    raise ConfigurationError(
        f"`schema` has to be a dict, a bool, a JSON string or a pydantic model class, but is {type(schema).__name__}"
    )


class _NotJSON(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJSON(name)


@dataclass(frozen=True)
class Root:
    """The checked schema with absolute ``$ref``s, and the resolver they are looked up with."""

    schema: Any
    resolver: referencing.Resolver


def prepare(schema: Any, unsupported: Unsupported, registry: referencing.Registry | None = None) -> Root:
    """Check ``schema`` and the resources of ``registry`` (see the module docstring) and make their
    references resolvable; ``registry`` holds the documents remote references may name."""
    if registry is not None and not isinstance(registry, referencing.Registry):
        raise ConfigurationError(f"`registry` has to be a referencing.Registry, but is {type(registry).__name__}")
    default = referencing.jsonschema.DRAFT202012
    copy, spec, base = _checked_copy(schema, "", default, unsupported, "the schema")

    def retrieve(uri: str) -> referencing.Resource:  # a remote document, checked when first named
        if registry is None or uri not in registry:
            raise referencing.exceptions.NoSuchResource(ref=uri)
        contents, remote_spec, _ = _checked_copy(registry[uri].contents, uri, spec, unsupported, uri)
        return remote_spec.create_resource(contents)

    resources = referencing.Registry(retrieve=retrieve).with_resource(base, spec.create_resource(copy))
    return Root(copy, resources.crawl().resolver(base_uri=base))


def _checked_copy(schema: Any, uri: str, default: referencing.Specification, unsupported: Unsupported, what: str):
    """``schema`` checked, copied with absolute ``$ref``s; its specification and base URI."""
    _check_json(schema, what)
    dialect = schema.get("$schema", "") if isinstance(schema, dict) else ""
    validator = jsonschema.validators.validator_for(schema, default=_VALIDATORS.get(default, jsonschema.Draft202012Validator))
    _check_metaschema(schema, validator, unsupported, what)
    spec = referencing.jsonschema.specification_with(dialect, default=default) if dialect else default
    copy = json.loads(json.dumps(schema))  # depth is bounded: safe to copy recursively
    node_id = spec.id_of(copy) if isinstance(copy, dict) else None
    base = join(uri, node_id) if node_id else uri
    _absolute_refs(copy, spec, base)
    return copy, spec, base


_VALIDATORS = {
    referencing.jsonschema.DRAFT202012: jsonschema.Draft202012Validator,
    referencing.jsonschema.DRAFT201909: jsonschema.Draft201909Validator,
    referencing.jsonschema.DRAFT7: jsonschema.Draft7Validator,
    referencing.jsonschema.DRAFT6: jsonschema.Draft6Validator,
    referencing.jsonschema.DRAFT4: jsonschema.Draft4Validator,
}


def _check_json(value: Any, what: str) -> None:
    """Every value is JSON (string keys, finite numbers), nested at most `MAX_DEPTH` levels."""
    stack = [(value, "#", 0)]
    while stack:
        node, ptr, depth = stack.pop()
        if isinstance(node, (dict, list)) and depth >= MAX_DEPTH:
            raise SchemaError(f"{what} nests deeper than {MAX_DEPTH} levels (at {ptr})", pointer=ptr)
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise SchemaError(f"{ptr} has the key {k!r}: JSON object keys are strings", pointer=ptr)
                stack.append((v, pointer(ptr, k), depth + 1))
        elif isinstance(node, list):
            stack.extend((v, pointer(ptr, i), depth + 1) for i, v in enumerate(node))
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise SchemaError(f"{ptr} is {node!r}, which is not a JSON number", pointer=ptr)
        elif not (node is None or isinstance(node, (str, bool, int))):
            raise SchemaError(f"{ptr} is a {type(node).__name__}, which is not a JSON value", pointer=ptr)


#: Drafts 4-7 ignore every sibling of ``$ref`` ("All other properties in a "$ref" object MUST be
#: ignored"); these keep their meaning as containers, so that ``$ref``s into them still resolve.
_REF_OVERRIDES_SIBLINGS = (referencing.jsonschema.DRAFT4, referencing.jsonschema.DRAFT6, referencing.jsonschema.DRAFT7)
_KEPT_NEXT_TO_REF = frozenset({"$ref", "definitions", "$defs", "$schema", "$comment", "title", "description"})


def _absolute_refs(root: Any, spec: referencing.Specification, base: str) -> None:
    """Rewrite every ``$ref`` of the subschemas of ``root`` (in place) to an absolute URI; in
    drafts 4-7, drop the assertion keywords next to a ``$ref``, which those drafts ignore."""
    ref_overrides = spec in _REF_OVERRIDES_SIBLINGS
    stack = [(root, base)]
    while stack:
        node, base = stack.pop()
        if not isinstance(node, dict):
            continue
        node_id = spec.id_of(node)
        if node_id:
            base = join(base, node_id)
        if isinstance(node.get("$ref"), str):
            node["$ref"] = join(base, node["$ref"])
            if ref_overrides:
                for key in [k for k in node if k not in _KEPT_NEXT_TO_REF]:
                    del node[key]
        stack.extend((sub, base) for sub in spec.subresources_of(node))


def _check_metaschema(schema: Any, validator: type, unsupported: Unsupported, what: str) -> None:
    checker = validator(validator.META_SCHEMA, format_checker=validator.FORMAT_CHECKER)
    bad = []
    for error in checker.iter_errors(schema):
        at = pointer("#", *error.absolute_path)
        if error.validator == "format" and error.validator_value == "regex":
            keyword = str(error.absolute_path[-1]) if error.absolute_path else "pattern"
            unsupported(keyword, at, f"{error.instance!r} is not a regex Python's `re` can compile")
        else:
            bad.append((error, at))
    if bad:
        error, at = min(bad, key=lambda e: jsonschema.exceptions.relevance(e[0]))
        path = [p for p in error.absolute_path if isinstance(p, str)]
        where = "" if what == "the schema" else f" (in {what})"
        raise SchemaError(f"invalid schema at {at}{where}: {error.message}", pointer=at, keyword=path[-1] if path else None)
