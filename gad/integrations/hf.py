"""`GrammarLogitsProcessor`: grammar-constrained decoding inside transformers' ``model.generate``.

transformers calls a logits processor once per decoding step with the whole batch,
``(input_ids: (batch, prompt + generated), scores: (batch, vocab))``, and says nothing else: not
when a new ``generate`` call starts, not which beam a row came from. The processor therefore
works everything out from `input_ids`:

- **A new call** is recognised when `input_ids` is not the previous call's batch grown by one
  token: a different length or batch size, a different prompt, or a row whose parent (the row
  minus its last token) was not in the previous batch. Its length is then recorded as the prompt
  length, and prompt tokens are never given to the grammar (left padding included).
- **Rows are keyed by their generated tokens.** Each distinct generated suffix has one matcher;
  a new row finds its parent by dropping its last token, and a parent with several children
  (beam search, ``num_return_sequences``, identical samples) is forked. Beam search may reorder,
  duplicate and drop rows between steps; every row still gets the state of its own history.
  Identical rows share one mask computation.

Only this module knows transformers' generation internals; it imports transformers, and
`gad/__init__` exposes `GrammarLogitsProcessor` lazily so that ``import gad`` does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from gad.compiler import CompiledGrammar
from gad.errors import ConfigurationError, TokenError
from gad.matcher import GrammarMatcher
from gad.samplers import fit_mask

__all__ = ["GrammarLogitsProcessor"]

_OPEN, _DONE, _DEAD = "open", "done", "dead"


class _Row:
    """The grammar state of one generated suffix: open, done (EOS accepted) or dead (rejected)."""

    __slots__ = ("matcher", "status", "mask")

    def __init__(self, matcher: GrammarMatcher | None, status: str) -> None:
        self.matcher = matcher
        self.status = status
        self.mask: torch.Tensor | None = None


class GrammarLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that constrains generation to a grammar: a token gets score `-inf` unless
    its bytes extend the text generated so far to a prefix of some sentence of the grammar, and
    EOS is allowed only where that text is a complete sentence.

    The prompt is never fed to the grammar: the processor records the input length on the first
    call of each `generate` call and constrains only what comes after it (so prompts must be
    left-padded, as transformers requires for decoder-only models anyway). It works with greedy
    decoding, sampling, batches of any size, `num_return_sequences` and beam search (each beam
    keeps the grammar state of its own tokens when beams are reordered), and it can be reused
    across `generate` calls: it notices a new call and starts over. `reset()` forces that; call it
    before a call whose prompts are the previous call's outputs (to continue a conversation), as
    such an input looks exactly like the next step of the previous call. Assisted (speculative)
    decoding, which calls processors on candidate tokens out of order, is not supported.

    The returned scores are a new tensor; `scores` is not modified. The mask is as long as
    `scores` (the model's logits): ids beyond the tokenizer are never allowed. Rows that already
    ended get only EOS (transformers pads them anyway). A row whose last token the grammar
    rejected, which only happens when beam search has to fill its beams with `-inf`-scored
    candidates or when another processor changes the scores after this one, gets `-inf` everywhere.

    `generate` gives no sign of why a sequence stopped, so a sequence cut at `max_new_tokens` looks
    like any other: check the output with [`~GrammarLogitsProcessor.is_complete`], which is True
    only for sequences that reached an EOS the grammar accepted.

    transformers applies its own processors (repetition penalty, `min_new_tokens`, …) before
    this one and its warpers (temperature, top-k, top-p) after it. A built-in processor that
    bans EOS where the grammar allows nothing else (e.g. `min_new_tokens`) leaves a row with no
    allowed token at all. The EOS ids allowed are those of the compiled grammar's
    `TokenizerInfo`: build it with `eos_token_ids=model.generation_config.eos_token_id` if the
    model stops on other ids than the tokenizer's EOS.

    Args:
        compiled (`gad.CompiledGrammar`):
            The grammar compiled for the model's tokenizer, e.g.
            `gad.GrammarCompiler(gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)).compile(grammar)`.

    Examples:

    ```python
    >>> import gad
    >>> from gad.assets import load_default_model
    >>> model, tokenizer = load_default_model()  # SmolLM2-135M-Instruct, from an offline package
    >>> info = gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    >>> compiled = gad.GrammarCompiler(info).compile('start: ("Yes" | "No") ", " /[a-z ]+/ "."')
    >>> processor = gad.GrammarLogitsProcessor(compiled)
    >>> chats = [[{"role": "user", "content": q}] for q in ["Can fish fly?", "Is fire cold?"]]
    >>> inputs = tokenizer.apply_chat_template(
    ...     chats, add_generation_prompt=True, padding=True, padding_side="left",
    ...     return_tensors="pt", return_dict=True,
    ... )
    >>> out = model.generate(**inputs, logits_processor=[processor], max_new_tokens=20, do_sample=False)
    >>> tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    ['No, fish cannot fly.', 'No, fire is not cold.']
    >>> processor.is_complete(out).tolist()
    [True, True]
    ```
    """

    supports_continuous_batching = False  # it keeps per-row state between calls

    def __init__(self, compiled: CompiledGrammar) -> None:
        if not isinstance(compiled, CompiledGrammar):
            raise ConfigurationError(
                f"`compiled` has to be a gad.CompiledGrammar, but is {type(compiled).__name__}"
            )
        self.compiled = compiled
        self._eos = tuple(compiled.tokenizer_info.eos_token_ids)
        self._prompt: torch.Tensor | None = None
        self._length = -1
        self._rows: dict[tuple[int, ...], _Row] = {}
        #: How many generations (new `generate` calls) this processor has seen.
        self.num_generations = 0

    @property
    def prompt_length(self) -> int | None:
        """The input length at the first step of the latest generation (None before any)."""
        return None if self._prompt is None else self._prompt.shape[1]

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new one."""
        self._prompt = None
        self._length = -1
        self._rows = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        check_processor_inputs(input_ids, scores)
        keys = self._update(input_ids)
        size = scores.shape[-1]
        mask = torch.stack([self._row_mask(self._rows[key], size) for key in keys])
        return scores.masked_fill(~mask.to(scores.device), float("-inf"))

    # -- row tracking -------------------------------------------------------------------------------

    def _update(self, input_ids: torch.Tensor) -> list[tuple[int, ...]]:
        """Each row's key (its generated tokens), with `_rows` advanced to hold exactly those keys."""
        batch, length = input_ids.shape
        prompt = self._prompt
        if (
            prompt is not None
            and length == self._length + 1
            and batch == prompt.shape[0]
            and torch.equal(input_ids[:, : prompt.shape[1]], prompt.to(input_ids.device))
        ):
            keys = [tuple(row) for row in input_ids[:, prompt.shape[1] :].tolist()]
            if all(key[:-1] in self._rows for key in keys):
                self._advance(keys)
                self._length = length
                return keys
        # A new generation: everything so far is prompt.
        self._prompt = input_ids.detach().clone()
        self._length = length
        self._rows = {(): _Row(GrammarMatcher(self.compiled), _OPEN)}
        self.num_generations += 1
        return [()] * batch

    def _advance(self, keys: list[tuple[int, ...]]) -> None:
        """Replace `_rows` by the rows of `keys`, each its parent advanced by its last token."""
        children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for key in dict.fromkeys(keys):
            children.setdefault(key[:-1], []).append(key)
        rows: dict[tuple[int, ...], _Row] = {}
        for parent_key, kids in children.items():
            parent = self._rows[parent_key]
            for j, key in enumerate(kids):
                if parent.status != _OPEN:  # tokens after EOS (padding) or after a rejection
                    rows[key] = _Row(None, parent.status)
                    continue
                # The last child takes the parent's matcher; the others fork it first.
                matcher = parent.matcher if j == len(kids) - 1 else parent.matcher.fork()
                try:
                    accepted = matcher.accept_token(key[-1])
                except TokenError:  # an id beyond the tokenizer, from a padded logits row
                    accepted = False
                if not accepted:
                    rows[key] = _Row(None, _DEAD)
                elif matcher.is_terminated():
                    rows[key] = _Row(None, _DONE)
                else:
                    rows[key] = _Row(matcher, _OPEN)
        self._rows = rows

    def _row_mask(self, row: _Row, size: int) -> torch.Tensor:
        if row.mask is None or row.mask.shape[0] != size:
            if row.status == _OPEN:
                row.mask = fit_mask(row.matcher.next_token_mask(), size)
            else:
                row.mask = torch.zeros(size, dtype=torch.bool)
                if row.status == _DONE:
                    eos = [e for e in self._eos if e < size]
                    if eos:
                        row.mask[eos] = True
                    else:
                        row.mask[:] = True
        return row.mask

    # -- checking outputs ---------------------------------------------------------------------------

    def is_complete(self, sequences: torch.Tensor, prompt_length: int | None = None) -> torch.Tensor:
        """``bool[batch]``: which output rows of `generate` reached an EOS that the grammar accepted.

        A row is complete iff its generated tokens, up to and including the first EOS id of the
        compiled grammar, are accepted by a fresh matcher (so its text is a sentence). A row cut at
        ``max_new_tokens`` is incomplete even if its text happens to be a sentence. Padding after
        the EOS is ignored.

        Args:
            sequences: ``(batch, length)`` token ids as returned by `generate` (prompt included).
            prompt_length: where the generated tokens start; defaults to `prompt_length` of the
                latest generation this processor took part in.
        """
        if prompt_length is None:
            prompt_length = self.prompt_length
            if prompt_length is None:
                raise ConfigurationError(
                    "no generation has run with this processor yet; give `prompt_length`"
                )
        if isinstance(sequences, torch.Tensor):
            if sequences.dim() != 2:
                raise ConfigurationError(f"`sequences` has to be (batch, length), but is {tuple(sequences.shape)}")
            rows: Sequence[Sequence[int]] = sequences[:, prompt_length:].tolist()
        else:
            rows = [list(row)[prompt_length:] for row in sequences]
        eos = set(self._eos)
        complete = []
        for row in rows:
            matcher = GrammarMatcher(self.compiled)
            ok = False
            for token in row:
                try:
                    if not matcher.accept_token(int(token)):
                        break
                except TokenError:
                    break
                if int(token) in eos:
                    ok = True
                    break
            complete.append(ok)
        return torch.tensor(complete, dtype=torch.bool)

    def __repr__(self) -> str:
        return f"GrammarLogitsProcessor({self.compiled!r})"


def check_processor_inputs(input_ids: torch.Tensor, scores: torch.Tensor) -> None:
    """The shapes transformers passes to a `LogitsProcessor`, or a `ConfigurationError`."""
    if input_ids.dim() != 2 or scores.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
        raise ConfigurationError(
            "`input_ids` has to be (batch_size, sequence_length) and `scores` (batch_size, "
            f"vocab_size), but they are {tuple(input_ids.shape)} and {tuple(scores.shape)}"
        )
