"""`gad.grammar.regex`: byte-level DFAs checked against independent oracles.

Oracles: Python's `re` (full matches, and membership of single characters), the `regex` module's
partial matching (prefix viability), exhaustive enumeration of small languages, and UTF-8 itself
(`bytes.decode`). The DFA under test is never its own oracle.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import re
import sys
from collections import deque

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gad.errors import ConfigurationError, EmptyLanguageError, GadError, GrammarError, UnsupportedGrammarError
from gad.grammar.dfa import DEFAULT_BUDGET
from gad.grammar.regex import DEAD, AutomatonBudget, ByteDFA, compile_literal, compile_regex, compile_terminal

FLAG_BITS = {"i": re.I, "s": re.S, "m": re.M, "x": re.X, "u": re.U, "a": re.A}

JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
JSON_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"

LARK_COMMON = [
    "ESCAPED_STRING", "SIGNED_NUMBER", "NUMBER", "INT", "DECIMAL", "FLOAT", "WS", "WS_INLINE",
    "CNAME", "WORD", "NEWLINE", "SH_COMMENT", "CPP_COMMENT", "C_COMMENT", "HEXDIGIT", "LETTER",
]  # fmt: skip


def _lark_common_regexes() -> dict[str, str]:
    from lark.load_grammar import load_grammar

    text = f"%import common ({', '.join(LARK_COMMON)})\nstart: {' '.join(LARK_COMMON)}\n"
    grammar, _ = load_grammar(text, "<test>", [], False)
    terminals, _, _ = grammar.compile(["start"], set())
    return {t.name: t.pattern.to_regexp() for t in terminals}


LARK = _lark_common_regexes()

# (pattern, flags): the table every property below runs over.
pattern__flags = [
    pytest.param(p, f, id=i)
    for i, p, f in [
        ("literal", "abc", ""),
        ("literal-alternatives", "a|ab|abc", ""),
        ("empty-string", "", ""),
        ("class", "[a-z]+", ""),
        ("negated-one", "[^a]", ""),
        ("negated-star", "[^a]*", ""),
        ("json-unescaped", r'[^"\\\x00-\x1f]*', ""),
        ("dot", ".", ""),
        ("dot-star", ".*", ""),
        ("dotall-star", ".*", "s"),
        ("dot-middle", "a.c", ""),
        ("repeat-range", "a{2,3}", ""),
        ("repeat-group", "(?:ab){1,3}c?", ""),
        ("repeat-exact", "x{0,2}y{3}", ""),
        ("star-plus", "(?:a|bc)*d+", ""),
        ("alternation", "cat|dog|(?:bird)+", ""),
        ("lazy", "a*?b+?", ""),
        ("e-acute", "é", ""),
        ("cjk", "中文|日本", ""),
        ("emoji", "🎉+", ""),
        ("mixed-class", "[é中🎉]{1,3}", ""),
        ("cafe", "caf[eé]", ""),
        ("range-2-3", "[\\x7f-\\u0800]", ""),
        ("range-2-3-star", "[\\x7f-\\u0800]*", ""),
        ("range-2-4", "[\\u00e9-\\U0001F600]", ""),
        ("ranges-at-boundaries", "[\\u07ff-\\u0801\\uffff-\\U00010001\\U0010fffe-\\U0010ffff]*", ""),
        ("negated-bmp", "[^\\u0080-\\uffff]+", ""),
        ("ignorecase-inline", "(?i:abc)", ""),
        ("ignorecase-flag", "abc", "i"),
        ("ignorecase-class", "(?i:[a-k]+)", ""),
        ("ignorecase-negated", "(?i:[^k])", ""),
        ("ignorecase-sharp-s", "(?i:straße)", ""),
        ("digits", r"\d+", ""),
        ("word", r"\w+", ""),
        ("space", r"\s", ""),
        ("not-word-or-digit", r"[\W\d]+", ""),
        ("ascii-word", r"\w+", "a"),
        ("verbose", "a b  # comment\n c", "x"),
        ("dotall-flag", "a.b", "s"),
        ("anchors", "^ab$", ""),
        ("dollar-newline", "a$\n?", ""),
        ("multiline", "(?m:a$\\n^b)", ""),
        ("neg-lookahead", "(?!ab)[a-c]{2}", ""),
        ("lookahead", "[ab](?=[bc])[abc]{1,3}", ""),
        ("lookbehind", r"\d+(?<!0)", ""),
        ("json-string", JSON_STRING, ""),
        ("json-number", JSON_NUMBER, ""),
    ]
] + [pytest.param(regex, "", id=f"lark-{name}") for name, regex in sorted(LARK.items())]

# Patterns whose prefix viability the `regex` module's partial matching decides exactly like `re`
# would (no Unicode categories or case folding, where the two libraries' tables may differ).
PARTIAL_ORACLE_SAFE = {"literal", "literal-alternatives", "class", "negated-star", "json-unescaped",
                       "dot-star", "repeat-range", "repeat-group", "star-plus", "alternation", "cjk",
                       "emoji", "mixed-class", "range-2-3-star", "json-string", "json-number",
                       "lark-SIGNED_NUMBER", "lark-CNAME", "lark-WS"}  # fmt: skip

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


# Patterns with `^`/`$` at their edges: meaningful only when the regex is the whole input.
WHOLE_INPUT = {"^ab$", "a$\n?"}


def compile_case(pattern: str, flags: str) -> ByteDFA:
    return compile_regex(pattern, flags=flags, whole_input=pattern in WHOLE_INPUT)


def bits(flags: str) -> int:
    out = 0
    for letter in flags:
        out |= FLAG_BITS[letter]
    return out


def encode(s: str) -> bytes | None:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no UTF-8 form, outside the DFA's domain
        return None


@functools.cache
def oracle(pattern: str, flags: str) -> re.Pattern[str]:
    return re.compile(pattern, bits(flags))


@st.composite
def near_misses(draw: st.DrawFn, rx: re.Pattern[str]) -> str:
    """A match of ``rx`` with up to three random edits (insert, delete, replace)."""
    s = draw(st.from_regex(rx, fullmatch=True))
    for _ in range(draw(st.integers(0, 3))):
        pool = st.sampled_from(s) if s else st.characters()
        ch = draw(st.one_of(st.characters(), pool))
        pos = draw(st.integers(0, len(s)))
        op = draw(st.sampled_from("idr"))
        if op == "i":
            s = s[:pos] + ch + s[pos:]
        elif s:
            pos = min(pos, len(s) - 1)
            s = s[:pos] + (ch if op == "r" else "") + s[pos + 1 :]
    return s


def completion(dfa: ByteDFA, state: int) -> bytes:
    """A shortest byte string leading from ``state`` to acceptance (breadth-first)."""
    parent: dict[int, tuple[int, int] | None] = {state: None}
    queue = deque([state])
    while queue:
        s = queue.popleft()
        if s in dfa.accepting:
            path = bytearray()
            while parent[s] is not None:
                s, b = parent[s]  # type: ignore[misc]
                path.append(b)
            return bytes(reversed(path))
        for b, t in enumerate(dfa.table[s]):
            if t >= 0 and t not in parent:
                parent[t] = (s, b)
                queue.append(t)
    raise AssertionError(f"state {state} cannot reach acceptance: the DFA is not trimmed")


# --------------------------------------------------------------------------------------------
# Full matches and prefixes, on the whole table


@pytest.mark.parametrize("pattern, flags", pattern__flags)
@HYPOTHESIS
@given(data=st.data())
def test_fullmatch_agrees_with_re(pattern: str, flags: str, data: st.DataObject) -> None:
    dfa = compile_case(pattern, flags)
    rx = oracle(pattern, flags)
    s = data.draw(st.one_of(st.text(), st.from_regex(rx, fullmatch=True), near_misses(rx)), label="s")
    b = encode(s)
    assume(b is not None)
    assert dfa.fullmatch(b) == (rx.fullmatch(s) is not None)


@pytest.mark.parametrize("pattern, flags", pattern__flags)
@HYPOTHESIS
@given(data=st.data())
def test_every_byte_prefix_of_a_match_is_live(pattern: str, flags: str, data: st.DataObject) -> None:
    dfa = compile_case(pattern, flags)
    s = data.draw(st.from_regex(oracle(pattern, flags), fullmatch=True), label="match")
    b = encode(s)
    assume(b is not None)
    state = dfa.initial
    for i, byte in enumerate(b):
        state = dfa.step(state, byte)
        assert dfa.is_live(state), f"prefix {b[: i + 1]!r} of the match {s!r} is dead"
    assert dfa.is_accepting(state)


@pytest.mark.parametrize("pattern, flags", pattern__flags)
def test_every_live_prefix_completes_to_a_match_re_accepts(pattern: str, flags: str) -> None:
    """Random walks over live bytes: each prefix reached has a completion that decodes as UTF-8
    and that `re` fully matches (the witness comes from the DFA, the verdict from `re`)."""
    dfa = compile_case(pattern, flags)
    rx = oracle(pattern, flags)
    rng = random.Random(f"{pattern}/{flags}")
    for _ in range(25):
        state, prefix = dfa.initial, b""
        for _ in range(12):
            full = prefix + completion(dfa, state)
            assert rx.fullmatch(full.decode("utf-8")), f"{full!r} accepted by the DFA, rejected by re"
            live = [b for b, t in enumerate(dfa.table[state]) if t >= 0]
            if not live:
                break
            byte = rng.choice(live)
            state, prefix = dfa.table[state][byte], prefix + bytes([byte])


@pytest.mark.parametrize(
    "pattern, flags", [p for p in pattern__flags if p.id in PARTIAL_ORACLE_SAFE]
)
@HYPOTHESIS
@given(data=st.data())
def test_liveness_agrees_with_partial_matching(pattern: str, flags: str, data: st.DataObject) -> None:
    regex = pytest.importorskip("regex")
    dfa = compile_case(pattern, flags)
    rx = oracle(pattern, flags)
    s = data.draw(st.one_of(near_misses(rx), st.text()), label="s")
    assume(encode(s) is not None)
    for i in range(len(s) + 1):
        viable = regex.fullmatch(pattern, s[:i], flags=bits(flags), partial=True) is not None
        assert dfa.is_live(dfa.walk(dfa.initial, s[:i].encode())) == viable, s[:i]


# (pattern, alphabet, max string length, max byte-prefix length): every match of the pattern is a
# string over the alphabet, and every viable prefix up to that many bytes completes within it.
EDGES = "\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff"  # the last/first code points of UTF-8 lengths
pattern__alphabet__max_len__max_prefix = [
    ("a{2,3}", "ab", 4, 99),
    ("(?:ab|é){1,2}", "abé", 5, 99),
    ("中?🎉|é", "é中🎉a", 3, 99),
    ("(?i:ab)", "abAB", 3, 99),
    ("(?i:k)", "kK\u212ax", 2, 99),
    (f"[{EDGES}]{{1,2}}", EDGES, 3, 99),
    ("a*é", "aé", 6, 4),
]


@pytest.mark.parametrize("pattern, alphabet, max_len, max_prefix", pattern__alphabet__max_len__max_prefix)
def test_liveness_is_exact_on_small_languages(
    pattern: str, alphabet: str, max_len: int, max_prefix: int
) -> None:
    dfa = compile_regex(pattern)
    strings = ["".join(t) for n in range(max_len + 1) for t in itertools.product(alphabet, repeat=n)]
    accepted = {s.encode() for s in strings if re.fullmatch(pattern, s)}
    viable = {b[:i] for b in accepted for i in range(len(b) + 1)}
    junk = [0x80, 0xBF, 0xC0, 0xC1, 0xED, 0xF5, 0xFF, ord("z")]
    probes = {s.encode()[:i] for s in strings for i in range(len(s.encode()) + 1)}
    probes |= {p + bytes([j]) for p in list(probes) for j in junk}
    for p in probes:
        if len(p) > max_prefix:
            continue
        state = dfa.walk(dfa.initial, p)
        assert dfa.is_live(state) == (p in viable), p
        assert dfa.is_accepting(state) == (p in accepted), p


# --------------------------------------------------------------------------------------------
# UTF-8 validity


INVALID_UTF8 = {
    "overlong C0": b"\xc0\x80",
    "overlong C1": b"\xc1\xbf",
    "overlong E0 80": b"\xe0\x80\x80",
    "overlong E0 9F": b"\xe0\x9f\xbf",
    "overlong F0 80": b"\xf0\x80\x80\x80",
    "overlong F0 8F": b"\xf0\x8f\xbf\xbf",
    "surrogate ED A0 80": b"\xed\xa0\x80",
    "surrogate ED BF BF": b"\xed\xbf\xbf",
    "above U+10FFFF F4 90": b"\xf4\x90\x80\x80",
    "lead F5": b"\xf5\x80\x80\x80",
    "byte FF": b"\xff",
    "lone continuation 80": b"\x80",
    "lone continuation BF": b"a\xbf",
    "lead then ASCII": b"\xc3a",
    "truncated 2-byte": b"\xc3",
    "truncated 3-byte": b"\xe4\xb8",
    "truncated 4-byte": b"\xf0\x9f\x8e",
}
TRUNCATED_VALID = [b"\xc3", b"\xe4\xb8", b"\xe4", b"\xf0\x9f\x8e", b"\xf0\x9f", b"\xf4\x8f\xbf", b"\xed\x9f"]


@pytest.mark.parametrize("pattern", ["(?s:.*)", "[^a]*", r"\W*", r"(?s:.)", "[\\x00-\\U0010ffff]+"])
@pytest.mark.parametrize("data", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8_never_matches(pattern: str, data: bytes) -> None:
    dfa = compile_regex(pattern)
    for tail in (b"", b"a", b"\xc3\xa9"):
        assert not dfa.fullmatch(data + tail)
        assert not dfa.fullmatch(b"a" + data + tail)


@pytest.mark.parametrize("pattern", ["(?s:.*)", "[^a]*", "(?s:.)"])
@pytest.mark.parametrize("data", TRUNCATED_VALID)
def test_truncated_valid_sequences_stay_live(pattern: str, data: bytes) -> None:
    dfa = compile_regex(pattern)
    state = dfa.walk(dfa.initial, data)
    assert dfa.is_live(state) and not dfa.is_accepting(state)


def test_any_character_dfa_accepts_exactly_the_utf8_encodings() -> None:
    dfa = compile_regex("(?s:.)")
    assert all(dfa.fullmatch(chr(c).encode()) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)

    @functools.cache
    def count(state: int) -> int:  # accepted strings from `state`: finite for a one-character language
        return (state in dfa.accepting) + sum(count(t) for t in dfa.table[state] if t >= 0)

    # every encoding is accepted, and there are exactly as many accepted strings as encodings
    assert count(dfa.initial) == 0x110000 - 0x800


# --------------------------------------------------------------------------------------------
# Character classes: every code point, as `re` decides


@functools.cache
def all_chars() -> str:
    return "".join(map(chr, range(0x110000)))


@pytest.mark.parametrize(
    "pattern",
    [r"\d", r"\w", r"\s", r"\D", r"(?a:\w)", r"(?a:\s)", "(?i:k)", "(?i:s)", "(?i:[a-z])",
     "(?i:[^a-z])", "(?i:ß)", "(?i:σ)", "(?i:ǅ)", r"(?i:\W)", "(?ai:[a-z])", ".", "[\\x7f-\\u0800]",
     "[\\u00e9-\\U0001F600]", "(?i:[\\u00e9-\\U0001F600])", r"[^\W\d]", "(?i:[^\\x00-\\x7f])"],
)  # fmt: skip
def test_single_characters_match_like_re(pattern: str) -> None:
    """All of the BMP, and every run boundary `re` reports beyond it, plus a random sample."""
    dfa = compile_regex(pattern)
    rx = re.compile(pattern)
    runs = [(m.start(), m.end() - 1) for m in re.finditer(f"(?:{pattern})+", all_chars())]
    candidates = set(range(0x10000))
    for lo, hi in runs:
        candidates |= {lo - 1, lo, lo + 1, (lo + hi) // 2, hi - 1, hi, hi + 1}
    candidates |= set(random.Random(pattern).sample(range(0x10000, 0x110000), 3000))
    starts = [lo for lo, _ in runs]
    for cp in sorted(candidates):
        if not 0 <= cp <= 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            continue
        i = bisect.bisect_right(starts, cp) - 1
        expected = i >= 0 and cp <= runs[i][1]
        assert expected == (rx.fullmatch(chr(cp)) is not None)  # the runs are right
        assert dfa.fullmatch(chr(cp).encode()) == expected, f"U+{cp:04X}"


def test_unicode_classes_follow_re_not_ascii() -> None:
    assert compile_regex(r"\d").fullmatch("٣".encode())  # ARABIC-INDIC DIGIT THREE
    assert compile_regex(r"\w").fullmatch("é".encode())
    assert compile_regex(r"\s").fullmatch("\u3000".encode())
    assert compile_regex("(?i:k)").fullmatch("\u212a".encode())  # KELVIN SIGN
    assert not compile_regex(r"\d", flags="a").fullmatch("٣".encode())
    assert not compile_regex("k", flags="ai").fullmatch("\u212a".encode())


# --------------------------------------------------------------------------------------------
# Flags, anchors, lookarounds


@pytest.mark.parametrize(
    "pattern, flags, text, expected",
    [
        ("abc", "i", "AbC", True),
        ("a.b", "", "a\nb", False),
        ("a.b", "s", "a\nb", True),
        ("a b # c", "x", "ab", True),
        ("a$", "", "a\n", False),
        ("a$\n", "", "a\n", True),
        ("^a", "m", "a", True),
        ("(?m:a\n^b)", "", "a\nb", True),
        ("\\Aa\\Z", "", "a", True),
        ("(?<!a)b", "", "b", True),
        ("abc", "u", "abc", True),
        ("(?=a)a(?<=a)", "", "a", True),
        ("(?=.b)a(?<!x)b", "", "ab", True),
        ("(?:(?<=a)b|^a)", "", "a", True),
    ],
)
def test_flags_and_anchors_match_re(pattern: str, flags: str, text: str, expected: bool) -> None:
    assert (re.fullmatch(pattern, text, bits(flags)) is not None) == expected
    assert compile_regex(pattern, flags=flags, whole_input=True).fullmatch(text.encode()) == expected
    try:  # as a terminal: the same answer, unless an assertion looks outside the match
        assert compile_regex(pattern, flags=flags).fullmatch(text.encode()) == expected
    except UnsupportedGrammarError as exc:
        assert "past the" in str(exc)


@pytest.mark.parametrize(
    "pattern, edge",
    [("a(?=b)", "end"), ("^a", "start"), ("a$", "end"), ("a$\n", "end"), ("a\\Z", "end"),
     ("(?<=a)b", "start"), ("a(?<=ba)", "start"), ("(?!.*x).+", "end"), ("(?:^a|b)", "start"),
     ("(?m:^a)", "start")],
)  # fmt: skip
def test_assertions_looking_outside_a_terminal_are_rejected(pattern: str, edge: str) -> None:
    with pytest.raises(UnsupportedGrammarError, match=f"past the {edge} of the match"):
        compile_regex(pattern)
    try:
        compile_regex(pattern, whole_input=True)
    except EmptyLanguageError:
        pass


@pytest.mark.parametrize("pattern", ["a\\Za", "a$ab", "a^b", "(?m:a^b)"])
def test_assertions_that_are_false_everywhere_give_an_empty_language(pattern: str) -> None:
    with pytest.raises(EmptyLanguageError):
        compile_regex(pattern)


def test_lark_escaped_string_full_match_language() -> None:
    pattern = LARK["ESCAPED_STRING"]
    dfa = compile_regex(pattern)
    for text, expected in [('""', True), ('"a\\"b"', True), ('"\\\\"', True), ('"\\"', False),
                           ('"é中🎉"', True), ('"a"b"', True), ('"a\nb"', False)]:  # fmt: skip
        assert dfa.fullmatch(text.encode()) == expected == (re.fullmatch(pattern, text) is not None)


# Terminals as lark's lexer reads them: {w : re.match(p, w) spans all of w}
LEXER_PATTERNS = [
    LARK["ESCAPED_STRING"],
    LARK["C_COMMENT"],
    r"/(\\/|\\\\|[^/])*?/[imslux]*",  # lark.lark's REGEXP
    "a|ab",
    "(?:ab|a)b?",
    "a*?b|a+",
    "(a|ab)(c|bcd)",
    "x(?:a??b)+?y?",
    "(?:a|b)*?c(?:d)??",
    "(?:a*)*b|a",
    r"(?=[ab])\w{1,3}",
    r"(?!ab)[a-c]{2,3}",
    r"a.*?(?<!x)z",
    r"a[ab]+(?<=ab)",
    r"(?:\d{1,2}?)+?-",
    "(?:|a)+b",
    "(?:a(?=b))*b",
]


@pytest.mark.parametrize("pattern", LEXER_PATTERNS)
@HYPOTHESIS
@given(data=st.data())
def test_compile_terminal_is_what_re_match_returns(pattern: str, data: st.DataObject) -> None:
    read = compile_terminal(pattern)
    assert not read.follow
    rx = re.compile(pattern)
    s = data.draw(st.one_of(near_misses(rx), st.from_regex(rx, fullmatch=True), st.text("abcdxyz-/*\\\"", max_size=8)), label="s")
    b = encode(s)
    assume(b is not None)
    m = rx.match(s)
    assert read.dfa.fullmatch(b) == (m is not None and m.end() == len(s))


@pytest.mark.parametrize("pattern", LEXER_PATTERNS)
def test_compile_terminal_exhaustively_on_short_strings(pattern: str) -> None:
    """Every string of length <= 5 over the pattern's alphabet: the DFA agrees with ``re.match``,
    and a prefix leads to a live state exactly when some extension is a match (checked up to 3
    more characters, which suffices for these patterns' small automata)."""
    read = compile_terminal(pattern)
    rx = re.compile(pattern)
    alphabet = sorted(set(re.sub(r"\\.|[^a-z/\\\"*-]", "", pattern)) | {"a", "b"})[:7]
    for n in range(6):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            m = rx.match(s)
            assert read.dfa.fullmatch(s.encode()) == (m is not None and m.end() == len(s)), s


def test_lazy_terminals_are_not_their_full_matches() -> None:
    dfa = compile_terminal(LARK["ESCAPED_STRING"]).dfa
    assert dfa.fullmatch(b'"a\\"b"') and not dfa.fullmatch(b'"a"b"')
    assert not dfa.is_live(dfa.walk(dfa.initial, b'"a"b'))
    comment = compile_terminal(LARK["C_COMMENT"]).dfa
    assert comment.fullmatch(b"/* a */") and not comment.fullmatch(b"/* a */ */")
    regexp = compile_terminal(r"/(\\/|\\\\|[^/])*?/[imslux]*").dfa  # lark.lark's REGEXP
    assert regexp.fullmatch(b"/a\\/b/") and regexp.fullmatch(b"/a/i") and not regexp.fullmatch(b"/a/b/")
    assert compile_terminal("a|ab").dfa.fullmatch(b"a") and not compile_terminal("a|ab").dfa.fullmatch(b"ab")


@pytest.mark.parametrize(
    "pattern, after, expected",
    [("a(?=b)", "b", True), ("a(?=b)", "c", False), ("a(?=b)", "", False), ("ab?(?!c)", "c", False),
     ("ab?(?!c)", "", True), ("ab?(?!c)", "d", True), ("a$", "", True), ("a$", "\n", True), ("a$", "b", False)],
)  # fmt: skip
def test_lookahead_at_the_end_of_a_terminal_constrains_what_follows(pattern: str, after: str, expected: bool) -> None:
    read = compile_terminal(pattern)
    rx = re.compile(pattern)
    for text in ("a", "ab"):
        m = rx.match(text + after)
        state = read.dfa.walk(read.dfa.initial, text.encode())
        follow = read.follow.get(state)
        matched = read.dfa.is_accepting(state) and (follow is None or follow.fullmatch(after.encode()))
        assert matched == (m is not None and m.end() == len(text)), (text, after)
    m = rx.match("a" + after)
    assert (m is not None and m.end() == 1) == expected


# --------------------------------------------------------------------------------------------
# Errors


NEEDS_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.11 regex syntax")


@pytest.mark.parametrize(
    "pattern, construct",
    [
        (r"(a)\1", "backreference"),
        (r"(?P<x>a)(?P=x)", "backreference"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"\bfoo", "word boundary \\b that can look past the start"),
        (r"a\B", "non-boundary \\B that can look past the end"),
        (r"(?:x|(?<!a)b)c", "negative lookbehind that can look past the start"),
        (r"(?:^a)+", "anchor ^ that can look past the start"),
        (r"(?:a$)?", "anchor $ that can look past the end"),
        (r"(?:a(?=b))+", "lookahead that can look past the end"),
        pytest.param(r"(?>a)b", "atomic group", marks=NEEDS_311),
        pytest.param(r"a*+", "possessive", marks=NEEDS_311),
    ],
)
def test_unsupported_constructs_raise_unsupported_grammar_error(pattern: str, construct: str) -> None:
    with pytest.raises(UnsupportedGrammarError) as info:
        compile_regex(pattern)
    assert construct in str(info.value) and repr(pattern) in str(info.value)


@pytest.mark.parametrize("flags", ["L", "z", "iq"])
def test_unknown_flags_are_named(flags: str) -> None:
    with pytest.raises(UnsupportedGrammarError) as info:
        compile_regex("ab", flags=flags)
    assert repr(flags[-1]) in str(info.value) and "'ab'" in str(info.value)


@pytest.mark.parametrize("pattern", ["[a", "a{2,1}", "(?<=a+)b", "*a", "a(?i)b", "\\q"])
def test_invalid_regex_raises_grammar_error(pattern: str) -> None:
    with pytest.raises(GrammarError) as info:
        compile_regex(pattern)
    assert not isinstance(info.value, (UnsupportedGrammarError, EmptyLanguageError))
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize(
    "pattern",
    [r"[^\s\S]", "a(?=b)", "(?!a)a", "\\ud800", "[\\ud800-\\udfff]+", "[^\\x00-\\U0010ffff]", "(?<=b)a",
     "a^b", "a\n^b", "(?<=a)b"],
)
def test_empty_language_raises(pattern: str) -> None:
    with pytest.raises(EmptyLanguageError):
        compile_regex(pattern, whole_input=True)


def test_errors_name_the_terminal_and_keep_their_class() -> None:
    with pytest.raises(UnsupportedGrammarError, match=r"^terminal FOO: .*backreference"):
        compile_regex(r"(a)\1", name="FOO")
    with pytest.raises(EmptyLanguageError, match=r"^terminal BAR: "):
        compile_regex("[^\\s\\S]", name="BAR")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # re's "possible nested set" on random input
def test_no_foreign_exception_escapes() -> None:
    rng = random.Random(7)
    alphabet = "ab()[]{}|*+?.^$\\-,:=!<>?P0123456789dwsDWSbBAZux"
    for _ in range(1500):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        try:
            compile_regex(pattern)
        except GadError:
            pass


def test_bad_arguments_raise_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        compile_regex(b"abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ByteDFA(((DEAD,) * 255,), frozenset())
    with pytest.raises(ConfigurationError):
        ByteDFA(((DEAD,) * 256,), frozenset({3}))


# --------------------------------------------------------------------------------------------
# The object itself


def test_dfa_shape_and_helpers() -> None:
    dfa = compile_regex("ab|ac")
    assert dfa.initial == 0 and dfa.pattern == "ab|ac" and not dfa.accepts_empty
    assert dfa.num_states == 3  # minimal: start, after a, accept
    assert all(len(row) == 256 for row in dfa.table) and all(isinstance(row, tuple) for row in dfa.table)
    assert dfa.step(DEAD, ord("a")) == DEAD and dfa.walk(DEAD, b"") == DEAD
    assert dfa.walk(dfa.initial, b"ax") == DEAD and not dfa.is_live(DEAD)
    assert compile_regex("a*").accepts_empty
    assert "ab|ac" in repr(dfa)


def test_results_are_cached() -> None:
    assert compile_regex("[a-z]+") is compile_regex("[a-z]+")
    assert compile_regex("x", flags="is") is compile_regex("x", flags="si")
    assert compile_regex("^x$", whole_input=True) is compile_regex("^x$", whole_input=True)


@given(st.text(max_size=12), st.text(max_size=12))
@settings(max_examples=200, deadline=None)
def test_compile_literal_matches_exactly_the_text(text: str, other: str) -> None:
    assume(encode(text) is not None and encode(other) is not None)
    dfa = compile_literal(text)
    assert dfa.fullmatch(text.encode())
    assert dfa.fullmatch(other.encode()) == (other == text)
    assert dfa.is_live(dfa.walk(dfa.initial, other.encode())) == text.encode().startswith(other.encode())


# --------------------------------------------------------------------------------------------
# Budgets and sizes (costs are measured in benchmarks/regex_compile.py, not here)


@pytest.mark.parametrize(
    "pattern, budget, name",
    [("a{100}", AutomatonBudget(nfa_states=50), "nfa_states"),
     ("[ab]*a[ab]{12}", AutomatonBudget(dfa_states=1000), "dfa_states"),
     (r"\w{3}", AutomatonBudget(byte_states=100), "byte_states"),
     ("(a{0,100}){0,100}", DEFAULT_BUDGET, "work")],
)  # fmt: skip
def test_a_budget_exceeded_is_a_clear_error(pattern: str, budget: AutomatonBudget, name: str) -> None:
    with pytest.raises(UnsupportedGrammarError, match=rf"needs more than .* \(budget `{name}`") as info:
        compile_regex(pattern, budget=budget)
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize(
    "pattern, states",
    [("(ab){2,300}c", 2 * 300 + 2), ("a{1000}", 1001), ("[ab]*a[ab]{8}", 2**9), ("x" * 1600, 1601)],
)
def test_bounded_repeats_compile_to_their_minimal_size(pattern: str, states: int) -> None:
    """Sizes of the minimal DFAs, known by hand: ``(ab){2,300}c`` needs a state per position in
    up to 300 copies of ``ab`` plus the end; ``[ab]*a[ab]{8}`` remembers the last 9 letters."""
    dfa = compile_regex(pattern)
    assert dfa.num_states == states
    rx = re.compile(pattern)
    for text in ["ab" * 2 + "c", "ab" * 300 + "c", "ab" * 301 + "c", "ab" + "c", "a" * 1000, "a" * 999]:
        assert dfa.fullmatch(text.encode()) == (rx.fullmatch(text) is not None)


def test_budget_argument_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        compile_regex("a", budget=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AutomatonBudget(work=0)
