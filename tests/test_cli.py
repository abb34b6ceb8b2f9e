"""The `gad` command: generate (tiny model folder, and the default SmolLM2), check, compile, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import lark
import pytest

from gad.cli import main
from gad.lm_testing import random_hf_model
from gad.tokenizer import _gpt2_bytes_to_unicode

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
JSON_LARK = str(GRAMMARS / "json.lark")
ARITHMETIC_LARK = str(GRAMMARS / "arithmetic.lark")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a byte-level BPE tokenizer (256 bytes + <|endoftext|>) and a tiny random Llama."""
    from transformers import GPT2Tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    table = _gpt2_bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    vocab["<|endoftext|>"] = 256
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    GPT2Tokenizer.from_pretrained(folder).save_pretrained(folder)
    model = random_hf_model(257, seed=0)
    model.generation_config.eos_token_id = 256
    model.save_pretrained(folder)
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- gad generate ---------------------------------------------------------------------------------


def test_generate_json_lines(capsys, tiny_model_dir: Path) -> None:
    status, out, err = run(
        capsys, "generate", "--grammar", ARITHMETIC_LARK, "--prompt", "1+1=", "--model", str(tiny_model_dir),
        "-n", "3", "--max-new-tokens", "12", "--seed", "4", "--json",
    )  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert {"text", "complete", "finish_reason", "token_ids", "logprob_model", "logprob_sampler"} <= set(lines[0])
    for sample in lines:
        assert sample["complete"] == (sample["finish_reason"] == "eos")
        if sample["complete"]:
            assert sample["token_ids"][-1] == 256
    assert status == (0 if all(s["complete"] for s in lines) else 1)
    assert "3 sample(s)" in err and "Traceback" not in err
    # The same seed gives the same samples; sample i uses seed + i.
    again = [json.loads(line) for line in run(capsys, "generate", "--grammar", ARITHMETIC_LARK, "--prompt", "1+1=",
             "--model", str(tiny_model_dir), "--max-new-tokens", "12", "--seed", "5", "--json", "-q")[1].splitlines()]  # fmt: skip
    assert [(s["text"], s["token_ids"]) for s in again] == [(s["text"], s["token_ids"]) for s in lines[1:2]]
    assert again[0]["logprob_model"] == pytest.approx(lines[1]["logprob_model"], abs=1e-4)


