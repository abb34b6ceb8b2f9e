"""AWRS and SMC: grammar checks and time per token against full masking, and KL to the exact
distribution at equal wall-clock budget against GCD and ASAp.

    python benchmarks/awrs_smc.py checks [--samples 4] [--max-new-tokens 64] [--particles 8] [--threads 1]
    python benchmarks/awrs_smc.py kl     [--budgets 0.25 1 4] [--repeats 5] [--particles 64] [--threads 1]

Experiments:

* ``checks``: SmolLM2-135M-Instruct (offline) on ``grammars/json.lark`` with the demo prompt
  (through the chat template), ``--samples`` sequences decoded as one batch. Full masking is GCD
  (`GCDSampler`: one ``next_token_mask`` per sequence per token, which decides all 49,152 tokens);
  AWRS is `AWRSSampler` with each weight estimator (the same per-token distribution, a handful of
  ``accept_token`` checks instead), with the default ``mask_after=64`` (a step that has rejected
  64 tokens finishes with one mask) and once without it; SMC is `gad.SMC` with ``--particles`` particles (recursive
  estimator; its median and max are over steps, per running particle). Reported per generated
  token: grammar checks (mean, median, max: AWRS needs about 1/Z checks where the model gives
  little mass Z to what the grammar allows, so the mean is dominated by rare steps), the model's time (the
  `LanguageModel` calls), the sampler's own time (everything else: masks or checks, softmax,
  bookkeeping) and the total. ``torch.set_num_threads(--threads)`` for every row. Then, on
  identical states — every prefix the full-masking run visited, with its recorded model row and
  the exact Z from its mask — each estimator 32 times, with and without ``mask_after``: checks
  per step, masks per step, the mean of W/Z (1 if unbiased) and its standard deviation (the
  estimator's noise; 0 for an exact weight), and the time of one step (the model excluded).
* ``kl``: two problems whose exact distribution Q enumerates in a second —
  ``skewed``: ``grammars/skewed.lark`` under a uniform model over {0, 1, EOS} (17 sentences);
  ``sygus``: ``grammars/sygus_bv4.lark`` over a word-level vocabulary (``(``, ``bvand``, ``x``,
  ``#b``, ``0`` …, 17 tokens) with a 4-gram model trained on 3,000 random bit-vector expressions
  (mean 16 tokens, nested) and ``max_new_tokens = 12`` (598 sentences): the model prefers nested
  expressions that do not fit, and a 4-gram cannot count brackets, so GCD is far from Q.
  Each sampler runs until each budget (seconds of wall clock) is spent: GCD and ASAp draw
  batches of 16 and 8 samples (ASAp's trie persists across its batches); SMC does independent
  runs of ``--particles`` particles, combined by their Ẑ (``π̂ = Σ_r Ẑ_r π̂_r / Σ_r Ẑ_r``).
  KL(P̂ ‖ Q) in nats at each budget, mean ± standard deviation over ``--repeats`` repeats with
  different seeds, the samplers interleaved within each repeat. ``torch.set_num_threads(--threads)``:
  the toy models make every sampler's cost its own Python and small tensor operations, which a
  busy multi-threaded pool would slow down unevenly.

Results are printed as Markdown tables and written to ``benchmarks/results/awrs_smc_<experiment>.json``.
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

import gad
from gad.exact import ExactDistribution, exact_distribution
from gad.lm import LanguageModel, NGramLM, UniformLM
from gad.samplers.asap import ASApSampler
from gad.samplers.awrs import AWRSSampler
from gad.samplers.gcd import GCDSampler
from gad.samplers.smc import SMC

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PROMPT = "Give a short JSON object describing a fictional person, with the keys name, age and city."


class TimedLM(LanguageModel):
    """A `LanguageModel` that adds up the time spent in the wrapped model."""

    def __init__(self, lm: LanguageModel, record: bool = False) -> None:
        self.lm = lm
        self.seconds = 0.0
        self.calls = 0
        self.record: list[tuple[list[tuple[int, ...]], torch.Tensor]] | None = [] if record else None

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    def next_token_logprobs(self, prefixes):
        start = time.perf_counter()
        try:
            out = self.lm.next_token_logprobs(prefixes)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1
        if self.record is not None:
            self.record.append(([tuple(int(t) for t in p) for p in prefixes], out))
        return out


def compare_estimators(compiled: gad.CompiledGrammar, record, prompt_len: int, repeats: int = 32) -> list[dict]:
    """Every estimator, `repeats` times, on each state a run visited (its model row recorded):
    single-token checks, masks, and W / Z with Z exact from the state's mask."""
    sampler = AWRSSampler(UniformLM(compiled.tokenizer_info.vocab_size), compiled)
    states = []
    for prefixes, rows in record:
        p = sampler.masses(rows)
        for prefix, row in zip(prefixes, p):
            matcher = gad.GrammarMatcher(compiled)
            if all(matcher.accept_token(t) for t in prefix[prompt_len:]) and not matcher.is_terminated():
                z = float(row[matcher.next_token_mask().numpy()[: row.shape[0]]].sum())
                if z > 0:
                    states.append((row, matcher, z))
    out = []
    configs = [(e, m) for e in ("recursive", "geometric", "two-run") for m in (64, None)] + [("exact", None)]
    for estimator, mask_after in configs:
        awrs = AWRSSampler(sampler.lm, compiled, estimator=estimator, mask_after=mask_after)
        rng = np.random.default_rng(0)
        checks, masks, ratio_std, ratio_mean, seconds = [], 0, [], [], 0.0
        for row, matcher, z in states:
            start = time.perf_counter()
            steps = [awrs.propose(row, matcher, rng) for _ in range(repeats)]
            seconds += time.perf_counter() - start
            checks += [st.checks for st in steps]
            masks += sum(st.masked for st in steps)
            ratios = np.exp([st.log_weight for st in steps]) / z
            ratio_mean.append(ratios.mean())
            ratio_std.append(ratios.std())
        out.append({
            "estimator": estimator, "mask_after": mask_after, "states": len(states), "repeats": repeats,
            "checks_mean": float(np.mean(checks)), "checks_median": float(np.median(checks)),
            "checks_p99": float(np.percentile(checks, 99)), "checks_max": float(np.max(checks)),
            "masks_per_step": masks / (len(states) * repeats), "w_over_z_mean": float(np.mean(ratio_mean)),
            "w_over_z_std": float(np.mean(ratio_std)), "ms_per_step": 1000 * seconds / (len(states) * repeats),
        })  # fmt: skip
    return out


