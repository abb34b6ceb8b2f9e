"""JSON arrays: ``prefixItems``, ``items``, ``minItems``/``maxItems`` and ``contains`` with
``minContains``/``maxContains``, as grammar rules.

The items are a chain of states (j, c): j items written (all alike past the prefix, when the
length is unbounded) and c of them counted for ``contains`` (capped where nothing changes). An
item either counts (it matches ``contains`` and its position's schema) or not; with
``maxContains``, an item that does not count must not match ``contains``, which needs its
negation (`gad.grammar.json_schema.negation`).

`ArrayRules` is a mixin of the converter (`gad.grammar.json_schema.convert`): it uses its `node`,
`punct`, `new_name`, `unsupported`, `flatten`, `any_value` and `rules`.
"""

from __future__ import annotations

from typing import Any

from gad.grammar.ir import Rule
from gad.grammar.json_schema.loading import pointer
from gad.grammar.json_schema.negation import NotExpressible, negate
from gad.grammar.json_schema.objects import MAX_CHAIN

__all__ = ["ArrayRules"]


class ArrayRules:
    """The array part of the converter (see the module docstring)."""

    def array_alternatives(self, s: dict, ptr: str) -> list[tuple[str, ...]]:
        prefix = s.get("prefixItems", [])
        low, high = s.get("minItems", 0), s.get("maxItems")
        elems = [self.node(x, pointer(ptr, "prefixItems", j)) for j, x in enumerate(prefix)]
        rest = self.node(s.get("items", True), pointer(ptr, "items"))
        limit = next((j for j, e in enumerate(elems) if e is None), None)  # no value fits position `limit`
        if limit is None and rest is None:
            limit = len(elems)
        if limit is not None:
            high = limit if high is None else min(high, limit)
        if high is not None and low > high:
            return []
        loop = max(len(elems), low)  # from here on every position looks the same
        last = high if high is not None else loop
        if last > MAX_CHAIN:
            self.unsupported("maxItems" if high is not None else "minItems", ptr, "the bound is too large to unroll")
            return [(self.any_value(),)] if self.lenient else []
        base = self.new_name(ptr + "/items") + "_"

        def elem(j: int) -> str | None:
            return elems[j] if j < len(elems) else rest

        # `contains`: c counts the items written that match it, capped where nothing changes
        contains = s.get("contains")
        min_c, max_c = s.get("minContains", 1), s.get("maxContains")
        if contains is None or (min_c == 0 and max_c is None):
            contains, min_c, max_c = None, 0, None
        absent: Any = None  # the items `contains` does not match, needed to count up to maxContains
        if max_c is not None:
            try:
                absent = {"anyOf": negate(self.flatten(contains, pointer(ptr, "contains"), ()))}
            except NotExpressible as exc:
                self.unsupported("maxContains", ptr, f"it needs the negation of 'contains', which cannot be written: {exc} ({exc.keyword!r})")
                max_c = None  # (lenient) looser than the schema, as dropping is
                contains = None if min_c == 0 else contains
        cap = max_c if max_c is not None else min_c
        counting: dict[int, list[tuple[str, int]]] = {}

        def choices(j: int) -> list[tuple[str, int]]:
            """(item nonterminal, 1 if it counts for `contains`) for the item at index j."""
            key = min(j, len(elems))
            if key not in counting:
                e = elem(j)
                if contains is None:
                    counting[key] = [(e, 0)] if e else []
                else:
                    at = prefix[j] if j < len(prefix) else s.get("items", True)
                    hit = self.node({"allOf": [at, contains]}, pointer(ptr, "contains"))
                    miss = e if max_c is None else self.node({"allOf": [at, absent]}, pointer(ptr, "contains"))
                    counting[key] = [(n, d) for n, d in ((hit, 1), (miss, 0)) if n]
            return counting[key]

        first_state = 1 if high is not None or loop >= 1 else loop
        pending, made = [(first_state, c) for _, c in choices(0)], set()
        while pending:  # state (j, c): j items written (from `loop` on, all alike when unbounded)
            j, c = pending.pop()
            if (j, c) in made:
                continue
            made.add((j, c))
            name = f"{base}_{j}_{c}"
            if j >= low and c >= min_c:
                self.rules.append(Rule(name, ()))
            if high is not None and j >= high:
                continue
            nxt = j + 1 if high is not None or j + 1 <= loop else loop
            for e, d in choices(j):
                if max_c is not None and c + d > max_c:
                    continue
                self.rules.append(Rule(name, (self.punct("COMMA"), e, f"{base}_{nxt}_{min(c + d, cap)}")))
                pending.append((nxt, min(c + d, cap)))

        out: list[tuple[str, ...]] = []
        if low == 0 and min_c == 0:
            out.append((self.punct("EMPTY_ARRAY"),))
        if high is None or high > 0:
            for first, d in choices(0):
                if max_c is None or d <= max_c:
                    out.append((self.punct("LSQB"), first, f"{base}_{first_state}_{min(d, cap)}", self.punct("RSQB")))
        return out
