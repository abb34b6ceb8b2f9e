"""What the engine knows about one lexeme: the tokens read by a terminal in one DFA state.

A parser state is a set of live *lexemes* (terminal T, origin Earley set, DFA state q). For one
lexeme, a token whose bytes keep T's DFA alive from q is accepted whatever the parser stack holds;
a token that kills the DFA without passing an accepting state is rejected whatever the stack
holds. Only tokens that pass an accepting state after k bytes and then leave the terminal ("split"
at k) are *context-dependent*: their remaining bytes must be read by whatever may follow T. This
is XGrammar's context-independent / context-dependent split in lexer terms.

Two levels, both built lazily on the first mask that needs them and then kept:

* `Classification` of (DFA, q) over one vocabulary — the accepted tokens and the split pairs. It
  depends on nothing but the automaton and the tokenizer, so `Vocabulary` memoises it by the
  automaton's content and grammars that share terminals (strings, numbers, whitespace) share it.
* `LexemeEntry` of (terminal id, q) in one compiled grammar — the classification plus *context
  expansion*: each split pair's rest is sorted by which follower terminals (FOLLOW sets) could
  read it; pairs no follower chain can read are dropped. `EntryStore` holds them.

**Cost proportional to live work.** The vocabulary is sorted by bytes, so the tokens that begin
with byte b are one contiguous row range. Classifying (DFA, q) starts from the ranges of the bytes
q can read, then advances one byte position at a time keeping only the rows whose run is still
alive: the work is the number of live (token, byte position) pairs, never V × |states|. From the
initial state of the literal ``"NP"`` that is the few hundred tokens starting with ``N``.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gad.bitmask import bitmask_words, pack_bool_mask
from gad.grammar.regex import ByteDFA
from gad.parser.earley import EarleyTables
from gad.tokenizer import TokenizerInfo

KIND_ACCEPTED, KIND_REJECTED, KIND_BITSET = 0, 1, 2


@dataclass(frozen=True)
class TokenSet:
    """A set of token ids stored in its smallest form (ids, complement ids, or bitset), as
    XGrammar stores them. `packed` expands it to a bitset on first use and keeps that (a cache
    on an otherwise immutable object): the run-time mask is a few word-wise ORs of these."""

    kind: int
    data: np.ndarray  # int32 ids, or uint32 words
    vocab_size: int

    @classmethod
    def from_ids(cls, ids: np.ndarray, vocab_size: int) -> TokenSet:
        """The set of the (distinct) ``ids``, in its smallest form (id lists ascending)."""
        ids = np.asarray(ids, dtype=np.int32)
        words = bitmask_words(vocab_size)
        rejected_count = vocab_size - ids.shape[0]
        smallest = min(ids.shape[0], rejected_count, words)
        if smallest == ids.shape[0]:
            return cls(KIND_ACCEPTED, np.sort(ids), vocab_size)
        mask = np.zeros(vocab_size, dtype=np.bool_)
        mask[ids] = True
        if smallest == rejected_count:
            return cls(KIND_REJECTED, np.flatnonzero(~mask).astype(np.int32), vocab_size)
        return cls(KIND_BITSET, pack_bool_mask(mask), vocab_size)

    def packed(self) -> np.ndarray:
        """The set as ``uint32[ceil(V/32)]`` (computed once)."""
        cached = self.__dict__.get("_packed")
        if cached is None:
            if self.kind == KIND_BITSET:
                cached = self.data
            else:
                mask = np.zeros(self.vocab_size, dtype=np.bool_)
                mask[self.data] = True
                cached = pack_bool_mask(~mask if self.kind == KIND_REJECTED else mask)
            object.__setattr__(self, "_packed", cached)
        return cached

    def __contains__(self, token_id: int) -> bool:
        words = self.packed()
        return bool((int(words[token_id >> 5]) >> (token_id & 31)) & 1)


@dataclass(frozen=True)
class Classification:
    """How the tokens of one vocabulary read one DFA from one state.

    ``accepted``: the tokens whose bytes all keep the DFA alive. ``split_tokens[i]`` may end the
    terminal after ``split_at[i]`` bytes and then leaves it (its run dies later): the
    context-dependent pairs, sorted by (token, split). Every other token is rejected.
    """

    accepted: TokenSet
    split_tokens: np.ndarray  # int32[P]
    split_at: np.ndarray  # int32[P]


@dataclass(frozen=True)
class LexemeEntry:
    """What the compiler knows about the tokens read by one lexeme in DFA state q.

    ``accepted``: tokens accepted in every context. Context-dependent pairs i: token
    ``split_tokens[i]`` may end the terminal after ``split_at[i]`` bytes, leaving the suffix
    ``token_bytes[split_tokens[i]][split_at[i]:]``. Whether that suffix is accepted depends on
    which terminals the parser expects once the terminal has ended, so for every follower
    terminal F the compiler records (as parallel arrays of pair index and terminal id) whether
    the suffix stays inside F (``inside_*``: accepted iff F is expected), ends F and stays inside
    a terminal G that may follow F (``chain_*``: accepted iff F is expected and then G), or goes
    on further (``deep_*``: the parser decides). %ignore terminals at the end of a suffix are
    absorbed into the reading before them (they are expected everywhere). Pairs that no
    follower can read are rejected in every context and not stored.
    """

    accepted: TokenSet
    split_tokens: np.ndarray  # int32[P]
    split_at: np.ndarray  # int32[P]
    inside_pairs: np.ndarray  # int32
    inside_terminals: np.ndarray  # int32
    chain_pairs: np.ndarray  # int32
    chain_first: np.ndarray  # int32
    chain_second: np.ndarray  # int32
    deep_pairs: np.ndarray  # int32
    deep_terminals: np.ndarray  # int32

    ARRAYS = (
        "split_tokens", "split_at", "inside_pairs", "inside_terminals", "chain_pairs", "chain_first",
        "chain_second", "deep_pairs", "deep_terminals",
    )


# -- automata as numpy tables ---------------------------------------------------------------------


class _Automaton:
    """A `ByteDFA` as numpy arrays (``table`` int32[n, 256] with -1 for dead, ``accepting``
    bool[n]) with a digest of its content, made once per automaton object."""

    __slots__ = ("table", "accepting", "digest", "num_states", "__weakref__")

    def __init__(self, dfa: ByteDFA) -> None:
        self.num_states = dfa.num_states
        self.table = np.array(dfa.table, dtype=np.int32).reshape(self.num_states, 256)
        self.accepting = np.zeros(self.num_states, dtype=np.bool_)
        self.accepting[list(dfa.accepting)] = True
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.table.tobytes())
        digest.update(self.accepting.tobytes())
        digest.update(int(dfa.initial).to_bytes(4, "little"))
        self.digest = digest.digest()


_AUTOMATA: weakref.WeakKeyDictionary[ByteDFA, _Automaton] = weakref.WeakKeyDictionary()
_AUTOMATA_LOCK = threading.Lock()


def automaton(dfa: ByteDFA) -> _Automaton:
    """The numpy form of ``dfa`` (memoised per automaton object; thread-safe)."""
    found = _AUTOMATA.get(dfa)
    if found is None:
        found = _Automaton(dfa)
        with _AUTOMATA_LOCK:
            found = _AUTOMATA.setdefault(dfa, found)
    return found


# -- the vocabulary --------------------------------------------------------------------------------


class Vocabulary:
    """The non-special tokens of one tokenizer sorted by bytes, as a zero-padded byte matrix;
    the tokens beginning with byte b are the rows ``[first_start[b], first_start[b + 1])``.
    ``byte_sets[:, r]`` is the set of byte values row r contains, as four 64-bit words.

    Holds the memo of `classify` for this tokenizer: by (automaton digest, state), shared by every
    grammar compiled for it, thread-safe, and bounded (least recently used entries beyond
    ``max_classifications`` are dropped; entries a compiled grammar holds stay alive there).
    Get the one of a tokenizer with `Vocabulary.of`.
    """

    def __init__(self, info: TokenizerInfo, max_classifications: int = 8192) -> None:
        self.vocab_size = info.vocab_size
        self.token_bytes = info.token_bytes
        self.ids = np.array(info.sorted_ids, dtype=np.int32)
        self.lengths = np.array([len(b) for b in info.sorted_bytes], dtype=np.int32)
        width = int(self.lengths.max()) if self.lengths.size else 1
        flat = np.frombuffer(b"".join(b.ljust(width, b"\0") for b in info.sorted_bytes), dtype=np.uint8)
        self.matrix = flat.reshape(len(info.sorted_bytes), width)
        self.row_of_id = np.full(info.vocab_size, -1, dtype=np.int64)
        self.row_of_id[self.ids] = np.arange(self.ids.shape[0])
        # Rows are sorted by bytes, so the first byte is non-decreasing.
        self.first_start = np.searchsorted(self.matrix[:, 0], np.arange(257), side="left").astype(np.int64)
        self.byte_sets = _byte_sets(self.matrix, self.lengths)
        self.max_classifications = max_classifications
        self._classified: OrderedDict[tuple[bytes, int], Classification] = OrderedDict()
        self._lock = threading.Lock()

    _BY_TOKENIZER: weakref.WeakKeyDictionary[TokenizerInfo, Vocabulary] = weakref.WeakKeyDictionary()
    _BY_TOKENIZER_LOCK = threading.Lock()

    @classmethod
    def of(cls, info: TokenizerInfo) -> Vocabulary:
        """The shared `Vocabulary` of ``info`` (built on first use)."""
        with cls._BY_TOKENIZER_LOCK:
            found = cls._BY_TOKENIZER.get(info)
            if found is None:
                found = cls._BY_TOKENIZER[info] = cls(info)
            return found

    def classification(self, dfa: ByteDFA, state: int) -> Classification:
        """`classify` of (``dfa``, ``state``), memoised."""
        auto = automaton(dfa)
        key = (auto.digest, state)
        with self._lock:
            found = self._classified.get(key)
            if found is not None:
                self._classified.move_to_end(key)
                return found
        found = classify(auto, state, self)
        with self._lock:
            found = self._classified.setdefault(key, found)
            while len(self._classified) > self.max_classifications:
                self._classified.popitem(last=False)
        return found

    def rows_starting_with(self, first_bytes: np.ndarray) -> np.ndarray:
        """The sorted-vocabulary rows of the tokens whose first byte is in ``first_bytes``."""
        starts = self.first_start[first_bytes]
        counts = self.first_start[first_bytes + 1] - starts
        total = int(counts.sum())
        if not total:
            return np.zeros(0, dtype=np.int64)
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
        return offsets + np.arange(total, dtype=np.int64)


def _byte_sets(matrix: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``uint64[4, rows]``: bit b % 64 of word b // 64 of row r is set when row r contains byte b
    (one contiguous array per word, so that set tests over all rows are four vector ops)."""
    sets = np.zeros((4, matrix.shape[0]), dtype=np.uint64)
    order = np.argsort(-lengths, kind="stable")
    one = np.uint64(1)
    for position in range(matrix.shape[1]):
        active = order[: int(np.count_nonzero(lengths > position))]
        column = matrix[active, position]
        words = (column >> 6).astype(np.intp)
        bits = one << (column & 63).astype(np.uint64)
        np.bitwise_or.at(sets, (words, active), bits)
    return sets


