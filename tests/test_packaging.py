"""gad as a user gets it: built as a wheel, installed (not editable) into a fresh virtual
environment outside the repository, its shipped grammars load by name and by the installed path.

Oracle: the installed package's own files (``gad.__file__`` must lie inside the new environment, so
nothing is read from the checkout) and the grammars' languages (a JSON document and a SQL query are
sentences, a broken one is not), checked through the installed ``gad`` command as well.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gad

REPO = Path(__file__).resolve().parents[1]


def test_names_and_resolution(tmp_path, monkeypatch):
    assert {"json", "sql", "arithmetic"} <= set(gad.grammars.names())
    assert gad.grammars.resolve("json") == gad.grammars.resolve("json.lark")
    assert gad.grammars.resolve("json").read_bytes() == (REPO / "grammars" / "json.lark").read_bytes()
    own = tmp_path / "json"  # an existing file wins over the shipped name
    own.write_text('start: "x"\n')
    monkeypatch.chdir(tmp_path)
    assert gad.grammars.resolve("json") == Path("json")
    info = gad.TokenizerInfo.from_vocab([b"x", b"<eos>"], eos_token_id=1)
    assert gad.GrammarMatcher(gad.GrammarCompiler(info).compile(gad.grammars.load("json"))).accept_string("x")
    with pytest.raises(gad.GrammarError, match=r"nope\.lark: no such grammar file.*shipped: .*json"):
        gad.grammars.load("nope.lark")
    with pytest.raises(gad.GrammarError, match="no such grammar file"):
        gad.grammars.load("sub/json")  # a path, not a name


INSTALLED_CHECK = """
import sys
from pathlib import Path
import gad
env = Path(sys.argv[1]).resolve()
assert env in Path(gad.__file__).resolve().parents, gad.__file__
assert Path(gad.grammars.resolve("sql")).resolve().is_relative_to(env)
info = gad.TokenizerInfo.from_vocab([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_id=256)
def accepts(grammar, text):
    m = gad.GrammarMatcher(gad.GrammarCompiler(info).compile(grammar))
    return m.accept_string(text) and m.is_accepting()
assert accepts(gad.grammars.load("json"), '{"a": [1, 2.5e3, "x"]}')
assert not accepts(gad.grammars.load("json"), '{"a": }')
assert accepts(gad.sql.sql_grammar(), "SELECT name FROM singer WHERE age > 3")
print(gad.grammars.resolve("json"))
"""


@pytest.mark.slow
def test_wheel_installs_with_its_grammars(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(REPO / "gad", source / "gad", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*cmd, cwd=tmp_path):
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "-w", str(tmp_path / "dist"), str(source))  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("gad-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    # The dependencies (torch, lark, ...) come from this interpreter's site-packages as plain path
    # entries: their .pth files (among them the editable install of the checkout) are not run.
    venv_site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    (venv_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel))

    check = tmp_path / "check.py"
    check.write_text(textwrap.dedent(INSTALLED_CHECK))
    json_path = run(str(python), str(check), str(venv)).strip()
    (tmp_path / "doc.json").write_text('{"name": "Ada", "tags": []}')
    assert "ok" in run(str(venv / "bin" / "gad"), "check", "--grammar", json_path, "doc.json")
    assert "ok" in run(str(venv / "bin" / "gad"), "check", "--grammar", "json", "doc.json")
