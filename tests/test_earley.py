"""The byte-level Earley recogniser against independent oracles, with no tokenizer involved.

Oracles: lark's own Earley parser (``lexer="dynamic_complete"``, the same scannerless language) on
complete strings, and, for random grammars, a from-scratch Bar-Hillel fixed point that decides
both "is w a sentence" and "is w a prefix of some sentence" exactly.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import lark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gad
from gad.errors import EmptyLanguageError
from gad.parser.earley import EarleyParser, EarleyTables

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def make_parser(grammar_text: str) -> EarleyParser:
    return EarleyParser(EarleyTables(gad.Grammar.from_lark(grammar_text)))


def recognizes(parser: EarleyParser, data: bytes) -> bool:
    state = parser.advance_bytes(parser.initial, data)
    return state is not None and parser.is_accepting(state)


def is_viable(parser: EarleyParser, data: bytes) -> bool:
    return parser.advance_bytes(parser.initial, data) is not None


@lru_cache(maxsize=None)
def lark_parser(grammar_text: str) -> lark.Lark:
    return lark.Lark(grammar_text, parser="earley", lexer="dynamic_complete")


def lark_accepts(grammar_text: str, text: str) -> bool:
    try:
        lark_parser(grammar_text).parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def all_strings(alphabet: str, max_length: int):
    for length in range(max_length + 1):
        for chars in itertools.product(alphabet, repeat=length):
            yield "".join(chars)


# grammar file, alphabet, max length of the exhaustive enumeration
EXHAUSTIVE = [
    ("arithmetic", "1+-*() ", 4),
    ("ambiguous", "1+*()-", 5),
    ("json", '[]{},:"1 e-.', 4),
]


@pytest.mark.parametrize("name, alphabet, max_length", EXHAUSTIVE)
def test_acceptance_equals_lark_on_all_short_strings(name, alphabet, max_length):
    text = (GRAMMARS / f"{name}.lark").read_text()
    parser = make_parser(text)
    mismatches = [
        s for s in all_strings(alphabet, max_length)
        if recognizes(parser, s.encode()) != lark_accepts(text, s)
    ]
    assert mismatches == []


@pytest.mark.parametrize("name, alphabet, max_length", EXHAUSTIVE)
def test_every_prefix_of_a_sentence_is_viable(name, alphabet, max_length):
    text = (GRAMMARS / f"{name}.lark").read_text()
    parser = make_parser(text)
    for s in all_strings(alphabet, max_length):
        if lark_accepts(text, s):
            data = s.encode()
            assert all(is_viable(parser, data[:k]) for k in range(len(data) + 1)), s


JSON_DOCUMENTS = [
    '{"a": [1, 2.5, -3e+10, true, false, null], "b": {"c": "d\\n\\"\\u00e9\\\\"}}',
    '  [ ]  ',
    '"h\u00e9llo \u4e2d\u6587 \U0001f389"',
    '{\n\t"key" :\r\n 0.0E-0\n}',
    '[[[[[]]]], {}, [{}], ""]',
]
NOT_JSON = ['{"a" 1}', "[1,]", "01", '"\x01"', '"\\x"', "tru", "[1 2]", '{"a":1,}', "1.", "-", '"\\u12G4"']


@pytest.mark.parametrize("document", JSON_DOCUMENTS)
def test_json_documents_are_sentences(document):
    text = (GRAMMARS / "json.lark").read_text()
    assert lark_accepts(text, document)
    assert recognizes(make_parser(text), document.encode())


@pytest.mark.parametrize("document", NOT_JSON)
def test_malformed_json_is_rejected(document):
    text = (GRAMMARS / "json.lark").read_text()
    assert not lark_accepts(text, document)
    assert not recognizes(make_parser(text), document.encode())


def test_multibyte_characters_are_viable_byte_by_byte():
    parser = make_parser((GRAMMARS / "json.lark").read_text())
    data = '"中🎉"'.encode()
    for k in range(len(data) + 1):
        assert is_viable(parser, data[:k])
    # A lone continuation byte or an overlong encoding is never part of a JSON string.
    assert not is_viable(parser, b'"\x80')
    assert not is_viable(parser, b'"\xc0\xaf')


def test_deep_nesting_has_no_recursion_limit():
    parser = make_parser((GRAMMARS / "json.lark").read_text())
    depth = 5000
    data = b"[" * depth + b"]" * depth
    assert recognizes(parser, data)
    assert not recognizes(parser, data[:-1])


# -- random grammars against an exact Bar-Hillel oracle ---------------------------------------

LITERALS = ["a", "b", "ab"]


@st.composite
def random_grammars(draw):
    """Small CFGs over {a, b} with empty rules, left/right recursion and cycles."""
    count = draw(st.integers(1, 4))
    names = [f"n{i}" for i in range(count)]
    symbol = st.sampled_from(names + [f'"{lit}"' for lit in LITERALS])
    rules = {}
    for name in names:
        alternatives = draw(st.lists(st.lists(symbol, max_size=3), min_size=1, max_size=3))
        rules[name] = [list(alt) for alt in alternatives]
    return rules


def grammar_text(rules) -> str:
    lines = ["start: n0"]
    for name, alternatives in rules.items():
        lines.append(f"{name}: " + " | ".join(" ".join(alt) if alt else "" for alt in alternatives))
    return "\n".join(lines) + "\n"


def bar_hillel(rules, target: str, prefix_only: bool) -> bool:
    """Is ``target`` a sentence (or, with prefix_only, a prefix of one)? Exact fixed point over
    (nonterminal, from, to) triples of the automaton that reads ``target`` (then anything)."""
    n = len(target)

    def read(q: int, literal: str) -> int | None:
        for ch in literal:
            if q == n:
                if not prefix_only:
                    return None
                continue
            if target[q] != ch:
                return None
            q += 1
        return q

    derives: dict[str, set[tuple[int, int]]] = {name: set() for name in rules}
    changed = True
    while changed:
        changed = False
        for name, alternatives in rules.items():
            for alt in alternatives:
                for start in range(n + 1):
                    ends = {start}
                    for sym in alt:
                        nxt = set()
                        for q in ends:
                            if sym.startswith('"'):
                                r = read(q, sym.strip('"'))
                                if r is not None:
                                    nxt.add(r)
                            else:
                                nxt.update(t for f, t in derives[sym] if f == q)
                        ends = nxt
                    for end in ends:
                        if (start, end) not in derives[name]:
                            derives[name].add((start, end))
                            changed = True
    return (0, n) in derives["n0"]


@settings(max_examples=120, deadline=None)
@given(random_grammars())
def test_random_grammars_match_exact_oracle(rules):
    text = grammar_text(rules)
    strings = list(all_strings("ab", 6))
    try:
        parser = make_parser(text)
    except EmptyLanguageError:
        assert not any(bar_hillel(rules, s, prefix_only=True) for s in strings[:7])
        return
    for s in strings:
        assert recognizes(parser, s.encode()) == bar_hillel(rules, s, prefix_only=False), (text, s)
        assert is_viable(parser, s.encode()) == bar_hillel(rules, s, prefix_only=True), (text, s)


@settings(max_examples=40, deadline=None)
@given(random_grammars())
def test_random_grammars_match_lark(rules):
    text = grammar_text(rules)
    try:
        parser = make_parser(text)
    except EmptyLanguageError:
        return
    for s in all_strings("ab", 5):
        assert recognizes(parser, s.encode()) == lark_accepts(text, s), (text, s)


@pytest.mark.parametrize(
    "grammar_text, sentences, non_sentences",
    [
        ('start: "a" X "b"\nX: /c*/\n', ["ab", "acb", "accb"], ["a", "acc", "b"]),
        ("start: X\nX: /c|(ab)*/\n", ["", "ab", "abab", "c"], ["a", "abc", "cc"]),
        # As re.match reads it (lark's lexer), the empty iteration comes first and wins over "c".
        ("start: X\nX: /(ab)*|c/\n", ["", "ab", "abab"], ["a", "abc", "cc", "c"]),
        ('start: X Y\nX: /a?/\nY: /b?/\n', ["", "a", "b", "ab"], ["ba", "aa"]),
    ],
)
def test_zero_width_terminals(grammar_text, sentences, non_sentences):
    """A terminal whose regex matches the empty string may also match nothing."""
    parser = make_parser(grammar_text)
    for text in sentences:
        assert recognizes(parser, text.encode()), text
    for text in non_sentences:
        assert not recognizes(parser, text.encode()), text
