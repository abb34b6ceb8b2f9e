"""GCD vs ASAp vs the exact constrained distribution: KL and the expectation metric against the
number of samples, and ASAp's cost as its trie grows.

    python benchmarks/asap_kl.py toy     [--samples 2000] [--runs 10] [--batch-size 1]
    python benchmarks/asap_kl.py cost    [--samples 2000] [--bits 10]
    python benchmarks/asap_kl.py smollm2 --grammar sygus_bv4    [--samples 2000] [--batch-size 16]
    python benchmarks/asap_kl.py smollm2 --grammar constituency [--samples 2000] [--time-budget 900]

Experiments (Park et al. 2024, "Grammar-Aligned Decoding", §5):

* ``toy``: the skewed grammar ``"00000" | "1" [01]{4}`` (grammars/skewed.lark) under a uniform
  model over ``{"0", "1", EOS}``. Q is uniform over its 17 sentences; GCD gives ``00000`` half of
  the time. ``--runs`` independent runs (seeds ``1000·r``) of each sampler; KL(P̂_n ‖ Q) at each
  checkpoint n, mean and standard deviation over runs, next to the KL of n i.i.d. draws from Q
  (the finite-sample floor).
* ``cost``: ASAp on ``"0"{k} | "1" [01]{k-1}`` (2^(k-1) + 1 sentences) under the uniform model:
  CPU time per sample, new nodes per sample and memory against the number of trie nodes.
* ``smollm2``: SmolLM2-135M-Instruct (offline) with a SyGuS-style 4-bit bit-vector grammar or a
  constituency-parse grammar, the prompt through the chat template. The exact Q is enumerated
  first with ``--min-prob`` pruning (its pruned mass is reported; KL is then computed with the
  pruned sentences pooled, `gad.metrics.kl_divergence(pool_pruned=True)`); when it cannot be
  enumerated within ``--max-expanded`` prefixes, only the expectation metric is reported, with
  the ideal estimated by importance weighting the GCD samples (`gad.metrics.importance_estimate`).
  Each sampler draws ``--samples`` samples in batches of ``--batch-size`` and stops early when
  ``--time-budget`` seconds are spent (the JSON says how many it drew).

Results are printed and written as JSON to ``benchmarks/results/asap_<experiment>.json`` (``--out``),
which ``notebooks/asap.ipynb`` reads for its SmolLM2 plots. All runs are seeded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import gad
from gad.exact import ExactDistribution, exact_distribution
from gad.lm import LanguageModel, UniformLM
from gad.metrics import expected_logprob_curve, iid_kl_curve, importance_estimate, kl_curve
from gad.samplers.asap import ASApSampler
from gad.samplers.gcd import GCDSampler

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINTS = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
BITS = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)

PROMPTS = {
    "sygus_bv4": (
        "Synthesize a 4-bit bit-vector function f(x, y) such that f(#b0001, #b0010) = #b0011 and "
        "f(#b0100, #b0011) = #b0111. Answer with the body of f as one SMT-LIB expression."
    ),
    "constituency": (
        'The constituency parse tree of "a cat sleeps" in Penn Treebank notation is '
        '(S (NP (DT a) (NN cat)) (VP (VBZ sleeps))). Give the constituency parse tree of the '
        'sentence "the dog barks" in the same notation.'
    ),
}


def checkpoints(n: int) -> list[int]:
    return [c for c in CHECKPOINTS if c < n] + [n]


# -- toy -------------------------------------------------------------------------------------------


def skewed_problem() -> tuple[LanguageModel, gad.CompiledGrammar, ExactDistribution]:
    compiled = gad.GrammarCompiler(BITS).compile(gad.Grammar.from_file(ROOT / "grammars" / "skewed.lark"))
    lm = UniformLM(3)
    return lm, compiled, exact_distribution(lm, compiled, max_length=6)


def run_toy(samples: int = 2000, runs: int = 10, batch_size: int = 1) -> dict:
    """KL against n for GCD, ASAp and i.i.d. draws from Q on the skewed grammar."""
    lm, compiled, exact = skewed_problem()
    points = checkpoints(samples)
    zeros = (0, 0, 0, 0, 0, 2)
    curves: dict[str, list[list[float]]] = {"gcd": [], "asap": []}
    frequency: dict[str, list[float]] = {"gcd": [], "asap": []}
    seconds: dict[str, float] = {"gcd": 0.0, "asap": 0.0}
    for run in range(runs):
        for name in ("gcd", "asap"):
            sampler = GCDSampler(lm, compiled) if name == "gcd" else ASApSampler(lm, compiled, batch_size=batch_size)
            start = time.perf_counter()
            drawn = sampler.sample([], n=samples, max_new_tokens=6, seed=1000 * run)
            seconds[name] += time.perf_counter() - start
            curves[name].append([kl for _, kl in kl_curve(drawn, exact, points)])
            frequency[name].append(sum(s.token_ids == zeros for s in drawn) / samples)
    iid = iid_kl_curve(exact, points, repeats=max(runs, 20))
    summary = {
        name: {
            "mean": [statistics.fmean(c[k] for c in curves[name]) for k in range(len(points))],
            "std": [statistics.pstdev(c[k] for c in curves[name]) for k in range(len(points))],
            "freq_00000": statistics.fmean(frequency[name]),
            "seconds_per_sample": seconds[name] / (runs * samples),
        }
        for name in curves
    }
    summary["iid"] = {"mean": [kl for _, kl in iid]}
    return {
        "experiment": "toy",
        "grammar": "skewed.lark",
        "model": "uniform over {0, 1, EOS}",
        "samples": samples,
        "runs": runs,
        "batch_size": batch_size,
        "checkpoints": points,
        "exact": {"sentences": len(exact), "z": exact.z, "q_00000": exact.probs()[zeros]},
        **summary,
    }


def print_toy(result: dict) -> None:
    points = result["checkpoints"]
    print(f"# skewed grammar, uniform model: {result['runs']} runs, ASAp batch size {result['batch_size']}")
    print(f"# exact: {result['exact']['sentences']} sentences, Q(00000) = {result['exact']['q_00000']:.4f}")
    print("| n | " + " | ".join(str(p) for p in points) + " |")
    print("|---|" + "---|" * len(points))
    for name, label in (("gcd", "GCD"), ("asap", "ASAp"), ("iid", "i.i.d. from Q")):
        row = result[name]["mean"]
        std = result[name].get("std")
        cells = [f"{m:.4f}" + (f" ± {s:.4f}" if std else "") for m, s in zip(row, std or [0] * len(row))]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for name in ("gcd", "asap"):
        r = result[name]
        print(f"# {name}: frequency of 00000 {r['freq_00000']:.4f}, {1e6 * r['seconds_per_sample']:.0f} µs per sample")


# -- cost -------------------------------------------------------------------------------------------


def run_cost(samples: int = 2000, bits: int = 10, batch_size: int = 1, every: int = 100) -> dict:
    """ASAp's time per sample and memory as its trie grows (uniform model, a grammar with
    2^(bits-1) + 1 sentences of `bits` tokens)."""
    grammar = f'start: "{"0" * bits}" | "1" /[01]{{{bits - 1}}}/'
    compiled = gad.GrammarCompiler(BITS).compile(gad.Grammar.from_lark(grammar))
    sampler = ASApSampler(UniformLM(3), compiled, batch_size=batch_size)
    rows = []
    nodes = 1
    for lo in range(0, samples, every):
        start = time.process_time()  # CPU time: the machine may be shared
        sampler.sample([], n=every, max_new_tokens=bits + 1, seed=lo)
        elapsed = time.process_time() - start
        stats = sampler.trie([], bits + 1).stats()
        rows.append({
            "samples": lo + every, "nodes": stats["nodes"], "bytes": stats["bytes"],
            "new_nodes_per_sample": (stats["nodes"] - nodes) / every,
            "us_per_sample": 1e6 * elapsed / every, "root_value": stats["root_value"],
        })
        nodes = stats["nodes"]
    return {"experiment": "cost", "grammar": grammar, "sentences": 2 ** (bits - 1) + 1, "rows": rows,
            "z": (2 ** (bits - 1) + 1) / 3 ** (bits + 1)}


def print_cost(result: dict) -> None:
    print(f"# ASAp cost, {result['grammar']} ({result['sentences']} sentences), uniform model")
    print("| samples | trie nodes | memory (KiB) | new nodes per sample | CPU µs per sample | root ĉ / Z |")
    print("|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['samples']} | {r['nodes']} | {r['bytes'] / 1024:.0f} | {r['new_nodes_per_sample']:.2f} "
            f"| {r['us_per_sample']:.0f} | {r['root_value'] / result['z']:.3f} |"
        )


# -- SmolLM2 ----------------------------------------------------------------------------------------


def _record(sample, tokenizer) -> dict:
    return {
        "token_ids": list(sample.token_ids),
        "text": tokenizer.decode(sample.token_ids, skip_special_tokens=True),
        "complete": sample.complete,
        "logprob_model": sample.logprob_model,
        "logprob_sampler": sample.logprob_sampler,
    }


def run_smollm2(
    grammar: str,
    samples: int = 2000,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    min_prob: float = 1e-10,
    max_expanded: int = 20_000,
    time_budget: float = 900.0,
    threads: int | None = None,
    enumerate_exact: bool = True,
    log=print,
) -> dict:
    from gad.assets import load_default_model
    from gad.generate import compile_grammar, encode_prompt
    from gad.lm import HuggingFaceLM

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = load_default_model()
    lm = HuggingFaceLM(model)
    compiled = compile_grammar(ROOT / "grammars" / f"{grammar}.lark", tokenizer, lm)
    prompt = encode_prompt(tokenizer, PROMPTS[grammar])
    result: dict = {
        "experiment": "smollm2", "grammar": f"{grammar}.lark", "prompt": PROMPTS[grammar],
        "prompt_tokens": len(prompt), "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "samples_requested": samples, "time_budget": time_budget, "threads": torch.get_num_threads(),
    }

    # 1. The exact distribution, if it can be enumerated.
    start = time.perf_counter()
    exact = None
    try:
        if not enumerate_exact:
            raise gad.ConfigurationError("skipped (--no-exact)")
        exact = exact_distribution(
            lm, compiled, prompt, max_length=max_new_tokens, min_prob=min_prob, batch_size=64,
            max_expanded=max_expanded,
            progress=lambda depth, width: log(f"# exact: length {depth}, {width} open prefixes"),
        )
    except gad.ConfigurationError as exc:
        log(f"# exact: not enumerable ({exc})")
    result["exact_seconds"] = time.perf_counter() - start
    result["exact_error"] = None if exact is not None else "not enumerated"
    if exact is not None and len(exact):
        q = exact.probs()
        top = sorted(q.items(), key=lambda item: -item[1])
        result["exact"] = {
            "sentences": len(exact), "z": exact.z, "open_mass": exact.open_mass, "pruned_mass": exact.pruned_mass,
            "min_prob": min_prob, "expanded": exact.expanded, "expected_logprob": exact.expected_logprob(),
            "q": [[list(w), p] for w, p in top],
            "top": [[tokenizer.decode(w, skip_special_tokens=True), p] for w, p in top[:10]],
        }
        log(f"# exact: {exact}")
    else:
        result["exact"] = None

    # 2. The samplers, one after the other, each within the time budget.
    for name in ("gcd", "asap"):
        lm.reset()
        sampler = GCDSampler(lm, compiled) if name == "gcd" else ASApSampler(lm, compiled, batch_size=batch_size)
        drawn, batches = [], []
        start = time.perf_counter()
        for lo in range(0, samples, batch_size):
            t0 = time.perf_counter()
            calls0 = dict(lm.stats)
            batch = sampler.sample(prompt, n=min(batch_size, samples - lo), max_new_tokens=max_new_tokens, seed=lo)
            drawn.extend(batch)
            info = {"samples": len(drawn), "seconds": time.perf_counter() - t0,
                    "tokens": sum(len(s.token_ids) for s in batch),
                    "lm_calls": sum(lm.stats[k] - calls0[k] for k in ("incremental", "full"))}
            if name == "asap":
                stats = sampler.trie(prompt, max_new_tokens).stats()
                info.update(nodes=stats["nodes"], bytes=stats["bytes"], root_value=stats["root_value"])
            batches.append(info)
            if len(drawn) % (batch_size * 10) == 0:
                log(f"# {name}: {len(drawn)} samples, {time.perf_counter() - start:.0f} s")
            if time.perf_counter() - start > time_budget:
                log(f"# {name}: time budget spent after {len(drawn)} samples")
                break
        elapsed = time.perf_counter() - start
        points = checkpoints(len(drawn))
        entry: dict = {
            "samples": len(drawn), "seconds": elapsed, "batches": batches,
            "complete": sum(s.complete for s in drawn),
            "expected_logprob": expected_logprob_curve(drawn, points),
            "records": [_record(s, tokenizer) for s in drawn],
        }
        try:
            estimate = importance_estimate(drawn)
            entry["importance"] = {"log_z": estimate.log_z, "expected_logprob": estimate.expected_logprob, "ess": estimate.ess}
        except gad.ConfigurationError:
            entry["importance"] = None
        if exact is not None and len(exact):
            entry["kl"] = kl_curve(drawn, exact, points, pool_pruned=True)
            entry["outside_exact"] = sum(s.complete and tuple(s.token_ids) not in exact.logp for s in drawn)
        result[name] = entry
        log(f"# {name}: {len(drawn)} samples in {elapsed:.0f} s")
    return result


def print_smollm2(result: dict) -> None:
    exact = result["exact"]
    print(f"# SmolLM2-135M-Instruct, {result['grammar']}, prompt of {result['prompt_tokens']} tokens")
    if exact:
        print(
            f"# exact: {exact['sentences']} sentences, Z = {exact['z']:.3g}, pruned mass {exact['pruned_mass']:.2g} "
            f"({exact['pruned_mass'] / exact['z']:.1%} of Z, min_prob {exact['min_prob']:g}), open mass "
            f"{exact['open_mass']:.2g}; E_Q[log P] = {exact['expected_logprob']:.3f}"
        )
        for text, p in exact["top"][:5]:
            print(f"#   Q = {p:.4f}  {text}")
    for name in ("gcd", "asap"):
        entry = result[name]
        last = entry["expected_logprob"][-1]
        line = (f"# {name}: {entry['samples']} samples ({entry['complete']} complete) in {entry['seconds']:.0f} s, "
                f"{entry['seconds'] / max(entry['samples'], 1):.2f} s/sample; mean log P = {last[1]:.3f}")
        if entry.get("importance"):
            line += f"; IS estimate of E_Q[log P] = {entry['importance']['expected_logprob']:.3f} (ESS {entry['importance']['ess']:.0f})"
        print(line)
        if "kl" in entry:
            print("#   KL at n = " + ", ".join(f"{n}: {kl:.3f}" for n, kl in entry["kl"]))


# -- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=["toy", "cost", "smollm2"])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=10, help="toy: independent runs per sampler")
    parser.add_argument("--batch-size", type=int, default=None, help="ASAp batch size (toy/cost: 1, smollm2: 16)")
    parser.add_argument("--bits", type=int, default=10, help="cost: sentence length")
    parser.add_argument("--grammar", choices=sorted(PROMPTS), default="sygus_bv4")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--min-prob", type=float, default=1e-10, help="smollm2: pruning of the exact enumeration")
    parser.add_argument("--max-expanded", type=int, default=20_000, help="smollm2: give up the exact enumeration beyond this")
    parser.add_argument("--time-budget", type=float, default=900.0, help="smollm2: seconds per sampler")
    parser.add_argument("--no-exact", action="store_true", help="smollm2: skip the exact enumeration")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.experiment == "toy":
        result = run_toy(args.samples, args.runs, args.batch_size or 1)
        print_toy(result)
    elif args.experiment == "cost":
        result = run_cost(args.samples, args.bits, args.batch_size or 1)
        print_cost(result)
    else:
        result = run_smollm2(
            args.grammar, args.samples, args.batch_size or 16, args.max_new_tokens, args.min_prob,
            args.max_expanded, args.time_budget, args.threads, not args.no_exact,
            log=lambda message: print(message, file=sys.stderr, flush=True),
        )
        print_smollm2(result)
    name = args.experiment if args.experiment != "smollm2" else f"smollm2_{args.grammar}"
    out = args.out or RESULTS / f"asap_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Compact: the SmolLM2 results hold every sample's token ids.
    out.write_text(json.dumps(result, separators=(",", ":")))
    print(f"# written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
