"""Byte-level deterministic automata: the `ByteDFA` every terminal holds, its canonical minimal
form, and the budgets that bound every automaton construction.

Canonical form: trimmed (every state reachable from the initial state and able to reach
acceptance), minimal, and numbered breadth-first from the initial state 0 (successors in byte
order). Two automata with the same language have the same canonical table, so a saved grammar can
be checked against its recompiled automata.

Minimisation is Valmari and Lehtinen's partition refinement for partial DFAs (Valmari, "Fast brief
practical DFA minimization", IPL 2012), O(m log n) for m defined transitions, run over *byte
classes* (bytes that every state maps alike) rather than 256 symbols.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gad.errors import ConfigurationError, EmptyLanguageError, UnsupportedGrammarError

__all__ = ["DEAD", "AutomatonBudget", "ByteDFA", "DEFAULT_BUDGET", "minimal_rows"]

DEAD = -1
"""The dead state: no continuation of the bytes read so far can match."""


@dataclass(frozen=True)
class AutomatonBudget:
    """Limits on one automaton construction, checked *as states are made*, so a construction that
    would exceed one stops early with an `UnsupportedGrammarError` naming it.

    ``nfa_states``: states of the regex's NFA (a counted repetition ``x{m,n}`` copies ``x`` n
    times). ``dfa_states``: states of the code-point DFA (subset construction). ``byte_states``:
    states of the byte-level DFA (each code-point state becomes a tree of UTF-8 continuation
    states; a table row costs about 2 KB). ``work``: NFA states visited during the subset
    construction, which bounds its time and memory.
    """

    nfa_states: int = 250_000
    dfa_states: int = 50_000
    byte_states: int = 50_000
    work: int = 2_000_000

    def __post_init__(self) -> None:
        for name in ("nfa_states", "dfa_states", "byte_states", "work"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"`{name}` has to be a positive int, but is {value!r}")

    def exceeded(self, what: str, name: str, limit: int) -> UnsupportedGrammarError:
        """The error for ``what`` (e.g. "regex 'a{9999}'") needing more than ``limit`` of ``name``."""
        return UnsupportedGrammarError(
            f"{what} needs more than {limit:,} {_BUDGET_WORDS[name]} (budget `{name}` of "
            f"gad.grammar.regex.AutomatonBudget; compile_regex(..., budget=AutomatonBudget({name}=...)) raises it)"
        )


_BUDGET_WORDS = {
    "nfa_states": "NFA states",
    "dfa_states": "DFA states",
    "byte_states": "byte-level DFA states",
    "work": "steps of subset construction",
}

DEFAULT_BUDGET = AutomatonBudget()
"""The budget used when none is given (README, "Grammar format", **Budgets**)."""


@dataclass(frozen=True, eq=False, repr=False)
class ByteDFA:
    """A trimmed deterministic automaton over bytes.

    ``table[state][byte]`` is the next state, or ``DEAD`` (-1). Every row has 256 entries. Every
    state in ``range(num_states)`` is live: some byte string leads from it to a state in
    ``accepting``. ``pattern`` is a text that identifies the language (the regex it was compiled
    from, or a canonical description); caches key on it. Equality and hashing are by identity
    (tables can be large); `compile_regex` caches, so the same pattern gives the same object.
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

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Sequence[int]],
        accepting: Iterable[int],
        initial: int = 0,
        *,
        pattern: str = "",
    ) -> ByteDFA:
        """The canonical (trimmed, minimal, breadth-first numbered) automaton of any byte DFA.

        ``rows[s][b]`` is the successor of state s on byte b, or ``DEAD``; states need not be
        reachable or live. Raises `EmptyLanguageError` if no string is accepted.
        """
        out = minimal_rows(rows, accepting, initial)
        if out is None:
            raise EmptyLanguageError(f"{pattern or 'the automaton'} matches no string")
        return cls(out[0], out[1], 0, pattern)

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


# --------------------------------------------------------------------------------------------
# Canonical minimal form


def minimal_rows(
    rows: Sequence[Sequence[int]],
    accepting: Iterable[int],
    initial: int,
    labels: Sequence[object] | None = None,
) -> tuple[tuple[tuple[int, ...], ...], frozenset[int]] | None:
    """Trim, minimise and renumber (initial → 0, breadth-first). None if the language is empty.

    ``labels`` (one per state, optional): states with different labels are never merged.
    """
    out = minimal_rows_labelled(rows, accepting, initial, labels)
    return None if out is None else (out[0], out[1])