def _walk(auto: _Automaton, vocab: Vocabulary, rows: np.ndarray, offsets: np.ndarray, states: np.ndarray):
    """Run ``auto`` over vocabulary ``rows`` from byte ``offsets`` on, each run in ``states`` before
    that byte (parallel arrays), keeping only live runs. Returns ``(ended, split_index,
    split_position)``: the indices (into the inputs) of runs alive at their row's end, and the
    (index, bytes read from the row's start) pairs where a run is in an accepting state with
    more bytes to come. Cost: the number of live (run, byte) steps."""
    table, accepting, matrix, lengths = auto.table, auto.accepting, vocab.matrix, vocab.lengths
    index = np.arange(rows.shape[0])
    position = offsets.astype(np.int64, copy=True)
    ended: list[np.ndarray] = []
    split_index: list[np.ndarray] = []
    split_position: list[np.ndarray] = []
    while index.size:
        states = table[states, matrix[rows, position]]
        alive = states >= 0
        if not alive.all():
            index, rows, position, states = index[alive], rows[alive], position[alive], states[alive]
            if not index.size:
                break
        position += 1
        done = lengths[rows] == position
        if done.any():
            ended.append(index[done])
            going = ~done
            index, rows, position, states = index[going], rows[going], position[going], states[going]
            if not index.size:
                break
        ends_here = accepting[states]
        if ends_here.any():
            split_index.append(index[ends_here])
            split_position.append(position[ends_here])

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    return joined(ended), joined(split_index), joined(split_position)


