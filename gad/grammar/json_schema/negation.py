"""Negation, conditionals and dependencies rewritten as the keywords the converter compiles.

`negate` turns ¬S, for a flattened S (``$ref`` and ``allOf`` merged in), into a list of schemas
whose union is exactly the values S rejects: ¬(K₁ ∧ K₂ ∧ …) = ¬K₁ ∨ ¬K₂ ∨ …, and a keyword that
constrains one type is violated only by values of that type (¬``minLength: 3`` is "a string of at
most 2 characters"; every other value satisfies ``minLength``). Nested negations stay ``not``
subschemas (``properties`` of a negated object), negated when the converter reaches them. A keyword
whose negation gad cannot write exactly raises `NotExpressible` with the reason.

`conditional` writes ``if``/``then``/``else`` as (if ∧ then) ∨ (¬if ∧ else); `dependencies` writes
``dependentRequired``/``dependentSchemas`` (and draft-7 ``dependencies``) as "the key is absent, or
the dependency holds".
"""

from __future__ import annotations

from typing import Any

__all__ = ["NotExpressible", "conditional", "dependencies", "negate"]

_TYPES = ("null", "boolean", "object", "array", "string", "number")
_COUNTED = {  # keyword → (type, the keyword of its negation, offset)
    "minLength": ("string", "maxLength", -1), "maxLength": ("string", "minLength", 1),
    "minItems": ("array", "maxItems", -1), "maxItems": ("array", "minItems", 1),
    "minProperties": ("object", "maxProperties", -1), "maxProperties": ("object", "minProperties", 1),
}  # fmt: skip
_BOUNDS = {"minimum": "exclusiveMaximum", "maximum": "exclusiveMinimum",
           "exclusiveMinimum": "maximum", "exclusiveMaximum": "minimum"}  # fmt: skip
_NEUTRAL = {"uniqueItems": False}  # keyword values that constrain nothing


class NotExpressible(Exception):
    """A negation gad cannot compile exactly; ``args[0]`` says why, ``keyword`` which keyword."""

    def __init__(self, keyword: str, why: str) -> None:
        super().__init__(why)
        self.keyword = keyword


def _others(*types: str) -> dict:
    """Every value whose type is not among ``types`` (``number`` covers ``integer``)."""
    rest = [t for t in _TYPES if t not in types]
    return {"type": rest} if rest else False  # type: ignore[return-value]


def negate(s: dict | bool) -> list:
    """Schemas whose union is the complement of the flattened schema ``s`` (``[False]``: none)."""
    if s is False:
        return [True]
    out: list = []
    for k, v in s.items():
        if _NEUTRAL.get(k, object()) == v or (v is True and k in ("additionalProperties", "items")):
            continue
        if k == "type":
            types = {v} if isinstance(v, str) else set(v)
            if "integer" in types and "number" not in types:
                raise NotExpressible("type", "the negation of 'integer' (numbers with a fraction) cannot be written")
            out.append(_others(*types))
        elif k in ("enum", "const"):
            values = v if k == "enum" else [v]
            if any(not (x is None or isinstance(x, bool)) for x in values):
                raise NotExpressible(k, "only the negation of null and boolean values can be written")
            kept = [t for t in ("null", "boolean") if t not in {("null" if x is None else "boolean") for x in values}]
            out.append(_others("null", "boolean"))
            if "null" in kept:
                out.append({"type": "null"})
            booleans = [b for b in (True, False) if b not in [x for x in values if isinstance(x, bool)]]
            if booleans:
                out.append({"enum": booleans})
        elif k == "required":
            out += [{"type": "object", "properties": {name: False}} for name in v]
        elif k in _BOUNDS:
            out.append({"type": "number", _BOUNDS[k]: v})
        elif k in _COUNTED:
            kind, opposite, offset = _COUNTED[k]
            if v + offset >= 0:
                out.append({"type": kind, opposite: v + offset})
        elif k == "properties" and "patternProperties" not in s:
            out += [{"type": "object", "required": [name], "properties": {name: {"not": sub}}} for name, sub in v.items()]
        elif k == "anyOf":
            out.append({"allOf": [{"not": branch} for branch in v]})
        else:
            raise NotExpressible(k, f"the negation of {k!r} cannot be written as a grammar here")
    return [x for x in out if x is not False] or [False]


def conditional(condition: Any, then: Any, otherwise: Any, negated: list) -> dict:
    """``if``/``then``/``else`` as a union; ``negated`` is `negate` of the (flattened) condition."""
    return {"anyOf": [{"allOf": [condition, then]}, {"allOf": [{"anyOf": negated}, otherwise]}]}


def dependencies(required: dict[str, list], schemas: dict[str, Any]) -> list[dict]:
    """One ``anyOf`` per dependency: the key is absent, or the object satisfies the dependency."""
    out = [{"anyOf": [{"properties": {k: False}}, {"required": [*names, k]}]} for k, names in required.items()]
    out += [{"anyOf": [{"properties": {k: False}}, {"allOf": [{"required": [k]}, sub]}]} for k, sub in schemas.items()]
    return out
