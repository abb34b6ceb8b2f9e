"""Replay a document token by token and time gad's `next_token_mask()` at every step.

    python benchmarks/mask_bench.py [--tokenizer llama3] [--grammar json]

Prints compile time and per-token mask time (p50 / p99 / max). Peer engines (xgrammar,
llguidance) join this script with the fast-mask work; until then it measures gad alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import gad
from gad.assets import load_tokenizer

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
DOCUMENTS = {
    "json": (
        '{\n  "id": 1024,\n  "name": "Zo\\u00eb M\u00fcller",\n  "email": "zoe@example.com",\n'
        '  "tags": ["admin", "dev\\tops", "\u6771\u4eac"],\n  "score": -12.5e-3,\n'
        '  "active": true,\n  "manager": null,\n  "address": {"street": "1 Main St", "zip": "02139"}\n}'
    ),
    "arithmetic": "12 * (3.5 - -4) / 7 + ((1 + 2) * 3 - 4 / 5) * 100",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default="llama3", choices=["gpt2", "smollm2", "mistral", "llama3"])
    parser.add_argument("--grammar", default="json", choices=sorted(DOCUMENTS))
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.tokenizer)
    info = gad.TokenizerInfo.from_huggingface(tokenizer)
    started = time.perf_counter()
    compiled = gad.GrammarCompiler(info).compile(gad.Grammar.from_file(GRAMMARS / f"{args.grammar}.lark"))
    compile_ms = (time.perf_counter() - started) * 1e3

    document = DOCUMENTS[args.grammar]
    token_ids = tokenizer.encode(document, add_special_tokens=False)
    matcher = gad.GrammarMatcher(compiled)
    times = []
    for token in [*token_ids, None]:
        started = time.perf_counter()
        mask = matcher.next_token_mask()
        times.append(time.perf_counter() - started)
        if token is not None and not (mask[token] and matcher.accept_token(token)):
            raise SystemExit(f"token {token} rejected: the document is not in the grammar")
    us = np.array(times) * 1e6
    print(f"tokenizer={args.tokenizer} ({info.vocab_size} tokens)  grammar={args.grammar}  "
          f"document={len(token_ids)} tokens")
    print(f"{'engine':<8} {'compile ms':>10} {'mask p50 us':>12} {'mask p99 us':>12} {'mask max us':>12}")
    print(f"{'gad':<8} {compile_ms:>10.1f} {np.percentile(us, 50):>12.0f} {np.percentile(us, 99):>12.0f} "
          f"{us.max():>12.0f}")


if __name__ == "__main__":
    main()
