"""Masks of llama.cpp's character-level GBNF grammars: gad with and without regular-rule fusion,
next to xgrammar (which reads GBNF natively), in one run, on one thread.

    python benchmarks/gbnf_masks.py [--tokenizer smollm2] [--repeat 2]

For each grammar, a valid document is tokenized with the tokenizer's own encoder and replayed:
before every token (and once after the last) each engine computes its next-token mask; only that
call is timed, with ``time.process_time`` (CPU time of this process; the machine is shared).
Reports the compile time (grammar load + compile + first mask) and the mask time p50 / p99 /
max in ms over all steps and repeats, and checks that every engine's masks equal gad's unfused
ones at every step (``same``). Grammars from ``../shared/data/gbnf`` next to the repository.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gad  # noqa: E402
from gad.assets import load_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gbnf"
MODEL_VOCAB_SIZE = {"smollm2": 49152, "llama3": 128256, "gpt2": 50257}

DOCUMENTS = {
    "json.gbnf": '{"name": "gad", "tags": ["grammar", "masks"], "version": 1.5, "ok": true, "n": null}',
    "arithmetic.gbnf": "y*2=(price*count+1)\nx=total\n",
    "c.gbnf": "int main(){int x = 1;while(x<10){x = x+1;}return x;}",
    "chess.gbnf": "1. e4 e5\n2. Nf3 Nc6\n3. Bb5 a6\n",
    "list.gbnf": "- apples\n- pears and plums\n",
}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def replay_gad(compiled: gad.CompiledGrammar, ids: list[int]) -> tuple[list[float], list[np.ndarray]]:
    matcher = gad.GrammarMatcher(compiled)
    times, masks = [], []
    for token in [*ids, None]:
        start = time.process_time()
        mask = matcher.next_token_mask()
        times.append((time.process_time() - start) * 1e3)
        masks.append(mask.numpy().copy())
        if token is not None and not matcher.accept_token(token):
            raise RuntimeError("gad rejected the document")
    return times, masks


def replay_xgrammar(compiled: object, ids: list[int], size: int) -> tuple[list[float], list[np.ndarray]]:
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, size)
    times, masks = [], []
    for token in [*ids, None]:
        start = time.process_time()
        matcher.fill_next_token_bitmask(bitmask, 0)
        times.append((time.process_time() - start) * 1e3)
        bits = bitmask[0].numpy().view(np.uint32)
        masks.append(((bits[np.arange(size) // 32] >> (np.arange(size) % 32)) & 1).astype(bool))
        if token is not None and not matcher.accept_token(token):
            raise RuntimeError("xgrammar rejected the document")
    return times, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default="smollm2", choices=sorted(MODEL_VOCAB_SIZE))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(args.tokenizer)
    size = MODEL_VOCAB_SIZE[args.tokenizer]
    info = gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=size)
    try:
        import xgrammar as xgr

        xinfo = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=size)
    except ImportError:
        xgr = None
    print("| grammar | engine | compile ms | masks | mask ms p50 / p99 / max | same |")
    print("|---|---|---|---|---|---|")
    for name, document in DOCUMENTS.items():
        text = (DATA / name).read_text()
        ids = tokenizer.encode(document, add_special_tokens=False)
        reference = None
        for engine in ["gad (unfused)", "gad (fused)", "xgrammar"]:
            if engine == "xgrammar" and xgr is None:
                continue
            all_times: list[float] = []
            compile_ms = []
            try:
                xi = xinfo if xgr is not None else None
                masks = run_engine(engine, text, ids, args.repeat, info, xi, size, all_times, compile_ms)
            except Exception as exc:  # a peer's refusal is a result, printed
                print(f"| {name} | {engine} | refuses: {str(exc).splitlines()[0][-90:]} | | | |", flush=True)
                continue
            times = all_times[-(len(ids) + 1) :]
            if reference is None:
                reference = masks
            same = all(np.array_equal(a, b) for a, b in zip(reference, masks)) and len(reference) == len(masks)
            print(f"| {name} | {engine} | {np.median(compile_ms):.0f} | {len(times)} | "
                  f"{percentile(all_times, 50):.2f} / {percentile(all_times, 99):.1f} / {max(all_times):.1f} | "
                  f"{'yes' if same else 'NO'} |", flush=True)  # fmt: skip
    print(f"clock: time.process_time; {args.repeat} repeats; tokenizer {args.tokenizer} ({size} ids); the first"
          " mask of each replay is in the mask times (gad builds its mask entries lazily)")


def run_engine(
    engine: str, text: str, ids: list[int], repeat: int, info: gad.TokenizerInfo, xinfo: object, size: int,
    all_times: list[float], compile_ms: list[float],
) -> list[np.ndarray]:
    """Compile and replay ``repeat`` times, appending to ``all_times`` and ``compile_ms``; returns
    the last replay's masks."""
    masks: list[np.ndarray] = []
    for _ in range(repeat):
        start = time.process_time()
        if engine == "xgrammar":
            import xgrammar as xgr

            compiler = xgr.GrammarCompiler(xinfo, max_threads=1, cache_enabled=False)
            compiled = compiler.compile_grammar(xgr.Grammar.from_ebnf(text, root_rule_name="root"))
            compile_ms.append((time.process_time() - start) * 1e3)
            times, masks = replay_xgrammar(compiled, ids, size)
        else:
            grammar = gad.Grammar.from_gbnf(text, fuse=engine == "gad (fused)")
            compiled = gad.GrammarCompiler(info).compile(grammar)
            compile_ms.append((time.process_time() - start) * 1e3)
            times, masks = replay_gad(compiled, ids)
        all_times.extend(times)
    return masks


if __name__ == "__main__":
    main()
