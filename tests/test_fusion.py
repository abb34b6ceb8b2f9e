"""`gad.grammar.fusion`: regular rules fused into terminals keep the language and exact masks.

Oracles: brute-force masks (`gad.testing.check_masks`) on a vocabulary of multi-character tokens,
Python ``re`` for regular grammars, lark's parser for a grammar with a lazy terminal, and the
unfused grammar (itself checked against ``re`` and lark in tests/test_gbnf.py).
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import lark
import pytest

import gad
from gad.grammar.fusion import fuse_regular_rules
from gad.testing import check_masks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")

BYTES = gad.TokenizerInfo.from_vocab([b"<eos>"] + [bytes([b]) for b in range(256)], eos_token_id=0)


def accepts(compiled: gad.CompiledGrammar, text: str) -> bool:
    matcher = gad.GrammarMatcher(compiled)
    return matcher.accept_string(text) and matcher.is_accepting()


def vocabulary(alphabet: str, extra: list[str]) -> gad.TokenizerInfo:
    """Every character and pair of ``alphabet``, and ``extra``: tokens crossing rule ends."""
    tokens = {c for c in alphabet} | {a + b for a, b in itertools.product(alphabet, repeat=2)} | set(extra)
    return gad.TokenizerInfo.from_vocab([b"<eos>"] + sorted(t.encode() for t in tokens), eos_token_id=0)


def test_character_level_rules_become_terminals() -> None:
    grammar = gad.Grammar.from_gbnf('root ::= ident ("," ws ident)*\nident ::= [a-z] [a-z0-9_]*\nws ::= [ \\t]*\n')
    assert set(grammar.terminals) == {"root#fused"}  # the whole grammar is regular: one terminal
    assert [r.rhs for r in grammar.rules] == [("root#fused",)]
    compiled = gad.GrammarCompiler(BYTES).compile(grammar)
    rx = re.compile(r"[a-z][a-z0-9_]*(?:,[ \t]*[a-z][a-z0-9_]*)*")
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice("ab1_, \t") for _ in range(rng.randrange(8)))
        assert accepts(compiled, text) == (rx.fullmatch(text) is not None), repr(text)


@pytest.mark.parametrize(
    "text, fused_rules",
    [('root ::= s\ns ::= [a-z] s | ""\n', {"s"}),  # right recursion at the end
     ('root ::= s "."\ns ::= s [0-9] | [a-z]\n', {"s"}),  # left recursion
     ('root ::= s\ns ::= "a" s | s "b" | "c"\n', {"s"}),  # both ends: a* c b*
     ('root ::= x "!"\nx ::= "(" x ")" | ""\n', set()),  # self-embedding: not regular
     ('root ::= a\na ::= "x" b | ""\nb ::= "y" a\n', set())],  # mutual recursion: left alone
)  # fmt: skip
def test_which_rules_fuse(text: str, fused_rules: set[str]) -> None:
    fused = gad.Grammar.from_gbnf(text)
    plain = gad.Grammar.from_gbnf(text, fuse=False)
    assert plain.nonterminals - fused.nonterminals == fused_rules  # rules gone into terminals
    one, two = gad.GrammarCompiler(BYTES).compile(fused), gad.GrammarCompiler(BYTES).compile(plain)
    for n in range(7):
        for chars in itertools.product("abcxy().!09", repeat=min(n, 3)):
            s = "".join(chars) * (1 + n // 4)
            assert accepts(one, s) == accepts(two, s), s


def test_grammars_with_ignore_are_left_alone() -> None:
    grammar = gad.Grammar.from_lark('start: word+\nword: /[a-z]/ /[a-z]/*\n%ignore " "\n')
    assert fuse_regular_rules(grammar) is grammar


def test_lazy_lark_terminals_are_not_composed_by_their_regex() -> None:
    """ESCAPED_STRING's language is its re.match reading, not its regex's full matches: a rule
    using it must keep it as it is (lark rejects ``["a"b"]``)."""
    text = 'start: "[" ESCAPED_STRING "]"\n%import common.ESCAPED_STRING\n'
    fused = fuse_regular_rules(gad.Grammar.from_lark(text))
    assert "ESCAPED_STRING" in fused.terminals
    compiled = gad.GrammarCompiler(BYTES).compile(fused)
    parser = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    for document in ['["a"b"]', '["a"]', '["a\\"b"]', '[""]']:
        try:
            parser.parse(document)
            expected = True
        except lark.exceptions.LarkError:
            expected = False
        assert accepts(compiled, document) == expected, document


def test_a_rule_over_the_state_limit_stays_a_rule() -> None:
    text = 'root ::= x\nx ::= [ab]* "a" [ab] [ab] [ab] [ab] [ab] [ab]\n'
    assert "x" not in gad.Grammar.from_gbnf(text).nonterminals
    small = fuse_regular_rules(gad.Grammar.from_gbnf(text, fuse=False), max_states=20)
    assert "x" in small.nonterminals


@pytest.mark.parametrize(
    "name, document, extra",
    [("arithmetic.gbnf", "ab_1+(c*20)= x\n", ["ab_", "1+", "+(", "*20)", "= ", "x\n", "b_1"]),
     ("json.gbnf", '{"a": [1, -2.5e3, "x\\u00e9"], "b": null}', ['{"', '":', ' [', ', -', 'e3', '"]', 'null}']),
     ("chess.gbnf", "1. e4 e5\n2. Nf3 O-O\n", ["1. ", "e4 ", "5\n2", "Nf3", " O-O", "-O\n"])],
)  # fmt: skip
def test_fused_masks_are_exact(name: str, document: str, extra: list[str]) -> None:
    """Masks of fused GBNF grammars against brute force, along a document, with tokens that
    cross rule boundaries (where fusion changes what the masks precompute)."""
    path = DATA / "gbnf" / name
    if not path.exists():
        pytest.fail(f"test data {path} is missing (see /work/shared/data/README.md)")
    grammar = gad.Grammar.from_file(path)
    alphabet = "".join(sorted(set(document)))
    tokenizer = vocabulary(alphabet, extra)
    compiled = gad.GrammarCompiler(tokenizer).compile(grammar)
    matcher = gad.GrammarMatcher(compiled)
    ids = _greedy(tokenizer, document)
    assert check_masks(matcher, ids) == []
    walker = gad.GrammarMatcher(compiled)
    assert all(walker.accept_token(t) for t in ids) and walker.is_accepting()


def _greedy(tokenizer: gad.TokenizerInfo, text: str) -> list[int]:
    """Longest-first tokenization of ``text`` with ``tokenizer``'s vocabulary."""
    index = {t: i for i, t in enumerate(tokenizer.token_bytes)}
    data, ids, i = text.encode(), [], 0
    while i < len(data):
        for j in range(min(len(data), i + 8), i, -1):
            if data[i:j] in index:
                ids.append(index[data[i:j]])
                i = j
                break
        else:
            raise AssertionError(f"cannot tokenize {data[i:]!r}")
    return ids
