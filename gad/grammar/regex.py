"""Regular expressions → deterministic automata over UTF-8 **bytes**.

Language-model tokens are byte strings and may end inside a UTF-8 character, so every terminal is
a DFA over the 256 byte values. For every ``str`` ``s`` with a UTF-8 encoding (lone surrogates
have none), ``compile_regex(p).fullmatch(s.encode()) == (re.fullmatch(p, s) is not None)``: the
semantics are Python ``re``'s for ``str`` patterns -- Unicode ``\\d \\w \\s`` (ASCII under ``a``),
``re``'s own case folding under ``i`` (the Kelvin sign K matches ``k``), ``.`` without ``\\n``
unless ``s``. Greedy and lazy quantifiers denote the same full-match language; see
`ByteDFA.shortest_matches` for the "first end" reading a lexer gives ``".*?"``-style terminals.

Invalid UTF-8 (overlongs ``C0 C1 E0 80-9F F0 80-8F``, surrogates ``ED A0-BF``, > U+10FFFF
``F4 90-BF F5-FF``, stray continuation bytes) is never accepted, and the DFA is **trimmed**: every
state but ``DEAD`` (-1) can reach acceptance, so a prefix walks to a live state exactly when it can
still be completed. Token masks rely on that exactness.

Pipeline: (1) ``re.compile`` validates, ``re``'s own parser (``re._parser``; lark imports it too)
parses; (2) Thompson NFA with code-point interval sets on its edges; lookarounds and ``^ $ \\A \\Z``
at the top level become intersections of the prefix with ``Σ*P`` or of the suffix with ``PΣ*``
(`_Builder.anchored`); (3) subset construction → a DFA whose rows are piecewise-constant maps over
``[0, 0x10FFFF]``; (4) → bytes: ASCII directly; a UTF-8 lead byte covers a block of code points and
each continuation byte 1/64 of it; a block with one target becomes a shared "read k continuation
bytes" chain, only mixed blocks recurse, intermediate rows are deduplicated; (5) trim, minimise
(Moore), renumber breadth-first from the initial state 0.

Why not interegular (the design's suggestion): 0.3.3 cannot compile lark's own
``common.ESCAPED_STRING`` ``".*?(?<!\\\\)(\\\\\\\\)*?"`` (no lookbehinds), rejects ``\\uXXXX``, the
``x a u m`` flags and ``^ $``; its ``\\d \\w \\s`` are ASCII-only and its ``(?i)`` misses the Kelvin
sign, so it disagrees with ``re`` -- which is what lark's lexer runs.
"""

from __future__ import annotations

import array
import bisect
import functools
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from gad.errors import ConfigurationError, EmptyLanguageError, GrammarError, UnsupportedGrammarError

try:  # Python >= 3.11
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["ByteDFA", "compile_literal", "compile_regex", "DEAD"]

DEAD = -1
"""The dead state: no continuation of the bytes read so far can match."""

_MAX_CP = 0x10FFFF
_MAX_NFA_STATES = 200_000
_MAX_DFA_STATES = 20_000

Intervals = tuple[tuple[int, int], ...]
"""A set of code points: sorted, disjoint, non-adjacent inclusive ``(lo, hi)`` pairs."""

_ALL: Intervals = ((0, _MAX_CP),)
_MARK = _MAX_CP + 1  # assertion markers #0, #1, ... are the "code points" above U+10FFFF
_NEWLINE: Intervals = ((10, 10),)


# --------------------------------------------------------------------------------------------
# The public automaton


