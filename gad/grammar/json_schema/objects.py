"""JSON objects: ``properties``, ``required``, ``additionalProperties``, ``patternProperties``,
``propertyNames`` and the property counts, as grammar rules.

The keys an object may have split into the *named* ones (``properties`` and ``required``: one
key terminal each) and the rest. The rest splits again into *regions*, one per subset T of the
``patternProperties`` patterns: the keys that match exactly the patterns in T (Python
``re.search``, as for ``pattern``), minus the named keys, within ``propertyNames``. A region's
values follow every schema of T (``additionalProperties`` when T is empty); each region is one
key terminal, built as a product automaton (intersections and differences of the patterns'
automata), not a regex with lookarounds — those are kept only as the terminal's identity. So
every key gets exactly the schemas JSON Schema gives it.

`ObjectRules` is a mixin of the converter (`gad.grammar.json_schema.convert`): it uses its
`node`, `key`, `punct`, `terminal`, `new_name`, `unsupported`, `conforms`, `flatten`,
`string_language`, `rules`, whitespace and options.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

from gad.errors import GrammarError
from gad.grammar.ir import Rule
from gad.grammar.json_schema.loading import pointer
from gad.grammar.json_tokens import ENCODED_CHAR, difference, encode_search, followed_by, intersect, spaced_dfa, spellings
from gad.grammar.regex import ByteDFA, compile_regex

__all__ = ["MAX_ANY_ORDER", "MAX_PATTERN_PROPERTIES", "ObjectRules", "pattern_problem", "property_schema"]

MAX_PATTERN_PROPERTIES = 6
"""The most ``patternProperties`` patterns one object may have (its key space has 2**n regions)."""
MAX_CHAIN = 2000  # the most rules one counted object bound may unroll to
MAX_ANY_ORDER = 10  # property_order="any": the most named properties of one object (2**10 states)
_ANY_KEY = '"' + ENCODED_CHAR + '*"'
_NAME_KEYWORDS = {"type", "minLength", "maxLength", "pattern", "format"}  # propertyNames supported


def property_schema(s: dict, name: str, additional: Any = True) -> Any:
    """The schema the value of property `name` must satisfy in an object under `s`: its
    ``properties`` entry and every ``patternProperties`` schema whose pattern it matches, or
    else `additional` (``additionalProperties``). Pure."""
    parts = [s["properties"][name]] if name in s.get("properties", {}) else []
    parts += [sub for p, sub in s.get("patternProperties", {}).items() if re.search(p, name)]
    if not parts:
        return additional
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def pattern_problem(patterns: dict) -> str | None:
    """Why the ``patternProperties`` patterns cannot be compiled, or None when they can."""
    if len(patterns) > MAX_PATTERN_PROPERTIES:
        return f"{len(patterns)} patterns (at most {MAX_PATTERN_PROPERTIES})"
    for p in patterns:
        try:
            re.compile(p)
            encode_search(p)
        except (GrammarError, re.error) as exc:
            return f"pattern {p!r}: {getattr(exc, 'message', exc)}"
    return None


class ObjectRules:
    """The object part of the converter (see the module docstring)."""

    def object_alternatives(self, s: dict, ptr: str) -> list[tuple[str, ...]]:
        props = s.get("properties", {})
        required = s.get("required", [])
        default_ap = self.extra_properties or not ("properties" in s or "required" in s)
        ap = s.get("additionalProperties", True if default_ap else False)
        low, high = s.get("minProperties", 0), s.get("maxProperties")
        if high is not None and low > high:
            return []
        names_ok = s.get("propertyNames", True)
        names = list(props) + [r for r in dict.fromkeys(required) if r not in props]
        members: list[tuple[str, str, bool]] = []  # (key terminal, value nonterminal, required)
        for n in names:
            sub_ptr = pointer(ptr, "properties", n) if n in props else pointer(ptr, "additionalProperties")
            allowed = names_ok is True or self.conforms(n, names_ok, pointer(ptr, "propertyNames"))
            value = self.node(property_schema(s, n, ap), sub_ptr) if allowed else None
            if value is None:
                if n in required:
                    return []
                continue
            members.append((self.key(n), value, n in required))
        extras = self.extra_members(s, ptr, names, ap)
        cap = high if high is not None else max(low, 1)
        if cap * (len(members) + len(extras)) > MAX_CHAIN:
            self.unsupported("maxProperties" if high is not None else "minProperties", ptr, "the bound is too large to unroll")
            return [(self.any_value(),)] if self.lenient else []
        if self.any_order and len(members) > 1:
            return self.any_order_alternatives(members, extras, low, high, cap, ptr)
        base = self.new_name(ptr + "/members") + "_"
        comma = self.punct("COMMA")
        pending, made = [(0, 0)], set()
        while pending:  # state (i, c): members from i on, c properties written so far (capped)
            i, c = pending.pop()
            if (i, c) in made:
                continue
            made.add((i, c))
            name, nxt = f"{base}_{i}_{c}", min(c + 1, cap)
            lead = (comma,) if c else ()
            if i < len(members):
                key, value, req = members[i]
                if not req:
                    self.rules.append(Rule(name, (f"{base}_{i + 1}_{c}",)))
                    pending.append((i + 1, c))
                if high is None or c < high:
                    self.rules.append(Rule(name, (*lead, key, value, f"{base}_{i + 1}_{nxt}")))
                    pending.append((i + 1, nxt))
            else:
                if c >= max(low, 1):
                    self.rules.append(Rule(name, ()))
                if high is None or c < high:
                    for key, value in extras:
                        self.rules.append(Rule(name, (*lead, key, value, f"{base}_{i}_{nxt}")))
                    if extras:
                        pending.append((i, nxt))

        return self.braced(f"{base}_0_0", empty=low == 0 and not any(req for _, _, req in members), high=high)

    def any_order_alternatives(self, members: list[tuple[str, str, bool]], extras: list[tuple[str, str]],
                               low: int, high: int | None, cap: int, ptr: str) -> list[tuple[str, ...]]:
        """``property_order="any"``: the members in any order, each named one at most once. State
        (written, c): the set of named members written (a bitmask) and the properties written,
        capped at `cap`; 2**k · cap states for k named members."""
        if len(members) > MAX_ANY_ORDER or (2 ** len(members)) * cap > MAX_CHAIN * 8:
            self.unsupported("properties", ptr, f"property_order='any' over {len(members)} properties "
                             f"(at most {MAX_ANY_ORDER}, and 2**k times the count bound at most {MAX_CHAIN * 8})")  # fmt: skip
            return [(self.any_value(),)] if self.lenient else []
        required = sum(1 << i for i, (_, _, req) in enumerate(members) if req)
        base = self.new_name(ptr + "/members") + "_"
        comma = self.punct("COMMA")
        pending, made = [(0, 0)], set()
        while pending:
            written, c = pending.pop()
            if (written, c) in made:
                continue
            made.add((written, c))
            name, nxt = f"{base}_{written}_{c}", min(c + 1, cap)
            lead = (comma,) if c else ()
            if written & required == required and c >= max(low, 1):
                self.rules.append(Rule(name, ()))
            if high is not None and c >= high:
                continue
            for i, (key, value, _) in enumerate(members):
                if not written >> i & 1:
                    self.rules.append(Rule(name, (*lead, key, value, f"{base}_{written | 1 << i}_{nxt}")))
                    pending.append((written | 1 << i, nxt))
            for key, value in extras:
                self.rules.append(Rule(name, (*lead, key, value, f"{base}_{written}_{nxt}")))
            if extras:
                pending.append((written, nxt))
        return self.braced(f"{base}_0_0", empty=low == 0 and not required, high=high)

    def braced(self, first: str, *, empty: bool, high: int | None) -> list[tuple[str, ...]]:
        """The object alternatives around the member chain starting at nonterminal `first`: ``{}``
        when `empty` is allowed, ``{ first }`` unless `high` allows no property."""
        out: list[tuple[str, ...]] = []
        if empty:
            out.append((self.punct("EMPTY_OBJECT"),))
        if high is None or high > 0:
            out.append((self.punct("LBRACE"), first, self.punct("RBRACE")))
        return out

    def extra_members(self, s: dict, ptr: str, names: list[str], ap: Any) -> list[tuple[str, str]]:
        """(key terminal, value nonterminal) for the properties not in `names`: one pair per
        region of the key space (see the module docstring) that holds a key and a value."""
        patterns = list(s.get("patternProperties", {}).items())
        key_space = self.property_names(s, ptr)
        if key_space is False:
            return []
        if not patterns and key_space is True:
            value = self.node(ap, pointer(ptr, "additionalProperties"))
            return [(self.extra_key(names), value)] if value else []
        searches = ['"' + encode_search(p) + '"' for p, _ in patterns]  # checked by pattern_problem
        automata = [compile_regex(r, whole_input=True) for r in searches]
        excluded = "|".join(spellings(n) for n in names)
        named = compile_regex(f'"(?:{excluded})"', whole_input=True) if names else None
        colon = spaced_dfa(self.ws_n, b":", self.ws_n)
        out = []
        for inside in itertools.product((True, False), repeat=len(patterns)):
            parts = [(p, sub) for (p, sub), keep in zip(patterns, inside) if keep]
            if parts:
                value_schema = parts[0][1] if len(parts) == 1 else {"allOf": [sub for _, sub in parts]}
                value_ptr = pointer(ptr, "patternProperties", parts[0][0])
            else:
                value_schema, value_ptr = ap, pointer(ptr, "additionalProperties")
            if value_schema is False:
                continue
            dfa: ByteDFA | None = compile_regex(_ANY_KEY, whole_input=True)
            conditions = []
            for automaton, regex, keep in zip(automata, searches, inside):
                dfa = intersect(dfa, automaton) if keep else difference(dfa, automaton)
                conditions.append(("(?=" if keep else "(?!") + regex[1:] + ")")
            if named is not None:
                dfa = difference(dfa, named)
                conditions.append(f'(?!(?:{excluded})")')
            if key_space is not True:
                dfa = intersect(dfa, key_space[1])
                conditions.append("(?=" + key_space[0][1:] + ")")
            if dfa is None:
                continue
            value = self.node(value_schema, value_ptr)
            if value is None:
                continue
            regex = '"' + "".join(conditions) + ENCODED_CHAR + '*"' + self.ws + ":" + self.ws
            key = self.terminal("KEY", regex, dataclasses.replace(followed_by(dfa, colon), pattern=regex))
            out.append((key, value))
        return out

    def property_names(self, s: dict, ptr: str) -> bool | tuple[str, ByteDFA]:
        """The quoted keys ``propertyNames`` allows: True for all, False for none, else (regex, automaton)."""
        if "propertyNames" not in s:
            return True
        names_ptr = pointer(ptr, "propertyNames")
        flat = self.flatten(s["propertyNames"], names_ptr, ())
        if flat is False:
            return False
        other = set(flat) - _NAME_KEYWORDS
        if other:
            self.unsupported("propertyNames", ptr, f"only {', '.join(sorted(_NAME_KEYWORDS))} are supported in it, not {', '.join(sorted(other))}")
            return True  # (lenient) any key: looser than the schema, as dropping is
        if "type" in flat and "string" not in (flat["type"] if isinstance(flat["type"], list) else [flat["type"]]):
            return False
        return self.string_language(flat, names_ptr)

    def extra_key(self, names: list[str]) -> str:
        """A key other than ``names``: any JSON string when there are none. Built as the product
        "encoded string, minus every spelling of a name", then the colon (a lookahead regex, the
        terminal's identity, would cost far more to compile)."""
        if not names:
            return self.punct("KEY")
        excluded = "|".join(spellings(n) for n in names)
        regex = f'"(?!(?:{excluded})")' + ENCODED_CHAR + '*"' + self.ws + ":" + self.ws
        if regex not in self._terminal_by_regex:
            keys = difference(compile_regex(_ANY_KEY, whole_input=True),
                              compile_regex(f'"(?:{excluded})"', whole_input=True))  # fmt: skip
            assert keys is not None  # finitely many names are excluded from infinitely many strings
            colon = spaced_dfa(self.ws_n, b":", self.ws_n)
            return self.terminal("KEY", regex, dataclasses.replace(followed_by(keys, colon), pattern=regex))
        return self.terminal("KEY", regex)
