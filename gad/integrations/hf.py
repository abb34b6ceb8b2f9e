"""`GrammarLogitsProcessor`: grammar-constrained decoding inside transformers' ``model.generate``.

Which generation each call belongs to, and the grammar state of each row, is worked out from
`input_ids` alone by `gad.integrations.rows.RowTracker` (shared with the ASAp processor): a call
it cannot map to one generation is refused with a `ConfigurationError`.

Only this package knows transformers' generation internals; it imports transformers, and
`gad/__init__` exposes `GrammarLogitsProcessor` lazily so that ``import gad`` does not.
"""

from __future__ import annotations

import torch

from gad.constraint import ConstraintLike, next_token_mask
from gad.errors import DeadEndError
from gad.integrations.rows import OPEN, Row, TrackedProcessor, check_processor_inputs

__all__ = ["GrammarLogitsProcessor", "check_processor_inputs"]


class GrammarLogitsProcessor(TrackedProcessor):
    r"""
    [`LogitsProcessor`] that constrains generation to a grammar: a token gets score `-inf` unless
    its bytes extend the text generated so far to a prefix of some sentence of the grammar, and
    EOS is allowed only where that text is a complete sentence.

    The prompt is never fed to the grammar: the processor records the input length on the first
    call of each `generate` call and constrains only what comes after it (so prompts must be
    left-padded, as transformers requires for decoder-only models anyway). It works with greedy
    decoding, sampling, batches of any size, `num_return_sequences` and beam search (each beam
    keeps the grammar state of its own tokens when beams are reordered), and it can be reused
    across `generate` calls: an input no longer than the current prompt, or more than one token
    longer than the previous call, or with other prompts, starts a new generation. A call that
    keeps the prompt but is not one token beyond the previous call — the processor called twice on
    one step, a batch size that changed, assisted decoding (`assistant_model=`) or prompt-lookup
    decoding (`prompt_lookup_num_tokens=`), which re-score candidate tokens — raises a
    `ConfigurationError` instead of silently restarting (see `gad.integrations.rows`). `reset()`
    starts a new generation by hand; call it before a call whose prompts extend the previous
    call's input (to continue a conversation), which would otherwise look like its next step.

    The returned scores are a new tensor; `scores` is not modified. The mask is as long as
    `scores` (the model's logits): ids beyond the tokenizer are never allowed. Rows that already
    ended get only EOS, with score 0 (transformers pads them anyway). A row whose last token the
    grammar rejected — which only happens when beam search has to fill its beams with
    `-inf`-scored candidates, or when another processor changes the scores after this one — also
    gets only EOS, so that it ends; it is never complete.

    `generate` gives no sign of why a sequence stopped, so a sequence cut at `max_new_tokens` looks
    like any other: check the output with [`~GrammarLogitsProcessor.is_complete`], which is True
    only for sequences that reached an EOS the grammar accepted.

    transformers applies its own processors (repetition penalty, `min_new_tokens`, …) before
    this one and its warpers (temperature, top-k, top-p) after it. When the processors before this
    one gave `-inf` to every token the grammar allows in an open row — `min_new_tokens` banning
    EOS where the text is a sentence that cannot go on — no valid continuation is left, and the
    call raises `DeadEndError` (rather than leaving a row of `-inf`, which sampling turns into NaN
    and greedy search into an arbitrary token). The EOS ids allowed are those of the compiled
    grammar's (or factory's) `TokenizerInfo`: build it with `eos_token_ids=model.generation_config.eos_token_id`
    if the model stops on other ids than the tokenizer's EOS (`gad.compile_grammar` does).

    Args:
        compiled (`gad.CompiledGrammar` or `gad.constraint.ConstraintFactory`):
            The grammar compiled for the model's tokenizer, e.g.
            `gad.GrammarCompiler(gad.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)).compile(grammar)`,
            or another engine's constraints:
            `gad.engines.constraint_factory(grammar, tokenizer, engine="xgrammar", model=model)`.

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

    def __init__(self, compiled: ConstraintLike) -> None:
        super().__init__(compiled)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        check_processor_inputs(input_ids, scores)
        rows, _ = self._tracker.update(input_ids)
        size = scores.shape[-1]
        mask = torch.stack([self._row_mask(row, size) for row in rows]).to(scores.device)
        out = scores.masked_fill(~mask, float("-inf"))
        ended = [b for b, row in enumerate(rows) if row.status != OPEN]
        if ended:  # only EOS, with a finite score whatever the processors before said
            out[ended] = torch.where(mask[ended], 0.0, float("-inf")).to(out.dtype)
        blocked = torch.isneginf(out).all(dim=-1).tolist()
        for b, row in enumerate(rows):
            if blocked[b] and row.status == OPEN:
                raise DeadEndError(_blocked_message(b, row, self._eos, len(input_ids[b]) - (self.prompt_length or 0)))
        return out

    def _row_mask(self, row: Row, size: int) -> torch.Tensor:
        if row.mask is None or row.mask.shape[0] != size:
            if row.status == OPEN:
                row.mask = torch.from_numpy(next_token_mask(row.matcher, self.constraints.vocab_size, size))  # type: ignore[arg-type]
            else:
                row.mask = torch.zeros(size, dtype=torch.bool)
                eos = [e for e in self._eos if e < size]
                if eos:
                    row.mask[eos] = True
                else:  # no EOS id fits the scores: leave the row to transformers' padding
                    row.mask[:] = True
        return row.mask

    def __repr__(self) -> str:
        return f"GrammarLogitsProcessor({self.compiled if self.compiled is not None else self.constraints!r})"


def _blocked_message(b: int, row: Row, eos: tuple[int, ...], generated: int) -> str:
    """Why row b has no token left: the grammar's allowed tokens all got -inf before this processor."""
    allowed = row.mask.nonzero().flatten().tolist() if row.mask is not None else []
    only_eos = bool(allowed) and set(allowed) <= set(eos)
    what = (
        "the grammar allows only EOS here (the text is a complete sentence that cannot go on)"
        if only_eos else f"the grammar allows {len(allowed)} token(s) here"
    )  # fmt: skip
    return (
        f"row {b}, after {generated} generated tokens: {what}, but the processors before this one gave "
        "every one of them score -inf, so no valid continuation is left; a `min_new_tokens` or "
        "`min_length` longer than the grammar's sentences does this (lower it, or let the grammar "
        "allow longer text)"
    )
