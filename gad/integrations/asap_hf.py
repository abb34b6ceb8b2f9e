"""`ASApLogitsProcessor`: ASAp (grammar-aligned sampling) inside transformers' ``model.generate``.

The processor sees, at each step, every row's tokens and the model's scores for the next token.
That is all ASAp needs: the first time a row reaches a prefix new to the trie, its scores become
that node's ``P(· | u)`` and the node's ĉ is pushed up the trie (`gad.samplers.asap`); the
returned scores are ``log P_T(t | u) + log ĉ(ut)`` over the grammatical tokens, normalised, and
``-inf`` elsewhere, so that plain sampling from them draws ASAp's next token.

Rows are tracked by `gad.integrations.rows.RowTracker`, as in `GrammarLogitsProcessor`: a call
that cannot be mapped to one generation is refused with a `ConfigurationError`. Each row's prompt
(left padding stripped) and ``max_new_tokens`` select its trie, so the tries persist across
``generate`` calls and different prompts never share one.
"""

from __future__ import annotations

import math

import torch

from gad.constraint import ConstraintLike, next_token_mask
from gad.errors import ConfigurationError, DeadEndError
from gad.integrations.rows import OPEN, Row, TrackedProcessor, check_processor_inputs
from gad.samplers.asap import ExpectedFuturesTrie, TrieNode, TrieStore

__all__ = ["ASApLogitsProcessor"]


class _TriePosition:
    """Where a row is in its prompt's trie; ``node`` None once the trie cannot follow it (past the
    length limit, or a token of probability 0 that another processor chose): the row then goes on
    under the plain mask."""

    __slots__ = ("trie", "node")

    def __init__(self, trie: ExpectedFuturesTrie, node: TrieNode | None) -> None:
        self.trie = trie
        self.node = node


