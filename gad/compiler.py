"""`GrammarCompiler` binds a grammar to one tokenizer, producing an immutable `CompiledGrammar`.

"Compiling" builds the parser tables and the terminal FOLLOW sets — milliseconds. What the masks
need per (terminal, DFA state) — the tokens accepted in every context and the context-dependent
ones (`gad.entries`) — is built lazily, on the first mask that reaches that state, walking only the
live part of the sorted vocabulary, and kept: the first mask pays for the states it reaches, later
ones for nothing. `compile(..., eager=True)` builds every entry up front (a server that wants no
first-use cost), and `CompiledGrammar.save` stores what was built.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gad.bitmask import bitmask_words
from gad.entries import KIND_ACCEPTED, KIND_BITSET, KIND_REJECTED, EntryStore, LexemeEntry, TokenSet, Vocabulary
from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar, Rule, SourceText, Terminal
from gad.grammar.regex import ByteDFA
from gad.parser.earley import EarleyParser, EarleyTables
from gad.storage import load_arrays, save_arrays
from gad.tokenizer import TokenizerInfo

FORMAT_VERSION = 2


class CompiledGrammar:
    """A `Grammar` compiled for one `TokenizerInfo`; share it between matchers and threads.

    Its language and answers never change. ``entries`` (`gad.entries.EntryStore`) fills in as
    masks reach new (terminal, DFA state) pairs, and `reading` memoises how terminals read byte
    strings: caches, thread-safe, that only ever save work.
    """

    def __init__(self, grammar: Grammar, tokenizer_info: TokenizerInfo, tables: EarleyTables | None = None) -> None:
        self.grammar = grammar
        self.tokenizer_info = tokenizer_info
        self.parser = EarleyParser(tables if tables is not None else EarleyTables(grammar))
        self.entries = EntryStore(self.parser.tables, Vocabulary.of(tokenizer_info))
        self._readings: dict[bytes, tuple[frozenset[int], tuple[tuple[int, int], ...]]] = {}

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
        """Total number of context-dependent (token, split) pairs over the entries built so far."""
        return sum(e.split_tokens.shape[0] for _, _, e in self.entries.built())

    def __repr__(self) -> str:
        return f"CompiledGrammar({self.grammar!r}, vocab_size={self.vocab_size})"

    # -- persistence (no pickle: plain arrays and JSON) ---------------------------------------

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (a ``.npz`` file) atomically: the grammar, its automata and every
        mask entry built so far. Load it back with `CompiledGrammar.load`."""
        arrays: dict[str, np.ndarray] = {}
        built = self.entries.built()
        meta = {
            "format": FORMAT_VERSION,
            "tokenizer": tokenizer_fingerprint(self.tokenizer_info),
            "grammar": _grammar_to_json(self.grammar),
            "entries": [[t, q] for t, q, _ in built],
        }
        # Terminal automata are stored as they are, not rebuilt from their regexes on load:
        # some (e.g. JSON Schema strings with several constraints) are built by other means.
        for i, (_, terminal) in enumerate(sorted(self.grammar.terminals.items())):
            arrays[f"dfa_table_{i}"] = np.array(terminal.dfa.table, dtype=np.int32).reshape(-1, 256)
            arrays[f"dfa_accepting_{i}"] = np.array(sorted(terminal.dfa.accepting), dtype=np.int32)
            arrays[f"dfa_initial_{i}"] = np.array([terminal.dfa.initial], dtype=np.int32)
        for index, (_, _, entry) in enumerate(built):
            arrays[f"kind_{index}"] = np.array([entry.accepted.kind], dtype=np.int32)
            arrays[f"data_{index}"] = entry.accepted.data
            for name in LexemeEntry.ARRAYS:
                arrays[f"{name}_{index}"] = getattr(entry, name)
        save_arrays(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path, tokenizer_info: TokenizerInfo) -> CompiledGrammar:
        """Load a file written by `save`; the tokenizer must be the one it was compiled for.
        Everything read is validated (automata, ids, indices, sizes) before use: a damaged or
        foreign file raises `ConfigurationError` naming the file and what is wrong."""
        data, meta = load_arrays(path, "compiled grammar")
        if meta.get("format") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{path}: compiled-grammar format {meta.get('format')} is not {FORMAT_VERSION}; recompile"
            )
        if meta.get("tokenizer") != tokenizer_fingerprint(tokenizer_info):
            raise ConfigurationError(f"{path} was compiled for a different tokenizer")
        try:
            dfas = {}
            for i, (name, (regex, _, _)) in enumerate(meta["grammar"]["terminals"].items()):
                table = data[f"dfa_table_{i}"]
                n = table.shape[0] if table.ndim == 2 and table.shape[1:] == (256,) else -1
                accepting = data[f"dfa_accepting_{i}"].tolist()
                initial = data[f"dfa_initial_{i}"].tolist()
                if n < 1 or table.min() < -1 or table.max() >= n or len(initial) != 1:
                    raise ValueError(f"automaton of terminal {name!r} is malformed")
                dfas[name] = ByteDFA(
                    tuple(tuple(row) for row in table.tolist()), frozenset(accepting), int(initial[0]), regex
                )
            grammar = _grammar_from_json(meta["grammar"], dfas)
            compiled = cls(grammar, tokenizer_info)
            tables = compiled.parser.tables
            for index, (terminal, state) in enumerate(meta["entries"]):
                if not (0 <= terminal < len(tables.dfas) and 0 <= state < tables.dfas[terminal].num_states):
                    raise ValueError(f"entry {index} names terminal {terminal} state {state}, which do not exist")
                entry = LexemeEntry(
                    _checked_token_set(int(data[f"kind_{index}"][0]), data[f"data_{index}"], tokenizer_info),
                    *(data[f"{name}_{index}"] for name in LexemeEntry.ARRAYS),
                )
                _check_entry(entry, tokenizer_info, len(tables.terminal_names), index)
                compiled.entries.put(terminal, state, entry)
        except ConfigurationError as exc:
            raise ConfigurationError(f"cannot load compiled grammar {path}: {exc}") from None
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ConfigurationError(f"cannot load compiled grammar {path}: missing or bad entry ({exc})") from None
        return compiled


