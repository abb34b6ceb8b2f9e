"""JSON strings and numbers as terminals: ``minLength``/``maxLength``, ``pattern``, ``format``;
``minimum``/``maximum`` (exclusive too) and ``multipleOf``, each one automaton.

`ScalarRules` is a mixin of the converter (`gad.grammar.json_schema.convert`): it uses its
`terminal`, `punct`, `unsupported`, `notes`.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gad.errors import GrammarError, UnsupportedGrammarError
from gad.grammar.json_numbers import NumberSpec, float_safe, number_dfa
from gad.grammar.json_tokens import CHAR, SUPPORTED_FORMATS, counted_string_dfa, encode_search, intersect
from gad.grammar.regex import ByteDFA, compile_regex

__all__ = ["SPEC_FORMATS", "ScalarRules", "as_list", "at_least", "at_most"]

SPEC_FORMATS = frozenset({
    "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6",
    "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template", "json-pointer",
    "relative-json-pointer", "regex",
})  # fmt: skip
"""The formats JSON Schema defines (2020-12, and draft 7's subset): `jsonschema` checks them, so
they are assertions; any other format name is an annotation it ignores, and so does gad."""


def as_list(x: Any) -> list:
    """A keyword's value as a list (None: empty; a list as it is; anything else: itself alone)."""
    return [] if x is None else list(x) if isinstance(x, list) else [x]


def at_least(a: Any, b: Any) -> Any:
    """The tighter lower bound: the larger one (None: no bound)."""
    return b if a is None else max(a, b)


def at_most(a: Any, b: Any) -> Any:
    """The tighter upper bound: the smaller one (None: no bound)."""
    return b if a is None else min(a, b)


class ScalarRules:
    """The string and number part of the converter (see the module docstring)."""

    def string_terminal(self, s: dict, ptr: str) -> str | None:
        language = self.string_language(s, ptr)
        if language is False:
            return None
        if language is True:
            return self.punct("STRING")
        return self.terminal("STRING", *language)

    def string_language(self, s: dict, ptr: str) -> bool | tuple[str, ByteDFA]:
        """The quoted JSON strings the string keywords of `s` allow: True for all, False for none,
        else (a whole-input regex for them, its automaton)."""
        low, high = s.get("minLength", 0), s.get("maxLength")
        if high is not None and high < low:
            return False
        constraints: list[str] = []  # whole-input regexes over the quoted JSON text
        for p in as_list(s.get("pattern")):
            try:
                constraints.append('"' + encode_search(p) + '"')
            except (GrammarError, re.error) as exc:
                self.unsupported("pattern", ptr, f"pattern {p!r}: {getattr(exc, 'message', exc)}")
        for f in as_list(s.get("format")):
            if f in SUPPORTED_FORMATS:
                constraints.append('"' + encode_search(r"\A(?:" + SUPPORTED_FORMATS[f] + r")\Z") + '"')
            elif f in SPEC_FORMATS:
                self.unsupported("format", ptr, f"format {f!r} is not one of {', '.join(SUPPORTED_FORMATS)}")
            else:
                note = f"'format' at {ptr}: {f!r} is not a format JSON Schema defines: an annotation, not checked"
                if note not in self.notes:
                    self.notes.append(note)
        if not constraints and low == 0 and high is None:
            return True
        if high is not None and high - low > 10_000 or low > 10_000:
            self.unsupported("maxLength", ptr, "string length bounds above 10000 are not supported")
            low, high = min(low, 10_000), None
        dfas = []
        if low or high is not None:
            dfas.append(counted_string_dfa(low, high))
            count = f"{{{low},{'' if high is None else high}}}"
            constraints.insert(0, '"' + CHAR + count + '"')
        try:
            dfas += [compile_regex(c, whole_input=True) for c in constraints[len(dfas) :]]
        except GrammarError as exc:
            self.unsupported("pattern", ptr, exc.message)
            return True
        if not dfas:
            return True
        dfa = functools.reduce(intersect, dfas)
        if dfa is None:
            return False
        regex = "".join(f"(?={c[1:]})" if i < len(constraints) - 1 else c[1:] for i, c in enumerate(constraints))
        return '"' + regex, dfa

    # -- numbers ----------------------------------------------------------------------------------------

    def number_terminal(self, s: dict, ptr: str, *, integer: bool) -> str | None:
        multiples: list[Fraction] = []
        for m in as_list(s.get("multipleOf")):
            divisor = self.divisor(m, ptr)
            if divisor is None:
                continue
            multiples.append(divisor)
            if isinstance(m, int):
                integer = True  # the validator's `int % int` is exact; fraction texts would be floats
        lo = hi = None
        if integer:
            # Python ints, exact at any size (Decimal arithmetic would round to 28 digits)
            if "minimum" in s:
                lo = Decimal(math.ceil(s["minimum"]))
            if "exclusiveMinimum" in s:
                lo = at_least(lo, Decimal(math.floor(s["exclusiveMinimum"]) + 1))
            if "maximum" in s:
                hi = Decimal(math.floor(s["maximum"]))
            if "exclusiveMaximum" in s:
                hi = at_most(hi, Decimal(math.ceil(s["exclusiveMaximum"]) - 1))
        else:
            if "minimum" in s:
                lo = float_safe(s["minimum"], up=True, strict=False)
            if "exclusiveMinimum" in s:
                lo = at_least(lo, float_safe(s["exclusiveMinimum"], up=True, strict=True))
            if "maximum" in s:
                hi = float_safe(s["maximum"], up=False, strict=False)
            if "exclusiveMaximum" in s:
                hi = at_most(hi, float_safe(s["exclusiveMaximum"], up=False, strict=True))
        for m in as_list(s.get("multipleOf")):
            if isinstance(m, float) and m != 1:  # the validator divides floats: exact only while x is
                k = Fraction(m).denominator.bit_length() - 1  # a double, |x| < 2**(53-k)
                edge = Decimal(2 ** 53 - 1) / Decimal(2**k)
                lo, hi = at_least(lo, -edge), at_most(hi, edge)
        if lo is not None and hi is not None and lo > hi:
            return None
        multiples = [m for m in multiples if m != 1 or not integer]
        if lo is None and hi is None and not multiples:
            return self.punct("INTEGER" if integer else "NUMBER")
        spec = NumberSpec(integer=integer, lo=lo, hi=hi, multiples=tuple(dict.fromkeys(multiples)))
        try:
            dfa = number_dfa(spec)
        except UnsupportedGrammarError as exc:
            self.unsupported("multipleOf" if multiples else "minimum", ptr, exc.message)
            return self.punct("INTEGER" if integer else "NUMBER")
        if dfa is None:
            return None
        return self.terminal("INTEGER" if integer else "NUMBER", dfa.pattern, dfa)

    def divisor(self, m: int | float, ptr: str) -> Fraction | None:
        """``multipleOf m`` as an exact rational the automaton tests against, or None (unsupported,
        dropped in lenient mode). `jsonschema` computes ``x % m`` for an int and ``x / m`` in floats
        for a float: exact only for floats ``a / 2**k`` (k <= 64) and values the doubles hold exactly."""
        if isinstance(m, int):
            return Fraction(m)
        exact = Fraction(m)
        if exact.denominator > 2**64:
            self.unsupported("multipleOf", ptr, f"multipleOf {m!r} is not exactly a double with a short binary "
                             "fraction, and the validator divides in floating point (use an integer divisor)")
            return None
        return exact
