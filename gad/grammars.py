"""The grammars shipped with gad, by name: ``gad.grammars.load("json")``.

They are package data (``gad/data/grammars/*.lark``, reachable from an installed wheel through
`importlib.resources`); in a clone, ``grammars/`` at the repository root links to the same files.
`resolve` and `load` take a shipped name (``"json"`` or ``"json.lark"``) or the path of any
``.lark`` file; an existing file always wins over a shipped name.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from gad.errors import GrammarError
from gad.grammar.ir import Grammar

__all__ = ["load", "names", "resolve"]


def _directory() -> Path:
    root = resources.files("gad").joinpath("data", "grammars")
    if not isinstance(root, Path):  # e.g. a zipped install: no file system path to %import from
        raise GrammarError(f"gad's grammars are not files on disk ({root!r}); install gad unzipped")
    return root


def names() -> list[str]:
    """The names of the shipped grammars, sorted (``["ambiguous", "arithmetic", ..., "sql", ...]``)."""
    return sorted(p.stem for p in _directory().glob("*.lark"))


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The grammar file meant by ``name_or_path``: an existing path as given, else the shipped
    grammar of that name (with or without ``.lark``). Raises `GrammarError` naming both lookups
    and the shipped names when neither exists. Reads nothing."""
    given = Path(name_or_path)
    if given.exists():  # whatever it is: the reader says what is wrong with a folder or a FIFO
        return given
    text = os.fspath(name_or_path)
    stem = text[: -len(".lark")] if text.endswith(".lark") else text
    if stem and os.sep not in stem and "/" not in stem:
        shipped = _directory() / f"{stem}.lark"
        if shipped.is_file():
            return shipped
    raise GrammarError(
        f"no such grammar file, and no shipped grammar of that name (shipped: {', '.join(names())})",
        source=text,
    )


def load(name_or_path: str | os.PathLike[str], start: str = "start") -> Grammar:
    """The grammar of `resolve(name_or_path)`, loaded with `Grammar.from_file` (so ``%import`` of
    sibling files works for shipped grammars too)."""
    return Grammar.from_file(resolve(name_or_path), start=start)