def test_generate_text_output(capsys, tiny_model_dir: Path) -> None:
    status, out, err = run(
        capsys, "generate", "--grammar", ARITHMETIC_LARK, "--prompt", "Sum:", "--model", str(tiny_model_dir),
        "--greedy", "--max-new-tokens", "6",
    )  # fmt: skip
    assert out.endswith("\n") and len(out.splitlines()) >= 1
    assert "greedy" in err and ("complete" in err)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grammar", "missing.lark"], "gad: error: --grammar missing.lark: no such file"),
        (["--model", "no/such-model"], "gad never downloads models"),
        (["--temperature", "0"], "gad: error: `temperature` has to be a strictly positive float, but is 0.0"),
    ],
)
def test_generate_errors_are_one_line(capsys, tiny_model_dir: Path, argv: list[str], message: str) -> None:
    base = {"--grammar": ARITHMETIC_LARK, "--prompt": "x", "--model": str(tiny_model_dir)}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    status, out, err = run(capsys, "generate", *[item for pair in base.items() for item in pair])
    assert status == 2 and out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_grammar_points_at_the_line(capsys, tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "bad.lark"
    bad.write_text('start: foo "a"\n')
    status, out, err = run(capsys, "generate", "--grammar", str(bad), "--prompt", "x", "--model", str(tiny_model_dir))
    assert status == 2
    first, *context = err.rstrip("\n").splitlines()
    assert first.startswith(f"gad: error: {bad}:1:") and "foo" in first
    assert context == ['    start: foo "a"', "           ^"]


def test_generate_with_the_default_model(capsys, tmp_path: Path) -> None:
    """No --model: SmolLM2-135M-Instruct from the offline package (cached after the first run)."""
    grammar = tmp_path / "answer.lark"
    grammar.write_text('start: ("Yes" | "No") ", " /[a-z ]+/ "."\n')
    status, out, err = run(capsys, "generate", "--grammar", str(grammar), "--prompt", "Can fish fly?", "--greedy", "--max-new-tokens", "16")
    assert status == 0, err
    assert out == "No, fish cannot fly.\n"
    assert "SmolLM2-135M-Instruct" in err and "1/1 complete" in err


# -- gad check ------------------------------------------------------------------------------------


def test_check_ok(capsys, tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"a": [1, 2.5e3, "\\u00e9 ü"], "b": null}\n')
    status, out, _ = run(capsys, "check", "--grammar", JSON_LARK, str(doc))
    assert status == 0 and out.startswith(f"{doc}: ok")


def test_grammar_by_shipped_name(capsys, tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"a": [1, 2]}')
    status, out, _ = run(capsys, "check", "--grammar", "json", str(doc))
    assert status == 0 and out.startswith(f"{doc}: ok")
    doc.write_text("SELECT 'x', 'y'")
    status, out, _ = run(capsys, "check", "--grammar", "sql", str(doc))
    assert status == 0, out
    status, _, err = run(capsys, "check", "--grammar", "no-such-grammar", str(doc))
    assert status == 2 and "no-such-grammar" in err and "json" in err and "sql" in err


def test_check_reports_the_first_bad_byte(capsys, tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{\n  "é": [1, 2,],\n  "b": 3\n}')
    status, out, _ = run(capsys, "check", "--grammar", JSON_LARK, str(doc))
    assert status == 1
    lines = out.splitlines()
    # "]" at line 2, column 14 (characters; "é" is two bytes), byte offset 16.
    assert lines[0].startswith(f"{doc}:2:14: error: byte 16 (']')"), lines[0]
    assert "expected one of" in lines[0] and "'\"'" in lines[0]
    assert lines[1:] == ['      "é": [1, 2,],', "                 ^"]


def test_check_incomplete_and_stdin(capsys, tmp_path: Path, monkeypatch) -> None:
    doc = tmp_path / "expr.txt"
    doc.write_text("1 + (2 *")
    status, out, _ = run(capsys, "check", "--grammar", ARITHMETIC_LARK, str(doc))
    assert status == 1 and "incomplete" in out and "'('" in out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1+2*\n")))
    status, out, _ = run(capsys, "check", "--grammar", ARITHMETIC_LARK, "-")
    assert status == 1 and out.startswith("<stdin> (without its final newline): incomplete")


def test_check_missing_file(capsys) -> None:
    status, out, err = run(capsys, "check", "--grammar", JSON_LARK, "no-such-file.json")
    assert status == 2 and err == "gad: error: no-such-file.json: no such file\n"


# -- gad compile ----------------------------------------------------------------------------------


def test_compile_report(capsys) -> None:
    status, out, _ = run(capsys, "compile", "--grammar", JSON_LARK, "--tokenizer", "gpt2")
    assert status == 0
    assert "50,257 tokens" in out and "compile" in out and "first mask" in out
    status, out, _ = run(capsys, "compile", "--grammar", JSON_LARK, "--tokenizer", "gpt2", "--json")
    report = json.loads(out)
    assert report["vocab_size"] == 50257 and report["terminals"] >= 3 and report["compile_ms"] >= 0
    status, _, err = run(capsys, "compile", "--grammar", JSON_LARK, "--tokenizer", "no-such-tokenizer")
    assert status == 2 and "not one of the offline tokenizers" in err


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--prompt", "x"])
    assert exc.value.code == 2
    assert "gad: error: one of the arguments --grammar --json-schema is required" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gad.cli", "check", "--grammar", ARITHMETIC_LARK, "-"],
        input=b"(1+2)*3", capture_output=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("<stdin>: ok")


def test_generate_with_a_json_schema(capsys, tmp_path: Path, tiny_model_dir: Path) -> None:
    """Every sample of `gad generate --json-schema` that completes is valid under the schema."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}},
              "required": ["ok", "n"], "additionalProperties": False}  # fmt: skip
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    status, out, _ = run(
        capsys, "generate", "--json-schema", str(path), "--prompt", "x", "--model", str(tiny_model_dir),
        "-n", "4", "--max-new-tokens", "200", "--json", "-q",
    )  # fmt: skip
    results = [json.loads(line) for line in out.splitlines()]
    complete = [r for r in results if r["complete"]]
    assert len(results) == 4 and complete
    for result in complete:
        assert jsonschema_valid(json.loads(result["text"]), schema)


def test_check_and_compile_with_a_json_schema(tmp_path, capsys):
    schema = tmp_path / "point.json"
    schema.write_text(json.dumps({
        "type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
        "required": ["x", "y"], "additionalProperties": False,
    }))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"x": 1, "y": -2}')
    bad.write_text('{"x": 1, "z": 2}')
    assert main(["check", "--json-schema", str(schema), str(good)]) == 0
    assert main(["check", "--json-schema", str(schema), str(bad)]) == 1
    assert "ok" in capsys.readouterr().out
    assert main(["compile", "--json-schema", str(schema), "--tokenizer", "gpt2", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["grammar"] == str(schema)


def test_json_schema_and_grammar_are_exclusive_and_files_must_exist(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["check", "--json-schema", "a.json", "--grammar", "b.lark", "f"])
    assert main(["check", "--json-schema", str(tmp_path / "missing.json"), "f"]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["check", "--json-schema", str(broken), "f"]) == 2
    assert "not a JSON file" in capsys.readouterr().err


def jsonschema_valid(document, schema) -> bool:
    import jsonschema

    jsonschema.validate(document, schema)
    return True


# -- issue 19/21: options, caching, streaming, bounded input ---------------------------------------


def test_help_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from gad.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--greedy", "--sampler", "asap"], "`greedy` has no meaning for sampler 'asap'"),
        (["--sampler", "beam"], "`sampler` has to be one of 'gcd'"),
        (["--seed", str(2**64)], "`seed` has to be None or an int in [0, 2**63)"),
        (["--top-k", "3", "--sampler", "smc"], "`top_k` is a GCD option"),
        (["--top-p", "1.5"], "`top_p` has to be None or a float in (0, 1]"),
        (["--stream", "-n", "2"], "--stream shows one GCD sample"),
        (["--system", "Be brief.", "--no-chat-template"], "--system needs the chat template"),
        (["--whitespace", "2"], "--whitespace applies to --json-schema only"),
    ],
)
def test_options_are_checked_before_the_model_loads(capsys, monkeypatch, argv: list[str], message: str) -> None:
    import gad.cli

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(gad.cli, "_load_model", no_model)
    status, out, err = run(capsys, "generate", "--grammar", ARITHMETIC_LARK, "--prompt", "x", *argv)
    assert status == 2 and out == ""
    assert err.startswith("gad: error: ") and message in err and len(err.splitlines()) == 1


def test_the_second_run_compiles_nothing(capsys, monkeypatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    import gad.compiler

    monkeypatch.setenv("GAD_CACHE_DIR", str(tmp_path))
    argv = ["generate", "--grammar", JSON_LARK, "--prompt", "x", "--model", str(tiny_model_dir),
            "-n", "2", "--max-new-tokens", "10", "--seed", "3", "--json"]  # fmt: skip
    first = run(capsys, *argv)
    assert len(list((tmp_path / "grammars").glob("*.npz"))) == 1

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(gad.compiler.GrammarCompiler, "compile", no_compile)
    second = run(capsys, *argv)
    assert second[1] == first[1] and second[0] == first[0]
    assert "compiled grammar from the cache" in second[2]
    with pytest.raises(AssertionError, match="compiled again"):
        main([*argv, "--no-cache"])


def test_stream_prints_what_generate_prints(capsys, tiny_model_dir: Path) -> None:
    argv = ["generate", "--grammar", ARITHMETIC_LARK, "--prompt", "1+", "--model", str(tiny_model_dir),
            "--max-new-tokens", "12", "--seed", "7", "-q", "--no-cache"]  # fmt: skip
    plain = run(capsys, *argv)
    streamed = run(capsys, *argv, "--stream")
    assert streamed[:2] == plain[:2]
    status, out, _ = run(capsys, *argv, "--jump-forward", "--top-k", "200", "--json", "-n", "3")
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 3 and status == (0 if all(r["complete"] for r in results) else 1)
    grammar = lark.Lark(Path(ARITHMETIC_LARK).read_text(), parser="earley", lexer="dynamic_complete")
    for r in results:
        if r["complete"]:
            grammar.parse(r["text"])
    # The tiny tokenizer has no chat template, so a system prompt cannot be placed.
    status, out, err = run(capsys, *argv, "--system", "You add.")
    assert status == 2 and "no chat template" in err


def test_schema_options(capsys, tmp_path: Path, tiny_model_dir: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "array", "items": {"enum": [1, 2]}, "maxItems": 3, "uniqueItems": True}))
    base = ["--json-schema", str(schema), "--prompt", "x", "--model", str(tiny_model_dir), "-q", "--no-cache",
            "--max-new-tokens", "40", "-n", "4", "--json"]  # fmt: skip
    status, _, err = run(capsys, "generate", *base)
    assert status == 2 and "uniqueItems" in err
    status, out, err = run(capsys, "generate", *base, "--lenient", "--whitespace", "compact")
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 4
    for r in results:
        if r["complete"]:
            document = json.loads(r["text"])
            assert isinstance(document, list) and set(document) <= {1, 2} and len(document) <= 3
            assert r["text"] == json.dumps(document, separators=(",", ":"))
    infinite = tmp_path / "inf.json"
    infinite.write_text('{"type": "number", "maximum": Infinity}')
    status, _, err = run(capsys, "check", "--json-schema", str(infinite), str(schema))
    assert status == 2 and "Infinity is not JSON" in err


def test_check_ignores_one_final_newline(capsys, tmp_path: Path) -> None:
    doc = tmp_path / "expr.txt"
    doc.write_text("1+2\n")
    status, out, _ = run(capsys, "check", "--grammar", ARITHMETIC_LARK, str(doc))
    assert status == 0 and out.startswith(f"{doc} (without its final newline): ok")
    doc.write_text("1+2\n\n")
    status, out, _ = run(capsys, "check", "--grammar", ARITHMETIC_LARK, str(doc))
    assert status == 1 and out.startswith(f"{doc}:1:4: error: byte 3")


def test_input_is_bounded_and_validated(capsys, monkeypatch, tmp_path: Path) -> None:
    import os

    import gad.cli

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in [(str(fifo), "a FIFO"), ("/dev/zero", "a device"), (str(tmp_path), "a folder")]:
        status, _, err = run(capsys, "check", "--grammar", ARITHMETIC_LARK, path)
        assert status == 2 and f"not a regular file ({kind}" in err
        status, _, err = run(capsys, "check", "--grammar", path, ARITHMETIC_LARK)
        assert status == 2 and f"--grammar {path}: not a regular file" in err
    monkeypatch.setattr(gad.cli, "MAX_INPUT_BYTES", 10)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1" * 11)))
    status, _, err = run(capsys, "check", "--grammar", ARITHMETIC_LARK, "-")
    assert status == 2 and "more than" in err
    monkeypatch.setattr(gad.cli, "MAX_INPUT_BYTES", 2**20)
    monkeypatch.setattr(gad.cli, "_load_model", lambda *a: (_ for _ in ()).throw(AssertionError("loaded")))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok \xff\xfe")))
    status, _, err = run(capsys, "generate", "--grammar", ARITHMETIC_LARK, "--prompt", "-")
    assert status == 2 and err == "gad: error: --prompt - (stdin): not UTF-8 text (byte 3 is 0xFF)\n"


# -- the sampler registry ------------------------------------------------------------------------


def test_generate_help_lists_every_registered_sampler(capsys) -> None:
    from gad.samplers import SAMPLERS

    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    assert info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert {"cars", "mcmc"} <= set(SAMPLERS)
    for name, cls in SAMPLERS.items():
        assert f"{name} ({cls.guarantee}): {' '.join(cls.summary.split())}" in help_text, name
    assert f"one of {', '.join(SAMPLERS)} (default gcd)" in help_text


@pytest.mark.parametrize("sampler", ["cars", "mcmc"])
def test_generate_with_cars_and_mcmc(capsys, tmp_path: Path, tiny_model_dir: Path, sampler: str) -> None:
    """The registry's newer samplers run end to end from the command line; every sample is a
    sentence of the grammar (checked with Python's re)."""
    import re

    grammar = tmp_path / "ab.lark"
    grammar.write_text('start: /[ab]{1,3}/\n')
    status, out, err = run(
        capsys, "generate", "--grammar", str(grammar), "--prompt", "x", "--model", str(tiny_model_dir),
        "--sampler", sampler, "-n", "4", "--max-new-tokens", "5", "--seed", "3", "--json", "--no-cache",
    )  # fmt: skip
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    for sample in lines:
        assert sample["complete"] and sample["finish_reason"] == "eos"
        assert re.fullmatch(r"[ab]{1,3}", sample["text"]), sample
    assert f"{sampler}, temperature 1" in err
