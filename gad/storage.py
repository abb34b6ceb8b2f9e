"""Safe persistence for compiled grammars and sampler state: plain numpy arrays plus JSON
metadata in one compressed ``.npz``, written atomically and read without pickle.

Reading never trusts the file: every member's ``.npy`` header is read first, and an array whose
declared size disagrees with the member's stored size, or whose size no deflate stream of that
length could produce, is refused before anything is allocated.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from gad.errors import ConfigurationError

#: Deflate expands at most ~1032:1; a member claiming more than this ratio is damaged or hostile.
MAX_DEFLATE_RATIO = 1100


def checked_path(path: object, *, for_writing: bool) -> Path:
    """``path`` as a `Path`; `ConfigurationError` if it is not a path or names a directory."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"a file path (str or os.PathLike) is needed, not {type(path).__name__}")
    result = Path(path)
    if str(path) == "" or result.is_dir():
        raise ConfigurationError(f"{str(path)!r} is a directory, not a file")
    if for_writing and result.parent.exists() and not result.parent.is_dir():
        raise ConfigurationError(f"cannot write {result}: {result.parent} is not a directory")
    return result


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and ``meta`` to ``path``; readers never see a half-written file, and
    concurrent writers leave one complete file (each writes its own temporary, then renames)."""
    path = checked_path(path, for_writing=True)
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


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's sizes before allocation."""
    if info.flag_bits & 0x1:
        raise ValueError(f"member {info.filename!r} is marked encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"member {info.filename!r} uses compression method {info.compress_type}")
    if info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1) + 4096:
        raise ValueError(f"member {info.filename!r} claims {info.file_size} bytes from {info.compress_size}")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"member {info.filename!r} has .npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects")
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        available = info.file_size - stream.tell()
        if declared != available:
            raise ValueError(
                f"member {info.filename!r} declares {shape} {dtype} ({declared} bytes) but stores {available}"
            )
        raw = stream.read(available)
    array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy()


def load_arrays(path: str | os.PathLike[str], what: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by `save_arrays`: (arrays, meta). ``what`` names the kind of file in
    the `ConfigurationError` raised for a missing, damaged or foreign file."""
    path = checked_path(path, for_writing=False)
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"unexpected member {info.filename!r}")
                arrays[info.filename[: -len(".npy")]] = _read_member(archive, info)
        meta = json.loads(bytes(arrays.pop("meta")).decode())
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
    except (OSError, ValueError, KeyError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error,
            UnicodeDecodeError) as exc:  # NotImplementedError: zipfile on a version or method it lacks
        raise ConfigurationError(f"cannot load {path}: not a readable {what} ({type(exc).__name__}: {exc})") from None
    return arrays, meta
