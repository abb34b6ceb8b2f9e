"""The lexical side of JSON Schema: regexes and automata for JSON strings, and the automaton
operations the schema converter combines constraints with (`gad.grammar.json_schema` builds the
grammar around them; `gad.grammar.json_numbers` does numbers).

* Strings: a ``pattern`` is a regex over the *decoded* string; `encode_search` rewrites it into a
  regex over the JSON-*encoded* text (each character class becomes the alternatives that spell its
  characters: raw, or escaped), so the grammar never has to decode. `counted_string_dfa` counts
  characters (an escape is one, a surrogate pair is one) with an automaton built directly, already
  minimal, in time linear in the bound.
* Automata: `explore` builds a `ByteDFA` from a step function (breadth-first over the reachable
  states); `intersect`, `difference` and `union` are product constructions; `literal_dfa` is a trie
  of byte strings followed by an optional suffix automaton. None of them minimises: each result is
  trimmed (every state live) and numbered breadth-first from the initial state 0; their size is
  bounded by `MAX_STATES`.

Every automaton carries as ``pattern`` a whole-input regex for its language when one is short;
automata whose regex would be huge (counted residues, wide number ranges) carry a regex of a
superset tagged with a ``(?#...)`` comment that names the exact constraint. The pattern is the
terminal's identity (grammar fingerprints use it); the automaton is the language.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from gad.errors import GrammarError, UnsupportedGrammarError
from gad.grammar.regex import DEAD, ByteDFA, compile_regex

try:  # Python >= 3.11
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = [
    "CHAR",
    "ENCODED_CHAR",
    "INTEGER_REGEX",
    "MAX_STATES",
    "NUMBER_REGEX",
    "STRING_REGEX",
    "SUPPORTED_FORMATS",
    "counted_string_dfa",
    "difference",
    "encode_search",
    "encode_set",
    "explore",
    "intersect",
    "followed_by",
    "literal_dfa",
    "spaced_dfa",
    "spellings",
    "trimmed",
    "union",
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



ENCODED_CHAR = encode_set(((0, sys.maxunicode),))
"""One character as a JSON encoder writes it (raw, or one of the escapes an encoder needs): the
alphabet of strings with ``pattern``/``format`` and of keys of additional properties."""


def spellings(text: str) -> str:
    """A regex for every spelling of ``text`` in the `ENCODED_CHAR` layout (``/`` raw or ``\\/``)."""
    return "".join(encode_set(((ord(ch), ord(ch)),)) for ch in text)


# -- automata built directly ----------------------------------------------------------------------------

MAX_STATES = 200_000
"""The most states one automaton built here may have; beyond, `UnsupportedGrammarError`."""


def explore(
    initial: Hashable,
    step: Callable[[Hashable, int], Hashable | None],
    accepting: Callable[[Hashable], bool],
    alphabet: Iterable[int],
    pattern: str,
) -> ByteDFA | None:
    """The trimmed DFA whose states are those reachable from ``initial`` through ``step`` (None:
    dead) on the bytes of ``alphabet`` (every other byte is dead); None if its language is empty."""
    alphabet = sorted(set(alphabet))
    ids = {initial: 0}
    queue = [initial]
    rows: list[tuple[int, ...]] = []
    accept: set[int] = set()
    for i, state in enumerate(queue):
        if accepting(state):
            accept.add(i)
        row = [DEAD] * 256
        for b in alphabet:
            nxt = step(state, b)
            if nxt is None:
                continue
            j = ids.get(nxt)
            if j is None:
                if len(queue) >= MAX_STATES:
                    raise UnsupportedGrammarError(f"the automaton for {_short(pattern)} needs more than {MAX_STATES} states")
                j = ids[nxt] = len(queue)
                queue.append(nxt)
            row[b] = j
        rows.append(tuple(row))
    return trimmed(rows, accept, pattern)


def trimmed(rows: list[tuple[int, ...]], accepting: set[int], pattern: str, initial: int = 0) -> ByteDFA | None:
    """Keep the states reachable from ``initial`` that reach ``accepting``, numbered breadth-first
    (by byte order) from the initial state 0; None if the language is empty."""
    reverse: list[list[int]] = [[] for _ in rows]
    for s, row in enumerate(rows):
        for t in set(row):
            if t >= 0:
                reverse[t].append(s)
    live = set(accepting)
    stack = list(accepting)
    while stack:
        for p in reverse[stack.pop()]:
            if p not in live:
                live.add(p)
                stack.append(p)
    if initial not in live:
        return None
    order = [initial]
    index = {initial: 0}
    for s in order:
        for t in rows[s]:
            if t in live and t not in index:
                index[t] = len(order)
                order.append(t)
    mapping = [DEAD] * (len(rows) + 1)  # the last slot answers for DEAD (-1)
    for s, i in index.items():
        mapping[s] = i
    table = tuple(tuple(map(mapping.__getitem__, rows[s])) for s in order)
    return ByteDFA(table, frozenset(index[s] for s in order if s in accepting), 0, pattern)


def _product(a: ByteDFA, b: ByteDFA, keep: Callable[[bool, bool], bool], pattern: str, *, either: bool) -> ByteDFA | None:
    """Product automaton accepting where ``keep(a accepts, b accepts)``. With ``either`` a pair
    lives on while one side does (union, difference); without, both must (intersection)."""
    ids = {(a.initial, b.initial): 0}
    queue = [(a.initial, b.initial)]
    rows: list[tuple[int, ...]] = []
    accepting: set[int] = set()
    dead_a, dead_b = (DEAD,) * 256, (DEAD,) * 256
    for i, (x, y) in enumerate(queue):
        if keep(x >= 0 and x in a.accepting, y >= 0 and y in b.accepting):
            accepting.add(i)
        row = []
        ra = a.table[x] if x >= 0 else dead_a
        rb = b.table[y] if y >= 0 else dead_b
        for tx, ty in zip(ra, rb):
            if (tx < 0 and ty < 0) or (not either and (tx < 0 or ty < 0)):
                row.append(DEAD)
                continue
            j = ids.get((tx, ty))
            if j is None:
                if len(queue) >= MAX_STATES:
                    raise UnsupportedGrammarError(f"the automaton for {_short(pattern)} needs more than {MAX_STATES} states")
                j = ids[tx, ty] = len(queue)
                queue.append((tx, ty))
            row.append(j)
        rows.append(tuple(row))
    return trimmed(rows, accepting, pattern)


def intersect(a: ByteDFA | None, b: ByteDFA | None) -> ByteDFA | None:
    """L(a) ∩ L(b) (None: empty)."""
    if a is None or b is None:
        return None
    return _product(a, b, lambda x, y: x and y, f"(?={a.pattern}){b.pattern}", either=False)


def difference(a: ByteDFA | None, b: ByteDFA | None) -> ByteDFA | None:
    """L(a) ∖ L(b) (None: empty)."""
    if a is None or b is None:
        return a
    return _product(a, b, lambda x, y: x and not y, f"(?!(?:{b.pattern})$){a.pattern}", either=True)


def union(a: ByteDFA | None, b: ByteDFA | None) -> ByteDFA | None:
    """L(a) ∪ L(b) (None: empty)."""
    if a is None or b is None:
        return b if a is None else a
    return _product(a, b, lambda x, y: x or y, f"{a.pattern}|{b.pattern}", either=True)


def followed_by(a: ByteDFA, suffix: ByteDFA) -> ByteDFA:
    """L(a)·L(suffix), for a prefix-free ``a`` (its accepting states are dead ends, as those of a
    JSON string or literal are)."""
    offset = a.num_states
    start = suffix.table[suffix.initial]
    rows: list[tuple[int, ...]] = []
    accepting = {offset + q for q in suffix.accepting}
    for q, row in enumerate(a.table):
        if q in a.accepting:
            if any(t != DEAD for t in row):
                raise ValueError("followed_by needs a prefix-free first automaton")
            rows.append(tuple(offset + t if t >= 0 else DEAD for t in start))
            if suffix.initial in suffix.accepting:
                accepting.add(q)
        else:
            rows.append(row)
    rows += [tuple(offset + t if t >= 0 else DEAD for t in row) for row in suffix.table]
    out = trimmed(rows, accepting, f"(?:{a.pattern}){suffix.pattern}", a.initial)
    assert out is not None  # both languages are non-empty
    return out


def literal_dfa(texts: Iterable[bytes], pattern: str | None = None) -> ByteDFA | None:
    """A trie of the byte strings ``texts`` (None if there are none)."""
    texts = sorted(set(texts))
    rows: list[list[int]] = [[DEAD] * 256]
    ends: set[int] = set()
    for text in texts:
        s = 0
        for byte in text:
            if rows[s][byte] == DEAD:
                rows[s][byte] = len(rows)
                rows.append([DEAD] * 256)
            s = rows[s][byte]
        ends.add(s)
    if pattern is None:
        pattern = "|".join(re.escape(t.decode("utf-8")) for t in texts) or "(?!)"
    return trimmed([tuple(r) for r in rows], ends, pattern)


_WS_BYTES = b" \t\n\r"


@functools.lru_cache(maxsize=256)
def spaced_dfa(*pieces: bytes | int) -> ByteDFA:
    """A sequence of literal byte strings and runs of at most n whitespace characters (an int n in
    ``pieces``): ``spaced_dfa(16, b",", 16)`` is ``[ \\t\\n\\r]{0,16},[ \\t\\n\\r]{0,16}``. Literals
    hold no whitespace and at least one literal is non-empty."""
    flat: list[tuple[str, int]] = []  # ("ws", n) or ("byte", b)
    for piece in pieces:
        if isinstance(piece, int):
            if piece:
                flat.append(("ws", piece))
        else:
            flat += [("byte", b) for b in piece]

    def step(state: tuple[int, int], byte: int) -> tuple[int, int] | None:
        i, k = state  # at piece i, k whitespace read in it
        while i < len(flat):
            kind, arg = flat[i]
            if kind == "byte":
                return (i + 1, 0) if byte == arg else None
            if byte in _WS_BYTES and k < arg:
                return (i, k + 1)
            i, k = i + 1, 0  # the run may end here
        return None

    def accepting(state: tuple[int, int]) -> bool:
        return all(kind == "ws" for kind, _ in flat[state[0] :])

    ws = "[ \\t\\n\\r]"
    pattern = "".join(f"{ws}{{0,{p}}}" if isinstance(p, int) else re.escape(p.decode()) for p in pieces if p)
    dfa = explore((0, 0), step, accepting, set(_WS_BYTES) | {b for p in pieces if isinstance(p, bytes) for b in p}, pattern)
    assert dfa is not None  # the literals alone are a word
    return dfa


@functools.cache
def _char_dfa() -> ByteDFA:
    return compile_regex(CHAR, whole_input=True)


@functools.lru_cache(maxsize=256)
def counted_string_dfa(low: int, high: int | None) -> ByteDFA:
    """``"`` CHAR{low,high} ``"``, built directly in O(bound × |CHAR|): state (k, q) is "k characters
    read, and q within the next one". CHAR's automaton is minimal and prefix-free (its accepting
    state is a dead end), so the result is minimal as well (the tests compare it with the regex
    compiler's minimisation for small bounds)."""
    unit = _char_dfa()
    ends = set(unit.accepting)
    inner = [q for q in range(unit.num_states) if q not in ends]
    index = {q: i for i, q in enumerate(inner)}
    top = high if high is not None else low  # the count saturates at `top` when unbounded
    width = len(inner)
    final = 1 + (top + 1) * width

    def sid(k: int, q: int) -> int:
        if high is None and k == top and top and q != unit.initial:
            k = top - 1  # unbounded: inside a character after top-1 or after top, the same state
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
    dfa = trimmed(rows, {final}, pattern)
    assert dfa is not None  # low <= top characters and the closing quote
    return dfa


def _short(pattern: str) -> str:
    return repr(pattern) if len(pattern) <= 80 else repr(pattern[:77] + "...")
