"""GBNF input (`gad.Grammar.from_gbnf`, `.gbnf` files) checked against independent oracles.

Oracles: for the regular llama.cpp sample grammars, a Python ``re`` written by hand from the GBNF;
for the others, a Lark translation written by hand and run by lark's own Earley parser
(``lexer="dynamic_complete"``, scannerless like GBNF); for the ASAp paper's SyGuS grammars (only
literals, rule names and ``|``), a token-level GBNF → Lark rewrite in this file, run by lark. Each
is checked on hand-picked valid and invalid strings and on random one-character edits of them.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import lark
import pytest

import gad
from gad.errors import GrammarError, UndefinedRuleError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
GBNF = DATA / "gbnf"
SYGUS = DATA / "gad-benchmark"

BYTES = gad.TokenizerInfo.from_vocab([b"<eos>"] + [bytes([b]) for b in range(256)], eos_token_id=0)


def _data(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data {path} is missing (see /work/shared/data/README.md)")
    return path


def accepts(compiled: gad.CompiledGrammar, text: str) -> bool:
    matcher = gad.GrammarMatcher(compiled)
    return matcher.accept_string(text) and matcher.is_accepting()


def edits(texts: list[str], alphabet: str, count: int, seed: int = 0) -> list[str]:
    """``count`` random one-character deletions, insertions and substitutions of ``texts``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        i = rng.randrange(len(text) + 1)
        kind = rng.randrange(3)
        c = rng.choice(alphabet)
        if kind == 0 and i < len(text):
            out.append(text[:i] + text[i + 1 :])
        elif kind == 1:
            out.append(text[:i] + c + text[i:])
        else:
            out.append(text[:i] + c + text[i + 1 :])
    return out


# --------------------------------------------------------------------------------------------
# llama.cpp's sample grammars

_MOVE = r"(?:(?:[a-h]x)?[a-h][1-8](?:=[NBKQR])?|[NBKQR][a-h]?[1-8]?x?[a-h][1-8]|O-O(?:-O)?)[+#]?"
_EN = r"""[a-zA-Z0-9!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"""
_JP = "[ぁ-ゟァ-ヿ、-〾一-鿿]"

REGULAR = {  # file: (hand-written re.fullmatch oracle, valid strings)
    "chess.gbnf": (rf"1\. {_MOVE} {_MOVE}\n(?:[1-9][0-9]?\. {_MOVE} {_MOVE}\n)+",
                   ["1. e4 e5\n2. Nf3 Nc6\n", "1. d4 d5\n2. c4 dxc4\n3. O-O-O Qxd8#\n", "1. e8=Q+ Ke7\n10. Rad1 b1=N\n"]),
    "english.gbnf": (rf"{_EN}+(?:[ \t\n]{_EN}+)*", ["Hello, world!", "a\tb\nc", "It's 10 o'clock."]),
    "japanese.gbnf": (rf"{_JP}+(?:[ \t\n]{_JP}+)*", ["こんにちは", "日本語 カタカナ、", "一\tぁ"]),
    "list.gbnf": (r"(?:- [^\r\n\x0b\x0c\x85\u2028\u2029]+\n)+", ["- a\n", "- milk\n- eggs é\n"]),
    "vllm-sql.gbnf": (r"SELECT(?:col_1|col_2)from(?:table_1|table_2)where(?:col_1|col_2)=(?:1|2)",
                      ["SELECTcol_1fromtable_2wherecol_2=1", "SELECTcol_2fromtable_1wherecol_1=2"]),
}  # fmt: skip

_JSON_LARK = r"""
start: {root}
value: object | array | string | number | ("true" | "false" | "null") ws
object: "{{" ws (string ":" ws value ("," ws string ":" ws value)*)? "}}" ws
array: "[" ws (value ("," ws value)*)? "]" ws
string: "\"" (/[^"\\\x7F\x00-\x1F]/ | "\\" (/["\\bfnrt]/ | "u" /[0-9a-fA-F]/~4))* "\"" ws
number: ("-"? (/[0-9]/ | /[1-9]/ /[0-9]/~0..15)) ("." /[0-9]/+)? (/[eE]/ /[-+]/? {exp}) ? ws
ws: | " " | "\n" /[ \t]/~0..20
arr: "[\n" ws (value (",\n" ws value)*)? "]"
"""

