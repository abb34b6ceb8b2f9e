"""`gad.experiments`: declarative sweeps over problems × samplers × seeds, on Ray.

One TOML spec (`gad.experiments.spec`) names the model, the problems, the samplers, the budget,
the seeds and the metrics; `run` runs one task per (problem, sampler, seed) on Ray actors that
load the model once (`gad.experiments.runner`), writing one record per task atomically into the
output folder (`gad.experiments.records`), so a rerun resumes; `report` turns the records into a
table and plots (`gad.experiments.reporting`). `run_task` runs one task in this process.

    gad sweep examples/sweep.toml [--output DIR] [--address ray://HOST:10001]
    gad report DIR

Ray is an optional dependency (``pip install 'gad[sweep]'``); only `run` imports it.
"""

import importlib
from typing import Any

# name -> the module it comes from, imported on first access (so `gad --help` stays light).
_LAZY = {
    "Report": "reporting", "report": "reporting",
    "SweepResult": "runner", "default_output": "runner", "run": "runner",
    "Spec": "spec", "SpecError": "spec", "Task": "spec", "load_spec": "spec",
    "Model": "tasks", "load_model": "tasks", "run_task": "tasks",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gad.experiments' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gad.experiments.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
