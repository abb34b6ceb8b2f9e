"""`GrammarCompiler` binds a grammar to one tokenizer, producing an immutable `CompiledGrammar`.

Compile-time precomputation (XGrammar's context-independent tokens, in lexer terms). A parser
state is a set of live *lexemes* (terminal T, origin Earley set, DFA state q). For one lexeme, a
token whose bytes keep T's DFA alive from q is accepted whatever the parser stack holds; a token
that kills the DFA without passing an accepting state is rejected whatever the stack holds. Only
tokens that pass an accepting state at byte k and then leave the terminal ("split" at k) are
*context-dependent*: their remaining bytes must be checked by the parser from the Earley set that
completing T yields. So for every (terminal, DFA state) the compiler stores

* the accepted token ids, in whichever form is smallest: an id list, the list of the rejected
  ids, or a bitset (``uint32[ceil(V/32)]``), as XGrammar stores them;
* the context-dependent tokens with their split points, minus those whose remaining bytes no
  terminal that may follow T can begin (context expansion with terminal FOLLOW sets).

All classification runs vectorised over the whole vocabulary (numpy), one DFA state at a time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gad.bitmask import bitmask_words, pack_bool_mask
from gad.storage import load_arrays, save_arrays
from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar, Rule, SourceText, Terminal
from gad.grammar.regex import ByteDFA
from gad.parser.earley import EarleyParser, EarleyTables
from gad.tokenizer import TokenizerInfo

FORMAT_VERSION = 1
_KIND_ACCEPTED, _KIND_REJECTED, _KIND_BITSET = 0, 1, 2


@dataclass(frozen=True)
class TokenSet:
    """A set of token ids stored in its smallest form (ids, complement ids, or bitset).

    `packed` expands it to a bitset on first use and keeps that: the run-time mask is a few
    word-wise ORs of these.
    """

    kind: int
    data: np.ndarray  # int32 ids, or uint32 words
    vocab_size: int

    @classmethod
    def from_bool(cls, mask: np.ndarray) -> TokenSet:
        vocab_size = mask.shape[0]
        accepted = np.flatnonzero(mask).astype(np.int32)
        rejected_count = vocab_size - accepted.shape[0]
        smallest = min(accepted.shape[0], rejected_count, bitmask_words(vocab_size))
        if smallest == accepted.shape[0]:
            return cls(_KIND_ACCEPTED, accepted, vocab_size)
        if smallest == rejected_count:
            return cls(_KIND_REJECTED, np.flatnonzero(~mask).astype(np.int32), vocab_size)
        return cls(_KIND_BITSET, pack_bool_mask(mask), vocab_size)

    def packed(self) -> np.ndarray:
        """The set as ``uint32[ceil(V/32)]`` (computed once)."""
        cached = self.__dict__.get("_packed")
        if cached is None:
            if self.kind == _KIND_BITSET:
                cached = self.data
            else:
                mask = np.zeros(self.vocab_size, dtype=np.bool_)
                mask[self.data] = True
                cached = pack_bool_mask(~mask if self.kind == _KIND_REJECTED else mask)
            object.__setattr__(self, "_packed", cached)
        return cached


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
    on further (``resplit_*``: the parser decides). %ignore terminals at the end of a suffix are
    absorbed into the reading before them (they are expected everywhere).
    """

    accepted: TokenSet
    split_tokens: np.ndarray  # int32[P]
    split_at: np.ndarray  # int32[P]
    inside_pairs: np.ndarray  # int32
    inside_terminals: np.ndarray  # int32
    chain_pairs: np.ndarray  # int32
    chain_first: np.ndarray  # int32
    chain_second: np.ndarray  # int32
    resplit_pairs: np.ndarray  # int32
    resplit_terminals: np.ndarray  # int32

    ARRAYS = (
        "split_tokens", "split_at", "inside_pairs", "inside_terminals", "chain_pairs", "chain_first",
        "chain_second", "resplit_pairs", "resplit_terminals",
    )


