"""Safe persistence for compiled grammars and sampler state: plain numpy arrays plus JSON
metadata in one compressed ``.npz``, written atomically and read without pickle."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from gad.errors import ConfigurationError


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and ``meta`` to ``path``; readers never see a half-written file."""
    path = Path(path)
    payload = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **payload)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_arrays(path: str | os.PathLike[str], what: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by `save_arrays`: (arrays, meta). ``what`` names the kind of file in
    the `ConfigurationError` raised for a missing, damaged or foreign file."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigurationError(f"cannot load {path}: not a readable {what} ({type(exc).__name__}: {exc})") from None
    return arrays, meta
