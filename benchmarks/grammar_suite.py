"""The grammar suite: gad, xgrammar and llguidance on the same grammars, tokenizers and documents.

    python benchmarks/grammar_suite.py [--tokenizer smollm2,llama3] [--grammar NAME,...] [--long]
                                       [--budget S] [--repeat R] [--max-steps N] [--clock process]
                                       [--markdown] [--json OUT] [--quick] [--check-documents] [--list]

For each tokenizer and each grammar of the suite (benchmarks/_suite.py: JSON, JSON Schemas of three
sizes, a SyGuS and a constituency grammar of the ASAp benchmark, a character-level grammar, csv,
right recursion, a bounded repetition, SQL for a 4-table schema, llama.cpp's GBNF grammars; with
``--long``, two 20,000-token generations), every engine gets the grammar in its native form and
is measured alone in a forked worker process:

- compile: grammar text -> compiled grammar (gad: ``Grammar.from_*`` + ``GrammarCompiler(info)
  .compile``; xgrammar: ``GrammarCompiler.compile_*``; llguidance: ``LLMatcher.grammar_from_*`` + the
  ``LLMatcher`` constructor); the tokenizer conversion is timed apart, once per tokenizer;
- first mask: compile + a matcher + its first mask (what a request waits for before decoding);
- every mask along the document, tokenized by the tokenizer's own encoder and replayed token by
  token (a mask before each token and after the last), p50 / p99 / max over every replay; with
  ``--repeat R`` (R > 1) also over the replays after the first alone ("warm": what an engine that
  builds its mask tables lazily, as gad and llguidance do, costs once they are built); the time of
  accepting the tokens apart; the growth of the worker's resident memory;
- agreement: each mask is hashed and compared with gad's at the same step; the differing steps
  are printed with the text so far and the ids only one side allows.

Clock: process CPU time (``time.process_time_ns``) by default — the machine is shared, and CPU time
is not inflated by other processes' load; ``--clock thread`` / ``wall`` for the others. One thread
per engine (``torch.set_num_threads(1)``, xgrammar ``max_threads=1``, ``RAYON_NUM_THREADS=1``).
Each worker is forked after the tokenizers are loaded and converted, so it starts cold (no grammar
compiled in the process) and pays nothing for loading; it freezes the collector's heap after
compiling (``gc.freeze()``, as a server would after loading). ``--budget S`` bounds each (engine,
grammar, tokenizer) measurement to S seconds of the worker's CPU time (and 3 S of wall time):
past it the worker is killed and the table says "> S s" for the phase it was in, with what it had
measured so far.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from _common import (  # first: sets the one-thread, offline environment before any engine loads
    MODEL_VOCAB_SIZE,
    Difference,
    DoesNotRun,
    Engine,
    GadEngine,
    LLGuidanceEngine,
    TokenDescriber,
    XGrammarEngine,
    disagreements,
    ms_cell,
    reason,
    render_table,
    split_list,
    us_stats,
    version,
)
from _suite import Entry, check_documents, entries  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gad  # noqa: E402
from gad.assets import load_tokenizer  # noqa: E402

CLOCKS = {"process": time.process_time_ns, "thread": time.thread_time_ns, "wall": time.perf_counter_ns}
ENGINE_NAMES = ("gad", "xgrammar", "llguidance")
LONG_WINDOW = 1000  # long generations: per-token times of the first and of the last 1,000 tokens

# ---------------------------------------------------------------------------------------------
# Each engine's native form of an entry (None: it has none) and its compile.


class SuiteGad(GadEngine):
    def __init__(self, lark_only: bool, eager: bool) -> None:
        super().__init__(bitmask=True, name="gad")
        self.lark_only, self.eager = lark_only, eager

    def form(self, entry: Entry) -> str | None:
        if entry.gad_grammar:
            return "gad.sql"
        if entry.schema or entry.regex:
            return "json schema" if entry.schema else "regex"
        if entry.gbnf and not self.lark_only and hasattr(gad.Grammar, "from_gbnf"):
            return "gbnf"
        return "lark"

    def compile(self, tok: Any, entry: Entry) -> Any:
        form = self.form(entry)
        grammar = (entry.gad_grammar() if form == "gad.sql"
                   else gad.Grammar.from_json_schema(entry.schema) if form == "json schema"
                   else gad.Grammar.from_regex(entry.regex) if form == "regex"
                   else gad.Grammar.from_gbnf(entry.gbnf) if form == "gbnf"
                   else gad.Grammar.from_lark(entry.lark))
        options = {"eager": True} if self.eager else {}
        return gad.GrammarCompiler(tok).compile(grammar, **options)


class SuiteXGrammar(XGrammarEngine):
    def form(self, entry: Entry) -> str | None:
        return ("json schema" if entry.schema else "regex" if entry.regex else "gbnf" if entry.gbnf
                else "ebnf" if entry.ebnf else None)

    def compile(self, tok: Any, entry: Entry) -> Any:
        compiler = self.compiler(tok)
        if entry.schema:
            return compiler.compile_json_schema(entry.schema)
        if entry.regex:
            return compiler.compile_regex(entry.regex)
        return compiler.compile_grammar(entry.gbnf or entry.ebnf)


class SuiteLLGuidance(LLGuidanceEngine):
    def form(self, entry: Entry) -> str | None:
        return ("json schema" if entry.schema else "regex" if entry.regex
                else "gbnf" if entry.gbnf and self.family not in entry.lark_for
                else "lark" if entry.lark else None)

    def compile(self, tok: Any, entry: Entry) -> Any:
        import llguidance
        from llguidance import LLMatcher

        grammar = (LLMatcher.grammar_from_json_schema(entry.schema) if entry.schema
                   else LLMatcher.grammar_from_regex(entry.regex) if entry.regex
                   else llguidance.grammar_from("gbnf", entry.gbnf) if self.form(entry) == "gbnf"  # its own reader
                   else LLMatcher.grammar_from_lark(entry.lark))
        return self.matcher(tok, grammar)


# ---------------------------------------------------------------------------------------------
# The measurement: a forked worker per (engine, grammar, tokenizer), watched against the budget.


@dataclass
class Row:
    tokenizer: str
    grammar: str
    engine: str
    form: str = ""
    compile_ms: float | None = None
    first_mask_ms: float | None = None
    times_ns: list[int] = field(default_factory=list)  # every mask of every replay
    warm_ns: list[int] = field(default_factory=list)  # the masks of the replays after the first
    accept_ns: list[int] = field(default_factory=list)  # every accept_token of every replay
    token_ns: dict[str, list[int]] = field(default_factory=dict)  # first replay: mask + accept per step
    planned_steps: int = 0
    rss_start: int | None = None
    rss: list[tuple[str, int, int]] = field(default_factory=list)  # (document, step, resident bytes)
    steps_compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    error: str | None = None
    over_budget: str | None = None  # the phase the worker was killed in
    digests: dict[str, list[bytes]] = field(default_factory=dict)  # first replay: mask hash per step
    masks: dict[bytes, bytes] = field(default_factory=dict)  # hash -> packed mask


def _rss() -> int:
    """Resident bytes of this process now (/proc/self/statm; the peak from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (Linux /proc), None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _worker(conn: Any, engine: Engine, tok: Any, entry: Entry, documents: dict[str, list[int]],
            steps: dict[str, int], repeat: int, clock_name: str) -> None:
    """Compile, then replay every document; send what was measured as it goes (so that a worker
    killed for its budget leaves its partial results)."""
    clock = CLOCKS[clock_name]
    gc.collect()
    conn.send(("rss", "", 0, _rss()))
    try:
        started = clock()
        compiled = engine.compile(tok, entry)
        compile_ns = clock() - started
    except Exception as exc:  # noqa: BLE001 - a grammar an engine cannot load is a table entry
        conn.send(("error", f"does not load: {exc}" if isinstance(exc, DoesNotRun) else f"does not load: {reason(exc)}"))
        return
    conn.send(("compiled", compile_ns))
    gc.collect()
    gc.freeze()
    sent: set[bytes] = set()
    first = True
    for rep in range(repeat):
        for name, tokens in documents.items():
            started = clock()
            run = engine.start(tok, compiled)
            start_ns = clock() - started
            fill, read, accept = run.fill, run.read, run.accept
            times, accepts, digests, new = [], [], [], {}
            flushed = time.monotonic()
            for step in range(steps[name]):
                try:
                    started = clock()
                    out = fill()
                    elapsed = clock() - started
                except Exception as exc:  # noqa: BLE001
                    conn.send(("rejected", f"{name} step {step}: mask failed: {reason(exc)}"))
                    break
                times.append(elapsed)
                if first:
                    conn.send(("first", compile_ns + start_ns + elapsed))
                    first = False
                if rep == 0:
                    packed = np.packbits(read(out), bitorder="little").tobytes()
                    digest = hashlib.blake2b(packed, digest_size=16).digest()
                    digests.append(digest)
                    if digest not in sent:
                        sent.add(digest)
                        new[digest] = packed
                if step < len(tokens):
                    try:
                        started = clock()
                        ok = accept(tokens[step])
                        accepts.append(clock() - started)
                    except Exception as exc:  # noqa: BLE001
                        ok, exc_text = False, f": failed: {reason(exc)}"
                    else:
                        exc_text = ""
                    if not ok:
                        conn.send(("steps", name, rep, step + 1, times, accepts, digests, new, _rss()))
                        conn.send(("rejected", f"{name} step {step} token {tokens[step]}{exc_text}"))
                        times = []
                        break
                if len(times) >= 256 or time.monotonic() - flushed > 0.1:  # a worker killed keeps its masks
                    conn.send(("steps", name, rep, step + 1, times, accepts, digests, new, _rss()))
                    times, accepts, digests, new = [], [], [], {}
                    flushed = time.monotonic()
            if times:
                conn.send(("steps", name, rep, steps[name], times, accepts, digests, new, _rss()))
    conn.send(("done",))


def measure(engine: Engine, tok: Any, entry: Entry, row: Row, documents: dict[str, list[int]],
            args: argparse.Namespace) -> None:
    """Run one worker for ``row`` (filled in place), killing it past the budget."""
    steps = {n: len(t) + 1 if args.max_steps is None else min(args.max_steps, len(t) + 1) for n, t in documents.items()}
    row.planned_steps = sum(steps.values()) * args.repeat
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    worker = multiprocessing.get_context("fork").Process(
        target=_worker, args=(send, engine, tok, entry, documents, steps, args.repeat, args.clock), daemon=True)
    worker.start()
    send.close()
    started, phase, done = time.monotonic(), "compile", False
    while not done:
        if receive.poll(0.05):
            try:
                message = receive.recv()
            except EOFError:  # the worker is gone
                break
            phase = _handle(message, row, phase)
            done = message[0] in ("done", "error")
        elif not worker.is_alive():
            break
        elapsed = time.monotonic() - started
        used = elapsed if args.clock == "wall" else _cpu_seconds(worker.pid)
        if not done and ((used if used is not None else elapsed) > args.budget or elapsed > 3 * args.budget):
            worker.kill()
            row.over_budget = phase
            break
    worker.join()
    receive.close()
    if not done and row.over_budget is None and row.error is None:
        row.error = f"worker died (exit code {worker.exitcode})"


def _handle(message: tuple, row: Row, phase: str) -> str:
    """Record one message of a worker in ``row``; the phase the worker is in now."""
    kind = message[0]
    if kind == "rss":
        row.rss_start = message[3]
    elif kind == "compiled":
        row.compile_ms, phase = message[1] / 1e6, "first mask"
    elif kind == "first":
        row.first_mask_ms, phase = message[1] / 1e6, "replay"
    elif kind == "steps":
        _, name, rep, step, times, accepts, digests, new, rss = message
        row.times_ns += times
        if rep > 0:
            row.warm_ns += times
        row.accept_ns += accepts
        if rep == 0:
            row.digests.setdefault(name, []).extend(digests)
            row.masks.update(new)
            row.token_ns.setdefault(name, []).extend(
                t + a for t, a in zip(times, accepts + [0] * (len(times) - len(accepts))))
            row.rss.append((name, step, rss))
    elif kind == "rejected":
        if message[1] not in row.rejected:  # the same rejection in every replay: once
            row.rejected.append(message[1])
    elif kind == "error":
        row.error = message[1]
    return phase


def compare(row: Row, reference: Row, documents: dict[str, list[int]], info: gad.TokenizerInfo) -> None:
    """Count the steps where ``row``'s masks differ from gad's; keep each difference's ids."""
    for name, digests in row.digests.items():
        theirs = reference.digests.get(name, [])
        tokens = documents[name]
        for step, (mine, ref) in enumerate(zip(digests, theirs)):
            row.steps_compared += 1
            if mine == ref:
                continue
            a = np.unpackbits(np.frombuffer(row.masks[mine], np.uint8), bitorder="little").view(np.bool_)
            b = np.unpackbits(np.frombuffer(reference.masks[ref], np.uint8), bitorder="little").view(np.bool_)
            prefix = b"".join(info.token_bytes[t] for t in tokens[max(0, step - 41):step])[-41:]
            row.differences.append(Difference(name, step, prefix, np.flatnonzero(a & ~b), np.flatnonzero(b & ~a)))


# ---------------------------------------------------------------------------------------------
# The run.


def make_engines(args: argparse.Namespace) -> list[Engine]:
    made = {"gad": lambda: SuiteGad(args.gad_source == "lark", args.gad_eager),
            "xgrammar": SuiteXGrammar, "llguidance": SuiteLLGuidance}
    return [made[name]() for name in ENGINE_NAMES if name in args.engines]


def run(args: argparse.Namespace, log: Any) -> tuple[list[Row], dict[str, Any], dict[str, TokenDescriber]]:
    clock = CLOCKS[args.clock]
    engines = make_engines(args)
    rows: list[Row] = []
    conversions: dict[str, Any] = {}
    describers: dict[str, TokenDescriber] = {}
    for tok_name in args.tokenizer:
        tokenizer = load_tokenizer(tok_name)
        vocab_size = MODEL_VOCAB_SIZE[tok_name]
        converted: dict[str, Any] = {}
        for engine in engines:
            try:
                started = clock()
                tok = engine.convert(tokenizer, vocab_size)
                converted[engine.family] = (tok, (clock() - started) / 1e6)
            except Exception as exc:  # noqa: BLE001
                if engine.family == "gad":
                    raise
                converted[engine.family] = (None, f"not installed ({exc.name})" if isinstance(exc, ImportError)
                                            else f"does not run: {reason(exc)}")
        conversions[tok_name] = {f: v[1] for f, v in converted.items()}
        info = converted["gad"][0]
        describers[tok_name] = TokenDescriber(tokenizer, info)
        log(f"{tok_name}: {vocab_size} ids; tokenizer conversion "
            + ", ".join(f"{f} {ms_cell(v) if isinstance(v, float) else v} ms" for f, v in conversions[tok_name].items()))
        encode_cache: dict[str, list[int]] = {}

        def encode(text: str) -> list[int]:
            if text not in encode_cache:
                encode_cache[text] = tokenizer.encode(text, add_special_tokens=False)
            return encode_cache[text]

        for name in args.grammar:
            entry = entries()[name]
            documents = {d: doc.encode(encode, args.long_tokens) for d, doc in entry.documents.items()}
            log(f"  {name}: " + ", ".join(f"{d} {len(t):,} tokens" for d, t in documents.items()))
            reference: Row | None = None
            for engine in engines:
                row = Row(tok_name, name, engine.name, form=engine.form(entry) or "")
                rows.append(row)
                tok, conversion = converted[engine.family]
                if tok is None:
                    row.error = conversion
                elif not row.form:
                    row.error = entry.notes.get(engine.family, "no form of this grammar for this engine")
                else:
                    measure(engine, tok, entry, row, documents, args)
                    log(f"    {engine.name} ({row.form}): compile {ms_cell(row.compile_ms) or '-'} ms, first mask "
                        f"{ms_cell(row.first_mask_ms) or '-'} ms, {len(row.times_ns)} masks"
                        + (f", > budget in {row.over_budget}" if row.over_budget else "")
                        + (f", {row.error}" if row.error else ""))
                if engine.family == "gad":
                    reference = row
                elif reference is not None:
                    compare(row, reference, documents, info)
                    row.masks.clear()
            if reference is not None:
                reference.masks.clear()
    return rows, conversions, describers


# ---------------------------------------------------------------------------------------------
# Output.


def _over(args: argparse.Namespace) -> str:
    return f"> {args.budget:g} s"


def _agreement(row: Row, args: argparse.Namespace) -> str:
    if row.error:
        return row.error
    notes = []
    if row.over_budget:
        notes.append(f"{_over(args)} in {row.over_budget}" + (f" ({len(row.times_ns)} of {row.planned_steps} masks)"
                                                              if row.times_ns else ""))
    if row.engine == "gad":
        notes.append("(reference)")
    elif row.steps_compared:
        n, of = len(row.differences), row.steps_compared
        notes.append(f"yes, {of} steps" if n == 0 else f"NO: {n}/{of} steps differ")
    elif row.times_ns:
        notes.append("no gad masks to compare with")
    if row.rejected:
        notes.append(f"rejects {len(row.rejected)} doc(s)")
    return "; ".join(notes) or "-"


def _rss_mb(row: Row) -> float | None:
    return None if row.rss_start is None or not row.rss else (row.rss[-1][2] - row.rss_start) / 2**20


HEADER = ["tokenizer", "grammar", "engine", "input", "compile ms", "1st mask ms", "masks", "p50 us", "p99 us",
          "max us", "accept ms", "RSS +MB", "masks equal gad's"]
WARM_HEADER = ["warm p50 us", "warm p99 us", "warm max us"]  # with --repeat > 1, after "max us"


def table(rows: list[Row], args: argparse.Namespace) -> str:
    body = []
    header = HEADER[:10] + WARM_HEADER + HEADER[10:] if args.repeat > 1 else HEADER
    for r in rows:
        compile_cell = ms_cell(r.compile_ms) or (_over(args) if r.over_budget == "compile" else "")
        first_cell = ms_cell(r.first_mask_ms) or (_over(args) if r.over_budget in ("compile", "first mask") else "")
        accept = ms_cell(sum(r.accept_ns) / 1e6 / args.repeat) if r.accept_ns else ""
        rss = _rss_mb(r)
        body.append([r.tokenizer, r.grammar, r.engine, r.form, compile_cell, first_cell,
                     str(len(r.times_ns)) if r.times_ns else "", *us_stats(r.times_ns),
                     *(us_stats(r.warm_ns) if args.repeat > 1 else []), accept,
                     "" if rss is None else f"{rss:.1f}", _agreement(r, args)])
    return render_table(header, body, range(4, len(header) - 1), args.markdown)


def long_stats(row: Row) -> dict[str, Any] | None:
    """Per-token time (mask + accept) of the first and the last 1,000 tokens of the first replay,
    and the growth of resident memory per token from token 1,000 to the last one reached."""
    series = [t for s in row.token_ns.values() for t in s]
    if not series or row.rss_start is None:
        return None
    samples = [(step, rss) for _, step, rss in row.rss]
    base = next(((s, b) for s, b in samples if s >= LONG_WINDOW), samples[0])
    end = samples[-1]
    return {"tokens": len(series), "first_us": us_stats(series[:LONG_WINDOW]), "last_us": us_stats(series[-LONG_WINDOW:]),
            "rss_mb": (end[1] - row.rss_start) / 2**20,
            "kb_per_token": (end[1] - base[1]) / 1024 / (end[0] - base[0]) if end[0] > base[0] else None}


LONG_HEADER = ["tokenizer", "grammar", "engine", "tokens", "first 1k p50 us", "p99", "max", "last 1k p50 us", "p99",
               "max", "RSS +MB", "KB/token after 1k"]


def long_table(rows: list[Row], args: argparse.Namespace) -> str:
    body = []
    for r in rows:
        stats = long_stats(r) if entries()[r.grammar].long else None
        if stats is None:
            continue
        reached = f"{stats['tokens']:,}" + (f" ({_over(args)})" if r.over_budget else "")
        body.append([r.tokenizer, r.grammar, r.engine, reached, *stats["first_us"], *stats["last_us"],
                     f"{stats['rss_mb']:.1f}",
                     "" if stats["kb_per_token"] is None else f"{stats['kb_per_token']:.2f}"])
    return render_table(LONG_HEADER, body, range(3, len(LONG_HEADER)), args.markdown) if body else ""


def to_json(rows: list[Row], conversions: dict[str, Any], notes: list[str], args: argparse.Namespace) -> dict:
    """Every number of the tables, per row (times in ms and µs; the first differences' ids)."""
    out = []
    for r in rows:
        us = np.asarray(r.times_ns, dtype=np.float64) / 1e3
        warm = np.asarray(r.warm_ns, dtype=np.float64) / 1e3
        out.append({
            "tokenizer": r.tokenizer, "grammar": r.grammar, "engine": r.engine, "input": r.form,
            "compile_ms": r.compile_ms, "first_mask_ms": r.first_mask_ms, "masks": len(r.times_ns),
            "planned_masks": r.planned_steps,
            "mask_us": dict(zip(("p50", "p99", "max"), map(float, (*np.percentile(us, [50, 99]), us.max()))))
            if len(us) else None,
            "warm_mask_us": dict(zip(("p50", "p99", "max"), map(float, (*np.percentile(warm, [50, 99]), warm.max()))))
            if len(warm) else None,
            "accept_ms_per_replay": sum(r.accept_ns) / 1e6 / args.repeat if r.accept_ns else None,
            "rss_growth_mb": _rss_mb(r), "steps_compared": r.steps_compared, "steps_differing": len(r.differences),
            "first_differences": [{"document": d.document, "step": d.step, "after": d.prefix.decode("utf-8", "replace"),
                                   "only_engine": d.only_engine[:20].tolist(), "only_gad": d.only_gad[:20].tolist()}
                                  for d in r.differences[:5]],
            "rejected": r.rejected, "error": r.error, "over_budget": r.over_budget, "agreement": _agreement(r, args),
            "long": long_stats(r) if entries()[r.grammar].long else None,
        })
    return {"command": " ".join(sys.argv), "notes": notes, "clock": args.clock, "budget_s": args.budget,
            "repeat": args.repeat, "tokenizer_conversion_ms": conversions, "rows": out}


def main(argv: list[str] | None = None) -> None:
    names = list(entries())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=split_list, default=None,
                        help="comma-separated: smollm2, llama3, gpt2, mistral (default smollm2,llama3)")
    parser.add_argument("--grammar", type=split_list, default=None,
                        help="comma-separated names (--list); default every grammar but the long generations")
    parser.add_argument("--long", action="store_true", help="also the 20,000-token generations (long-*)")
    parser.add_argument("--long-tokens", type=int, default=None, help="tokens of the long generations (20,000)")
    parser.add_argument("--engines", type=split_list, default=list(ENGINE_NAMES),
                        help="comma-separated: gad, xgrammar, llguidance (gad always runs: the reference)")
    parser.add_argument("--budget", type=float, default=None,
                        help="CPU seconds per (engine, grammar, tokenizer) measurement (default 60; --quick 2)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="replays per document: masks compared on the first; p50/p99/max over all replays, "
                             "and, with R > 1, 'warm' columns over the replays after the first (entries built)")
    parser.add_argument("--max-steps", type=int, default=None, help="at most N masks per document")
    parser.add_argument("--clock", choices=list(CLOCKS), default="process",
                        help="process CPU time (default), the calling thread's CPU time, or wall time")
    parser.add_argument("--gad-source", choices=["auto", "lark"], default="auto",
                        help="GBNF grammars: gad reads the .gbnf when gad.Grammar.from_gbnf exists (auto), "
                             "or always our Lark translation")
    parser.add_argument("--gad-eager", action="store_true",
                        help="GrammarCompiler.compile(..., eager=True), when gad has it (default: the library's default)")
    parser.add_argument("--quick", action="store_true",
                        help="development: smollm2 only, 8 masks per document, budget 2 s, no long documents")
    parser.add_argument("--markdown", action="store_true", help="print the tables in Markdown")
    parser.add_argument("--json", metavar="OUT", help="write every number to OUT (JSON)")
    parser.add_argument("--show", type=int, default=4, help="distinct disagreements shown per row (default 4)")
    parser.add_argument("--check-documents", action="store_true",
                        help="check with lark / jsonschema / sqlite3 that every document is in its grammar, and exit")
    parser.add_argument("--list", action="store_true", help="list the grammars and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.list:
        for name, e in entries().items():
            print(f"{name:16} {e.about}")
        return
    args.tokenizer = args.tokenizer or (["smollm2"] if args.quick else ["smollm2", "llama3"])
    args.grammar = args.grammar or [n for n, e in entries().items()
                                    if (not e.long or args.long) and (e.quick or not args.quick)]
    args.budget = args.budget or (2.0 if args.quick else 60.0)
    args.max_steps = args.max_steps or (8 if args.quick else None)
    for name in args.grammar:
        if name not in entries():
            parser.error(f"--grammar: unknown {name!r}; choose from {', '.join(names)}")
    if args.check_documents:
        failed = check_documents(args.grammar, print)
        sys.exit(1 if failed else 0)
    for name in args.tokenizer:
        if name not in MODEL_VOCAB_SIZE:
            parser.error(f"--tokenizer: unknown {name!r}; choose from {', '.join(MODEL_VOCAB_SIZE)}")
    for name in args.engines:
        if name not in ENGINE_NAMES:
            parser.error(f"--engines: unknown {name!r}; choose from {', '.join(ENGINE_NAMES)}")
    args.engines = ["gad", *[n for n in args.engines if n != "gad"]]
    if args.gad_eager and "eager" not in inspect.signature(gad.GrammarCompiler.compile).parameters:
        parser.error("--gad-eager: this gad's GrammarCompiler.compile has no `eager` argument")
    if args.repeat < 1 or (args.max_steps is not None and args.max_steps < 1) or args.budget <= 0:
        parser.error("--repeat and --max-steps have to be at least 1, --budget positive")

    torch.set_num_threads(1)
    log = (lambda _: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    rows, conversions, describers = run(args, log)

    versions = ", ".join(f"{d} {version(d)}" for d in ("gad", "xgrammar", "llguidance", "transformers", "torch"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    clock_words = {"process": "process CPU time (time.process_time_ns)", "thread": "thread CPU time",
                   "wall": "wall time (time.perf_counter_ns)"}[args.clock]
    notes = [
        f"{versions}; Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs "
        f"(load average {load:.1f}: a shared machine), one thread per engine",
        f"clock: {clock_words}; budget {args.budget:g} s of CPU time per measurement; each document replayed "
        f"{args.repeat}x, max steps {args.max_steps or 'all'}",
        "compile: grammar text -> compiled grammar (llguidance: grammar_from_* + the LLMatcher constructor); "
        "1st mask: compile + matcher + first mask; accept ms: accepting the whole document (per replay); "
        "RSS +MB: the worker's resident memory after the replay minus before compiling",
        "tokenizer conversion ms (not in compile): " + "; ".join(
            f"{t}: " + ", ".join(f"{f} {ms_cell(v) if isinstance(v, float) else v}" for f, v in c.items())
            for t, c in conversions.items()),
        "languages differ where noted: the peers' JSON Schema layouts allow any whitespace (gad at most 16 "
        "characters), llguidance lexes Lark terminals (longest match) where gad is scannerless; every "
        "difference is listed below",
        *(f"{name}: {entries()[name].notes[family]}" for name in args.grammar
          for family in entries()[name].lark_for if family in args.engines),
        "command: python " + " ".join(sys.argv),
    ]
    print("\n".join(("- " if args.markdown else "# ") + note for note in notes))
    print()
    print(table(rows, args))
    text = long_table(rows, args)
    if text:
        print(f"\nLong generations: time per token (mask + accept_token), first replay, {args.clock} clock\n")
        print(text)
    text = disagreements(rows, describers, args.show)
    if text:
        print("\nDisagreements with gad (+ ids only the engine allows, - ids only gad allows):")
        print(f"```{text}\n```" if args.markdown else text.lstrip("\n"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(to_json(rows, conversions, notes, args), f, indent=1)


if __name__ == "__main__":
    main()