class CompiledGrammar:
    """A `Grammar` compiled for one `TokenizerInfo`. Immutable; share it between matchers.

    ``entries[t][q]`` is the `LexemeEntry` of terminal id t (see `EarleyTables`) in DFA state q.
    """

    def __init__(self, grammar: Grammar, tokenizer_info: TokenizerInfo, entries: list[list[LexemeEntry]]) -> None:
        self.grammar = grammar
        self.tokenizer_info = tokenizer_info
        self.parser = EarleyParser(EarleyTables(grammar))
        self.entries = entries
        self._readings: dict[bytes, tuple[frozenset[int], tuple[tuple[int, int], ...]]] = {}
        # Pay the one-off expansions now rather than in the first masks: the bitsets that masks
        # OR together, and how terminals read the suffixes the parser may have to check.
        token_bytes = tokenizer_info.token_bytes
        for row in entries:
            for entry in row:
                entry.accepted.packed()
                tokens, splits = entry.split_tokens.tolist(), entry.split_at.tolist()
                for pair in set(entry.resplit_pairs.tolist()):
                    self.reading(token_bytes[tokens[pair]][splits[pair] :])

    @property
    def vocab_size(self) -> int:
        return self.tokenizer_info.vocab_size

    def reading(self, data: bytes) -> tuple[frozenset[int], tuple[tuple[int, int], ...]]:
        """How every terminal's DFA reads ``data`` from its start: the terminals that stay alive
        to its end, and the (terminal, k) pairs where a terminal may end after k < len(data)
        bytes, before dying. Context-free facts, memoised; the run-time mask code combines them
        with what the parser expects."""
        cached = self._readings.get(data)
        if cached is None:
            tables = self.parser.tables
            inside, splits = [], []
            for terminal, table in enumerate(tables.dfa_tables):
                accepting = tables.dfa_accepting[terminal]
                state = tables.dfa_initial[terminal]
                for position, byte in enumerate(data):
                    state = table[state][byte]
                    if state < 0:
                        break
                    if accepting[state] and position + 1 < len(data):
                        splits.append((terminal, position + 1))
                else:
                    inside.append(terminal)
            cached = self._readings[data] = (frozenset(inside), tuple(splits))
        return cached

    def context_dependent_count(self) -> int:
        """Total number of context-dependent (token, split) pairs over all lexeme entries."""
        return sum(e.split_tokens.shape[0] for row in self.entries for e in row)

    def __repr__(self) -> str:
        return f"CompiledGrammar({self.grammar!r}, vocab_size={self.vocab_size})"

    # -- persistence (no pickle: plain arrays and JSON) ---------------------------------------

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (a ``.npz`` file) atomically; load it back with `CompiledGrammar.load`."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        meta = {
            "format": FORMAT_VERSION,
            "tokenizer": tokenizer_fingerprint(self.tokenizer_info),
            "grammar": _grammar_to_json(self.grammar),
            "states": [len(row) for row in self.entries],
        }
        # Terminal automata are stored as they are, not rebuilt from their regexes on load:
        # some (e.g. JSON Schema strings with several constraints) are built by other means.
        for i, (_, terminal) in enumerate(sorted(self.grammar.terminals.items())):
            arrays[f"dfa_table_{i}"] = np.array(terminal.dfa.table, dtype=np.int32).reshape(-1, 256)
            arrays[f"dfa_accepting_{i}"] = np.array(sorted(terminal.dfa.accepting), dtype=np.int32)
            arrays[f"dfa_initial_{i}"] = np.array([terminal.dfa.initial], dtype=np.int32)
        for t, row in enumerate(self.entries):
            for q, entry in enumerate(row):
                key = f"{t}_{q}"
                arrays[f"kind_{key}"] = np.array([entry.accepted.kind], dtype=np.int32)
                arrays[f"data_{key}"] = entry.accepted.data
                for name in LexemeEntry.ARRAYS:
                    arrays[f"{name}_{key}"] = getattr(entry, name)
        save_arrays(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path, tokenizer_info: TokenizerInfo) -> CompiledGrammar:
        """Load a file written by `save`; the tokenizer must be the one it was compiled for."""
        data, meta = load_arrays(path, "compiled grammar")
        if meta.get("format") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{path}: compiled-grammar format {meta.get('format')} is not {FORMAT_VERSION}; recompile"
            )
        if meta.get("tokenizer") != tokenizer_fingerprint(tokenizer_info):
            raise ConfigurationError(f"{path} was compiled for a different tokenizer")
        try:
            dfas = {
                name: ByteDFA(
                    tuple(tuple(row) for row in data[f"dfa_table_{i}"].tolist()),
                    frozenset(data[f"dfa_accepting_{i}"].tolist()),
                    int(data[f"dfa_initial_{i}"][0]),
                    regex,
                )
                for i, (name, (regex, _, _)) in enumerate(meta["grammar"]["terminals"].items())
            }
            grammar = _grammar_from_json(meta["grammar"], dfas)
            entries = [
                [
                    LexemeEntry(
                        TokenSet(int(data[f"kind_{t}_{q}"][0]), data[f"data_{t}_{q}"], tokenizer_info.vocab_size),
                        *(data[f"{name}_{t}_{q}"] for name in LexemeEntry.ARRAYS),
                    )
                    for q in range(count)
                ]
                for t, count in enumerate(meta["states"])
            ]
        except (KeyError, ValueError) as exc:
            raise ConfigurationError(f"cannot load compiled grammar {path}: missing or bad entry {exc}") from None
        compiled = cls(grammar, tokenizer_info, entries)
        if [len(t) for t in compiled.parser.tables.dfa_tables] != meta["states"]:
            raise ConfigurationError(f"{path} is inconsistent: its automata do not match its mask store")
        return compiled


