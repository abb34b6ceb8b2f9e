"""MCMC: Metropolis–Hastings over complete sentences, with GCD continuations as proposals.

Gonzalez et al., "Constrained Sampling for Language Models Should Be Easy: An MCMC Perspective"
(arXiv 2506.05754; code large-loris-models/casa).

**Target.** ``π(w) = Q_N(w) ∝ P_T(w) · 1[w ∈ L(G), |w| ≤ N]`` with ``P_T(w) = Π_i P_T(w_i | w_<i)``
(temperature applied per step first, as every gad sampler does; N = ``max_new_tokens``, EOS
included; `gad.exact` enumerates it).

**Proposal.** From the current sentence x (length L, EOS included) choose a cut ``i ∈ {0 … L−1}``
with probability ``ρ(i | x)``, keep ``x_<i`` and complete it with GCD (`gad.samplers.gcd`: each
token from the tempered model under the mask, ``g(t | u) = P_T(t | u) · 1[t allowed] / Z(u)``):

* ``"prefix"``: ρ uniform over the L positions;
* ``"priority"``: ``ρ(i | x) ∝ exp(H_i) − 1``, ``H_i`` the entropy of g at position i (a position
  the grammar forces, ``H_i = 0``, is never cut; uniform if every position is forced) — casa's
  choice;
* ``"restart"``: ``i = 0`` — an independent GCD sample (independence Metropolis–Hastings);
* or a callable ``proposal(state) -> weights`` over the L positions of an `MCMCState`.

The probability of proposing x' from x sums over every cut that could have produced it — any
``i`` up to the length ℓ of the common prefix of x and x' (and below L):

    q(x' | x) = Σ_{i ≤ min(ℓ, L−1)} ρ(i | x) · Π_{j ≥ i} g(x'_j | x'_<j),

computed from the g each token was drawn from (the same tempered, masked distribution — no extra
model call). **Acceptance:** ``α = min(1, π(x') q(x | x') / (π(x) q(x' | x)))``; a proposal
that did not end within N tokens has π = 0 and is rejected; a reverse move that is impossible
(``q(x | x') = 0``, e.g. a custom ρ that never cuts where x' would need it) gives α = 0. The chain
therefore has π as its stationary distribution, and is ergodic whenever ρ gives every position
positive probability ("prefix", "restart"). Each chain starts from a GCD sample (if that one
is cut by the limit, π = 0, the chain accepts its first complete proposal).

**Batches.** `n` chains run together: each MH step is one batched GCD continuation of all the
chains' cut prefixes (one model call per token step; a prefix's constraint state is a `fork` of
the chain's, rolled back). `sample` returns each chain's state after `steps` steps; `run` also
returns the whole trace and the acceptance rate. The chains are independent; each is a draw of
π only in the limit of many steps (the guarantee is "consistent").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gad.constraint import Constraint, ConstraintLike
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers.base import Sample, Sampler, check_sampling_args, draw, seed_for, temper

__all__ = ["PROPOSALS", "MCMCResult", "MCMCSampler", "MCMCState"]

#: The built-in proposals (see the module docstring).
PROPOSALS = ("prefix", "priority", "restart")


@dataclass(frozen=True, eq=False)
class MCMCState:
    """One chain's sentence with what the acceptance ratio needs, position by position.

    Attributes:
        token_ids: the tokens, ending with EOS when `complete`.
        logp: ``float64[L]``, ``log P_T(token_i | prefix)`` (tempered, no mask): ``log π`` up to
            a constant is their sum.
        logq: ``float64[L]``, ``log g(token_i | prefix)``: the GCD distribution each was drawn from.
        entropy: ``float64[L]``, the entropy of g at each position ("priority").
        logp_model: ``float64[L]``, ``log P(token_i | prefix)`` at temperature 1.
        complete: whether the sentence ended with EOS within the limit.
        constraint: the constraint after the last token (forked and rolled back for a cut).
    """

    token_ids: tuple[int, ...]
    logp: np.ndarray = field(repr=False)
    logq: np.ndarray = field(repr=False)
    entropy: np.ndarray = field(repr=False)
    logp_model: np.ndarray = field(repr=False)
    complete: bool
    constraint: Constraint = field(repr=False)

    @property
    def log_target(self) -> float:
        """``log P_T(w)`` if complete (π up to its normaliser), −inf otherwise."""
        return float(self.logp.sum()) if self.complete else -math.inf

    def to_sample(self) -> Sample:
        """The state as a `Sample`: ``logprob_sampler`` is ``Σ log g``, the GCD draws that made it."""
        return Sample(
            self.token_ids, float(self.logp_model.sum()), float(self.logq.sum()), "eos" if self.complete else "length"
        )


@dataclass(frozen=True)
class MCMCResult:
    """What `MCMCSampler.run` returns.

    Attributes:
        chains: for each chain, its state before the first step and after each step, as Samples
            (``chains[c][k]`` after k steps).
        accepted: for each chain, whether each step's proposal was accepted.
        proposal_complete: for each chain, whether each step's proposal was a sentence.
        states: each chain's last `MCMCState` (pass them as ``init`` to continue the chains
            without scoring them again).
    """

    chains: tuple[tuple[Sample, ...], ...]
    accepted: tuple[tuple[bool, ...], ...]
    proposal_complete: tuple[tuple[bool, ...], ...]
    states: tuple[MCMCState, ...] = field(default=(), repr=False, compare=False)

    @property
    def acceptance_rate(self) -> float:
        """Accepted proposals over all proposals."""
        total = sum(len(a) for a in self.accepted)
        return sum(sum(a) for a in self.accepted) / total if total else math.nan

    def final(self) -> list[Sample]:
        """Each chain's last state."""
        return [chain[-1] for chain in self.chains]

    def after(self, steps: int) -> list[Sample]:
        """Each chain's state after `steps` steps."""
        return [chain[steps] for chain in self.chains]


