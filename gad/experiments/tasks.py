"""Running one task of a sweep in this process: `load_model`, then `run_task` — what each Ray
worker does, and what a test or a user can call to rerun any task by hand.

A task's record is a function of the task and the model alone: the model's KV cache is reset and
the grammar's matchers and the sampler are fresh for every task, so a task rerun after its worker
died (or run one by one) gives the same samples. Budgets in seconds are the exception: where they
stop depends on the machine.

Work is counted by wrapping the model and the constraint: ``model_calls`` are calls of
`LanguageModel.next_token_logprobs` / `extend_logprobs` (each one batched forward pass;
``model_rows`` their rows), ``masks`` the next-token masks computed and ``token_checks`` the tokens
offered to a matcher (`accept_token`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gad.errors import ConfigurationError
from gad.experiments.spec import Task, resolve_factory
from gad.lm import LanguageModel

__all__ = ["Model", "load_model", "run_task", "versions"]


@dataclass
class Model:
    """What a worker loads once: the model, its tokenizer (a transformers tokenizer or a
    `gad.TokenizerInfo`), and whether text prompts go through the chat template.

    A ``model.factory`` of the spec returns one of these; `lm` may be any `gad.LanguageModel`.
    With a `TokenizerInfo`, prompts have to be token ids (or empty text, the empty prompt).
    """

    lm: LanguageModel
    tokenizer: Any
    name: str
    chat_template: bool = True
    hf_model: Any = None

    def encode(self, prompt: str | Sequence[int]) -> list[int]:
        """The prompt's token ids."""
        from gad.generate import encode_prompt
        from gad.tokenizer import TokenizerInfo

        if isinstance(prompt, str) and prompt == "" and isinstance(self.tokenizer, TokenizerInfo):
            return []
        return encode_prompt(self.tokenizer, list(prompt) if not isinstance(prompt, str) else prompt,
                             self.chat_template and bool(getattr(self.tokenizer, "chat_template", None)))  # fmt: skip

    def compile(self, grammar):
        """`grammar` compiled for this model's tokenizer and logits size."""
        from gad.generate import compile_grammar

        return compile_grammar(grammar, self.tokenizer, self.hf_model if self.hf_model is not None else self.lm)

    def decode(self, token_ids: Sequence[int]) -> str:
        from gad.tokenizer import TokenizerInfo

        if isinstance(self.tokenizer, TokenizerInfo):
            return self.tokenizer.decode_bytes(list(token_ids)).decode("utf-8", errors="replace")
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)


