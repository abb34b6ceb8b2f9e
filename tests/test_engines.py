"""gad's samplers and processors over xgrammar and llguidance (`gad.engines`).

Oracles: the brute-force mask checker `gad.testing.check_masks` (every token fed alone to a fork)
for each adapter; gad's own masks (exact, checked elsewhere) where the languages agree; the
documented language differences asserted token by token; `gad.exact` for the samplers
(chi-square at a sample size that sees a 5% bias, 5-standard-error bounds on unbiased
estimates); Python's `re` and lark's own parser for `generate`, the logits processor and the
CLI with a tiny Hugging Face model. The peers are installed in CI (`make test`), so nothing here is skipped.
"""

from __future__ import annotations

import json
import math
import weakref

import lark
import numpy as np
import pytest
import torch

import gad
from gad.constraint import ConstraintFactory, next_token_mask
from gad.engines import ENGINES, GrammarSource, constraint_factory, grammar_source
from gad.errors import ConfigurationError, GrammarError, RollbackError, TokenError
from gad.exact import exact_distribution
from gad.lm import UniformLM, random_hf_model
from gad.metrics import chi_square_power, chi_square_test
from gad.testing import check_masks

from problems import AB, AB_GRAMMAR, BITS, DEAD_END_INFO, DEAD_END_LM, SKEWED

PEERS = ["xgrammar", "llguidance"]
DEAD_END_GRAMMAR = 'start: "a" "b"* "c" | "a" "d"'
JSON_LARK = gad.grammars.resolve("json").read_text()

# A small JSON vocabulary: single bytes and a few multi-byte tokens that cross terminal boundaries.
JSON_TOKENS = [b"{", b"}", b"[", b"]", b":", b",", b'"', b"a", b"b", b"1", b"0", b"-", b".", b" ", b"\n",
               b"\\", b'"a"', b'":', b", ", b"ab", b"true", b"null", b'"}', b"<eos>"]  # fmt: skip
JSON_INFO = gad.TokenizerInfo.from_vocab(JSON_TOKENS, eos_token_id=len(JSON_TOKENS) - 1)
T = {t: i for i, t in enumerate(JSON_TOKENS)}


def ids(*tokens: bytes) -> list[int]:
    return [T[t] for t in tokens]


def allowed(factory: ConstraintFactory, prefix: list[int]) -> set[bytes]:
    """The tokens (by bytes; EOS as b"<eos>") a fresh constraint allows after `prefix`."""
    c = factory()
    for t in prefix:
        assert c.accept_token(t), t
    return {JSON_TOKENS[i] for i in np.flatnonzero(next_token_mask(c, factory.vocab_size))}


@pytest.fixture(scope="module")
def json_factories() -> dict[str, ConstraintFactory]:
    return {e: constraint_factory(JSON_LARK, JSON_INFO, engine=e) for e in ENGINES}


# -- the contract, against the brute-force oracle ----------------------------------------------------

DOCUMENT = ids(b"{", b'"a"', b":", b" ", b"[", b"1", b", ", b"-", b"0", b".", b"1", b"]", b",", b'"', b"b", b"\\",
               b'"', b'":', b"true", b"}", b"<eos>")  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "grammar, info, walk",
    [
        (AB_GRAMMAR, AB, [0, 1, 1, 3]),
        (SKEWED, BITS, [1, 0, 1, 1, 0, 2]),
        (DEAD_END_GRAMMAR, DEAD_END_INFO, [0, 1, 1, 2, 4]),
        (JSON_LARK, JSON_INFO, DOCUMENT),
    ],
    ids=["ab", "skewed", "dead-end", "json"],
)
def test_masks_equal_the_brute_force_oracle_and_gads(engine: str, grammar: str, info, walk: list[int]) -> None:
    """Each engine's mask is exactly the set of tokens its own `accept_token` takes (before every
    token of the walk and after EOS), and on these grammars it equals gad's mask — except on JSON
    for exactly the whitespace tokens, before the first token (the peers) and after the closing
    ``}`` (llguidance), as the next tests spell out."""
    factory = constraint_factory(grammar, info, engine=engine)
    assert check_masks(factory(), walk, decode=factory.decode) == []
    reference = constraint_factory(grammar, info, engine="gad")
    mine, gads = factory(), reference()
    whitespace_differs = set()
    if grammar is JSON_LARK and engine != "gad":
        whitespace_differs = {0, len(walk) - 1} if engine == "llguidance" else {0}
    for step, token in enumerate([*walk, None]):
        a, b = next_token_mask(mine, info.vocab_size), next_token_mask(gads, info.vocab_size)
        only_gad = {JSON_TOKENS[i] for i in np.flatnonzero(b & ~a)} if grammar is JSON_LARK else set(np.flatnonzero(b & ~a))
        assert not (a & ~b).any(), (engine, step)
        assert only_gad == ({b" ", b"\n"} if step in whitespace_differs else set()), (engine, step)
        if token is not None:
            assert mine.accept_token(token) and gads.accept_token(token)
    assert mine.is_terminated() and not next_token_mask(mine, info.vocab_size).any()


