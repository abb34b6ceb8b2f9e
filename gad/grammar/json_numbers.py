"""JSON numbers under constraints, as automata over their digits (`gad.grammar.json_schema` builds
the grammar around them).

`number_dfa` builds, directly and in time linear in the size of the result, the automaton of the
number texts that satisfy a `NumberSpec`: closed decimal bounds (digit-by-digit comparison with the
bound, so ±1e308 costs a few hundred states, not a regex blow-up), exact multiples of a rational
(a residue automaton over the digits), their complement, a non-zero fraction, and a finite set of
excluded texts. `float_safe` turns a schema bound into a closed decimal bound that stays sound after
the validator parses a decimal into a float.

Layout: no exponent; integers without fraction and never ``-0``; fractions never ``-0.0``. With
``canonical`` a fraction has at most 15 significant digits and no trailing zero, so that two texts
never parse to the same float (``0.1`` and ``0.10000000000000000001`` do): what exclusions of values
(``not: {const: 0.5}``) need.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

from gad.errors import UnsupportedGrammarError
from gad.grammar.json_tokens import explore
from gad.grammar.regex import ByteDFA

__all__ = ["INTEGER_REGEX", "NUMBER_REGEX", "MAX_RESIDUE_STATES", "NumberSpec", "canonical_text", "float_safe", "number_dfa"]

NUMBER_REGEX = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
INTEGER_REGEX = r"0|-?[1-9][0-9]*"
_DECIMAL_REGEX = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
MAX_RESIDUE_STATES = 20_000
"""The most residue states (modulus × fraction digits) one ``multipleOf`` may need."""
_SIGNIFICANT = 15  # decimals with at most 15 significant digits round-trip through doubles


@dataclass(frozen=True)
class NumberSpec:
    """Which number texts to accept (every field narrows the set).

    ``lo``/``hi``: closed bounds. ``multiples``: the value is an integer multiple of each (exact,
    rationals whose denominator divides a power of 10). ``non_multiples``: it is not a multiple of
    any. ``integer``: no fraction. ``fraction``: a fraction with a non-zero digit (implies
    ``canonical``). ``exclude``: canonical texts (`canonical_text`) taken out.
    """

    integer: bool = False
    lo: Decimal | None = None
    hi: Decimal | None = None
    multiples: tuple[Fraction, ...] = ()
    non_multiples: tuple[Fraction, ...] = ()
    fraction: bool = False
    canonical: bool = False
    exclude: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = ["integer" if self.integer else "decimal"]
        if self.lo is not None or self.hi is not None:
            parts.append(f"in [{'-inf' if self.lo is None else self.lo}, {'inf' if self.hi is None else self.hi}]")
        parts += [f"multipleOf {m}" for m in self.multiples] + [f"not multipleOf {m}" for m in self.non_multiples]
        if self.fraction:
            parts.append("non-integral")
        if self.canonical or self.fraction:
            parts.append("canonical")
        if self.exclude:
            parts.append("not " + "|".join(self.exclude))
        return " ".join(parts)


def canonical_text(value: int | float) -> str | None:
    """The one text in the canonical layout that parses to ``value`` (None if the layout has none:
    fractions of more than 15 significant digits, non-finite floats)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
        text = format(Decimal(repr(value)), "f")
        digits = text.lstrip("-").replace(".", "").lstrip("0")
        return text if len(digits) <= _SIGNIFICANT else None
    return str(int(value))


# -- the automaton ------------------------------------------------------------------------------------

_ALPHABET = b"-.0123456789"
_START, _MINUS, _ZERO, _INT, _DOT, _FRAC = range(6)