# Classifying a wide state (one many tokens can enter) first sets aside the tokens made only of
# bytes that loop on the state: they stay in it, so they are accepted without a walk.
_LOOP_SHORTCUT_ROWS = 2048


def classify(auto: _Automaton, state: int, vocab: Vocabulary) -> Classification:
    """The `Classification` of the tokens of ``vocab`` read from ``state``: a walk over the
    sorted vocabulary that keeps only live rows (see the module docstring)."""
    table = auto.table
    rows = vocab.rows_starting_with(np.flatnonzero(table[state] >= 0))
    staying = np.zeros(0, dtype=np.int64)
    loop = table[state] == state
    if rows.size > _LOOP_SHORTCUT_ROWS and loop.any():
        outside_loop = ~np.packbits(loop, bitorder="little").view(np.uint64)
        sets = vocab.byte_sets
        # Over all rows at once (cheaper than gathering), then restricted to `rows`.
        leaves = (sets[0] & outside_loop[0]) | (sets[1] & outside_loop[1])
        leaves |= (sets[2] & outside_loop[2]) | (sets[3] & outside_loop[3])
        stays = leaves[rows] == 0
        staying, rows = rows[stays], rows[~stays]
    ended, split_index, split_position = _walk(
        auto, vocab, rows, np.zeros(rows.shape[0], dtype=np.int64), np.full(rows.shape[0], state, dtype=np.int32)
    )
    accepted_rows = np.concatenate([staying, rows[ended]])
    if split_index.size:
        survived = np.zeros(rows.shape[0], dtype=np.bool_)
        survived[ended] = True
        keep = ~survived[split_index]  # a token that stays inside needs no split
        tokens = vocab.ids[rows[split_index[keep]]].astype(np.int32)
        splits = split_position[keep].astype(np.int32)
        order = np.lexsort((splits, tokens))
        tokens, splits = tokens[order], splits[order]
    else:
        tokens = np.zeros(0, dtype=np.int32)
        splits = np.zeros(0, dtype=np.int32)
    return Classification(TokenSet.from_ids(vocab.ids[accepted_rows], vocab.vocab_size), tokens, splits)


