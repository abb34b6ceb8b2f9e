"""`gad.experiments` (`gad sweep`, `gad report`) on a local Ray cluster started here.

Oracles: the samplers' own API with the seeds the runner documents (chunk k of a task with seed s
draws with ``seed_for(s, k)``); each task run again in this process, one by one (`run_task`);
`gad.exact` and `gad.metrics` computed here for the report's KL; the file system (one record file
per task, no temporary file left, untouched files not rewritten on resume); the operating system
(a worker process killed by its pid). One cluster (2 CPUs, no dashboard, 100 MB object store) is
shared by the module; the models are the tiny ones of the other tests (a random 3-token
transformers model, `gad.lm_testing.random_hf_model`, over the bits vocabulary of
`tests/problems.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest
import ray

import gad
from gad.exact import exact_distribution
from gad.experiments import SpecError, load_model, load_spec, report, run, run_task
from gad.experiments.records import finished, read_records
from gad.metrics import kl_divergence
from gad.samplers import SAMPLERS
from gad.samplers.base import seed_for

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = REPO.parent / "shared" / "data"

PROBLEMS = [
    {"id": "skewed", "grammar": 'start: "00000" | "1" /[01]{4}/', "prompt": [2], "family": "toy"},
    {"id": "ones", "grammar": 'start: "1"+', "prompt": [2], "family": "toy"},
    # Every sentence is 9 tokens long, beyond max_new_tokens: SMC and CARS raise DeadEndError.
    {"id": "long", "grammar": 'start: "0"~8', "prompt": [2], "family": "dead"},
]
SAMPLER_TABLES = """
[[samplers]]
name = "gcd"
[[samplers]]
name = "asap"
batch_size = 4
[[samplers]]
name = "smc"
[[samplers]]
name = "awrs"
[[samplers]]
name = "cars"
[[samplers]]
name = "mcmc"
steps = 2
"""


def write_spec(folder: Path, *, samplers: str = SAMPLER_TABLES, problems=PROBLEMS, params: str = "",
               seeds: str = "[0, 1]", extra: str = "") -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    spec = folder / "spec.toml"
    spec.write_text(f"""name = "tiny"
