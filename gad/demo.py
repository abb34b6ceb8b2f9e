"""`python -m gad.demo`: grammar-constrained JSON from the embedded SmolLM2-135M-Instruct, offline.

A deliberately small greedy decoding loop (the `gad` command and the `LogitsProcessor` adapter
come later): at each step the model's logits are masked with `GrammarMatcher.next_token_mask()`,
the best allowed token is taken, and the matcher advances. The output is checked with `json.loads`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import gad
from gad.assets import load_default_model

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
PROMPT = "Give a short JSON object describing a fictional person, with the keys name, age and city."


def constrained_greedy(model, tokenizer, matcher: gad.GrammarMatcher, prompt: str, max_new_tokens: int):
    """Greedy decoding under the grammar mask; returns (generated token ids, complete?)."""
    messages = [{"role": "user", "content": prompt}]
    input_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(input_ids, torch.Tensor):  # transformers 5 may return a BatchEncoding
        input_ids = input_ids["input_ids"]
    eos = matcher.compiled.tokenizer_info.eos_token_ids
    generated: list[int] = []
    past = None
    next_input = input_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            out = model(input_ids=next_input, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1]
            mask = matcher.next_token_mask()
            logits = logits[: mask.shape[0]].masked_fill(~mask[: logits.shape[0]], float("-inf"))
            token = int(torch.argmax(logits))
            if not matcher.accept_token(token):
                raise gad.GadError(f"internal error: masked token {token} was rejected")
            if token in eos:
                return generated, True
            generated.append(token)
            next_input = torch.tensor([[token]])
    return generated, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grammar", default=str(GRAMMARS / "json.lark"))
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model, tokenizer = load_default_model()
    info = gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    compiled = gad.GrammarCompiler(info).compile(gad.Grammar.from_file(args.grammar))
    print(f"# model and grammar ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    started = time.perf_counter()
    matcher = gad.GrammarMatcher(compiled)
    tokens, complete = constrained_greedy(model, tokenizer, matcher, args.prompt, args.max_new_tokens)
    elapsed = time.perf_counter() - started
    text = tokenizer.decode(tokens)
    print(text)
    print(
        f"# {len(tokens)} tokens in {elapsed:.1f} s; "
        + ("complete sentence of the grammar" if complete else "stopped at --max-new-tokens (incomplete)"),
        file=sys.stderr,
    )
    if complete and Path(args.grammar).name == "json.lark":
        json.loads(text)
        print("# json.loads: ok", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
