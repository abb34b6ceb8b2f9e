"""Lazily built mask entries, bounded parser state and `gad.explain`.

Entries are built on the first mask that needs them, in whatever order a walk reaches them, shared
by every matcher of a compiled grammar and across threads. Whatever the order, the masks must be
those of the brute-force oracle (`gad.testing`: each token fed alone to a fork, which never reads
the entry store) and the entries those of an eager build.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

import gad
from gad.testing import brute_force_allowed, check_masks

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
JSON = (GRAMMARS / "json.lark").read_text()

# Single characters and pairs over a JSON alphabet, plus longer pieces that cross terminals.
_ALPHABET = '{}[]":, 01235abxy-.e\n\\'
JSON_VOCAB = (
    [b"<eos>"]
    + [c.encode() for c in _ALPHABET]
    + ["".join(p).encode() for p in itertools.product(_ALPHABET, repeat=2)]
    + [s.encode() for s in ('"a": ', '": [', "true", "null", "false", "    ", '"},', "1.5e", ']}', '{"a"')]
)
DOCUMENTS = [
    '{"a": [1, 2.5e-3, true, null], "aa": {"a": "x y"}}',
    '[{"a":-0.1},\n  ["", 30, false]]',
    '"a\\"b"',
]


def json_info() -> gad.TokenizerInfo:
    """A fresh tokenizer (so its per-tokenizer classification memo starts empty)."""
    return gad.TokenizerInfo.from_vocab(JSON_VOCAB, eos_token_id=0)


def greedy_tokens(info: gad.TokenizerInfo, text: str) -> list[int]:
    """Longest-match tokenization of ``text`` over ``info``'s vocabulary."""
    by_bytes = {data: i for i, data in enumerate(info.token_bytes) if i != 0}
    data, ids = text.encode(), []
    while data:
        for n in range(min(len(data), 5), 0, -1):
            if data[:n] in by_bytes:
                ids.append(by_bytes[data[:n]])
                data = data[n:]
                break
        else:
            raise AssertionError(f"vocabulary cannot spell {data!r}")
    return ids


def signature(entry) -> tuple:
    return (entry.accepted.packed().tobytes(), *(getattr(entry, name).tobytes() for name in entry.ARRAYS))


def built_signatures(compiled: gad.CompiledGrammar) -> dict[tuple[int, int], tuple]:
    return {(t, q): signature(e) for t, q, e in compiled.entries.built()}


@pytest.fixture(scope="module")
def eager_json():
    return gad.GrammarCompiler(json_info()).compile(JSON, eager=True)


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(DOCUMENTS)))))
def test_entries_reached_in_any_order_give_exact_masks_and_the_eager_entries(order, eager_json):
    info = json_info()
    compiled = gad.GrammarCompiler(info).compile(JSON)
    assert compiled.entries.built() == []
    for index in order:
        assert check_masks(gad.GrammarMatcher(compiled), greedy_tokens(info, DOCUMENTS[index])) == []
    lazy = built_signatures(compiled)
    eager = built_signatures(eager_json)
    assert 0 < len(lazy) < len(eager)
    assert all(eager[key] == value for key, value in lazy.items())


def test_rollback_across_lazily_built_entries_keeps_masks_exact():
    info = json_info()
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile(JSON))
    first = greedy_tokens(info, DOCUMENTS[0])
    masks = []
    for token in first:
        masks.append(matcher.next_token_mask().numpy().copy())
        assert matcher.accept_token(token)
    # Back to the middle of the first document, then down a path it never took.
    middle = len(first) // 2
    matcher.rollback(len(first) - middle)
    assert np.array_equal(matcher.next_token_mask().numpy(), masks[middle])
    matcher.rollback(middle)
    assert np.array_equal(matcher.next_token_mask().numpy(), masks[0])
    assert check_masks(matcher, greedy_tokens(info, DOCUMENTS[1])) == []


