"""How much time per token the grammar adds to generation with SmolLM2-135M-Instruct (offline).

    python benchmarks/generation_overhead.py [--tokens 256] [--repeat 3] [--threads N] [--prompt P]
                                             [--clock wall|cpu] [--markdown]

Greedy decoding of one JSON prompt (a user message, through the chat template) with the same KV-cached loop
(`gad.lm.HuggingFaceLM`), three ways:

- ``unconstrained``: model forward + argmax, for exactly ``--tokens`` tokens (EOS ignored);
- ``constrained``: model forward + ``GrammarMatcher.next_token_mask()`` + masked argmax +
  ``accept_token``, until EOS or ``--tokens`` tokens, with ``grammars/json.lark``;
- and, for the whole-call view, ``model.generate`` with and without `GrammarLogitsProcessor`
  (greedy, the same prompt and token budget; time per generated token).

Every step is timed with ``time.perf_counter`` (``--clock wall``), or with the calling thread's
CPU time, ``time.thread_time`` (``--clock cpu``, with ``--threads 1`` so that torch computes on the
calling thread): on a shared machine the CPU clock is not inflated by other processes. The
grammar's share of a constrained step (mask and accept) is timed separately. The first replay of the constrained loop is reported apart
("first run"): it includes the grammar's first-time work (compiling, lazily filled caches).
Nothing is downloaded: the model comes from `gad.assets.load_default_model` (converted once and
cached in ``~/.cache/gad``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import gad
from gad.assets import load_default_model
from gad.generate import encode_prompt
from gad.lm import HuggingFaceLM
from gad.samplers import fit_mask

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Describe three fictional people as a JSON array of objects with name, age, city and a list of hobbies."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


CLOCK = time.perf_counter


def unconstrained(lm: HuggingFaceLM, prompt: list[int], tokens: int) -> list[float]:
    """ms per token of greedy decoding without a grammar."""
    lm.reset()
    generated: list[int] = []
    times = []
    for _ in range(tokens):
        start = CLOCK()
        logprobs = lm.next_token_logprobs([prompt + generated])
        generated.append(int(logprobs[0].argmax()))
        times.append(1000 * (CLOCK() - start))
    return times


def constrained(lm: HuggingFaceLM, compiled: gad.CompiledGrammar, prompt: list[int], tokens: int) -> tuple[list[float], list[float], str]:
    """(ms per token, ms of grammar work per token, text) of greedy decoding under the grammar."""
    lm.reset()
    matcher = gad.GrammarMatcher(compiled)
    eos = set(compiled.tokenizer_info.eos_token_ids)
    generated: list[int] = []
    step_ms, grammar_ms = [], []
    for _ in range(tokens):
        start = CLOCK()
        logprobs = lm.next_token_logprobs([prompt + generated])
        model_done = CLOCK()
        mask = fit_mask(matcher.next_token_mask(), logprobs.shape[-1])
        token = int(logprobs[0].masked_fill(~mask, float("-inf")).argmax())
        if not matcher.accept_token(token):
            raise gad.GadError(f"the grammar rejected token {token}, which its mask allowed")
        end = CLOCK()
        step_ms.append(1000 * (end - start))
        grammar_ms.append(1000 * (end - model_done))
        if token in eos:
            break
        generated.append(token)
    text = compiled.tokenizer_info.decode_bytes(generated).decode("utf-8", errors="replace")
    return step_ms, grammar_ms, text


def with_generate(model, prompt: list[int], tokens: int, processor) -> float:
    """ms per generated token of ``model.generate`` (greedy), with or without the processor."""
    input_ids = torch.tensor([prompt])
    kwargs = {"max_new_tokens": tokens, "do_sample": False, "pad_token_id": model.generation_config.eos_token_id}
    if processor is None:
        kwargs["min_new_tokens"] = tokens  # the same number of tokens as the constrained loop
    else:
        kwargs["logits_processor"] = [processor]
    start = CLOCK()
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    elapsed = CLOCK() - start
    return 1000 * elapsed / max(1, out.shape[1] - len(prompt))


def row(name: str, values: list[float]) -> tuple[str, str, str, str, str]:
    return (name, str(len(values)), f"{statistics.fmean(values):.1f}", f"{percentile(values, 50):.1f}", f"{percentile(values, 99):.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="token budget per run (default 256)")
    parser.add_argument("--prompt", default=PROMPT, help="the user message (default: three fictional people as JSON, 162 tokens)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each loop after the first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time, or this thread's CPU time (use with --threads 1)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.thread_time

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model, tokenizer = load_default_model()
    compiled = gad.compile_grammar(ROOT / "grammars" / "json.lark", tokenizer, model)
    prompt = encode_prompt(tokenizer, args.prompt)
    lm = HuggingFaceLM(model)

    first_steps, first_grammar, text = constrained(lm, compiled, prompt, args.tokens)
    steps_c, grammar_c, steps_u = [], [], []
    for _ in range(args.repeat):
        s, g, text = constrained(lm, compiled, prompt, args.tokens)
        steps_c += s
        grammar_c += g
        steps_u += unconstrained(lm, prompt, len(s))
    per_token_generate = [with_generate(model, prompt, len(first_steps), None) for _ in range(args.repeat)]
    per_token_processor = [with_generate(model, prompt, args.tokens, gad.GrammarLogitsProcessor(compiled)) for _ in range(args.repeat)]

    print(f"# SmolLM2-135M-Instruct, greedy, {len(first_steps)} tokens per run, {args.repeat} runs, "
          f"torch threads: {torch.get_num_threads()}, {args.clock} clock; constrained output: {text!r}")  # fmt: skip
    rows = [
        ("ms/token", "tokens", "mean", "p50", "p99"),
        row("unconstrained (model + argmax)", steps_u),
        row("constrained (model + mask + accept)", steps_c),
        row("  of which grammar (mask + accept)", grammar_c),
        row("constrained, first run", first_steps),
        row("  of which grammar, first run", first_grammar),
        row("model.generate (per-run averages)", per_token_generate),
        row("model.generate + GrammarLogitsProcessor (per-run averages)", per_token_processor),
    ]
    if args.markdown:
        print("| " + " | ".join(rows[0]) + " |")
        print("|" + "---|" * len(rows[0]))
        for r in rows[1:]:
            print("| " + " | ".join(r) + " |")
    else:
        width = max(len(r[0]) for r in rows)
        for r in rows:
            print(f"{r[0]:<{width}}  " + "  ".join(f"{c:>8}" for c in r[1:]))
    overhead = statistics.fmean(steps_c) - statistics.fmean(steps_u)
    print(f"# grammar overhead: {overhead:+.1f} ms/token on average "
          f"({100 * overhead / statistics.fmean(steps_u):+.0f}% of an unconstrained step); "
          f"grammar work p50 {percentile(grammar_c, 50):.2f} ms, p99 {percentile(grammar_c, 99):.2f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