class GrammarCompiler:
    """Compiles grammars for one tokenizer: ``GrammarCompiler(tok_info).compile(grammar)``.

    Compiling the same grammar again returns the cached `CompiledGrammar`; the vocabulary
    classification of a terminal is cached by its regex, so grammars sharing terminals (e.g.
    JSON strings) share that work.
    """

    def __init__(self, tokenizer_info: TokenizerInfo) -> None:
        if not isinstance(tokenizer_info, TokenizerInfo):
            raise ConfigurationError(
                f"`tokenizer_info` has to be a gad.TokenizerInfo, but is {type(tokenizer_info).__name__}"
            )
        self.tokenizer_info = tokenizer_info
        self._vocabulary: _Vocabulary | None = None
        self._compiled: dict[str, CompiledGrammar] = {}
        self._classified: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def compile(self, grammar: Grammar | str, start: str = "start") -> CompiledGrammar:
        """Compile a `Grammar`, or Lark grammar text, for this compiler's tokenizer."""
        if isinstance(grammar, str):
            grammar = Grammar.from_lark(grammar, start=start)
        elif not isinstance(grammar, Grammar):
            raise ConfigurationError(
                f"`grammar` has to be a gad.Grammar or Lark grammar text, but is {type(grammar).__name__}"
            )
        key = grammar_fingerprint(grammar)
        cached = self._compiled.get(key)
        if cached is not None:
            return cached
        if self._vocabulary is None:
            self._vocabulary = _Vocabulary(self.tokenizer_info)
        tables = EarleyTables(grammar)
        follow = _terminal_follow(tables)
        context = _FollowContext([grammar.terminals[n].dfa for n in tables.terminal_names], follow, tables.ignore_ids)
        entries = []
        for t, name in enumerate(tables.terminal_names):
            dfa = grammar.terminals[name].dfa
            classified = self._classified.get(dfa.pattern)
            if classified is None:
                classified = _classify(dfa, self._vocabulary)
                self._classified[dfa.pattern] = classified
            followers = [(f, grammar.terminals[tables.terminal_names[f]].dfa) for f in sorted(follow[t])]
            entries.append(
                [
                    _entry(always, tokens, splits, followers, self._vocabulary, context)
                    for always, tokens, splits in classified
                ]
            )
        compiled = CompiledGrammar(grammar, self.tokenizer_info, entries)
        self._compiled[key] = compiled
        return compiled


# -- the vocabulary as a byte matrix --------------------------------------------------------------


