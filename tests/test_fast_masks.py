"""The compile-time mask store, its caches, persistence, packed bitmasks and jump-forward.

Every optimisation is checked against the brute-force oracle of `gad.testing` (each token fed
alone to a fork of the matcher, which never touches the precomputed store).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gad
from gad.errors import ConfigurationError, EmptyLanguageError
from gad.testing import brute_force_allowed, check_masks

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
JSON = (GRAMMARS / "json.lark").read_text()

# Every string over {a, b, c, space} of length 1..3: tokens that cross any terminal boundary.
TOY_VOCAB = [b"<eos>"] + [
    "".join(chars).encode() for n in (1, 2, 3) for chars in itertools.product("abc ", repeat=n)
]


@st.composite
def random_lexed_grammars(draw):
    """Random CFGs whose terminals are small regexes (overlapping, repeating, zero-width), with
    nullable rules, with or without `%ignore " "`."""
    terminals = {
        "A": '"a"', "AB": '"ab"', "AS": "/a+/", "BC": "/b[ac]?/", "CS": "/c(ab)*/", "ANY": "/[abc]/",
        "OPT": "/c?/",  # zero-width: it may also match nothing
    }
    names = [f"n{i}" for i in range(draw(st.integers(1, 3)))]
    symbol = st.sampled_from(names + list(terminals))
    lines = ["start: n0"]
    for name in names:
        alternatives = draw(st.lists(st.lists(symbol, max_size=3), min_size=1, max_size=3))
        lines.append(f"{name}: " + " | ".join(" ".join(alt) for alt in alternatives))
    lines += [f"{name}: {pattern}" for name, pattern in terminals.items()]
    if draw(st.booleans()):
        lines.append('%ignore " "')
    return "\n".join(lines) + "\n"


def toy_matcher(grammar_text: str) -> gad.GrammarMatcher:
    info = gad.TokenizerInfo.from_vocab(TOY_VOCAB, eos_token_id=0)
    return gad.GrammarMatcher(gad.GrammarCompiler(info).compile(grammar_text))


@settings(max_examples=80, deadline=None)
@given(random_lexed_grammars(), st.randoms(use_true_random=False))
def test_random_grammar_masks_equal_brute_force(grammar_text, rng):
    try:
        matcher = toy_matcher(grammar_text)
    except EmptyLanguageError:
        return
    for _ in range(6):
        mask = matcher.next_token_mask().numpy()
        assert np.array_equal(mask, brute_force_allowed(matcher)), (grammar_text, matcher.num_accepted)
        choices = [t for t in np.flatnonzero(mask).tolist() if t != 0]
        if not choices:
            break
        assert matcher.accept_token(rng.choice(choices))


def test_store_uses_the_smallest_form_and_few_context_dependent_tokens():
    info = gad.TokenizerInfo.from_huggingface(gad.assets.load_tokenizer("gpt2"))
    compiled = gad.GrammarCompiler(info).compile(JSON, eager=True)
    entries = [e for _, _, e in compiled.entries.built()]
    assert len(entries) == sum(dfa.num_states for dfa in compiled.parser.tables.dfas)
    for entry in entries:
        data = entry.accepted
        accepted = int(np.count_nonzero(gad.bitmask.unpack_bitmask(data.packed(), info.vocab_size)))
        sizes = {0: accepted, 1: info.vocab_size - accepted, 2: gad.bitmask.bitmask_words(info.vocab_size)}
        assert data.data.shape[0] == sizes[data.kind] == min(sizes.values())
    # Context expansion leaves under 1% of (token, state) pairs for the parser.
    assert compiled.context_dependent_count() < 0.01 * info.vocab_size * len(entries)


def test_compile_cache_hits_on_equal_grammars_only():
    info = gad.TokenizerInfo.from_vocab(TOY_VOCAB, eos_token_id=0)
    compiler = gad.GrammarCompiler(info)
    first = compiler.compile(gad.Grammar.from_lark('start: "a" B\nB: /b+/\n'))
    assert compiler.compile(gad.Grammar.from_lark('start: "a" B\nB: /b+/\n', source="other.lark")) is first
    changed = compiler.compile(gad.Grammar.from_lark('start: "a" B\nB: /b*c/\n'))
    assert changed is not first
    matcher = gad.GrammarMatcher(changed)
    assert matcher.accept_string("ac") and matcher.is_accepting()
    assert not gad.GrammarMatcher(first).accept_string("ac")


def test_save_and_load_round_trip(tmp_path):
    info = gad.TokenizerInfo.from_huggingface(gad.assets.load_tokenizer("gpt2"))
    compiled = gad.GrammarCompiler(info).compile(JSON)
    path = tmp_path / "json.npz"
    compiled.save(path)
    loaded = gad.CompiledGrammar.load(path, info)
    tokens = gad.assets.load_tokenizer("gpt2").encode('{"k": [1, "x\\n", {"y": null}]}')
    a, b = gad.GrammarMatcher(compiled), gad.GrammarMatcher(loaded)
    for token in tokens + [None]:
        assert np.array_equal(a.next_token_mask().numpy(), b.next_token_mask().numpy())
        if token is not None:
            assert a.accept_token(token) and b.accept_token(token)
    assert check_masks(gad.GrammarMatcher(loaded), tokens[:3]) == []


def test_load_rejects_other_tokenizer_and_damaged_files(tmp_path):
    info = gad.TokenizerInfo.from_vocab(TOY_VOCAB, eos_token_id=0)
    path = tmp_path / "g.npz"
    gad.GrammarCompiler(info).compile('start: "ab"+').save(path)
    other = gad.TokenizerInfo.from_vocab(TOY_VOCAB[:-1], eos_token_id=0)
    with pytest.raises(ConfigurationError, match="different tokenizer"):
        gad.CompiledGrammar.load(path, other)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigurationError, match="cannot load"):
        gad.CompiledGrammar.load(damaged, info)
    with pytest.raises(ConfigurationError, match="cannot load"):
        gad.CompiledGrammar.load(tmp_path / "missing.npz", info)


def test_packed_bitmask_matches_bool_mask():
    info = gad.TokenizerInfo.from_vocab(TOY_VOCAB, eos_token_id=0, vocab_size=len(TOY_VOCAB) + 13)
    matcher = gad.GrammarMatcher(gad.GrammarCompiler(info).compile('start: A (" " A)*\nA: /a+b?/\n'))
    bitmask = gad.allocate_token_bitmask(2, info.vocab_size)
    assert bitmask.shape == (2, (info.vocab_size + 31) // 32) and bitmask.dtype == torch.int32
    matcher.accept_string("aa")
    matcher.fill_next_token_bitmask(bitmask, 1)
    expected = matcher.next_token_mask()
    unpacked = [(int(bitmask[1, i // 32]) >> (i % 32)) & 1 == 1 for i in range(info.vocab_size)]
    assert unpacked == expected.tolist()
    assert (bitmask[0] == -1).all()  # untouched rows allow everything


def test_apply_token_bitmask_inplace_on_a_batch_with_padded_logits():
    vocab, padded = 70, 80
    rng = np.random.default_rng(0)
    masks = rng.random((3, vocab)) < 0.4
    bitmask = torch.stack([torch.from_numpy(gad.bitmask.pack_bool_mask(m).view(np.int32)) for m in masks])
    logits = torch.randn(3, padded)
    original = logits.clone()
    gad.apply_token_bitmask_inplace(logits, bitmask)
    expected = torch.full_like(original, float("-inf"))
    keep = torch.zeros(3, padded, dtype=torch.bool)
    keep[:, :vocab] = torch.from_numpy(masks)
    expected[keep] = original[keep]
    assert torch.equal(logits, expected)
    single = original[0].clone()
    gad.apply_token_bitmask_inplace(single, bitmask[0])
    assert torch.equal(single, expected[0])
    with pytest.raises(ConfigurationError):
        gad.apply_token_bitmask_inplace(logits, bitmask.to(torch.int64))
    with pytest.raises(ConfigurationError):
        gad.apply_token_bitmask_inplace(logits, bitmask[:2])


FIXED_SCHEMA = r"""
start: "{" WS? "\"name\"" WS? ":" WS? STRING WS? "," WS? "\"age\"" WS? ":" WS? NUMBER WS? "}"
STRING: /"[a-z]*"/
NUMBER: /[0-9]+/
WS: " "
"""


@pytest.mark.parametrize(
    "prefix, forced",
    [
        ("", b"{"),
        ("{", b""),  # a space or the key may come
        ("{ ", b'"name"'),
        ('{"na', b'me"'),
        ('{"name":"x",', b""),
        ('{"name":"x","age":', b""),
        ('{"name":"x","age":1', b""),  # more digits, a space or "}"
        ('{"name":"x","age":1 ', b"}"),
    ],
)
def test_forced_bytes(prefix, forced):
    matcher = toy_matcher(FIXED_SCHEMA)
    assert matcher.accept_string(prefix)
    got = matcher.forced_bytes()
    assert got == forced
    # Oracle: at each step of the forced run exactly one byte value is viable.
    probe = matcher.fork()
    for byte in got:
        viable = [b for b in range(256) if probe.fork().accept_bytes(bytes([b]))]
        assert viable == [byte] and not probe.is_accepting()
        probe.accept_bytes(bytes([byte]))
    if got:
        assert len([b for b in range(256) if probe.fork().accept_bytes(bytes([b]))]) != 1 or probe.is_accepting()


def test_forced_bytes_on_json_after_a_key():
    matcher = toy_matcher(JSON.replace("%ignore WS", ""))  # no free whitespace: ':' is forced
    assert matcher.accept_string('{"ab"')
    assert matcher.forced_bytes() == b":"


def test_masks_stay_exact_when_states_are_revisited():
    """Split confirmations are memoised on Earley sets; rolling back and taking another path
    must not reuse an answer that belongs to a different context."""
    info = gad.TokenizerInfo.from_huggingface(gad.assets.load_tokenizer("gpt2"))
    tokenizer = gad.assets.load_tokenizer("gpt2")
    compiled = gad.GrammarCompiler(info).compile(JSON)
    matcher = gad.GrammarMatcher(compiled)
    rng = random.Random(3)
    documents = ['{"a": [1, {"b": "c"}]}', '[{"x": []}, "y", 2.5]', '{"k": {"k": {"k": null}}}']
    for document in documents:
        tokens = tokenizer.encode(document)
        for token in tokens:
            assert matcher.accept_token(token)
        back = rng.randint(1, len(tokens))
        matcher.rollback(back)
        assert check_masks(matcher, tokens[len(tokens) - back : len(tokens) - back + 2]) == []
        matcher.reset()


def test_save_and_load_keeps_automata_not_built_from_their_regex(tmp_path):
    """A terminal whose DFA was built by other means (here: the shortest-match language of a lazy
    regex) must come back as it was, not as its regex's full-match language."""
    info = gad.TokenizerInfo.from_vocab(TOY_VOCAB + [b'"', b'"a"', b'b"'], eos_token_id=0)
    text = 'start: ESCAPED_STRING\n%import common.ESCAPED_STRING\n'
    path = tmp_path / "lazy.npz"
    gad.GrammarCompiler(info).compile(text).save(path)
    loaded = gad.GrammarMatcher(gad.CompiledGrammar.load(path, info))
    assert loaded.accept_string('"a"') and loaded.is_accepting()
    assert not loaded.accept_string('b"')  # `"a"b"` is not one lazy string
