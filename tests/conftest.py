"""Shared fixtures. The offline tokenizers come from `gad.assets` (no network); each is loaded
once per process, and converted files are cached under ``$GAD_CACHE_DIR`` / ``~/.cache/gad``."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from gad.assets import load_tokenizer
from gad.tokenizer import TokenizerInfo

# -- tokenizers -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tokenizer_info(name: str) -> TokenizerInfo:
    return TokenizerInfo.from_huggingface(load_tokenizer(name))


@pytest.fixture(scope="session")
def tokenizer_info() -> Callable[[str], TokenizerInfo]:
    """``tokenizer_info(name)``: the `TokenizerInfo` of offline tokenizer `name`, built once."""
    return _tokenizer_info


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    return load_tokenizer("gpt2")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    return load_tokenizer("smollm2")


@pytest.fixture(scope="session")
def mistral_tokenizer():
    return load_tokenizer("mistral")


@pytest.fixture(scope="session")
def llama3_tokenizer():
    return load_tokenizer("llama3")
