"""The experiment spec: one TOML file naming the model, the problems, the samplers, the budget,
the seeds and the metrics of a sweep (`load_spec`).

    [model]                     # "embedded" (default): SmolLM2-135M-Instruct from gad.assets;
    name = "embedded"           # or path = "checkpoint/folder" (or a .gguf file);
    chat_template = true        # or factory = "package.module:function" (+ [model.params])
    threads = 1                 # torch threads per worker

    [problems]                  # exactly one of:
    asap = "../shared/data/gad-benchmark"   # the ASAp paper's problems (family = bv4 | SLIA | CP)
    family = "bv4"
    names = ["find_inv_bvsge_bvadd_4bit"]   # or limit = 3 (the first problems by name)
    # folder = "problems/"      # NAME.lark / NAME.gbnf / NAME.schema.json, prompt in NAME.txt
    # jsonl = "problems.jsonl"  # one {"id", "grammar", "prompt"[, "format", "family"]} per line

    [[samplers]]                # any registered sampler (gad.samplers.SAMPLERS) and its
    name = "asap"               # constructor's keyword arguments; `label` names it in the
    batch_size = 4              # results (default: the name)

    [budget]                    # per task; the first one reached stops it
    samples = 64                # and/or forward_passes = 500, seconds = 60
    max_new_tokens = 32
    chunk = 8                   # samples per `Sampler.sample` call

    seeds = [0, 1]              # or a count: seeds = 2
    metrics = ["kl", "logprob", "samples_per_pass", "acceptance"]

    [exact]                     # the enumeration behind "kl" (gad.exact)
    max_expanded = 20000
    min_prob = 0.0

    [ray]
    workers = 2                 # actors (default: the cluster's CPUs)
    max_retries = 3             # restarts of a killed worker, retries of its task

Relative paths are relative to the spec file. Every field is checked when the spec loads, every
grammar is parsed, and a bad one raises `SpecError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gad.errors import ConfigurationError, GadError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["METRICS", "Budget", "Problem", "SamplerSpec", "Spec", "SpecError", "Task", "load_spec"]

#: The metrics `gad report` can show.
METRICS = ("kl", "logprob", "samples_per_pass", "acceptance")
#: Grammar formats of a problem.
FORMATS = ("lark", "gbnf", "json_schema", "regex")
_ASAP_FAMILIES = {"bv4": ("examples/sygus/bv4", "prompts/bv4"), "SLIA": ("examples/sygus/SLIA", "prompts/SLIA"),
                  "CP": ("examples/nlp/CP", "prompts/nlp/CP")}  # fmt: skip
_SAMPLER_KEYS = ("name", "label")
_TOP_KEYS = {"name", "model", "problems", "samplers", "budget", "seeds", "metrics", "exact", "ray"}


class SpecError(ConfigurationError):
    """A bad experiment spec: the message names the file and the field."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        self.path, self.field = str(path), field
        super().__init__(f"{path}: `{field}`: {message}")