# -- checks: SmolLM2 on JSON ----------------------------------------------------------------------


def run_checks(samples: int = 4, max_new_tokens: int = 64, particles: int = 8, threads: int = 1, log=print) -> dict:
    from gad.assets import load_default_model
    from gad.generate import compile_grammar, encode_prompt
    from gad.lm import HuggingFaceLM

    torch.set_num_threads(threads)
    model, tokenizer = load_default_model()
    hf = HuggingFaceLM(model)
    compiled = compile_grammar(ROOT / "grammars" / "json.lark", tokenizer, hf)
    prompt = encode_prompt(tokenizer, PROMPT)
    vocab = compiled.tokenizer_info.vocab_size
    rows = []
    configs = [("full masking (GCD)", None, None), ("AWRS, recursive, no mask fallback", "recursive", None),
               *((f"AWRS, {e}", e, 64) for e in ("recursive", "geometric", "two-run")),
               (f"SMC, {particles} particles (recursive)", "smc", 64)]  # fmt: skip
    record = None
    for label, kind, mask_after in configs:
        hf.reset()
        lm = TimedLM(hf, record=kind is None)
        if kind is None:
            record = lm.record
        start = time.perf_counter()
        if kind is None:
            drawn = GCDSampler(lm, compiled).sample(prompt, n=samples, max_new_tokens=max_new_tokens, seed=0)
            tokens = sum(len(s.token_ids) for s in drawn)
            checks, masks = 0, tokens
            per_token = [0]
            complete = sum(s.complete for s in drawn) / len(drawn)
        elif kind == "smc":
            result = SMC(lm, compiled, mask_after=mask_after).run(prompt, particles, max_new_tokens=max_new_tokens, seed=0)
            tokens = sum(result.tokens_per_step)
            checks, masks = sum(result.checks_per_step), sum(result.masks_per_step)
            per_token = [c / t for c, t in zip(result.checks_per_step, result.tokens_per_step) if t]
            complete = float(sum(w for p, w in zip(result.particles, result.weights) if p.complete))
            top = next(iter(result.posterior().items()), ("", 0.0))
        else:
            sampler = AWRSSampler(lm, compiled, estimator=kind, mask_after=mask_after)
            drawn = sampler.sample(prompt, n=samples, max_new_tokens=max_new_tokens, seed=0)
            tokens = sum(len(s.token_ids) for s in drawn)
            checks, masks = sum(sum(s.checks) for s in drawn), sum(s.masked_steps for s in drawn)
            per_token = [c for s in drawn for c in s.checks]
            complete = sum(s.complete for s in drawn) / len(drawn)
        total = time.perf_counter() - start
        row = {
            "sampler": label, "tokens": tokens, "lm_calls": lm.calls,
            "checks_per_token": checks / tokens, "checks_median": float(np.median(per_token)),
            "checks_max": float(np.max(per_token)), "masks_per_token": masks / tokens, "model_ms_per_token": 1000 * lm.seconds / tokens,
            "sampler_ms_per_token": 1000 * (total - lm.seconds) / tokens, "total_ms_per_token": 1000 * total / tokens,
            "complete": complete,
        }  # fmt: skip
        if kind == "smc":
            row.update(log_z=result.log_marginal_likelihood, resampled=len(result.resampled_at),
                       final_ess=result.ess, top_text=top[0], top_posterior=top[1])  # fmt: skip
        rows.append(row)
        log(f"# {label}: {tokens} tokens, {row['checks_per_token']:.2f} checks/token, "
            f"{row['total_ms_per_token']:.1f} ms/token ({row['sampler_ms_per_token']:.1f} sampler)")  # fmt: skip
    log("# estimators on the states full masking visited")
    estimators = compare_estimators(compiled, record, len(prompt))
    return {
        "experiment": "checks", "model": "SmolLM2-135M-Instruct", "grammar": "json.lark", "prompt": PROMPT,
        "prompt_tokens": len(prompt), "vocab_size": vocab, "samples": samples, "particles": particles,
        "max_new_tokens": max_new_tokens, "threads": threads, "rows": rows, "estimators": estimators,
    }  # fmt: skip


