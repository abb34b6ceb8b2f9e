"""`run`: a sweep's tasks on Ray actors, each record written once to the output folder.

Each worker is a Ray actor that loads the model once (`gad.experiments.tasks.load_model`) and
keeps the grammars it compiled (by problem); the driver hands every idle worker a task, preferring
one whose grammar that worker already compiled, and writes each result as it arrives
(`gad.experiments.records`). Tasks with a record are skipped, so running the same spec again
resumes a sweep. A worker process that dies is restarted by Ray (``max_restarts``) and its task
retried (``max_task_retries``); after ``ray.max_retries`` deaths the task is recorded as an error
and a fresh worker takes its place.

Without an address, `run` starts a local Ray instance (one CPU per worker, no dashboard, a 100 MB
object store) and stops it at the end; with ``address`` (or ``[ray] address`` in the spec) it
connects to that cluster, whose nodes need gad installed. An already initialised Ray is used as it
is.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gad.experiments.records import finished, write_record, write_sweep
from gad.experiments.spec import Spec, Task, load_spec
from gad.experiments.tasks import load_model, run_task, versions

__all__ = ["SweepResult", "default_output", "run"]

#: Grammars a worker keeps compiled.
_COMPILED_PER_WORKER = 16


@dataclass(frozen=True)
class SweepResult:
    """What `run` did: the output folder, the tasks of the spec, how many had a record already
    (skipped), how many it ran, and how many of those recorded an error."""

    output: Path
    tasks: int
    skipped: int
    ran: int
    failed: int


class _Worker:
    """A Ray actor: the model, loaded once, and the grammars it compiled."""

    def __init__(self, model_config: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(int(model_config.get("threads", 1)))
        self.model = load_model(model_config)
        self.compiled: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def run(self, task: Task) -> dict[str, Any]:
        record = run_task(task, self.model, compile_cache=self.compiled)
        while len(self.compiled) > _COMPILED_PER_WORKER:
            self.compiled.popitem(last=False)
        return record

    def pid(self) -> int:
        return os.getpid()


def default_output(spec: Spec) -> Path:
    """``SPEC_FOLDER/SPEC_STEM.results``."""
    return spec.path.resolve().parent / f"{spec.path.stem}.results"


def _start_ray(address: str | None, workers: int | None) -> bool:
    """Initialise Ray unless it is; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network at run time
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=100 * 2**20, log_to_driver=False)  # fmt: skip
    return True


def run(
    spec: Spec | str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    address: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run every task of `spec` that has no record in `output` yet, on Ray.

    Args:
        spec: a `Spec` or the path of a spec file.
        output: the results folder (default `default_output`).
        address: a Ray cluster to connect to (default: the spec's ``[ray] address``, else a
            local Ray instance).
        progress: a tqdm bar on stderr with the tasks done, failed and running.
    """
    import ray
    import tqdm

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    out = Path(output) if output is not None else default_output(spec)
    write_sweep(out, {"name": spec.name, "fingerprint": spec.fingerprint(), "spec_path": str(spec.path),
                      "metrics": list(spec.metrics), "spec": spec.path.read_text(encoding="utf-8"),
                      "versions": versions()})  # fmt: skip
    tasks = spec.tasks()
    done_before = finished(out)
    todo = collections.deque(t for t in tasks if t.id not in done_before)
    skipped = len(tasks) - len(todo)
    if not todo:
        return SweepResult(out, len(tasks), skipped, 0, 0)
    started = _start_ray(address or spec.ray.get("address"), spec.ray.get("workers"))
    try:
        retries = spec.ray["max_retries"]
        actor = ray.remote(_Worker).options(num_cpus=1, max_restarts=retries, max_task_retries=retries)
        count = spec.ray.get("workers") or max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = [actor.remote(spec.model) for _ in range(min(count, len(todo)))]
        compiled: dict[Any, set[str]] = {w: set() for w in workers}
        idle = list(workers)
        running: dict[Any, tuple[Task, Any]] = {}
        ran = failed = 0
        bar = tqdm.tqdm(total=len(todo), desc=spec.name, unit="task", file=sys.stderr, disable=not progress)
        while todo or running:
            while idle and todo:
                w = idle.pop()
                task = next((t for t in todo if t.problem.id in compiled[w]), todo[0])
                todo.remove(task)
                compiled[w].add(task.problem.id)
                running[w.run.remote(task)] = (task, w)
            bar.set_postfix(done=ran - failed, failed=failed, running=len(running), refresh=False)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                task, w = running.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # died more than max_retries times
                    record = _died(task, exc, retries)
                    ray.kill(w)
                    compiled.pop(w)
                    w = actor.remote(spec.model)
                    compiled[w] = set()
                except ray.exceptions.RayTaskError as exc:
                    record = _died(task, exc, retries)
                write_record(out, record)
                ran += 1
                failed += record["status"] != "ok"
                idle.append(w)
                bar.update(1)
        bar.set_postfix(done=ran - failed, failed=failed, running=0)
        bar.close()
        for w in compiled:
            ray.kill(w)
    finally:
        if started:
            ray.shutdown()
    return SweepResult(out, len(tasks), skipped, ran, failed)


def _died(task: Task, exc: BaseException, retries: int) -> dict[str, Any]:
    """The error record of a task Ray could not finish."""
    return {"task": task.id, "kind": "exact" if task.sampler is None else "sample", "problem": task.problem.id,
            "family": task.problem.family, "sampler": None if task.sampler is None else task.sampler.label,
            "sampler_name": None if task.sampler is None else task.sampler.name, "seed": task.seed,
            "status": "error", "finished_at": time.time(),
            "error": {"type": type(exc).__name__, "message": f"the worker failed {retries + 1} times: {exc}"[:2000]}}  # fmt: skip