@dataclass(frozen=True, eq=False, repr=False)
class ByteDFA:
    """A trimmed deterministic automaton over bytes.

    ``table[state][byte]`` is the next state, or ``DEAD`` (-1). Every row has 256 entries. Every
    state in ``range(num_states)`` is live: some byte string leads from it to a state in
    ``accepting``. Equality and hashing are by identity (tables can be large); `compile_regex`
    caches, so the same pattern gives the same object.
    """

    table: tuple[tuple[int, ...], ...]
    accepting: frozenset[int]
    initial: int = 0
    pattern: str = ""

    def __post_init__(self) -> None:
        n = len(self.table)
        if not 0 <= self.initial < n:
            raise ConfigurationError(f"`initial` must be a state in [0, {n}), but is {self.initial}")
        for row in self.table:
            if len(row) != 256:
                raise ConfigurationError(f"every row of `table` needs 256 entries, but one has {len(row)}")
        if any(not 0 <= s < n for s in self.accepting):
            raise ConfigurationError("`accepting` holds a state outside the table")

    def __repr__(self) -> str:
        return f"ByteDFA(pattern={self.pattern!r}, num_states={self.num_states})"

    @property
    def num_states(self) -> int:
        """Number of (live) states; the dead state -1 is not counted."""
        return len(self.table)

    @property
    def accepts_empty(self) -> bool:
        """Whether the empty string matches."""
        return self.initial in self.accepting

    def step(self, state: int, byte: int) -> int:
        """The state after reading ``byte`` from ``state`` (``DEAD`` stays dead)."""
        if state < 0:
            return DEAD
        return self.table[state][byte]

    def walk(self, state: int, data: bytes) -> int:
        """The state after reading ``data`` from ``state``; ``DEAD`` once no match is possible."""
        if state < 0:
            return DEAD
        table = self.table
        for byte in data:
            state = table[state][byte]
            if state < 0:
                return DEAD
        return state

    def fullmatch(self, data: bytes) -> bool:
        """Whether the whole of ``data`` is in the language."""
        return self.walk(self.initial, data) in self.accepting

    def is_live(self, state: int) -> bool:
        """Whether ``state`` is not dead, i.e. the bytes that led to it can still be completed."""
        return 0 <= state < len(self.table)

    def is_accepting(self, state: int) -> bool:
        """Whether the bytes that led to ``state`` form a complete match."""
        return state in self.accepting

    def shortest_matches(self) -> ByteDFA:
        """The sub-language ``{w ∈ L : no proper prefix of w is in L}``.

        This is what a lexer that stops at the first possible end produces as one token: the
        reading that lazy patterns such as lark's ``ESCAPED_STRING`` (``".*?(?<!\\\\)(\\\\\\\\)*?"``)
        or ``C_COMMENT`` (``/\\*(.|\\n)*?\\*/``) get from ``re.match``. Their full-match language
        also contains ``"a"b"`` and ``/* */ */``. Byte-level and character-level prefixes agree
        here because only valid UTF-8 is ever accepted.
        """
        rows = [((DEAD,) * 256 if s in self.accepting else row) for s, row in enumerate(self.table)]
        out = _finish(rows, self.accepting, self.initial)
        if out is None:  # pragma: no cover - L non-empty implies a shortest word exists
            raise EmptyLanguageError(f"regex {self.pattern!r} matches no string")
        return ByteDFA(out[0], out[1], 0, self.pattern)


# --------------------------------------------------------------------------------------------
# Public constructors


_FLAG_BITS = {"i": re.I, "s": re.S, "m": re.M, "x": re.X, "u": re.U, "a": re.A}


def compile_regex(
    pattern: str, *, flags: str = "", name: str | None = None, whole_input: bool = False
) -> ByteDFA:
    """Compile a Python regex (``str`` syntax) to a trimmed, minimal `ByteDFA` over UTF-8 bytes.

    Args:
        pattern: the regex, matched against the whole string (``re.fullmatch`` semantics).
        flags: Python flag letters as lark stores them: ``i`` (ignore case), ``s`` (dot matches
            newline), ``m`` (multiline anchors), ``x`` (verbose), ``u`` (Unicode, the default) and
            ``a`` (ASCII ``\\d \\w \\s`` and case folding). ``L`` is rejected, as ``re`` does for str.
        name: the terminal's name, put in front of error messages.
        whole_input: the regex describes the entire input (as for ``Grammar.from_regex``), so the
            edges of a match are the edges of the input and ``^``/``$``/lookarounds there are
            compiled with ``re.fullmatch`` semantics. Leave it False for a lexer terminal: there a
            lookahead at the end of the match peeks at the *following* text and ``^``/``$`` refer
            to the whole input, so an assertion whose window can reach past either edge of the
            match depends on the surrounding text and is rejected. Assertions whose window stays
            inside every match (lark's ``ESCAPED_STRING``: ``(?<!\\\\)`` after at least ``"``) are
            compiled either way.

    Raises:
        GrammarError: the pattern is not a valid regex.
        UnsupportedGrammarError: a construct cannot be compiled to a finite automaton (back
            references, conditionals, ``\\b``/``\\B``, atomic groups and possessive quantifiers,
            lookarounds or anchors inside repetitions or inner alternations, and, unless
            ``whole_input``, ones that look past the edges of the match) or the automaton is too
            large; the message names the construct and the pattern.
        EmptyLanguageError: no UTF-8 string matches the pattern.

    Results are cached by ``(pattern, flags, whole_input)``.
    """
    if not isinstance(pattern, str):
        raise ConfigurationError(f"`pattern` has to be a str, but is {type(pattern).__name__}")
    if not isinstance(flags, str):
        raise ConfigurationError(f"`flags` has to be a str of letters, but is {type(flags).__name__}")
    try:
        return _compile_cached(pattern, "".join(sorted(set(flags))), bool(whole_input))
    except GrammarError as exc:
        if name is None:
            raise
        raise type(exc)(f"terminal {name}: {exc.message}") from None