def minimal_rows_labelled(
    rows: Sequence[Sequence[int]],
    accepting: Iterable[int],
    initial: int,
    labels: Sequence[object] | None = None,
) -> tuple[tuple[tuple[int, ...], ...], frozenset[int], list[object]] | None:
    """`minimal_rows`, also returning the label of every state of the result (states are merged
    only when their labels are equal)."""
    trimmed = _trim(rows, set(accepting), initial)
    if trimmed is None:
        return None
    order, table, compact = trimmed  # old state ids in BFS order; tables over new ids
    n = len(order)
    acc_set = set(accepting)
    keys = [(s in acc_set, None if labels is None else labels[s]) for s in order]
    block = _refine(compact, keys)
    # Quotient: one representative per block, targets mapped to blocks (index -1 reads DEAD).
    reps: dict[int, int] = {}
    for s in range(n):
        reps.setdefault(block[s], s)
    index = {b: i for i, b in enumerate(reps)}
    to_new = np.full(len(block) + 1, DEAD, dtype=np.int64)
    for s, b in enumerate(block):
        to_new[s] = index[b]
    quotient = to_new[table[list(reps.values())]]
    qacc = {index[block[s]] for s in range(n) if keys[s][0]}
    qlabels = [keys[r][1] for r in reps.values()]
    again = _trim(quotient, qacc, index[block[0]])
    if again is None:  # pragma: no cover - minimisation preserves the language
        raise AssertionError("minimisation emptied a non-empty language")
    order2, table2, _ = again
    out_rows = tuple(map(tuple, table2.tolist()))
    return out_rows, frozenset(i for i, s in enumerate(order2) if s in qacc), [qlabels[s] for s in order2]


def canonical_rows(
    rows: Sequence[Sequence[int]],
    accepting: Iterable[int],
    initial: int,
    labels: Sequence[object] | None = None,
) -> tuple[tuple[tuple[int, ...], ...], frozenset[int], list[object]] | None:
    """Trim and renumber breadth-first, *without* minimising: for automata already minimal up to
    unreachable or dead states (the UTF-8 expansion of a minimal code-point DFA)."""
    acc = set(accepting)
    trimmed = _trim(rows, acc, initial)
    if trimmed is None:
        return None
    order, table, _ = trimmed
    labels_out = [None if labels is None else labels[s] for s in order]
    return (tuple(map(tuple, table.tolist())), frozenset(i for i, s in enumerate(order) if s in acc), labels_out)


def _trim(
    rows: Sequence[Sequence[int]] | np.ndarray, accepting: set[int], initial: int
) -> tuple[list[int], np.ndarray, np.ndarray] | None:
    """The states reachable from ``initial`` that can reach ``accepting``, in breadth-first order
    (successors in byte order); their table renumbered in that order (``int64[n, 256]``, DEAD =
    -1); and that table's columns for one representative byte per byte class."""
    arr = rows if isinstance(rows, np.ndarray) else np.array(rows, dtype=np.int64).reshape(-1, 256)
    total = arr.shape[0]
    classes = _byte_classes(arr)
    compact = arr[:, classes]  # representatives in increasing byte order
    src, col = np.nonzero(compact >= 0)
    dst = compact[src, col]
    # Distinct (source, target) edges, each source's targets in order of their first byte.
    _, firsts = np.unique(src * total + dst, return_index=True)
    firsts.sort()
    e_src, e_dst = src[firsts], dst[firsts]
    bounds = np.searchsorted(e_src, np.arange(total + 1)).tolist()
    succ = e_dst.tolist()
    order = [initial]
    seen = {initial}
    for s in order:
        for t in succ[bounds[s] : bounds[s + 1]]:
            if t not in seen:
                seen.add(t)
                order.append(t)
    reverse: dict[int, list[int]] = {}
    for s in order:
        for t in succ[bounds[s] : bounds[s + 1]]:
            reverse.setdefault(t, []).append(s)
    live = {s for s in order if s in accepting}
    stack = list(live)
    while stack:
        for p in reverse.get(stack.pop(), ()):
            if p not in live:
                live.add(p)
                stack.append(p)
    if initial not in live:
        return None
    new_order = [initial]
    index = {initial: 0}
    for s in new_order:
        for t in succ[bounds[s] : bounds[s + 1]]:
            if t in live and t not in index:
                index[t] = len(new_order)
                new_order.append(t)
    mapping = np.full(total + 1, DEAD, dtype=np.int64)  # the last slot answers for index -1
    mapping[list(index)] = list(index.values())
    return new_order, mapping[arr[new_order]], mapping[compact[new_order]]