# -- context expansion: the entries of one grammar ------------------------------------------------


class EntryStore:
    """The `LexemeEntry` of every (terminal id, DFA state) of one compiled grammar, built on
    first use (`get`) and kept; `build_all` builds the rest. Thread-safe: concurrent first uses
    of one entry build it once. Terminal ids are those of `EarleyTables`."""

    def __init__(self, tables: EarleyTables, vocabulary: Vocabulary) -> None:
        self.tables = tables
        self.vocabulary = vocabulary
        self.follow = terminal_follow(tables)
        self.context = _FollowContext(tables.dfas, self.follow, tables.ignore_ids)
        self._rows: list[list[LexemeEntry | None]] = [[None] * dfa.num_states for dfa in tables.dfas]
        self._lock = threading.RLock()

    def get(self, terminal: int, state: int) -> LexemeEntry:
        """The entry of ``terminal`` in DFA state ``state`` (built now if it is new)."""
        entry = self._rows[terminal][state]
        if entry is None:
            with self._lock:
                entry = self._rows[terminal][state]
                if entry is None:
                    classification = self.vocabulary.classification(self.tables.dfas[terminal], state)
                    entry = self._rows[terminal][state] = self._expand(terminal, classification)
        return entry

    def build_all(self) -> None:
        """Build every entry now (what `GrammarCompiler.compile(..., eager=True)` does)."""
        for terminal, row in enumerate(self._rows):
            for state in range(len(row)):
                self.get(terminal, state)

    def built(self) -> list[tuple[int, int, LexemeEntry]]:
        """The entries built so far, as (terminal id, state, entry)."""
        with self._lock:
            return [(t, q, e) for t, row in enumerate(self._rows) for q, e in enumerate(row) if e is not None]

    def put(self, terminal: int, state: int, entry: LexemeEntry) -> None:
        """Install an entry read back from a file."""
        with self._lock:
            self._rows[terminal][state] = entry

    def _expand(self, terminal: int, classification: Classification) -> LexemeEntry:
        vocab = self.vocabulary
        token_ids, split_at = classification.split_tokens, classification.split_at
        split_rows = vocab.row_of_id[token_ids]
        inside, resplit = _follower_readings(vocab, split_rows, split_at, sorted(self.follow[terminal]), self.tables)
        context = self.context
        # Context expansion: a suffix that ends follower F and goes on is kept only if what comes
        # after F can be read by a terminal that may follow F, and so on to the suffix's end. If
        # %ignore terminals alone can read the rest, F being expected decides it: count it inside F.
        chain_pairs, chain_first, chain_second, deep_pairs, deep_first = [], [], [], [], []
        inside_pairs, inside_terms = inside[0].tolist(), inside[1].tolist()
        token_bytes = vocab.token_bytes
        tokens, splits = token_ids.tolist(), split_at.tolist()
        for p, f in zip(resplit[0].tolist(), resplit[1].tolist()):
            suffix = token_bytes[tokens[p]][splits[p] :]
            if not context.readable_within(f, suffix):
                continue
            if context.ends_then_ignorable(f, suffix):
                inside_pairs.append(p)
                inside_terms.append(f)
                continue
            seconds, deeper = context.chains(f, suffix)
            for g in seconds:
                chain_pairs.append(p)
                chain_first.append(f)
                chain_second.append(g)
            if deeper:
                deep_pairs.append(p)
                deep_first.append(f)
        # Pairs no follower can read are rejected in every context: drop them.
        keep = np.zeros(len(tokens), dtype=np.bool_)
        keep[inside_pairs] = True
        keep[chain_pairs] = True
        keep[deep_pairs] = True
        renumber = np.cumsum(keep) - 1

        def pairs(indices: list[int]) -> np.ndarray:
            return renumber[np.array(indices, dtype=np.int64)].astype(np.int32)

        def terminals(ids: list[int]) -> np.ndarray:
            return np.array(ids, dtype=np.int32)

        return LexemeEntry(
            classification.accepted,
            token_ids[keep],
            split_at[keep],
            pairs(inside_pairs),
            terminals(inside_terms),
            pairs(chain_pairs),
            terminals(chain_first),
            terminals(chain_second),
            pairs(deep_pairs),
            terminals(deep_first),
        )


