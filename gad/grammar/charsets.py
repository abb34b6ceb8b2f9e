"""Code-point sets for regex character nodes, decided the way Python's ``re`` decides them.

A set is a tuple of sorted, disjoint, non-adjacent inclusive ``(lo, hi)`` pairs over
``[0, 0x10FFFF]``. ``\\d \\w \\s`` are Unicode-aware (ASCII under ``a``) and found by asking ``re``
itself over every code point; case folding under ``i`` likewise asks ``re`` about the code points
that take part in a case relation (the Kelvin sign K matches ``k``).
"""

from __future__ import annotations

import array
import functools
import re
import sys
from collections.abc import Iterable

from gad.errors import UnsupportedGrammarError

try:  # Python >= 3.11
    from re import _constants as _c
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]

MAX_CP = 0x10FFFF

Intervals = tuple[tuple[int, int], ...]
"""A set of code points: sorted, disjoint, non-adjacent inclusive ``(lo, hi)`` pairs."""

ALL: Intervals = ((0, MAX_CP),)
NEWLINE: Intervals = ((10, 10),)

def normalize(pairs: Iterable[tuple[int, int]]) -> Intervals:
    out: list[list[int]] = []
    for lo, hi in sorted(pairs):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(s: Intervals) -> Intervals:
    out = []
    nxt = 0
    for lo, hi in s:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return tuple(out)


def points(cps: Iterable[int]) -> Intervals:
    return normalize((p, p) for p in cps)


@functools.cache
def _all_chars() -> str:
    """Every code point, in order, as one str (surrogates included): 1,114,112 characters."""
    codec = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    return array.array("I", range(MAX_CP + 1)).tobytes().decode(codec, "surrogatepass")


_CATEGORY_REGEX = {
    _c.CATEGORY_DIGIT: r"\d", _c.CATEGORY_NOT_DIGIT: r"\D", _c.CATEGORY_SPACE: r"\s",
    _c.CATEGORY_NOT_SPACE: r"\S", _c.CATEGORY_WORD: r"\w", _c.CATEGORY_NOT_WORD: r"\W",
}  # fmt: skip


@functools.cache
def category(code: object, ascii_only: bool) -> Intervals:
    """The code points ``re`` puts in ``\\d``/``\\w``/``\\s`` (or their negations), found by ``re``."""
    regex = _CATEGORY_REGEX[code]
    if regex.isupper():
        return complement(category(getattr(_c, str(code).replace("_NOT_", "_")), ascii_only))
    found = re.finditer(regex + "+", _all_chars(), re.ASCII if ascii_only else 0)
    return tuple((m.start(), m.end() - 1) for m in found)


@functools.cache
def _cased_chars() -> tuple[str, Intervals]:
    """Every code point that takes part in a case relation: itself changed by lower/upper/title/
    casefold, or the image of one that is. Outside this set ``re``'s IGNORECASE changes nothing."""
    text = _all_chars()
    found: set[int] = set()
    for lo in range(0, MAX_CP + 1, 256):
        chunk = text[lo : lo + 256]
        if chunk.lower() == chunk and chunk.upper() == chunk and chunk.casefold() == chunk:
            continue
        for ch in chunk:
            images = {ch.lower(), ch.upper(), ch.title(), ch.casefold()} - {ch}
            if images:
                found.add(ord(ch))
                found.update(ord(c) for image in images for c in image)
    ordered = sorted(found)
    return "".join(map(chr, ordered)), points(ordered)


def _fold(plain: Intervals, node_regex: str, re_flags: int) -> Intervals:
    """Case-insensitive membership: unchanged outside the cased set; inside it, asked of ``re``."""
    cased_text, cased = _cased_chars()
    matched = [ord(m.group()) for m in re.finditer(node_regex, cased_text, re_flags)]
    uncased_part = complement(normalize(complement(plain) + cased))
    return normalize(uncased_part + points(matched))


def _esc(cp: int) -> str:
    return f"\\U{cp:08x}"


def _render(op: object, av: object) -> str:
    """A regex for one character-set node, so that ``re`` can be asked about it."""
    if op is _c.LITERAL:
        return _esc(av)  # type: ignore[arg-type]
    if op is _c.NOT_LITERAL:
        return f"[^{_esc(av)}]"  # type: ignore[arg-type]
    parts = []
    for iop, iav in av:  # type: ignore[attr-defined]
        if iop is _c.NEGATE:
            parts.append("^")
        elif iop is _c.LITERAL:
            parts.append(_esc(iav))
        elif iop is _c.RANGE:
            parts.append(f"{_esc(iav[0])}-{_esc(iav[1])}")
        else:
            parts.append(_CATEGORY_REGEX[iav])
    return "[" + "".join(parts) + "]"


SET_FLAGS = re.IGNORECASE | re.ASCII | re.DOTALL


@functools.lru_cache(maxsize=8192)
def charset(op: object, av: object, flags: int) -> Intervals:
    """The code points one ``LITERAL``/``NOT_LITERAL``/``ANY``/``IN`` node matches."""
    ascii_only = bool(flags & re.ASCII)
    if op is _c.ANY:
        return ALL if flags & re.DOTALL else complement(NEWLINE)
    if op is _c.LITERAL:
        plain: Intervals = ((av, av),)  # type: ignore[assignment]
    elif op is _c.NOT_LITERAL:
        plain = complement(((av, av),))  # type: ignore[arg-type]
    else:
        negate = False
        pieces: list[tuple[int, int]] = []
        for iop, iav in av:  # type: ignore[attr-defined]
            if iop is _c.NEGATE:
                negate = True
            elif iop is _c.LITERAL:
                pieces.append((iav, iav))
            elif iop is _c.RANGE:
                pieces.append((iav[0], iav[1]))
            elif iop is _c.CATEGORY and iav in _CATEGORY_REGEX:
                pieces.extend(category(iav, ascii_only))
            else:
                raise UnsupportedGrammarError(f"character-set item {iop} {iav}")
        plain = normalize(pieces)
        if negate:
            plain = complement(plain)
    if flags & re.IGNORECASE:
        plain = _fold(plain, _render(op, av), flags & (re.IGNORECASE | re.ASCII))
    return plain


