"""ASAp: adaptive sampling with approximate expected futures (Park et al., NeurIPS 2024).

**Target.** ``Q(w) ∝ P_T(w) · 1[w ∈ L(G)]``, the (tempered) model conditioned on the grammar. It
factorises as ``Q(t | u) ∝ P_T(t | u) · c(ut)`` with the *expected future grammaticality*

    c(u) = Σ_s P_T(s | u) · 1[us ∈ L(G)].

GCD (`gad.samplers.gcd`) replaces c by the viable-prefix indicator, which is why it over-samples
sentences with few grammatical continuations: on ``"00000" | "1" [01]{4}`` under a uniform model
it returns ``00000`` half of the time instead of 1/17.

**ASAp** keeps a trie of every prefix sampled so far. A node u stores the model's next-token
probabilities ``P_T(t | u)`` over the grammatical tokens t (the mask) and an estimate ĉ(ut) per
such t: 1 until ut is visited (the GCD guess), ``ĉ(ut)`` once it is, 1 for EOS (a finished
sentence), and ĉ(u) = Σ_t P_T(t | u) · ĉ(ut). The next token is drawn with probability
``∝ P_T(t | u) · ĉ(ut)``. After every sampled token the new node's ĉ is computed and pushed up to
the root (each ancestor's ĉ recomputed from its children). Each ĉ(u) is an over-approximation of
c(u) that never increases and converges to it as the trie fills, so the sampling distribution
converges to Q. The first sample is a GCD sample. (ĉ(u) is also exactly the probability mass,
under P_T, of the continuations of u not yet known to be dead — the "excluded mass" trie that
`gad.samplers.cars` turns into an exact rejection sampler.)

**Fixes over the reference code** (design notes):

* *No accidental sharing.* Tries live in a `TrieStore` owned by the sampler (never a default
  argument), one trie per ``(prompt ids, max_new_tokens)``; a store is bound to one grammar
  (fingerprinted), one temperature and one model (checked on load), so problems share state only
  when they are the same problem.
* *Batches.* `ASApSampler.sample` draws ``batch_size`` sequences at a time; they walk and update
  the same trie, each seeing the others' updates token by token; the LM is asked only for the
  prefixes that are new to the trie (for a Hugging Face model: the whole active batch when any
  row needs it, so the KV cache keeps extending by one token per step).
* *The length limit.* A sample cut at ``max_new_tokens`` is **not** grammatical: a prefix at the
  limit has ĉ = 0, and at depth ``max_new_tokens - 1`` only EOS keeps ĉ = 1. ASAp therefore
  targets ``Q_N(w) ∝ P_T(w) · 1[w ∈ L(G), |w| ≤ N]`` with ``N = max_new_tokens`` (EOS counted),
  which is `gad.exact.exact_distribution` with ``max_length = N``. (The reference counted a cut
  sample as a success, which makes ASAp prefer prefixes that run into the limit.) A sampled
  prefix whose every continuation has ĉ = 0 can still occur (ĉ was an over-approximation when it
  was chosen): that sample continues under the plain mask (GCD) and usually ends at the limit,
  ``finish_reason="length"``.
* *Temperature first.* ``P_T ∝ P^(1/T)`` is applied to the model's distribution before the
  reweighting, so the target is the tempered model conditioned on the grammar.

**Persistence and memory.** `ASApSampler.save` writes every trie (``.npz`` of plain arrays plus
JSON metadata, no pickle, format-versioned, written to a temporary file and renamed);
`ASApSampler.load` reads it back, refuses (`ConfigurationError` naming the file and what is
wrong) anything `TrieStore.save` could not have written — values out of range, indices out of
bounds, a broken tree, inconsistent counts (`gad.samplers.trie_file`) — and checks the grammar,
tokenizer, temperature and (by recomputing the root's next-token distribution) the model. Each stored entry costs 24 bytes
(int32 id, float32 model log-prob, float64 P_T and ĉ) plus about 200 bytes of Python per node;
`TrieStore.stats()` reports it, and ``max_nodes`` bounds it: beyond the bound new prefixes are
still expanded and used by the sample that reached them, but neither kept nor pushed up, so the
kept trie's ĉ still only decreases (it just stops learning below its frontier, where ĉ stays 1
for unvisited children).

**Seeds.** Sample k of a trie — k counts every sample the trie has recorded, across calls and
after `load` — draws from a generator seeded by ``(seed, k)``. Calling `ASApSampler.sample`
again with the same explicit seed therefore continues with fresh random numbers instead of
replaying the first call's against a grown trie (which kept KL at 1.10 nats instead of 0.016),
and a fresh sampler replays a whole sequence of calls exactly.

**Cost.** Per token: one mask (only for a new node), one LM row (only for a new node), and one
dot product of length |allowed| per ancestor to push ĉ up — O(depth · |allowed|), so a sample of
length L costs O(L² · |allowed|) trie work on top of the LM; see `benchmarks/asap_kl.py`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from gad.compiler import grammar_fingerprint, tokenizer_fingerprint
from gad.constraint import Constraint, ConstraintFactory, ConstraintLike, as_constraint_factory
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers.base import Sample, Sampler, check_positive_int, check_sampling_args, draw, seed_for, temper
from gad.samplers.trie_file import check_trie_file
from gad.storage import load_arrays, save_arrays

__all__ = ["ASApSampler", "ExpectedFuturesTrie", "TrieNode", "TrieStore", "sampling_distribution"]

FORMAT = "gad-asap-trie"
FORMAT_VERSION = 1
#: Approximate Python overhead of one node (object, slots, children dict), for `stats()`.
NODE_OVERHEAD_BYTES = 200

TrieKey = tuple[tuple[int, ...], int]  # (prompt ids, max_new_tokens)


class TrieNode:
    """One prefix u of the trie. Until `expanded`, it knows only its place and ``value = 1``.

    Attributes:
        parent: the node of u minus its last token (None at the root).
        index: the position of u's last token in ``parent.ids``.
        depth: len(u) (generated tokens, the prompt excluded).
        ids: ``int32[A]``, the grammatical next tokens with positive probability, ascending.
        logp: ``float32[A]``, ``log P(t | u)`` at temperature 1 (for ``logprob_model``).
        p: ``float64[A]``, ``P_T(t | u)``.
        c: ``float64[A]``, ĉ(ut): 1 if unvisited or EOS, the child's `value` once visited.
        value: ĉ(u) = Σ p·c (1.0 until expanded).
        children: visited children kept in the trie, by index into `ids`.
    """

    __slots__ = ("parent", "index", "depth", "ids", "logp", "p", "c", "value", "children")

    def __init__(self, parent: TrieNode | None, index: int, depth: int) -> None:
        self.parent = parent
        self.index = index
        self.depth = depth
        self.ids: np.ndarray | None = None
        self.logp: np.ndarray | None = None
        self.p: np.ndarray | None = None
        self.c: np.ndarray | None = None
        self.value = 1.0
        self.children: dict[int, TrieNode] = {}

    @property
    def expanded(self) -> bool:
        return self.ids is not None

    def weights(self) -> np.ndarray:
        """``P_T(t | u) · ĉ(ut)`` over `ids` (unnormalised). The node must be expanded."""
        return self.p * self.c  # type: ignore[operator]

    def position(self, token: int) -> int | None:
        """The index of `token` in `ids`, or None if it is not a grammatical next token."""
        if self.ids is None:
            return None
        i = int(np.searchsorted(self.ids, token))
        return i if i < len(self.ids) and int(self.ids[i]) == token else None

    def tokens(self) -> tuple[int, ...]:
        """The generated tokens u leading to this node."""
        out = []
        node = self
        while node.parent is not None:
            out.append(int(node.parent.ids[node.index]))  # type: ignore[index]
            node = node.parent
        return tuple(reversed(out))

    def __repr__(self) -> str:
        state = f"{len(self.ids)} allowed" if self.ids is not None else "unexpanded"
        return f"TrieNode(depth={self.depth}, value={self.value:.6g}, {state})"


class ExpectedFuturesTrie:
    """The ĉ trie of one problem: one prompt, one grammar, one model, T, and N = ``max_length``.

    Args:
        max_length: N, the most tokens a sample may have (EOS included); prefixes of length N
            have ĉ = 0.
        temperature: T, applied to the model's log-probabilities before anything else.
        eos_token_ids: the ids that end a sentence (ĉ = 1).
        max_nodes: keep at most this many nodes (None: no bound); see the module docstring.
    """

    def __init__(
        self, max_length: int, temperature: float, eos_token_ids: Sequence[int], max_nodes: int | None = None
    ) -> None:
        self.max_length = int(max_length)
        self.temperature = float(temperature)
        self.eos = np.array(sorted(set(int(e) for e in eos_token_ids)), dtype=np.int64)
        self.max_nodes = max_nodes
        self.root = TrieNode(None, -1, 0)
        self.num_nodes = 1
        self.num_entries = 0
        #: Samples recorded: all of them, and those that ended with EOS.
        self.num_samples = 0
        self.num_complete = 0

    # -- building ---------------------------------------------------------------------------------

    def is_kept(self, node: TrieNode) -> bool:
        """Whether `node` is stored in the trie (False for a transient node beyond `max_nodes`)."""
        return node.parent is None or node.parent.children.get(node.index) is node

    def expand(
        self, node: TrieNode, logprobs: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, *, push: bool = True
    ) -> None:
        """Give an unexpanded node its next-token distribution and push its ĉ up to the root.

        Args:
            node: the node of prefix u.
            logprobs: ``float[V]``, ``log P(· | u)`` from the model (temperature 1, normalised).
            mask: ``bool[V]``, the grammar's next-token mask after u.
            push: push ĉ(u) up now (`propagate`); False leaves it to the caller (CARS pushes a
                batch's new nodes after the batch). A transient node is never pushed up.
        """
        if node.expanded:
            return
        if isinstance(logprobs, torch.Tensor):
            logprobs = logprobs.detach().cpu().numpy()
        logprobs = np.asarray(logprobs, dtype=np.float64)
        tempered = temper(logprobs, self.temperature) if self.temperature != 1.0 else logprobs
        mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        allowed = np.flatnonzero(mask & (tempered > -math.inf))
        node.ids = allowed.astype(np.int32)
        node.logp = logprobs[allowed].astype(np.float32)
        node.p = np.exp(tempered[allowed])
        c = np.ones(len(node.ids))
        if node.depth >= self.max_length - 1:  # only EOS can still end within the limit
            c[~np.isin(node.ids, self.eos)] = 0.0
        node.c = c
        node.value = float(np.dot(node.p, c))
        if self.is_kept(node):
            self.num_entries += len(node.ids)
            if push:
                self.propagate(node)

    def child(self, node: TrieNode, index: int) -> TrieNode:
        """The node of u·ids[index], created (unexpanded) if new; kept unless `max_nodes` is hit."""
        kid = node.children.get(index)
        if kid is None:
            kid = TrieNode(node, index, node.depth + 1)
            if self.max_nodes is None or self.num_nodes < self.max_nodes:
                node.children[index] = kid
                self.num_nodes += 1
        return kid

    def set_value(self, node: TrieNode, value: float) -> None:
        """Lower ĉ(u) to `value` (e.g. 0 for a prefix at the length limit) and push it up."""
        if value < node.value:
            node.value = value
            self.propagate(node)

    def propagate(self, node: TrieNode) -> None:
        """ĉ(parent) = Σ_t P_T(t | parent) · ĉ(parent·t), from `node` up to the root.

        Values only decrease (each child's does, and a dot product of non-negative terms in a
        fixed order is monotone under rounding); it stops early where nothing changes. A
        transient node (not kept, see `max_nodes`) is not pushed up.
        """
        if not self.is_kept(node):
            return
        while node.parent is not None:
            parent = node.parent
            if parent.c[node.index] == node.value:  # type: ignore[index]
                return
            parent.c[node.index] = node.value  # type: ignore[index]
            parent.value = float(np.dot(parent.p, parent.c))  # type: ignore[arg-type]
            node = parent

    # -- reading ----------------------------------------------------------------------------------

    def find(self, tokens: Sequence[int]) -> TrieNode | None:
        """The stored node of prefix `tokens`, or None."""
        node = self.root
        for token in tokens:
            i = node.position(int(token))
            if i is None or i not in node.children:
                return None
            node = node.children[i]
        return node

    def next_token_distribution(self, tokens: Sequence[int] = ()) -> dict[int, float]:
        """``{t: q(t | u)}``, what ASAp would draw the token after `tokens` from now (q ∝ P_T·ĉ),
        for a stored, expanded node. This method does not change the trie."""
        node = self.find(tokens)
        if node is None or not node.expanded:
            raise ConfigurationError(f"the prefix {tuple(tokens)} is not an expanded node of this trie")
        ids, q = sampling_distribution(node)
        return dict(zip(ids.tolist(), q.tolist()))

    def nodes(self) -> Iterator[TrieNode]:
        """Every stored node, parents before children (depth-first)."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children[i] for i in sorted(node.children, reverse=True))

    def stats(self) -> dict[str, float]:
        """Size of the trie: nodes, stored (token, probability, ĉ) entries, approximate bytes,
        samples recorded, and the root's ĉ (an upper bound on Z = P(L(G) ∩ length ≤ N))."""
        return {
            "nodes": self.num_nodes,
            "entries": self.num_entries,
            "bytes": self.num_entries * 24 + self.num_nodes * NODE_OVERHEAD_BYTES,
            "samples": self.num_samples,
            "complete": self.num_complete,
            "root_value": self.root.value,
        }

    def __repr__(self) -> str:
        return (
            f"ExpectedFuturesTrie(nodes={self.num_nodes}, samples={self.num_samples}, "
            f"root ĉ={self.root.value:.6g}, max_length={self.max_length})"
        )


def sampling_distribution(node: TrieNode) -> tuple[np.ndarray, np.ndarray]:
    """ASAp's draw step at an expanded node u: ``(ids, q)`` with ``q(t) ∝ P_T(t | u) · ĉ(ut)`` over
    the grammatical ids, normalised. Where every ĉ is 0 (every continuation is known to be dead, or
    past the length limit) it falls back to the plain mask, ``q ∝ P_T`` (GCD). The one function the
    sampler and `gad.integrations.asap_hf.ASApLogitsProcessor` should both draw from.

    Raises:
        DeadEndError: the model gives probability 0 to every token the grammar allows.
    """
    weights = node.weights()
    total = float(weights.sum())
    if not total > 0:
        weights = node.p  # type: ignore[assignment]
        total = float(weights.sum())
        if not total > 0:
            raise DeadEndError(
                "the model gives probability 0 to every token the grammar allows next; nothing can be sampled"
            )
    return node.ids.astype(np.int64), weights / total  # type: ignore[union-attr]


class TrieStore:
    """The tries of one (constraint, model, temperature), one per ``(prompt ids, max_new_tokens)``.

    Args:
        compiled: the constraint (a `CompiledGrammar` or a `gad.constraint.ConstraintFactory`);
            its fingerprint is saved with the tries (a factory without one saves none, and such
            a file cannot check that it is reloaded with the same constraint).
        temperature: T.
        max_nodes: the bound given to each trie (None: unbounded).
    """

    def __init__(self, compiled: ConstraintLike, temperature: float = 1.0, max_nodes: int | None = None) -> None:
        constraints = as_constraint_factory(compiled)
        check_sampling_args(temperature=temperature)
        if max_nodes is not None and (isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1):
            raise ConfigurationError(f"`max_nodes` has to be None or a strictly positive int, but is {max_nodes!r}")
        self.constraints = constraints
        self.compiled = constraints.compiled
        self.temperature = float(temperature)
        self.max_nodes = max_nodes
        self.tries: dict[TrieKey, ExpectedFuturesTrie] = {}

    def get(self, prompt_ids: Sequence[int], max_length: int) -> ExpectedFuturesTrie:
        """The trie of this prompt and length limit (a new, empty one the first time)."""
        key = (tuple(int(t) for t in prompt_ids), int(max_length))
        trie = self.tries.get(key)
        if trie is None:
            trie = self.tries[key] = ExpectedFuturesTrie(
                max_length, self.temperature, self.constraints.eos_token_ids, self.max_nodes
            )
        return trie

    def same_constraint(self, other: ConstraintFactory) -> bool:
        """Whether `other` is this store's constraint (by identity or fingerprint)."""
        mine = self.constraints
        if other is mine or (mine.compiled is not None and other.compiled is mine.compiled):
            return True
        return _fingerprints(mine) == _fingerprints(other) and mine.fingerprint is not None

    def stats(self) -> dict[str, float]:
        """`ExpectedFuturesTrie.stats` summed over the tries (without root_value), plus ``tries``."""
        total: dict[str, float] = {"tries": len(self.tries), "nodes": 0, "entries": 0, "bytes": 0, "samples": 0, "complete": 0}
        for trie in self.tries.values():
            for k, v in trie.stats().items():
                if k in total:
                    total[k] += v
        return total

    # -- persistence ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every trie to `path` (``.npz``: plain arrays and JSON, no pickle), atomically."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        tries_meta = []
        for k, ((prompt, max_length), trie) in enumerate(self.tries.items()):
            nodes = list(trie.nodes())
            number = {id(node): i for i, node in enumerate(nodes)}
            parent = np.array([number[id(n.parent)] if n.parent is not None else -1 for n in nodes], dtype=np.int64)
            index = np.array([n.index for n in nodes], dtype=np.int64)
            value = np.array([n.value for n in nodes], dtype=np.float64)
            sizes = np.array([len(n.ids) if n.expanded else -1 for n in nodes], dtype=np.int64)
            expanded = [n for n in nodes if n.expanded]
            cat = lambda name, dtype: (  # noqa: E731
                np.concatenate([getattr(n, name) for n in expanded]).astype(dtype) if expanded else np.zeros(0, dtype)
            )
            arrays.update({
                f"t{k}_prompt": np.array(prompt, dtype=np.int64),
                f"t{k}_parent": parent, f"t{k}_index": index, f"t{k}_value": value, f"t{k}_sizes": sizes,
                f"t{k}_ids": cat("ids", np.int32), f"t{k}_logp": cat("logp", np.float32),
                f"t{k}_p": cat("p", np.float64), f"t{k}_c": cat("c", np.float64),
            })
            tries_meta.append({"max_length": max_length, "samples": trie.num_samples, "complete": trie.num_complete})
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            **_fingerprints(self.constraints),
            "temperature": self.temperature,
            "max_nodes": self.max_nodes,
            "tries": tries_meta,
        }
        save_arrays(path, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], compiled: ConstraintLike) -> TrieStore:
        """Read a file written by `save`; `compiled` must be the same constraint (grammar and
        tokenizer)."""
        path = Path(path)
        constraints = as_constraint_factory(compiled)
        data, meta = load_arrays(path, "ASAp trie file")
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{path}: not an ASAp trie file of version {FORMAT_VERSION} "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
            )
        for key, value in _fingerprints(constraints).items():
            if meta.get(key) != value:
                what = {"grammar": "grammar", "tokenizer": "tokenizer"}.get(key, "constraint")
                raise ConfigurationError(f"{path} holds tries for a different {what}")
        check_trie_file(path, data, meta, constraints.vocab_size)
        try:
            store = cls(constraints, meta["temperature"], meta["max_nodes"])
            for k, info in enumerate(meta["tries"]):
                arr = {name: data[f"t{k}_{name}"] for name in
                       ("prompt", "parent", "index", "value", "sizes", "ids", "logp", "p", "c")}
                trie = store.get(arr["prompt"].tolist(), info["max_length"])
                trie.num_samples, trie.num_complete = info["samples"], info["complete"]
                _fill(trie, arr)
        except (KeyError, ValueError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"{path}: not a readable ASAp trie file ({type(exc).__name__}: {exc})") from None
        return store