@pytest.mark.parametrize("engine", PEERS)
def test_a_rejected_token_leaves_the_state_unchanged(engine: str, json_factories) -> None:
    factory = json_factories[engine]
    c = factory()
    assert c.accept_token(T[b"{"])
    before = next_token_mask(c, factory.vocab_size)
    rejected = [t for t in range(factory.vocab_size) if not before[t]]
    assert rejected
    for t in rejected:
        assert not c.accept_token(t)
    assert np.array_equal(next_token_mask(c, factory.vocab_size), before)
    assert c.accept_token(T[b'"a"']) and c.accept_token(T[b":"])  # and it goes on
    assert not c.accept_token(JSON_INFO.eos_token_ids[0])  # EOS where the text is no sentence


@pytest.mark.parametrize("engine", PEERS)
def test_rollback_fork_eos_and_bad_ids(engine: str, json_factories) -> None:
    factory = json_factories[engine]
    V, eos = factory.vocab_size, factory.eos_token_ids[0]
    c = factory()
    assert c.accept_token(T[b"1"])  # a number: a sentence that can go on
    assert c.is_accepting() and not c.is_terminated()
    twin = c.fork()
    assert twin.accept_token(eos) and twin.is_terminated() and not twin.is_accepting()
    assert not twin.accept_token(T[b"0"]) and not next_token_mask(twin, V).any()
    assert not c.is_terminated() and c.accept_token(T[b"0"])  # the original did not move
    twin.rollback(1)  # EOS counts as one token
    assert not twin.is_terminated() and twin.is_accepting() and twin.accept_token(eos)
    twin.rollback(2)
    assert np.array_equal(next_token_mask(twin, V), next_token_mask(factory(), V))
    with pytest.raises(RollbackError):
        twin.rollback(1)
    with pytest.raises(TokenError):
        c.accept_token(V)
    with pytest.raises(TokenError):
        c.accept_token(-1)
    with pytest.raises(ConfigurationError):
        c.fill_next_token_bitmask(torch.zeros((1, 5), dtype=torch.int32))


def test_bits_beyond_the_vocabulary_are_clear(json_factories) -> None:
    """xgrammar sets the unused bits of the last word; the adapter clears them (V = 24 here)."""
    for engine in ENGINES:
        bitmask = torch.full((1, 1), -1, dtype=torch.int32)
        json_factories[engine]().fill_next_token_bitmask(bitmask, 0)
        assert int(bitmask[0, 0]) >> JSON_INFO.vocab_size == 0, engine


# -- where the languages differ (documented in the adapters) -------------------------------------------


def test_no_whitespace_before_the_first_token_in_the_peers(json_factories) -> None:
    """Lark's %ignore allows whitespace at both ends in gad; xgrammar's converter and llguidance
    put it between terminals only. Everything else at the start is the same."""
    gads = allowed(json_factories["gad"], [])
    assert {b" ", b"\n"} <= gads
    for engine in PEERS:
        assert allowed(json_factories[engine], []) == gads - {b" ", b"\n"}, engine


def test_llguidance_allows_no_whitespace_after_a_finished_document(json_factories) -> None:
    """After a top-level object or array nothing but EOS can follow in llguidance; gad and
    xgrammar still allow the %ignore'd whitespace there."""
    for prefix in (ids(b"{", b'"a"', b":", b"1", b"}"), ids(b"[", b"1", b"]")):
        eos_and_ws = {b"<eos>", b" ", b"\n"}
        assert allowed(json_factories["gad"], prefix) == eos_and_ws
        assert allowed(json_factories["xgrammar"], prefix) == eos_and_ws
        assert allowed(json_factories["llguidance"], prefix) == {b"<eos>"}


def test_llguidance_lexes_where_gad_and_xgrammar_are_scannerless() -> None:
    """``NAME "or" NAME`` on "aord": gad and xgrammar read a|or|d, a sentence; llguidance's
    lexer takes the longest NAME, "aord", and still wants "or"."""
    info = gad.TokenizerInfo.from_vocab([b"a", b"o", b"r", b"d", b"<eos>"], eos_token_id=4)
    grammar = 'start: NAME "or" NAME\nNAME: /[a-z]+/'
    for engine, eos_allowed in (("gad", True), ("xgrammar", True), ("llguidance", False)):
        c = constraint_factory(grammar, info, engine=engine)()
        for t in (0, 1, 2, 3):
            assert c.accept_token(t)
        assert bool(next_token_mask(c, 5)[4]) is eos_allowed, engine
        assert c.is_accepting() is eos_allowed


