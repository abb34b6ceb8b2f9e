"""Replay real documents token by token through gad, xgrammar and llguidance; time every mask.

    python benchmarks/mask_bench.py [--tokenizer smollm2,llama3] [--grammar json,arithmetic]
                                    [--engines ...] [--documents ...] [--max-steps N]
                                    [--repeat R] [--markdown] [--show K]

For each tokenizer and grammar, every engine compiles the same grammar for the same tokenizer:
gad and llguidance read the ``grammars/*.lark`` file itself; xgrammar gets a hand-written EBNF
translation of it (below), its own Lark converter (``compile_lark``), and, for JSON, its builtin
JSON grammar as a separate row; transformers-cfg gets the same EBNF in its GBNF dialect. Then every
document is tokenized with the tokenizer's own encoder and replayed: before each token, and once
after the last, the engine computes its next-token mask — only that call is inside the
``time.perf_counter_ns`` timer — then the mask is converted to ``bool[vocab_size]`` and compared
with gad's at the same step, and the document token is accepted.

Output: one row per (tokenizer, grammar, engine) with the tokenizer conversion time, the grammar
compile time, the number of masks timed, mask time p50 / p99 / max in µs over all documents and
repeats, and whether the engine's masks equal gad's at every step; then every disagreement (the
text before the step, and the token ids and bytes only one side allows) and a count per kind.

Single thread everywhere: ``torch.set_num_threads(1)`` (gad's masks are Python + numpy + torch);
``GrammarCompiler(max_threads=1)`` for xgrammar (its matcher is single-threaded); the environment
variable ``RAYON_NUM_THREADS=1``, set before llguidance is imported, for llguidance's Rust thread
pool (a single ``LLMatcher`` computes its mask on the calling thread anyway).

What differs is printed, not hidden: each engine keeps its own semantics (see benchmarks/README.md
for the kinds of disagreement seen and their causes). A document gad rejects is not a sentence of
the grammar and is left out for every engine; a document a peer rejects stops that engine's replay.

Install the peers with ``pip install -e '.[bench]'`` (xgrammar 0.2.8, llguidance 1.9.1). On a
CPU-only machine ``pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
llguidance==1.9.1`` is enough (xgrammar's own requirements would add triton, unused on CPU).
transformers-cfg, the Python peer, is tried when installed (``pip install --no-deps
transformers-cfg==0.2.7 termcolor``); an engine that cannot run gets a row saying why instead of
stopping the run. Nothing is downloaded: tokenizers come from `gad.assets`, and the Hugging Face
Hub is switched to offline mode (transformers-cfg would otherwise fetch tokenizers by name).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (  # first: sets the one-thread, offline environment before any engine loads
    MODEL_VOCAB_SIZE,
    Difference,
    DoesNotRun,
    Engine,
    GadEngine,
    LLGuidanceEngine,
    Replay,
    Skip,
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gad  # noqa: E402
from gad.assets import load_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR_DIR = ROOT / "grammars"

# ---------------------------------------------------------------------------------------------
# Documents: text a model could plausibly emit, with the traps of the design notes (escapes, a
# `\"` inside a string, non-ASCII text split across tokens, a 4-byte emoji, exponents, -0, empty
# containers, CRLF and tab indentation, a trailing newline).

JSON_DOCUMENTS = {
    "pretty": (
        '{\n  "id": 1024,\n  "name": "Zo\\u00eb M\u00fcller",\n'
        '  "quote": "she said \\"hi\\" \\\\ bye\\/",\n  "email": "zoe@example.com",\n'
        '  "tags": ["admin", "dev\\tops", "\u6771\u4eac", "na\u00efve caf\u00e9 \U0001f680"],\n'
        '  "score": -12.5e-3,\n  "ratio": 0.0,\n  "active": true,\n  "manager": null,\n'
        '  "history": [],\n  "address": {"street": "1 Main St", "zip": "02139"}\n}'
    ),
    "compact": (
        '{"model":"smol","choices":[{"index":0,"message":{"role":"assistant",'
        '"content":"Hello, world!\\nLine 2"},"logprobs":null,"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21},'
        '"scores":[1E+2,-0,3.14159,2e10,[true,false],{}]}'
    ),
    "array": (
        '[\r\n\t{"sku": "A-1", "qty": 3, "price": 9.99},\r\n'
        '\t{"sku": "B-22", "qty": 0, "price": 120, "note": "fragile \\u2014 handle with care"}\r\n]\n'
    ),
}
ARITHMETIC_DOCUMENTS = {"expr": "12 * (3.5 - -4) / 7 + ((1 + 2) * 3 - 4 / 5) * 100"}
SQL_DOCUMENTS = {
    "join": (
        "SELECT u.name, COUNT(*) AS orders FROM users AS u JOIN orders AS o ON o.user_id = u.id "
        "WHERE u.age >= 18 AND u.city = 'Paris' GROUP BY u.name ORDER BY orders DESC LIMIT 10;"
    ),
    "filter": "SELECT id, email FROM customers WHERE name LIKE 'O''Brien%' OR id IN (1, 2, 3);",
}

# ---------------------------------------------------------------------------------------------
# The same grammars for the engines that do not read Lark. Each is a faithful translation of the
# .lark file: `%ignore WS` becomes an explicit `ws` between every two adjacent terminals and at
# both ends (exactly one `ws` per junction, so no whitespace ambiguity), terminals keep their
# regexes (escapes incl. \uXXXX, RFC 8259 numbers), rules keep their shape except where noted.

# grammars/json.lark in xgrammar's EBNF. STRING is written right-recursively, with the closing
# quote inside the recursion (as xgrammar's builtin JSON grammar does): the same language as
# `"\"" char* "\""`, but with that form xgrammar 0.2.8 finds no context-independent tokens inside
# strings and its masks there take ~25 ms instead of ~15 us (SmolLM2).
JSON_EBNF = r"""
root ::= ws value ws
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( pair ( "," ws pair )* )? "}"
pair ::= string ws ":" ws value ws
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string ::= "\"" chars
chars ::= "\"" | [^"\\\x00-\x1f] chars | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) chars
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [+-]? [0-9]+ )?
ws ::= [ \t\n\r]*
"""

# grammars/arithmetic.lark in xgrammar's EBNF (its Earley parser takes the left recursion).
ARITHMETIC_EBNF = r"""
root ::= ws expr ws
expr ::= expr ws "+" ws term | expr ws "-" ws term | term
term ::= term ws "*" ws factor | term ws "/" ws factor | factor
factor ::= "-" ws factor | atom
atom ::= number | "(" ws expr ws ")"
number ::= [0-9]+ ( "." [0-9]+ )?
ws ::= " "*
"""

# transformers-cfg's GBNF has no `{n}` and its stack-based recognizer loops on left recursion:
# the same languages, with the repetition spelled out and the recursion turned into iteration.
JSON_GBNF = JSON_EBNF.replace("[0-9a-fA-F]{4}", "[0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F]")
ARITHMETIC_GBNF = r"""
root ::= ws expr ws
expr ::= term ( ws [+-] ws term )*
term ::= factor ( ws [*/] ws factor )*
factor ::= "-" ws factor | atom
atom ::= number | "(" ws expr ws ")"
number ::= [0-9]+ ( "." [0-9]+ )?
ws ::= " "*
"""


@dataclass(frozen=True)
class GrammarSpec:
    name: str
    documents: dict[str, str]
    ebnf: str | None = None  # xgrammar's EBNF translation, when written
    gbnf: str | None = None  # transformers-cfg's, when written
    builtin_json: bool = False  # also run xgrammar's builtin JSON grammar

    @property
    def path(self) -> Path:
        return GRAMMAR_DIR / f"{self.name}.lark"

    @property
    def lark(self) -> str:
        return self.path.read_text(encoding="utf-8")


GRAMMARS = {
    "json": GrammarSpec("json", JSON_DOCUMENTS, JSON_EBNF, JSON_GBNF, builtin_json=True),
    "arithmetic": GrammarSpec("arithmetic", ARITHMETIC_DOCUMENTS, ARITHMETIC_EBNF, ARITHMETIC_GBNF),
    # No hand translation: xgrammar runs through its Lark converter only.
    "sql": GrammarSpec("sql", SQL_DOCUMENTS),
}


# ---------------------------------------------------------------------------------------------
# Engines (benchmarks/_common.py): `convert` a HF tokenizer once (timed: "tok ms"), `compile` a
# grammar for it (timed: "compile ms", defined here), and `start` a replay, which gives three
# callables — `fill()` computes the next mask (the only timed call), `read(out)` turns what it
# produced into bool[V], `accept(t)`.


class GadBench(GadEngine):
    def compile(self, tok: Any, spec: GrammarSpec) -> Any:
        return gad.GrammarCompiler(tok).compile(gad.Grammar.from_file(spec.path))


class XGrammarBench(XGrammarEngine):
    def __init__(self, source: str) -> None:
        self.source = source  # "ebnf" (our translation), "lark" (its converter), "builtin json"
        self.name = f"xgrammar ({source})"

    def compile(self, tok: Any, spec: GrammarSpec) -> Any:
        import xgrammar as xgr

        if self.source == "ebnf" and spec.ebnf is None:
            raise Skip
        if self.source == "builtin json" and not spec.builtin_json:
            raise Skip
        compiler = self.compiler(tok)
        if self.source == "ebnf":
            return compiler.compile_grammar(xgr.Grammar.from_ebnf(spec.ebnf))
        if self.source == "lark":
            return compiler.compile_lark(spec.lark)
        return compiler.compile_builtin_json_grammar()


def llguidance_lark(text: str) -> str:
    """The .lark text in llguidance's Lark dialect.

    Nothing to change for grammars/json.lark and grammars/arithmetic.lark: llguidance 1.9.1 takes
    rules, `?rule`, `-> alias`, `[...]`, string and regex terminals, terminals built from other
    terminals and `%ignore` as they are (it validates them with no warning). What differs is the
    meaning, not the syntax: llguidance lexes terminals (longest match, `%ignore` between lexemes)
    where gad is scannerless; on these grammars both give the same language.
    """
    return text


class LLGuidanceBench(LLGuidanceEngine):
    name = "llguidance (lark)"

    def compile(self, tok: Any, spec: GrammarSpec) -> Any:
        from llguidance import LLMatcher

        return self.matcher(tok, LLMatcher.grammar_from_lark(llguidance_lark(spec.lark)))


class TransformersCfgEngine(Engine):
    family = "transformers-cfg"
    name = "transformers-cfg"

    def convert(self, tokenizer: Any, vocab_size: int) -> Any:
        from transformers_cfg.tokenization.byte_trie import ByteTrie
        from transformers_cfg.tokenization.middle.TokenizerMiddleMapping import TokenizerMiddleMapping

        return (tokenizer, vocab_size, ByteTrie.from_tokenizer(tokenizer),
                TokenizerMiddleMapping.from_hf_tokenizer(tokenizer))

    def compile(self, tok: Any, spec: GrammarSpec) -> Any:
        from transformers_cfg.token_grammar_recognizer import IncrementalTokenRecognizer

        if spec.gbnf is None:
            raise DoesNotRun(f"no GBNF translation of {spec.name}.lark written")
        tokenizer, _, trie, mapping = tok
        return IncrementalTokenRecognizer(spec.gbnf, "root", tokenizer, trie=trie, homomorphism=mapping)

    def start(self, tok: Any, compiled: Any) -> Replay:
        size = tok[1]
        state = [compiled.string_recognizer.get_initial_parsing_state()]
        cpu = torch.device("cpu")

        def read(out: torch.Tensor) -> np.ndarray:
            mask = np.zeros(size, dtype=bool)
            n = min(size, out.shape[0])
            mask[:n] = out[:n].numpy()
            return mask

        def accept(token: int) -> bool:
            if not compiled.try_accept_token_id(token, state[0]):
                return False
            state[0] = compiled._update_state_with_token_id(token, state[0])
            return True

        return Replay(lambda: compiled.filter_vocab(state[0], cpu), read, accept)


def make_engines(names: list[str]) -> list[Engine]:
    engines: list[Engine] = []
    for name in sorted(names, key=lambda n: n != "gad"):  # gad first: it is the reference
        if name == "gad":
            engines.append(GadBench())
            # The packed-bitmask path, when the matcher has one.
            if hasattr(gad.GrammarMatcher, "fill_next_token_bitmask"):
                engines.append(GadBench(bitmask=True))
        elif name == "xgrammar":
            engines += [XGrammarBench("ebnf"), XGrammarBench("lark"), XGrammarBench("builtin json")]
        elif name == "llguidance":
            engines.append(LLGuidanceBench())
        elif name == "transformers-cfg":
            engines.append(TransformersCfgEngine())
    return engines


# ---------------------------------------------------------------------------------------------
# Replay and comparison.


@dataclass
class Row:
    tokenizer: str
    grammar: str
    engine: str
    tok_ms: float | None = None
    compile_ms: float | None = None
    times_ns: list[int] = field(default_factory=list)
    steps_compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "document step k token b'..'"
    error: str | None = None


class Reference(TokenDescriber):
    """gad's masks along each document (packed), and what is needed to describe a token."""

    def __init__(self, tokenizer: Any, info: gad.TokenizerInfo) -> None:
        super().__init__(tokenizer, info)
        self.masks: dict[str, list[np.ndarray]] = {}


