"""What the mask benchmarks share: the engines' tokenizer conversion and replay, mask comparison
and the result tables (`mask_bench.py`, `grammar_suite.py`).

Importing this module sets the environment for one thread per engine and no network before any
engine is imported: ``RAYON_NUM_THREADS=1`` (llguidance's Rust thread pool reads it when it
starts), ``TOKENIZERS_PARALLELISM=false``, ``HF_HUB_OFFLINE=1`` (nothing is ever downloaded).

Each engine `convert`s a Hugging Face tokenizer once and `start`s a replay of a compiled grammar,
which gives three callables: ``fill()`` computes the next mask (the only call the benchmarks time
as "mask"), ``read(out)`` turns what it produced into ``bool[vocab_size]``, ``accept(token)``.
How a grammar is compiled differs per benchmark: each subclasses these engines with a
``compile`` of its own.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # llguidance: read when its thread pool starts
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"  # no network, ever (transformers-cfg reloads tokenizers by name)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gad  # noqa: E402

# The logits size of the models these tokenizers belong to (SmolLM2-135M, Llama-3-8B, GPT-2,
# Mistral-7B-v0.1): all equal to the tokenizer's length, so no padding ids unless asked for.
MODEL_VOCAB_SIZE = {"smollm2": 49152, "llama3": 128256, "gpt2": 50257, "mistral": 32000}


class Skip(Exception):
    """This engine has nothing to run for this grammar (e.g. no builtin grammar): no row."""


class DoesNotRun(Exception):
    """The engine fails to set up; the row says why (the message)."""


def reason(exc: BaseException) -> str:
    """``ExcType: first line of the message``, at most 110 characters: a table entry."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")
    return text if len(text) <= 110 else text[:107] + "..."


def bits_to_bool(words: np.ndarray, vocab_size: int) -> np.ndarray:
    """Packed ``int32[ceil(V/32)]`` (bit ``i % 32`` of word ``i // 32`` = token i) → ``bool[V]``."""
    return np.unpackbits(np.ascontiguousarray(words).view(np.uint8), bitorder="little", count=vocab_size).view(
        np.bool_
    )


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (an argparse type)."""
    return [x.strip() for x in text.split(",") if x.strip()]


# ---------------------------------------------------------------------------------------------
# Engines.


@dataclass
class Replay:
    fill: Callable[[], Any]
    read: Callable[[Any], np.ndarray]
    accept: Callable[[int], bool]


class Engine:
    name = ""
    family = ""  # engines of one family share the tokenizer conversion

    def convert(self, tokenizer: Any, vocab_size: int) -> Any:
        raise NotImplementedError

    def start(self, tok: Any, compiled: Any) -> Replay:
        raise NotImplementedError


class GadEngine(Engine):
    """gad's `GrammarMatcher`: ``next_token_mask()``, or ``fill_next_token_bitmask`` into an
    ``int32[1, ceil(V/32)]`` bitmask with ``bitmask=True``."""

    family = "gad"

    def __init__(self, bitmask: bool = False, name: str | None = None) -> None:
        self.bitmask = bitmask
        self.name = name or ("gad (bitmask)" if bitmask else "gad")

    def convert(self, tokenizer: Any, vocab_size: int) -> Any:
        return gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)

    def start(self, tok: Any, compiled: Any) -> Replay:
        matcher = gad.GrammarMatcher(compiled)
        size = tok.vocab_size
        if not self.bitmask:
            return Replay(matcher.next_token_mask, lambda out: out.numpy(), matcher.accept_token)
        allocate = getattr(gad, "allocate_token_bitmask", None)
        bitmask = allocate(1, size) if allocate else torch.full((1, (size + 31) // 32), -1, dtype=torch.int32)
        fill = matcher.fill_next_token_bitmask
        return Replay(lambda: fill(bitmask, 0), lambda _: bits_to_bool(bitmask[0].numpy(), size),
                      matcher.accept_token)


class XGrammarEngine(Engine):
    """xgrammar's `GrammarMatcher`, masks through ``fill_next_token_bitmask``."""

    family = "xgrammar"
    name = "xgrammar"

    def convert(self, tokenizer: Any, vocab_size: int) -> Any:
        import xgrammar as xgr

        return xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)

    @staticmethod
    def compiler(tok: Any) -> Any:
        """A fresh ``GrammarCompiler``: one thread, and no cache, so every compile is a cold one."""
        import xgrammar as xgr

        return xgr.GrammarCompiler(tok, max_threads=1, cache_enabled=False)

    def start(self, tok: Any, compiled: Any) -> Replay:
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(compiled)
        size = tok.vocab_size
        bitmask = xgr.allocate_token_bitmask(1, size)
        fill = matcher.fill_next_token_bitmask
        return Replay(lambda: fill(bitmask, 0), lambda _: bits_to_bool(bitmask[0].numpy(), size),
                      matcher.accept_token)


