"""The `gad` command: generate (tiny model folder, and the default SmolLM2), check, compile, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    monkeypatch.setattr(sys, "stdin", type("S", (), {"buffer": type("B", (), {"read": lambda self: b"1+2\n"})()})())
    status, out, _ = run(capsys, "check", "--grammar", ARITHMETIC_LARK, "-")
    assert status == 1 and out.startswith("<stdin>:1:4: error: byte 3 ('\\n')") and "final newline" in out


def test_check_missing_file(capsys) -> None:
    status, out, err = run(capsys, "check", "--grammar", JSON_LARK, "no-such-file.json")
    assert status == 2 and err.startswith("gad: error: no-such-file.json: cannot read")


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