def compile_literal(text: str | bytes) -> ByteDFA:
    """The `ByteDFA` matching exactly ``text`` (UTF-8 encoded when a ``str``); no regex parsing."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return _compile_literal_cached(data)


@functools.lru_cache(maxsize=4096)
def _compile_literal_cached(data: bytes) -> ByteDFA:
    rows = []
    for i, byte in enumerate(data):
        row = [DEAD] * 256
        row[byte] = i + 1
        rows.append(tuple(row))
    rows.append((DEAD,) * 256)
    return ByteDFA(tuple(rows), frozenset({len(data)}), 0, re.escape(data.decode("utf-8", "replace")))


@functools.lru_cache(maxsize=2048)
def _compile_cached(pattern: str, flags: str, whole_input: bool) -> ByteDFA:
    bits = 0
    for letter in flags:
        if letter not in _FLAG_BITS:
            why = "str patterns cannot use it" if letter == "L" else "it is not a Python regex flag"
            raise UnsupportedGrammarError(f"regex flag {letter!r} is not supported ({why}): {pattern!r}")
        bits |= _FLAG_BITS[letter]
    try:
        re.compile(pattern, bits)  # the reference's own validation: reject what `re` rejects
        parsed = _sre_parse.parse(pattern, bits)
    except (re.error, OverflowError, ValueError, RecursionError) as exc:
        raise GrammarError(f"invalid regex {pattern!r}: {exc}") from None
    builder = _Builder(pattern, parsed.state, whole_input)
    try:
        start, end = builder.anchored(list(parsed), parsed.state.flags)
        cdfa = _determinize(builder.nfa, start, end, pattern)
    except RecursionError:
        raise UnsupportedGrammarError(f"regex {pattern!r} is nested too deeply") from None
    rows, accepting = _to_bytes(cdfa)
    out = _finish(rows, accepting, 0)
    if out is None:
        raise EmptyLanguageError(f"regex {pattern!r} matches no string (that has a UTF-8 encoding)")
    return ByteDFA(out[0], out[1], 0, pattern)


# --------------------------------------------------------------------------------------------
# Code-point sets


def _normalize(pairs: Iterable[tuple[int, int]]) -> Intervals:
    out: list[list[int]] = []
    for lo, hi in sorted(pairs):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _complement(s: Intervals) -> Intervals:
    out = []
    nxt = 0
    for lo, hi in s:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return tuple(out)


def _points(points: Iterable[int]) -> Intervals:
    return _normalize((p, p) for p in points)


@functools.cache
def _all_chars() -> str:
    """Every code point, in order, as one str (surrogates included): 1,114,112 characters."""
    codec = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    return array.array("I", range(_MAX_CP + 1)).tobytes().decode(codec, "surrogatepass")


_CATEGORY_REGEX = {
    _c.CATEGORY_DIGIT: r"\d", _c.CATEGORY_NOT_DIGIT: r"\D", _c.CATEGORY_SPACE: r"\s",
    _c.CATEGORY_NOT_SPACE: r"\S", _c.CATEGORY_WORD: r"\w", _c.CATEGORY_NOT_WORD: r"\W",
}  # fmt: skip


@functools.cache
def _category(code: object, ascii_only: bool) -> Intervals:
    """The code points ``re`` puts in ``\\d``/``\\w``/``\\s`` (or their negations), found by ``re``."""
    regex = _CATEGORY_REGEX[code]
    if regex.isupper():
        return _complement(_category(getattr(_c, str(code).replace("_NOT_", "_")), ascii_only))
    found = re.finditer(regex + "+", _all_chars(), re.ASCII if ascii_only else 0)
    return tuple((m.start(), m.end() - 1) for m in found)


@functools.cache
def _cased_chars() -> tuple[str, Intervals]:
    """Every code point that takes part in a case relation: itself changed by lower/upper/title/
    casefold, or the image of one that is. Outside this set ``re``'s IGNORECASE changes nothing."""
    text = _all_chars()
    found: set[int] = set()
    for lo in range(0, _MAX_CP + 1, 256):
        chunk = text[lo : lo + 256]
        if chunk.lower() == chunk and chunk.upper() == chunk and chunk.casefold() == chunk:
            continue
        for ch in chunk:
            images = {ch.lower(), ch.upper(), ch.title(), ch.casefold()} - {ch}
            if images:
                found.add(ord(ch))
                found.update(ord(c) for image in images for c in image)
    ordered = sorted(found)
    return "".join(map(chr, ordered)), _points(ordered)


def _fold(plain: Intervals, node_regex: str, re_flags: int) -> Intervals:
    """Case-insensitive membership: unchanged outside the cased set; inside it, asked of ``re``."""
    cased_text, cased = _cased_chars()
    matched = [ord(m.group()) for m in re.finditer(node_regex, cased_text, re_flags)]
    uncased_part = _complement(_normalize(_complement(plain) + cased))
    return _normalize(uncased_part + _points(matched))


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