class _Bound:
    """Compares the magnitude read so far with ``|bound|``: state ``(k, c)`` in the integer part
    (k digits, c = sign of the comparison of the prefix with the bound's first k digits), then
    ``(-1, c)`` in the fraction (c: comparison so far; 0 continues digit by digit)."""

    def __init__(self, bound: Decimal) -> None:
        text = format(bound.copy_abs(), "f")  # exact (abs() would round to the context's 28 digits)
        whole, _, frac = text.partition(".")
        self.whole, self.frac = whole, frac.rstrip("0")
        self.negative = bound < 0
        self.zero = bound == 0

    def digit(self, state: tuple[int, int], d: str, in_fraction: bool) -> tuple[int, int]:
        k, c = state
        if not in_fraction:
            if k >= len(self.whole):
                return (len(self.whole) + 1, 1)  # more integer digits than the bound: larger
            return (k + 1, c if c else (d > self.whole[k]) - (d < self.whole[k]))
        if c:
            return (k, c)
        j = -k - 1  # fraction digits compared so far
        ref = self.frac[j] if j < len(self.frac) else "0"
        return (-min(j + 1, len(self.frac)) - 1, (d > ref) - (d < ref))

    def dot(self, state: tuple[int, int]) -> tuple[int, int]:
        k, c = state
        return (-1, -1 if k < len(self.whole) else 1 if k > len(self.whole) else c)

    def resolve(self, state: tuple[int, int]) -> int:
        k, c = state
        if k < 0:  # in the fraction, j = -k-1 digits compared; the bound may have more
            return c if c or -k - 1 >= len(self.frac) else -1
        if k < len(self.whole):
            return -1
        if k > len(self.whole):
            return 1
        return c if c or not self.frac else -1


class _Residue:
    """``value / m`` integral, for m = p/q with q | 10^F: state (N mod p·10^F, fraction digits f);
    the value N/10^f is a multiple iff N·q·10^(F-f) ≡ 0 (mod p·10^F); digits past F must be 0."""

    def __init__(self, m: Fraction) -> None:
        p, q = m.numerator, m.denominator
        places, rest = 0, q
        while rest % 10 == 0:
            rest //= 10
            places += 1
        while rest != 1:
            if rest % 2 == 0:
                rest //= 2
            elif rest % 5 == 0:
                rest //= 5
            else:
                raise UnsupportedGrammarError(f"multipleOf {m} has no finite decimal multiples")
            places += 1
        self.places, self.q = places, q
        self.modulus = p * 10**places
        if self.modulus * (places + 1) > MAX_RESIDUE_STATES:
            raise UnsupportedGrammarError(
                f"multipleOf {m} needs {self.modulus * (places + 1)} residue states (the limit is {MAX_RESIDUE_STATES})"
            )

    def digit(self, state: tuple[int, int] | None, d: int, in_fraction: bool) -> tuple[int, int] | None:
        if state is None:  # already not a multiple: a fraction digit past the last place
            return None
        r, f = state
        if in_fraction and f >= self.places:
            return state if d == 0 else None
        return ((r * 10 + d) % self.modulus, f + (1 if in_fraction else 0))

    def multiple(self, state: tuple[int, int] | None) -> bool:
        if state is None:
            return False
        r, f = state
        return r * self.q * 10 ** (self.places - f) % self.modulus == 0