def replay(engine: Engine, tok: Any, compiled: Any, name: str, tokens: list[int], steps: int,
           row: Row, reference: Reference, mode: str) -> None:
    """Replay `tokens`: a mask before each of the first `steps` tokens (step len(tokens): after
    the last one). `mode`: "record" gad's masks as the reference, "compare" with them, or "time".

    Long-lived objects (tokenizers, compiled grammars) are moved out of the collector's reach
    first (`gc.freeze`, as a serving process would do after loading its model), so that a full
    collection of them does not land inside some engine's mask call."""
    gc.collect()
    gc.freeze()
    run = engine.start(tok, compiled)
    fill, read, accept = run.fill, run.read, run.accept
    clock = time.perf_counter_ns
    masks = reference.masks.setdefault(name, []) if mode == "record" else None
    compare = mode == "compare"
    for step in range(steps):
        started = clock()
        out = fill()
        elapsed = clock() - started
        row.times_ns.append(elapsed)
        if masks is not None:  # gad's own first replay: record the reference masks
            masks.append(np.packbits(read(out), bitorder="little"))
        elif compare:
            mine = read(out)
            ref = np.unpackbits(reference.masks[name][step], bitorder="little", count=len(mine)).view(np.bool_)
            row.steps_compared += 1
            if not np.array_equal(mine, ref):
                prefix = b"".join(reference.info.token_bytes[t] for t in tokens[:step])
                row.differences.append(Difference(name, step, prefix, np.flatnonzero(mine & ~ref),
                                                  np.flatnonzero(ref & ~mine)))
        if step < len(tokens) and not accept(tokens[step]):
            row.rejected.append(f"{name} step {step} token {reference.describe(tokens[step])}")
            return


