"""`report`: a sweep's summary table and plots, from its records alone (no model, no Ray).

Per problem family and sampler, over every problem and seed (mean ± standard deviation over the
tasks):

* **KL** ``KL(P̂ ‖ Q)`` in nats between the task's complete samples and the exact distribution Q of
  its problem (`gad.exact`, for the same ``max_new_tokens``), where Q could be enumerated; weighted
  samples (AWRS) enter P̂ with their importance weights. With a pruned enumeration
  (``[exact] min_prob > 0``) samples outside it are pooled (`gad.metrics.kl_divergence`).
* **mean log P**: the model's log-probability (temperature 1, no mask) of the complete samples,
  weighted for AWRS; next to it ``E_Q[log P]`` where Q is known (the "ideal" of the papers).
* **valid / pass**: complete samples per model forward pass.
* **acceptance**: CARS: accepted attempts / attempts; MCMC: accepted proposals / proposals;
  the others: complete samples / samples.

The plots ``kl_FAMILY.png`` (where Q is known) and ``logp_FAMILY.png`` show the mean KL and the
mean log P against the budget (samples, forward passes or seconds: the spec's first limit), one
line per sampler, the way the ASAp and CARS papers show them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gad.exact import ExactDistribution
from gad.experiments.records import read_records, read_sweep
from gad.metrics import kl_divergence

__all__ = ["Report", "report"]


#: The table's columns of each metric.
_COLUMNS = {"kl": ["KL(P̂ ‖ Q)"], "logprob": ["mean log P", "E_Q[log P]"], "samples_per_pass": ["valid / pass"],
            "acceptance": ["acceptance"]}  # fmt: skip


class Report:
    """The table (`markdown`) and the plots (`plots`, paths) of one output folder."""

    def __init__(self, markdown: str, plots: list[Path], notes: list[str]) -> None:
        self.markdown, self.plots, self.notes = markdown, plots, notes

    def __str__(self) -> str:
        return self.markdown


def _exact(record: dict[str, Any]) -> ExactDistribution | None:
    if record.get("status") != "ok" or not record.get("enumerable") or not record.get("z"):
        return None
    logp = {tuple(w): lp for w, lp, _ in record["sentences"]}
    logp_model = {tuple(w): lm for w, _, lm in record["sentences"]}
    return ExactDistribution(logp, logp_model, record["open_mass"], record["pruned_mass"],
                             record["budget"]["max_new_tokens"], (), 1.0, 0)  # fmt: skip


def _complete(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in samples if s["finish"] == "eos"]


def _weights(samples: Sequence[dict[str, Any]]) -> np.ndarray:
    if samples and "log_weight" in samples[0]:
        lw = np.array([s["log_weight"] for s in samples], dtype=np.float64)
        if not np.isfinite(lw).any():
            return np.zeros(len(samples))
        return np.exp(lw - lw[np.isfinite(lw)].max())
    return np.ones(len(samples))


def kl(samples: Sequence[dict[str, Any]], q: ExactDistribution) -> float:
    """``KL(P̂ ‖ Q)`` of a record's samples (see the module docstring); nan with no complete one."""
    done = _complete(samples)
    w = _weights(done)
    if not done or not w.sum() > 0:
        return math.nan
    if "log_weight" not in done[0]:
        return kl_divergence([tuple(s["tokens"]) for s in done], q, pool_pruned=q.pruned_mass > 0)
    target = q.probs()
    p: dict[tuple[int, ...], float] = defaultdict(float)
    for s, weight in zip(done, w / w.sum()):
        p[tuple(s["tokens"])] += float(weight)
    total = 0.0
    for key, pk in p.items():
        if pk > 0:
            qk = target.get(key, 0.0)
            if qk <= 0:
                return math.inf
            total += pk * math.log(pk / qk)
    return max(total, 0.0)


def _mean_logp(samples: Sequence[dict[str, Any]]) -> float:
    done = _complete(samples)
    w = _weights(done)
    if not done or not w.sum() > 0:
        return math.nan
    return float(np.dot(w, [s["logprob_model"] for s in done]) / w.sum())


def _acceptance(record: dict[str, Any]) -> float:
    c = record.get("sampler_counts", {})
    if record["sampler_name"] == "cars" and c.get("attempts"):
        return c["accepted"] / c["attempts"]
    if record["sampler_name"] == "mcmc" and c.get("proposals"):
        return c["accepted"] / c["proposals"]
    samples = record["samples"]
    return len(_complete(samples)) / len(samples) if samples else math.nan


def _cell(values: Sequence[float], digits: int = 3) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "—"
    if any(math.isinf(v) for v in finite):
        return "∞"
    mean = statistics.fmean(finite)
    sd = statistics.pstdev(finite) if len(finite) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(finite) > 1 else f"{mean:.{digits}f}"


def _unit(budget: dict[str, Any]) -> str:
    return next(u for u in ("samples", "forward_passes", "seconds") if budget.get(u) is not None)


def _prefix(record: dict[str, Any], unit: str, x: float) -> list[dict[str, Any]]:
    """The samples drawn by the time the task had spent `x` of `unit`."""
    if unit == "samples":
        return record["samples"][: int(x)]
    key = "model_calls" if unit == "forward_passes" else "seconds"
    n = 0
    for chunk in record["chunks"]:
        if chunk[key] <= x:
            n = chunk["samples"]
    return record["samples"][:n]