def _byte_classes(table: np.ndarray) -> np.ndarray:
    """One representative byte per class of bytes whose columns in ``table`` are equal: columns
    are grouped by a random linear hash, and the grouping is verified exactly."""
    weights = np.random.default_rng(0x9AD).integers(1, 2**62, size=table.shape[0], dtype=np.int64)
    with np.errstate(over="ignore"):
        hashes = weights @ (table + 1)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    if not np.array_equal(table[:, first[inverse]], table):  # pragma: no cover - a hash collision
        first = np.unique(table.T, axis=0, return_index=True)[1]
    return np.sort(first)


def _refine(compact: np.ndarray, keys: list[object]) -> list[int]:
    """`refine` for a table ``compact`` (``int[n, k]``: one column per byte class, DEAD = -1)."""
    tails, labels = np.nonzero(compact >= 0)
    return refine(compact.shape[0], tails.tolist(), labels.tolist(), compact[tails, labels].tolist(), keys)


def refine(n: int, tails: list[int], labels: list[int], heads: list[int], keys: list[object]) -> list[int]:
    """Coarsest partition of states ``0..n-1`` that respects ``keys`` and the transitions
    ``tails[t] --labels[t]--> heads[t]`` (a partial deterministic function): Valmari–Lehtinen,
    O(m log n). Returns the block of each state.

    All states must be live (trimmed), so the missing transitions (to DEAD) behave as a distinct
    sink, which the algorithm for partial DFAs handles without materialising it.
    """
    m = len(tails)
    labels_np = np.asarray(labels, dtype=np.int64)

    # Refinable partition of states (blocks): E elements, L location, S set, F/P first/past.
    bE = list(range(n))
    # Initial blocks by key, in order of first appearance (state 0's key is block 0).
    key_block: dict[object, int] = {}
    for k in keys:
        key_block.setdefault(k, len(key_block))
    bS = [key_block[k] for k in keys]
    bE.sort(key=bS.__getitem__)
    bL = [0] * n
    for i, e in enumerate(bE):
        bL[e] = i
    nb = len(key_block)
    bF = [0] * n
    bP = [0] * n
    for i, e in enumerate(bE):
        s = bS[e]
        if i == 0 or bS[bE[i - 1]] != s:
            bF[s] = i
        bP[s] = i + 1
    bM = [0] * n
    bZ = [nb]

    # Cords: transitions grouped by label.
    order_t = np.argsort(labels_np, kind="stable").tolist() if m else []
    cE = order_t
    cL = [0] * m
    cS = [0] * m
    cF = [0] * (m + 1)
    cP = [0] * (m + 1)
    cM = [0] * (m + 1)
    cz = 0
    if m:
        lab = labels
        current = lab[cE[0]]
        cF[0] = 0
        for i, t in enumerate(cE):
            if lab[t] != current:
                current = lab[t]
                cP[cz] = i
                cz += 1
                cF[cz] = i
            cS[t] = cz
            cL[t] = i
        cP[cz] = m
        cz += 1
    cZ = [cz]

    # Incoming transitions of every state (by head).
    adj_start = [0] * (n + 1)
    for h in heads:
        adj_start[h + 1] += 1
    for q in range(n):
        adj_start[q + 1] += adj_start[q]
    adj = [0] * m
    fill = adj_start[:]
    for t, h in enumerate(heads):
        adj[fill[h]] = t
        fill[h] += 1

    def make(E, L, S, F, P, M, Z):  # noqa: N803 - the paper's names
        touched: list[int] = []

        def mark(e: int) -> None:
            s = S[e]
            i = L[e]
            j = F[s] + M[s]
            if i < j:  # already marked
                return
            E[i] = E[j]
            L[E[i]] = i
            E[j] = e
            L[e] = j
            if M[s] == 0:
                touched.append(s)
            M[s] += 1

        def split() -> None:
            while touched:
                s = touched.pop()
                j = F[s] + M[s]
                if j == P[s]:
                    M[s] = 0
                    continue
                z = Z[0]
                if M[s] <= P[s] - j:
                    F[z] = F[s]
                    P[z] = F[s] = j
                else:
                    P[z] = P[s]
                    F[z] = P[s] = j
                for i in range(F[z], P[z]):
                    S[E[i]] = z
                M[s] = M[z] = 0
                Z[0] = z + 1

        return mark, split

    b_mark, b_split = make(bE, bL, bS, bF, bP, bM, bZ)
    c_mark, c_split = make(cE, cL, cS, cF, cP, cM, cZ)
    b, c = 1, 0
    while c < cZ[0]:
        for i in range(cF[c], cP[c]):
            b_mark(tails[cE[i]])
        b_split()
        c += 1
        while b < bZ[0]:
            for i in range(bF[b], bP[b]):
                q = bE[i]
                for j in range(adj_start[q], adj_start[q + 1]):
                    c_mark(adj[j])
            c_split()
            b += 1
    return bS