_SET_FLAGS = re.IGNORECASE | re.ASCII | re.DOTALL


@functools.lru_cache(maxsize=8192)
def _charset(op: object, av: object, flags: int) -> Intervals:
    """The code points one ``LITERAL``/``NOT_LITERAL``/``ANY``/``IN`` node matches."""
    ascii_only = bool(flags & re.ASCII)
    if op is _c.ANY:
        return _ALL if flags & re.DOTALL else _complement(_NEWLINE)
    if op is _c.LITERAL:
        plain: Intervals = ((av, av),)  # type: ignore[assignment]
    elif op is _c.NOT_LITERAL:
        plain = _complement(((av, av),))  # type: ignore[arg-type]
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
                pieces.extend(_category(iav, ascii_only))
            else:
                raise UnsupportedGrammarError(f"character-set item {iop} {iav}")
        plain = _normalize(pieces)
        if negate:
            plain = _complement(plain)
    if flags & re.IGNORECASE:
        plain = _fold(plain, _render(op, av), flags & (re.IGNORECASE | re.ASCII))
    return plain


# --------------------------------------------------------------------------------------------
# Regex tree → NFA (Thompson construction over code-point sets)


class _NFA:
    __slots__ = ("eps", "edges")

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[Intervals, int]]] = []

    def state(self, pattern: str) -> int:
        if len(self.eps) >= _MAX_NFA_STATES:
            raise UnsupportedGrammarError(f"regex {pattern!r} is too large (> {_MAX_NFA_STATES} NFA states)")
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1


Fragment = tuple[int, int]  # (start state, end state); the end state accepts


