"""The output folder of a sweep: one JSON record per finished task, written atomically.

    OUTPUT/sweep.json              the spec's name, fingerprint and text (written first)
    OUTPUT/records/TASK_ID.json    one per finished task (samples, counts, times, versions or error)
    OUTPUT/report.md, *.png        written by `gad report`

**Exactly once.** A record is written to a temporary file in ``records/``, flushed and fsynced, then
renamed onto ``records/TASK_ID.json`` with `os.replace` (atomic on POSIX): a reader sees no record
or the whole record, never half of one, and since the file name *is* the task id, a task can have
at most one record however often it was run (a retried or resumed task replaces it whole). The
runner writes a task's record only after Ray returned its result, so a task whose worker died is
either retried (and recorded once) or recorded as an error.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gad.errors import ConfigurationError

__all__ = ["finished", "read_records", "read_sweep", "write_record", "write_sweep"]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def write_sweep(output: Path, info: dict[str, Any]) -> None:
    """Create `output` for a sweep, or check that it already belongs to this one (same
    fingerprint); `ConfigurationError` otherwise, so results of two specs never mix."""
    (output / "records").mkdir(parents=True, exist_ok=True)
    path = output / "sweep.json"
    if path.is_file():
        old = read_sweep(output)
        if old.get("fingerprint") != info["fingerprint"]:
            raise ConfigurationError(
                f"{output} holds the results of another spec (or of this one before it changed: "
                f"fingerprint {old.get('fingerprint')} ≠ {info['fingerprint']}); pass another --output "
                "or delete the folder"
            )
        return
    _atomic_write(path, json.dumps(info, indent=1) + "\n")


def read_sweep(output: Path) -> dict[str, Any]:
    path = Path(output) / "sweep.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{output}: no sweep.json; not the output folder of `gad sweep`") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}: damaged ({exc})") from None


def _record_path(output: Path, task_id: str) -> Path:
    return output / "records" / f"{task_id}.json"


def write_record(output: Path, record: dict[str, Any]) -> None:
    """Write the record of task ``record["task"]`` atomically (see the module docstring)."""
    _atomic_write(_record_path(output, record["task"]), json.dumps(record) + "\n")


def finished(output: Path) -> set[str]:
    """The ids of the tasks that have a record."""
    folder = Path(output) / "records"
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def read_records(output: Path) -> list[dict[str, Any]]:
    """Every record, by task id."""
    out = []
    for p in sorted((Path(output) / "records").glob("*.json")):
        try:
            out.append(json.loads(p.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{p}: not a record ({exc}); delete it to rerun its task") from None
    return out
