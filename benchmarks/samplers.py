"""Every sampler at equal budget: model forward passes, with process CPU and wall time alongside.

    python benchmarks/samplers.py [--toy-budgets 50 200 800 3200] [--lm-budget 16 48] [--seeds 3]
                                  [--problems skewed sygus-4gram bv4 slia json] [--threads 1]

Samplers (`gad.samplers.SAMPLERS`): ``gcd``, ``asap``, ``smc`` (AWRS particles), ``cars``,
``mcmc``, and as a baseline ``rejection``: plain rejection sampling from the unconstrained model
(CARS with a fresh, empty trie for every batch of attempts: an attempt stops at its first token the
grammar rejects).

Problems:

* ``skewed``: ``grammars/skewed.lark`` under a uniform model over {0, 1, EOS}, N = 6 (17
  sentences, Q uniform);
* ``sygus-4gram``: ``grammars/sygus_bv4.lark`` over a 17-word vocabulary with a 4-gram model
  trained on random nested bit-vector expressions, N = 12 (598 sentences; the ``kl`` problem of
  ``benchmarks/awrs_smc.py``);
* ``bv4``, ``slia``: SmolLM2-135M-Instruct (offline, `gad.assets`) on two problems of the ASAp
  paper's benchmark (``../shared/data/gad-benchmark``): BV4 ``find_inv_bvsge_bvadd_4bit`` and SLIA
  ``bikes_small``, their GBNF grammars and prompts. The prompt is the file's instruction and its
  last question (the few-shot examples are dropped: 1,788 → 457 tokens for BV4, so that a full
  recomputation of a batch stays affordable), plain text, ending with ``Solution:`` and the
  grammar's fixed ``(define-fun …`` header: the header, a literal the grammar forces, is moved from
  the root rule into the prompt, so the N = 24 generated tokens are all the function body;
* ``json``: SmolLM2 with a JSON Schema (``benchmarks/suite/schema_small.json``: an object with a
  string, an integer and a boolean, all required), the prompt through the chat template, N = 40.

The constituency-parsing problems of the benchmark are not run: a correct parse is ~100 tokens,
more forward passes than the whole per-sampler budget below.

**Budget.** Each (problem, sampler, seed) runs chunk by chunk until its count of forward passes
(`LanguageModel.next_token_logprobs` calls, whatever their batch) reaches each budget: GCD 16
samples a chunk; ASAp 8 (its trie persists); SMC one run of 16 particles (runs combined by their
Ẑ); CARS one round of 8 attempts (trie persists; ``max_attempts=1``: the accepted ones are kept);
rejection the same with an empty trie; MCMC one Metropolis–Hastings step of 16 chains ("priority"
proposals, started from GCD; every chain's state after a step counts as a sample, so its samples
are correlated). A chunk is not cut short: the passes actually spent are reported. A sampler whose
trie is complete stops calling the model; after 50 chunks without a call it stops, below budget.

**Metrics at each budget.** KL(P̂ ‖ Q) in nats where Q is enumerable (toy problems, `gad.exact`);
the mean model log-probability ``log P(w)`` of the valid samples against ``E_Q[log P]`` (exact on
the toy problems; on the SmolLM2 problems the mean over CARS's accepted samples, which are exact
draws of Q, pooled over seeds, ± its standard error); valid samples (ended with EOS; SMC: particles
of positive weight) and forward passes per valid sample; the acceptance rate (CARS and rejection:
accepted attempts; MCMC: accepted proposals); process CPU time (`time.process_time`) and wall time
of the whole chunk loop. Mean ± standard deviation over ``--seeds`` seeds. One torch thread.

Written to ``benchmarks/results/samplers.json`` and ``samplers.md`` (the Markdown tables printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _suite import data_dir  # noqa: E402
from awrs_smc import problems as toy_problems  # noqa: E402

import gad  # noqa: E402
from gad.exact import exact_distribution  # noqa: E402
from gad.lm import LanguageModel  # noqa: E402
from gad.samplers import SAMPLERS  # noqa: E402
from gad.samplers.cars import CARSSampler  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAMES = ("gcd", "asap", "smc", "cars", "mcmc", "rejection")
TOY = ("skewed", "sygus-4gram")
SMOLLM2 = ("bv4", "slia", "json")
JSON_PROMPT = "Describe a fictional person as a JSON object with the keys name, age and active."


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


@dataclass
class Problem:
    name: str
    description: str
    lm: LanguageModel
    compiled: gad.CompiledGrammar
    prompt: list[int]
    max_new_tokens: int
    q: dict | None = None  # the exact Q, when enumerable
    ideal_logp: float | None = None
    sentences: int | None = None
    reset: Callable[[], None] = lambda: None  # forget a KV cache between runs


def sygus_problem(kind: str, name: str, model, tokenizer, lm) -> tuple[gad.CompiledGrammar, list[int], str]:
    """An ASAp-benchmark SyGuS problem: its grammar with the forced header moved into the prompt."""
    from gad.generate import compile_grammar, encode_prompt

    folder = data_dir() / "gad-benchmark"
    text = (folder / "examples" / "sygus" / kind / f"{name}.ebnf").read_text()
    match = re.search(r'^root ::= "([^"]*)" Start "\)"$', text, flags=re.M)
    if match is None:
        raise ValueError(f"{kind}/{name}.ebnf: the root rule is not '\"header\" Start \")\"'")
    header = match.group(1)
    grammar = gad.Grammar.from_gbnf(text.replace(match.group(0), 'root ::= Start ")"'))
    full = (folder / "prompts" / kind / f"{name}.txt").read_text()
    prompt = full[: full.find("Question:")] + full[full.rfind("Question:") :].rstrip() + "\nSolution:\n" + header
    ids = encode_prompt(tokenizer, prompt, chat_template=False)
    return compile_grammar(grammar, tokenizer, lm), ids, header


def load_problems(names: Sequence[str], log) -> list[Problem]:
    out = []
    toys = toy_problems()
    for name in names:
        if name in TOY:
            lm, compiled, n_max = toys["skewed" if name == "skewed" else "sygus"]
            exact = exact_distribution(lm, compiled, max_length=n_max)
            desc = ("grammars/skewed.lark, uniform model over {0, 1, EOS}" if name == "skewed"
                    else "grammars/sygus_bv4.lark, 17 words, 4-gram model of random nested expressions")
            out.append(Problem(name, desc, lm, compiled, [], n_max, exact.probs(), exact.expected_logprob(), len(exact)))
    lms = [n for n in names if n in SMOLLM2]
    if lms:
        from gad.assets import load_default_model
        from gad.generate import compile_grammar, encode_prompt
        from gad.lm import HuggingFaceLM

        model, tokenizer = load_default_model()
        hf = HuggingFaceLM(model)
        for name in lms:
            if name == "json":
                schema = json.loads((ROOT / "benchmarks" / "suite" / "schema_small.json").read_text())
                compiled = compile_grammar(gad.Grammar.from_json_schema(schema), tokenizer, hf)
                prompt = encode_prompt(tokenizer, JSON_PROMPT)
                out.append(Problem(name, "SmolLM2, JSON Schema benchmarks/suite/schema_small.json, chat prompt",
                                   hf, compiled, prompt, 40, reset=hf.reset))  # fmt: skip
            else:
                kind, file = {"bv4": ("bv4", "find_inv_bvsge_bvadd_4bit"), "slia": ("SLIA", "bikes_small")}[name]
                compiled, prompt, _ = sygus_problem(kind, file, model, tokenizer, hf)
                out.append(Problem(name, f"SmolLM2, gad-benchmark {kind}/{file} (header in the prompt, "
                                   f"{len(prompt)} prompt tokens)", hf, compiled, prompt, 24, reset=hf.reset))  # fmt: skip
            log(f"# {name}: {out[-1].description}")
    return out


def _kl(estimate: dict, q: dict) -> float:
    total = 0.0
    for w, p in estimate.items():
        if p > 0:
            total += p * math.log(p / q[w]) if q.get(w, 0) > 0 else math.inf
    return max(total, 0.0)


class Runner:
    """One sampler on one problem, run chunk by chunk; `estimate` is its current P̂."""

    def __init__(self, name: str, lm: CountingLM, problem: Problem, seed: int) -> None:
        self.name, self.lm, self.problem, self.seed = name, lm, problem, seed
        compiled = problem.compiled
        if name == "mcmc":
            self.sampler = SAMPLERS[name](lm, compiled, proposal="priority")
        elif name in ("cars", "rejection"):
            self.sampler = CARSSampler(lm, compiled, batch_size=8, max_attempts=1)
        else:
            self.sampler = SAMPLERS[name](lm, compiled)
        self.samples: list = []  # valid samples (all samplers but SMC)
        self.runs: list[tuple[float, dict, float, int]] = []  # SMC: (log Ẑ, posterior, E_post[log P], valid)
        self.states = None
        self.attempts = self.accepted = 0
        self.k = 0

    def chunk(self) -> None:
        s, seed, p = self.sampler, self.seed * 1_000_003 + self.k, self.problem
        self.k += 1
        n_max = p.max_new_tokens
        if self.name == "smc":
            r = s.run(p.prompt, 16, max_new_tokens=n_max, seed=seed)
            post = r.posterior(key=lambda x: x.token_ids)
            logp = {x.token_ids: x.logprob_model for x in r.particles}
            valid = sum(x.complete and w > 0 for x, w in zip(r.particles, r.weights))
            self.runs.append((r.log_marginal_likelihood, post, sum(v * logp[w] for w, v in post.items()), valid))
        elif self.name == "mcmc":
            r = s.run(p.prompt, 16, steps=1, max_new_tokens=n_max, seed=seed, init=self.states)
            self.states = r.states
            self.samples += [x for x in r.after(1) if x.complete]
        elif self.name in ("cars", "rejection"):
            if self.name == "rejection":  # a fresh, empty trie: plain rejection sampling
                s.store = type(s.store)(s.constraints, s.temperature)
            got = [x for x in s.sample(p.prompt, n=8, max_new_tokens=n_max, seed=seed) if x.complete]
            self.samples += got
            self.attempts += 8
            self.accepted += len(got)
        else:
            self.samples += [x for x in s.sample(p.prompt, n=16 if self.name == "gcd" else 8, max_new_tokens=n_max, seed=seed)
                             if x.complete]  # fmt: skip

    def estimate(self) -> tuple[dict, float, int]:
        """(P̂, its mean model log-probability, valid samples behind it)."""
        if self.name == "smc":
            finite = [run for run in self.runs if run[0] > -math.inf]
            if not finite:
                return {}, math.nan, 0
            top = max(lz for lz, _, _, _ in finite)
            total = sum(math.exp(lz - top) for lz, _, _, _ in finite)
            est: dict = {}
            for lz, post, _, _ in finite:
                for w, v in post.items():
                    est[w] = est.get(w, 0.0) + math.exp(lz - top) / total * v
            mean = sum(math.exp(lz - top) / total * lp for lz, _, lp, _ in finite)
            return est, mean, sum(v for *_, v in self.runs)
        counts: dict = {}
        for x in self.samples:
            counts[x.token_ids] = counts.get(x.token_ids, 0) + 1
        n = len(self.samples)
        mean = statistics.fmean(x.logprob_model for x in self.samples) if n else math.nan
        return ({w: c / n for w, c in counts.items()} if n else {}), mean, n

    def acceptance(self) -> float:
        if self.name in ("cars", "rejection"):
            return self.accepted / self.attempts if self.attempts else math.nan
        if self.name == "mcmc":
            c = self.sampler.counts
            return c["accepted"] / c["proposals"] if c["proposals"] else math.nan
        return math.nan


def _mean_sd(values: list[float]) -> list[float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return [math.nan, math.nan]
    return [float(np.mean(finite)), float(np.std(finite))]


def run_problem(problem: Problem, budgets: Sequence[int], seeds: int, log) -> dict:
    rows: dict = {}
    cars_logp: list[float] = []
    for name in NAMES:
        points: list[list[dict]] = [[] for _ in budgets]
        for seed in range(seeds):
            problem.reset()
            lm = CountingLM(problem.lm)
            runner = Runner(name, lm, problem, seed)
            cpu, wall = time.process_time(), time.perf_counter()
            for i, budget in enumerate(sorted(budgets)):
                idle = 0  # ASAp and CARS stop calling the model once their trie is complete
                while lm.calls < budget and idle < 50:
                    before = lm.calls
                    runner.chunk()
                    idle = idle + 1 if lm.calls == before else 0
                est, mean, n = runner.estimate()
                points[i].append({
                    "kl": _kl(est, problem.q) if problem.q is not None else math.nan, "logp": mean, "valid": n,
                    "calls": lm.calls, "calls_per_valid": lm.calls / n if n else math.inf,
                    "acceptance": runner.acceptance(),
                    "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                })  # fmt: skip
            if name == "cars":
                cars_logp += [x.logprob_model for x in runner.samples]
        rows[name] = [{k: _mean_sd([p[k] for p in pts]) for k in pts[0]} for pts in points]
        last = rows[name][-1]
        log(f"# {problem.name}: {name}: {last['valid'][0]:.0f} valid, {last['calls'][0]:.0f} passes, "
            f"{last['cpu_s'][0]:.1f} s CPU per seed")  # fmt: skip
    out = {"description": problem.description, "max_new_tokens": problem.max_new_tokens,
           "prompt_tokens": len(problem.prompt), "budgets": list(budgets), "samplers": rows}  # fmt: skip
    if problem.q is not None:
        out.update(sentences=problem.sentences, ideal_logp=problem.ideal_logp, ideal_logp_source="exact (gad.exact)")
    elif cars_logp:
        se = statistics.stdev(cars_logp) / math.sqrt(len(cars_logp)) if len(cars_logp) > 1 else math.nan
        out.update(ideal_logp=statistics.fmean(cars_logp), ideal_logp_se=se,
                   ideal_logp_source=f"mean of CARS's {len(cars_logp)} accepted samples (exact draws of Q), all seeds")
    else:
        out.update(ideal_logp=None, ideal_logp_source="none: CARS accepted no sample")
    return out


def _cell(ms: list[float], digits: int = 3) -> str:
    m, s = ms
    if math.isnan(m):
        return "—"
    if math.isinf(m):
        return "∞"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(result: dict) -> str:
    lines = [f"Command: `{result['command']}` — commit {result['commit']}, {result['started']} UTC, "
             f"{result['machine']}; mean ± sd over {result['seeds']} seeds; CPU = process time per seed.", ""]  # fmt: skip
    for name, r in result["problems"].items():
        ideal = r.get("ideal_logp")
        ref = "—" if ideal is None else f"{ideal:.2f}" + (f" ± {r['ideal_logp_se']:.2f}" if "ideal_logp_se" in r else "")
        head = f"### {name}: {r['description']}; N = {r['max_new_tokens']}"
        if "sentences" in r:
            head += f", {r['sentences']} sentences"
        lines += [head, "", f"E_Q[log P] = {ref} ({r['ideal_logp_source']}).", ""]
        budgets = r["budgets"]
        kl_cols = [f"KL @ {b}" for b in budgets] if "sentences" in r else []
        lines.append("| sampler | " + " | ".join(kl_cols + ["mean log P", "valid", "passes", "passes / valid",
                                                          "acceptance", "CPU s", "wall s"]) + " |")  # fmt: skip
        lines.append("|---|" + "---:|" * (len(kl_cols) + 7))
        for sampler, pts in r["samplers"].items():
            last = pts[-1]
            kls = [_cell(p["kl"]) for p in pts] if kl_cols else []
            cells = kls + [_cell(last["logp"], 2), _cell(last["valid"], 0), _cell(last["calls"], 0),
                           _cell(last["calls_per_valid"], 2), _cell(last["acceptance"], 2),
                           _cell(last["cpu_s"], 1), _cell(last["wall_s"], 1)]  # fmt: skip
            lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy-budgets", type=int, nargs="+", default=[50, 200, 800, 3200])
    parser.add_argument("--lm-budget", type=int, nargs="+", default=[16, 48], help="SmolLM2 problems: forward passes")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--problems", nargs="+", default=list(TOY + SMOLLM2), choices=TOY + SMOLLM2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "samplers.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result: dict = {
        "command": "python benchmarks/samplers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": commit or "unknown", "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start, "
                   f"{torch.get_num_threads()} torch thread(s)", "seeds": args.seeds,
        "problems": {},
    }  # fmt: skip
    start = time.perf_counter()
    for problem in load_problems(args.problems, log):
        budgets = args.toy_budgets if problem.q is not None else args.lm_budget
        result["problems"][problem.name] = run_problem(problem, sorted(budgets), args.seeds, log)
    result["total_wall_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result) + f"\nTotal wall time {result['total_wall_s'] / 60:.1f} min.\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