seeds = {seeds}
[model]
factory = "sweep_models:bits"
{params}
[problems]
jsonl = "problems.jsonl"
{samplers}
[budget]
samples = 16
max_new_tokens = 6
chunk = 8
[ray]
workers = 2
{extra}
""")
    return spec


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster whose workers import `gad` from this checkout and `sweep_models`."""
    path = os.pathsep.join([str(TESTS), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    """(spec, output folder, SweepResult) of one full sweep: 3 problems × 6 samplers × 2 seeds + 3 exact."""
    spec = load_spec(write_spec(tmp_path_factory.mktemp("sweep")))
    output = spec.path.parent / "out"
    result = run(spec, output=output, progress=False)
    return spec, output, result


def essence(record: dict) -> dict:
    """What a task's record must reproduce: everything but times, the worker and versions."""
    drop = {"wall_seconds", "cpu_seconds", "worker", "versions", "finished_at"}
    out = {k: v for k, v in record.items() if k not in drop}
    if "chunks" in out:
        out["chunks"] = [{k: v for k, v in c.items() if k != "seconds"} for c in out["chunks"]]
    if "error" in out:
        out["error"] = {k: v for k, v in out["error"].items() if k != "traceback"}
    return out


def assert_same(got: dict, want: dict) -> None:
    got, want = essence(got), essence(want)
    assert got.keys() == want.keys()
    for key in got:
        if key == "samples":
            assert [(s["tokens"], s["finish"], s["text"]) for s in got[key]] == [(s["tokens"], s["finish"], s["text"]) for s in want[key]]
            for a, b in zip(got[key], want[key]):
                for f in ("logprob_model", "logprob_sampler", "log_weight"):
                    assert (f in a) == (f in b)
                    if f in a:
                        assert a[f] == pytest.approx(b[f], rel=1e-5, abs=1e-6)
        elif key == "sentences":
            assert {tuple(w): lp for w, lp, _ in got[key]} == pytest.approx({tuple(w): lp for w, lp, _ in want[key]}, rel=1e-5)
        elif isinstance(got[key], float):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), key
        else:
            assert got[key] == want[key], key


def by_task(output: Path) -> dict[str, dict]:
    return {r["task"]: r for r in read_records(output)}


# -- a sweep ----------------------------------------------------------------------------------------


def test_every_task_has_one_record_and_errors_are_recorded(swept):
    spec, output, result = swept
    tasks = spec.tasks()
    assert len(tasks) == 3 * (1 + 6 * 2)
    files = sorted(p.name for p in (output / "records").iterdir())
    assert files == sorted(f"{t.id}.json" for t in tasks)  # no temporary file, nothing missing
    records = by_task(output)
    failed = {t for t, r in records.items() if r["status"] != "ok"}
    # Only the dead-end problem fails, for the samplers that refuse to return incomplete samples.
    assert failed == {f"long__{s}__seed{k}" for s in ("smc", "cars") for k in (0, 1)}
    assert (result.tasks, result.skipped, result.ran, result.failed) == (39, 0, 39, 4)
    for t in failed:
        assert records[t]["error"]["type"] == "DeadEndError"
        assert "max_new_tokens=6" in records[t]["error"]["message"]
        assert "samples" not in records[t]
    gcd = records["long__gcd__seed0"]  # GCD returns the cut samples: all incomplete
    assert gcd["status"] == "ok" and len(gcd["samples"]) == 16 and {s["finish"] for s in gcd["samples"]} == {"length"}
    ok = records["skewed__asap__seed1"]
    assert len(ok["samples"]) == 16 and [c["samples"] for c in ok["chunks"]] == [8, 16]
    assert ok["model_calls"] == ok["chunks"][-1]["model_calls"] > 0 and ok["masks"] > 0 and ok["token_checks"] > 0
    assert ok["versions"]["ray"] == ray.__version__ and ok["worker"]["pid"] != os.getpid()


def test_sweep_equals_the_tasks_run_one_by_one(swept):
    spec, output, _ = swept
    records = by_task(output)
    model = load_model(spec.model)
    for task in spec.tasks():
        assert_same(records[task.id], run_task(task, model))


def test_records_follow_the_samplers_api_with_the_documented_seeds(swept):
    """Independent of `run_task`: each sampler called directly, chunk k with seed_for(seed, k)."""
    spec, output, _ = swept
    records = by_task(output)
    model = load_model(spec.model)
    for task in spec.tasks():
        if task.sampler is None or task.problem.id != "skewed" or task.seed != 1:
            continue
        compiled = model.compile(task.problem.load_grammar())
        model.lm.reset()
        sampler = SAMPLERS[task.sampler.name](model.lm, compiled, **task.sampler.params)
        drawn = []
        for k in range(2):
            drawn += sampler.sample([2], 8, max_new_tokens=6, seed=seed_for(task.seed, k))
        got = records[task.id]["samples"]
        assert [s["tokens"] for s in got] == [list(s.token_ids) for s in drawn], task.id
        assert [s["logprob_model"] for s in got] == pytest.approx([s.logprob_model for s in drawn], rel=1e-5)


def test_report_matches_kl_and_means_computed_here(swept):
    spec, output, _ = swept
    made = report(output)
    records = by_task(output)
    model = load_model(spec.model)
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")]
            for line in made.markdown.splitlines() if line.startswith("| toy") or line.startswith("| dead")}  # fmt: skip
    assert len(rows) == 12
    exact = {}
    for p in ("skewed", "ones"):
        problem = next(t.problem for t in spec.tasks() if t.problem.id == p)
        exact[p] = exact_distribution(model.lm, model.compile(problem.load_grammar()), [2], max_length=6)
    for name in ("gcd", "asap", "cars", "smc", "mcmc"):  # unweighted samples: P̂ = frequencies
        values = [kl_divergence([tuple(s["tokens"]) for s in records[f"{p}__{name}__seed{k}"]["samples"] if s["finish"] == "eos"], exact[p])
                  for p in ("skewed", "ones") for k in (0, 1)]  # fmt: skip
        assert rows[("toy", name)][5] == f"{statistics.fmean(values):.3f} ± {statistics.pstdev(values):.3f}"
        logp = [statistics.fmean(s["logprob_model"] for s in records[f"{p}__{name}__seed{k}"]["samples"] if s["finish"] == "eos")
                for p in ("skewed", "ones") for k in (0, 1)]  # fmt: skip
        assert rows[("toy", name)][6] == f"{statistics.fmean(logp):.2f} ± {statistics.pstdev(logp):.2f}"
    ideal = [exact[p].expected_logprob() for p in ("skewed", "ones") for _ in (0, 1)]
    assert rows[("toy", "gcd")][7] == f"{statistics.fmean(ideal):.2f} ± {statistics.pstdev(ideal):.2f}"
    assert rows[("dead", "smc")][3] == "2" and rows[("dead", "smc")][5] == "—"  # both seeds failed
    assert sum("failed: DeadEndError" in n for n in made.notes) == 4
    # "dead" has no KL (Q is empty) and no complete sample: no plot of it.
    assert [p.name for p in made.plots] == ["kl_toy.png", "logp_toy.png"]
    for p in made.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "report.md").read_text() == made.markdown