def _convert(engine: Engine, tokenizer: Any, vocab_size: int) -> tuple[Any, float] | str:
    """The engine's tokenizer object and the ms it took, or why there is none."""
    try:
        started = time.perf_counter()
        tok = engine.convert(tokenizer, vocab_size)
        return tok, (time.perf_counter() - started) * 1e3
    except Exception as exc:  # noqa: BLE001 - any failure of a peer is a table entry
        if engine.family == "gad":  # the reference itself: nothing to compare with
            raise
        if isinstance(exc, ImportError):
            return f"not installed ({exc.name or exc}): pip install -e '.[bench]'"
        return f"does not run: {reason(exc)}"


def _compile(engine: Engine, tok: Any, spec: GrammarSpec, row: Row) -> Any:
    """The compiled grammar (its time in `row`), or None with `row.error` set. Raises `Skip`."""
    try:
        started = time.perf_counter()
        compiled = engine.compile(tok, spec)
        row.compile_ms = (time.perf_counter() - started) * 1e3
        return compiled
    except (Skip, KeyboardInterrupt):
        raise
    except DoesNotRun as exc:
        row.error = f"does not run: {exc}"
    except Exception as exc:  # noqa: BLE001
        if engine.family == "gad":
            raise
        row.error = f"does not run: {reason(exc)}"
    return None