class MCMCSampler(Sampler):
    """Metropolis–Hastings with GCD proposals, chains batched (see the module docstring).

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (or a constraint factory); its
            EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution first (target and proposals).
        proposal: "prefix", "priority" (default), "restart", or a callable
            ``proposal(state: MCMCState) -> weights`` (non-negative, one per position, not all 0).
        steps: MH steps per chain in `sample` (default 10).

    >>> import gad
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> samples = gad.MCMCSampler(gad.UniformLM(3), compiled, proposal="prefix", steps=20).sample(
    ...     [], n=400, max_new_tokens=6, seed=0)
    >>> sum(s.token_ids == (0, 0, 0, 0, 0, 2) for s in samples) < 60   # GCD: about 200; Q: 24
    True
    """

    name = "mcmc"
    guarantee = "consistent"
    summary = "Metropolis-Hastings over sentences with GCD proposals: -n chains, consistent in the steps"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        temperature: float = 1.0,
        proposal: str | Callable[[MCMCState], np.ndarray] = "priority",
        steps: int = 10,
    ) -> None:
        super().__init__(lm, compiled, temperature=temperature)
        if not callable(proposal) and proposal not in PROPOSALS:
            raise ConfigurationError(
                f"`proposal` has to be one of {', '.join(repr(p) for p in PROPOSALS)} or a callable, but is {proposal!r}"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigurationError(f"`steps` has to be a non-negative int, but is {steps!r}")
        self.proposal = proposal
        self.steps = steps
        #: Work done: model calls (forward passes) and rows, masks, proposals, accepted proposals.
        self.counts = {"model_calls": 0, "model_rows": 0, "masks": 0, "proposals": 0, "accepted": 0}

    def progress_total(self, n: int, max_new_tokens: int) -> int:
        return (self.steps + 1) * max_new_tokens

    # -- the proposal and its probability -------------------------------------------------------------

    def cut_weights(self, state: MCMCState) -> np.ndarray:
        """``ρ(· | x)``: ``float64[L]``, the probability of cutting at each position (sums to 1)."""
        size = len(state.token_ids)
        if callable(self.proposal):
            weights = np.asarray(self.proposal(state), dtype=np.float64)
            if weights.shape != (size,) or not np.all(np.isfinite(weights)) or np.any(weights < 0) or not weights.sum() > 0:
                raise ConfigurationError(
                    f"the `proposal` callable has to return {size} finite non-negative weights, not all 0, "
                    f"but returned {weights!r}"
                )
        elif self.proposal == "restart":
            weights = np.zeros(size)
            weights[0] = 1.0
        elif self.proposal == "priority":
            weights = np.expm1(np.maximum(state.entropy, 0.0))
            if not weights.sum() > 0:
                weights = np.ones(size)
        else:
            weights = np.ones(size)
        return weights / weights.sum()

    def log_proposal(self, current: MCMCState, proposed: MCMCState) -> float:
        """``log q(proposed | current)``: every cut up to their common prefix (see the module
        docstring), each continued by the GCD draws that `proposed` records."""
        rho = self.cut_weights(current)
        common = _common_prefix(current.token_ids, proposed.token_ids)
        last = min(common, len(current.token_ids) - 1)
        suffix = np.cumsum(proposed.logq[::-1])[::-1]  # suffix[i] = Σ_{j ≥ i} log g(x'_j)
        with np.errstate(divide="ignore"):
            terms = np.log(rho[: last + 1]) + suffix[: last + 1]
        top = float(terms.max()) if terms.size else -math.inf
        if top == -math.inf:
            return -math.inf
        return top + math.log(float(np.exp(terms - top).sum()))

    def log_acceptance(self, current: MCMCState, proposed: MCMCState) -> float:
        """``log α``: ``min(0, log π(x') + log q(x | x') − log π(x) − log q(x' | x))``; 0 when the
        current state is not a sentence (π = 0) and the proposal is, −inf when the proposal is
        not a sentence or its reverse move is impossible."""
        if not proposed.complete:
            return -math.inf
        if not current.complete:
            return 0.0
        forward = self.log_proposal(current, proposed)
        backward = self.log_proposal(proposed, current)
        if backward == -math.inf:
            return -math.inf
        return min(0.0, proposed.log_target + backward - current.log_target - forward)

    # -- running ---------------------------------------------------------------------------------------

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[Sample]:
        """`n` chains' states after ``steps`` MH steps each (see `run`)."""
        return self.run(prompt_ids, n, steps=self.steps, max_new_tokens=max_new_tokens, seed=seed, progress=progress).final()

    def run(
        self,
        prompt_ids: Sequence[int],
        n_chains: int = 1,
        *,
        steps: int | None = None,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
        init: Sequence[Sequence[int] | MCMCState] | None = None,
    ) -> MCMCResult:
        """Run `n_chains` chains for `steps` MH steps each (default: the sampler's ``steps``).

        Args:
            prompt_ids: the context; it is given to the model but never to the grammar.
            n_chains: how many chains, run as one batch.
            steps: MH steps per chain.
            max_new_tokens: N, the length limit of every sentence (EOS included).
            seed: chain c draws from ``numpy.random.default_rng`` seeded by ``(seed, c)`` (cuts,
                GCD tokens and acceptances); None draws a fresh seed.
            progress: called with 1 after each token step of each batched continuation.
            init: the chains' first states, one per chain: a token sequence (a sentence ends
                with EOS; anything else counts as π = 0), or an `MCMCState` of this sampler and
                prompt (``MCMCResult.states``: continues a run); None starts each chain from a
                GCD sample.
                Chains started from draws of π stay exact draws of π after every step.

        Raises:
            ConfigurationError: `init` has another length than `n_chains`, a sequence is longer
                than `max_new_tokens`, or the constraint rejects one of its tokens.
        """
        steps = self.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigurationError(f"`steps` has to be a non-negative int, but is {steps!r}")
        check_sampling_args(n=n_chains, max_new_tokens=max_new_tokens, seed=seed)
        prompt = self.check_prompt(prompt_ids)
        base = self.base_seed(seed)
        rngs = [np.random.default_rng(seed_for(base, c)) for c in range(n_chains)]
        if init is None:
            start = [_Partial.start(self.constraints()) for _ in range(n_chains)]
            states = self._continue(prompt, start, rngs, max_new_tokens, progress)
        else:
            if len(init) != n_chains:
                raise ConfigurationError(f"`init` has {len(init)} sequences for {n_chains} chains")
            sequences = [w.token_ids if isinstance(w, MCMCState) else w for w in init]
            if any(len(w) > max_new_tokens for w in sequences):
                raise ConfigurationError(f"an `init` sequence is longer than max_new_tokens={max_new_tokens}")
            eos = set(self.eos_ids)
            if any(int(t) in eos for w in sequences for t in list(w)[:-1]):
                raise ConfigurationError("an `init` sequence has EOS before its end")
            given = {c: w for c, w in enumerate(init) if isinstance(w, MCMCState)}
            scored = iter(self._score(prompt, [[int(t) for t in w] for w in init if not isinstance(w, MCMCState)]))
            states = [given[c] if c in given else next(scored) for c in range(n_chains)]
        chains = [[s.to_sample()] for s in states]
        accepted: list[list[bool]] = [[] for _ in range(n_chains)]
        complete: list[list[bool]] = [[] for _ in range(n_chains)]
        for _ in range(steps):
            cuts = [int(draw(self.cut_weights(s), rng.random())) for s, rng in zip(states, rngs)]
            partials = [_Partial.cut(s, i) for s, i in zip(states, cuts)]
            proposals = self._continue(prompt, partials, rngs, max_new_tokens, progress)
            for c, (current, proposed) in enumerate(zip(states, proposals)):
                log_alpha = self.log_acceptance(current, proposed)
                ok = log_alpha == 0.0 or (log_alpha > -math.inf and math.log(rngs[c].random()) < log_alpha)
                if ok:
                    states[c] = proposed
                accepted[c].append(ok)
                complete[c].append(proposed.complete)
                chains[c].append(states[c].to_sample())
            self.counts["proposals"] += n_chains
            self.counts["accepted"] += sum(a[-1] for a in accepted)
        return MCMCResult(
            tuple(tuple(c) for c in chains), tuple(tuple(a) for a in accepted), tuple(tuple(c) for c in complete),
            tuple(states),
        )

    def score(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> MCMCState:
        """The `MCMCState` of a given token sequence (each position's logp, logq and entropy
        computed with the model and the constraint), e.g. to check the acceptance ratio. Raises
        `ConfigurationError` if the constraint rejects a token."""
        return self._score(self.check_prompt(prompt_ids), [[int(t) for t in token_ids]])[0]

    def _score(self, prompt: list[int], sequences: list[list[int]]) -> list[MCMCState]:
        """The states of given sequences, scored position by position in one batch."""
        partials = [_Partial.start(self.constraints()) for _ in sequences]
        for j in range(max((len(w) for w in sequences), default=0)):
            rows = [c for c, w in enumerate(sequences) if len(w) > j]
            logprobs = self._logprobs(prompt, [partials[c] for c in rows])
            masks = self.masks([partials[c].constraint for c in rows], logprobs.shape[-1])
            for b, c in enumerate(rows):
                self._record(partials[c], sequences[c][j], logprobs[b], masks[b])
        return [p.state(bool(w) and w[-1] in self.eos_ids) for p, w in zip(partials, sequences)]

    # -- internals -------------------------------------------------------------------------------------

    def _logprobs(self, prompt: list[int], partials: list[_Partial]) -> np.ndarray:
        logprobs = self.lm.next_token_logprobs([prompt + p.tokens for p in partials])
        self.counts["model_calls"] += 1
        self.counts["model_rows"] += len(partials)
        return logprobs.detach().cpu().numpy()

    def _record(self, partial: _Partial, token: int | None, logprobs: np.ndarray, mask: np.ndarray) -> None:
        """Append `token` to `partial`, with its logp, logq and the entropy of g there, from the
        model's log-probabilities and the mask at that position."""
        self.counts["masks"] += 1
        tempered = temper(logprobs, self.temperature)
        masked = np.where(mask, tempered, -np.inf)
        log_z = float(np.logaddexp.reduce(masked))
        if log_z == -math.inf:
            raise DeadEndError("the model gives probability 0 to every token the grammar allows next; nothing can be sampled")
        logq = masked - log_z
        q = np.exp(logq)
        if token is None:
            token = draw(q, partial.rng.random())  # type: ignore[union-attr]
        elif not mask[token] or q[token] <= 0:
            raise ConfigurationError(f"token {token} is not allowed (or has probability 0) after {partial.tokens}")
        if not partial.constraint.accept_token(token):
            raise GadError(f"internal error: the grammar rejected token {token}, which its mask allowed")
        live = q > 0
        partial.tokens.append(token)
        partial.logp.append(float(tempered[token]))
        partial.logq.append(float(logq[token]))
        partial.entropy.append(float(-(q[live] * logq[live]).sum()))
        partial.logp_model.append(float(logprobs[token]))

    def _continue(
        self,
        prompt: list[int],
        partials: list[_Partial],
        rngs: list[np.random.Generator],
        max_new_tokens: int,
        progress: Callable[[int], object] | None,
    ) -> list[MCMCState]:
        """Complete every partial sequence with GCD, in one batch; chain c draws from ``rngs[c]``."""
        eos = set(self.eos_ids)
        done: dict[int, MCMCState] = {}
        active = [c for c, p in enumerate(partials) if len(p.tokens) < max_new_tokens]
        for c, p in enumerate(partials):
            if c not in active:
                done[c] = p.state(False)
        while active:
            logprobs = self._logprobs(prompt, [partials[c] for c in active])
            masks = self.masks([partials[c].constraint for c in active], logprobs.shape[-1])
            still = []
            for b, c in enumerate(active):
                p = partials[c]
                p.rng = rngs[c]
                self._record(p, None, logprobs[b], masks[b])
                token = p.tokens[-1]
                if token in eos:
                    done[c] = p.state(True)
                elif len(p.tokens) >= max_new_tokens:
                    done[c] = p.state(False)
                else:
                    still.append(c)
            active = still
            if progress is not None:
                progress(1)
        return [done[c] for c in range(len(partials))]

    def __repr__(self) -> str:
        return f"MCMCSampler({self.lm!r}, proposal={self.proposal!r}, steps={self.steps}, temperature={self.temperature})"


class _Partial:
    """A sequence being (re)generated: its tokens so far, their per-position values, its constraint."""

    __slots__ = ("tokens", "logp", "logq", "entropy", "logp_model", "constraint", "rng")

    def __init__(self, tokens: list[int], logp: list[float], logq: list[float], entropy: list[float],
                 logp_model: list[float], constraint: Constraint) -> None:  # fmt: skip
        self.tokens = tokens
        self.logp = logp
        self.logq = logq
        self.entropy = entropy
        self.logp_model = logp_model
        self.constraint = constraint
        self.rng: np.random.Generator | None = None  # where the next GCD token's uniform comes from

    @classmethod
    def start(cls, constraint: Constraint) -> _Partial:
        return cls([], [], [], [], [], constraint)

    @classmethod
    def cut(cls, state: MCMCState, i: int) -> _Partial:
        """`state`'s first `i` tokens, with a forked constraint rolled back to them."""
        constraint = state.constraint.fork()
        constraint.rollback(len(state.token_ids) - i)
        return cls(
            list(state.token_ids[:i]), state.logp[:i].tolist(), state.logq[:i].tolist(), state.entropy[:i].tolist(),
            state.logp_model[:i].tolist(), constraint,
        )  # fmt: skip

    def state(self, complete: bool) -> MCMCState:
        return MCMCState(
            tuple(self.tokens), np.array(self.logp), np.array(self.logq), np.array(self.entropy),
            np.array(self.logp_model), complete, self.constraint,
        )  # fmt: skip


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
