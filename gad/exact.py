"""`gad.exact`: the exact grammar-constrained distribution, by enumeration — the ground truth.

For a language model P and a grammar G, the distribution every grammar-aligned sampler aims at is

    Q(w) = P(w) · 1[w ∈ L(G)] / Z,        Z = P(L(G)) = Σ_w P(w) · 1[w ∈ L(G)],

over token sequences w that end with EOS (Park et al. 2024, "Grammar-Aligned Decoding", §2).
Conditioned on a prefix u, ``Z`` is the *expected future grammaticality*
``c(u) = Σ_s P(s | u) · 1[us ∈ L(G)]`` that ASAp approximates (`gad.samplers.asap`).

`exact_distribution` enumerates the sentences depth-first over batches of prefixes (the children
of one batch form the next batches, so a KV-caching model extends its previous batch by one token
when they fit), pruning every token the grammar's mask rejects; EOS ends a sentence. The
enumeration is bounded by ``max_length`` tokens (EOS included), and whatever it cannot see is
*reported*, never silently dropped:

* ``open_mass`` — the probability of the prefixes still open at the bound (their sentences, if
  any, are longer than ``max_length``);
* ``pruned_mass`` — the probability of the prefixes dropped because ``P(u) < min_prob``.

So ``Z`` (the mass of the enumerated sentences) and ``Z + open_mass + pruned_mass`` bound
``P(L(G))``, and Q is exact for the length-bounded language ``{w ∈ L(G) : |w| ≤ max_length}`` when
``pruned_mass == 0``. That bounded Q is also exactly what ASAp converges to with
``max_new_tokens = max_length`` (it counts a sample cut at the limit as ungrammatical).

Works with any `gad.LanguageModel` (toy or Hugging Face); a Hugging Face model needs a non-empty
prompt. With the toy vocabulary ``{"0", "1", EOS}`` the grammar ``"00000" | "1" [01]{4}`` has
exactly 17 sentences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gad.constraint import Constraint, ConstraintLike, as_constraint_factory, next_token_mask
from gad.errors import ConfigurationError
from gad.lm import LanguageModel
from gad.samplers.base import temper

__all__ = ["ExactDistribution", "exact_distribution", "expected_future_grammaticality"]

TokenSeq = tuple[int, ...]


@dataclass(frozen=True)
class ExactDistribution:
    """The enumerated constrained distribution (see the module docstring).

    Attributes:
        logp: ``log P_T(w)`` for every enumerated sentence w (the generated tokens, `prefix`
            included, ending with an EOS id), under the model at the enumeration's temperature
            and *conditioned on the prefix* (``P(w) = P(s | u)`` for ``w = us``).
        logp_model: the same at temperature 1 (equal to `logp` when ``temperature == 1``): what
            samplers report as ``logprob_model`` (minus the prefix's own log-probability).
        open_mass: probability of the prefixes still open at ``max_length``.
        pruned_mass: probability of the prefixes dropped by ``min_prob``.
        max_length: the bound on ``len(w)`` (EOS included).
        prefix: the generated tokens the enumeration started from (u).
        temperature: T of ``P_T ∝ P^(1/T)`` (per step).
        expanded: how many prefixes were expanded (rows given to the LM).
    """

    logp: dict[TokenSeq, float]
    logp_model: dict[TokenSeq, float]
    open_mass: float
    pruned_mass: float
    max_length: int
    prefix: TokenSeq
    temperature: float
    expanded: int

    @property
    def z(self) -> float:
        """``Z = Σ_w P_T(w)`` over the enumerated sentences: ``P(L(G))``, or ``c(prefix)``, when
        `leftover` is 0; a lower bound otherwise."""
        return math.fsum(math.exp(v) for v in self.logp.values())

    @property
    def leftover(self) -> float:
        """``open_mass + pruned_mass``: the mass the enumeration could not resolve."""
        return self.open_mass + self.pruned_mass

    @property
    def z_bounds(self) -> tuple[float, float]:
        """``(Z, Z + leftover)``, which brackets the probability of the unbounded language."""
        z = self.z
        return z, min(1.0, z + self.leftover)

    def probs(self) -> dict[TokenSeq, float]:
        """``Q(w) = P_T(w) / Z`` for each enumerated sentence (sums to 1; empty when Z = 0)."""
        z = self.z
        if z <= 0:
            return {}
        return {w: math.exp(v) / z for w, v in self.logp.items()}

    def marginal(self, key: Callable[[TokenSeq], Hashable]) -> dict[Hashable, float]:
        """Q pushed through ``key`` (e.g. token ids → text: different tokenizations add up)."""
        out: dict[Hashable, float] = {}
        for w, q in self.probs().items():
            k = key(w)
            out[k] = out.get(k, 0.0) + q
        return out

    def expected_logprob(self) -> float:
        """``E_{w∼Q}[log P(w)]`` under the model at temperature 1 (the "ideal" value of the
        expectation metric, `gad.metrics.expected_logprob_curve`)."""
        return math.fsum(q * self.logp_model[w] for w, q in self.probs().items())

    def sample(self, n: int, seed: int = 0) -> list[TokenSeq]:
        """`n` independent draws from Q (for the finite-sample floor of the KL metric)."""
        items = list(self.probs().items())
        if not items:
            raise ConfigurationError("the distribution is empty (Z = 0): nothing to sample")
        rng = np.random.default_rng(seed)
        weights = np.array([q for _, q in items])
        picks = rng.choice(len(items), size=n, p=weights / weights.sum())
        return [items[i][0] for i in picks]

    def __len__(self) -> int:
        return len(self.logp)

    def __iter__(self) -> Iterator[TokenSeq]:
        return iter(self.logp)

    def __repr__(self) -> str:
        return (
            f"ExactDistribution({len(self)} sentences, Z={self.z:.6g}, open_mass={self.open_mass:.3g}, "
            f"pruned_mass={self.pruned_mass:.3g}, max_length={self.max_length})"
        )


def exact_distribution(
    lm: LanguageModel,
    compiled: ConstraintLike,
    prompt_ids: Sequence[int] = (),
    *,
    max_length: int,
    prefix: Sequence[int] = (),
    temperature: float = 1.0,
    min_prob: float = 0.0,
    batch_size: int = 256,
    max_expanded: int = 1_000_000,
    progress: Callable[[int, int], object] | None = None,
) -> ExactDistribution:
    """Enumerate ``Q(s | u) ∝ P_T(s | u) · 1[us ∈ L(G)]`` for ``u = prefix``, up to ``|us| ≤ max_length``.

    Args:
        lm: any `gad.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (its EOS ids end a sentence), or
            any constraint factory (`gad.constraint`).
        prompt_ids: the context given to the model, never to the grammar.
        max_length: the bound on the number of generated tokens, `prefix` and EOS included (what
            ``max_new_tokens`` is to a sampler).
        prefix: generated tokens to condition on; the result's ``z`` is then ``c(prefix)``. A
            prefix the grammar rejects gives an empty distribution (Z = 0).
        temperature: T > 0; each step uses ``P_T(t | v) ∝ P(t | v)^(1/T)``, applied before the
            grammar, as the samplers do.
        min_prob: drop prefixes (not sentences) whose probability ``P_T(v | u)`` is below this,
            adding it to ``pruned_mass`` (0: exact).
        batch_size: the most prefixes per LM call.
        max_expanded: raise `ConfigurationError` instead of expanding more prefixes than this.
        progress: called with (length, number of prefixes) before each batch of prefixes.

    Returns:
        an `ExactDistribution`.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigurationError(f"`max_length` has to be a strictly positive int, but is {max_length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ConfigurationError(f"`temperature` has to be a strictly positive float, but is {temperature!r}")
    if not isinstance(min_prob, (int, float)) or not 0 <= min_prob < 1:
        raise ConfigurationError(f"`min_prob` has to be a float in [0, 1), but is {min_prob!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"`batch_size` has to be a strictly positive int, but is {batch_size!r}")
    constraints = as_constraint_factory(compiled)
    if not constraints.eos_token_ids:
        raise ConfigurationError("the grammar's TokenizerInfo has no EOS token: no sentence could ever end")
    prompt = [int(t) for t in prompt_ids]
    start = tuple(int(t) for t in prefix)
    if len(start) >= max_length:
        raise ConfigurationError(f"the prefix has {len(start)} tokens, which leaves none of `max_length` = {max_length}")
    eos = frozenset(constraints.eos_token_ids)
    temperature = float(temperature)
    log_min = math.log(min_prob) if min_prob > 0 else -math.inf

    logp: dict[TokenSeq, float] = {}
    logp_model: dict[TokenSeq, float] = {}
    pruned = 0.0
    expanded = 0
    matcher = constraints()
    if not all(matcher.accept_token(t) for t in start) or matcher.is_terminated():
        return ExactDistribution({}, {}, 0.0, 0.0, max_length, start, temperature, 0)

    # Depth-first over chunks of open prefixes of equal length: a chunk's children form the next
    # chunks, so a KV-caching model (`HuggingFaceLM`) extends its previous batch by one token
    # whenever a chunk's children fit in one batch, instead of re-reading the prompt per row.
    # An entry is (tokens, matcher, log P_T, log P).
    Entry = tuple[TokenSeq, Constraint, float, float]
    stack: list[list[Entry]] = [[(start, matcher, 0.0, 0.0)]]
    open_mass = 0.0
    while stack:
        chunk = stack.pop()
        depth = len(chunk[0][0])
        if depth >= max_length:  # open at the bound: reported, not expanded
            open_mass += math.fsum(math.exp(lp_t) for _, _, lp_t, _ in chunk)
            continue
        if progress is not None:
            progress(depth, len(chunk))
        expanded += len(chunk)
        if expanded > max_expanded:
            raise ConfigurationError(
                f"the enumeration needs more than max_expanded={max_expanded} prefixes: lower "
                "`max_length`, raise `min_prob`, or raise `max_expanded`"
            )
        rows = lm.next_token_logprobs([prompt + list(tokens) for tokens, *_ in chunk]).detach().cpu().double().numpy()
        tempered = rows if temperature == 1.0 else temper(rows, temperature)
        children: list[Entry] = []
        for b, (tokens, parent, lp_t, lp_m) in enumerate(chunk):
            allowed = np.flatnonzero(next_token_mask(parent, constraints.vocab_size, rows.shape[-1]))
            step_t = tempered[b, allowed].tolist()
            step_m = rows[b, allowed].tolist()
            for token, st, sm in zip(allowed.tolist(), step_t, step_m):
                if st == -math.inf:
                    continue  # probability exactly 0: nothing to lose
                w = tokens + (token,)
                if token in eos:
                    logp[w] = lp_t + st
                    logp_model[w] = lp_m + sm
                elif lp_t + st < log_min:
                    pruned += math.exp(lp_t + st)
                else:
                    child = parent.fork()
                    child.accept_token(token)
                    children.append((w, child, lp_t + st, lp_m + sm))
        # Pushed in reverse, so that the first chunk of children is expanded next.
        stack.extend(children[lo : lo + batch_size] for lo in reversed(range(0, len(children), batch_size)))
    return ExactDistribution(
        logp, logp if temperature == 1.0 else logp_model, open_mass, pruned, max_length, start, temperature, expanded
    )


def expected_future_grammaticality(
    lm: LanguageModel,
    compiled: ConstraintLike,
    prefix: Sequence[int],
    prompt_ids: Sequence[int] = (),
    *,
    max_length: int,
    temperature: float = 1.0,
) -> float:
    """``c(u) = Σ_s P_T(s | u) · 1[us ∈ L(G), |us| ≤ max_length]`` for ``u = prefix``, exactly.

    The length-bounded c is what ASAp's ĉ over-approximates when it samples with
    ``max_new_tokens = max_length``. Raises `ConfigurationError` if the enumeration cannot be
    exact (it never prunes here).
    """
    dist = exact_distribution(lm, compiled, prompt_ids, max_length=max_length, prefix=prefix, temperature=temperature)
    return dist.z


def as_probabilities(target: ExactDistribution | Mapping[Hashable, float]) -> dict[Hashable, float]:
    """``Q`` as a dict: an `ExactDistribution`'s `probs()`, or a mapping normalised to sum 1."""
    if isinstance(target, ExactDistribution):
        return dict(target.probs())
    total = math.fsum(target.values())
    if not total > 0:
        raise ConfigurationError("the target distribution has no mass")
    return {k: v / total for k, v in target.items()}