def _fingerprints(constraints: ConstraintFactory) -> dict[str, str | None]:
    """What a trie file records of its constraint: the grammar's and the tokenizer's fingerprints
    for a `CompiledGrammar`, the factory's own fingerprint otherwise."""
    if constraints.compiled is not None:
        return {
            "grammar": grammar_fingerprint(constraints.compiled.grammar),
            "tokenizer": tokenizer_fingerprint(constraints.compiled.tokenizer_info),
        }
    return {"constraint": constraints.fingerprint}


def _fill(trie: ExpectedFuturesTrie, arr: dict[str, np.ndarray]) -> None:
    """Rebuild a trie's nodes from the arrays `TrieStore.save` wrote (parents come first)."""
    nodes: list[TrieNode] = []
    offset = 0
    for i, (parent, index, value, size) in enumerate(
        zip(arr["parent"].tolist(), arr["index"].tolist(), arr["value"].tolist(), arr["sizes"].tolist())
    ):
        if i == 0:
            node = trie.root
        else:
            if not 0 <= parent < i:
                raise ValueError(f"node {i} has parent {parent}")
            up = nodes[parent]
            node = TrieNode(up, index, up.depth + 1)
            up.children[index] = node
            trie.num_nodes += 1
        node.value = value
        if size >= 0:
            end = offset + size
            node.ids = arr["ids"][offset:end].astype(np.int32)
            node.logp = arr["logp"][offset:end].astype(np.float32)
            node.p = arr["p"][offset:end].astype(np.float64)
            node.c = arr["c"][offset:end].astype(np.float64)
            trie.num_entries += size
            offset = end
        nodes.append(node)