# -- resume, faults ---------------------------------------------------------------------------------


def test_resume_runs_only_the_tasks_without_a_record(swept, tmp_path):
    spec, output, _ = swept
    partial = tmp_path / "out"
    shutil.copytree(output, partial)
    removed = sorted(finished(partial))[::4]  # what an interrupted sweep would leave out
    for task_id in removed:
        (partial / "records" / f"{task_id}.json").unlink()
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (partial / "records").iterdir()}
    result = run(spec, output=partial, progress=False)
    assert (result.skipped, result.ran) == (39 - len(removed), len(removed))
    for p in (partial / "records").iterdir():
        if p.name in kept:
            assert (p.stat().st_mtime_ns, p.read_bytes()) == kept[p.name]  # not rewritten
    reference, resumed = by_task(output), by_task(partial)
    assert resumed.keys() == reference.keys()
    for task_id in removed:
        assert_same(resumed[task_id], reference[task_id])
    again = run(spec, output=partial, progress=False)  # nothing left: Ray is not even asked
    assert (again.skipped, again.ran) == (39, 0)


def test_a_worker_killed_during_a_task_loses_and_duplicates_nothing(cluster, tmp_path):
    marker = tmp_path / "stalled.pid"
    samplers = '[[samplers]]\nname = "gcd"\n[[samplers]]\nname = "asap"\n'
    spec = load_spec(write_spec(tmp_path, samplers=samplers, problems=PROBLEMS[:2],
                                params=f'params = {{ stall_marker = "{marker}" }}'))  # fmt: skip
    output = tmp_path / "out"
    outcome: dict = {}
    sweep = threading.Thread(target=lambda: outcome.setdefault("result", run(spec, output=output, progress=False)))
    sweep.start()
    deadline = time.monotonic() + 120
    while not (marker.is_file() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = int(marker.read_text())  # the worker is now asleep inside its first task
    assert victim != os.getpid()
    os.kill(victim, signal.SIGKILL)
    sweep.join(timeout=180)
    assert not sweep.is_alive()
    result = outcome["result"]
    tasks = spec.tasks()
    assert (result.ran, result.failed) == (len(tasks), 0) == (10, 0)
    assert sorted(p.name for p in (output / "records").iterdir()) == sorted(f"{t.id}.json" for t in tasks)
    records = by_task(output)
    assert victim not in {r["worker"]["pid"] for r in records.values()}  # its task was rerun elsewhere
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    plain = load_model({"factory": "sweep_models:bits", "params": {}})  # the same numbers, no stall
    for task in tasks:
        assert_same(records[task.id], run_task(task, plain))


# -- bad specs ---------------------------------------------------------------------------------------


def _spec_with(tmp_path: Path, old: str, new: str) -> Path:
    path = write_spec(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old, new, field, message",
    [
        ("[budget]\nsamples = 16\n", "[budget]\n", "budget", "at least one of samples, forward_passes, seconds"),
        ("samples = 16", "samples = 0", "budget.samples", "has to be a positive int, but is 0"),
        ("samples = 16", "sample = 16", "budget.sample", "unknown field"),
        ('name = "gcd"', 'name = "gdc"', "samplers[0].name", "has to be one of gcd, asap"),
        ("batch_size = 4", "batch_sise = 4", "samplers[1].batch_sise", "sampler 'asap' takes no such parameter"),
        ("steps = 2", 'steps = 2\nproposal = "bogus"', "samplers[5]", "`proposal` has to be one of"),
        ("steps = 2", "steps = 2\nlabel = \"gcd\"", "samplers[5].label", "'gcd' is used twice"),
        ("steps = 2", "steps = 2\ntemperature = 0.5", "samplers", "temperatures differ"),
        ('jsonl = "problems.jsonl"', 'jsonl = "missing.jsonl"', "problems.jsonl", "is not an existing file"),
        ('jsonl = "problems.jsonl"', 'jsonl = "problems.jsonl"\nfolder = "."', "problems", "exactly one of asap, folder, jsonl"),
        ("seeds = [0, 1]", "seeds = [0, 0]", "seeds", "distinct non-negative ints"),
        ('factory = "sweep_models:bits"', 'factory = "sweep_models:nope"', "model.factory", "cannot import"),
        ('name = "tiny"', 'name = "tiny"\nsampler = 1', "sampler", "unknown field"),
        ("[ray]\nworkers = 2", "[ray]\nworkers = 2.5", "ray.workers", "has to be a positive int"),
        ("chunk = 8", "chunk = [8", "(file)", "not valid TOML"),
    ],
)
def test_a_bad_spec_gives_one_clear_error(tmp_path, old, new, field, message):
    path = _spec_with(tmp_path, old, new)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{path}: `{field}`: ")
    assert message in str(caught.value)


def test_bad_problem_lines_and_grammars_name_their_place(tmp_path):
    spec = write_spec(tmp_path)
    (tmp_path / "problems.jsonl").write_text(json.dumps(PROBLEMS[0]) + "\n{not json\n")
    with pytest.raises(SpecError, match=r"`problems.jsonl \(line 2\)`: not JSON"):
        load_spec(spec)
    bad = dict(PROBLEMS[0], id="bad", grammar='start: "0" | undefined_rule')
    (tmp_path / "problems.jsonl").write_text(json.dumps(PROBLEMS[0]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(gad.GrammarError, match=r"problems\.jsonl:2.*undefined_rule"):
        load_spec(spec)
    (tmp_path / "problems.jsonl").write_text(json.dumps(PROBLEMS[0]) + "\n" + json.dumps(PROBLEMS[0]) + "\n")
    with pytest.raises(SpecError, match="two problems are called 'skewed'"):
        load_spec(spec)


def test_an_output_folder_of_another_spec_is_refused(swept, tmp_path):
    spec, output, _ = swept
    changed = load_spec(_spec_with(tmp_path, "samples = 16", "samples = 17"))
    with pytest.raises(gad.ConfigurationError, match="holds the results of another spec"):
        run(changed, output=output, progress=False)


def test_cli_sweep_reports_a_bad_spec_in_one_line(tmp_path, capsys):
    from gad.cli import main

    path = _spec_with(tmp_path, "samples = 16", "samples = -3")
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gad: error: {path}: `budget.samples`: has to be a positive int, but is -3"]


def test_cli_report_prints_the_table(swept, capsys):
    from gad.cli import main

    _, output, _ = swept
    assert main(["report", str(output), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out == (output / "report.md").read_text() and "| toy | cars | 4 | 0 | 64 |" in out


def test_the_asap_benchmark_folder_loads_as_problems(tmp_path):
    root = DATA / "gad-benchmark"
    assert root.is_dir(), f"the ASAp benchmark data is missing: expected {root} (see ../shared/data/README.md)"
    spec = write_spec(tmp_path)
    text = spec.read_text().replace('jsonl = "problems.jsonl"', f'asap = "{root}"\nfamily = "bv4"\nlimit = 2')
    spec.write_text(text)
    loaded = load_spec(spec)
    names = sorted(p.stem for p in (root / "examples" / "sygus" / "bv4").glob("*.ebnf"))[:2]
    assert [p.id for p in loaded.problems] == names and {p.family for p in loaded.problems} == {"bv4"}
    first = loaded.problems[0]
    assert first.prompt == (root / "prompts" / "bv4" / f"{names[0]}.txt").read_text()
    solution = (root / "correct" / "bv4" / names[0]).read_text().strip()
    info = gad.TokenizerInfo.from_vocab([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_id=256)
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile(first.load_grammar()))
    assert matcher.accept_string(solution) and matcher.is_accepting()  # the paper's correct answer parses
    with pytest.raises(SpecError, match="`problems.names`: 'nope' is not a bv4 problem"):
        spec.write_text(text.replace("limit = 2", 'names = ["nope"]'))
        load_spec(spec)


@pytest.mark.parametrize("limit, unit, key", [("forward_passes = 40", "forward_passes", "model_calls"),
                                              ("seconds = 0.3", "seconds", "seconds")])  # fmt: skip
def test_a_task_stops_at_the_first_chunk_past_its_budget(tmp_path, limit, unit, key):
    spec = load_spec(_spec_with(tmp_path, "samples = 16", limit))
    model = load_model({"factory": "sweep_models:bits", "params": {"kind": "uniform"}})
    task = next(t for t in spec.tasks() if t.id == "skewed__gcd__seed0")
    record = run_task(task, model)
    chunks = record["chunks"]
    budget = 40 if unit == "forward_passes" else 0.3
    assert len(chunks) >= 2 and chunks[-2][key] < budget <= chunks[-1][key]
    assert len(record["samples"]) == 8 * len(chunks) and record["model_calls"] == chunks[-1]["model_calls"]


def test_a_folder_of_grammar_files_loads_as_problems(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "bits.lark").write_text('start: "0" "1"*\n')
    (folder / "bits.txt").write_text("Some bits:")
    (folder / "word.gbnf").write_text('root ::= "a" | "b"\n')
    (folder / "word.txt").write_text("A letter:")
    (folder / "person.schema.json").write_text('{"type": "object", "properties": {"age": {"type": "integer"}}}')
    (folder / "person.txt").write_text("A person:")
    (folder / "notes.md").write_text("ignored: not a grammar")
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace('jsonl = "problems.jsonl"', 'folder = "mine"'))
    loaded = load_spec(spec)
    assert [(p.id, p.format, p.family, p.prompt) for p in loaded.problems] == [
        ("bits", "lark", "mine", "Some bits:"), ("person", "json_schema", "mine", "A person:"), ("word", "gbnf", "mine", "A letter:")]
    info = gad.TokenizerInfo.from_vocab([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_id=256)
    for problem, text, wrong in zip(loaded.problems, ["0111", '{"age": 7}', "b"], ["10", '{"age": "7"}', "ab"]):
        compiled = gad.GrammarCompiler(info).compile(problem.load_grammar())
        good, bad = gad.GrammarMatcher(compiled), gad.GrammarMatcher(compiled)
        assert good.accept_string(text) and good.is_accepting()
        assert not (bad.accept_string(wrong) and bad.is_accepting())
    (folder / "word.txt").unlink()
    with pytest.raises(SpecError, match=r"`problems.folder`: word.gbnf has no prompt file word.txt"):
        load_spec(spec)