class _Builder:
    """Builds NFA fragments from ``re``'s parse tree: ``(op, av)`` items in sequences."""

    def __init__(self, pattern: str, state: object, whole_input: bool) -> None:
        self.pattern = pattern
        self.state = state  # re's parser state, for widths
        self.whole_input = whole_input
        self.nfa = _NFA()

    def _new(self) -> int:
        return self.nfa.state(self.pattern)

    def _unsupported(self, what: str) -> UnsupportedGrammarError:
        return UnsupportedGrammarError(f"{what} is not supported in regex {self.pattern!r}")

    def _concat(self, *frags: Fragment) -> Fragment:
        for (_, end), (start, _) in zip(frags, frags[1:]):
            self.nfa.eps[end].append(start)
        return frags[0][0], frags[-1][1]

    def _epsilon(self) -> Fragment:
        s = self._new()
        return s, s

    def _chars(self, cs: Intervals) -> Fragment:
        s, e = self._new(), self._new()
        if cs:
            self.nfa.edges[s].append((cs, e))
        return s, e

    def _sigma_star(self) -> Fragment:
        s = self._new()
        self.nfa.edges[s].append((_ALL, s))
        return s, s

    def _union(self, frags: list[Fragment]) -> Fragment:
        s, e = self._new(), self._new()
        for a, b in frags:
            self.nfa.eps[s].append(a)
            self.nfa.eps[b].append(e)
        return s, e

    def sequence(self, seq: Iterable[tuple[object, object]], flags: int) -> Fragment:
        frags = [self.item(op, av, flags) for op, av in seq]
        return self._concat(*frags) if frags else self._epsilon()

    def item(self, op: object, av: object, flags: int) -> Fragment:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            key = tuple(av) if isinstance(av, list) else av
            try:
                return self._chars(_charset(op, key, flags & _SET_FLAGS))
            except UnsupportedGrammarError as exc:  # pragma: no cover - re's parser emits no others
                raise self._unsupported(exc.message) from None
        if op is _c.BRANCH:
            return self._union([self.sequence(alt, flags) for alt in av[1]])  # type: ignore[index]
        if op is _c.SUBPATTERN:
            _group, add, remove, sub = av  # type: ignore[misc]
            return self.sequence(sub, (flags | add) & ~remove)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av  # type: ignore[misc]
            return self._repeat(sub, lo, hi, flags)
        raise self._unsupported(_describe(op, av, nested=True))

    def _repeat(self, sub: object, lo: int, hi: int, flags: int) -> Fragment:
        frags = [self.sequence(sub, flags) for _ in range(lo)]  # type: ignore[arg-type]
        if hi == _c.MAXREPEAT:
            body = self.sequence(sub, flags)  # type: ignore[arg-type]
            loop = self._union([body, self._epsilon()])
            self.nfa.eps[body[1]].append(body[0])
            frags.append(loop)
        elif hi > lo:
            # x{0,k} as (x(x(x)?)?)?: each optional copy may stop at the shared end
            end = self._new()
            start = cur = self._new()
            self.nfa.eps[cur].append(end)
            for _ in range(hi - lo):
                a, b = self.sequence(sub, flags)  # type: ignore[arg-type]
                self.nfa.eps[cur].append(a)
                self.nfa.eps[b].append(end)
                cur = b
            frags.append((start, end))
        return self._concat(*frags) if frags else self._epsilon()

    # -- the top level, where lookarounds and anchors see the whole string -------------------

    def _flatten(self, seq: list, flags: int, out: list) -> list:
        for op, av in seq:
            if op is _c.SUBPATTERN:
                _group, add, remove, sub = av
                self._flatten(list(sub), (flags | add) & ~remove, out)
            else:
                out.append((op, av, flags))
        return out

    def anchored(self, seq: list, flags: int) -> Fragment:
        """A fragment for ``seq`` that spans the whole input, where assertions can be compiled.

        Each assertion ``k`` becomes a marker symbol ``#k`` (a code point above U+10FFFF) in the
        concatenation ``W``. A lookbehind demands ``h⁻¹(Σ*P) #k Any*`` and a lookahead
        ``Any* #k h⁻¹(PΣ*)``, where ``h`` erases markers and ``Any`` is Σ plus the markers; a
        negative one takes the complement of ``h⁻¹(...)``. The result is ``h(W ∩ C_1 ∩ ... ∩ C_m)``.
        """
        items = self._flatten(seq, flags, [])
        if len(items) == 1 and items[0][0] is _c.BRANCH:
            _, av, fl = items[0]
            return self._union([self.anchored(list(alt), fl) for alt in av[1]])
        where = [i for i, (op, av, _) in enumerate(items) if self._is_assertion(op, av)]
        markers = {i: _MARK + k for k, i in enumerate(where)}
        if not markers:
            frags = [self.item(op, av, fl) for op, av, fl in items]
            return self._concat(*frags) if frags else self._epsilon()
        if not self.whole_input:
            widths = [self._width(op, av)[0] for op, av, _ in items]
            for i in markers:
                self._check_window(items[i], sum(widths[:i]), sum(widths[i + 1 :]))
        top = _MARK + len(markers) - 1
        frags = [
            self._chars(((markers[i],) * 2,)) if i in markers else self.item(op, av, fl)
            for i, (op, av, fl) in enumerate(items)
        ]
        result = _determinize(self.nfa, *self._concat(*frags), self.pattern)
        for i, mark in markers.items():
            op, av, fl = items[i]
            behind, cond = self._condition(op, av, fl)
            lifted = _with_markers(_determinize(self.nfa, *cond, self.pattern), top)
            if op is _c.ASSERT_NOT:
                lifted = _product(_any_star(top), lifted, keep_right_accepting=False)
            any_star = _embed(self.nfa, _any_star(top), self.pattern)
            parts = [_embed(self.nfa, lifted, self.pattern), self._chars(((mark, mark),)), any_star]
            demand = _determinize(self.nfa, *self._concat(*(parts if behind else parts[::-1])), self.pattern)
            result = _product(result, demand, keep_right_accepting=True)
        return _embed(self.nfa, result, self.pattern, erase_markers=True)

    def _width(self, op: object, av: object) -> tuple[int, int]:
        """Shortest and longest match of one item (``re``'s own ``getwidth``; assertions are 0)."""
        return _sre_parse.SubPattern(self.state, [(op, av)]).getwidth()

    def _check_window(self, item: tuple[object, object, int], before: int, after: int) -> None:
        """Reject an assertion that can look past the match, given at least ``before`` characters
        of the match precede it and ``after`` follow it. (``^``/``\\A`` with text before them and
        ``$``/``\\Z`` with enough after are false everywhere, so they are kept: empty language.)"""
        op, av, flags = item
        if op is _c.AT:
            need_after = 2 if av is _c.AT_END and not flags & re.MULTILINE else 1
            inside = before >= 1 if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING) else after >= need_after
            edge = "start" if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING) else "end"
        else:
            direction, sub = av  # type: ignore[misc]
            width = _sre_parse.SubPattern(self.state, list(sub)).getwidth()[1]
            inside = before >= width if direction < 0 else width <= after
            edge = "start" if direction < 0 else "end"
        if not inside:
            raise self._unsupported(
                f"{_describe(op, av, nested=False)} that can look past the {edge} of the match (in a"
                " terminal that depends on the text around it; use whole_input=True if the regex"
                " is the whole input)"
            )

    def _is_assertion(self, op: object, av: object) -> bool:
        if op in (_c.ASSERT, _c.ASSERT_NOT):
            return True
        if op is _c.AT:
            if av in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
                raise self._unsupported(_describe(op, av, nested=False))
            return True
        return False

    def _condition(self, op: object, av: object, flags: int) -> tuple[bool, Fragment]:
        """(is it about the prefix?, the language the prefix or suffix must be in, over Σ)."""
        if op is _c.AT:
            multiline = bool(flags & re.MULTILINE)
            empty = self._epsilon()
            newline = self._chars(_NEWLINE)
            if av is _c.AT_BEGINNING and multiline:  # ε | Σ*\n
                return True, self._union([empty, self._concat(self._sigma_star(), newline)])
            if av is _c.AT_END and multiline:  # ε | \nΣ*
                return False, self._union([empty, self._concat(newline, self._sigma_star())])
            if av is _c.AT_END:  # `$` also matches before a final newline
                return False, self._union([empty, newline])
            return av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING), empty
        direction, sub = av  # type: ignore[misc]
        inner = self.sequence(sub, flags)
        if direction < 0:
            return True, self._concat(self._sigma_star(), inner)
        return False, self._concat(inner, self._sigma_star())