@dataclass(frozen=True)
class Problem:
    """One grammar and one prompt.

    Attributes:
        id: unique within the sweep (file stem or the JSONL ``id``).
        family: what the report groups by (the ASAp family, the folder's name, or JSONL ``family``).
        format: one of `FORMATS`.
        grammar: the grammar's text (a JSON Schema as JSON text).
        prompt: text (encoded by the model's tokenizer) or token ids.
        source: where it came from, for messages.
    """

    id: str
    family: str
    format: str
    grammar: str
    prompt: str | tuple[int, ...]
    source: str

    def load_grammar(self):
        """The `gad.Grammar` (raises `GrammarError` for a bad one)."""
        from gad.grammar.ir import Grammar

        if self.format == "lark":
            return Grammar.from_lark(self.grammar, source=self.source)
        if self.format == "gbnf":
            # The ASAp CP grammars point at undefined depth-bounded rules: dead branches there.
            return Grammar.from_gbnf(self.grammar, source=self.source, undefined="empty")
        if self.format == "regex":
            return Grammar.from_regex(self.grammar)
        return Grammar.from_json_schema(json.loads(self.grammar))


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler (`name`), its constructor keywords (`params`) and its `label`."""

    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """What one task may spend: it stops before the chunk that would start past any limit."""

    samples: int | None = None
    forward_passes: int | None = None
    seconds: float | None = None
    max_new_tokens: int = 64
    chunk: int = 8


@dataclass(frozen=True)
class Task:
    """One unit of work: a sampler on a problem with a seed, or (``sampler is None``) the exact
    enumeration of a problem. `id` names its record file."""

    id: str
    problem: Problem
    sampler: SamplerSpec | None
    seed: int | None
    budget: Budget
    exact: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """A loaded, validated experiment spec (see the module docstring)."""

    path: Path
    name: str
    model: dict[str, Any]
    problems: tuple[Problem, ...]
    samplers: tuple[SamplerSpec, ...]
    budget: Budget
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    exact: dict[str, Any]
    ray: dict[str, Any]

    def tasks(self) -> list[Task]:
        """Every task, problem by problem: the exact enumeration first (when "kl" is asked for),
        then each sampler and seed."""
        out = []
        for p in self.problems:
            if "kl" in self.metrics:
                out.append(Task(f"{p.id}__exact", p, None, None, self.budget, self.exact))
            for s in self.samplers:
                for seed in self.seeds:
                    out.append(Task(f"{p.id}__{s.label}__seed{seed}", p, s, seed, self.budget, self.exact))
        return out

    def fingerprint(self) -> str:
        """A hash of everything that decides the results (not the Ray settings): an output folder
        belongs to one fingerprint."""
        body = {"model": self.model, "problems": [asdict(p) for p in self.problems],
                "samplers": [asdict(s) for s in self.samplers], "budget": asdict(self.budget),
                "seeds": self.seeds, "exact": self.exact, "kl": "kl" in self.metrics}  # fmt: skip
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- loading ------------------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Read and validate the spec at `path`; `SpecError` (or a `GrammarError` for a bad grammar
    file) names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(path, "(file)", f"cannot read the spec: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(path, "(file)", "not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "(file)", f"not valid TOML: {exc}") from None
    return _Loader(path).spec(data)


_ID = re.compile(r"[A-Za-z0-9_.+-]+")


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.resolve().parent

    def fail(self, field: str, message: str) -> SpecError:
        return SpecError(self.path, field, message)

    def table(self, data: dict, key: str, allowed: set[str], required: bool = False) -> dict:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(key, "missing: this table is required")
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"has to be a table, but is {value!r:.60}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown field; the fields are {', '.join(sorted(allowed))}")
        return value

    def positive(self, field: str, value: object, kind: type = int) -> Any:
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) and value > 0
        if not ok:
            raise self.fail(field, f"has to be a positive {kind.__name__}, but is {value!r}")
        return value

    def file(self, field: str, value: object, folder: bool = False) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"has to be a path, but is {value!r}")
        p = (self.base / value).resolve()
        if not (p.is_dir() if folder else p.is_file()):
            raise self.fail(field, f"{value!r} (resolved to {p}) is not an existing {'folder' if folder else 'file'}")
        return p

    def spec(self, data: dict) -> Spec:
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise self.fail(unknown[0], f"unknown field; the fields are {', '.join(sorted(_TOP_KEYS))}")
        name = data.get("name", self.path.stem)
        if not isinstance(name, str) or not name:
            raise self.fail("name", f"has to be a non-empty string, but is {name!r}")
        problems = self.problems(self.table(data, "problems", {"asap", "family", "names", "limit", "folder", "jsonl"}, True))
        samplers = self.samplers(data.get("samplers"))
        budget = self.budget(self.table(data, "budget", {"samples", "forward_passes", "seconds", "max_new_tokens", "chunk"}, True))
        metrics = data.get("metrics", list(METRICS))
        if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
            raise self.fail("metrics", f"has to be a non-empty list of {', '.join(METRICS)}, but is {metrics!r}")
        exact = self.table(data, "exact", {"max_expanded", "min_prob"})
        temperatures = {float(s.params.get("temperature", 1.0)) for s in samplers}
        if "kl" in metrics and len(temperatures) > 1:
            raise self.fail("samplers", f"the samplers' temperatures differ ({', '.join(map(str, sorted(temperatures)))}), "
                            "so there is no one exact distribution for `kl`; give them one temperature")  # fmt: skip
        exact = {"max_expanded": self.positive("exact.max_expanded", exact.get("max_expanded", 20000)),
                 "min_prob": exact.get("min_prob", 0.0), "temperature": min(temperatures)}  # fmt: skip
        if not isinstance(exact["min_prob"], (int, float)) or not 0 <= exact["min_prob"] < 1:
            raise self.fail("exact.min_prob", f"has to be a float in [0, 1), but is {exact['min_prob']!r}")
        ray = self.table(data, "ray", {"workers", "max_retries", "address"})
        if "workers" in ray:
            self.positive("ray.workers", ray["workers"])
        retries = ray.get("max_retries", 3)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise self.fail("ray.max_retries", f"has to be a non-negative int, but is {retries!r}")
        if "address" in ray and not isinstance(ray["address"], str):
            raise self.fail("ray.address", f"has to be a string, but is {ray['address']!r}")
        return Spec(self.path, name, self.model(self.table(data, "model", {"name", "path", "factory", "params", "chat_template", "threads"})),
                    tuple(problems), tuple(samplers), budget, self.seeds(data.get("seeds", [0])), tuple(dict.fromkeys(metrics)),
                    exact, {"max_retries": retries, **{k: v for k, v in ray.items() if k != "max_retries"}})  # fmt: skip

    def model(self, m: dict) -> dict:
        kinds = [k for k in ("name", "path", "factory") if k in m]
        if len(kinds) > 1:
            raise self.fail(f"model.{kinds[1]}", f"give one of model.name, model.path, model.factory, not {' and '.join(kinds)}")
        out: dict[str, Any] = {"chat_template": m.get("chat_template", True), "threads": m.get("threads", 1)}
        if not isinstance(out["chat_template"], bool):
            raise self.fail("model.chat_template", f"has to be true or false, but is {out['chat_template']!r}")
        self.positive("model.threads", out["threads"])
        if "params" in m and "factory" not in m:
            raise self.fail("model.params", "only a model.factory takes params")
        if "path" in m:
            p = (self.base / m["path"]).resolve() if isinstance(m["path"], str) else None
            if p is None or not p.exists():
                raise self.fail("model.path", f"{m['path']!r} is not an existing checkpoint folder or .gguf file")
            out["path"] = str(p)
        elif "factory" in m:
            out["factory"] = m["factory"]
            out["params"] = m.get("params", {})
            if not isinstance(out["params"], dict):
                raise self.fail("model.params", f"has to be a table, but is {out['params']!r}")
            try:
                resolve_factory(m["factory"])
            except GadError as exc:
                raise self.fail("model.factory", str(exc)) from None
        else:
            name = m.get("name", "embedded")
            if name not in ("embedded", "default"):
                raise self.fail("model.name", f"has to be 'embedded' (SmolLM2-135M-Instruct), but is {name!r}; "
                                "give a checkpoint with model.path")  # fmt: skip
            out["name"] = "embedded"
        return out

    def seeds(self, seeds: object) -> tuple[int, ...]:
        if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 0:
            return tuple(range(seeds))
        if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):  # fmt: skip
            raise self.fail("seeds", f"has to be a count or a list of distinct non-negative ints, but is {seeds!r}")
        return tuple(seeds)

    def budget(self, b: dict) -> Budget:
        limits = {k: b[k] for k in ("samples", "forward_passes", "seconds") if k in b}
        if not limits:
            raise self.fail("budget", "give at least one of samples, forward_passes, seconds")
        for k, v in limits.items():
            self.positive(f"budget.{k}", v, float if k == "seconds" else int)
        return Budget(**limits, max_new_tokens=self.positive("budget.max_new_tokens", b.get("max_new_tokens", 64)),
                      chunk=self.positive("budget.chunk", b.get("chunk", 8)))  # fmt: skip

    def samplers(self, samplers: object) -> list[SamplerSpec]:
        from gad.samplers import SAMPLERS

        if not isinstance(samplers, list) or not samplers or not all(isinstance(s, dict) for s in samplers):
            raise self.fail("samplers", "has to be a non-empty array of tables ([[samplers]] name = ...)")
        out, labels = [], set()
        for i, s in enumerate(samplers):
            where = f"samplers[{i}]"
            name = s.get("name")
            if name not in SAMPLERS:
                raise self.fail(f"{where}.name", f"has to be one of {', '.join(SAMPLERS)}, but is {name!r}")
            params = {k: v for k, v in s.items() if k not in _SAMPLER_KEYS}
            cls = SAMPLERS[name]
            accepted = {p.name for p in inspect.signature(cls.__init__).parameters.values()
                        if p.kind is p.KEYWORD_ONLY and p.name not in ("store",)}  # fmt: skip
            for key in params:
                if key not in accepted:
                    raise self.fail(f"{where}.{key}", f"sampler {name!r} takes no such parameter; it takes "
                                    f"{', '.join(sorted(accepted)) or 'none'}")  # fmt: skip
            try:
                cls(*_probe(), **params)  # the sampler's own checks of its arguments
            except (GadError, TypeError) as exc:
                raise self.fail(where, f"sampler {name!r} rejects its parameters: {exc}") from None
            label = s.get("label", name)
            if not isinstance(label, str) or not _ID.fullmatch(label):
                raise self.fail(f"{where}.label", f"has to be letters, digits, or _.+-, but is {label!r}")
            if label in labels:
                raise self.fail(f"{where}.label", f"{label!r} is used twice; give each sampler its own label")
            labels.add(label)
            out.append(SamplerSpec(name, label, params))
        return out

    def problems(self, p: dict) -> list[Problem]:
        sources = [k for k in ("asap", "folder", "jsonl") if k in p]
        if len(sources) != 1:
            raise self.fail("problems", f"give exactly one of asap, folder, jsonl (got {', '.join(sources) or 'none'})")
        if "asap" not in p:
            for key in ("family", "names"):
                if key in p:
                    raise self.fail(f"problems.{key}", "only the ASAp benchmark (problems.asap) takes it")
        if "asap" in p:
            problems = self.asap(p)
        elif "folder" in p:
            problems = self.folder(self.file("problems.folder", p["folder"], folder=True))
        else:
            problems = self.jsonl(self.file("problems.jsonl", p["jsonl"]))
        if "limit" in p:
            problems = problems[: self.positive("problems.limit", p["limit"])]
        if not problems:
            raise self.fail("problems", "no problem found")
        seen: dict[str, str] = {}
        for problem in problems:
            if not _ID.fullmatch(problem.id):
                raise self.fail("problems", f"problem id {problem.id!r} ({problem.source}) has to be letters, digits, or _.+-")
            if problem.id in seen:
                raise self.fail("problems", f"two problems are called {problem.id!r} ({seen[problem.id]}, {problem.source})")
            seen[problem.id] = problem.source
            problem.load_grammar()  # a bad grammar fails here, with its file, line and column
        return problems

    def asap(self, p: dict) -> list[Problem]:
        root = self.file("problems.asap", p["asap"], folder=True)
        family = p.get("family", "bv4")
        if family not in _ASAP_FAMILIES:
            raise self.fail("problems.family", f"has to be one of {', '.join(_ASAP_FAMILIES)}, but is {family!r}")
        grammars, prompts = (root / d for d in _ASAP_FAMILIES[family])
        if not grammars.is_dir():
            raise self.fail("problems.asap", f"{root} has no {_ASAP_FAMILIES[family][0]}: not the ASAp benchmark folder")
        available = sorted(g.stem for g in grammars.glob("*.ebnf") if (prompts / f"{g.stem}.txt").is_file())
        names = p.get("names", available)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self.fail("problems.names", f"has to be a list of problem names, but is {names!r}")
        out = []
        for n in names:
            if n not in available:
                raise self.fail("problems.names", f"{n!r} is not a {family} problem with a prompt in {root}")
            g = grammars / f"{n}.ebnf"
            out.append(Problem(n, family, "gbnf", g.read_text(encoding="utf-8"),
                               (prompts / f"{n}.txt").read_text(encoding="utf-8"), str(g)))  # fmt: skip
        return out

    def folder(self, root: Path) -> list[Problem]:
        out = []
        for g in sorted(root.iterdir()):
            if g.name.endswith(".schema.json"):
                stem, fmt = g.name[: -len(".schema.json")], "json_schema"
            elif g.suffix in (".lark", ".gbnf"):
                stem, fmt = g.stem, g.suffix[1:]
            else:
                continue
            prompt = root / f"{stem}.txt"
            if not prompt.is_file():
                raise self.fail("problems.folder", f"{g.name} has no prompt file {prompt.name} next to it")
            text = g.read_text(encoding="utf-8")
            if fmt == "json_schema":
                try:
                    json.loads(text)
                except json.JSONDecodeError as exc:
                    raise self.fail("problems.folder", f"{g}: not JSON: {exc}") from None
            out.append(Problem(stem, root.name, fmt, text, prompt.read_text(encoding="utf-8"), str(g)))
        return out

    def jsonl(self, path: Path) -> list[Problem]:
        out = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"problems.jsonl (line {n})"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise self.fail(where, f"not JSON: {exc.msg} at column {exc.colno}") from None
            if not isinstance(row, dict) or not {"id", "grammar", "prompt"} <= set(row):
                raise self.fail(where, 'each line has to be an object with "id", "grammar" and "prompt"')
            pid, grammar, prompt = row["id"], row["grammar"], row["prompt"]
            if not isinstance(pid, str) or not _ID.fullmatch(pid):
                raise self.fail(f"{where}.id", f"has to be letters, digits, or _.+-, but is {pid!r}")
            fmt = row.get("format", "json_schema" if isinstance(grammar, dict) else "lark")
            if fmt not in FORMATS:
                raise self.fail(f"{where}.format", f"has to be one of {', '.join(FORMATS)}, but is {fmt!r}")
            if fmt == "json_schema" and isinstance(grammar, dict):
                grammar = json.dumps(grammar)
            if not isinstance(grammar, str):
                raise self.fail(f"{where}.grammar", f"has to be the grammar's text, but is {grammar!r:.60}")
            ids = isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
            if not (isinstance(prompt, str) or ids):
                raise self.fail(f"{where}.prompt", f"has to be text or a list of token ids, but is {prompt!r:.60}")
            family = row.get("family", path.stem)
            out.append(Problem(pid, str(family), fmt, grammar, tuple(prompt) if ids else prompt, f"{path}:{n}"))
        return out


def resolve_factory(ref: object):
    """The callable named by ``"package.module:function"`` (a model factory)."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ConfigurationError(f"has to be 'package.module:function', but is {ref!r}")
    module, attr = ref.split(":")
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import {ref!r}: {exc}") from None
    if not callable(target):
        raise ConfigurationError(f"{ref!r} is not callable")
    return target


_PROBE: tuple | None = None


def _probe() -> tuple:
    """A tiny (model, grammar) pair to construct samplers with, so they check their arguments."""
    global _PROBE
    if _PROBE is None:
        from gad.compiler import GrammarCompiler
        from gad.grammar.ir import Grammar
        from gad.lm import UniformLM
        from gad.tokenizer import TokenizerInfo

        info = TokenizerInfo.from_vocab([b"a", b"<eos>"], eos_token_id=1)
        _PROBE = (UniformLM(2), GrammarCompiler(info).compile(Grammar.from_lark('start: "a"')))
    return _PROBE