class _Vocabulary:
    """Non-special tokens as a zero-padded byte matrix, rows sorted by decreasing length, so that
    the rows still reading at byte position p are the prefix ``[:active[p]]``."""

    def __init__(self, info: TokenizerInfo) -> None:
        ids = np.array(info.sorted_ids, dtype=np.int64)
        lengths = np.array([len(b) for b in info.sorted_bytes], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        self.ids = ids[order]
        self.lengths = lengths[order]
        self.vocab_size = info.vocab_size
        self.token_bytes = info.token_bytes
        width = int(self.lengths.max()) if self.lengths.size else 0
        self.matrix = _byte_matrix([info.sorted_bytes[i] for i in order], width)
        self.active = [int(np.count_nonzero(self.lengths > p)) for p in range(width)]


def _byte_matrix(rows: list[bytes], width: int) -> np.ndarray:
    flat = np.frombuffer(b"".join(r.ljust(width, b"\0") for r in rows), dtype=np.uint8)
    return flat.reshape(len(rows), width) if rows else np.zeros((0, width), dtype=np.uint8)


def _numpy_dfa(dfa: ByteDFA) -> tuple[np.ndarray, np.ndarray]:
    """Transition table with an extra absorbing dead row (index ``num_states``) and accepting flags."""
    n = dfa.num_states
    table = np.array(dfa.table, dtype=np.int32).reshape(n, 256)
    table = np.vstack([np.where(table < 0, n, table), np.full((1, 256), n, dtype=np.int32)])
    accepting = np.zeros(n + 1, dtype=np.bool_)
    accepting[list(dfa.accepting)] = True
    return table, accepting


def _classify(dfa: ByteDFA, vocab: _Vocabulary) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each DFA state q: (always-live bool over vocab rows, split token rows, split byte counts).

    A row is always-live when its bytes never kill the DFA from q. Its splits are the byte counts
    k (1 <= k < length) after which the DFA is in an accepting state, recorded only for rows
    that later die: those are the context-dependent tokens.
    """
    table, accepting = _numpy_dfa(dfa)
    dead = dfa.num_states
    rows = vocab.matrix.shape[0]
    result = []
    for q in range(dfa.num_states):
        state = np.full(rows, q, dtype=np.int32)
        split_rows, split_at = [], []
        for position, active in enumerate(vocab.active):
            current = state[:active]
            current = table[current, vocab.matrix[:active, position]]
            state[:active] = current
            # Accepting after position+1 bytes with more bytes to come: a possible split.
            ends_here = accepting[current] & (vocab.lengths[:active] > position + 1)
            hits = np.flatnonzero(ends_here)
            if hits.size:
                split_rows.append(hits)
                split_at.append(np.full(hits.size, position + 1, dtype=np.int32))
        always = state != dead
        if split_rows:
            tokens = np.concatenate(split_rows)
            splits = np.concatenate(split_at)
            keep = ~always[tokens]
            tokens, splits = tokens[keep], splits[keep]
        else:
            tokens = np.zeros(0, dtype=np.int64)
            splits = np.zeros(0, dtype=np.int32)
        result.append((always, tokens, splits))
    return result


def _entry(
    always: np.ndarray,
    split_rows: np.ndarray,
    split_at: np.ndarray,
    followers: list[tuple[int, ByteDFA]],
    vocab: _Vocabulary,
    context: _FollowContext,
) -> LexemeEntry:
    allowed = np.zeros(vocab.vocab_size, dtype=np.bool_)
    allowed[vocab.ids[always]] = True
    token_ids = vocab.ids[split_rows].astype(np.int32)
    order = np.lexsort((split_at, token_ids))
    token_ids, split_at = token_ids[order], split_at[order].astype(np.int32)
    suffixes = [vocab.token_bytes[t][k:] for t, k in zip(token_ids.tolist(), split_at.tolist())]
    inside, resplit = _follower_readings(suffixes, followers)
    # Context expansion: a suffix that ends follower F and goes on is kept only if what comes
    # after F can be read by a terminal that may follow F, and so on to the suffix's end. If
    # %ignore terminals alone can read the rest, F being expected decides it: count it inside F.
    chain_pairs, chain_first, chain_second, deep_pairs, deep_first = [], [], [], [], []
    inside_pairs, inside_terms = inside[0].tolist(), inside[1].tolist()
    for p, f in zip(resplit[0].tolist(), resplit[1].tolist()):
        if not context.readable_within(f, suffixes[p]):
            continue
        if context.ends_then_ignorable(f, suffixes[p]):
            inside_pairs.append(p)
            inside_terms.append(f)
            continue
        seconds, deeper = context.chains(f, suffixes[p])
        for g in seconds:
            chain_pairs.append(p)
            chain_first.append(f)
            chain_second.append(g)
        if deeper:
            deep_pairs.append(p)
            deep_first.append(f)
    # Pairs no follower can read are rejected in every context: drop them.
    keep = np.zeros(len(suffixes), dtype=np.bool_)
    keep[inside_pairs] = True
    keep[chain_pairs] = True
    keep[deep_pairs] = True
    renumber = np.cumsum(keep) - 1

    def pairs(indices: list[int]) -> np.ndarray:
        return renumber[np.array(indices, dtype=np.int64)].astype(np.int32)

    def terminals(ids: list[int]) -> np.ndarray:
        return np.array(ids, dtype=np.int32)

    return LexemeEntry(
        TokenSet.from_bool(allowed),
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
    suffixes: list[bytes], followers: list[tuple[int, ByteDFA]]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """How each follower terminal F reads each suffix, as (suffix indices, terminal ids) pairs:
    ``inside`` when F's DFA stays alive to the suffix's end, ``resplit`` when it dies after
    passing an accepting state (F may end inside the suffix and other terminals take over)."""
    inside_pairs, inside_terms, resplit_pairs, resplit_terms = [], [], [], []
    if suffixes:
        lengths = np.array([len(x) for x in suffixes], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")  # rows still reading at p: a prefix
        lengths = lengths[order]
        matrix = _byte_matrix([suffixes[i] for i in order], int(lengths[0]))
        for terminal, dfa in followers:
            table, accepting = _numpy_dfa(dfa)
            dead = dfa.num_states
            # Most suffixes cannot even start this terminal: walk only those whose first byte can.
            rows = np.flatnonzero(table[dfa.initial, matrix[:, 0]] != dead)
            if not rows.size:
                continue
            sub, sub_lengths = matrix[rows], lengths[rows]
            state = np.full(rows.size, dfa.initial, dtype=np.int32)
            reached_accept = np.zeros(rows.size, dtype=np.bool_)
            for position in range(int(sub_lengths[0])):
                active = int(np.count_nonzero(sub_lengths > position))
                current = table[state[:active], sub[:active, position]]
                state[:active] = current
                reached_accept[:active] |= accepting[current] & (sub_lengths[:active] > position + 1)
            alive = state != dead
            for selected, store_p, store_t in (
                (alive, inside_pairs, inside_terms),
                (~alive & reached_accept, resplit_pairs, resplit_terms),
            ):
                indices = order[rows[selected]]
                store_p.append(indices)
                store_t.append(np.full(indices.size, terminal, dtype=np.int32))

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

        def classify(rest: bytes) -> bool:
            nonlocal deeper
            for g in self.follow[terminal]:
                if self._reads(g, rest, self._ignorable, True):
                    seconds.add(g)
                elif self.readable_within(g, rest):
                    deeper = True
            return False  # look at every place where `terminal` may end

        self._reads(terminal, data, classify, False)
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


def _terminal_follow(tables: EarleyTables) -> list[set[int]]:
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


# -- fingerprints and JSON forms -------------------------------------------------------------------


def grammar_fingerprint(grammar: Grammar) -> str:
    """A stable hash of a grammar's content (rules, terminal regexes, ignore list, start rule)."""
    return hashlib.sha256(json.dumps(_grammar_to_json(grammar), sort_keys=True).encode()).hexdigest()


def tokenizer_fingerprint(info: TokenizerInfo) -> str:
    """A stable hash of a vocabulary: every token's bytes, the special and EOS ids, the size."""
    digest = hashlib.sha256()
    digest.update(f"{info.vocab_size}|{sorted(info.special_ids)}|{list(info.eos_token_ids)}|".encode())
    for token in info.token_bytes:
        digest.update(len(token).to_bytes(4, "little") + token)
    return digest.hexdigest()


def _grammar_to_json(grammar: Grammar) -> dict:
    return {
        "start": grammar.start,
        "rules": [[rule.lhs, list(rule.rhs)] for rule in grammar.rules],
        "terminals": {
            name: [t.regex, t.whole_input, t.shortest] for name, t in sorted(grammar.terminals.items())
        },
        "ignore": list(grammar.ignore),
    }


def _grammar_from_json(data: dict, dfas: dict[str, ByteDFA]) -> Grammar:
    terminals = {
        name: Terminal(name, regex, dfas[name], whole_input, shortest)
        for name, (regex, whole_input, shortest) in data["terminals"].items()
    }
    rules = [Rule(lhs, tuple(rhs)) for lhs, rhs in data["rules"]]
    return Grammar(rules, terminals, start=data["start"], ignore=tuple(data["ignore"]), source=SourceText("<compiled>", ""))
