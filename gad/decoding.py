"""The GCD decoding loop behind `gad.generate`'s batches of prompts, top-k / top-p, jump-forward,
and `gad.stream`.

It draws exactly what `gad.samplers.gcd.GCDSampler` draws — sequence i of a prompt uses its own
generator seeded with ``seed + i``, one uniform number per sampled token, inverse-CDF sampling
from ``q(t) ∝ P_T(t | u) · 1[t allowed]`` — and adds, all optional:

- **several prompts in one batch**: every prompt's sequences share each model call; the results
  of prompt j are those of a call with prompt j alone.
- **top-k / top-p after the grammar**: the temperature acts on the model's distribution, the
  grammar masks it, and top-k / top-p truncate what is left, as transformers' warpers do after
  its processors: ``q(t) ∝ P_T(t | u) · 1[t allowed] · 1[t ∈ K(u)]``, where ``K(u)`` is the
  `top_k` most likely allowed tokens, then the smallest most-likely set of them with mass ≥
  `top_p` of the masked distribution. (Truncating before the grammar would leave no token at all
  wherever the grammar insists on something the model ranks low — typically EOS once a sentence
  is complete: with SmolLM2, `top_p=0.95` dead-ends on most short answers.)
- **jump-forward**: where the grammar forces the next bytes (`GrammarMatcher.forced_bytes`, e.g.
  ``": "`` after a key of a fixed schema), they become tokens without a sampling step. The forced
  bytes are tokenized canonically — by the tokenizer's own encoder when the tokens it gives spell
  exactly those bytes, else by greedy longest match over the vocabulary — and the last of those
  tokens is held back, so the model itself chooses how the forced text joins what follows (a
  single forced token is therefore never jumped). The jumped tokens are run through the model
  with the sampled token before them, in one forward pass (`LanguageModel.extend_logprobs`).

What the results report stays exact. ``logprob_model`` is ``Σ log P(t | prefix)`` over *every*
token, jumped ones included (they are scored by the model, not assumed). ``logprob_sampler`` is
``Σ log q`` over the tokens that were drawn; a jumped token is not drawn (its probability under
the procedure is 1), so it adds 0. Jump-forward changes what is sampled only through the choice
of tokenization: GCD without it may spell forced text with other tokens (any token the mask
allows). Under greedy decoding the two give the same tokens exactly when, at every jumped
position, the most likely allowed token is the canonical one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

import torch

from gad.constraint import ConstraintLike, as_constraint_factory, next_token_mask
from gad.errors import ConfigurationError, DeadEndError, GadError
from gad.lm import LanguageModel
from gad.samplers import Sample
from gad.tokenizer import TokenizerInfo

__all__ = ["Decoder", "ForcedTokenizer", "truncate"]


def truncate(logprobs: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """``logprobs`` (``float[B, V]``, rows normalised or not) with every token outside each row's
    top-`top_k` and top-`top_p` set at ``-inf``. The top-p set is the smallest set of most likely
    tokens whose mass is at least `top_p` (ties by lower id first); at least one token is kept."""
    if top_k is None and top_p is None:
        return logprobs
    out = logprobs
    if top_k is not None and top_k < logprobs.shape[-1]:
        order = torch.sort(out, dim=-1, descending=True, stable=True).indices  # ties: lower id first
        drop = torch.zeros_like(out, dtype=torch.bool).scatter_(1, order[:, top_k:], True)
        out = out.masked_fill(drop, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = torch.sort(out, dim=-1, descending=True, stable=True)
        probs = torch.softmax(sorted_scores.double(), dim=-1)
        before = probs.cumsum(dim=-1) - probs  # the mass of the more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


class ForcedTokenizer:
    """Canonical token ids for bytes the grammar forces: the tokenizer's own encoding when its
    tokens spell exactly those bytes (and none is special), else greedy longest match over the
    vocabulary's non-special tokens (lowest id among equal byte strings).

    Args:
        info: the vocabulary.
        encode: text → token ids (e.g. ``lambda s: tokenizer.encode(s, add_special_tokens=False)``),
            or None for longest match only.
    """

    def __init__(self, info: TokenizerInfo, encode: Callable[[str], Sequence[int]] | None = None) -> None:
        self.info = info
        self.encode = encode
        self._by_bytes: dict[bytes, int] | None = None
        self._longest = 0

    def __call__(self, data: bytes) -> list[int]:
        """Token ids whose bytes concatenate to `data` (may be empty if the vocabulary cannot spell it)."""
        if self.encode is not None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                ids = [int(t) for t in self.encode(text)]
                info = self.info
                if all(0 <= t < info.vocab_size and t not in info.special_ids for t in ids) and (
                    b"".join(info.token_bytes[t] for t in ids) == data
                ):
                    return ids
        return self._longest_match(data)

    def _longest_match(self, data: bytes) -> list[int]:
        if self._by_bytes is None:
            table: dict[bytes, int] = {}
            for tid, token in enumerate(self.info.token_bytes):
                if token and tid not in self.info.special_ids and token not in table:
                    table[token] = tid
            self._by_bytes, self._longest = table, max(map(len, table), default=0)
        out, pos = [], 0
        while pos < len(data):
            for length in range(min(self._longest, len(data) - pos), 0, -1):
                tid = self._by_bytes.get(data[pos : pos + length])
                if tid is not None:
                    out.append(tid)
                    pos += length
                    break
            else:
                return out  # a byte no token spells: stop here
        return out


class Decoder:
    """GCD over a batch of prompts, `n` sequences each, one model call per step (see the module
    docstring). Call `step` until `done`, then read `samples`.

    Args:
        lm: the model.
        compiled: the constraint: a grammar compiled for the model's tokenizer, or any engine's
            `gad.constraint.ConstraintFactory`; its EOS ids end a sequence (jump-forward: gad's only).
        prompts: the prompts' token ids (never fed to the grammar).
        n: sequences per prompt.
        max_new_tokens: a sequence still without EOS after this many tokens (jumped ones
            included) stops with ``finish_reason="length"``.
        temperature: applied to the model's distribution before the grammar; top_k, top_p: after it.
        greedy: take the most likely allowed token instead of sampling.
        seed: sequence i of every prompt uses a generator seeded with ``seed + i``; None: fresh.
        jump_forward: a `ForcedTokenizer` to jump over forced bytes with, or None.
    """

    def __init__(
        self,
        lm: LanguageModel,
        compiled: ConstraintLike,
        prompts: Sequence[Sequence[int]],
        *,
        n: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        jump_forward: ForcedTokenizer | None = None,
    ) -> None:
        constraints = as_constraint_factory(compiled)
        if jump_forward is not None and constraints.compiled is None:
            raise ConfigurationError("`jump_forward` needs gad's own engine (it reads GrammarMatcher.forced_bytes)")
        if not constraints.eos_token_ids:
            raise ConfigurationError(
                "the grammar's TokenizerInfo has no EOS token, so no sample could ever be complete; "
                "build it with eos_token_ids=..."
            )
        vocab = lm.vocab_size
        self.prompts = [[int(t) for t in p] for p in prompts]
        if any(not 0 <= t < vocab for p in self.prompts for t in p):
            raise ConfigurationError(f"a prompt token id is outside the model's vocabulary [0, {vocab})")
        self.lm, self.constraints, self.compiled, self.n = lm, constraints, constraints.compiled, n
        self.max_new_tokens, self.temperature = max_new_tokens, float(temperature)
        self.top_k, self.top_p, self.greedy, self.jump = top_k, top_p, greedy, jump_forward
        self._eos = frozenset(constraints.eos_token_ids)
        base = secrets.randbits(62) if seed is None else seed
        size = len(self.prompts) * n
        # Sequence s is sequence s % n of prompt s // n.
        self._generators = [] if greedy else [torch.Generator().manual_seed(base + s % n) for s in range(size)]
        self._matchers = [constraints() for _ in range(size)]
        self.generated: list[list[int]] = [[] for _ in range(size)]
        self._logp_model = [0.0] * size
        self._logp_sampler = [0.0] * size
        self._finished: list[str | None] = [None] * size
        self._rows: list[torch.Tensor | None] = [None] * size  # log P(· | context) of each sequence
        self._active = list(range(size))

    @property
    def done(self) -> bool:
        return not self._active

    @property
    def samples(self) -> list[list[Sample]]:
        """``samples[j][i]``: sequence i of prompt j (cut at ``max_new_tokens`` if not finished)."""
        flat = [
            Sample(tuple(self.generated[s]), self._logp_model[s], self._logp_sampler[s], self._finished[s] or "length")  # type: ignore[arg-type]
            for s in range(len(self.generated))
        ]
        return [flat[j * self.n : (j + 1) * self.n] for j in range(len(self.prompts))]

    def _context(self, s: int) -> list[int]:
        return self.prompts[s // self.n] + self.generated[s]

    def step(self) -> dict[int, list[int]]:
        """One decoding step for every active sequence; returns each one's new tokens (several
        when it jumped), keyed by sequence index ``j * n + i``.

        Raises:
            DeadEndError: no allowed token has positive probability under the model.
        """
        active = self._active
        missing = [s for s in active if self._rows[s] is None]
        if missing:
            for s, row in zip(missing, self.lm.next_token_logprobs([self._context(s) for s in missing])):
                self._rows[s] = row
        extensions: dict[int, list[int]] = {}
        drawn = [s for s in active if not self._jump(s, extensions)]
        if drawn:
            self._draw(drawn, extensions)
        running = [s for s in active if self._finished[s] is None and len(self.generated[s]) < self.max_new_tokens]
        # The model runs this step's tokens of every sequence that goes on (for its next row), and
        # of any that stops after jumped tokens (to score them), in one call.
        scored = [s for s in active if s in running or len(extensions[s]) > 1]
        if scored:
            rows = self.lm.extend_logprobs(
                [self._context(s)[: -len(extensions[s])] for s in scored], [extensions[s] for s in scored]
            )
            for s, along in zip(scored, rows):
                for j, token in enumerate(extensions[s][1:]):  # the jumped tokens, scored by the model
                    self._logp_model[s] += float(along[j, token])
                self._rows[s] = along[-1]
        for s in active:
            if s not in running:
                self._rows[s] = None
        self._active = running
        return extensions

    def _jump(self, s: int, extensions: dict[int, list[int]]) -> bool:
        """If the grammar forces the next bytes, append their tokens (minus the last) to sequence s
        without sampling; True if it did."""
        tokens = self._forced(s, self.max_new_tokens - len(self.generated[s]))
        if not tokens:
            return False
        self._logp_model[s] += float(self._rows[s][tokens[0]])  # type: ignore[index]
        self.generated[s] += tokens
        extensions[s] = tokens
        return True

    def _forced(self, s: int, budget: int) -> list[int]:
        """The jumped tokens of sequence s (accepted into its matcher), at most `budget`."""
        if self.jump is None or budget < 1:
            return []
        matcher = self._matchers[s]
        forced = matcher.forced_bytes()
        if not forced:
            return []
        tokens = self.jump(forced)[:-1][:budget]
        accepted = []
        for token in tokens:
            if not matcher.accept_token(token):
                break
            accepted.append(token)
        return accepted

    def _draw(self, drawn: list[int], extensions: dict[int, list[int]]) -> None:
        """Sample (or take greedily) one token for each sequence in `drawn`, then jump if forced."""
        logprobs = torch.stack([self._rows[s] for s in drawn])  # type: ignore[misc]
        masks: dict[tuple[int, ...], torch.Tensor] = {}
        rows = []
        for s in drawn:  # sequences with equal histories share one mask computation
            key = (s // self.n, *self.generated[s])
            if key not in masks:
                allowed = next_token_mask(self._matchers[s], self.constraints.vocab_size, logprobs.shape[-1])
                masks[key] = torch.from_numpy(allowed)
            rows.append(masks[key])
        mask = torch.stack(rows)
        scaled = logprobs if self.temperature == 1.0 else logprobs / self.temperature
        masked = truncate(scaled.masked_fill(~mask, float("-inf")), self.top_k, self.top_p)
        if torch.isneginf(masked).all(dim=-1).any():
            raise DeadEndError(
                "the model gives probability 0 to every token the grammar allows next; nothing can be sampled"
            )
        if self.greedy:
            chosen = masked.argmax(dim=-1).tolist()
            q = None
        else:
            q = torch.log_softmax(masked, dim=-1)
            uniforms = torch.cat([torch.rand(1, generator=self._generators[s], dtype=torch.float64) for s in drawn])
            chosen = _inverse_cdf(q, uniforms)
        for b, s in enumerate(drawn):
            token = chosen[b]
            if not self._matchers[s].accept_token(token):
                raise GadError(f"internal error: the grammar rejected token {token}, which its mask allowed")
            self.generated[s].append(token)
            self._logp_model[s] += float(logprobs[b, token])
            if q is not None:
                self._logp_sampler[s] += float(q[b, token])
            extensions[s] = [token]
            if token in self._eos:
                self._finished[s] = "eos"
                continue
            jumped = self._forced(s, self.max_new_tokens - len(self.generated[s]))
            self.generated[s] += jumped
            extensions[s] += jumped


def _inverse_cdf(logq: torch.Tensor, uniforms: torch.Tensor) -> list[int]:
    """Row b's token: the first t with ``cdf_b(t) > u_b · cdf_b(V-1)``, in float64 — the rule of
    `gad.samplers.gcd`, so that equal seeds draw equal tokens. Tokens of probability 0 are never
    chosen; a uniform that rounds to the very end picks the last token of positive probability."""
    probs = logq.double().exp()
    cdf = probs.cumsum(dim=-1)
    target = (uniforms * cdf[:, -1])[:, None]
    chosen = torch.searchsorted(cdf, target, right=True)[:, 0]
    out = []
    for b, t in enumerate(chosen.tolist()):
        if t >= probs.shape[-1] or probs[b, t] <= 0:
            t = int(torch.nonzero(probs[b] > 0)[-1])
        out.append(t)
    return out