def test_concurrent_first_use_from_four_threads_equals_serial(eager_json):
    info = json_info()
    compiled = gad.GrammarCompiler(info).compile(JSON)
    documents = DOCUMENTS + ['{"a": {"a": {"a": [[], {}]}}}']
    token_lists = [greedy_tokens(info, text) for text in documents]
    barrier = threading.Barrier(len(documents))
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def walk(index: int) -> None:
        try:
            matcher = gad.GrammarMatcher(compiled)
            barrier.wait()
            masks = []
            for token in token_lists[index]:
                masks.append(matcher.next_token_mask().numpy().tobytes())
                assert matcher.accept_token(token)
            results[index] = masks
        except BaseException as error:  # reported below, on the main thread
            errors.append(error)

    threads = [threading.Thread(target=walk, args=(i,)) for i in range(len(documents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index, tokens in enumerate(token_lists):
        serial = gad.GrammarMatcher(eager_json)
        for token, mask in zip(tokens, results[index]):
            assert serial.next_token_mask().numpy().tobytes() == mask
            assert serial.accept_token(token)
    eager = built_signatures(eager_json)
    assert all(eager[key] == value for key, value in built_signatures(compiled).items())


def test_save_and_load_of_a_partially_built_store(tmp_path):
    info = json_info()
    compiled = gad.GrammarCompiler(info).compile(JSON)
    walker = gad.GrammarMatcher(compiled)
    for token in greedy_tokens(info, DOCUMENTS[2]):
        walker.next_token_mask()
        assert walker.accept_token(token)
    path = tmp_path / "partial.gad"
    compiled.save(path)
    loaded = gad.CompiledGrammar.load(path, info)
    assert built_signatures(loaded) == built_signatures(compiled)
    assert check_masks(gad.GrammarMatcher(loaded), greedy_tokens(info, DOCUMENTS[0])) == []
    assert len(loaded.entries.built()) > len(compiled.entries.built())


def test_grammars_sharing_terminals_share_classifications_and_stay_exact():
    info = json_info()
    compiler = gad.GrammarCompiler(info)
    first = compiler.compile(JSON)
    assert check_masks(gad.GrammarMatcher(first), greedy_tokens(info, DOCUMENTS[0])) == []
    # The same terminals under other ids and other rules: classifications are reused, while the
    # context expansion (which depends on the rules) is the new grammar's own.
    other = 'start: "[" (ESCAPED_STRING | SIGNED_NUMBER) ("," (ESCAPED_STRING | SIGNED_NUMBER))* "]"\n'
    other += "%import common.ESCAPED_STRING\n%import common.SIGNED_NUMBER\n%import common.WS\n%ignore WS\n"
    second = compiler.compile(other)
    assert check_masks(gad.GrammarMatcher(second), greedy_tokens(info, '[ "a",1.5e3 ,-2 ]')) == []
    assert check_masks(gad.GrammarMatcher(first), greedy_tokens(info, DOCUMENTS[1])) == []


# -- bounded parser state ------------------------------------------------------------------------


def live_items(matcher: gad.GrammarMatcher) -> int:
    state = matcher._states[-1]
    return len(state.earley_set.items) if state.earley_set is not None else 0


def test_right_recursion_keeps_earley_sets_small():
    info = gad.TokenizerInfo.from_vocab([b"<eos>", b"a", b"aa"], eos_token_id=0)
    compiled = gad.GrammarCompiler(info).compile('start: s\ns: "a" s | "a"\n')
    matcher = gad.GrammarMatcher(compiled)
    sizes = {}
    for n in range(1, 20_001):
        assert matcher.accept_bytes(b"a")
        if n in (10, 1_000, 20_000):
            sizes[n] = live_items(matcher)
    assert sizes[10] == sizes[1_000] == sizes[20_000], sizes
    assert matcher.is_accepting()
    assert brute_force_allowed(matcher).tolist() == [True, True, True]


def test_right_recursion_result_equals_lark():
    lark = pytest.importorskip("lark")
    grammar = 'start: s\ns: "a" s "b" | "a" s | "c"\n'
    parser = lark.Lark(grammar, parser="earley")
    info = gad.TokenizerInfo.from_vocab([b"<eos>", b"a", b"b", b"c"], eos_token_id=0)
    compiled = gad.GrammarCompiler(info).compile(grammar)
    for text in ("aaacbb", "aaacbbb", "ac", "acb", "acbb", "aaaaaaaaac", "aaaacbbbb", "c", "cb"):
        matcher = gad.GrammarMatcher(compiled)
        ok = matcher.accept_string(text) and matcher.is_accepting()
        try:
            parser.parse(text)
            expected = True
        except lark.exceptions.LarkError:
            expected = False
        assert ok == expected, text


def test_whitespace_run_keeps_live_lexemes_bounded():
    info = json_info()
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile(JSON))
    assert matcher.accept_string('{"a": ')
    counts = {}
    for n in range(1, 2_001):
        assert matcher.accept_bytes(b" ")
        if n in (5, 100, 2_000):
            counts[n] = len(matcher._states[-1].lexemes)
    assert counts[5] == counts[100] == counts[2_000], counts
    assert check_masks(matcher, greedy_tokens(info, '1}')) == []


# -- explain ----------------------------------------------------------------------------------------


def explanation_allows(explanation) -> bool:
    """The verdict the explanation's own reasons give (computed apart from the mask)."""
    return any(line.endswith(": allowed") or "allowed in every context" in line for line in explanation.reasons)


@pytest.mark.parametrize("prefix", ["", '{"a"', '{"a": [1', '[1.5e', '"a', '{"a": true', "[]"])
def test_explain_agrees_with_the_brute_force_oracle(prefix):
    info = json_info()
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile(JSON))
    assert matcher.accept_string(prefix)
    oracle = brute_force_allowed(matcher)
    for token_id in range(1, info.vocab_size):
        explanation = gad.explain(matcher, token_id)
        assert explanation.allowed == oracle[token_id], str(explanation)
        assert explanation_allows(explanation) == oracle[token_id], str(explanation)
        assert not any("please report" in line for line in explanation.reasons)
    eos = gad.explain(matcher, 0)
    assert eos.allowed == oracle[0] == matcher.is_accepting()
    assert "not a complete sentence" in str(eos) or matcher.is_accepting()


def test_explain_names_the_terminal_and_the_byte_that_dies():
    info = json_info()
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile(JSON))
    assert matcher.accept_string('{"a": 1')
    token = info.token_bytes.index(b"a}")
    text = str(gad.explain(matcher, token))
    assert "not allowed" in text and "NUMBER" in text and "b'a'" in text
    with pytest.raises(gad.TokenError):
        gad.explain(matcher, info.vocab_size)
