"""The lexical side of JSON Schema: regexes and automata for JSON strings and numbers under
constraints (`gad.grammar.json_schema` builds the grammar around them).

* Strings: a ``pattern`` is a regex over the *decoded* string; `encode_search` rewrites it into a
  regex over the JSON-*encoded* text (each character class becomes the alternatives that spell its
  characters: raw, or escaped), so the grammar never has to decode. `counted_string_dfa` counts
  characters (an escape is one, a surrogate pair is one) without the regex compiler's blow-up on
  large counts, and `intersect` combines constraints on one string.
* Numbers: `integer_range` and `decimal_range` are regexes over digit strings for closed
  intervals; `float_safe` turns a schema bound into a decimal bound that stays sound after the
  validator parses a decimal into a float.

Every automaton built here is minimal and numbered as `compile_regex` numbers it, and its
``pattern`` is a whole-input regex for the same language.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from decimal import Decimal, localcontext
from typing import Any

from gad.errors import GrammarError
from gad.grammar.regex import DEAD, ByteDFA, compile_regex
from gad.grammar.regex import _finish as _minimal_dfa  # the regex compiler's canonical form

try:  # Python >= 3.11
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = [
    "CHAR",
    "INTEGER_REGEX",
    "NUMBER_REGEX",
    "STRING_REGEX",
    "SUPPORTED_FORMATS",
    "counted_string_dfa",
    "decimal_range",
    "encode_search",
    "encode_set",
    "float_safe",
    "integer_range",
    "intersect",
]

# -- regexes for JSON tokens ----------------------------------------------------------------------

# One character of a JSON string as RFC 8259 writes it; a surrogate pair is one character and a lone
# surrogate is none, so repeating this counts code points exactly as Python's len() does.
CHAR = (
    r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})'
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
STRING_REGEX = '"' + CHAR + '*"'
NUMBER_REGEX = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
INTEGER_REGEX = r"0|-?[1-9][0-9]*"

_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001-9999
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_HEX = "[0-9a-fA-F]"
_PCT = f"%{_HEX}{{2}}"
_PCHAR = rf"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|{_PCT})"
_URI = (
    rf"[A-Za-z][A-Za-z0-9+.-]*:"
    rf"(?://(?:(?:[A-Za-z0-9._~!$&'()*+,;=:-]|{_PCT})*@)?(?:[A-Za-z0-9._~!$&'()*+,;=-]|{_PCT})*(?::[0-9]*)?"
    rf"(?:/{_PCHAR}*)*|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?|{_PCHAR}+(?:/{_PCHAR}*)*|)"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"

SUPPORTED_FORMATS: dict[str, str] = {
    "date": _DATE,
    "time": _TIME,
    "date-time": rf"{_DATE}[Tt]{_TIME}",
    "uuid": rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}",
    "email": rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?",
    "uri": _URI,
    "ipv4": rf"{_OCTET}(?:\.{_OCTET}){{3}}",
}
"""``format`` name → regex over the decoded string (full match). Each regex is a subset of what the
`jsonschema` format checker accepts (dates are real calendar dates, leap years included)."""


# -- strings: a regex over decoded text → the same over JSON-encoded text -------------------------------

_SHORT_ESCAPES = {0x08: "b", 0x09: "t", 0x0A: "n", 0x0C: "f", 0x0D: "r"}
_SPECIAL = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0xD800, 0xDFFF))


def _class_char(c: int) -> str:
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def encode_set(intervals: tuple[tuple[int, int], ...]) -> str:
    """A regex for the JSON encodings (raw, or the escapes listed in the module docstring) of the
    code points in ``intervals``."""
    raw: list[tuple[int, int]] = []
    for lo, hi in intervals:
        for slo, shi in _SPECIAL:  # cut the specials out of [lo, hi]
            if slo > hi or shi < lo:
                continue
            if lo < slo:
                raw.append((lo, slo - 1))
            lo = shi + 1
            if lo > hi:
                break
        if lo <= hi:
            raw.append((lo, hi))
    raw = [(lo, hi) for lo, hi in raw if lo <= hi]
    parts = []
    if raw:
        parts.append("[" + "".join(_class_char(lo) + ("-" + _class_char(hi) if hi > lo else "") for lo, hi in raw) + "]")

    def has(c: int) -> bool:
        return any(lo <= c <= hi for lo, hi in intervals)

    for c, text in ((0x22, r'\\"'), (0x5C, r"\\\\"), (0x2F, r"\\/")):
        if has(c):
            parts.append(text)
    controls = [c for c in range(0x20) if has(c)]
    if len(controls) == 32:
        parts.append(r"\\u00[01][0-9a-fA-F]")
    else:
        parts += [rf"\\u00{c >> 4:x}[{c & 15:x}{c & 15:X}]" for c in controls]
    parts += ["\\\\" + _SHORT_ESCAPES[c] for c in controls if c in _SHORT_ESCAPES]
    if not parts:
        return "(?!)"
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


@functools.cache
def _all_chars() -> str:
    return "".join(map(chr, range(sys.maxunicode + 1)))


@functools.lru_cache(maxsize=1024)
def _charset(class_regex: str, flags: int) -> tuple[tuple[int, int], ...]:
    """The code points ``class_regex`` (one character) matches under ``flags``, found by `re`."""
    found = re.finditer(f"(?:{class_regex})+", _all_chars(), flags & (re.IGNORECASE | re.ASCII | re.UNICODE))
    return tuple((m.start(), m.end() - 1) for m in found)


_CATEGORIES = {"DIGIT": r"\d", "NOT_DIGIT": r"\D", "SPACE": r"\s", "NOT_SPACE": r"\S", "WORD": r"\w", "NOT_WORD": r"\W"}


@functools.lru_cache(maxsize=512)
def encode_search(pattern: str) -> str:
    """A regex over JSON-encoded string *content* matching the encodings of exactly the strings ``s``
    with ``re.search(pattern, s)`` (anchors ``^ \\A`` / ``$ \\Z`` at the edges of the pattern or of its
    top-level alternatives). Raises `re.error` or `GrammarError`."""
    re.compile(pattern)
    parsed = _sre_parse.parse(pattern)
    flags = parsed.state.flags
    any_char = encode_set(((0, sys.maxunicode),))
    items = list(parsed)
    while len(items) == 1 and items[0][0] is _c.SUBPATTERN and not items[0][1][1] and not items[0][1][2]:
        items = list(items[0][1][3])
    branches = items[0][1][1] if len(items) == 1 and items[0][0] is _c.BRANCH else [items]
    out = []
    for branch in branches:
        seq = list(branch)
        start = bool(seq) and seq[0][0] is _c.AT and seq[0][1] in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING)
        end = bool(seq) and seq[-1][0] is _c.AT and seq[-1][1] in (_c.AT_END, _c.AT_END_STRING)
        if (start or end) and flags & re.MULTILINE:
            raise GrammarError("anchors under the MULTILINE flag are not supported")
        body = seq[1 if start else 0 : len(seq) - 1 if end and len(seq) > int(start) else len(seq)]
        enc = _encode_sequence(body, flags)
        # Python's `$` also matches before a final newline; `\Z` only at the very end
        tail = encode_set(((10, 10),)) + "?" if end and seq[-1][1] is _c.AT_END else ""
        out.append(("" if start else any_char + "*") + enc + (tail if end else any_char + "*"))
    return out[0] if len(out) == 1 else "(?:" + "|".join(out) + ")"


def _encode_sequence(seq: list, flags: int) -> str:
    return "".join(_encode_item(op, av, flags) for op, av in seq)


def _encode_item(op: Any, av: Any, flags: int) -> str:
    if op is _c.LITERAL:
        return encode_set(_charset(re.escape(chr(av)), flags))
    if op is _c.NOT_LITERAL:
        return encode_set(_charset("[^" + _class_char(av) + "]", flags))
    if op is _c.ANY:
        return encode_set(((0, sys.maxunicode),) if flags & re.DOTALL else ((0, 9), (11, sys.maxunicode)))
    if op is _c.IN:
        text = ""
        for iop, iav in av:
            if iop is _c.NEGATE:
                text += "^"
            elif iop is _c.LITERAL:
                text += _class_char(iav)
            elif iop is _c.RANGE:
                text += _class_char(iav[0]) + "-" + _class_char(iav[1])
            elif iop is _c.CATEGORY and str(iav).replace("CATEGORY_", "") in _CATEGORIES:
                text += _CATEGORIES[str(iav).replace("CATEGORY_", "")]
            else:
                raise GrammarError(f"the character class item {iop} is not supported")
        return encode_set(_charset("[" + text + "]", flags))
    if op is _c.BRANCH:
        return "(?:" + "|".join(_encode_sequence(list(b), flags) for b in av[1]) + ")"
    if op is _c.SUBPATTERN:
        _, add, remove, sub = av
        return "(?:" + _encode_sequence(list(sub), (flags | add) & ~remove) + ")"
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
        low, high, sub = av
        bound = f"{{{low},}}" if high is _c.MAXREPEAT else f"{{{low},{high}}}"
        return "(?:" + _encode_sequence(list(sub), flags) + ")" + bound
    if op is _c.ASSERT or op is _c.ASSERT_NOT:
        direction, sub = av
        if direction < 0:
            raise GrammarError("lookbehind assertions are not supported in patterns")
        return ("(?=" if op is _c.ASSERT else "(?!") + _encode_sequence(list(sub), flags) + ")"
    if op is _c.CATEGORY:
        return encode_set(_charset(_CATEGORIES[str(av).replace("CATEGORY_", "")], flags))
    if op is _c.AT:
        raise GrammarError("anchors are supported only at the start or end of the pattern")
    raise GrammarError(f"the regex construct {str(op).lower()} is not supported in patterns")


# -- automata built directly ----------------------------------------------------------------------------


@functools.cache
def _char_dfa() -> ByteDFA:
    return compile_regex(CHAR, whole_input=True)


@functools.lru_cache(maxsize=256)
def counted_string_dfa(low: int, high: int | None) -> ByteDFA:
    """``"`` CHAR{low,high} ``"`` without a regex compiler's counting blow-up: state (k, u) is "k
    characters read, and u within the next one". Needs CHAR prefix-free (accepting states are dead
    ends), which it is."""
    unit = _char_dfa()
    ends = set(unit.accepting)
    assert all(all(t == DEAD for t in unit.table[q]) for q in ends), "CHAR must be prefix-free"
    inner = [q for q in range(unit.num_states) if q not in ends]
    index = {q: i for i, q in enumerate(inner)}
    top = high if high is not None else low  # the count saturates at `top` when unbounded
    width = len(inner)
    final = 1 + (top + 1) * width

    def sid(k: int, q: int) -> int:
        return 1 + k * width + index[q]

    rows = [tuple(sid(0, unit.initial) if b == 0x22 else DEAD for b in range(256))]
    for k in range(top + 1):
        nxt = k + 1 if k < top else (top if high is None else None)
        for q in inner:
            row = []
            for b, t in enumerate(unit.table[q]):
                if t == DEAD:
                    row.append(final if b == 0x22 and q == unit.initial and k >= low else DEAD)
                elif t in ends:
                    row.append(DEAD if nxt is None else sid(nxt, unit.initial))
                else:
                    row.append(sid(k, t))
            rows.append(tuple(row))
    rows.append((DEAD,) * 256)
    pattern = '"' + CHAR + f"{{{low},{'' if high is None else high}}}" + '"'
    return _trimmed(rows, {final}, pattern)


def intersect(a: ByteDFA | None, b: ByteDFA | None) -> ByteDFA | None:
    if a is None or b is None:
        return None
    ids = {(a.initial, b.initial): 0}
    queue = [(a.initial, b.initial)]
    rows = []
    accepting = set()
    for i, (x, y) in enumerate(queue):
        if x in a.accepting and y in b.accepting:
            accepting.add(i)
        row = []
        for tx, ty in zip(a.table[x], b.table[y]):
            if tx == DEAD or ty == DEAD:
                row.append(DEAD)
                continue
            j = ids.get((tx, ty))
            if j is None:
                j = ids[tx, ty] = len(queue)
                queue.append((tx, ty))
            row.append(j)
        rows.append(tuple(row))
    return _trimmed(rows, accepting, f"(?={a.pattern}){b.pattern}")


def _trimmed(rows: list[tuple[int, ...]], accepting: set[int], pattern: str) -> ByteDFA | None:
    """The minimal trimmed DFA, numbered as `compile_regex` numbers it (None if empty). Being the
    same automaton `compile_regex(pattern, whole_input=True)` gives matters: compiled grammars are
    saved by regex and checked against the recompiled automata on load."""
    out = _minimal_dfa(rows, accepting, 0)
    return None if out is None else ByteDFA(out[0], out[1], 0, pattern)


# -- numbers: ranges as regexes over decimal digit strings ----------------------------------------------


def _same_length(lo: str, hi: str) -> str:
    """Digit strings of len(lo) == len(hi) between lo and hi (as numbers)."""
    if lo == hi:
        return lo
    if len(lo) == 1:
        return f"[{lo}-{hi}]"
    n = len(lo) - 1
    if lo[1:] == "0" * n and hi[1:] == "9" * n:
        return f"[{lo[0]}-{hi[0]}][0-9]{{{n}}}"
    if lo[0] == hi[0]:
        return lo[0] + "(?:" + _same_length(lo[1:], hi[1:]) + ")"
    parts = [lo[0] + "(?:" + _same_length(lo[1:], "9" * n) + ")"]
    if int(hi[0]) - int(lo[0]) > 1:
        parts.append(f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}][0-9]{{{n}}}")
    parts.append(hi[0] + "(?:" + _same_length("0" * n, hi[1:]) + ")")
    return "(?:" + "|".join(parts) + ")"


def _natural_range(a: int, b: int | None) -> str:
    """Naturals a <= n <= b (b None: unbounded) written without leading zeros."""
    la = len(str(a))
    lb = len(str(b)) if b is not None else la
    parts = []
    for length in range(la, lb + 1):
        lo = a if length == la else 10 ** (length - 1)
        hi = b if b is not None and length == lb else 10**length - 1
        parts.append(_same_length(str(lo), str(hi)))
    if b is None:
        parts.append(f"[1-9][0-9]{{{la},}}")
    return "(?:" + "|".join(parts) + ")"


def integer_range(low: int | None, high: int | None) -> str:
    parts = []
    if high is None or high >= 0:
        parts.append(_natural_range(max(low, 0) if low is not None else 0, high))
    if low is None or low < 0:
        parts.append("-" + _natural_range(max(1, -high) if high is not None else 1, -low if low is not None else None))
    return "|".join(parts)


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
    if abs(exact) > _MAX_FLOAT:
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
        result = d.quantize(Decimal(1).scaleb(d.adjusted() - 16), rounding=rounding)
    if result == 0 or abs(result) < _TINY:
        if (result > 0) == up and result != 0:
            return _TINY if up else -_TINY
        return Decimal(0)
    return result


def _split(d: Decimal) -> tuple[int, str]:
    """Integer part and fraction digits (no trailing zeros) of a non-negative decimal."""
    text = format(d, "f")
    whole, _, frac = text.partition(".")
    return int(whole), frac.rstrip("0")


def _zeros(h: str) -> int:
    return len(h) - len(h.lstrip("0"))


def _frac_le(h: str) -> str:
    """Non-empty digit strings F with 0.F <= 0.h."""
    if not h:
        return "0+"
    k = _zeros(h)
    if k:  # F must open with k zeros (or be all zeros)
        return f"0{{1,{k}}}|0{{{k}}}(?:{_frac_le(h[k:])})"
    d, r = int(h[0]), h[1:]
    parts = [f"[0-{d - 1}][0-9]*"] if d > 0 else []
    parts.append(f"{d}0*" if not r else f"{d}(?:{_frac_le(r)})?")
    return "|".join(parts)


def _frac_ge(h: str) -> str:
    """Non-empty digit strings F with 0.F >= 0.h."""
    if not h:
        return "[0-9]+"
    k = _zeros(h)
    if k:  # a non-zero digit within the first k places, or k zeros and the rest >= h[k:]
        return f"0{{0,{k - 1}}}[1-9][0-9]*|0{{{k}}}(?:{_frac_ge(h[k:])})"
    d, r = int(h[0]), h[1:]
    parts = [f"[{d + 1}-9][0-9]*"] if d < 9 else []
    parts.append(f"{d}[0-9]*" if not r else f"{d}(?:{_frac_ge(r)})")
    return "|".join(parts)


def _frac_between(a: str, b: str) -> str:
    """Non-empty digit strings F with 0.a <= 0.F <= 0.b (0.a <= 0.b)."""
    if not a:
        return _frac_le(b)
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    if common:
        tail = _frac_between(a[common:], b[common:])
        return f"{a[:common]}(?:{tail})" + ("?" if not a[common:] else "")
    da, db = int(a[0]), int(b[0])
    parts = [f"{da}[0-9]*" if not a[1:] else f"{da}(?:{_frac_ge(a[1:])})"]
    if db - da > 1:
        parts.append(f"[{da + 1}-{db - 1}][0-9]*")
    parts.append(f"{db}0*" if not b[1:] else f"{db}(?:{_frac_le(b[1:])})?")
    return "|".join(parts)


def _frac_positive_le(h: str) -> str:
    """Non-empty digit strings F with 0 < 0.F <= 0.h (h non-zero)."""
    k = _zeros(h)
    if k:
        return f"0{{{k}}}(?:{_frac_positive_le(h[k:])})"
    d, r = int(h[0]), h[1:]
    parts = ["0[0-9]*[1-9][0-9]*"]
    if d > 1:
        parts.append(f"[1-{d - 1}][0-9]*")
    parts.append(f"{d}0*" if not r else f"{d}(?:{_frac_le(r)})?")
    return "|".join(parts)


_ANY_FRACTION = r"(?:\.[0-9]+)?"


def _magnitude(a: Decimal, b: Decimal | None, *, positive: bool = False) -> str:
    """Unsigned decimals ``I(.F)?`` with a <= value <= b (and value > 0 if ``positive``)."""
    ia, fa = _split(a)
    parts = []
    if positive and a == 0:
        if b is None or b >= 1:
            parts.append(r"0\.[0-9]*[1-9][0-9]*")
            parts.append(_magnitude(Decimal(1), b))
        else:
            ib, fb = _split(b)
            parts.append(rf"0\.(?:{_frac_positive_le(fb)})")
        return "|".join(parts)
    low_end = f"{ia}" + (_ANY_FRACTION if not fa else rf"\.(?:{_frac_ge(fa)})")
    if b is None:
        return f"{low_end}|{_natural_range(ia + 1, None)}{_ANY_FRACTION}"
    ib, fb = _split(b)
    high_end = f"{ib}" + (r"(?:\.0+)?" if not fb else rf"(?:\.(?:{_frac_le(fb)}))?")
    if ia == ib:
        if not fa:
            return high_end
        return rf"{ia}\.(?:{_frac_between(fa, fb)})"
    parts = [low_end]
    if ib - ia > 1:
        parts.append(_natural_range(ia + 1, ib - 1) + _ANY_FRACTION)
    parts.append(high_end)
    return "|".join(parts)


def decimal_range(lo: Decimal | None, hi: Decimal | None) -> str:
    """JSON numbers (no exponent, never ``-0``) with lo <= value <= hi."""
    parts = []
    if hi is None or hi >= 0:
        parts.append(_magnitude(max(lo, Decimal(0)) if lo is not None else Decimal(0), hi))
    if lo is None or lo < 0:
        if hi is not None and hi < 0:
            parts.append("-(?:" + _magnitude(-hi, -lo if lo is not None else None) + ")")
        else:
            parts.append("-(?:" + _magnitude(Decimal(0), -lo if lo is not None else None, positive=True) + ")")
    return "|".join(f"(?:{p})" for p in parts)