def print_checks(result: dict) -> None:
    print(f"# {result['model']}, {result['grammar']}, V = {result['vocab_size']:,}; {result['samples']} sequences "
          f"(SMC: {result['particles']} particles), ≤ {result['max_new_tokens']} tokens, {result['threads']} thread(s)")
    print("| sampler | single-token checks / token: mean (median, max) | masks / token | model ms / token | "
          "sampler ms / token | total ms / token | tokens |")
    print("|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        spread = f" ({r['checks_median']:,.0f}, {r['checks_max']:,.0f})"
        print(f"| {r['sampler']} | {r['checks_per_token']:,.2f}{spread} | {r['masks_per_token']:.3f} | {r['model_ms_per_token']:.1f} | "
              f"{r['sampler_ms_per_token']:.2f} | {r['total_ms_per_token']:.1f} | {r['tokens']} |")
    e0 = result["estimators"][0]
    print(f"\n# each estimator {e0['repeats']} times on each of the {e0['states']} states full masking visited "
          "(same model rows, Z exact from the mask)")
    print("| estimator | mask_after | checks / step: mean (median, p99, max) | masks / step | mean W/Z | sd of W/Z | ms / step |")
    print("|---|---|---|---|---|---|---|")
    for e in result["estimators"]:
        print(f"| {e['estimator']} | {e['mask_after']} | {e['checks_mean']:.2f} ({e['checks_median']:.0f}, "
              f"{e['checks_p99']:.0f}, {e['checks_max']:.0f}) | {e['masks_per_step']:.4f} | {e['w_over_z_mean']:.3f} | "
              f"{e['w_over_z_std']:.3f} | {e['ms_per_step']:.2f} |")


# -- kl: equal wall-clock budget ------------------------------------------------------------------

BITS = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
WORDS = [b"(", b")", b" ", b"bvand", b"bvor", b"bvxor", b"bvadd", b"bvsub", b"bvshl", b"bvlshr", b"bvnot",
         b"x", b"y", b"#b", b"0", b"1", b"<eos>"]  # fmt: skip
OPS = [w for w in WORDS if w.startswith(b"bv") and w != b"bvnot"]


def sygus_corpus(n: int, seed: int = 0) -> list[list[int]]:
    """Random `sygus_bv4` expressions (up to two operators deep) as word ids, each ending in EOS."""
    rng = np.random.default_rng(seed)
    ids = {w: i for i, w in enumerate(WORDS)}

    def atom() -> list[bytes]:
        r = rng.random()
        if r < 0.4:
            return [b"x"]
        if r < 0.7:
            return [b"y"]
        return [b"#b"] + [b"0" if rng.random() < 0.7 else b"1" for _ in range(4)]

    def expr(inner) -> list[bytes]:
        r = rng.random()
        if r < inner[0]:
            return inner[1]()
        if r < 0.9:
            return [b"(", OPS[rng.integers(len(OPS))], b" ", *inner[1](), b" ", *inner[1](), b")"]
        return [b"(", b"bvnot", b" ", *inner[1](), b")"]

    def expr1() -> list[bytes]:
        return expr((0.35, atom))

    return [[ids[w] for w in expr((0.2, expr1))] + [ids[b"<eos>"]] for _ in range(n)]


def problems() -> dict[str, tuple[LanguageModel, gad.CompiledGrammar, int]]:
    skewed = gad.GrammarCompiler(BITS).compile(gad.Grammar.from_file(ROOT / "grammars" / "skewed.lark"))
    words = gad.TokenizerInfo.from_vocab(WORDS, eos_token_id=len(WORDS) - 1)
    sygus = gad.GrammarCompiler(words).compile(gad.Grammar.from_file(ROOT / "grammars" / "sygus_bv4.lark"))
    ngram = NGramLM.fit(sygus_corpus(3000), order=4, vocab_size=len(WORDS), smoothing=0.05)
    return {"skewed": (UniformLM(3), skewed, 6), "sygus": (ngram, sygus, 12)}


def _kl(estimate: dict, q: dict) -> float:
    total = 0.0
    for w, p in estimate.items():
        if p > 0:
            total += p * math.log(p / q[w]) if q.get(w, 0) > 0 else math.inf
    return max(total, 0.0)


def _empirical(samples: Sequence) -> dict:
    counts: dict = {}
    for s in samples:
        if s.complete:
            counts[s.token_ids] = counts.get(s.token_ids, 0) + 1
    total = sum(counts.values())
    return {w: c / total for w, c in counts.items()} if total else {}


def _run_until(name: str, lm, compiled, n_max: int, budgets: Sequence[float], seed: int, particles: int) -> list[dict]:
    """Run sampler `name` until each budget; the estimate of Q at each budget."""
    out = []
    samples: list = []
    runs: list[tuple[float, dict]] = []
    asap = ASApSampler(lm, compiled) if name == "asap" else None
    gcd = GCDSampler(lm, compiled) if name == "gcd" else None
    smc = SMC(lm, compiled) if name == "smc" else None
    start = time.perf_counter()
    k = 0
    for budget in sorted(budgets):
        while time.perf_counter() - start < budget:
            chunk_seed = seed * 1_000_003 + k
            k += 1
            if gcd is not None:
                samples += gcd.sample([], n=16, max_new_tokens=n_max, seed=chunk_seed)
            elif asap is not None:
                samples += asap.sample([], n=8, max_new_tokens=n_max, seed=chunk_seed)
            else:
                r = smc.run([], particles, max_new_tokens=n_max, seed=chunk_seed)  # type: ignore[union-attr]
                runs.append((r.log_marginal_likelihood, r.posterior(key=lambda p: p.token_ids)))
        if smc is not None:
            finite = [(lz, post) for lz, post in runs if lz > -math.inf]
            estimate: dict = {}
            if finite:
                top = max(lz for lz, _ in finite)
                total = sum(math.exp(lz - top) for lz, _ in finite)
                for lz, post in finite:
                    for w, p in post.items():
                        estimate[w] = estimate.get(w, 0.0) + math.exp(lz - top) / total * p
            out.append({"budget": budget, "estimate": estimate, "draws": len(runs) * particles})
        else:
            out.append({"budget": budget, "estimate": _empirical(samples), "draws": len(samples)})
    return out


def run_kl(
    budgets: Sequence[float] = (0.25, 1.0, 4.0), repeats: int = 5, particles: int = 64, threads: int = 1, log=print
) -> dict:
    torch.set_num_threads(threads)
    result: dict = {"experiment": "kl", "budgets": list(budgets), "repeats": repeats, "particles": particles,
                    "threads": threads, "problems": {}}  # fmt: skip
    for problem, (lm, compiled, n_max) in problems().items():
        exact: ExactDistribution = exact_distribution(lm, compiled, max_length=n_max)
        q = exact.probs()
        table: dict = {name: {"kl": [[] for _ in budgets], "draws": [[] for _ in budgets]} for name in ("gcd", "asap", "smc")}
        for r in range(repeats):
            for name in table:
                for i, point in enumerate(_run_until(name, lm, compiled, n_max, budgets, r, particles)):
                    table[name]["kl"][i].append(_kl(point["estimate"], q))
                    table[name]["draws"][i].append(point["draws"])
            log(f"# {problem}: repeat {r + 1}/{repeats} done")
        result["problems"][problem] = {
            "sentences": len(exact), "z": exact.z, "max_new_tokens": n_max,
            **{name: {"kl_mean": [statistics.fmean(v) for v in t["kl"]],
                      "kl_std": [statistics.pstdev(v) for v in t["kl"]],
                      "draws": [statistics.fmean(v) for v in t["draws"]]} for name, t in table.items()},
        }  # fmt: skip
    return result


def print_kl(result: dict) -> None:
    budgets = result["budgets"]
    for problem, r in result["problems"].items():
        print(f"# {problem}: {r['sentences']} sentences, max_new_tokens {r['max_new_tokens']}; KL(P̂ ‖ Q) in nats, "
              f"mean ± sd over {result['repeats']} repeats (draws = samples, or particles for SMC)")
        print("| sampler | " + " | ".join(f"{b:g} s" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for name, label in (("gcd", "GCD"), ("asap", "ASAp"), ("smc", f"SMC ({result['particles']} particles/run)")):
            x = r[name]
            cells = [f"{m:.3f} ± {s:.3f} ({d:,.0f})" for m, s, d in zip(x["kl_mean"], x["kl_std"], x["draws"])]
            print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="experiment", required=True)
    checks = sub.add_parser("checks")
    checks.add_argument("--samples", type=int, default=4)
    checks.add_argument("--max-new-tokens", type=int, default=64)
    checks.add_argument("--particles", type=int, default=8)
    checks.add_argument("--threads", type=int, default=1)
    kl = sub.add_parser("kl")
    kl.add_argument("--budgets", type=float, nargs="+", default=[0.25, 1.0, 4.0])
    kl.add_argument("--repeats", type=int, default=5)
    kl.add_argument("--particles", type=int, default=64)
    kl.add_argument("--threads", type=int, default=1)
    for p in (checks, kl):
        p.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.experiment == "checks":
        result = run_checks(args.samples, args.max_new_tokens, args.particles, args.threads, log)
        print_checks(result)
    else:
        result = run_kl(args.budgets, args.repeats, args.particles, args.threads, log)
        print_kl(result)
    out = args.out or RESULTS / f"awrs_smc_{args.experiment}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=float) + "\n")
    print(f"# written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
