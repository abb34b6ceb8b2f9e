"""SMC and ASAp on gad, xgrammar and llguidance: CPU time per sample, and the constraint's share.

    python benchmarks/engines.py [--samples 5] [--particles 4] [--max-new-tokens 32]
                                 [--model smollm2|random] [--markdown]

The same samplers (`gad.SMC`, `gad.ASApSampler`), the same model, prompt, grammar
(``grammars/json.lark``: gad reads it, llguidance takes the Lark text as it is, xgrammar through
its Lark converter) and seeds on each engine's constraints (`gad.engines.constraint_factory`,
SmolLM2's tokenizer). Per sample: one SMC run of ``--particles`` AWRS particles, or one ASAp
sample (batch size 1, one trie shared by the samples, as `gad.generate` does); the process CPU
time (``time.process_time``) of each, p50 / p99 / max over ``--samples``. Every constraint call
(mask, accept, rollback, fork) is timed with the same clock through a thin wrapper, which gives
the constraint's share of the time and the mask's share (SMC's AWRS checks tokens one by one
with accept + rollback, so most of its constraint time is not masks). The model is SmolLM2-135M-Instruct from
`gad.assets` (``--model random``: a random 2-layer model of the same 49,152-token vocabulary, for
a quick look). One torch thread, ``RAYON_NUM_THREADS=1``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from _common import render_table, version  # first: one thread, offline

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gad  # noqa: E402
from gad.constraint import ConstraintFactory  # noqa: E402
from gad.engines import ENGINES, constraint_factory  # noqa: E402
from gad.generate import encode_prompt  # noqa: E402
from gad.lm import HuggingFaceLM  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Give a JSON object describing a fictional person, with the keys name, age and city."
clock = time.process_time


class Timed:
    """A constraint whose calls add their CPU time to ``totals`` (mask / other)."""

    def __init__(self, inner, totals: dict[str, float]) -> None:
        self.inner, self.totals = inner, totals

    def _time(self, kind: str, method, *args):
        started = clock()
        try:
            return method(*args)
        finally:
            self.totals[kind] += clock() - started

    def fill_next_token_bitmask(self, bitmask, index=0):
        return self._time("mask", self.inner.fill_next_token_bitmask, bitmask, index)

    def accept_token(self, token_id):
        return self._time("other", self.inner.accept_token, token_id)

    def rollback(self, num_tokens=1):
        return self._time("other", self.inner.rollback, num_tokens)

    def fork(self):
        return Timed(self._time("other", self.inner.fork), self.totals)

    def is_accepting(self):
        return self._time("other", self.inner.is_accepting)

    def is_terminated(self):
        return self.inner.is_terminated()


def timed(factory: ConstraintFactory, totals: dict[str, float]) -> ConstraintFactory:
    return ConstraintFactory(
        new=lambda: Timed(factory(), totals), vocab_size=factory.vocab_size, eos_token_ids=factory.eos_token_ids,
        never_allowed=factory.never_allowed, decode=factory.decode, fingerprint=factory.fingerprint,
    )


def load(model_name: str):
    if model_name == "smollm2":
        from gad.assets import load_default_model

        model, tokenizer = load_default_model()
        return model, tokenizer
    from gad.assets import load_tokenizer
    from gad.lm import random_hf_model

    tokenizer = load_tokenizer("smollm2")
    model = random_hf_model(len(tokenizer), seed=0)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--model", choices=["smollm2", "random"], default="smollm2")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load(args.model)
    lm = HuggingFaceLM(model)
    prompt = encode_prompt(tokenizer, PROMPT)
    grammar = (ROOT / "grammars" / "json.lark").read_text()
    rows = []
    for engine in args.engines.split(","):
        started = clock()
        factory = constraint_factory(grammar, tokenizer, engine, model=model)
        setup_ms = 1000 * (clock() - started)
        for sampler_name in ("smc", "asap"):
            totals = {"mask": 0.0, "other": 0.0}
            constraints = timed(factory, totals)
            times, complete = [], 0
            asap = gad.ASApSampler(lm, constraints, batch_size=1) if sampler_name == "asap" else None
            smc = gad.SMC(lm, constraints) if sampler_name == "smc" else None
            for i in range(args.samples):
                started = clock()
                if smc is not None:
                    result = smc.run(prompt, args.particles, max_new_tokens=args.max_new_tokens, seed=i)
                    complete += sum(p.complete for p in result.particles)
                else:
                    complete += sum(s.complete for s in asap.sample(prompt, 1, max_new_tokens=args.max_new_tokens, seed=i))
                times.append(clock() - started)
            ms = 1000 * np.asarray(times)
            total = float(np.sum(times))
            rows.append([
                engine, sampler_name, f"{setup_ms:.0f}", str(args.samples),
                *(f"{v:.0f}" for v in (np.percentile(ms, 50), np.percentile(ms, 99), ms.max())),
                f"{100 * (totals['mask'] + totals['other']) / total:.1f}", f"{100 * totals['mask'] / total:.1f}",
                f"{complete}/{args.samples * (args.particles if smc is not None else 1)}",
            ])  # fmt: skip
            print(f"# {engine} {sampler_name} done", file=sys.stderr, flush=True)
    header = ["engine", "sampler", "setup ms", "samples", "p50 ms", "p99 ms", "max ms",
              "constraint %", "mask %", "complete"]  # fmt: skip
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    notes = [
        f"gad {gad.__version__}, xgrammar {version('xgrammar')}, llguidance {version('llguidance')}, torch "
        f"{torch.__version__}; Python {platform.python_version()}, {os.cpu_count()} CPUs (load average "
        f"{load_avg:.1f}), one thread",
        f"model: {'SmolLM2-135M-Instruct (gad.assets)' if args.model == 'smollm2' else 'random 2-layer Llama, SmolLM2 vocabulary (49,152)'}; "
        f"SmolLM2 tokenizer; grammars/json.lark; chat prompt {PROMPT!r}",
        f"clock: process CPU time (time.process_time); per sample = one SMC run of {args.particles} particles "
        f"or one ASAp sample; max_new_tokens {args.max_new_tokens}; setup = constraint_factory (tokenizer "
        "conversion + compile)",
        "constraint % / mask %: CPU time inside the constraint (all calls) / inside fill_next_token_bitmask, "
        "of the samplers' total",
        "command: python " + " ".join(sys.argv),
    ]
    print("\n".join(("- " if args.markdown else "# ") + n for n in notes))
    print()
    print(render_table(header, rows, numeric=range(2, 9), markdown=args.markdown))


if __name__ == "__main__":
    main()