def run_tokenizer(tok_name: str, args: argparse.Namespace, engines: list[Engine], rows: list[Row],
                  log: Callable[[str], None]) -> Reference:
    """Every grammar and engine on one tokenizer; appends the rows; returns gad's `Reference`."""
    tokenizer = load_tokenizer(tok_name)
    vocab_size = args.vocab_size or MODEL_VOCAB_SIZE.get(tok_name, len(tokenizer))
    if vocab_size < len(tokenizer):
        raise SystemExit(f"--vocab-size {vocab_size} is smaller than the {tok_name} tokenizer ({len(tokenizer)} ids)")
    converted: dict[str, tuple[Any, float] | str] = {}  # family -> (tok, ms) or the error
    reference: Reference | None = None  # set by the "gad" engine, which make_engines puts first
    for grammar_name in args.grammar:
        spec = GRAMMARS[grammar_name]
        encoded = {f"{grammar_name}/{k}": tokenizer.encode(v, add_special_tokens=False)
                   for k, v in spec.documents.items()
                   if not args.documents or k in args.documents or f"{grammar_name}/{k}" in args.documents}
        log(f"{tok_name} ({vocab_size} ids), {grammar_name}: "
            + ", ".join(f"{k} {len(v)} tokens" for k, v in encoded.items()))
        for engine in engines:
            row = Row(tok_name, grammar_name, engine.name)
            if engine.family not in converted:
                converted[engine.family] = _convert(engine, tokenizer, vocab_size)
            entry = converted[engine.family]
            if isinstance(entry, str):
                row.error = entry
                rows.append(row)
                continue
            tok, row.tok_ms = entry
            if engine.name == "gad":
                reference = Reference(tokenizer, tok)
            if reference is None:  # cannot happen: make_engines puts gad first
                raise RuntimeError("gad has to run first: it is the reference")
            try:
                compiled = _compile(engine, tok, spec, row)
            except Skip:
                continue
            rows.append(row)
            if compiled is None:
                continue
            for doc_name, tokens in encoded.items():
                if engine.name != "gad" and doc_name not in reference.masks:
                    continue  # gad rejected it: not a sentence of the grammar
                steps = len(tokens) + 1 if args.max_steps is None else min(args.max_steps, len(tokens) + 1)
                log(f"  {engine.name}: {doc_name}, {steps} masks x {args.repeat}")
                for rep in range(args.repeat):
                    mode = "time" if rep else ("record" if engine.name == "gad" else "compare")
                    before = len(row.rejected)
                    try:
                        replay(engine, tok, compiled, doc_name, tokens, steps, row, reference, mode)
                    except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
                        row.rejected.append(f"{doc_name}: failed: {reason(exc)}")
                    if len(row.rejected) > before:
                        if engine.name == "gad":
                            reference.masks.pop(doc_name, None)
                            log(f"  ! gad rejects {doc_name}: not compared, no other engine runs it")
                        break
    return reference


