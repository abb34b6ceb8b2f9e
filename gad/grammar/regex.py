"""Regular expressions → deterministic automata over UTF-8 **bytes**.

Language-model tokens are byte strings and may end inside a UTF-8 character, so every terminal is
a DFA over the 256 byte values. The semantics are Python ``re``'s for ``str`` patterns -- Unicode
``\\d \\w \\s`` (ASCII under ``a``), ``re``'s own case folding under ``i`` (the Kelvin sign K
matches ``k``), ``.`` without ``\\n`` unless ``s`` -- in one of two readings:

* `compile_regex`: the **full matches**, ``{w : re.fullmatch(p, w)}``;
* `compile_terminal`: the **matches re.match returns**, ``{w : re.match(p, w) spans all of w}``,
  the strings lark's lexer can take as one token of that terminal. Lazy quantifiers and
  alternation order matter here: ``".*?"`` does not contain ``"a"b"``, ``a|ab`` does not contain
  ``ab``. A lookahead at the end of such a terminal looks at the text after it: the result says,
  for each end state, what that text must be (`TerminalDFA.follow`).

Invalid UTF-8 (overlongs ``C0 C1 E0 80-9F F0 80-8F``, surrogates ``ED A0-BF``, > U+10FFFF
``F4 90-BF F5-FF``, stray continuation bytes) is never accepted, and every DFA is in the canonical
form of `gad.grammar.dfa` (trimmed, minimal, breadth-first numbered): a prefix walks to a live
state exactly when it can still be completed. Token masks rely on that exactness.

Pipeline: ``re.compile`` validates and ``re``'s own parser parses (lark imports it too); an NFA
that keeps ``re``'s priorities (`gad.grammar.nfa`); a subset construction over code-point
intervals, leftmost-first or unordered (`gad.grammar.determinize`); UTF-8 bytes; minimisation
(`gad.grammar.dfa`). Every stage counts what it makes against an `AutomatonBudget`.

Why not interegular (the design's suggestion): 0.3.3 cannot compile lark's own
``common.ESCAPED_STRING`` ``".*?(?<!\\\\)(\\\\\\\\)*?"`` (no lookbehinds), rejects ``\\uXXXX``, the
``x a u m`` flags and ``^ $``; its ``\\d \\w \\s`` are ASCII-only and its ``(?i)`` misses the Kelvin
sign, so it disagrees with ``re`` -- which is what lark's lexer runs.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gad.errors import ConfigurationError, EmptyLanguageError, GrammarError, UnsupportedGrammarError
from gad.grammar.determinize import CharDFA, determinize, minimize, to_bytes
from gad.grammar.dfa import DEAD, DEFAULT_BUDGET, AutomatonBudget, ByteDFA, canonical_rows, minimal_rows
from gad.grammar.nfa import parse

__all__ = [
    "AutomatonBudget",
    "ByteDFA",
    "DEAD",
    "TerminalDFA",
    "compile_literal",
    "compile_regex",
    "compile_terminal",
    "content_id",
]

_finish = minimal_rows
"""Deprecated alias of `gad.grammar.dfa.minimal_rows` (use `ByteDFA.from_rows`); kept until
`gad/sql.py` and `gad/grammar/json_tokens.py` move to the public API."""

_FLAG_BITS = {"i": re.I, "s": re.S, "m": re.M, "x": re.X, "u": re.U, "a": re.A}


def content_id(table: tuple[tuple[int, ...], ...], accepting: frozenset[int]) -> str:
    """A short hash of a canonical automaton: equal for equal languages (canonical tables are
    unique), so it can stand in a `ByteDFA.pattern` for automata built by operations."""
    digest = hashlib.sha256(np.asarray(table, dtype=np.int32).tobytes())
    digest.update(np.asarray(sorted(accepting), dtype=np.int32).tobytes())
    return digest.hexdigest()[:16]


def derived_pattern(description: str, table: tuple[tuple[int, ...], ...], accepting: frozenset[int]) -> str:
    """The ``pattern`` of an automaton that is not a plain regex: a NUL-prefixed description and
    its `content_id`, so it can never collide with the pattern of a compiled regex."""
    return f"\x00{description} #{content_id(table, accepting)}"


@dataclass(frozen=True, eq=False)
class TerminalDFA:
    """What lark's lexer makes of a terminal regex (`compile_terminal`).

    ``dfa`` accepts every string ``re.match`` can return as the whole match in *some* context.
    ``follow[q]``, for the accepting states q whose match owes a lookahead past its end, is the
    language the text after the terminal must be in (a `ByteDFA` over the rest of the input);
    a match ending in any other accepting state stands whatever follows.
    """

    dfa: ByteDFA
    follow: Mapping[int, ByteDFA] = field(default_factory=dict)


def _check_args(pattern: object, flags: object) -> None:
    if not isinstance(pattern, str):
        raise ConfigurationError(f"`pattern` has to be a str, but is {type(pattern).__name__}")
    if not isinstance(flags, str):
        raise ConfigurationError(f"`flags` has to be a str of letters, but is {type(flags).__name__}")


def _budget(budget: AutomatonBudget | None) -> AutomatonBudget:
    if budget is None:
        return DEFAULT_BUDGET
    if not isinstance(budget, AutomatonBudget):
        raise ConfigurationError(f"`budget` has to be a gad.AutomatonBudget, but is {type(budget).__name__}")
    return budget


def compile_regex(
    pattern: str,
    *,
    flags: str = "",
    name: str | None = None,
    whole_input: bool = False,
    budget: AutomatonBudget | None = None,
) -> ByteDFA:
    """Compile a Python regex (``str`` syntax) to the minimal `ByteDFA` of its **full matches**.

    Args:
        pattern: the regex, matched against the whole string (``re.fullmatch`` semantics).
        flags: Python flag letters as lark stores them: ``i`` (ignore case), ``s`` (dot matches
            newline), ``m`` (multiline anchors), ``x`` (verbose), ``u`` (Unicode, the default) and
            ``a`` (ASCII ``\\d \\w \\s`` and case folding). ``L`` is rejected, as ``re`` does for str.
        name: the terminal's name, put in front of error messages.
        whole_input: the regex describes the entire input (as for ``Grammar.from_regex``), so the
            edges of a match are the edges of the input and ``^``/``$``/lookarounds there are
            compiled with ``re.fullmatch`` semantics. Leave it False for a piece of a larger
            text: there an assertion whose answer depends on the text before or after the match
            is rejected; assertions decided inside every match (lark's ``ESCAPED_STRING``:
            ``(?<!\\\\)`` after at least ``"``) are compiled either way, anywhere in the regex.
        budget: limits on the automata built (`AutomatonBudget`; defaults: `DEFAULT_BUDGET`).

    Raises:
        GrammarError: the pattern is not a valid regex.
        UnsupportedGrammarError: a construct cannot be compiled to a finite automaton (back
            references, conditionals, atomic groups and possessive quantifiers, lookarounds
            inside lookarounds, and, unless ``whole_input``, assertions that look past the edges
            of the match) or the automaton would exceed the budget; the message names the
            construct or the budget, and the pattern.
        EmptyLanguageError: no UTF-8 string matches the pattern.

    Results are cached by ``(pattern, flags, whole_input, budget)``.
    """
    _check_args(pattern, flags)
    try:
        return _compile_cached(pattern, "".join(sorted(set(flags))), bool(whole_input), _budget(budget))
    except GrammarError as exc:
        if name is None:
            raise
        raise type(exc)(f"terminal {name}: {exc.message}") from None


def compile_terminal(
    pattern: str, *, flags: str = "", name: str | None = None, budget: AutomatonBudget | None = None
) -> TerminalDFA:
    """Compile a regex the way lark's lexer reads a terminal: its language is ``{w : re.match(
    pattern, w) spans all of w}`` (leftmost-first, with ``re``'s priorities), and a lookahead at
    its end constrains the text that follows (`TerminalDFA.follow`). Arguments and errors as for
    `compile_regex` (a lookbehind that can look before the start is still refused)."""
    _check_args(pattern, flags)
    try:
        return _compile_terminal_cached(pattern, "".join(sorted(set(flags))), _budget(budget))
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
    try:
        pattern = re.escape(data.decode("utf-8"))
    except UnicodeDecodeError:
        pattern = f"\x00bytes {data.hex()}"
    return ByteDFA(tuple(rows), frozenset({len(data)}), 0, pattern)


def _re_flags(pattern: str, flags: str) -> int:
    bits = 0
    for letter in flags:
        if letter not in _FLAG_BITS:
            why = "str patterns cannot use it" if letter == "L" else "it is not a Python regex flag"
            raise UnsupportedGrammarError(f"regex flag {letter!r} is not supported ({why}): {pattern!r}")
        bits |= _FLAG_BITS[letter]
    try:
        re.compile(pattern, bits)  # the reference's own validation: reject what `re` rejects
    except (re.error, OverflowError, ValueError, RecursionError) as exc:
        raise GrammarError(f"invalid regex {pattern!r}: {exc}") from None
    return bits


def _code_point_dfa(pattern: str, flags: str, *, ordered: bool, whole_input: bool, budget: AutomatonBudget) -> CharDFA:
    bits = _re_flags(pattern, flags)
    what = f"regex {pattern!r}"
    try:
        regex = parse(pattern, bits, budget, what)
        return determinize(regex, ordered=ordered, whole_input=whole_input, budget=budget, what=what)
    except RecursionError:
        raise UnsupportedGrammarError(f"regex {pattern!r} is nested too deeply") from None
    except UnsupportedGrammarError as exc:
        if repr(pattern) in exc.message:
            raise
        raise UnsupportedGrammarError(f"{exc.message} (regex {pattern!r})") from None


@functools.lru_cache(maxsize=2048)
def _compile_cached(pattern: str, flags: str, whole_input: bool, budget: AutomatonBudget) -> ByteDFA:
    cdfa = _code_point_dfa(pattern, flags, ordered=False, whole_input=whole_input, budget=budget)
    small = minimize(cdfa, [None] * len(cdfa.segs))
    rows = to_bytes(small, budget, f"regex {pattern!r}")
    out = canonical_rows(rows, small.accepting, 0)
    if out is None:
        raise EmptyLanguageError(f"regex {pattern!r} matches no string (that has a UTF-8 encoding)")
    if flags:
        return ByteDFA(out[0], out[1], 0, derived_pattern(f"/{pattern}/{flags}", out[0], out[1]))
    return ByteDFA(out[0], out[1], 0, pattern)


@functools.lru_cache(maxsize=2048)
def _compile_terminal_cached(pattern: str, flags: str, budget: AutomatonBudget) -> TerminalDFA:
    what = f"regex {pattern!r}"
    cdfa = _code_point_dfa(pattern, flags, ordered=True, whole_input=False, budget=budget)
    follows: dict[tuple, ByteDFA] = {}
    keys: list[object] = []
    for state in range(len(cdfa.segs)):
        follow = cdfa.labels.get(state)
        if follow is None:
            keys.append(None)
            continue
        dfa = _follow_dfa(follow, budget, what)  # type: ignore[arg-type]
        key = dfa.table + (tuple(sorted(dfa.accepting)),)
        follows.setdefault(key, dfa)
        keys.append(key)
    small = minimize(cdfa, keys)
    rows = to_bytes(small, budget, what)
    labels = [small.labels.get(q) for q in range(len(small.segs))] + [None] * (len(rows) - len(small.segs))
    out = canonical_rows(rows, small.accepting, 0, labels)
    if out is None:
        raise EmptyLanguageError(f"regex {pattern!r} matches no string (that has a UTF-8 encoding)")
    table, accepting, state_labels = out
    follow_of = {q: follows[label] for q, label in enumerate(state_labels) if label is not None and q in accepting}
    dfa = ByteDFA(table, accepting, 0, derived_pattern(f"re.match /{pattern}/{flags}", table, accepting))
    return TerminalDFA(dfa, follow_of)


def _follow_dfa(follow: CharDFA, budget: AutomatonBudget, what: str) -> ByteDFA:
    small = minimize(follow, [None] * len(follow.segs))
    out = canonical_rows(to_bytes(small, budget, what), small.accepting, 0)
    if out is None:  # pragma: no cover - follow languages are built non-empty
        raise EmptyLanguageError(f"{what}: a lookahead at its end can never hold")
    return ByteDFA(out[0], out[1], 0, derived_pattern("follow", out[0], out[1]))