def report(output: str | Path, *, plots: bool = True) -> Report:
    """Write ``report.md`` (and, with matplotlib, the plots) into `output`; return them."""
    output = Path(output)
    sweep = read_sweep(output)
    records = read_records(output)
    exact = {r["problem"]: _exact(r) for r in records if r["kind"] == "exact"}
    ideal = {p: q.expected_logprob() for p, q in exact.items() if q is not None}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "sample":
            groups[(r["family"], r["sampler"])].append(r)
    notes: list[str] = []
    not_enumerable = sorted(p for p, r in ((r["problem"], r) for r in records if r["kind"] == "exact")
                            if r.get("status") == "ok" and not r.get("enumerable"))  # fmt: skip
    if not_enumerable:
        notes.append(f"Q not enumerable within `[exact] max_expanded` for {len(not_enumerable)} problem(s) "
                     f"({', '.join(not_enumerable[:5])}{', …' if len(not_enumerable) > 5 else ''}): no KL there")  # fmt: skip
    empty = sorted(r["problem"] for r in records if r["kind"] == "exact" and r.get("enumerable") and not r.get("z"))
    if empty:
        notes.append(f"Q is empty (no sentence within max_new_tokens has positive probability) for: {', '.join(empty)}")
    metrics = sweep.get("metrics", ["kl", "logprob", "samples_per_pass", "acceptance"])
    header = ["family", "sampler", "tasks", "failed", "samples"]
    for m in metrics:
        header += [c for c in _COLUMNS[m] if c != "E_Q[log P]" or "kl" in metrics]
    header.append("s / task")
    lines = [f"# {sweep['name']}", "", "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for (family, sampler), rs in sorted(groups.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        cells = [family, sampler, str(len(rs)), str(len(rs) - len(ok)), f"{sum(len(r['samples']) for r in ok):,}"]
        for m in metrics:
            if m == "kl":
                cells.append(_cell([kl(r["samples"], exact[r["problem"]]) for r in ok if exact.get(r["problem"]) is not None]))
            elif m == "logprob":
                cells.append(_cell([_mean_logp(r["samples"]) for r in ok], 2))
                if "kl" in metrics:
                    cells.append(_cell([ideal[r["problem"]] for r in ok if r["problem"] in ideal], 2))
            elif m == "samples_per_pass":
                cells.append(_cell([len(_complete(r["samples"])) / r["model_calls"] if r["model_calls"] else math.nan for r in ok]))
            else:
                cells.append(_cell([_acceptance(r) for r in ok], 2))
        cells.append(_cell([r["wall_seconds"] for r in ok], 1))
        lines.append("| " + " | ".join(cells) + " |")
    for r in records:
        if r.get("status") == "error":
            notes.append(f"`{r['task']}` failed: {r['error']['type']}: {r['error']['message'].splitlines()[0][:200]}")
    written: list[Path] = []
    if plots:
        try:
            written = _plots(output, groups, exact, metrics)
        except ImportError:
            notes.append("no plots: they need matplotlib (pip install 'gad[sweep]')")
    lines += ([""] + [f"- {n}" for n in notes]) if notes else []
    lines += [""] + [f"![{p.stem} against the budget]({p.name})" for p in written]
    markdown = "\n".join(lines) + "\n"
    (output / "report.md").write_text(markdown, encoding="utf-8")
    (output / "report.json").write_text(json.dumps({"plots": [p.name for p in written], "notes": notes}) + "\n")
    return Report(markdown, written, notes)


def _plots(output: Path, groups: dict[tuple[str, str], list[dict[str, Any]]], exact: dict, metrics: Sequence[str]) -> list[Path]:
    """``kl_FAMILY.png`` (where Q is known) and ``logp_FAMILY.png``: the metric against the budget,
    mean over the tasks, one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = []
    if "kl" in metrics:
        curves.append(("kl", "KL(P̂ ‖ Q), nats", lambda samples, r: kl(samples, exact[r["problem"]]), True))
    if "logprob" in metrics:
        curves.append(("logp", "mean log P (complete samples)", lambda samples, r: _mean_logp(samples), False))
    written = []
    for name, ylabel, metric, needs_q in curves:
        for family in sorted({f for f, _ in groups}):
            lines = {}
            for (fam, sampler), rs in sorted(groups.items()):
                ok = [r for r in rs if fam == family and r["status"] == "ok" and (not needs_q or exact.get(r["problem"]) is not None)]
                if not ok:
                    continue
                unit = _unit(ok[0]["budget"])
                top = ok[0]["budget"][unit]
                xs = sorted({float(v) for v in np.geomspace(1, top, num=12)} | {float(top)})
                ys = []
                for x in xs:
                    finite = [v for v in (metric(_prefix(r, unit, x), r) for r in ok) if math.isfinite(v)]
                    ys.append(statistics.fmean(finite) if finite else math.nan)
                if not all(math.isnan(y) for y in ys):
                    lines[sampler] = (unit, xs, ys)
            if not lines:
                continue
            fig, ax = plt.subplots(figsize=(5.5, 3.8))
            for sampler, (unit, xs, ys) in lines.items():
                ax.plot(xs, ys, marker="o", markersize=3, label=sampler)
            ax.set_xscale("log")
            ax.set_xlabel(unit.replace("_", " "))
            ax.set_ylabel(ylabel)
            ax.set_title(f"{family}: mean over the tasks")
            ax.legend()
            fig.tight_layout()
            path = output / f"{name}_{family}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written
