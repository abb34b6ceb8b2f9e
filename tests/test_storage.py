"""Saved files are never trusted: sizes are checked before allocation, paths are validated, and
concurrent writers leave one complete file."""

from __future__ import annotations

import io
import multiprocessing
import zipfile

import numpy as np
import pytest

import gad
from gad.errors import ConfigurationError
from gad.storage import load_arrays, save_arrays

GRAMMAR = 'start: "a" B\nB: /b+/\n'


def _npy(header: dict, body: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + body


def _write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


META = _npy({"descr": "|u1", "fortran_order": False, "shape": (2,)}, b"{}")


def test_round_trip_keeps_arrays_and_meta(tmp_path):
    arrays = {"a": np.arange(7, dtype=np.int32), "b": np.ones((3, 4), dtype=np.uint32)}
    save_arrays(tmp_path / "sub" / "x.npz", arrays, {"format": 1, "names": ["α"]})
    loaded, meta = load_arrays(tmp_path / "sub" / "x.npz", "test file")
    assert meta == {"format": 1, "names": ["α"]}
    assert set(loaded) == {"a", "b"}
    assert all(np.array_equal(loaded[k], arrays[k]) and loaded[k].dtype == arrays[k].dtype for k in arrays)


def test_a_member_declaring_a_terabyte_is_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.npz"
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**37,)}
    _write_zip(path, {"meta.npy": META, "x.npy": _npy(header, b"\0" * 64)})
    with pytest.raises(ConfigurationError, match=r"huge\.npz.*x\.npy.*declares"):
        load_arrays(path, "test file")


@pytest.mark.parametrize(
    "member, message",
    [
        (_npy({"descr": "|O", "fortran_order": False, "shape": (1,)}, b"\0" * 8), "objects"),
        (_npy({"descr": "<i4", "fortran_order": False, "shape": (4,)}, b"\0" * 12), "declares"),
        (b"not an npy file at all", "magic"),
    ],
)
def test_malformed_members_are_named(tmp_path, member, message):
    path = tmp_path / "bad.npz"
    _write_zip(path, {"meta.npy": META, "x.npy": member})
    with pytest.raises(ConfigurationError, match=message):
        load_arrays(path, "test file")


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    save_arrays(tmp_path / "x.npz", {"a": np.arange(1000, dtype=np.int64)}, {"format": 1})
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    for name in ("cut.npz", "text.npz", "missing.npz"):
        with pytest.raises(ConfigurationError, match=name):
            load_arrays(tmp_path / name, "test file")


def _patch_central_directory(data: bytes, offset: int, value: bytes) -> bytes:
    """`data` with `value` written at `offset` of every central-directory entry (``PK\\1\\2``)."""
    out = bytearray(data)
    start = out.find(b"PK\x01\x02")
    while start >= 0:
        out[start + offset : start + offset + len(value)] = value
        start = out.find(b"PK\x01\x02", start + 4)
    return bytes(out)


# Found by tests/fuzz/test_fuzz_files.py: zipfile raised zlib.error, RuntimeError and
# NotImplementedError for these, past the loader's checks.
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d, None),  # the control: the undamaged file loads
        (lambda d: _patch_central_directory(d, 8, b"\x01\x00"), "marked encrypted"),
        (lambda d: _patch_central_directory(d, 6, b"\x6d\x00"), "zip file version"),
        (lambda d: _patch_central_directory(d, 10, b"\x63\x00"), "compression method 99"),
    ],
    ids=["intact", "encrypted-flag", "zip-version", "compression-method"],
)
def test_damaged_zip_headers_are_clear_errors(tmp_path, damage, message):
    path = tmp_path / "x.npz"
    save_arrays(path, {"a": np.arange(50, dtype=np.int32)}, {"format": 1})
    path.write_bytes(damage(path.read_bytes()))
    if message is None:
        assert np.array_equal(load_arrays(path, "test file")[0]["a"], np.arange(50))
        return
    with pytest.raises(ConfigurationError, match=rf"x\.npz.*{message}"):
        load_arrays(path, "test file")


def test_a_broken_deflate_stream_is_a_clear_error(tmp_path):
    path = tmp_path / "x.npz"
    save_arrays(path, {"a": np.arange(5000, dtype=np.int32)}, {"format": 1})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("a.npy")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    lengths = data[info.header_offset + 26 : info.header_offset + 30]  # the local header's name, extra
    body = info.header_offset + 30 + int.from_bytes(lengths[:2], "little") + int.from_bytes(lengths[2:], "little")
    data[body] = 0xFF  # deflate block type 3: reserved, an invalid stream
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigurationError, match=r"x\.npz.*error"):
        load_arrays(path, "test file")


@pytest.mark.parametrize("bad", [None, 3, True, io.BytesIO(), ["x.npz"]])
def test_non_paths_are_configuration_errors(bad):
    with pytest.raises(ConfigurationError, match="path"):
        save_arrays(bad, {}, {})
    with pytest.raises(ConfigurationError, match="path"):
        load_arrays(bad, "test file")


def test_directories_are_configuration_errors(tmp_path):
    compiled = gad.GrammarCompiler(gad.TokenizerInfo.from_vocab([b"<eos>", b"a", b"b"], eos_token_id=0)).compile(GRAMMAR)
    with pytest.raises(ConfigurationError, match="directory"):
        compiled.save(tmp_path)
    with pytest.raises(ConfigurationError, match="directory"):
        gad.CompiledGrammar.load(tmp_path, compiled.tokenizer_info)


def _save_many(path: str, value: int) -> None:
    for _ in range(20):
        save_arrays(path, {"x": np.full(20_000, value, dtype=np.int64)}, {"writer": value})


def test_concurrent_saves_from_processes_leave_one_complete_file(tmp_path):
    path = str(tmp_path / "shared.npz")
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_many, args=(path, value)) for value in (1, 2, 3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    arrays, meta = load_arrays(path, "test file")
    assert meta["writer"] in (1, 2, 3)
    assert np.array_equal(arrays["x"], np.full(20_000, meta["writer"], dtype=np.int64))
    assert [p.name for p in tmp_path.iterdir()] == ["shared.npz"]
