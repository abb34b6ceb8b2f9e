"""Corrupted compiled-grammar files: a `GadError` naming the file, or a grammar that masks like the
original.

Oracle: the unmutated compiled grammar — along the same token walks, a file that loads must give
the same masks and the same accept/reject verdicts as the one that was saved.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from fuzzing import BYTE_INFO, FUZZ, GRAMMARS
from hypothesis import given
from hypothesis import strategies as st

import gad
from gad.errors import GadError
from gad.testing import random_walk

COMPILED = gad.GrammarCompiler(BYTE_INFO).compile((GRAMMARS / "json.lark").read_text(), eager=True)
WALKS = [w for w in (random_walk(gad.GrammarMatcher(COMPILED), random.Random(s), 40) for s in range(12)) if w]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compiled") / "json.npz"
    COMPILED.save(path)
    return path


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "zero", "overwrite", "insert", "truncate"]),
        st.floats(0, 1, exclude_max=True),  # where, as a fraction of the file's length
        st.integers(0, 7),  # which bit to flip
        st.binary(min_size=1, max_size=8),  # what to write or insert
    ),
    min_size=1,
    max_size=3,
)


def corrupt(data: bytes, edits) -> bytes:
    """`data` with each edit applied: a bit flipped, 16 bytes zeroed, bytes overwritten or
    inserted, or the file cut short."""
    for edit, where, bit, payload in edits:
        if not data:
            break
        i = int(where * len(data))
        if edit == "flip":
            data = data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
        elif edit == "zero":
            data = data[:i] + bytes(min(16, len(data) - i)) + data[i + 16 :]
        elif edit == "overwrite":
            data = data[:i] + payload + data[i + len(payload) :]
        elif edit == "insert":
            data = data[:i] + payload + data[i:]
        else:
            data = data[:i]
    return data


def masks_along(compiled: gad.CompiledGrammar, text: bytes) -> list[np.ndarray]:
    matcher = gad.GrammarMatcher(compiled)
    out = [matcher.next_token_mask().numpy()]
    for byte in text:
        assert matcher.accept_token(byte)
        out.append(matcher.next_token_mask().numpy())
    return out


@FUZZ
@given(edits=EDITS)
def test_corrupted_compiled_grammar_files(saved, tmp_path_factory, edits):
    path = tmp_path_factory.mktemp("corrupted") / "json.npz"
    path.write_bytes(corrupt(saved.read_bytes(), edits))
    try:
        loaded = gad.CompiledGrammar.load(path, BYTE_INFO)
    except GadError as error:
        assert str(path) in str(error)  # names the file
        return
    for text in WALKS:
        expected = masks_along(COMPILED, text)
        assert all(np.array_equal(a, b) for a, b in zip(masks_along(loaded, text), expected, strict=True))