class TrieSampler(Sampler):
    """What ASAp and CARS share: a `TrieStore` of expected-futures tries, its checks, save/load.

    Args:
        lm, compiled, temperature: as for every `Sampler`.
        batch_size: how many sequences walk the trie together.
        max_nodes: bound on each trie's nodes (None: unbounded).
        store: continue from these tries (e.g. `TrieStore.load`); it must be for `compiled` and
            `temperature`.
    """

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        temperature: float = 1.0,
        batch_size: int = 8,
        max_nodes: int | None = None,
        store: TrieStore | None = None,
    ) -> None:
        super().__init__(lm, compiled, temperature=temperature)
        check_positive_int("batch_size", batch_size)
        if store is None:
            store = TrieStore(self.constraints, temperature, max_nodes)
        elif not isinstance(store, TrieStore):
            raise ConfigurationError(f"`store` has to be a TrieStore, but is {type(store).__name__}")
        elif store.temperature != float(temperature):
            raise ConfigurationError(
                f"the store was built at temperature {store.temperature}, not {temperature}: its ĉ "
                "estimates belong to another target distribution"
            )
        elif not store.same_constraint(self.constraints):
            raise ConfigurationError("the store belongs to another grammar or tokenizer")
        self.batch_size = batch_size
        self.store = store
        #: Work done by this sampler: model calls (forward passes) and rows, masks computed.
        self.counts = {"model_calls": 0, "model_rows": 0, "masks": 0}

    def trie(self, prompt_ids: Sequence[int], max_new_tokens: int) -> ExpectedFuturesTrie:
        """The trie of this problem (created empty the first time)."""
        return self.store.get(prompt_ids, max_new_tokens)

    def stats(self) -> dict[str, float]:
        """The size of every trie together (see `TrieStore.stats`)."""
        return self.store.stats()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save every trie (see `TrieStore.save`) to continue later with `load`."""
        self.store.save(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        batch_size: int = 8,
        check_model: bool = True,
        atol: float = 1e-3,
        **options: object,
    ) -> TrieSampler:
        """A sampler continuing from the tries saved in `path` (by ASAp or CARS: the tries are
        the same).

        With `check_model`, each trie's root distribution is recomputed with `lm` and compared
        (absolute tolerance `atol` on the stored probabilities): tries made with another model
        or prompt handling raise `ConfigurationError` instead of silently mis-steering.
        """
        store = TrieStore.load(path, compiled)
        for prompt, _ in store.tries:
            if any(t >= lm.vocab_size for t in prompt):
                raise ConfigurationError(
                    f"{path}: not a valid ASAp/CARS trie file for this model: prompt token id {max(prompt)} "
                    f"is outside the model's vocabulary [0, {lm.vocab_size})"
                )
        sampler = cls(lm, compiled, temperature=store.temperature, batch_size=batch_size, store=store, **options)
        if check_model:
            for (prompt, _), trie in store.tries.items():
                root = trie.root
                if not root.expanded:
                    continue
                now = np.exp(temper(lm.next_token_logprobs([list(prompt)])[0], store.temperature))
                now = now[root.ids.astype(np.int64)]  # type: ignore[union-attr]
                if now.shape != root.p.shape or not np.allclose(now, root.p, atol=atol, rtol=0):
                    raise ConfigurationError(
                        f"{path}: the model's next-token distribution after prompt {list(prompt)[:8]}... "
                        "differs from the saved trie's: it was built with another model"
                    )
        return sampler

    def progress_total(self, n: int, max_new_tokens: int) -> int:
        return max_new_tokens * -(-n // self.batch_size)

    def _expand(self, trie: ExpectedFuturesTrie, prompt: list[int], rows: list[_Row], *, push: bool = True) -> list[TrieNode]:
        """Expand the nodes of `rows` new to the trie: one LM call for every row (so a KV-caching
        model extends each row by one token), one mask per new node. Returns the new nodes."""
        fresh = [r for r in rows if not r.node.expanded]
        if not fresh:
            return []
        logprobs = self.lm.next_token_logprobs([prompt + r.tokens for r in rows])
        where = {id(r): b for b, r in enumerate(rows)}
        first = list({id(r.node): r for r in fresh}.values())  # rows at the same new node share it
        masks = self.masks([r.constraint for r in first], logprobs.shape[-1])
        new = []
        for r, mask in zip(first, masks):
            trie.expand(r.node, logprobs[where[id(r)]], mask, push=push)
            new.append(r.node)
        self.counts["model_calls"] += 1
        self.counts["model_rows"] += len(rows)
        self.counts["masks"] += len(new)
        return new

    def _rows(self, trie: ExpectedFuturesTrie, base: int, count: int) -> list[_Row]:
        """`count` new rows at the root; row j is sample ``trie.num_samples + j`` of the trie and
        draws from a generator seeded by ``(base, that index)`` (see the module docstring)."""
        first = trie.num_samples
        return [
            _Row(self.constraints(), trie.root, torch.Generator().manual_seed(seed_for(base, first + j)))
            for j in range(count)
        ]


class _Row:
    """One sequence being drawn: its constraint state, its trie node, what it has produced."""

    __slots__ = ("constraint", "node", "tokens", "logp_model", "logp_sampler", "generator", "finish", "expected")

    def __init__(self, constraint: Constraint, node: TrieNode, generator: torch.Generator) -> None:
        self.constraint = constraint
        self.node = node
        self.tokens: list[int] = []
        self.logp_model = 0.0
        self.logp_sampler = 0.0
        self.generator = generator
        self.finish: str | None = None
        self.expected = 1.0  # CARS: ĉ of this row's node when its parent chose it

    def uniform(self) -> float:
        return float(torch.rand(1, generator=self.generator, dtype=torch.float64))


class ASApSampler(TrieSampler):
    """Grammar-aligned sampling with a persistent expected-futures trie (see the module docstring).

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (or a constraint factory); its
            EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the reweighting.
        batch_size: how many sequences walk the trie together (default 8). Smaller batches learn
            more between samples (batch 1 is the paper's sequential algorithm); larger ones
            amortise the model's forward passes.
        max_nodes: bound on each trie's nodes (None: unbounded; `stats()` reports the size).
        store: continue from these tries (e.g. `TrieStore.load`); it must be for `compiled` and
            `temperature`.

    >>> import gad
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> sampler = gad.ASApSampler(gad.UniformLM(3), compiled)
    >>> samples = sampler.sample([], n=200, max_new_tokens=6, seed=0)
    >>> sum(s.token_ids == (0, 0, 0, 0, 0, 2) for s in samples[100:]) < 30   # GCD: about 50
    True
    """

    name = "asap"
    guarantee = "consistent"
    summary = "grammar-aligned sampling: the -n samples share one expected-futures trie and converge to Q"

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[Sample]:
        """Draw `n` sequences after `prompt_ids`, `batch_size` at a time, updating the trie.

        Samples are returned in the order they were drawn (batch by batch), so sample i saw the
        trie as samples ``0 … i-1`` (and the rest of its batch) left it. ``logprob_sampler`` is
        ``Σ_i log q_i`` with q_i ASAp's reweighted distribution (`sampling_distribution`) as it
        was when token i was drawn.

        Args:
            prompt_ids: the context; it is given to the model but never to the grammar.
            n: how many sequences.
            max_new_tokens: N, the length limit (EOS included); part of the trie's key.
            seed: sample k of the trie (counting the samples it recorded before this call) draws
                from a generator seeded by ``(seed, k)``; None draws a fresh seed. (Unlike GCD, a
                sequence also depends on every sequence drawn before it.)
            progress: called with 1 after each decoding step of each batch.

        Raises:
            DeadEndError: no allowed token has positive probability under the model.
        """
        check_sampling_args(n=n, max_new_tokens=max_new_tokens, seed=seed)
        prompt = self.check_prompt(prompt_ids)
        trie = self.trie(prompt, max_new_tokens)
        base = self.base_seed(seed)
        out: list[Sample] = []
        for lo in range(0, n, self.batch_size):
            rows = self._rows(trie, base, min(n, lo + self.batch_size) - lo)
            self._run_batch(trie, prompt, rows, progress)
            for row in rows:
                trie.num_samples += 1
                trie.num_complete += row.finish == "eos"
                out.append(Sample(tuple(row.tokens), row.logp_model, row.logp_sampler, row.finish))  # type: ignore[arg-type]
        return out

    def _run_batch(
        self, trie: ExpectedFuturesTrie, prompt: list[int], rows: list[_Row], progress: Callable[[int], object] | None
    ) -> None:
        eos = set(self.eos_ids)
        active = rows
        for _ in range(trie.max_length):
            # 1. Expand the nodes new to the trie (a cached node needs no model call).
            self._expand(trie, prompt, active)
            # 2. Draw each row's next token ∝ P_T · ĉ, with the trie as it is now.
            still = []
            for r in active:
                node = r.node
                ids, q = sampling_distribution(node)
                i = draw(q, r.uniform())
                token = int(ids[i])
                if not r.constraint.accept_token(token):
                    raise GadError(f"internal error: the grammar rejected token {token}, which its mask allowed")
                r.tokens.append(token)
                r.logp_model += float(node.logp[i])  # type: ignore[index]
                r.logp_sampler += math.log(float(q[i]))
                if token in eos:
                    r.finish = "eos"
                    continue
                if len(r.tokens) >= trie.max_length:
                    # Cut by the limit: not grammatical. ĉ of this prefix is 0, which the node at
                    # depth N - 1 already holds (see `expand`), so there is nothing to record.
                    r.finish = "length"
                    continue
                r.node = trie.child(node, i)
                still.append(r)
            active = still
            if progress is not None:
                progress(1)
            if not active:
                break

    def __repr__(self) -> str:
        return f"ASApSampler({self.lm!r}, temperature={self.temperature}, batch_size={self.batch_size}, {self.stats()})"
