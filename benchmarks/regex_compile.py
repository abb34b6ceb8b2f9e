"""Regex compile cost: gad next to xgrammar and llguidance, in one run, on one thread.

    python benchmarks/regex_compile.py [--tokenizer smollm2] [--repeat 5] [--markdown]

For each pattern (bounded repeats, long literals, the cases of issues 10 and 21), and each engine,
cold every time (caches cleared or disabled):

* ``gad dfa``: `gad.grammar.regex.compile_regex` alone, the minimal byte DFA (no tokenizer);
* ``gad``: ``GrammarCompiler(tok).compile(Grammar.from_regex(p))`` plus the first mask, the
  cost before the first token can be sampled (mask entries are built lazily, on first use);
* ``xgrammar``: ``GrammarCompiler(tok, max_threads=1, cache_enabled=False).compile_regex(p)``
  plus its first mask;
* ``llguidance``: ``LLMatcher(tok, grammar_from_regex(p))`` (its constructor compiles) plus its
  first mask (``RAYON_NUM_THREADS=1``).

Clock: ``time.process_time`` (CPU time of this process, so other load on a shared machine counts
less), p50 and max over the repeats, in ms. An engine that refuses a pattern gets its error.
Install the peers with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gad  # noqa: E402
from gad.assets import load_tokenizer  # noqa: E402
from gad.grammar import regex as gad_regex  # noqa: E402

PATTERNS = [
    "(ab){2,300}c",
    "a{1000}",
    ".{1000}",
    r"\w{100}",
    "x" * 1600,
    r'"(?:[^"\\]|\\.){0,400}"',
    "(a{0,100}){0,100}",
    r"[0-9]{1,3}(\.[0-9]{1,3}){3}",
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})",
]

MODEL_VOCAB_SIZE = {"smollm2": 49152, "llama3": 128256, "gpt2": 50257}


def gad_dfa(_tok: object) -> Callable[[str], object]:
    def run(pattern: str) -> object:
        gad_regex._compile_cached.cache_clear()  # cold: the DFA cache would answer at once
        return gad_regex.compile_regex(pattern, whole_input=True)

    return run


def gad_full(tokenizer: object, size: int) -> Callable[[str], object]:
    tok = gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=size)

    def run(pattern: str) -> object:
        gad_regex._compile_cached.cache_clear()
        compiled = gad.GrammarCompiler(tok).compile(gad.Grammar.from_regex(pattern))
        return gad.GrammarMatcher(compiled).next_token_mask()

    return run


def xgrammar(tokenizer: object, size: int) -> Callable[[str], object]:
    import xgrammar as xgr

    tok = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=size)

    def run(pattern: str) -> object:
        compiled = xgr.GrammarCompiler(tok, max_threads=1, cache_enabled=False).compile_regex(pattern)
        bitmask = xgr.allocate_token_bitmask(1, size)
        xgr.GrammarMatcher(compiled).fill_next_token_bitmask(bitmask, 0)
        return bitmask

    return run


def llguidance(tokenizer: object, size: int) -> Callable[[str], object]:
    import llguidance.hf
    from llguidance import LLMatcher

    tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=size)

    def run(pattern: str) -> object:
        matcher = LLMatcher(tok, LLMatcher.grammar_from_regex(pattern), log_level=0)
        if matcher.is_error():
            raise RuntimeError(matcher.get_error())
        bitmask = np.full((1, (size + 31) // 32), -1, dtype=np.int32)
        matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)
        return bitmask

    return run


def measure(run: Callable[[str], object], pattern: str, repeat: int) -> str:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        try:
            run(pattern)
        except Exception as exc:  # a peer's refusal is a result, printed
            return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
        times.append((time.process_time() - start) * 1e3)
    return f"{statistics.median(times):.1f} / {max(times):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default="smollm2", choices=sorted(MODEL_VOCAB_SIZE))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(args.tokenizer)
    size = MODEL_VOCAB_SIZE[args.tokenizer]
    engines: dict[str, Callable[[str], object]] = {"gad dfa": gad_dfa(tokenizer), "gad": gad_full(tokenizer, size)}
    for name, make in (("xgrammar", xgrammar), ("llguidance", llguidance)):
        try:
            engines[name] = make(tokenizer, size)
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
    header = ["pattern"] + [f"{name} ms p50 / max" for name in engines]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print("  ".join(header))
    for pattern in PATTERNS:
        shown = pattern if len(pattern) <= 40 else f"{pattern[:12]}… ({len(pattern)} chars)"
        cells = [measure(run, pattern, args.repeat) for run in engines.values()]
        if args.markdown:
            print("| `" + shown.replace("|", "\\|") + "` | " + " | ".join(cells) + " |", flush=True)
        else:
            print("  ".join([shown] + cells), flush=True)
    print(f"clock: time.process_time, {args.repeat} cold repeats, tokenizer {args.tokenizer} ({size} ids)")


if __name__ == "__main__":
    main()
