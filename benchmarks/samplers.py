"""Every registered sampler at equal budget: model forward passes, with CPU time alongside.

    python benchmarks/samplers.py [--budgets 50 200 800 3200] [--repeats 3] [--threads 1]

Problems (Q enumerated exactly by `gad.exact`; the same two as ``benchmarks/awrs_smc.py kl``):

* ``skewed``: ``grammars/skewed.lark`` under a uniform model over {0, 1, EOS}, 17 sentences;
* ``sygus``: ``grammars/sygus_bv4.lark`` over a 17-word vocabulary with a 4-gram model trained on
  random nested bit-vector expressions, ``max_new_tokens = 12``, 598 sentences.

Each sampler runs in chunks until each budget of forward passes (`LanguageModel` calls, whatever
their batch) is spent: GCD 16 samples a chunk, ASAp 8 (its trie persists), CARS 8 (its trie
persists), SMC one run of 16 particles (runs combined by their Ẑ), MCMC one Metropolis–Hastings
step of 16 chains ("priority" proposals; the chains continue across chunks, every state after a
step counts as a sample). At each budget: KL(P̂ ‖ Q) in nats, the mean model log-probability of
the complete samples against ``E_Q[log P]``,  (a sampler whose trie is complete makes no more
model calls: it stops after 50 chunks without one, below the budget), the complete samples drawn, forward passes per
complete sample, and the acceptance rate (CARS: accepted attempts; MCMC: accepted proposals).
Mean ± standard deviation over ``--repeats`` seeds. CPU time is process time
(`time.process_time`), for the whole chunk loop.

Printed as Markdown tables and written to ``benchmarks/results/samplers.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from awrs_smc import problems  # noqa: E402

import gad  # noqa: E402
from gad.exact import exact_distribution  # noqa: E402
from gad.lm import LanguageModel  # noqa: E402
from gad.samplers import SAMPLERS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAMES = ("gcd", "asap", "smc", "cars", "mcmc")


class CountingLM(LanguageModel):
    """A `LanguageModel` that counts its forward passes."""

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm
        self.calls = 0

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    def next_token_logprobs(self, prefixes):
        self.calls += 1
        return self.lm.next_token_logprobs(prefixes)


def _kl(estimate: dict, q: dict) -> float:
    total = 0.0
    for w, p in estimate.items():
        if p > 0:
            total += p * math.log(p / q[w]) if q.get(w, 0) > 0 else math.inf
    return max(total, 0.0)


class Runner:
    """One sampler on one problem, run chunk by chunk; `estimate` is its current P̂."""

    def __init__(self, name: str, lm: CountingLM, compiled, n_max: int, seed: int) -> None:
        self.name, self.lm, self.n_max, self.seed = name, lm, n_max, seed
        self.sampler = SAMPLERS[name](lm, compiled, **({"proposal": "priority"} if name == "mcmc" else {}))
        self.samples: list = []  # complete samples (all samplers but SMC)
        self.runs: list[tuple[float, dict, float]] = []  # SMC: (log Ẑ, posterior, E_post[log P])
        self.states = None
        self.k = 0

    def chunk(self) -> None:
        s, seed = self.sampler, self.seed * 1_000_003 + self.k
        self.k += 1
        if self.name == "smc":
            r = s.run([], 16, max_new_tokens=self.n_max, seed=seed)
            post = r.posterior(key=lambda p: p.token_ids)
            logp = {p.token_ids: p.logprob_model for p in r.particles}
            self.runs.append((r.log_marginal_likelihood, post, sum(v * logp[w] for w, v in post.items())))
        elif self.name == "mcmc":
            r = s.run([], 16, steps=1, max_new_tokens=self.n_max, seed=seed, init=self.states)
            self.states = r.states
            self.samples += [x for x in r.after(1) if x.complete]
        else:
            self.samples += [x for x in s.sample([], n=16 if self.name == "gcd" else 8, max_new_tokens=self.n_max, seed=seed)
                             if x.complete]  # fmt: skip

    def estimate(self) -> tuple[dict, float, int]:
        """(P̂, its mean model log-probability, complete samples or particles behind it)."""
        if self.name == "smc":
            finite = [(lz, post, lp) for lz, post, lp in self.runs if lz > -math.inf]
            if not finite:
                return {}, math.nan, 0
            top = max(lz for lz, _, _ in finite)
            total = sum(math.exp(lz - top) for lz, _, _ in finite)
            est: dict = {}
            for lz, post, _ in finite:
                for w, p in post.items():
                    est[w] = est.get(w, 0.0) + math.exp(lz - top) / total * p
            mean = sum(math.exp(lz - top) / total * lp for lz, _, lp in finite)
            return est, mean, 16 * len(self.runs)
        counts: dict = {}
        for x in self.samples:
            counts[x.token_ids] = counts.get(x.token_ids, 0) + 1
        n = len(self.samples)
        mean = statistics.fmean(x.logprob_model for x in self.samples) if n else math.nan
        return ({w: c / n for w, c in counts.items()} if n else {}), mean, n

    def acceptance(self) -> float:
        if self.name == "cars":
            return self.sampler.stats()["acceptance_rate"]
        if self.name == "mcmc":
            c = self.sampler.counts
            return c["accepted"] / c["proposals"] if c["proposals"] else math.nan
        return math.nan


def run(budgets: Sequence[float], repeats: int, threads: int, log=print) -> dict:
    torch.set_num_threads(threads)
    out: dict = {"budgets": list(budgets), "repeats": repeats, "threads": threads, "problems": {}}
    for problem, (base_lm, compiled, n_max) in problems().items():
        exact = exact_distribution(base_lm, compiled, max_length=n_max)
        q = exact.probs()
        rows: dict = {}
        for name in NAMES:
            points: list[list[dict]] = [[] for _ in budgets]
            for r in range(repeats):
                lm = CountingLM(base_lm)
                runner = Runner(name, lm, compiled, n_max, seed=r)
                cpu = time.process_time()
                for i, budget in enumerate(sorted(budgets)):
                    idle = 0  # ASAp and CARS stop calling the model once their trie is complete
                    while lm.calls < budget and idle < 50:
                        before = lm.calls
                        runner.chunk()
                        idle = idle + 1 if lm.calls == before else 0
                    est, mean, n = runner.estimate()
                    points[i].append({"kl": _kl(est, q), "logp": mean, "n": n, "calls": lm.calls,
                                      "acceptance": runner.acceptance(), "cpu": time.process_time() - cpu})  # fmt: skip
            rows[name] = [
                {k: [float(np.mean([p[k] for p in pts])), float(np.std([p[k] for p in pts]))] for k in pts[0]}
                for pts in points
            ]
            log(f"# {problem}: {name} done")
        out["problems"][problem] = {"sentences": len(exact), "z": exact.z, "max_new_tokens": n_max,
                                    "ideal_logp": exact.expected_logprob(), "samplers": rows}  # fmt: skip
    return out


def show(result: dict) -> None:
    budgets = result["budgets"]
    for problem, r in result["problems"].items():
        print(f"\n# {problem}: {r['sentences']} sentences, Z = {r['z']:.3g}, E_Q[log P] = {r['ideal_logp']:.2f}; "
              f"mean ± sd over {result['repeats']} seeds")  # fmt: skip
        print("| sampler | " + " | ".join(f"KL @ {b:g} passes" for b in budgets)
              + f" | mean log P @ {budgets[-1]:g} | complete samples | passes / sample | acceptance | CPU s |")  # fmt: skip
        print("|---|" + "---:|" * (len(budgets) + 5))
        for name, pts in r["samplers"].items():
            last = pts[-1]
            kl = [f"{p['kl'][0]:.3f} ± {p['kl'][1]:.3f}" for p in pts]
            n = last["n"][0]
            acc = last["acceptance"][0]
            print(f"| {name} | " + " | ".join(kl) + f" | {last['logp'][0]:.2f} | {n:,.0f} | "
                  f"{last['calls'][0] / n if n else math.inf:.2f} | {'—' if math.isnan(acc) else f'{acc:.2f}'} | "
                  f"{last['cpu'][0]:.1f} |")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[50, 200, 800, 3200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.budgets, args.repeats, args.threads, log=lambda m: print(m, file=sys.stderr))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "samplers.json").write_text(json.dumps(result, indent=1) + "\n")
    show(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
