"""ASAp / CARS trie files are never trusted: real saved files, corrupted in many ways (truncated,
bytes flipped, values out of range, a broken tree, wrong counts, fingerprint or version), give a
`gad.GadError` naming the file and what is wrong; genuine files load and continue exactly."""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import gad
from gad.errors import ConfigurationError
from gad.samplers.asap import ASApSampler, TrieStore
from gad.samplers.cars import CARSSampler

from problems import AB_COMPILED, TOKENS, random_table

LM = random_table(len(TOKENS), 6, 5)
V = AB_COMPILED.tokenizer_info.vocab_size


@pytest.fixture(scope="module", params=["asap", "cars"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A real trie file with two tries (two prompts), saved after some sampling."""
    cls = ASApSampler if request.param == "asap" else CARSSampler
    sampler = cls(LM, AB_COMPILED, temperature=0.8, batch_size=3)
    sampler.sample([], n=20, max_new_tokens=5, seed=0)
    sampler.sample([1], n=6, max_new_tokens=4, seed=1)
    path = tmp_path_factory.mktemp(request.param) / "trie.npz"
    sampler.save(path)
    return request.param, path


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as data:
        arrays = {k: data[k].copy() for k in data.files}
    meta = json.loads(bytes(arrays.pop("meta")).decode())
    return arrays, meta


def _write(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    np.savez(path, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def _load(kind: str, path: Path):
    cls = ASApSampler if kind == "asap" else CARSSampler
    return cls.load(path, LM, AB_COMPILED, batch_size=3)


def _expanded_child(arrays: dict[str, np.ndarray]) -> int:
    """A node of trie 0 (not the root) that is expanded and has a parent."""
    sizes = arrays["t0_sizes"]
    return int(next(i for i in range(1, len(sizes)) if sizes[i] > 0))


def _set(name: str, position: Callable[[dict], int] | int, value) -> Callable[[dict, dict], None]:
    def change(arrays: dict, meta: dict) -> None:
        a = arrays[f"t0_{name}"]
        i = position(arrays) if callable(position) else position
        a[i] = value

    return change


def _meta(key: str, value) -> Callable[[dict, dict], None]:
    def change(arrays: dict, meta: dict) -> None:
        meta[key] = value

    return change


def _trie_meta(key: str, value) -> Callable[[dict, dict], None]:
    def change(arrays: dict, meta: dict) -> None:
        meta["tries"][0][key] = value

    return change


def _replace(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict, dict], None]:
    def change(arrays: dict, meta: dict) -> None:
        arrays[f"t0_{name}"] = make(arrays[f"t0_{name}"])

    return change


def _duplicate_child(arrays: dict, meta: dict) -> None:
    parent, index = arrays["t0_parent"], arrays["t0_index"]
    kids = [i for i in range(1, len(parent)) if parent[i] == parent[1]]
    assert len(kids) >= 2, "the fixture's root needs two children"
    index[kids[1]] = index[kids[0]]


def _own_parent(arrays: dict, meta: dict) -> None:
    i = _expanded_child(arrays)
    arrays["t0_parent"][i] = i


def _drop(name: str) -> Callable[[dict, dict], None]:
    def change(arrays: dict, meta: dict) -> None:
        del arrays[f"t0_{name}"]

    return change


def _second_copy(arrays: dict, meta: dict) -> None:
    for name in [k[3:] for k in list(arrays) if k.startswith("t0_")]:
        arrays[f"t1_{name}"] = arrays[f"t0_{name}"].copy()
    meta["tries"][1] = dict(meta["tries"][0])


CORRUPTIONS = {
    # values out of range
    "token id = V": (_set("ids", 0, V), "outside the vocabulary"),
    "token id < 0": (_set("ids", 0, -1), "outside the vocabulary"),
    "prompt id < 0": (_replace("prompt", lambda a: np.array([-3], dtype=np.int64)), "prompt token id -3"),
    "P_T is NaN": (_set("p", 0, np.nan), "p = nan"),
    "P_T > 1": (_set("p", 0, 1.5), "p = 1.5"),
    "ĉ is NaN": (_set("c", 0, np.nan), "c = nan"),
    "ĉ > 1": (_set("c", 0, 2.0), "c = 2.0"),
    "ĉ < 0": (_set("c", 0, -0.25), "c = -0.25"),
    "value is inf": (_set("value", 0, np.inf), "value = inf"),
    "log P > 0": (_set("logp", 0, 3.0), "log P = 3.0"),
    "log P is -inf": (_set("logp", 0, -np.inf), "log P = -inf"),
    # a broken tree
    "parent index 10**6": (_set("parent", _expanded_child, 10**6), "parent 1000000"),
    "parent is itself": (_own_parent, "parents come before"),
    "root has a parent": (_set("parent", 0, 1), "the root"),
    "child index out of range": (_set("index", _expanded_child, 10**6), "which has"),
    "two children at one entry": (_duplicate_child, "two children"),
    "ids not ascending": (_replace("ids", lambda a: a[::-1].copy()), "not strictly ascending"),
    # counts that disagree
    "an entry missing": (_replace("c", lambda a: a[:-1]), "sizes add up to"),
    "node sizes disagree": (_replace("sizes", lambda a: np.where(a > 0, a + 1, a)), "sizes add up to"),
    "size < -1": (_set("sizes", 0, -5), "entries"),
    "value != Σ P_T ĉ": (_set("value", 0, 0.123), "its entries give"),
    "parent's ĉ entry != child's value": (
        lambda arrays, meta: arrays["t0_value"].__setitem__(
            _expanded_child(arrays), arrays["t0_value"][_expanded_child(arrays)] * 0.5), "value"),
    "complete > samples": (_trie_meta("complete", 10**6), "complete samples out of"),
    "samples negative": (_trie_meta("samples", -1), "not a non-negative int"),
    "max_length 0": (_trie_meta("max_length", 0), "max_length"),
    "deeper than max_length": (_trie_meta("max_length", 2), "past the length limit"),
    "more nodes than max_nodes": (_meta("max_nodes", 2), "more than max_nodes=2"),
    "a second trie for one key": (_second_copy, "a second trie"),
    # shapes, dtypes, metadata
    "array missing": (_drop("p"), "array 'p' is missing"),
    "ids are floats": (_replace("ids", lambda a: a.astype(np.float64)), "not a 1-D int array"),
    "2-D array": (_replace("value", lambda a: a.reshape(1, -1)), "not a 1-D float array"),
    "extra array": (lambda arrays, meta: arrays.__setitem__("t9_junk", np.zeros(3)), "unexpected arrays"),
    "temperature NaN": (_meta("temperature", float("nan")), "temperature"),
    "temperature a string": (_meta("temperature", "hot"), "temperature"),
    "tries not a list": (_meta("tries", {"a": 1}), "'tries' is not a list"),
    "wrong fingerprint": (_meta("grammar", "0" * 32), "different grammar"),
    "wrong tokenizer": (_meta("tokenizer", "0" * 32), "different tokenizer"),
    "wrong version": (_meta("version", 99), "version 99"),
    "wrong format": (_meta("format", "gad-compiled-grammar"), "not an ASAp trie file"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_file_gives_a_clear_error(saved, tmp_path: Path, corruption: str) -> None:
    kind, path = saved
    change, message = CORRUPTIONS[corruption]
    arrays, meta = _read(path)
    change(arrays, meta)
    bad = tmp_path / f"bad-{kind}.npz"
    _write(bad, arrays, meta)
    with pytest.raises(gad.GadError, match=message) as info:
        _load(kind, bad)
    assert str(bad) in str(info.value)


def test_prompt_outside_the_models_vocabulary(saved, tmp_path: Path) -> None:
    kind, path = saved
    arrays, meta = _read(path)
    arrays["t1_prompt"] = np.array([V + 7], dtype=np.int64)  # trie 1 has prompt [1]; its root is only the prompt's
    bad = tmp_path / "prompt.npz"
    _write(bad, arrays, meta)
    with pytest.raises(ConfigurationError, match=f"prompt token id {V + 7} is outside the model's vocabulary") as info:
        _load(kind, bad)
    assert str(bad) in str(info.value)


def test_unmodified_rewrite_loads(saved, tmp_path: Path) -> None:
    """The corruption tests' reader and writer change nothing by themselves."""
    kind, path = saved
    arrays, meta = _read(path)
    _write(tmp_path / "same.npz", arrays, meta)
    assert _load(kind, tmp_path / "same.npz").store.stats() == _load(kind, path).store.stats()


def test_truncated_files(saved, tmp_path: Path) -> None:
    kind, path = saved
    data = path.read_bytes()
    for cut in sorted({0, 1, 4, 30, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1}):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(gad.GadError, match="cut") as info:
            _load(kind, bad)
        assert str(bad) in str(info.value), cut


def test_flipped_bytes_never_load_silently(saved, tmp_path: Path) -> None:
    """A flipped byte is refused, or (in zip padding/metadata nobody reads) loads the very same
    tries: never different tries."""
    kind, path = saved
    data = path.read_bytes()
    reference = _load(kind, path)
    rng = random.Random(0)
    refused = 0
    for trial in range(150):
        flipped = bytearray(data)
        i = rng.randrange(len(data))
        flipped[i] ^= 1 << rng.randrange(8)
        bad = tmp_path / "flip.npz"
        bad.write_bytes(bytes(flipped))
        try:
            loaded = _load(kind, bad)
        except gad.GadError as exc:
            assert str(bad) in str(exc)
            refused += 1
            continue
        for key, trie in reference.store.tries.items():
            twin = loaded.store.tries[key]
            assert twin.stats() == trie.stats(), (trial, i)
            for node in trie.nodes():
                other = twin.find(node.tokens())
                assert other is not None and other.value == node.value
                if node.expanded:
                    assert np.array_equal(other.p, node.p) and np.array_equal(other.c, node.c)
    assert refused > 100  # deflate and CRC-32 catch almost every flip


def test_oversized_member_is_refused_before_allocation(saved, tmp_path: Path) -> None:
    """A member whose header declares a huge array (2**40 float64) is refused by its size."""
    kind, path = saved
    arrays, meta = _read(path)
    bad = tmp_path / "huge.npz"
    _write(bad, {k: v for k, v in arrays.items() if k != "t0_value"}, meta)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    with zipfile.ZipFile(bad, "a") as archive:
        archive.writestr("t0_value.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(gad.GadError, match="declares") as info:
        _load(kind, bad)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("kind", ["asap", "cars"])
@pytest.mark.parametrize("temperature, max_nodes", [(1.0, None), (0.7, 12), (1.6, 3)])
def test_round_trip_continues_with_the_same_draws(tmp_path: Path, kind: str, temperature: float, max_nodes) -> None:
    """A genuine file (any temperature, bounded or not) passes every check, and the reloaded
    sampler draws exactly what the original draws with the same seed."""
    cls = ASApSampler if kind == "asap" else CARSSampler
    sampler = cls(LM, AB_COMPILED, temperature=temperature, batch_size=4, max_nodes=max_nodes)
    for seed in range(4):
        sampler.sample([], n=10, max_new_tokens=5, seed=seed)
    sampler.sample([2], n=5, max_new_tokens=5, seed=9)
    path = tmp_path / "trie.npz"
    sampler.save(path)
    loaded = cls.load(path, LM, AB_COMPILED, batch_size=4, max_nodes=max_nodes)
    assert loaded.store.stats() == sampler.store.stats()
    for prompt, n_max in (((), 5), ((2,), 5)):
        assert loaded.sample(list(prompt), n=12, max_new_tokens=n_max, seed=77) == sampler.sample(
            list(prompt), n=12, max_new_tokens=n_max, seed=77
        )
    TrieStore.load(path, AB_COMPILED)  # the store alone, without a model, validates the same