class ASApLogitsProcessor(TrackedProcessor):
    r"""
    [`LogitsProcessor`] that turns sampling into ASAp, grammar-aligned sampling: every sequence
    is a sentence of the grammar, and over repeated `generate` calls the sequences' distribution
    converges to the model's distribution conditioned on the grammar (GCD's masking alone
    distorts it; see `gad.samplers.asap`).

    The returned scores are ``log q(t)`` with ``q(t) ∝ P_T(t | u) · ĉ(ut)`` over the tokens the
    grammar allows (``-inf`` elsewhere), where ``P_T`` is the softmax of `scores` at this
    processor's `temperature`. Use it with `do_sample=True` and leave transformers' warpers
    neutral — `temperature=1.0`, `top_k=0`, `top_p=1.0` — or they would act *after* the
    reweighting (pass the temperature here instead). `scores` is not modified.

    The trie of each prompt is kept in `store` between calls (`store.save(path)` /
    `TrieStore.load`); a row's prompt is its input at the first step with the left padding
    (`pad_token_id`) removed. Rows that already ended get only EOS, and so do rows whose last token
    the grammar rejected (they are never complete). Calls that cannot be mapped to one generation
    (called twice on one step, a batch size that changed, assisted or prompt-lookup decoding) raise
    `ConfigurationError`, as with `GrammarLogitsProcessor`. A row that reaches
    `max_new_tokens` without EOS is incomplete and counts as ungrammatical; give `generate` the
    same `max_new_tokens`.

    Args:
        compiled (`gad.CompiledGrammar` or `gad.constraint.ConstraintFactory`):
            The grammar compiled for the model's tokenizer, or another engine's constraints
            (`gad.engines.constraint_factory`).
        max_new_tokens (`int`):
            N, the length limit of the samples (EOS included); part of each trie's key.
        temperature (`float`, *optional*, defaults to 1.0):
            Applied to the model's distribution before the reweighting.
        pad_token_id (`int`, *optional*):
            Stripped from the left of each prompt row.
        store (`gad.samplers.asap.TrieStore`, *optional*):
            Tries to continue from (e.g. an `ASApSampler`'s `store`, or `TrieStore.load`).

    Examples:

    ```python
    >>> import gad, torch
    >>> from gad.integrations.asap_hf import ASApLogitsProcessor
    >>> from gad.lm_testing import random_hf_model
    >>> model = random_hf_model(3)  # tokens "0", "1", EOS
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> processor = ASApLogitsProcessor(compiled, max_new_tokens=6)
    >>> prompts = torch.tensor([[2]] * 4)
    >>> out = model.generate(prompts, attention_mask=torch.ones_like(prompts), logits_processor=[processor],
    ...                      do_sample=True, max_new_tokens=6, top_k=0, pad_token_id=2, eos_token_id=2)
    >>> processor.is_complete(out).tolist()
    [True, True, True, True]
    ```
    """

    def __init__(
        self,
        compiled: ConstraintLike,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        pad_token_id: int | None = None,
        store: TrieStore | None = None,
    ) -> None:
        super().__init__(compiled, on_child=self._follow)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigurationError(f"`max_new_tokens` has to be a strictly positive int, but is {max_new_tokens!r}")
        if store is None:
            store = TrieStore(self.constraints, temperature)
        elif store.temperature != float(temperature):
            raise ConfigurationError(f"the store was built at temperature {store.temperature}, not {temperature}")
        self.max_new_tokens = max_new_tokens
        self.temperature = store.temperature
        self.pad_token_id = pad_token_id
        self.store = store

    def reset(self) -> None:
        """Forget the current generation (not the tries); the next call starts a new one."""
        super().reset()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        check_processor_inputs(input_ids, scores)
        rows, new = self._tracker.update(input_ids)
        if new:
            self._start(rows)
        logprobs = torch.log_softmax(scores.detach().float().cpu(), dim=-1)
        size = scores.shape[-1]
        out = torch.full(scores.shape, -math.inf, dtype=scores.dtype)
        for b, row in enumerate(rows):
            where: _TriePosition = row.data  # type: ignore[assignment]
            if row.status == OPEN and where.node is not None and not where.node.expanded:
                mask = torch.from_numpy(next_token_mask(row.matcher, self.constraints.vocab_size, size))  # type: ignore[arg-type]
                where.trie.expand(where.node, logprobs[b], mask)
        for b, row in enumerate(rows):
            where = row.data  # type: ignore[assignment]
            if row.status == OPEN and where.node is not None:
                node = where.node
                weights = torch.from_numpy(node.weights())
                if not float(weights.sum()) > 0:
                    weights = torch.from_numpy(node.p)
                    if not float(weights.sum()) > 0:
                        raise DeadEndError(
                            f"row {b}: every token the grammar allows next has probability 0 under the "
                            "scores (the model, or a processor before this one such as `min_new_tokens` "
                            "banning EOS where the text is a sentence that cannot go on)"
                        )
                ids = torch.from_numpy(node.ids).long()
                out[b, ids] = torch.log(weights / weights.sum()).to(scores.dtype)
            elif row.status == OPEN:  # the trie cannot follow: the plain mask
                mask = torch.from_numpy(next_token_mask(row.matcher, self.constraints.vocab_size, size))  # type: ignore[arg-type]
                out[b] = logprobs[b].masked_fill(~mask, -math.inf).to(scores.dtype)
                if torch.isneginf(out[b]).all():
                    raise DeadEndError(f"row {b}: every token the grammar allows next has score -inf")
            else:  # ended (EOS accepted) or rejected: only EOS, so that it ends
                eos = [e for e in self._eos if e < size]
                out[b, eos] = 0.0
        return out.to(scores.device)

    # -- row tracking -------------------------------------------------------------------------------

    def _start(self, rows: list[Row]) -> None:
        """A new generation: each prompt row gets its trie's root."""
        for row in rows:
            if row.data is None:
                prompt = list(self._tracker.prompts[row.prompt])
                while self.pad_token_id is not None and len(prompt) > 1 and prompt[0] == self.pad_token_id:
                    prompt.pop(0)
                trie = self.store.get(prompt, self.max_new_tokens)
                row.data = _TriePosition(trie, trie.root)
            row.data.trie.num_samples += 1  # type: ignore[attr-defined]

    def _follow(self, parent: Row, child: Row, token: int) -> None:
        """The child's trie node: the parent's child for `token`, if the trie can follow it."""
        where: _TriePosition = parent.data  # type: ignore[assignment]
        node = where.node if parent.status == OPEN and child.status == OPEN else None
        if node is not None:
            index = node.position(token)
            if index is None or node.depth + 1 >= where.trie.max_length:
                node = None
            else:
                node = where.trie.child(node, index)
        child.data = _TriePosition(where.trie, node)

    def __repr__(self) -> str:
        return f"ASApLogitsProcessor(max_new_tokens={self.max_new_tokens}, temperature={self.temperature}, {self.store.stats()})"