def _checked_token_set(kind: int, data: np.ndarray, info: TokenizerInfo) -> TokenSet:
    """A `TokenSet` read from a file, after checking its kind, dtype and values."""
    if kind in (KIND_ACCEPTED, KIND_REJECTED):
        if data.ndim != 1 or data.dtype != np.int32 or (data.size and (data.min() < 0 or data.max() >= info.vocab_size)):
            raise ValueError("a token list holds ids outside the vocabulary")
    elif kind == KIND_BITSET:
        if data.ndim != 1 or data.dtype != np.uint32 or data.shape[0] != bitmask_words(info.vocab_size):
            raise ValueError("a token bitset has the wrong size")
    else:
        raise ValueError(f"unknown token-set kind {kind}")
    return TokenSet(kind, data, info.vocab_size)


def _check_entry(entry: LexemeEntry, info: TokenizerInfo, num_terminals: int, index: int) -> None:
    """Check that a `LexemeEntry` read from a file is internally consistent."""
    for name in LexemeEntry.ARRAYS:
        array = getattr(entry, name)
        if array.ndim != 1 or array.dtype != np.int32:
            raise ValueError(f"entry {index}: {name} is not a 1-d int32 array")
    pairs = entry.split_tokens.shape[0]
    if entry.split_at.shape[0] != pairs:
        raise ValueError(f"entry {index}: split_tokens and split_at differ in length")
    if pairs:
        tokens = entry.split_tokens
        if tokens.min() < 0 or tokens.max() >= info.vocab_size:
            raise ValueError(f"entry {index}: a split token is outside the vocabulary")
        lengths = np.array([len(info.token_bytes[t]) for t in tokens.tolist()])
        if (entry.split_at < 1).any() or (entry.split_at >= lengths).any():
            raise ValueError(f"entry {index}: a split point is not inside its token")
    for pair_name, term_names in (("inside_pairs", ("inside_terminals",)),
                                  ("chain_pairs", ("chain_first", "chain_second")),
                                  ("deep_pairs", ("deep_terminals",))):
        pair_array = getattr(entry, pair_name)
        if pair_array.size and (pair_array.min() < 0 or pair_array.max() >= pairs):
            raise ValueError(f"entry {index}: {pair_name} points past its pairs")
        for term_name in term_names:
            terms = getattr(entry, term_name)
            if terms.shape != pair_array.shape or (terms.size and (terms.min() < 0 or terms.max() >= num_terminals)):
                raise ValueError(f"entry {index}: {term_name} names a terminal that does not exist")


class GrammarCompiler:
    """Compiles grammars for one tokenizer: ``GrammarCompiler(tok_info).compile(grammar)``.

    Compiling the same grammar again returns the cached `CompiledGrammar`. The vocabulary
    classification of a terminal's DFA states is shared by every grammar compiled for the same
    `TokenizerInfo` (memoised by automaton content), so grammars sharing terminals share that work.
    """

    def __init__(self, tokenizer_info: TokenizerInfo) -> None:
        if not isinstance(tokenizer_info, TokenizerInfo):
            raise ConfigurationError(
                f"`tokenizer_info` has to be a gad.TokenizerInfo, but is {type(tokenizer_info).__name__}"
            )
        self.tokenizer_info = tokenizer_info
        self._compiled: dict[str, CompiledGrammar] = {}

    def compile(self, grammar: Grammar | str, start: str = "start", *, eager: bool = False) -> CompiledGrammar:
        """Compile a `Grammar`, or Lark grammar text, for this compiler's tokenizer.

        Mask entries are built on first use; ``eager=True`` builds all of them now (cost:
        proportional to the terminals' DFA states times the tokens each state can read)."""
        if isinstance(grammar, str):
            grammar = Grammar.from_lark(grammar, start=start)
        elif not isinstance(grammar, Grammar):
            raise ConfigurationError(
                f"`grammar` has to be a gad.Grammar or Lark grammar text, but is {type(grammar).__name__}"
            )
        key = grammar_fingerprint(grammar)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled.setdefault(key, CompiledGrammar(grammar, self.tokenizer_info))
        if eager:
            compiled.entries.build_all()
        return compiled


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
