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

from gad.experiments.reporting import Report, report
from gad.experiments.runner import SweepResult, default_output, run
from gad.experiments.spec import Spec, SpecError, Task, load_spec
from gad.experiments.tasks import Model, load_model, run_task

__all__ = [
    "Model",
    "Report",
    "Spec",
    "SpecError",
    "SweepResult",
    "Task",
    "default_output",
    "load_model",
    "load_spec",
    "report",
    "run",
    "run_task",
]