@functools.lru_cache(maxsize=1024)
def number_dfa(spec: NumberSpec) -> ByteDFA | None:
    """The automaton of the number texts that satisfy ``spec`` (None: there are none).

    Raises `UnsupportedGrammarError` when a residue automaton or the whole one would be too large."""
    lo = _Bound(spec.lo) if spec.lo is not None else None
    hi = _Bound(spec.hi) if spec.hi is not None else None
    residues = [_Residue(m) for m in spec.multiples] + [_Residue(m) for m in spec.non_multiples]
    split = len(spec.multiples)
    canonical = spec.canonical or spec.fraction
    trie: dict[tuple[int, int], int] = {}
    ends: set[int] = set()
    for text in spec.exclude:
        node = 0
        for byte in text.encode():
            node = trie.setdefault((node, byte), len(trie) + 1)
        ends.add(node)

    # state: (phase, negative, all digits zero so far, significant digits (capped), last digit zero,
    #         lo comparator, hi comparator, residues, excluded-text trie node or -1)
    def step(state: tuple, byte: int) -> tuple | None:
        phase, neg, zero, sig, last0, clo, chi, res, node = state
        ch = chr(byte)
        node = trie.get((node, byte), -1) if node >= 0 else -1
        if ch == "-":
            return (_MINUS, True, zero, sig, last0, clo, chi, res, node) if phase == _START else None
        if ch == ".":
            if phase not in (_ZERO, _INT) or spec.integer:
                return None
            return (_DOT, neg, zero, sig, last0, lo.dot(clo) if lo else None, hi.dot(chi) if hi else None, res, node)
        if phase in (_START, _MINUS):
            new_phase = _ZERO if ch == "0" else _INT
        elif phase == _INT:
            new_phase = _INT
        elif phase in (_DOT, _FRAC):
            new_phase = _FRAC
        else:  # a digit after a leading 0
            return None
        frac = new_phase == _FRAC
        d = byte - 0x30
        if sig or d:
            sig = min(sig + 1, _SIGNIFICANT + 1)
        if canonical and frac and sig > _SIGNIFICANT:
            return None
        new_res = tuple(r.digit(s, d, frac) for r, s in zip(residues, res))
        if any(s is None for s in new_res[:split]):
            return None
        clo = lo.digit(clo, ch, frac) if lo else None
        chi = hi.digit(chi, ch, frac) if hi else None
        if not canonical:  # significant digits and trailing zeros matter only to the canonical layout
            sig, last0 = 0, False
        else:
            last0 = d == 0
        return (new_phase, neg, zero and d == 0, sig, last0, clo, chi, new_res, node)

    def within(bound: _Bound | None, state: tuple[int, int] | None, neg: bool, upper: bool) -> bool:
        if bound is None:
            return True
        c = bound.resolve(state)  # the magnitude compared with |bound|
        if upper:  # value <= bound
            if not neg:
                return not bound.negative and c <= 0
            return not bound.negative or c >= 0
        if not neg:  # value >= bound
            return bound.negative or bound.zero or c >= 0
        return bound.negative and c <= 0

    def accepting(state: tuple) -> bool:
        phase, neg, zero, sig, last0, clo, chi, res, node = state
        if phase not in (_ZERO, _INT, _FRAC) or (neg and zero):
            return False
        if phase == _FRAC and canonical and last0:
            return False
        if spec.fraction and phase != _FRAC:
            return False
        if node in ends:
            return False
        if not all(r.multiple(s) for r, s in zip(residues[:split], res[:split])):
            return False
        if any(r.multiple(s) for r, s in zip(residues[split:], res[split:])):
            return False
        return within(lo, clo, neg, False) and within(hi, chi, neg, True)

    initial = (_START, False, True, 0, False, (0, 0) if lo else None, (0, 0) if hi else None,
               tuple((0, 0) for _ in residues), 0 if trie else -1)  # fmt: skip
    base = INTEGER_REGEX if spec.integer else _DECIMAL_REGEX
    return explore(initial, step, accepting, _ALPHABET, f"(?#{spec.describe()})(?:{base})")


# -- bounds that survive float parsing ---------------------------------------------------------------

_MAX_FLOAT = Decimal(sys.float_info.max)
_TINY = Decimal("1e-20")


def float_safe(bound: int | float, *, up: bool, strict: bool) -> Decimal:
    """A closed decimal bound that stays sound after the validator parses a decimal into a float.

    For an upper bound (a lower one is the mirror image): d = the largest double <= bound (< bound
    when strict). A decimal x rounds to a double <= d exactly when x is below the midpoint of d and
    the next double, so the result is that midpoint rounded down, strictly, to 20 significant
    digits. Beyond 2**53 doubles are sparser than integers, which the validator compares exactly,
    so there the result is d itself (17 digits, rounded down). Bounds closer to 0 than 1e-20 move
    inward to 0 or ±1e-20, so that ``exclusiveMinimum: 0`` does not spell out the smallest
    subnormal double; the numbers lost are all below 1e-20 in size.
    """
    exact = Decimal(bound)
    if exact.copy_abs() > _MAX_FLOAT:
        exact = _MAX_FLOAT if exact > 0 else -_MAX_FLOAT
    f = float(exact)
    inward, outward = (math.inf, -math.inf) if up else (-math.inf, math.inf)
    while (Decimal(f) < exact if up else Decimal(f) > exact) or (strict and Decimal(f) == Decimal(bound)):
        f = math.nextafter(f, inward)
    d = Decimal(f)
    rounding = "ROUND_CEILING" if up else "ROUND_FLOOR"
    if abs(f) < 2.0**53 and math.isfinite(math.nextafter(f, outward)):
        with localcontext() as ctx:  # exact: doubles are short binary fractions
            ctx.prec = 2000
            mid = d + (Decimal(math.nextafter(f, outward)) - d) / 2
        quantum = Decimal(1).scaleb(mid.adjusted() - 19)
        result = mid.quantize(quantum, rounding=rounding)
        if result == mid:
            result = result + quantum if up else result - quantum
    else:
        with localcontext() as ctx:
            ctx.prec = 400
            result = d.quantize(Decimal(1).scaleb(d.adjusted() - 16), rounding=rounding)
    if result == 0 or abs(result) < _TINY:
        if (result > 0) == up and result != 0:
            return _TINY if up else -_TINY
        return Decimal(0)
    return result
