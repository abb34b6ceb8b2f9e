"""AWRS: every weight estimator is properly weighted (``E[W | x] = Z``), exactly on enumerated
orderings and statistically on the implementation; tokens are exact draws from the masked model;
EOS only where the grammar is complete; `max_rejects` and empty constraints give weight 0 without
an exception. Statistical tests use fixed seeds and tolerances of 5 standard errors estimated
from the samples themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gad
from gad.errors import ConfigurationError
from gad.exact import exact_distribution
from gad.metrics import importance_estimate
from gad.lm import TableLM, UniformLM
from gad.samplers.awrs import ESTIMATORS, AWRSSampler, awrs_step

from problems import SKEWED_COMPILED
SAMPLED = [e for e in ESTIMATORS if e != "exact"]


def plackett_luce(p: np.ndarray, items: list[int]):
    """Every ordering of `items` with its probability as a draw without replacement from p."""
    if not items:
        yield (), 1.0
        return
    total = sum(p[i] for i in items)
    for i in items:
        for rest, prob in plackett_luce(p, [j for j in items if j != i]):
            yield (i,) + rest, p[i] / total * prob


def first_allowed(order: tuple[int, ...], allowed: set[int]) -> tuple[int | None, list[int]]:
    rejected = []
    for t in order:
        if t in allowed:
            return t, rejected
        rejected.append(t)
    return None, rejected


def random_case(seed: int, vocab: int = 8) -> tuple[np.ndarray, set[int]]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vocab, 0.5))
    allowed = set(rng.choice(vocab, size=int(rng.integers(1, vocab)), replace=False).tolist())
    return p, allowed


CASES = {
    "random-a": random_case(1),
    "random-b": random_case(2),
    "random-c": random_case(3),
    "one-allowed": (np.array([0.5, 0.3, 0.15, 0.05]), {2}),
    "rare-allowed": (np.array([0.6, 0.37, 0.02, 0.01]), {2, 3}),
}


# -- the formulas, on every ordering ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_two_run_and_recursive_formulas_are_properly_weighted_exactly(seed: int) -> None:
    """E[W | x] = Z for every x, summing over all orderings (Plackett–Luce) of a 5-token
    vocabulary: the paper's W = m / (|R1| + |R2| + 1) with the second run over V \\ R1, and the
    recursive W = P(x) + (m − P(x)) c(y). A second run over the whole vocabulary would be biased."""
    p, allowed = random_case(seed, vocab=5)
    z = sum(p[t] for t in allowed)
    vocab = list(range(5))
    mass = {x: 0.0 for x in allowed}
    two_run = {x: 0.0 for x in allowed}
    recursive = {x: 0.0 for x in allowed}
    whole_vocab = 0.0
    for order, prob in plackett_luce(p, vocab):
        x, r1 = first_allowed(order, allowed)
        assert x is not None
        mass[x] += prob
        m = 1 - sum(p[r] for r in r1)
        for order2, prob2 in plackett_luce(p, [t for t in vocab if t not in r1]):
            _, r2 = first_allowed(order2, allowed)
            two_run[x] += prob * prob2 * m / (len(r1) + len(r2) + 1)
        for order2, prob2 in plackett_luce(p, vocab):
            _, r2 = first_allowed(order2, allowed)
            whole_vocab += prob * prob2 * m / (len(r1) + len(r2) + 1)
        k = order.index(x)
        y_allowed = k + 1 < len(order) and order[k + 1] in allowed
        recursive[x] += prob * (p[x] + (m - p[x]) * y_allowed)
    for x in allowed:
        assert mass[x] == pytest.approx(p[x] / z, rel=1e-12)  # ARS draws exactly from P_c
        assert two_run[x] / mass[x] == pytest.approx(z, rel=1e-12)
        assert recursive[x] / mass[x] == pytest.approx(z, rel=1e-12)
    if len(allowed) < 5:
        assert whole_vocab < z * (1 - 1e-6)


# -- the implementation, statistically --------------------------------------------------------------


@pytest.mark.parametrize("estimator", SAMPLED)
@pytest.mark.parametrize("case", list(CASES))
def test_weights_are_unbiased_given_each_token(estimator: str, case: str) -> None:
    p, allowed = CASES[case]
    z = sum(p[t] for t in allowed)
    rng = np.random.default_rng(0)
    n = 3000
    tokens = np.empty(n, dtype=np.int64)
    weights = np.empty(n)
    for i in range(n):
        step = awrs_step(p, allowed.__contains__, rng, estimator=estimator)
        tokens[i], weights[i] = step.token, math.exp(step.log_weight)
    se = weights.std(ddof=1) / math.sqrt(n)
    assert abs(weights.mean() - z) <= 5 * se + 1e-12
    for x in allowed:
        q = p[x] / z
        frequency = np.mean(tokens == x)
        assert abs(frequency - q) <= 5 * math.sqrt(q * (1 - q) / n) + 1e-12
        given = weights[tokens == x]
        if len(given) >= 100:  # E[W | x] = Z: the weight does not depend on which token came
            assert abs(given.mean() - z) <= 5 * given.std(ddof=1) / math.sqrt(len(given)) + 1e-12


@pytest.mark.parametrize("estimator", SAMPLED)
def test_everything_allowed_gives_weight_one_after_one_check(estimator: str) -> None:
    p = np.array([0.4, 0.3, 0.2, 0.1])
    rng = np.random.default_rng(0)
    for _ in range(50):
        step = awrs_step(p, lambda t: True, rng, estimator=estimator)
        assert step.log_weight == pytest.approx(0.0, abs=1e-12)
        assert step.rejections == 0 and step.checks <= 2


def test_recursive_is_exact_when_one_token_is_allowed() -> None:
    p, allowed = CASES["one-allowed"]
    rng = np.random.default_rng(0)
    for _ in range(100):
        assert math.exp(awrs_step(p, allowed.__contains__, rng).log_weight) == pytest.approx(p[2], rel=1e-12)


@pytest.mark.parametrize("estimator", SAMPLED)
def test_nothing_allowed_gives_minus_inf_without_an_exception(estimator: str) -> None:
    p = np.array([0.5, 0.3, 0.2, 0.0])  # token 3 is allowed but has probability 0
    step = awrs_step(p, lambda t: t == 3, np.random.default_rng(0), estimator=estimator)
    assert step.token is None and step.log_weight == -math.inf
    assert step.checks == 3 and step.rejections == 3  # never checks a token of probability 0
    assert awrs_step(np.zeros(4), lambda t: True, np.random.default_rng(0), estimator=estimator).token is None


@pytest.mark.parametrize("estimator", SAMPLED)
@pytest.mark.parametrize("case", ["random-a", "rare-allowed"])
def test_mask_after_bounds_the_checks(estimator: str, case: str) -> None:
    """After one rejection in a run the step finishes with the whole mask: at most one checked
    rejection per run (plus the recursive estimator's one extra check), and for the recursive
    estimator W = Z exactly whenever it switched (its conditional expectation given x)."""
    p, allowed = CASES[case]
    z = sum(p[t] for t in allowed)
    mask = np.array([t in allowed for t in range(len(p))])
    rng = np.random.default_rng(0)
    steps = [
        awrs_step(p, allowed.__contains__, rng, estimator=estimator, mask=lambda: mask, mask_after=1) for _ in range(500)
    ]
    assert all(s.rejections <= 2 for s in steps) and any(s.masked for s in steps)
    if estimator == "recursive":
        assert all(math.exp(s.log_weight) == pytest.approx(z) for s in steps if s.masked)


# -- the implementation, exactly: every draw order enumerated ------------------------------------------


class ScriptedRace:
    """A `Race` that follows a given order (the tokens of `removed` and of probability 0 skipped)."""

    def __init__(self, order: tuple[int, ...], p: np.ndarray, removed=()) -> None:
        gone = set(removed)
        self.rest = [t for t in order if t not in gone and p[t] > 0]

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if not self.rest:
            raise StopIteration
        return self.rest.pop(0)

    def until_allowed(self, allowed: np.ndarray):
        before = []
        while self.rest:
            t = self.rest.pop(0)
            if allowed[t]:
                return before, t
            before.append(t)
        return before, None


class NeedSecondOrder(Exception):
    def __init__(self, removed) -> None:
        self.removed = tuple(removed)


def exact_moments(p: np.ndarray, allowed: set[int], **options) -> dict[int, float]:
    r"""``{t: E[W · 1[x = t]]}`` of `awrs_step` (the implementation itself), summing over every
    first-run order and, for "two-run", every second-run order over V \ R1, each with its
    Plackett–Luce probability. The step uses no other randomness for these estimators."""
    vocab = [t for t in range(len(p)) if p[t] > 0]
    mask = np.array([t in allowed for t in range(len(p))])
    moments = {t: 0.0 for t in allowed}

    def run(first, second=None):
        calls = []

        def race(q, rng, removed):
            calls.append(removed)
            if len(calls) == 1:
                return ScriptedRace(first, q, removed)
            if second is None:
                raise NeedSecondOrder(removed)
            return ScriptedRace(second, q, removed)

        return awrs_step(p, allowed.__contains__, None, mask=lambda: mask, race=race, **options)

    for order, prob in plackett_luce(p, vocab):
        try:
            outcomes = [(run(order), prob)]
        except NeedSecondOrder as need:
            rest = [t for t in vocab if t not in set(need.removed)]
            outcomes = [(run(order, order2), prob * prob2) for order2, prob2 in plackett_luce(p, rest)]
        for step, weight in outcomes:
            if step.token is not None:
                moments[step.token] += weight * math.exp(step.log_weight)
    return moments


EXACT_OPTIONS = [
    ("recursive", {}),
    ("recursive", {"mask_after": 1}),
    ("recursive", {"mask_after": 2}),
    ("recursive", {"max_rejects": 1}),
    ("recursive", {"max_rejects": 2}),
    ("recursive", {"max_rejects": 3, "mask_after": 2}),
    ("two-run", {}),
    ("two-run", {"mask_after": 1}),
    ("two-run", {"mask_after": 2}),
]


@pytest.mark.parametrize("estimator, options", EXACT_OPTIONS)
@pytest.mark.parametrize("seed", range(4))
def test_implementation_is_properly_weighted_exactly(estimator: str, options: dict, seed: int) -> None:
    """E[W · 1[x = t]] = P(t) for every allowed t — proper weighting, computed exactly through
    `awrs_step` itself over every draw order of a 5-token vocabulary: with and without the switch
    to the mask (`mask_after`) and the budget (`max_rejects`)."""
    p, allowed = random_case(seed, vocab=5)
    moments = exact_moments(p, allowed, estimator=estimator, **options)
    for t in allowed:
        assert moments[t] == pytest.approx(p[t], rel=1e-9), (t, moments)


def test_the_exact_check_sees_the_old_mask_after_bias() -> None:
    """The substitution W = Z at the switch (what gad did before) is biased for "two-run": the same
    enumeration over orders finds E[W | x] off by more than 5% — so the exact test above would
    have caught it."""
    worst = 0.0
    for seed in range(4):
        p, allowed = random_case(seed, vocab=5)
        z = sum(p[t] for t in allowed)
        vocab = list(range(5))
        total = mass = 0.0
        for order, prob in plackett_luce(p, vocab):
            x, r1 = first_allowed(order, allowed)
            mass += prob
            if len(r1) >= 1:  # mask_after=1: switched during the first run
                total += prob * z
                continue
            m = 1 - sum(p[r] for r in r1)
            for order2, prob2 in plackett_luce(p, [t for t in vocab if t not in r1]):
                _, r2 = first_allowed(order2, allowed)
                total += prob * prob2 * (z if len(r2) >= 1 else m / (len(r1) + len(r2) + 1))
        worst = max(worst, abs(total / mass - z) / z)
    assert worst > 0.05


# -- the implementation, statistically (the real Gumbel race), strong enough to see a 5% bias -------------

# A budget that often runs out (Z = 0.03 with max_rejects=2), and the two-run estimator where
# Z = 0.03, give weights too variable to see 5% with 20,000 draws (the test's own power check
# fails); they are checked exactly above instead.
STAT_OPTIONS = [
    (case, e, o)
    for case in ("random-b", "rare-allowed")
    for e in SAMPLED
    for o in ({}, {"mask_after": 1}, {"mask_after": 3}, {"max_rejects": 2}, {"max_rejects": 4, "mask_after": 2})
    if not (e == "two-run" and "max_rejects" in o)
    and not (case == "rare-allowed" and ("max_rejects" in o or e == "two-run"))
]


@pytest.mark.parametrize("case, estimator, options", STAT_OPTIONS)
def test_weights_are_properly_weighted_with_switch_and_budget(case: str, estimator: str, options: dict) -> None:
    """E[W · 1[x = t]] = P(t) within 4 standard errors, with enough draws that 4 standard errors
    of E[W] are below 5% of Z."""
    p, allowed = CASES[case]
    z = sum(p[t] for t in allowed)
    mask = np.array([t in allowed for t in range(len(p))])
    rng = np.random.default_rng(1)
    n = 20_000
    tokens = np.full(n, -1)
    weights = np.zeros(n)
    for i in range(n):
        step = awrs_step(p, allowed.__contains__, rng, estimator=estimator, mask=lambda: mask, **options)
        if step.token is not None:
            tokens[i], weights[i] = step.token, math.exp(step.log_weight)
    se = weights.std(ddof=1) / math.sqrt(n)
    assert 4 * se < 0.05 * z  # the test can see a 5% bias
    assert abs(weights.mean() - z) <= 4 * se
    for t in allowed:
        wt = np.where(tokens == t, weights, 0.0)
        assert abs(wt.mean() - p[t]) <= 4 * wt.std(ddof=1) / math.sqrt(n) + 1e-12, t


def test_two_run_refuses_a_budget() -> None:
    with pytest.raises(ConfigurationError, match="'two-run' estimator has no properly weighted form with `max_rejects`"):
        awrs_step(np.array([0.5, 0.5]), bool, np.random.default_rng(0), estimator="two-run", max_rejects=3)


@pytest.mark.parametrize("estimator", ["recursive", "geometric"])
def test_max_rejects_bounds_the_work(estimator: str) -> None:
    p = np.array([0.45, 0.45, 0.05, 0.05])
    allowed = {3}
    rng = np.random.default_rng(0)
    failed = 0
    for _ in range(300):
        step = awrs_step(p, allowed.__contains__, rng, estimator=estimator, max_rejects=1)
        assert step.rejections <= 2  # one per run
        if step.token is None:
            failed += 1
            assert step.log_weight == -math.inf
    assert failed > 200  # the first draw is rejected about 95% of the time


def test_argument_errors() -> None:
    p = np.array([0.5, 0.5])
    with pytest.raises(ConfigurationError, match="`estimator` has to be one of 'recursive', 'two-run'"):
        awrs_step(p, bool, np.random.default_rng(0), estimator="paper")
    with pytest.raises(ConfigurationError, match="`max_rejects` has to be None or a strictly positive int, but is 0"):
        awrs_step(p, bool, np.random.default_rng(0), max_rejects=0)
    with pytest.raises(ConfigurationError, match="needs the mask"):
        awrs_step(p, bool, np.random.default_rng(0), estimator="exact")
    with pytest.raises(ConfigurationError, match="`mask_after` needs `mask`"):
        awrs_step(p, bool, np.random.default_rng(0), mask_after=4)
    with pytest.raises(ConfigurationError, match="`mask_after` has to be None or a strictly positive int, but is -1"):
        AWRSSampler(UniformLM(3), SKEWED_COMPILED, mask_after=-1)
    with pytest.raises(ConfigurationError, match="`lm` has to be a gad.LanguageModel"):
        AWRSSampler("gpt2", SKEWED_COMPILED)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="`temperature` has to be a strictly positive float"):
        AWRSSampler(UniformLM(3), SKEWED_COMPILED, temperature=0)


# -- with a matcher ----------------------------------------------------------------------------------

AB = gad.TokenizerInfo.from_vocab([b"a", b"b", b"<eos>", b"<pad>"], eos_token_id=2, special_ids=[3])
AB_COMPILED = gad.GrammarCompiler(AB).compile(gad.Grammar.from_lark('start: "a" | "a" "b"'))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("prefix", [(), (0,)])
def test_eos_counts_only_where_the_grammar_is_complete(estimator: str, prefix: tuple[int, ...]) -> None:
    """After "" only "a" is allowed; after "a", "b" and EOS. The special token <pad> (most of the
    mass) and the padding id 4 of a model larger than the tokenizer are never checked."""
    lm = TableLM({(): [1, 1, 1, 6, 1], (0,): [1, 2, 3, 3, 1]}, vocab_size=5)
    sampler = AWRSSampler(lm, AB_COMPILED, estimator=estimator)
    matcher = gad.GrammarMatcher(AB_COMPILED)
    for t in prefix:
        assert matcher.accept_token(t)
    p = sampler.masses(lm.next_token_logprobs([list(prefix)]))[0]
    assert p[3] == 0 and p[4] == 0  # removed without a check
    allowed = {0} if not prefix else {1, 2}
    z = float(lm.next_token_logprobs([list(prefix)])[0].double().exp()[sorted(allowed)].sum())
    rng = np.random.default_rng(0)
    n = 2000 if estimator != "exact" else 50
    steps = [sampler.propose(p, matcher, rng) for _ in range(n)]
    assert matcher.num_accepted == len(prefix) and not matcher.is_terminated()  # propose leaves it as it was
    assert {s.token for s in steps} == allowed
    weights = np.array([math.exp(s.log_weight) for s in steps])
    if estimator == "exact":
        assert np.allclose(weights, z, rtol=1e-6)
        assert all(s.masked and s.checks == 0 for s in steps)
    else:
        # (+ 1e-6 · z: the model's float32 rows are renormalised in float64)
        assert abs(weights.mean() - z) <= 5 * weights.std(ddof=1) / math.sqrt(n) + 1e-6 * z
        assert max(s.checks for s in steps) <= 3


def test_sampled_sequences_estimate_z_and_follow_gcd() -> None:
    """Each token is an exact draw from the masked model, so sequences follow GCD (00000 half of
    the time on the skewed grammar); their weights average to Z = P(L(G))."""
    exact = exact_distribution(UniformLM(3), SKEWED_COMPILED, max_length=6)
    n = 2000
    samples = AWRSSampler(UniformLM(3), SKEWED_COMPILED).sample([], n=n, max_new_tokens=6, seed=0)
    assert all(s.complete and len(s.checks) == len(s.token_ids) for s in samples)
    frequency = sum(s.token_ids == (0, 0, 0, 0, 0, 2) for s in samples) / n
    assert abs(frequency - 0.5) <= 5 * math.sqrt(0.25 / n)
    w = np.exp([s.log_weight for s in samples])
    assert abs(w.mean() - exact.z) <= 5 * w.std(ddof=1) / math.sqrt(n)
    estimate = importance_estimate(samples)  # logprob_model − logprob_sampler is the weight
    assert estimate.log_z == pytest.approx(math.log(w.mean()), abs=1e-5)  # float32 model rows
    checks = np.mean([c for s in samples for c in s.checks])
    assert 1 <= checks <= 3


def test_seeds_make_sequences_independent_of_the_batch() -> None:
    sampler = AWRSSampler(UniformLM(3), SKEWED_COMPILED, estimator="two-run")
    batch = sampler.sample([], n=4, max_new_tokens=6, seed=7)
    for i in range(4):
        assert sampler.sample([], n=1, max_new_tokens=6, seed=7 + i)[0] == batch[i]
    assert sampler.sample([], n=4, max_new_tokens=6, seed=7) == batch


def test_a_failed_step_ends_the_sequence_with_weight_zero() -> None:
    """The model puts (next to) all its mass on tokens the grammar rejects: with max_rejects=1
    most sequences stop with finish_reason "rejected" and weight 0; none raises."""
    lm = TableLM({}, vocab_size=3, default=[0.0, 1.0, 1e-9])
    info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    compiled = gad.GrammarCompiler(info).compile('start: "0"+')
    samples = AWRSSampler(lm, compiled, max_rejects=1, mask_after=None).sample([], n=20, max_new_tokens=4, seed=0)
    assert all(s.finish_reason == "rejected" and s.log_weight == -math.inf and not s.complete for s in samples)
    # a cut sequence has weight 0 too
    cut = AWRSSampler(UniformLM(3), SKEWED_COMPILED).sample([], n=5, max_new_tokens=3, seed=0)
    assert all(s.finish_reason == "length" and s.log_weight == -math.inf for s in cut)


def test_temperature_comes_before_the_grammar() -> None:
    lm = TableLM({(): [1, 3, 1]}, vocab_size=3, default="uniform")
    sampler = AWRSSampler(lm, SKEWED_COMPILED, temperature=0.5, estimator="exact")
    p = sampler.masses(lm.next_token_logprobs([[]]))[0]
    assert p == pytest.approx(np.array([1, 9, 1]) / 11)  # P^(1/T), renormalised
    step = sampler.propose(p, gad.GrammarMatcher(SKEWED_COMPILED), np.random.default_rng(0))
    assert math.exp(step.log_weight) == pytest.approx(10 / 11)  # EOS is not allowed at the start
