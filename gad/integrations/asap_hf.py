"""`ASApLogitsProcessor`: ASAp (grammar-aligned sampling) inside transformers' ``model.generate``.

The processor sees, at each step, every row's tokens and the model's scores for the next token.
That is all ASAp needs: the first time a row reaches a prefix new to the trie, its scores become
that node's ``P(· | u)`` and the node's ĉ is pushed up the trie (`gad.samplers.asap`); the
returned scores are ``log P_T(t | u) + log ĉ(ut)`` over the grammatical tokens, normalised, and
``-inf`` elsewhere, so that plain sampling from them draws ASAp's next token.

Rows are tracked as in `gad.integrations.hf.GrammarLogitsProcessor`: a new ``generate`` call is
recognised when `input_ids` is not the previous batch grown by one token; each row's prompt
(left padding stripped) and ``max_new_tokens`` select its trie, so the tries persist across
``generate`` calls and different prompts never share one.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from gad.compiler import CompiledGrammar
from gad.errors import ConfigurationError, DeadEndError, TokenError
from gad.integrations.hf import check_processor_inputs
from gad.matcher import GrammarMatcher
from gad.samplers import fit_mask
from gad.samplers.asap import ExpectedFuturesTrie, TrieNode, TrieStore

__all__ = ["ASApLogitsProcessor"]

_OPEN, _DONE, _DEAD, _OVER = "open", "done", "dead", "over"


class _Row:
    __slots__ = ("trie", "node", "matcher", "status")

    def __init__(self, trie: ExpectedFuturesTrie, node: TrieNode | None, matcher: GrammarMatcher | None, status: str) -> None:
        self.trie = trie
        self.node = node
        self.matcher = matcher
        self.status = status


class ASApLogitsProcessor(LogitsProcessor):
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
    (`pad_token_id`) removed. Rows that already ended get only EOS. A row that reaches
    `max_new_tokens` without EOS is incomplete and counts as ungrammatical; give `generate` the
    same `max_new_tokens`.

    Args:
        compiled (`gad.CompiledGrammar`):
            The grammar compiled for the model's tokenizer.
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
    >>> from gad.lm import random_hf_model
    >>> model = random_hf_model(3)  # tokens "0", "1", EOS
    >>> info = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)
    >>> compiled = gad.GrammarCompiler(info).compile('start: "00000" | "1" /[01]{4}/')
    >>> processor = ASApLogitsProcessor(compiled, max_new_tokens=6)
    >>> prompts = torch.tensor([[2]] * 4)
    >>> out = model.generate(prompts, attention_mask=torch.ones_like(prompts), logits_processor=[processor],
    ...                      do_sample=True, max_new_tokens=6, top_k=0, pad_token_id=2, eos_token_id=2)
    >>> [processor.is_complete(row) for row in out[:, 1:].tolist()]
    [True, True, True, True]
    ```
    """

    supports_continuous_batching = False  # it keeps per-row state between calls

    def __init__(
        self,
        compiled: CompiledGrammar,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        pad_token_id: int | None = None,
        store: TrieStore | None = None,
    ) -> None:
        if not isinstance(compiled, CompiledGrammar):
            raise ConfigurationError(f"`compiled` has to be a gad.CompiledGrammar, but is {type(compiled).__name__}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigurationError(f"`max_new_tokens` has to be a strictly positive int, but is {max_new_tokens!r}")
        if store is None:
            store = TrieStore(compiled, temperature)
        elif store.temperature != float(temperature):
            raise ConfigurationError(f"the store was built at temperature {store.temperature}, not {temperature}")
        self.compiled = compiled
        self.max_new_tokens = max_new_tokens
        self.temperature = store.temperature
        self.pad_token_id = pad_token_id
        self.store = store
        self._eos = tuple(compiled.tokenizer_info.eos_token_ids)
        self._length = -1
        self._batch = -1
        self._rows: dict[tuple[int, ...], _Row] = {}
        #: How many generations (new `generate` calls) this processor has seen.
        self.num_generations = 0

    def reset(self) -> None:
        """Forget the current generation (not the tries); the next call starts a new one."""
        self._length = -1
        self._rows = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        check_processor_inputs(input_ids, scores)
        keys = self._update(input_ids)
        logprobs = torch.log_softmax(scores.detach().float().cpu(), dim=-1)
        size = scores.shape[-1]
        out = torch.full(scores.shape, -math.inf, dtype=scores.dtype)
        for b, key in enumerate(keys):
            row = self._rows[key]
            if row.status == _OPEN and row.node is not None and not row.node.expanded:
                mask = fit_mask(row.matcher.next_token_mask(), size)  # type: ignore[union-attr]
                row.trie.expand(row.node, logprobs[b], mask)
        for b, key in enumerate(keys):
            row = self._rows[key]
            if row.status == _OPEN:
                node = row.node
                weights = torch.from_numpy(node.weights())  # type: ignore[union-attr]
                if not float(weights.sum()) > 0:
                    weights = torch.from_numpy(node.p)  # type: ignore[union-attr]
                    if not float(weights.sum()) > 0:
                        raise DeadEndError("the model gives probability 0 to every token the grammar allows next")
                ids = torch.from_numpy(node.ids).long()  # type: ignore[union-attr]
                out[b, ids] = torch.log(weights / weights.sum()).to(scores.dtype)
            elif row.status == _OVER:  # past the trie's limit: the plain mask
                mask = fit_mask(row.matcher.next_token_mask(), size)  # type: ignore[union-attr]
                out[b] = logprobs[b].masked_fill(~mask, -math.inf).to(scores.dtype)
            elif row.status == _DONE:
                eos = [e for e in self._eos if e < size]
                out[b, eos] = 0.0
        return out.to(scores.device)

    # -- row tracking -------------------------------------------------------------------------------

    def _update(self, input_ids: torch.Tensor) -> list[tuple[int, ...]]:
        batch, length = input_ids.shape
        keys = [tuple(row) for row in input_ids.tolist()]
        if length == self._length + 1 and batch == self._batch and all(k[:-1] in self._rows for k in keys):
            self._advance(keys)
            self._length = length
            return keys
        # A new generation: everything so far is prompt.
        self._length, self._batch = length, batch
        self._rows = {}
        for key in keys:
            if key not in self._rows:
                prompt = list(key)
                while self.pad_token_id is not None and len(prompt) > 1 and prompt[0] == self.pad_token_id:
                    prompt.pop(0)
                trie = self.store.get(prompt, self.max_new_tokens)
                self._rows[key] = _Row(trie, trie.root, GrammarMatcher(self.compiled), _OPEN)
            self._rows[key].trie.num_samples += 1
        self.num_generations += 1
        return keys

    def _advance(self, keys: list[tuple[int, ...]]) -> None:
        children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for key in dict.fromkeys(keys):
            children.setdefault(key[:-1], []).append(key)
        rows: dict[tuple[int, ...], _Row] = {}
        for parent_key, kids in children.items():
            parent = self._rows[parent_key]
            for j, key in enumerate(kids):
                if parent.status in (_DONE, _DEAD):  # padding after EOS, or after a rejection
                    rows[key] = _Row(parent.trie, None, None, parent.status)
                    continue
                matcher = parent.matcher if j == len(kids) - 1 else parent.matcher.fork()  # type: ignore[union-attr]
                token = key[-1]
                try:
                    accepted = matcher.accept_token(token)  # type: ignore[union-attr]
                except TokenError:
                    accepted = False
                if not accepted:
                    rows[key] = _Row(parent.trie, None, None, _DEAD)
                    continue
                if matcher.is_terminated():  # type: ignore[union-attr]
                    rows[key] = _Row(parent.trie, None, None, _DONE)
                    continue
                index = None if parent.status == _OVER else parent.node.position(token)  # type: ignore[union-attr]
                if index is None or parent.node.depth + 1 >= parent.trie.max_length:  # type: ignore[union-attr]
                    # Past the limit, or a token of probability 0 that another processor chose:
                    # the trie cannot follow; the row goes on under the plain mask.
                    rows[key] = _Row(parent.trie, None, matcher, _OVER)
                else:
                    rows[key] = _Row(parent.trie, parent.trie.child(parent.node, index), matcher, _OPEN)  # type: ignore[arg-type]
        self._rows = rows

    # -- checking outputs ---------------------------------------------------------------------------

    def is_complete(self, token_ids: list[int]) -> bool:
        """True iff the generated `token_ids` (prompt excluded) reach an EOS the grammar accepts."""
        matcher = GrammarMatcher(self.compiled)
        for token in token_ids:
            try:
                if not matcher.accept_token(int(token)):
                    return False
            except TokenError:
                return False
            if matcher.is_terminated():
                return True
        return False

    def __repr__(self) -> str:
        return f"ASApLogitsProcessor(max_new_tokens={self.max_new_tokens}, temperature={self.temperature}, {self.store.stats()})"