class LLGuidanceEngine(Engine):
    """llguidance's `LLMatcher`. It has no compiled-grammar object: the matcher's constructor
    compiles (`matcher`), and each replay starts from a deep copy of that pristine matcher."""

    family = "llguidance"
    name = "llguidance"

    def convert(self, tokenizer: Any, vocab_size: int) -> Any:
        import llguidance.hf

        return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)

    @staticmethod
    def matcher(tok: Any, grammar: str) -> Any:
        """The pristine ``LLMatcher`` for a grammar from ``LLMatcher.grammar_from_*``; raises
        `DoesNotRun` with llguidance's message when it rejects the grammar."""
        from llguidance import LLMatcher

        matcher = LLMatcher(tok, grammar, log_level=0)
        if matcher.is_error():
            raise DoesNotRun(matcher.get_error())
        return matcher

    def start(self, tok: Any, compiled: Any) -> Replay:
        matcher = compiled.deep_copy()
        size = tok.vocab_size
        bitmask = np.full((1, (size + 31) // 32), -1, dtype=np.int32)
        # The raw entry point behind llguidance.numpy.fill_next_token_bitmask, without its
        # per-call Python asserts: the address is taken once here.
        pointer, nbytes = bitmask.ctypes.data, bitmask.nbytes
        compute = matcher.unsafe_compute_mask_ptr

        def accept(token: int) -> bool:
            ok = matcher.consume_token(token)
            if matcher.is_error():  # llguidance's reason (e.g. a parser limit) is the report's text
                raise DoesNotRun(matcher.get_error())
            return ok

        return Replay(lambda: compute(pointer, nbytes), lambda _: bits_to_bool(bitmask[0], size), accept)


# ---------------------------------------------------------------------------------------------
# Comparison with gad's masks.


@dataclass
class Difference:
    document: str
    step: int
    prefix: bytes
    only_engine: np.ndarray  # ids the engine allows and gad does not
    only_gad: np.ndarray  # ids gad allows and the engine does not


class TokenDescriber:
    """Says what a token id is (kind, and its bytes or its name) for the disagreement report."""

    def __init__(self, tokenizer: Any, info: gad.TokenizerInfo) -> None:
        self.tokenizer = tokenizer
        self.info = info
        self.tokenizer_len = len(tokenizer)

    def kind(self, tid: int) -> str:
        if tid in self.info.eos_token_ids:
            return "EOS"
        if tid >= self.tokenizer_len:
            return "padding"
        if tid in self.info.special_ids:
            return "special"
        return "text"

    def describe(self, tid: int) -> str:
        kind = self.kind(tid)
        if kind == "padding":
            return f"{tid} <padding>"
        if kind in ("EOS", "special"):
            return f"{tid} {self.tokenizer.convert_ids_to_tokens(tid)}"
        return f"{tid} {self.info.token_bytes[tid]!r}"

    def ids(self, ids: np.ndarray, limit: int = 6) -> str:
        shown = ", ".join(self.describe(int(t)) for t in ids[:limit])
        return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


class ComparedRow(Protocol):
    tokenizer: str
    grammar: str
    engine: str
    steps_compared: int
    differences: list[Difference]
    rejected: list[str]


def disagreements(rows: Iterable[ComparedRow], describers: dict[str, TokenDescriber], show: int) -> str:
    """Every row's differences from gad (the text before the step, the ids only one side allows),
    grouped by identical ids, with a count per token kind; and the document tokens rejected."""
    out = []
    for r in rows:
        if not (r.differences or r.rejected):
            continue
        describer = describers[r.tokenizer]
        if r.engine == "gad":
            out.append(f"\ngad, {r.tokenizer}/{r.grammar}: documents gad rejects are not sentences of "
                       "the grammar; they are left out:")
            out += [f"  {text}" for text in r.rejected]
            continue
        out.append(f"\n{r.engine} vs gad, {r.tokenizer}/{r.grammar}: "
                   f"{len(r.differences)} of {r.steps_compared} steps differ")
        kinds: Counter[str] = Counter()
        for d in r.differences:
            kinds.update(f"only {r.engine} allows {describer.kind(int(t))}" for t in d.only_engine)
            kinds.update(f"only gad allows {describer.kind(int(t))}" for t in d.only_gad)
        if kinds:
            out.append("  token count per kind, summed over steps: "
                       + "; ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
        # Steps with exactly the same differing ids (e.g. the same special tokens at every step
        # inside a string) are shown once, with the number of steps they occur at.
        groups: dict[tuple[bytes, bytes], list[Difference]] = {}
        for d in r.differences:
            groups.setdefault((d.only_engine.tobytes(), d.only_gad.tobytes()), []).append(d)
        for same in list(groups.values())[:show]:
            d = same[0]
            tail = ("..." if len(d.prefix) > 40 else "") + repr(d.prefix[-40:])
            more = f" (and at {len(same) - 1} more step(s) with the same ids)" if len(same) > 1 else ""
            out.append(f"  {d.document} step {d.step}, after {tail}{more}:")
            if len(d.only_engine):
                out.append(f"    +{len(d.only_engine)} only {r.engine}: {describer.ids(d.only_engine)}")
            if len(d.only_gad):
                out.append(f"    -{len(d.only_gad)} only gad: {describer.ids(d.only_gad)}")
        if len(groups) > show:
            out.append(f"  ... {len(groups) - show} more distinct differences (--show N)")
        for text in r.rejected:
            out.append(f"  document token rejected: {text}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Tables.


def us_stats(times_ns: list[int]) -> list[str]:
    """p50, p99 and max of ``times_ns``, in µs, as table cells."""
    if not times_ns:
        return ["", "", ""]
    us = np.asarray(times_ns, dtype=np.float64) / 1e3
    p50, p99 = np.percentile(us, [50, 99])
    return [f"{v:.1f}" if v < 100 else f"{v:.0f}" for v in (p50, p99, us.max())]


def ms_cell(value: float | None) -> str:
    return "" if value is None else (f"{value:.1f}" if value < 1000 else f"{value:.0f}")


def render_table(header: list[str], body: list[list[str]], numeric: Iterable[int], markdown: bool) -> str:
    """Aligned text (numeric columns right-aligned, the last column free text) or Markdown."""
    numeric = set(numeric)
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body])
    widths = [max(len(x) for x in column) for column in zip(header, *body)]
    widths[-1] = 0  # the last column is free text
    return "\n".join(
        "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        for cells in [header, *body]
    )