def load_model(config: dict[str, Any]) -> Model:
    """The model of a spec's ``[model]`` table (as `gad.experiments.spec.Spec.model` holds it).
    Its ``threads`` are for the workers (`gad.experiments.runner`), not applied here."""
    from gad.lm import HuggingFaceLM

    chat = bool(config.get("chat_template", True))
    if "factory" in config:
        model = resolve_factory(config["factory"])(**config.get("params", {}))
        if not isinstance(model, Model):
            raise ConfigurationError(f"model factory {config['factory']!r} returned {type(model).__name__}, not a gad.experiments.Model")
        return model
    _quiet_transformers()
    if "path" in config:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = config["path"]
        kwargs: dict[str, Any] = {"local_files_only": True}
        source = path
        if path.endswith(".gguf"):
            source, kwargs["gguf_file"] = os.path.dirname(path), os.path.basename(path)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        hf = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        name = path
    else:
        from gad.assets import load_default_model

        hf, tokenizer = load_default_model()
        name = "SmolLM2-135M-Instruct"
    hf.eval()
    return Model(HuggingFaceLM(hf), tokenizer, name, chat, hf)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def versions() -> dict[str, str]:
    """The versions a record was made with."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("gad", "torch", "transformers", "ray"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "none"
    return out


# -- counting ---------------------------------------------------------------------------------------


class _CountingLM(LanguageModel):
    """`lm`, counting its calls and rows into `counts`."""

    def __init__(self, lm: LanguageModel, counts: dict[str, int]) -> None:
        self.lm, self.counts = lm, counts

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    def next_token_logprobs(self, prefixes):
        self.counts["model_calls"] += 1
        self.counts["model_rows"] += len(prefixes)
        return self.lm.next_token_logprobs(prefixes)

    def extend_logprobs(self, prefixes, extensions):
        self.counts["model_calls"] += 1
        self.counts["model_rows"] += sum(len(e) for e in extensions)
        return self.lm.extend_logprobs(prefixes, extensions)


class _CountingConstraint:
    """A constraint (`gad.constraint.Constraint`) counting its masks and token checks."""

    __slots__ = ("inner", "counts")

    def __init__(self, inner, counts: dict[str, int]) -> None:
        self.inner, self.counts = inner, counts

    def fill_next_token_bitmask(self, bitmask, index: int = 0) -> None:
        self.counts["masks"] += 1
        self.inner.fill_next_token_bitmask(bitmask, index)

    def accept_token(self, token_id: int) -> bool:
        self.counts["token_checks"] += 1
        return self.inner.accept_token(token_id)

    def rollback(self, num_tokens: int = 1) -> None:
        self.inner.rollback(num_tokens)

    def fork(self) -> _CountingConstraint:
        return _CountingConstraint(self.inner.fork(), self.counts)

    def is_accepting(self) -> bool:
        return self.inner.is_accepting()

    def is_terminated(self) -> bool:
        return self.inner.is_terminated()


def _counting(compiled, counts: dict[str, int]):
    from gad.constraint import ConstraintFactory

    base = ConstraintFactory.of(compiled)
    return dataclasses.replace(base, new=lambda: _CountingConstraint(base.new(), counts))


# -- one task -------------------------------------------------------------------------------------


def _sample_dict(sample, model: Model) -> dict[str, Any]:
    out = {"tokens": list(sample.token_ids), "text": model.decode(sample.token_ids), "finish": sample.finish_reason,
           "logprob_model": sample.logprob_model, "logprob_sampler": sample.logprob_sampler}  # fmt: skip
    if hasattr(sample, "log_weight"):
        out["log_weight"] = float(sample.log_weight)
    return out


def run_task(task: Task, model: Model, compiled=None, *, compile_cache: dict | None = None) -> dict[str, Any]:
    """Run `task` with `model` and return its record (a JSON-ready dict).

    Exceptions of the task itself (a grammar that does not compile, a sampler's dead end) are
    caught and recorded (``status = "error"`` with the type, message and traceback); the record
    has no samples then. `compiled` (or `compile_cache`, keyed by problem id) saves compiling the
    grammar again.
    """
    started, cpu = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {
        "task": task.id, "kind": "exact" if task.sampler is None else "sample", "problem": task.problem.id,
        "family": task.problem.family, "sampler": None if task.sampler is None else task.sampler.label,
        "sampler_name": None if task.sampler is None else task.sampler.name,
        "params": {} if task.sampler is None else task.sampler.params, "seed": task.seed,
        "budget": dataclasses.asdict(task.budget), "model": model.name,
    }  # fmt: skip
    counts = {"model_calls": 0, "model_rows": 0, "masks": 0, "token_checks": 0}
    try:
        if compiled is None:
            compiled = (compile_cache or {}).get(task.problem.id)
        if compiled is None:
            compiled = model.compile(task.problem.load_grammar())
            if compile_cache is not None:
                compile_cache[task.problem.id] = compiled
        if hasattr(model.lm, "reset"):
            model.lm.reset()  # the KV cache of the previous task must not change this one's numbers
        prompt = model.encode(task.problem.prompt)
        record["prompt_tokens"] = len(prompt)
        lm = _CountingLM(model.lm, counts)
        constraint = _counting(compiled, counts)
        record.update(_exact(task, lm, constraint, prompt, model) if task.sampler is None
                      else _sample(task, lm, constraint, prompt, model))  # fmt: skip
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a task's failure is recorded, the sweep goes on
        record.update(status="error", error={"type": type(exc).__name__, "message": str(exc),
                                             "traceback": traceback.format_exc(limit=20)})  # fmt: skip
    record.update(counts)
    record.update(wall_seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu,
                  worker={"host": socket.gethostname(), "pid": os.getpid()}, versions=versions())  # fmt: skip
    return record


def _sample(task: Task, lm: LanguageModel, constraint, prompt: list[int], model: Model) -> dict[str, Any]:
    """Run the sampler chunk by chunk until the budget is spent. Chunk k draws
    ``min(chunk, samples left)`` samples with seed ``seed_for(seed, k)``; the sampler (and an
    ASAp or CARS trie) lives for the whole task."""
    from gad.samplers import SAMPLERS
    from gad.samplers.base import seed_for

    if task.sampler is None or task.seed is None:
        raise ConfigurationError(f"task {task.id} has no sampler or no seed")
    b = task.budget
    sampler = SAMPLERS[task.sampler.name](lm, constraint, **task.sampler.params)
    samples: list[dict[str, Any]] = []
    chunks: list[dict[str, Any]] = []
    started = time.perf_counter()
    counts = lm.counts  # type: ignore[attr-defined]
    k = 0
    idle = 0
    while True:
        if b.samples is not None and len(samples) >= b.samples:
            break
        if b.forward_passes is not None and counts["model_calls"] >= b.forward_passes:
            break
        if b.seconds is not None and time.perf_counter() - started >= b.seconds:
            break
        if idle >= 20:  # a complete trie asks the model nothing more: the budget can never be spent
            break
        n = b.chunk if b.samples is None else min(b.chunk, b.samples - len(samples))
        before = counts["model_calls"]
        drawn = sampler.sample(prompt, n, max_new_tokens=b.max_new_tokens, seed=seed_for(task.seed, k))
        idle = idle + 1 if counts["model_calls"] == before and b.samples is None else 0
        k += 1
        samples += [_sample_dict(s, model) for s in drawn]
        chunks.append({"samples": len(samples), "model_calls": counts["model_calls"],
                       "seconds": time.perf_counter() - started})  # fmt: skip
    stats = {}
    own = getattr(sampler, "counts", None)
    if isinstance(own, dict):
        stats = {key: v for key, v in own.items() if isinstance(v, (int, float))}
    return {"samples": samples, "chunks": chunks, "sampler_counts": stats}


def _exact(task: Task, lm: LanguageModel, constraint, prompt: list[int], model: Model) -> dict[str, Any]:
    """The exact distribution for the sampler's length limit, or ``enumerable = False``."""
    from gad.exact import exact_distribution

    try:
        dist = exact_distribution(lm, constraint, prompt, max_length=task.budget.max_new_tokens,
                                  min_prob=task.exact["min_prob"], max_expanded=task.exact["max_expanded"],
                                  temperature=task.exact["temperature"])  # fmt: skip
    except ConfigurationError as exc:
        if "max_expanded" not in str(exc):
            raise
        return {"enumerable": False, "reason": str(exc)}
    return {"enumerable": True, "z": dist.z, "open_mass": dist.open_mass, "pruned_mass": dist.pruned_mass,
            "expected_logprob": dist.expected_logprob() if dist.z > 0 else None,
            "sentences": [[list(w), lp, dist.logp_model[w]] for w, lp in dist.logp.items()]}  # fmt: skip