LARK_TRANSLATIONS = {  # file: (hand-written Lark translation, valid strings)
    "json.gbnf": (_JSON_LARK.format(root="object", exp='/[0-9]/ /[1-9]/~0..15'),
                  ['{}', '{"a": 1}', '{"a":[1, -2.5e+3, "x\\n", true, null, {}], "b\\u00e9": "é"}\n',
                   '{"n": 12345}', '{ "k" : false }']),
    "json_arr.gbnf": (_JSON_LARK.format(root="arr", exp='/[1-9]/ /[0-9]/~0..15'),
                      ['[\n]', '[\n1,\n"a"]', '[\n{"a": [1, 2]},\n null]']),
    "arithmetic.gbnf": ("start: (expr \"=\" ws term \"\\n\")+\nexpr: term (/[-+*\\/]/ term)*\n"
                        "term: ident | num | \"(\" ws expr \")\" ws\nident: /[a-z]/ /[a-z0-9_]/* ws\n"
                        "num: /[0-9]/+ ws\nws: /[ \\t\\n]/*\n",
                        ["x=1\n", "a1+(b_2*3)= 42\n", "(x)=y\nz=0\n"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def sample_grammars() -> dict[str, gad.CompiledGrammar]:
    compiler = gad.GrammarCompiler(BYTES)
    return {f: compiler.compile(gad.Grammar.from_file(_data(GBNF / f))) for f in [*REGULAR, *LARK_TRANSLATIONS]}


@pytest.mark.parametrize("name", sorted(REGULAR))
def test_regular_sample_grammars_agree_with_re(sample_grammars, name: str) -> None:
    pattern, valid = REGULAR[name]
    rx = re.compile(pattern)
    alphabet = "".join(sorted(set("".join(valid)))) + "x#.\n"
    for text in valid:
        assert rx.fullmatch(text), text  # the oracle itself agrees with the examples
    for text in valid + edits(valid, alphabet, 150):
        assert accepts(sample_grammars[name], text) == (rx.fullmatch(text) is not None), repr(text)


@pytest.mark.parametrize("name", sorted(LARK_TRANSLATIONS))
def test_sample_grammars_agree_with_lark_translations(sample_grammars, name: str) -> None:
    translation, valid = LARK_TRANSLATIONS[name]
    parser = lark.Lark(translation, parser="earley", lexer="dynamic_complete")
    alphabet = "".join(sorted(set("".join(valid)))) + '"\\\n e'
    verdicts = set()
    for text in valid + edits(valid, alphabet, 120):
        try:
            parser.parse(text)
            expected = True
        except lark.exceptions.LarkError:
            expected = False
        assert text not in valid or expected, text
        verdicts.add(expected)
        assert accepts(sample_grammars[name], text) == expected, repr(text)
    assert verdicts == {True, False}


@pytest.mark.parametrize(
    "text, expected",
    [("int main(){return 0;}", True), ("int main(){return 0}", False), ("intmain(){}", False),
     ("float f(int x){x = x*2;while(x<10){x = x+1;}}", True), ("int f(){x = x * 2;}", False), ("int f(){/* c */}", True),
     ("int f(){// c\n}", True), ("int f(){x=1}", False)],
)  # fmt: skip
def test_c_sample_grammar_on_hand_checked_programs(text: str, expected: bool) -> None:
    compiled = gad.GrammarCompiler(BYTES).compile(gad.Grammar.from_file(_data(GBNF / "c.gbnf")))
    assert accepts(compiled, text) == expected


# --------------------------------------------------------------------------------------------
# The ASAp paper's SyGuS grammars

_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|::=|\||[A-Za-z0-9_-]+|\S')


def sygus_to_lark(text: str) -> str:
    """The SyGuS GBNF subset (rules of literals, rule names and ``|``, one rule per line) in
    Lark: rule names prefixed with ``r_`` and lowercased (checked to stay distinct)."""
    names: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out = []
        for token in _TOKEN.findall(line):
            if token == "::=":
                out.append(":")
            elif token.startswith('"') or token == "|":
                out.append(token)
            else:
                assert re.fullmatch(r"[A-Za-z0-9_-]+", token), token
                names.setdefault(token, "r_" + token.lower().replace("-", "_"))
                out.append(names[token])
        lines.append(" ".join(out))
    assert len(set(names.values())) == len(names)
    return "start: r_root\n" + "\n".join(lines) + "\n"


def sygus_files(kind: str) -> list[Path]:
    return sorted(_data(SYGUS / "examples" / "sygus" / kind).glob("*.ebnf"))


@pytest.mark.parametrize("kind", ["SLIA", "bv4"])
def test_sygus_grammars_load_or_fail_with_a_location(kind: str) -> None:
    loaded = 0
    for path in sygus_files(kind):
        try:
            gad.Grammar.from_gbnf(path.read_text(), source=path.name)
            loaded += 1
        except GrammarError as exc:  # the malformed literals such as ""US CAN""
            assert exc.line is not None and exc.column is not None and path.name in str(exc)
            assert '""' in path.read_text().splitlines()[exc.line - 1]
    assert loaded >= {"SLIA": 100, "bv4": 160}[kind]


@pytest.mark.parametrize("kind", ["SLIA", "bv4"])
def test_sygus_solutions_get_lark_verdicts(kind: str) -> None:
    """Every correct solution of the paper (and two edits of each) gets the verdict lark gives
    on the Lark rewrite of the same grammar. Many solutions are outside their grammar (SLIA's
    use ``let`` or other argument names), so both verdicts occur."""
    compiler = gad.GrammarCompiler(BYTES)
    accepted = checked = 0
    for path in sygus_files(kind):
        solution = SYGUS / "correct" / kind / path.stem
        text = path.read_text()
        if not solution.exists() or '""' in text:
            continue
        compiled = compiler.compile(gad.Grammar.from_gbnf(text))
        parser = lark.Lark(sygus_to_lark(text), parser="earley", lexer="dynamic_complete")
        answer = solution.read_text().strip()
        for document in [answer, *edits([answer], "() st", 2, seed=len(answer))]:
            try:
                parser.parse(document)
                expected = True
            except lark.exceptions.LarkError:
                expected = False
            assert accepts(compiled, document) == expected, (path.name, document)
            accepted += expected and document == answer
            checked += document == answer
    assert checked >= {"SLIA": 80, "bv4": 140}[kind] and accepted >= {"SLIA": 15, "bv4": 60}[kind]


# --------------------------------------------------------------------------------------------
# Syntax, ε, undefined rules, errors


@pytest.mark.parametrize(
    "grammar, accepted, rejected",
    [('root ::= "a"{2,3} "b"{2,}', ["aabb", "aaabbbb"], ["abb", "aaaabb", "aab"]),
     ('root ::= ("ab" | [x-z]){0,2} .', ["é", "abz\n", "xy."], ["", "abababa"]),
     ('root ::= [^a-c\\x5d] "\\u00e9\\U0001F600" [\\-\\]]', ["dé😀-", "dé😀]"], ["aé😀-", "]é😀-"]),
     ('root ::= a | ""\na ::= "x" # comment\n  ', ["", "x"], ["xx"]),
     ('root ::= (\n  "a"\n  | "b"\n)+ c\nc ::= [-]?', ["a", "ba-"], ["-", "c"]),
     ('root ::= x\nx ::= "(" x? ")"', ["()", "(())"], ["(()", ""]),
     ('root ::= [a]* ("b"?)*', ["", "aab", "bb"], ["ba"])],
)  # fmt: skip
def test_syntax_against_hand_checked_strings(grammar: str, accepted: list[str], rejected: list[str]) -> None:
    compiled = gad.GrammarCompiler(BYTES).compile(gad.Grammar.from_gbnf(grammar))
    for text in accepted:
        assert accepts(compiled, text), text
    for text in rejected:
        assert not accepts(compiled, text), text


def test_undefined_rules_are_refused_or_dropped_on_request() -> None:
    text = 'root ::= "a" | "b" missing\n'
    with pytest.raises(UndefinedRuleError) as info:
        gad.Grammar.from_gbnf(text, source="cp.gbnf")
    assert (info.value.line, info.value.column) == (1, 20) and "missing" in str(info.value)
    compiled = gad.GrammarCompiler(BYTES).compile(gad.Grammar.from_gbnf(text, undefined="empty"))
    assert accepts(compiled, "a") and not accepts(compiled, "b")
    with pytest.raises(UndefinedRuleError, match="no alternative left"):
        gad.Grammar.from_gbnf("root ::= x\nx ::= missing\n", undefined="empty")


def test_constituency_grammars_load_with_undefined_as_empty() -> None:
    paths = sorted(_data(SYGUS / "examples" / "nlp").rglob("*.ebnf"))[:5]
    assert paths
    for path in paths:
        with pytest.raises(UndefinedRuleError):
            gad.Grammar.from_gbnf(path.read_text(), source=path.name)
        assert gad.Grammar.from_gbnf(path.read_text(), undefined="empty").rules


@pytest.mark.parametrize(
    "text, position, words",
    [('root ::= "a\n', (1, 10), "unterminated string"),
     ("root ::= [ab\n", (1, 10), "unterminated character class"),
     ('root ::= "\\q"', (1, 11), "unknown escape \\q"),
     ('root ::= "\\xZ1"', (1, 11), "\\x needs 2 hex digits"),
     ("root ::= [z-a]", (1, 10), "reversed"),
     ('root ::= ("a"', (1, 10), "expecting ')'"),
     ('root ::= * "a"', (1, 10), "no item before it"),
     ('root ::= "a"{3,1}', (1, 13), "maximum below its minimum"),
     ('root = "a"', (1, 6), "expecting '::='"),
     ('root ::= "a" ) "b"', (1, 14), "expecting the end of the rule"),
     ('root ::= "a"\nroot ::= "b"', (2, 1), "defined twice"),
     ('start ::= "a"', None, "start rule 'root' is not defined"),
     ("root ::= " + "(" * 300 + '"a"' + ")" * 300, (1, 210), "nested more than 200")],
)  # fmt: skip
def test_malformed_gbnf_is_located(text: str, position: tuple[int, int] | None, words: str) -> None:
    with pytest.raises(GrammarError) as info:
        gad.Grammar.from_gbnf(text, source="bad.gbnf")
    assert words in str(info.value) and "bad.gbnf" in str(info.value)
    if position is not None:
        assert (info.value.line, info.value.column) == position


def test_gbnf_files_load_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "g.gbnf"
    path.write_text('root ::= "a" b\nb ::= [0-9]+\n')
    grammar = gad.Grammar.from_file(path)
    assert grammar.start == "root"
    assert accepts(gad.GrammarCompiler(BYTES).compile(grammar), "a12")
    with pytest.raises(GrammarError, match="g.gbnf:1:"):
        path.write_text('root ::= "a\n')
        gad.Grammar.from_file(path)


def test_cli_checks_documents_against_a_gbnf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gad.cli import main

    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("x=1\n")
    bad.write_text("x=1")
    grammar = str(_data(GBNF / "arithmetic.gbnf"))
    assert main(["check", "--grammar", grammar, str(good)]) == 0
    assert main(["check", "--grammar", grammar, str(bad)]) == 1
    capsys.readouterr()
