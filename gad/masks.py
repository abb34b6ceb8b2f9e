"""Run-time token masks — and `explain`, the answer to "why is this token (not) allowed?".

A mask is the OR, over the live lexemes (terminal T, origin Earley set, DFA state q) of the parser
state, of the tokens T accepts from q in every context (`gad.entries.LexemeEntry.accepted`), plus
the context-dependent tokens the parser confirms: T may end inside the token, and its rest must be
read from the Earley set that ending T at the origin yields. A rest that stays inside one expected
terminal (or inside one expected after an expected one) is decided by array lookups over all of a
lexeme's pairs at once; longer chains go through the parser (`suffix_accepted`).

Confirmations are memoised in a `SetMemo` on the lexeme's origin set. Earley sets are immutable,
so an answer stays valid for every matcher and fork that reaches the same set: a long string or
number costs one bitset OR per token. Concurrent matchers on one compiled grammar may fill the
same memo; every value is a deterministic function of the set, so a race only repeats work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gad.bitmask import bitmask_words, set_bits
from gad.entries import LexemeEntry
from gad.parser.earley import EarleySet, ParserState

if TYPE_CHECKING:  # the compiled grammar is built below this module; only its type is needed
    from gad.compiler import CompiledGrammar


class SetMemo:
    """What the mask code has learnt about one Earley set S (held in ``S.memo``).

    ``expected``: ``bool[num terminals]``, the terminals that may start at S. ``after[t]``: the set
    once terminal t, started at S, ends (held strongly, so the suffixes of one mask share it).
    ``confirmed[(t, q)]``: the context-dependent tokens accepted for a lexeme of t started at S
    now in DFA state q — token ids (``int64``) or, when that is smaller, packed ``uint32`` words,
    as ``(is_bitset, array)``. ``suffix[data]``: whether ``data`` can be read from S.
    """

    __slots__ = ("expected", "after", "confirmed", "suffix")

    def __init__(self, num_terminals: int, expected: frozenset[int]) -> None:
        self.expected = np.zeros(num_terminals, dtype=np.bool_)
        self.expected[list(expected)] = True
        self.after: dict[int, EarleySet] = {}
        self.confirmed: dict[tuple[int, int], tuple[bool, np.ndarray]] = {}
        self.suffix: dict[bytes, bool] = {}


def set_memo(compiled: CompiledGrammar, earley_set: EarleySet) -> SetMemo:
    """The `SetMemo` of ``earley_set`` (made on first use)."""
    memo = earley_set.memo
    if memo is None:
        memo = earley_set.memo = SetMemo(len(compiled.parser.tables.terminal_names), earley_set.expected)
    return memo  # type: ignore[return-value]


def fill_bitmask(compiled: CompiledGrammar, state: ParserState, bits: np.ndarray) -> None:
    """OR into ``bits`` (``uint32[ceil(V/32)]``) every token some lexeme of ``state`` accepts.
    Changes only ``bits`` and memos."""
    store = compiled.entries
    for terminal, origin, dfa_state in state.lexemes:
        entry = store.get(terminal, dfa_state)
        np.bitwise_or(bits, entry.accepted.packed(), out=bits)
        if not entry.split_tokens.size:
            continue
        memo = set_memo(compiled, origin)
        key = (terminal, dfa_state)
        confirmed = memo.confirmed.get(key)
        if confirmed is None:
            ids = confirm_splits(compiled, entry, after(compiled, origin, terminal))
            confirmed = memo.confirmed[key] = _compact(ids, compiled.vocab_size)
        is_bitset, data = confirmed
        if is_bitset:
            np.bitwise_or(bits, data, out=bits)
        elif data.size:
            set_bits(bits, data)


def _compact(ids: np.ndarray, vocab_size: int) -> tuple[bool, np.ndarray]:
    """Token ids as ids, or as packed words when the words are fewer."""
    words = bitmask_words(vocab_size)
    if ids.size <= words:
        return False, ids
    packed = np.zeros(words, dtype=np.uint32)
    set_bits(packed, ids)
    return True, packed


def confirm_splits(compiled: CompiledGrammar, entry: LexemeEntry, after_set: EarleySet) -> np.ndarray:
    """Token ids (``int64``, ascending) of ``entry``'s context-dependent pairs accepted once the
    terminal has ended at Earley set ``after_set``: a suffix that stays inside an expected
    terminal, or inside a terminal expected after one that is, is decided by array lookups over
    all pairs at once; longer chains are resolved by `suffix_accepted`."""
    expected = set_memo(compiled, after_set).expected
    accepted = np.zeros(entry.split_tokens.shape[0], dtype=np.bool_)
    accepted[entry.inside_pairs[expected[entry.inside_terminals]]] = True
    if entry.chain_pairs.size:
        first_ok = expected[entry.chain_first]
        if first_ok.any():
            # Row F of `then`: what is expected once terminal F, started here, has ended.
            then = np.zeros((expected.shape[0], expected.shape[0]), dtype=np.bool_)
            for first in set(entry.chain_first[first_ok].tolist()):
                then[first] = set_memo(compiled, after(compiled, after_set, first)).expected
            ok = first_ok & then[entry.chain_first, entry.chain_second]
            accepted[entry.chain_pairs[ok]] = True
    to_check = np.unique(entry.deep_pairs[expected[entry.deep_terminals]])
    if to_check.size:
        token_bytes = compiled.tokenizer_info.token_bytes
        done = set(entry.split_tokens[accepted].tolist())  # a token needs one accepted split, not all
        tokens, splits = entry.split_tokens[to_check].tolist(), entry.split_at[to_check].tolist()
        for pair, token, split in zip(to_check.tolist(), tokens, splits):
            if token not in done and suffix_accepted(compiled, after_set, token_bytes[token][split:]):
                accepted[pair] = True
                done.add(token)
    ids = entry.split_tokens[accepted].astype(np.int64)
    # Pairs are sorted by token, so one comparison with the neighbour drops repeats.
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))] if ids.size > 1 else ids


def suffix_accepted(compiled: CompiledGrammar, earley_set: EarleySet, data: bytes) -> bool:
    """Whether ``data`` can be read from the terminal boundary ``earley_set``: some expected
    terminal reads all of it, or ends after k bytes and the rest is accepted from the set that
    ending it yields. Exact, memoised per set; iterative (each split consumes at least a byte,
    so the search is a DAG over suffixes); the only parser work is one Earley completion per
    (set, terminal), itself memoised."""
    found = set_memo(compiled, earley_set).suffix.get(data)
    if found is not None:
        return found
    # Frames: [set, data, the expected splits still to try (None: not read yet), next index].
    stack: list[list] = [[earley_set, data, None, 0]]
    while stack:
        frame = stack[-1]
        current, rest, splits, _ = frame
        memo = set_memo(compiled, current)
        if splits is None:
            inside, all_splits = compiled.reading(rest)
            if not inside.isdisjoint(current.expected):
                memo.suffix[rest] = True
                stack.pop()
                continue
            splits = frame[2] = [(t, k) for t, k in all_splits if t in current.expected]
        verdict: bool | None = False
        while frame[3] < len(splits):
            terminal, k = splits[frame[3]]
            child_set = after(compiled, current, terminal)
            child = set_memo(compiled, child_set).suffix.get(rest[k:])
            if child is None:
                stack.append([child_set, rest[k:], None, 0])
                verdict = None
                break
            if child:
                verdict = True
                break
            frame[3] += 1
        if verdict is not None:
            memo.suffix[rest] = verdict
            stack.pop()
    return set_memo(compiled, earley_set).suffix[data]


def after(compiled: CompiledGrammar, earley_set: EarleySet, terminal: int) -> EarleySet:
    """The set once ``terminal`` started at ``earley_set`` ends, held by ``earley_set``'s memo
    (the parser's own goto cache is weak) so that the suffixes of one mask share it."""
    memo = set_memo(compiled, earley_set)
    found = memo.after.get(terminal)
    if found is None:
        found = memo.after[terminal] = compiled.parser.scan_terminal(terminal, earley_set)
    return found


# -- explain ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why token ``token_id`` is allowed (or not) in a matcher's current state.

    ``allowed`` is the token's bit in the matcher's mask; ``reasons`` has one line per live lexeme
    (and for EOS, special tokens and a terminated matcher), in words.
    """

    token_id: int
    token_bytes: bytes
    allowed: bool
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "not allowed"
        head = f"token {self.token_id} ({self.token_bytes!r}) is {verdict}:"
        return "\n".join([head, *(f"  - {line}" for line in self.reasons)])


def explain_token(compiled: CompiledGrammar, state: ParserState, token_id: int, *, eos: bool,
                  special: bool, terminated: bool, allowed: bool, accepting: bool) -> Explanation:
    """The `Explanation` of ``token_id`` in parser ``state`` (see `gad.explain`). Changes only memos."""
    data = compiled.tokenizer_info.token_bytes[token_id]
    if terminated:
        return Explanation(token_id, data, allowed, ("the matcher has accepted EOS: nothing may follow",))
    if eos:
        why = "the text so far is a complete sentence" if accepting else "the text so far is not a complete sentence"
        return Explanation(token_id, data, allowed, (f"EOS: {why}",))
    if special:
        return Explanation(token_id, data, allowed, ("a special token: never grammar text",))
    tables = compiled.parser.tables
    reasons = []
    for terminal, origin, dfa_state in state.lexemes:
        name = tables.terminal_names[terminal] + (" (%ignore)" if terminal in tables.ignore_ids else "")
        reasons.append(_explain_lexeme(compiled, terminal, origin, dfa_state, name, token_id))
    if not reasons:
        reasons.append("no terminal is live here")
    return Explanation(token_id, data, allowed, tuple(reasons))


def _explain_lexeme(compiled: CompiledGrammar, terminal: int, origin: EarleySet, dfa_state: int,
                    name: str, token_id: int) -> str:
    data = compiled.tokenizer_info.token_bytes[token_id]
    tables = compiled.parser.tables
    table, accepting = tables.dfa_tables[terminal], tables.dfa_accepting[terminal]
    entry = compiled.entries.get(terminal, dfa_state)
    state = dfa_state
    ends: list[int] = []
    died_at = None
    for position, byte in enumerate(data):
        state = table[state][byte]
        if state < 0:
            died_at = position
            break
        if accepting[state] and position + 1 < len(data):
            ends.append(position + 1)
    if died_at is None:
        stored = "" if token_id in entry.accepted else " (but the precomputed store disagrees: please report)"
        return f"{name} reads all of it and can go on: allowed in every context{stored}"
    byte_text = repr(bytes([data[died_at]]))
    if not ends:
        return f"{name} cannot read byte {died_at} ({byte_text}) here and cannot end before it: rejected by this lexeme"
    after_set = after(compiled, origin, terminal)
    expected = sorted(tables.terminal_names[t] for t in after_set.expected)
    shown = ", ".join(expected[:8]) + (f", … ({len(expected)} terminals)" if len(expected) > 8 else "")
    parts = []
    for k in ends:
        rest = data[k:]
        if suffix_accepted(compiled, after_set, rest):
            readers = [tables.terminal_names[t] for t in sorted(after_set.expected) if _reads_some(tables, t, rest)]
            parts.append(f"{name} may end after {k} byte(s); the rest {rest!r} is read by what may follow "
                         f"({', '.join(readers[:8])}): allowed")
            return "; ".join(parts)
        parts.append(f"{name} may end after {k} byte(s), but nothing expected after it ({shown}) can read the rest {rest!r}")
    return "; ".join(parts) + f"; and {name} itself cannot read byte {died_at} ({byte_text}): rejected by this lexeme"


def _reads_some(tables, terminal: int, data: bytes) -> bool:
    """Whether ``terminal``'s run from its start survives at least the first byte of ``data``."""
    return tables.dfa_tables[terminal][tables.dfa_initial[terminal]][data[0]] >= 0