# ---------------------------------------------------------------------------------------------
# Output.


def _agreement(row: Row) -> str:
    if row.error:
        return row.error
    if row.engine == "gad":
        return "(reference)"
    notes = []
    if row.steps_compared:
        n, of = len(row.differences), row.steps_compared
        notes.append(f"yes, {of} steps" if n == 0 else f"NO: {n}/{of} steps differ")
    if row.rejected:
        notes.append(f"rejects {len(row.rejected)} doc(s)")
    return "; ".join(notes) or "-"


HEADER = ["tokenizer", "grammar", "engine", "tok ms", "compile ms", "masks", "p50 us", "p99 us", "max us",
          "masks equal gad's"]


def table(rows: list[Row], markdown: bool) -> str:
    """The result table; the first three columns and the last are text, the others numbers."""
    body = [[r.tokenizer, r.grammar, r.engine, ms_cell(r.tok_ms), ms_cell(r.compile_ms),
             str(len(r.times_ns)) if r.times_ns else "", *us_stats(r.times_ns), _agreement(r)] for r in rows]
    return render_table(HEADER, body, range(3, len(HEADER) - 1), markdown)


ENGINE_NAMES = ("gad", "xgrammar", "llguidance", "transformers-cfg")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=split_list, default=["smollm2", "llama3"],
                        help="comma-separated: smollm2, llama3, gpt2, mistral (default smollm2,llama3)")
    default_grammars = ["json", "arithmetic"] + (["sql"] if GRAMMARS["sql"].path.is_file() else [])
    parser.add_argument("--grammar", type=split_list, default=default_grammars,
                        help=f"comma-separated, of {', '.join(GRAMMARS)} "
                             f"(default {','.join(default_grammars)}: sql when grammars/sql.lark exists)")
    parser.add_argument("--engines", type=split_list, default=list(ENGINE_NAMES),
                        help=f"comma-separated: {', '.join(ENGINE_NAMES)} (default all; gad always runs: "
                             "it is the reference the others are compared with)")
    parser.add_argument("--documents", type=split_list, default=[],
                        help="only these documents, e.g. pretty,expr or json/compact (default all)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="at most N masks per document (default: every token and the end)")
    parser.add_argument("--repeat", type=int, default=1, help="replay every document R times; "
                        "timings are over all replays, masks are compared on the first")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="mask length (default: the model's logits size, = the tokenizer's length)")
    parser.add_argument("--show", type=int, default=8,
                        help="distinct disagreements shown per row (default 8)")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    for name in args.grammar:
        if name not in GRAMMARS:
            parser.error(f"--grammar: unknown {name!r}; choose from {', '.join(GRAMMARS)}")
        if not GRAMMARS[name].path.is_file():
            parser.error(f"--grammar {name}: {GRAMMARS[name].path} does not exist")
    for name in args.tokenizer:
        if name not in MODEL_VOCAB_SIZE:
            parser.error(f"--tokenizer: unknown {name!r}; choose from {', '.join(MODEL_VOCAB_SIZE)}")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error("--max-steps has to be at least 1")
    if args.repeat < 1:
        parser.error("--repeat has to be at least 1")
    for name in args.engines:
        if name not in ENGINE_NAMES:
            parser.error(f"--engines: unknown {name!r}; choose from {', '.join(ENGINE_NAMES)}")
    if "gad" not in args.engines:
        args.engines.insert(0, "gad")  # the reference

    torch.set_num_threads(1)
    log = (lambda _: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    engines = make_engines(args.engines)
    rows: list[Row] = []
    references: dict[str, Reference] = {}
    for tok_name in args.tokenizer:
        references[tok_name] = run_tokenizer(tok_name, args, engines, rows, log)

    versions = ", ".join(f"{d} {version(d)}" for d in
                         ("gad", "xgrammar", "llguidance", "transformers-cfg", "transformers", "torch"))
    notes = [
        f"{versions}; Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        "one thread per engine",
        f"each document replayed {args.repeat}x, max steps {args.max_steps or 'all'}; mask time = the mask "
        "call only (not accept, not the conversion to bool)",
        "tok ms: tokenizer conversion, once per tokenizer and engine family; compile ms: grammar text -> "
        "compiled grammar, tokenizer not included (llguidance: the LLMatcher constructor)",
    ]
    print("\n".join(("- " if args.markdown else "# ") + note for note in notes))
    if args.markdown:
        print()
    print(table(rows, args.markdown))
    text = disagreements(rows, references, args.show)
    if text:
        print("\nDisagreements with gad (+ ids only the engine allows, - ids only gad allows):")
        print(f"```{text}\n```" if args.markdown else text.lstrip("\n"))


if __name__ == "__main__":
    main()