def test_json_schema_whitespace_is_bounded_in_gad_only() -> None:
    """gad's JSON Schema grammar allows at most 16 whitespace characters between tokens; the
    peers any number. Additional properties are allowed by all three (the spec's default)."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for engine, spaces in (("gad", 16), ("xgrammar", 40), ("llguidance", 40)):
        c = constraint_factory(schema, JSON_INFO, engine=engine)()
        assert c.accept_token(T[b"{"])
        taken = sum(c.accept_token(T[b" "]) for _ in range(40))
        assert taken == spaces, engine
        d = constraint_factory(schema, JSON_INFO, engine=engine)()
        assert all(d.accept_token(t) for t in ids(b"{", b'"', b"b", b'":', b"1", b"}")), engine


# -- inputs and errors ---------------------------------------------------------------------------------


def test_grammar_sources() -> None:
    assert grammar_source({"type": "integer"}) == GrammarSource("json_schema", '{"type": "integer"}')
    assert grammar_source(gad.Grammar.from_regex("a+b")) == GrammarSource.regex("a+b")
    assert grammar_source(gad.Grammar.from_lark(AB_GRAMMAR)) == GrammarSource.lark(AB_GRAMMAR)
    assert grammar_source("json") == GrammarSource.lark(JSON_LARK)
    assert grammar_source(gad.Grammar.from_json_schema({"type": "integer"})).kind == "json_schema"
    for engine in ENGINES:  # a regex through each engine: a whole-string match
        c = constraint_factory(GrammarSource.regex("(ab)+"), AB, engine=engine)()
        assert c.accept_token(2) and c.is_accepting() and c.accept_token(0) and not c.is_accepting(), engine
    with pytest.raises(ConfigurationError, match="engine"):
        constraint_factory(AB_GRAMMAR, AB, engine="outlines")
    with pytest.raises(ConfigurationError, match="CompiledGrammar"):
        constraint_factory(gad.GrammarCompiler(AB).compile(gad.Grammar.from_lark(AB_GRAMMAR)), AB, engine="xgrammar")
    with pytest.raises(ConfigurationError, match="Hugging Face tokenizer"):
        constraint_factory(AB_GRAMMAR, AB, engine="llguidance", engine_tokenizer=True)
    for engine in PEERS:
        with pytest.raises(GrammarError, match=engine):
            constraint_factory('start: "a" undefined_rule', AB, engine=engine)


def test_a_missing_engine_names_the_extra(monkeypatch) -> None:
    import sys

    import gad.engines as engines

    monkeypatch.setitem(sys.modules, "xgrammar", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "gad.engines.xgrammar_engine", raising=False)
    monkeypatch.setattr(engines, "_cache", weakref.WeakKeyDictionary())  # no factory cached before
    with pytest.raises(ConfigurationError, match=r"pip install 'gad\[engines\]'"):
        constraint_factory(AB_GRAMMAR, BITS, engine="xgrammar")


def test_factories_are_cached_per_tokenizer_and_grammar(json_factories) -> None:
    assert constraint_factory(JSON_LARK, JSON_INFO, engine="xgrammar") is json_factories["xgrammar"]
    assert json_factories["llguidance"].fingerprint != json_factories["xgrammar"].fingerprint


# -- the samplers on each engine, against gad.exact --------------------------------------------------

N = 3000
ALPHA = 1e-3


@pytest.fixture(scope="module")
def problems() -> dict:
    """name: (lm, {engine: factory}, max_new_tokens, exact Q)."""
    out = {}
    for name, lm, grammar, info, limit in (
        ("skewed", UniformLM(3), SKEWED, BITS, 6),
        ("dead-end", DEAD_END_LM, DEAD_END_GRAMMAR, DEAD_END_INFO, 6),
    ):
        factories = {e: constraint_factory(grammar, info, engine=e) for e in ENGINES}
        out[name] = (lm, factories, limit, exact_distribution(lm, factories["gad"], max_length=limit))
    return out


def test_the_chi_square_test_sees_a_5_percent_bias(problems) -> None:
    for name, (_, _, _, exact) in problems.items():
        assert chi_square_power(exact, N, bias=0.05, alpha=ALPHA, trials=100) >= 0.9, name


@pytest.mark.parametrize("engine", ENGINES)
def test_exact_enumeration_is_the_same_on_every_engine(engine: str, problems) -> None:
    for lm, factories, limit, exact in problems.values():
        mine = exact_distribution(lm, factories[engine], max_length=limit)
        assert mine.logp.keys() == exact.logp.keys()
        assert all(math.isclose(mine.logp[w], exact.logp[w], abs_tol=1e-9) for w in exact.logp)


@pytest.mark.parametrize("engine", PEERS)
def test_gcd_draws_the_masked_model(engine: str, problems) -> None:
    """GCD under a uniform model on the skewed grammar: "00000" half of the time, each of the 16
    others 1/32 (the mask's distortion, derived by hand) — and not Q."""
    lm, factories, limit, exact = problems["skewed"]
    samples = gad.GCDSampler(lm, factories[engine]).sample([], n=N, max_new_tokens=limit, seed=1)
    target = {w: (0.5 if w == (0, 0, 0, 0, 0, 2) else 1 / 32) for w in exact.logp}
    assert chi_square_test(samples, target).p_value > ALPHA
    assert chi_square_test(samples, exact).p_value < ALPHA


@pytest.mark.parametrize("engine", PEERS)
def test_cars_samples_are_draws_of_q(engine: str, problems) -> None:
    lm, factories, limit, exact = problems["dead-end"]
    samples = gad.CARSSampler(lm, factories[engine]).sample([], n=N, max_new_tokens=limit, seed=2)
    result = chi_square_test(samples, exact)
    assert len(samples) == N and result.outside == 0 and result.p_value > ALPHA, result


@pytest.mark.parametrize("engine", PEERS)
def test_asap_converges_to_q(engine: str, problems) -> None:
    """Once ASAp's trie is complete (long before the second half), its draws are exact draws of
    Q: the second half passes the chi-square test; GCD's samples fail it (previous test)."""
    lm, factories, limit, exact = problems["skewed"]
    sampler = gad.ASApSampler(lm, factories[engine], batch_size=16)
    samples = sampler.sample([], n=2 * N, max_new_tokens=limit, seed=3)
    assert sampler.trie([], limit).root.value == pytest.approx(exact.z, rel=1e-9)
    assert chi_square_test(samples[N:], exact).p_value > ALPHA


@pytest.mark.parametrize("engine", PEERS)
def test_smc_unnormalised_posterior_is_unbiased(engine: str, problems) -> None:
    """E[Ẑ · π̂(w)] = P(w) · 1[w ∈ L(G)] for every sentence of the dead-end problem, within 5
    standard errors estimated from 150 independent runs of 16 particles (EOS forced at the limit)."""
    lm, factories, limit, exact = problems["dead-end"]
    smc = gad.SMC(lm, factories[engine])
    runs = [smc.run([], 16, max_new_tokens=limit, seed=r) for r in range(150)]
    assert sum(len(r.resampled_at) for r in runs) > 0
    for w, logp in exact.logp.items():
        values = np.array([math.exp(r.log_marginal_likelihood) * r.posterior(key=lambda p: p.token_ids).get(w, 0.0)
                           for r in runs])  # fmt: skip
        se = values.std(ddof=1) / math.sqrt(len(values))
        assert abs(values.mean() - math.exp(logp)) <= 5 * se + 1e-6, (w, values.mean(), math.exp(logp))


@pytest.mark.parametrize("engine", PEERS)
def test_mcmc_chains_started_at_q_stay_at_q(engine: str, problems) -> None:
    """Q is stationary for the MH kernel over each engine's GCD proposals: chains started at
    exact draws of Q are still draws of Q after 3 steps, and they do move."""
    lm, factories, limit, exact = problems["dead-end"]
    sampler = gad.MCMCSampler(lm, factories[engine], proposal="prefix")
    result = sampler.run([], N, steps=3, max_new_tokens=limit, seed=4, init=exact.sample(N, seed=5))
    assert result.acceptance_rate > 0.05
    assert chi_square_test(result.after(3), exact).p_value > ALPHA


# -- real tokenizers: the vocabulary as each engine reads it -------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    from gad.assets import load_tokenizer

    tokenizer = load_tokenizer("smollm2")
    return tokenizer, gad.TokenizerInfo.from_huggingface(tokenizer)


def test_special_tokens_inside_strings_only_with_xgrammars_own_tokenizer(smollm2) -> None:
    """SmolLM2, inside a JSON string: with the vocabulary read by gad (the default) no engine
    allows an added token such as ``<|im_start|>``; xgrammar's own converter
    (``engine_tokenizer=True``) reads it as text and allows it. Outside the special tokens the
    masks are gad's."""
    tokenizer, info = smollm2
    special = tokenizer.convert_tokens_to_ids("<|im_start|>")
    quote = tokenizer.convert_tokens_to_ids('"')
    masks = {}
    for name, engine, native in (("gad", "gad", False), ("xgrammar", "xgrammar", False),
                                 ("llguidance", "llguidance", False), ("xgrammar native", "xgrammar", True)):  # fmt: skip
        factory = constraint_factory(JSON_LARK, tokenizer, engine=engine, engine_tokenizer=native)
        c = factory()
        assert c.accept_token(quote)
        masks[name] = next_token_mask(c, info.vocab_size)
        if not native:
            assert not masks[name][list(factory.never_allowed)].any(), name
    for name in ("xgrammar", "llguidance"):
        assert np.array_equal(masks[name], masks["gad"]), name
    assert masks["xgrammar native"][special] and not masks["gad"][special]
    extra = set(np.flatnonzero(masks["xgrammar native"] & ~masks["gad"]))
    assert special in extra and extra <= info.special_ids and not (masks["gad"] & ~masks["xgrammar native"]).any()


# -- generate and the logits processor with a tiny Hugging Face model ---------------------------------

ANSWER = 'start: ("yes" | "no") ", " /[a-z]{2,4}/ "."'
ANSWER_RE = r"(yes|no), [a-z]{2,4}\."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A byte-level BPE tokenizer (256 bytes + <|endoftext|>) and a random Llama over it."""
    from transformers import GPT2Tokenizer

    from gad.tokenizer import _gpt2_bytes_to_unicode

    folder = tmp_path_factory.mktemp("tiny")
    table = _gpt2_bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)} | {"<|endoftext|>": 256}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = GPT2Tokenizer.from_pretrained(folder)
    model = random_hf_model(257, seed=0)
    model.generation_config.eos_token_id = 256
    return model, tokenizer


@pytest.mark.parametrize("engine", PEERS)
@pytest.mark.parametrize("sampler", ["gcd", "smc", "asap"])
def test_generate_on_each_engine(tiny, engine: str, sampler: str) -> None:
    """Every sentence of the grammar is at most 11 tokens long, so every sample completes within
    16; each is a sentence (Python's re and lark's own parser agree), and SMC's weights are finite."""
    import re

    model, tokenizer = tiny
    results = gad.generate(model, tokenizer, "Answer:", ANSWER, sampler=sampler, n=4, max_new_tokens=16,
                           seed=0, engine=engine, chat_template=False)  # fmt: skip
    parser = lark.Lark(ANSWER, parser="earley", lexer="dynamic")
    for r in results:
        assert r.complete and re.fullmatch(ANSWER_RE, r.text), r
        parser.parse(r.text)
        assert r.token_ids[-1] == 256 and math.isfinite(r.logprob_model)


def test_generate_refuses_what_needs_gads_engine(tiny) -> None:
    model, tokenizer = tiny
    with pytest.raises(ConfigurationError, match="jump_forward"):
        gad.generate(model, tokenizer, "x", ANSWER, engine="xgrammar", jump_forward=True)
    with pytest.raises(ConfigurationError, match="engine"):
        gad.generate(model, tokenizer, "x", ANSWER, engine="outlines")


@pytest.mark.parametrize("engine", PEERS)
def test_logits_processor_on_each_engine(tiny, engine: str) -> None:
    import re

    model, tokenizer = tiny
    factory = constraint_factory(ANSWER, tokenizer, engine=engine, model=model)
    processor = gad.GrammarLogitsProcessor(factory)
    prompts = torch.tensor([[65, 66]] * 3)
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), logits_processor=[processor],
                         do_sample=True, max_new_tokens=16, pad_token_id=256, eos_token_id=256)  # fmt: skip
    assert processor.is_complete(out).tolist() == [True] * 3
    for row in out[:, 2:].tolist():
        text = bytes(t for t in row if t < 256).decode()
        assert re.fullmatch(ANSWER_RE, text), text


def test_cli_engine_option(tiny, tmp_path, capsys) -> None:
    from gad.cli import main

    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    grammar = tmp_path / "answer.lark"
    grammar.write_text(ANSWER)
    status = main(["generate", "--grammar", str(grammar), "--prompt", "x", "--model", str(tmp_path), "-n", "2",
                   "--max-new-tokens", "16", "--json", "-q", "--no-chat-template", "--engine", "llguidance"])  # fmt: skip
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(lines) == 2 and all(line["complete"] for line in lines)
    assert main(["generate", "--grammar", str(grammar), "--prompt", "x", "--engine", "xgrammar", "--stream"]) == 2