def _describe(op: object, av: object, *, nested: bool) -> str:
    where = " inside a group, repetition or alternation" if nested else ""
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        kind = "lookbehind" if av[0] < 0 else "lookahead"  # type: ignore[index]
        return f"a {'negative ' if op is _c.ASSERT_NOT else ''}{kind}{where}"
    if op is _c.AT:
        anchors = {_c.AT_BEGINNING: "^", _c.AT_BEGINNING_STRING: "\\A", _c.AT_END: "$"}
        anchors[_c.AT_END_STRING] = "\\Z"
        if av in anchors:
            return f"the anchor {anchors[av]}{where}"
        return {_c.AT_BOUNDARY: "the word boundary \\b"}.get(av, "the non-boundary \\B")
    names = {
        _c.GROUPREF: "a backreference",
        _c.GROUPREF_EXISTS: "a conditional group (?(id)yes|no)",
        getattr(_c, "ATOMIC_GROUP", None): "an atomic group (?>...)",
        getattr(_c, "POSSESSIVE_REPEAT", None): "a possessive quantifier",
    }
    return names.get(op, f"the regex construct {op}")


# --------------------------------------------------------------------------------------------
# NFA → code-point DFA, and operations on code-point DFAs


class _CharDFA:
    """``segs[state]``: sorted ``(lo, hi, target)`` runs, adjacent runs with one target merged;
    code points in no run go to the dead state. State 0 is initial."""

    __slots__ = ("segs", "accepting")

    def __init__(self) -> None:
        self.segs: list[list[tuple[int, int, int]]] = []
        self.accepting: set[int] = set()


def _append_seg(segs: list[tuple[int, int, int]], lo: int, hi: int, target: int) -> None:
    if segs and segs[-1][2] == target and segs[-1][1] == lo - 1:
        segs[-1] = (segs[-1][0], hi, target)
    else:
        segs.append((lo, hi, target))


