"""CARS: constrained adaptive rejection sampling — exact samples of the model under the grammar.

Parys, Vaidya, Berg-Kirkpatrick and D'Antoni, "Constrained Adaptive Rejection Sampling" (ICML
2026, arXiv 2510.01902; reference code pparys/cars).

**Target.** ``Q_N(w) ∝ P_T(w) · 1[w ∈ L(G), |w| ≤ N]`` (N = ``max_new_tokens``, EOS included;
`gad.exact` enumerates it). Every sample CARS returns as complete is an exact draw from Q_N, and
the samples are independent.

**The trie of excluded mass.** CARS keeps the same trie as ASAp (`gad.samplers.asap`): a node u
stores ``P_T(t | u)`` over the tokens the mask allows after u and, for each, ``θ(ut)``: 1 until
ut is visited, then the child's own ``θ(ut) = Σ_t' P_T(t' | ut) · θ(ut t')``. θ(u) is exactly the
probability, under P_T, of the continuations of u not yet *known* to be dead: whatever a mask
rejected (and, at depth N − 1, everything but EOS) has been subtracted. The set of excluded
continuations E only grows, and contains no sentence of Q_N's support.

**A proposal and its acceptance.** An attempt descends from the root. At node u, reached by
choosing u when its parent held ``e(u) = θ(u)`` at that moment, it draws one uniform r and

* rejects the attempt if ``r · e(u) ≥ θ(u)`` (the draw fell into mass excluded since);
* otherwise takes the token t with ``Σ_{t' < t} P_T(t' | u) θ(ut') ≤ r · e(u) < Σ_{t' ≤ t} …``.

So t is chosen with probability ``P_T(t | u) · θ(ut) / e(u)``, and an attempt that reaches EOS
(θ = 1) has probability ``Π_i P_T(w_i | w_<i) θ(w_≤i) / e(w_<i) = P_T(w) / e(root)`` — the θ
telescope because each e is the θ recorded one step before. That is ``P_T`` restricted to the
sentences, up to a constant: conditioned on acceptance, w ∼ Q_N. Drawing from the unconstrained
model and rejecting at the first invalid token is the same procedure with an empty trie; the
trie only removes mass that could never be accepted, so the acceptance probability of an
attempt, ``Z / θ(root)``, only rises (towards 1 as the trie fills).

**Batches, and why the samples are independent.** `batch_size` attempts descend together (one
model call per step for the rows at nodes new to the trie, as ASAp). New nodes are expanded
immediately — each new node's mask is computed once, its θ is its allowed mass — but nothing is
pushed up the trie until the batch is over: within a batch the proposal is fixed by the trie as
it was at the start (a node first met in this batch acts as unvisited, ``e = 1``), so the
attempts of one batch are independent draws from one proposal, their accepted ones independent
draws from Q_N whichever rows they are. After the batch every new node's θ is pushed up.

**Persistence.** The trie is ASAp's, saved and loaded in the same format (`save`, `load`; an ASAp
trie can warm-start CARS and the reverse). ``max_nodes`` bounds it: beyond the bound, nodes are
expanded for the attempt that reaches them but never kept nor pushed up — still exact, the trie
just stops learning there.

**Cost.** An attempt costs one step per token until it is accepted or rejected; a model call
only at nodes new to the trie, a mask only there. `stats` reports attempts, the acceptance rate,
model calls and masks per accepted sample. ``max_attempts`` bounds the attempts per requested
sample; a sample that runs out is returned as its last rejected attempt, with
``finish_reason="rejected"`` (incomplete), never passed off as a draw of Q_N.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gad.constraint import ConstraintLike
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers.asap import ExpectedFuturesTrie, TrieNode, TrieSampler, TrieStore, _Row
from gad.samplers.base import Sample, check_sampling_args, draw

__all__ = ["CARSSampler"]


class CARSSampler(TrieSampler):
    """Exact samples by adaptive rejection with a persistent trie of excluded mass (see the
    module docstring).

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the grammar compiled for the model's tokenizer (or a constraint factory); its
            EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution first: the target is the
            tempered model restricted to the grammar.
        batch_size: how many attempts descend together (default 8); rounds are shortened when
            fewer accepted samples are still needed.
        max_nodes: bound on each trie's nodes (None: unbounded).
        store: continue from these tries (an ASAp or CARS `TrieStore`, e.g. `TrieStore.load`).
        max_attempts: the most attempts per requested sample (default 1000).

    >>> import gad
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> sampler = gad.CARSSampler(gad.UniformLM(3), compiled)
    >>> samples = sampler.sample([], n=1700, max_new_tokens=6, seed=0)
    >>> 70 < sum(s.token_ids == (0, 0, 0, 0, 0, 2) for s in samples) < 130   # Q: 1/17, so 100
    True
    """

    name = "cars"
    guarantee = "exact"
    summary = "constrained adaptive rejection sampling: exact, independent draws from Q"

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        *,
        temperature: float = 1.0,
        batch_size: int = 8,
        max_nodes: int | None = None,
        store: TrieStore | None = None,
        max_attempts: int = 1000,
    ) -> None:
        super().__init__(lm, compiled, temperature=temperature, batch_size=batch_size, max_nodes=max_nodes, store=store)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"`max_attempts` has to be a strictly positive int, but is {max_attempts!r}")
        self.max_attempts = max_attempts
        self.counts.update({"attempts": 0, "accepted": 0, "tokens": 0})

    def stats(self) -> dict[str, float]:
        """The tries' size (`TrieStore.stats`) and the work so far: ``attempts``, ``accepted``
        (attempts that reached EOS, each an exact draw; a batch's draws beyond the `n` asked for
        are dropped), ``acceptance_rate``, ``model_calls`` (forward passes) and ``model_rows``, ``masks``,
        ``tokens`` (steps of every attempt; each is one grammar check), and per accepted sample
        ``model_calls_per_sample``, ``masks_per_sample``, ``checks_per_sample``."""
        out = dict(self.store.stats())
        c = self.counts
        out.update(c)
        accepted = c["accepted"]
        out["acceptance_rate"] = accepted / c["attempts"] if c["attempts"] else math.nan
        for key, name in (("model_calls", "model_calls_per_sample"), ("masks", "masks_per_sample"),
                          ("tokens", "checks_per_sample")):  # fmt: skip
            out[name] = c[key] / accepted if accepted else math.inf
        return out

    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[Sample]:
        """Draw `n` exact samples of ``Q_N`` after `prompt_ids`, updating the trie.

        ``logprob_sampler`` of a complete sample is ``Σ_i log(P_T(w_i | w_<i) θ(w_≤i) / e(w_<i))
        = log P_T(w) − log θ(root)``: the probability that one attempt proposes it (rejections
        included), θ(root) as the attempt began.

        Args:
            prompt_ids: the context; it is given to the model but never to the grammar.
            n: how many samples.
            max_new_tokens: N, the length limit (EOS included); part of the trie's key.
            seed: attempt k of the trie (counting every attempt it recorded, across calls) draws
                from a generator seeded by ``(seed, k)``; None draws a fresh seed.
            progress: called with 1 after each step of each batch of attempts.

        Raises:
            DeadEndError: no sentence within `max_new_tokens` has positive probability (θ of the
                root is 0), or the model gives probability 0 to every token the grammar allows.
        """
        check_sampling_args(n=n, max_new_tokens=max_new_tokens, seed=seed)
        prompt = self.check_prompt(prompt_ids)
        trie = self.trie(prompt, max_new_tokens)
        base = self.base_seed(seed)
        accepted: list[Sample] = []
        last_rejected: list[Sample] = []
        budget = n * self.max_attempts
        tried = 0
        successes = 0
        while len(accepted) < n and tried < budget:
            needed = n - len(accepted)
            rate = min(1.0, (self.counts["accepted"] + 1) / (self.counts["attempts"] + 1))
            size = max(1, min(self.batch_size, budget - tried, math.ceil(needed / rate)))
            rows = self._rows(trie, base, size)
            self._round(trie, prompt, rows, progress)
            tried += size
            trie.num_samples += size
            for row in rows:
                sample = Sample(tuple(row.tokens), row.logp_model, row.logp_sampler, row.finish)  # type: ignore[arg-type]
                if row.finish == "eos":
                    trie.num_complete += 1
                    successes += 1
                    if len(accepted) < n:
                        accepted.append(sample)
                else:
                    last_rejected.append(sample)
        self.counts["attempts"] += tried
        self.counts["accepted"] += successes
        missing = n - len(accepted)
        return accepted + last_rejected[len(last_rejected) - missing :] if missing else accepted

    def _round(
        self, trie: ExpectedFuturesTrie, prompt: list[int], rows: list[_Row], progress: Callable[[int], object] | None
    ) -> None:
        """One batch of attempts from the trie as it is now; new nodes are pushed up at the end."""
        eos = set(self.eos_ids)
        new: list[TrieNode] = []
        active = rows
        try:
            for _ in range(trie.max_length):
                new += self._expand(trie, prompt, active, push=False)
                still = []
                for r in active:
                    token = self._step(trie, r)
                    if token is None:
                        r.finish = "rejected"
                        continue
                    if not r.constraint.accept_token(token):
                        raise GadError(f"internal error: the grammar rejected token {token}, which its mask allowed")
                    if token in eos:
                        r.finish = "eos"
                    elif len(r.tokens) >= trie.max_length:  # cannot happen: θ = 0 past the limit
                        r.finish = "rejected"
                    else:
                        still.append(r)
                self.counts["tokens"] += len(active)
                active = still
                if progress is not None:
                    progress(1)
                if not active:
                    break
        finally:
            for node in new:
                trie.propagate(node)

    def _step(self, trie: ExpectedFuturesTrie, row: _Row) -> int | None:
        """One step of an attempt: the next token (the row moved to its node), or None if the
        attempt is rejected here."""
        node = row.node
        weights = node.weights()  # P_T(t | u) · θ(ut)
        theta = node.value  # = Σ weights; exactly what the parent's θ entry holds once pushed up
        if node.parent is None:  # no rejection at the root: e(root) = θ(root)
            if not theta > 0:
                raise DeadEndError(
                    f"no sentence of the grammar within max_new_tokens={trie.max_length} tokens has positive "
                    "probability under the model: nothing can be accepted"
                )
            expected = theta
        else:
            expected = row.expected
        target = row.uniform() * expected
        if not target < theta:
            return None
        i = draw(weights, target / theta)
        token = int(node.ids[i])  # type: ignore[index]
        row.tokens.append(token)
        row.logp_model += float(node.logp[i])  # type: ignore[index]
        row.logp_sampler += math.log(float(weights[i]) / expected)
        row.expected = float(node.c[i])  # type: ignore[index]
        if token not in self.eos_ids:
            row.node = trie.child(node, i)
        return token

    def __repr__(self) -> str:
        return f"CARSSampler({self.lm!r}, temperature={self.temperature}, batch_size={self.batch_size}, {self.stats()})"