def _follower_readings(
    vocab: Vocabulary, rows: np.ndarray, offsets: np.ndarray, followers: list[int], tables: EarleyTables
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """How each follower terminal F reads each suffix (vocabulary row ``rows[i]`` from byte
    ``offsets[i]``), as (suffix indices, terminal ids) pairs: ``inside`` when F's DFA stays alive
    to the suffix's end, ``resplit`` when it dies after passing an accepting state (F may end
    inside the suffix and other terminals take over). Only the suffixes whose first byte F can
    read are walked, and only while alive."""
    inside_pairs, inside_terms, resplit_pairs, resplit_terms = [], [], [], []
    if rows.size and followers:
        first_bytes = vocab.matrix[rows, offsets]
        for terminal in followers:
            auto = automaton(tables.dfas[terminal])
            initial = tables.dfa_initial[terminal]
            candidates = np.flatnonzero(auto.table[initial, first_bytes] >= 0)
            if not candidates.size:
                continue
            ended, split_index, _ = _walk(
                auto, vocab, rows[candidates], offsets[candidates],
                np.full(candidates.shape[0], initial, dtype=np.int32),
            )
            inside_here = candidates[ended]
            resplit_here = np.setdiff1d(candidates[split_index], inside_here) if split_index.size else split_index
            for selected, store_p, store_t in (
                (inside_here, inside_pairs, inside_terms),
                (resplit_here, resplit_pairs, resplit_terms),
            ):
                store_p.append(selected.astype(np.int64))
                store_t.append(np.full(selected.size, terminal, dtype=np.int32))

    def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return (
        (joined(inside_pairs, np.int64), joined(inside_terms, np.int32)),
        (joined(resplit_pairs, np.int64), joined(resplit_terms, np.int32)),
    )


class _FollowContext:
    """Terminal-level context expansion: can a byte string be read by a chain of terminals that
    the grammar allows to follow one another (FOLLOW sets)? An over-approximation of the parser,
    used at compile time to drop context-dependent tokens no context could accept."""

    def __init__(self, dfas: list[ByteDFA], follow: list[set[int]], ignore: tuple[int, ...]) -> None:
        self.dfas = dfas
        self.follow = [sorted(f) for f in follow]
        self.ignore = ignore
        self._memo: dict[tuple[int, bytes], bool] = {}

    def _reads(self, terminal: int, data: bytes, rest_ok, whole_ok: bool) -> bool:
        """Walk ``terminal``'s DFA over ``data``: True if it ends after k < len(data) bytes with
        ``rest_ok(data[k:])``, or (when ``whole_ok``) stays alive to the end of ``data``."""
        dfa = self.dfas[terminal]
        state = dfa.initial
        for position, byte in enumerate(data):
            state = dfa.table[state][byte]
            if state < 0:
                return False
            if state in dfa.accepting and position + 1 < len(data) and rest_ok(data[position + 1 :]):
                return True
        return whole_ok

    def readable_within(self, terminal: int, data: bytes) -> bool:
        """Can ``terminal`` read all of ``data``, or end inside it with the rest readable after it?"""
        key = (~terminal, data)
        verdict = self._memo.get(key)
        if verdict is None:
            verdict = self._reads(terminal, data, lambda rest: self.readable_after(terminal, rest), True)
            self._memo[key] = verdict
        return verdict

    def ends_then_ignorable(self, terminal: int, data: bytes) -> bool:
        """Can ``terminal`` end inside ``data`` with only %ignore terminals reading the rest?"""
        return self._reads(terminal, data, self._ignorable, False)

    def chains(self, terminal: int, data: bytes) -> tuple[set[int], bool]:
        """Where ``terminal`` ends inside ``data``: the followers G that read all the rest (or end
        with only %ignore terminals after them), and whether some rest needs a longer chain."""
        seconds: set[int] = set()
        deeper = False

        def classify_rest(rest: bytes) -> bool:
            nonlocal deeper
            for g in self.follow[terminal]:
                if self._reads(g, rest, self._ignorable, True):
                    seconds.add(g)
                elif self.readable_within(g, rest):
                    deeper = True
            return False  # look at every place where `terminal` may end

        self._reads(terminal, data, classify_rest, False)
        return seconds, deeper

    def _ignorable(self, data: bytes) -> bool:
        """Is ``data`` a sequence of %ignore terminals? (Each may also end inside it.)"""
        return any(self._reads(g, data, self._ignorable, True) for g in self.ignore)

    def readable_after(self, terminal: int, data: bytes) -> bool:
        """Can ``data`` be read right after ``terminal`` ended?"""
        key = (terminal, data)
        verdict = self._memo.get(key)
        if verdict is None:
            self._memo[key] = False  # guards against cycles through ignore terminals
            verdict = any(self.readable_within(g, data) for g in self.follow[terminal])
            self._memo[key] = verdict
        return verdict


def terminal_follow(tables: EarleyTables) -> list[set[int]]:
    """FOLLOW sets over terminal ids: which terminals may come right after each terminal.

    `%ignore` terminals may follow anything, and anything may follow them.
    """
    n_terms = len(tables.terminal_names)
    n_nt = len(tables.nonterminal_names)
    first: list[set[int]] = [set() for _ in range(n_nt)]
    changed = True
    while changed:
        changed = False
        for lhs, rhs in zip(tables.rule_lhs, tables.rule_rhs):
            for symbol in rhs:
                add = {~symbol} if symbol < 0 else first[symbol]
                if not add <= first[lhs]:
                    first[lhs] |= add
                    changed = True
                if symbol not in tables.nullable:
                    break
    follow_nt: list[set[int]] = [set() for _ in range(n_nt)]
    follow_t: list[set[int]] = [set() for _ in range(n_terms)]
    changed = True
    while changed:
        changed = False
        for lhs, rhs in zip(tables.rule_lhs, tables.rule_rhs):
            trailer = set(follow_nt[lhs])
            for symbol in reversed(rhs):
                target = follow_t[~symbol] if symbol < 0 else follow_nt[symbol]
                if not trailer <= target:
                    target |= trailer
                    changed = True
                if symbol < 0:
                    trailer = trailer | {~symbol} if symbol in tables.nullable else {~symbol}
                elif symbol in tables.nullable:
                    trailer = trailer | first[symbol]
                else:
                    trailer = set(first[symbol])
    ignore = set(tables.ignore_ids)
    everything = set(range(n_terms))
    for t in range(n_terms):
        follow_t[t] = everything if t in ignore else follow_t[t] | ignore
    return follow_t