def _determinize(nfa: _NFA, start: int, end: int, pattern: str) -> _CharDFA:
    eps, edges = nfa.eps, nfa.edges

    def closure(states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        stack = list(seen)
        while stack:
            for t in eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        # only states with edges, or the end, decide the future
        return frozenset(s for s in seen if edges[s] or s == end)

    dfa = _CharDFA()
    ids: dict[frozenset[int], int] = {}
    queue: list[frozenset[int]] = []

    def state_id(key: frozenset[int]) -> int:
        sid = ids.get(key)
        if sid is None:
            if len(ids) >= _MAX_DFA_STATES:
                raise UnsupportedGrammarError(f"regex {pattern!r} is too large (> {_MAX_DFA_STATES} states)")
            sid = ids[key] = len(ids)
            queue.append(key)
            dfa.segs.append([])
            if end in key:
                dfa.accepting.add(sid)
        return sid

    targets_memo: dict[frozenset[int], int] = {}
    state_id(closure([start]))
    i = 0
    while i < len(queue):
        key, sid = queue[i], i
        i += 1
        events: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for s in key:
            for cs, t in edges[s]:
                for lo, hi in cs:
                    events[lo].append((t, 1))
                    events[hi + 1].append((t, -1))
        points = sorted(events)
        active: dict[int, int] = {}
        segs = dfa.segs[sid]
        for j, p in enumerate(points[:-1]):
            for t, d in events[p]:
                n = active.get(t, 0) + d
                if n:
                    active[t] = n
                else:
                    del active[t]
            if active:
                targets = frozenset(active)
                tid = targets_memo.get(targets)
                if tid is None:
                    tid = targets_memo[targets] = state_id(closure(targets))
                _append_seg(segs, p, points[j + 1] - 1, tid)
    return dfa


def _product(left: _CharDFA, right: _CharDFA, *, keep_right_accepting: bool) -> _CharDFA:
    """``L(left) ∩ L(right)`` when ``keep_right_accepting``, else ``L(left) − L(right)``."""
    out = _CharDFA()
    ids: dict[tuple[int, int], int] = {(0, 0): 0}
    queue = [(0, 0)]
    out.segs.append([])
    i = 0
    while i < len(queue):
        x, y = queue[i]
        sid = i
        i += 1
        if x in left.accepting and ((y in right.accepting) == keep_right_accepting):
            out.accepting.add(sid)
        rsegs = right.segs[y] if y >= 0 else []
        k = 0
        segs = out.segs[sid]
        for lo, hi, tx in left.segs[x]:
            while k < len(rsegs) and rsegs[k][1] < lo:
                k += 1
            pos = lo
            kk = k
            while pos <= hi:
                if kk < len(rsegs) and rsegs[kk][0] <= pos:
                    seg_hi, ty = min(hi, rsegs[kk][1]), rsegs[kk][2]
                    kk += 1
                else:
                    nxt = rsegs[kk][0] if kk < len(rsegs) else hi + 1
                    seg_hi, ty = min(hi, nxt - 1), -1
                if ty >= 0 or not keep_right_accepting:
                    pair = (tx, ty)
                    tid = ids.get(pair)
                    if tid is None:
                        tid = ids[pair] = len(queue)
                        queue.append(pair)
                        out.segs.append([])
                    _append_seg(segs, pos, seg_hi, tid)
                pos = seg_hi + 1
    return out


def _embed(nfa: _NFA, dfa: _CharDFA, pattern: str, *, erase_markers: bool = False) -> Fragment:
    """Copy ``dfa`` into ``nfa`` as a fragment; with ``erase_markers``, marker edges become ε."""
    base = [nfa.state(pattern) for _ in dfa.segs]
    end = nfa.state(pattern)
    for sid, segs in enumerate(dfa.segs):
        by_target: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for lo, hi, t in segs:
            if erase_markers and hi >= _MARK:
                nfa.eps[base[sid]].append(base[t])
                if lo >= _MARK:
                    continue
                hi = _MAX_CP
            by_target[t].append((lo, hi))
        for t, ivs in by_target.items():
            nfa.edges[base[sid]].append((tuple(ivs), base[t]))
        if sid in dfa.accepting:
            nfa.eps[base[sid]].append(end)
    return base[0], end


def _any_star(top: int) -> _CharDFA:
    """One accepting state looping on every code point and every marker up to ``top``."""
    dfa = _CharDFA()
    dfa.segs.append([(0, top, 0)])
    dfa.accepting.add(0)
    return dfa


def _with_markers(dfa: _CharDFA, top: int) -> _CharDFA:
    """``h⁻¹(L)``: the language of ``dfa`` with markers up to ``top`` allowed anywhere."""
    for sid, segs in enumerate(dfa.segs):
        _append_seg(segs, _MARK, top, sid)
    return dfa


# --------------------------------------------------------------------------------------------
# Code-point DFA → byte DFA


def _lead_bytes() -> list[tuple[int, int, int, int, int]]:
    """``(lead byte, first code point, continuation bytes, first continuation lo, hi)``; the
    restricted first-continuation ranges exclude overlongs, surrogates and > U+10FFFF."""
    leads = [(b, (b & 0x1F) << 6, 1, 0x80, 0xBF) for b in range(0xC2, 0xE0)]
    for b in range(0xE0, 0xF0):
        lo, hi = (0xA0, 0xBF) if b == 0xE0 else (0x80, 0x9F) if b == 0xED else (0x80, 0xBF)
        leads.append((b, (b & 0x0F) << 12, 2, lo, hi))
    for b in range(0xF0, 0xF5):
        lo, hi = (0x90, 0xBF) if b == 0xF0 else (0x80, 0x8F) if b == 0xF4 else (0x80, 0xBF)
        leads.append((b, (b & 0x07) << 18, 3, lo, hi))
    return leads


_LEADS = _lead_bytes()


def _to_bytes(cdfa: _CharDFA) -> tuple[list[tuple[int, ...]], set[int]]:
    n = len(cdfa.segs)
    rows: list[tuple[int, ...]] = [()] * n
    interned: dict[tuple[int, ...], int] = {}

    def intern(row: list[int]) -> int:
        if max(row) < 0:
            return DEAD
        key = tuple(row)
        sid = interned.get(key)
        if sid is None:
            sid = interned[key] = len(rows)
            rows.append(key)
        return sid

    @functools.cache
    def chain(m: int, target: int) -> int:
        """A state that reads ``m`` arbitrary continuation bytes, then is ``target``."""
        if m == 0 or target < 0:
            return target
        return intern([DEAD] * 128 + [chain(m - 1, target)] * 64 + [DEAD] * 64)

    by_map: dict[tuple[tuple[int, int, int], ...], tuple[int, ...]] = {}
    for sid in range(n):
        segs = cdfa.segs[sid]
        known = by_map.get(tuple(segs))
        if known is not None:  # same code-point map, same byte row
            rows[sid] = known
            continue
        starts = [s[0] for s in segs]

        def uniform(lo: int, hi: int) -> int | None:
            """The one target of every code point in [lo, hi], or None if they differ."""
            i = bisect.bisect_right(starts, lo) - 1
            if i >= 0 and lo <= segs[i][1]:
                return segs[i][2] if hi <= segs[i][1] else None
            return DEAD if i + 1 >= len(segs) or segs[i + 1][0] > hi else None

        def fill(row: list[int], offset: int, lo: int, hi: int) -> None:
            """``row[offset + cp - lo] = target(cp)`` for every code point ``lo <= cp <= hi``."""
            i = max(bisect.bisect_right(starts, lo) - 1, 0)
            while i < len(segs) and segs[i][0] <= hi:
                a, b = max(segs[i][0], lo), min(segs[i][1], hi)
                if a <= b:
                    row[offset + a - lo : offset + b - lo + 1] = [segs[i][2]] * (b - a + 1)
                i += 1

        def block(base: int, m: int) -> int:
            """The state reading ``m`` continuation bytes for code points [base, base + 64**m)."""
            target = uniform(base, base + (1 << (6 * m)) - 1)
            if target is not None:
                return chain(m, target)
            sub = [DEAD] * 256
            if m == 1:
                fill(sub, 0x80, base, base + 63)
            else:
                step = 1 << (6 * (m - 1))
                sub[0x80:0xC0] = [block(base + c * step, m - 1) for c in range(64)]
            return intern(sub)

        row = [DEAD] * 256
        fill(row, 0, 0, 0x7F)
        for lead, base, m, lo, hi in _LEADS:
            if lo == 0x80 and hi == 0xBF:
                row[lead] = block(base, m)
            else:
                step = 1 << (6 * (m - 1))
                sub = [DEAD] * 256
                for c in range(lo, hi + 1):
                    sub[c] = block(base + (c - 0x80) * step, m - 1)
                row[lead] = intern(sub)
        rows[sid] = by_map[tuple(segs)] = tuple(row)
    return rows, set(cdfa.accepting)


def _finish(
    rows: list[tuple[int, ...]], accepting: Iterable[int], initial: int
) -> tuple[tuple[tuple[int, ...], ...], frozenset[int]] | None:
    """Trim, minimise and renumber (initial → 0, breadth-first). None if the language is empty."""
    trimmed = _trim(rows, set(accepting), initial)
    if trimmed is None:
        return None
    rows2, acc2 = trimmed
    n = len(rows2)
    # Moore's partition refinement; index -1 of `cls` (the extra last slot) is the dead class.
    cls = [1 if s in acc2 else 0 for s in range(n)] + [DEAD]
    num = len(set(cls[:-1]))
    while True:
        sigs: dict[tuple[int, tuple[int, ...]], int] = {}
        cls = [sigs.setdefault((cls[s], tuple(map(cls.__getitem__, rows2[s]))), len(sigs)) for s in range(n)]
        cls.append(DEAD)
        if len(sigs) == num:
            break
        num = len(sigs)
    reps: dict[int, int] = {}
    for s in range(n):
        reps.setdefault(cls[s], s)
    quotient = [tuple(map(cls.__getitem__, rows2[reps[k]])) for k in range(num)]
    again = _trim(quotient, {cls[s] for s in acc2}, cls[0])
    if again is None:  # pragma: no cover - minimisation preserves the language
        return None
    return tuple(again[0]), frozenset(again[1])


def _trim(
    rows: list[tuple[int, ...]], accepting: set[int], initial: int
) -> tuple[list[tuple[int, ...]], set[int]] | None:
    """Keep the states reachable from ``initial`` that can reach ``accepting``; BFS numbering."""
    order = [initial]
    seen = {initial}
    reverse: dict[int, list[int]] = defaultdict(list)
    for s in order:
        for t in set(rows[s]):
            if t >= 0:
                reverse[t].append(s)
                if t not in seen:
                    seen.add(t)
                    order.append(t)
    live = {s for s in order if s in accepting}
    stack = list(live)
    while stack:
        for p in reverse[stack.pop()]:
            if p not in live:
                live.add(p)
                stack.append(p)
    if initial not in live:
        return None
    new_order = [initial]
    index = {initial: 0}
    for s in new_order:
        for t in rows[s]:
            if t in live and t not in index:
                index[t] = len(new_order)
                new_order.append(t)
    mapping = [DEAD] * (len(rows) + 1)  # the last slot answers for index -1 (dead)
    for s, i in index.items():
        mapping[s] = i
    out = [tuple(map(mapping.__getitem__, rows[s])) for s in new_order]
    return out, {index[s] for s in new_order if s in accepting}
