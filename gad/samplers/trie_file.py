"""Checks of an ASAp / CARS trie file's contents before a single node is built from it.

`gad.storage.load_arrays` has already refused a damaged archive or a member whose declared size
disagrees with what it stores; `check_trie_file` then refuses anything `TrieStore.save` could
not have written: the metadata's types and ranges, each trie's arrays (dtype kind, one dimension,
lengths that agree), the tree (node 0 the root; every parent an earlier node, so no cycle; every
child at an index in range of its parent's expanded entries, no two at one index; depth below
the length limit; at most ``max_nodes`` nodes), token ids in ``[0, vocab_size)`` and ascending per
node, prompt ids non-negative, ``log P ≤ 0`` finite, ``P_T``, ĉ and values finite and in [0, 1],
each node's mass ``Σ P_T ≤ 1``, each expanded node's value equal to ``Σ P_T · ĉ`` and to its
parent's ĉ entry, and the sample counts consistent. Each failure is a `ConfigurationError` (a
`gad.GadError`) naming the file, the trie, the node and what is wrong. The fingerprint and
format version are checked by `TrieStore.load` itself. No state changes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gad.errors import ConfigurationError

__all__ = ["ARRAYS", "check_trie_file"]

#: Each trie's arrays, with the kind of dtype each must have (``i``: integer, ``f``: float).
ARRAYS = {"prompt": "i", "parent": "i", "index": "i", "value": "f", "sizes": "i",
          "ids": "i", "logp": "f", "p": "f", "c": "f"}  # fmt: skip
#: Rounding slack for sums and dot products recomputed from stored float64 values.
TOLERANCE = 1e-9


def _count(meta: dict, key: str, what: str) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} {key!r} is {value!r}, not a non-negative int")
    return value


def _check_meta(meta: dict) -> None:
    temperature = meta.get("temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature {temperature!r} is not a positive finite number")
    max_nodes = meta.get("max_nodes")
    if max_nodes is not None and (isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1):
        raise ValueError(f"max_nodes {max_nodes!r} is not None or a positive int")
    if not isinstance(meta.get("tries"), list) or not all(isinstance(t, dict) for t in meta["tries"]):
        raise ValueError("'tries' is not a list of objects")
    for k, info in enumerate(meta["tries"]):
        if _count(info, "max_length", f"trie {k}:") < 1:
            raise ValueError(f"trie {k}: max_length is 0")
        if _count(info, "complete", f"trie {k}:") > _count(info, "samples", f"trie {k}:"):
            raise ValueError(f"trie {k}: {info['complete']} complete samples out of {info['samples']}")


def _check_arrays(arrays: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    arr = {}
    for name, kind in ARRAYS.items():
        a = arrays.get(f"t{k}_{name}")
        if a is None:
            raise ValueError(f"trie {k}: array {name!r} is missing")
        if a.ndim != 1 or a.dtype.kind not in (kind if kind == "f" else "iu"):
            raise ValueError(f"trie {k}: array {name!r} is {a.dtype}{list(a.shape)}, not a 1-D {'float' if kind == 'f' else 'int'} array")
        arr[name] = a
    nodes = len(arr["parent"])
    if nodes < 1 or len(arr["index"]) != nodes or len(arr["value"]) != nodes or len(arr["sizes"]) != nodes:
        raise ValueError(f"trie {k}: parent/index/value/sizes have lengths "
                         f"{[len(arr[n]) for n in ('parent', 'index', 'value', 'sizes')]}, not one positive length")  # fmt: skip
    sizes = arr["sizes"].astype(np.int64)
    if np.any(sizes < -1):
        raise ValueError(f"trie {k}: node {int(np.argmax(sizes < -1))} has {int(sizes.min())} entries")
    entries = int(sizes[sizes > 0].sum())
    for name in ("ids", "logp", "p", "c"):
        if len(arr[name]) != entries:
            raise ValueError(f"trie {k}: array {name!r} has {len(arr[name])} entries, the nodes' sizes add up to {entries}")
    return arr


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _check_values(arr: dict[str, np.ndarray], k: int, vocab_size: int) -> None:
    prompt = arr["prompt"]
    if np.any(prompt < 0):
        raise ValueError(f"trie {k}: prompt token id {int(prompt.min())} is negative")
    ids = arr["ids"].astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        i = _first((ids < 0) | (ids >= vocab_size))
        raise ValueError(f"trie {k}: token id {int(ids[i])} (entry {i}) is outside the vocabulary [0, {vocab_size})")
    logp = arr["logp"].astype(np.float64)
    if not np.all(np.isfinite(logp) & (logp <= 1e-3)):
        i = _first(~(np.isfinite(logp) & (logp <= 1e-3)))
        raise ValueError(f"trie {k}: log P = {logp[i]} (entry {i}) is not a finite log-probability")
    for name in ("p", "c", "value"):
        a = arr[name].astype(np.float64)
        bad = ~(np.isfinite(a) & (a >= 0) & (a <= 1))
        if np.any(bad):
            i = _first(bad)
            where = "node" if name == "value" else "entry"
            raise ValueError(f"trie {k}: {name} = {a[i]} ({where} {i}) is not a probability in [0, 1]")


def _check_tree(arr: dict[str, np.ndarray], k: int, max_length: int, max_nodes: int | None) -> None:
    parent = arr["parent"].astype(np.int64).tolist()
    index = arr["index"].astype(np.int64).tolist()
    sizes = arr["sizes"].astype(np.int64).tolist()
    value = arr["value"].astype(np.float64)
    ids, p, c = arr["ids"].astype(np.int64), arr["p"].astype(np.float64), arr["c"].astype(np.float64)
    nodes = len(parent)
    if max_nodes is not None and nodes > max_nodes:
        raise ValueError(f"trie {k}: {nodes} nodes, more than max_nodes={max_nodes}")
    if parent[0] != -1:
        raise ValueError(f"trie {k}: node 0 (the root) has parent {parent[0]}")
    offsets = np.concatenate([[0], np.cumsum([max(s, 0) for s in sizes])]).astype(np.int64)
    depth = [0] * nodes
    seen: set[tuple[int, int]] = set()
    for i in range(nodes):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        if sizes[i] >= 0:
            if np.any(np.diff(ids[lo:hi]) <= 0):
                raise ValueError(f"trie {k}: node {i}'s token ids are not strictly ascending")
            if float(p[lo:hi].sum()) > 1 + TOLERANCE:
                raise ValueError(f"trie {k}: node {i}'s probabilities add up to {float(p[lo:hi].sum())} > 1")
            dot = float(np.dot(p[lo:hi], c[lo:hi]))
            if abs(dot - value[i]) > TOLERANCE * max(1.0, dot):
                raise ValueError(f"trie {k}: node {i} has value {value[i]}, but its entries give {dot}")
        if i == 0:
            continue
        up, at = parent[i], index[i]
        if not 0 <= up < i:
            raise ValueError(f"trie {k}: node {i} has parent {up} (parents come before their children)")
        if not 0 <= at < sizes[up]:
            raise ValueError(f"trie {k}: node {i} is child {at} of node {up}, which has {max(sizes[up], 0)} entries")
        if (up, at) in seen:
            raise ValueError(f"trie {k}: node {up} has two children at entry {at}")
        seen.add((up, at))
        depth[i] = depth[up] + 1
        if depth[i] >= max_length:
            raise ValueError(f"trie {k}: node {i} is at depth {depth[i]}, past the length limit {max_length}")
        entry = c[int(offsets[up]) + at]
        if abs(entry - value[i]) > TOLERANCE * max(1.0, value[i]):
            raise ValueError(f"trie {k}: node {i} has value {value[i]}, but its parent's entry for it is {entry}")


def check_trie_file(path: Path, arrays: dict[str, np.ndarray], meta: dict, vocab_size: int) -> None:
    """Raise `ConfigurationError` naming `path` if the arrays and metadata read from a trie file
    are not a consistent set of tries over a vocabulary of `vocab_size` ids (see the module
    docstring). This function does not change anything."""
    try:
        _check_meta(meta)
        keys = set()
        for k, info in enumerate(meta["tries"]):
            arr = _check_arrays(arrays, k)
            _check_values(arr, k, vocab_size)
            _check_tree(arr, k, info["max_length"], meta["max_nodes"])
            key = (tuple(arr["prompt"].tolist()), info["max_length"])
            if key in keys:
                raise ValueError(f"trie {k}: a second trie for the same prompt and max_length")
            keys.add(key)
        expected = {f"t{k}_{name}" for k in range(len(meta["tries"])) for name in ARRAYS}
        extra = sorted(set(arrays) - expected)
        if extra:
            raise ValueError(f"unexpected arrays {extra[:3]}")
    except ValueError as exc:
        raise ConfigurationError(f"{path}: not a valid ASAp/CARS trie file: {exc}") from None
