"""Row tracking shared by the logits processors: which generation a call belongs to, and the
grammar state of each row.

transformers calls a logits processor once per decoding step with the whole batch,
``(input_ids: (batch, prompt + generated), scores: (batch, vocab))``, and says nothing else: not
when a new ``generate`` call starts, not which beam a row came from. `RowTracker` works it out
from `input_ids`:

- **The next step** of the current generation: the same batch size, one token longer than the
  previous call, the same prompt rows, and every row minus its last token a row of the previous
  call (beam search reorders, duplicates and drops rows; each row still gets the state of its
  own history).
- **A new generation**: anything else — the first call, a call after `reset`, another prompt,
  the same prompt again. Its input is all prompt: prompt tokens (left padding included) are never
  given to the grammar.
- **Refused** with a `ConfigurationError`, because they would otherwise look like a new
  generation and silently restart the grammar in the middle of one: the previous call's input
  again (the processor called twice on one step); rows that are the previous call's rows plus one
  token, in a batch of another size (the batch size changed mid-generation); and any call made
  from inside transformers' assisted decoding (``assistant_model=``, ``prompt_lookup_num_tokens=``),
  which re-scores candidate tokens out of order — detected from the caller, on the first call.
  A refused call leaves the state as it was.

Rows are keyed by (prompt row, generated tokens): identical rows share one state and one mask
computation; a parent with several children (beam search, ``num_return_sequences``) is forked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
from transformers import LogitsProcessor

from gad.constraint import Constraint, ConstraintFactory, ConstraintLike, as_constraint_factory
from gad.errors import ConfigurationError, TokenError

__all__ = ["DEAD", "DONE", "OPEN", "Row", "RowTracker", "check_processor_inputs", "complete_rows"]

OPEN, DONE, DEAD = "open", "done", "dead"

Key = tuple[int, tuple[int, ...]]  # (prompt id, generated tokens)


class Row:
    """The grammar state of one row: open, done (EOS accepted) or dead (a token rejected).

    ``data`` belongs to the processor (ASAp keeps the row's trie node there); ``mask`` caches
    the row's mask, sized to the scores.
    """

    __slots__ = ("prompt", "matcher", "status", "mask", "data")

    def __init__(self, prompt: int, matcher: Constraint | None, status: str) -> None:
        self.prompt = prompt
        self.matcher = matcher
        self.status = status
        self.mask: torch.Tensor | None = None
        self.data: object = None


class RowTracker:
    """Maps each processor call to one generation and keeps each row's `Row` (see the module
    docstring for the rules).

    Args:
        constraints: the constraint every row follows (each row gets ``constraints()``).
        name: the processor's class name, for messages.
        on_child: called as ``on_child(parent, child, token)`` after a row advanced by a token,
            so the processor can carry its own per-row ``data`` along.
    """

    def __init__(
        self, constraints: ConstraintFactory, name: str, on_child: Callable[[Row, Row, int], None] | None = None
    ) -> None:
        self.constraints = constraints
        self.name = name
        self._on_child = on_child
        #: The distinct prompt rows of the current generation; `Row.prompt` indexes them.
        self.prompts: list[tuple[int, ...]] = []
        self._prompt_ids: dict[tuple[int, ...], int] = {}
        self._prompt: torch.Tensor | None = None  # (batch, prompt length) of the first call
        self._row_prompt: list[int] = []  # the prompt id of each row of the first call
        self._length = -1
        self._batch = -1
        self._rows: dict[Key, Row] = {}
        self._keys: list[Key] = []  # the previous call's row keys, in order
        #: How many generations (new `generate` calls) this tracker has seen.
        self.num_generations = 0

    @property
    def prompt_length(self) -> int | None:
        """The input length at the first step of the latest generation (None before any)."""
        return None if self._prompt is None else self._prompt.shape[1]

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new one."""
        self.prompts, self._prompt_ids, self._row_prompt = [], {}, []
        self._prompt = None
        self._length = self._batch = -1
        self._rows, self._keys = {}, []

    def update(self, input_ids: torch.Tensor) -> tuple[list[Row], bool]:
        """Each row's `Row` for this call, and whether the call starts a new generation.

        Raises:
            ConfigurationError: the call cannot be mapped to one generation (the state is unchanged).
        """
        if _inside_assisted_decoding():
            raise ConfigurationError(
                f"{self.name} cannot follow assisted decoding (`assistant_model=`) or prompt-lookup "
                "decoding (`prompt_lookup_num_tokens=`): they re-score candidate tokens that were not "
                "chosen under the grammar and go back when one is rejected. Generate without them "
                "(greedy search, sampling and beam search are supported)."
            )
        batch, length = input_ids.shape
        prompt = self._prompt
        if prompt is None:
            return self._start(input_ids), True
        width = prompt.shape[1]
        same_prompt = batch == prompt.shape[0] and length >= width and torch.equal(
            input_ids[:, :width], prompt.to(input_ids.device)
        )
        if same_prompt and length == self._length + 1:
            keys = [(pid, tuple(row)) for pid, row in zip(self._row_prompt, input_ids[:, width:].tolist())]
            if all((pid, generated[:-1]) in self._rows for pid, generated in keys):
                self._advance(keys)
                self._length = length
                self._keys = keys
                return [self._rows[key] for key in keys], False
        if same_prompt and length == self._length and length > width:
            if [(pid, tuple(row)) for pid, row in zip(self._row_prompt, input_ids[:, width:].tolist())] == self._keys:
                self._refuse(batch, length, "it is the previous call's input again: the processor was called twice on one step")
        if batch != self._batch and length == self._length + 1 and self._extends_previous(input_ids):
            self._refuse(batch, length, f"its rows continue the previous call's rows, but the batch size changed from {self._batch} to {batch}")
        return self._start(input_ids), True

    def _extends_previous(self, input_ids: torch.Tensor) -> bool:
        """Every row minus its last token is a row of the previous call."""
        width = self.prompt_length or 0
        for row in input_ids.tolist():
            pid = self._prompt_ids.get(tuple(row[:width]))
            if pid is None or (pid, tuple(row[width:-1])) not in self._rows:
                return False
        return True

    def _refuse(self, batch: int, length: int, reason: str) -> None:
        raise ConfigurationError(
            f"{self.name}: this call (batch {batch}, length {length}) cannot be mapped to the current "
            f"generation (batch {self._batch}, length {self._length}, prompt length {self.prompt_length}): "
            f"{reason}. If it really starts a new `generate` call, call `reset()` before it."
        )

    def _start(self, input_ids: torch.Tensor) -> list[Row]:
        """A new generation: everything so far is prompt."""
        self.reset()
        self._prompt = input_ids.detach().clone()
        self._batch, self._length = input_ids.shape
        for row in input_ids.tolist():
            key = tuple(row)
            if key not in self._prompt_ids:
                self._prompt_ids[key] = len(self.prompts)
                self.prompts.append(key)
                self._rows[(self._prompt_ids[key], ())] = Row(self._prompt_ids[key], self.constraints(), OPEN)
            self._row_prompt.append(self._prompt_ids[key])
        self.num_generations += 1
        self._keys = [(pid, ()) for pid in self._row_prompt]
        return [self._rows[key] for key in self._keys]

    def _advance(self, keys: list[Key]) -> None:
        """Replace the rows by those of `keys`, each its parent advanced by its last token."""
        children: dict[Key, list[Key]] = {}
        for key in dict.fromkeys(keys):
            children.setdefault((key[0], key[1][:-1]), []).append(key)
        rows: dict[Key, Row] = {}
        for parent_key, kids in children.items():
            parent = self._rows[parent_key]
            for j, key in enumerate(kids):
                token = key[1][-1]
                if parent.status != OPEN or parent.matcher is None:  # after EOS (padding) or a rejection
                    child = Row(key[0], None, parent.status)
                else:
                    # The last child takes the parent's matcher; the others fork it first.
                    matcher = parent.matcher if j == len(kids) - 1 else parent.matcher.fork()
                    try:
                        accepted = matcher.accept_token(token)
                    except TokenError:  # an id beyond the tokenizer, from a padded logits row
                        accepted = False
                    if not accepted:
                        child = Row(key[0], None, DEAD)
                    elif matcher.is_terminated():
                        child = Row(key[0], None, DONE)
                    else:
                        child = Row(key[0], matcher, OPEN)
                if self._on_child is not None:
                    self._on_child(parent, child, token)
                rows[key] = child
        self._rows = rows

    def check_sequences(self, sequences: torch.Tensor | Sequence[Sequence[int]], prompt_length: int | None) -> int:
        """The prompt length to read `sequences` with: `prompt_length`, or the latest generation's
        after checking that every row starts with one of its prompt rows."""
        if prompt_length is not None:
            if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or prompt_length < 0:
                raise ConfigurationError(f"`prompt_length` has to be a non-negative int, but is {prompt_length!r}")
            return prompt_length
        if self._prompt is None:
            raise ConfigurationError("no generation has run with this processor yet; give `prompt_length`")
        width = self._prompt.shape[1]
        for b, row in enumerate(_as_rows(sequences)):
            if tuple(row[:width]) not in self._prompt_ids:
                raise ConfigurationError(
                    f"row {b} of `sequences` does not start with a prompt of the latest generation "
                    f"(its first {width} tokens); give `prompt_length` for other sequences"
                )
        return width


def _inside_assisted_decoding() -> bool:
    """Whether transformers' assisted decoding (which prompt-lookup decoding also runs through) is
    on the call stack: it calls processors from ``GenerationMixin._assisted_decoding``, directly and
    through the assistant model's own ``generate`` inside its candidate generator."""
    frame = sys._getframe(2)
    for _ in range(64):
        if frame is None:
            return False
        if frame.f_code.co_name == "_assisted_decoding" and str(frame.f_globals.get("__name__", "")).startswith("transformers."):
            return True
        frame = frame.f_back
    return False


def _as_rows(sequences: torch.Tensor | Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(sequences, torch.Tensor):
        if sequences.dim() != 2 or sequences.dtype.is_floating_point or sequences.dtype.is_complex:
            raise ConfigurationError(
                f"`sequences` has to be an integer tensor (batch, length), but is {tuple(sequences.shape)} {sequences.dtype}"
            )
        return sequences.tolist()
    rows = [list(row) for row in sequences]
    if any(isinstance(t, (bool, float)) or not isinstance(t, int) for row in rows for t in row):
        raise ConfigurationError("`sequences` has to hold rows of int token ids")
    return rows


def complete_rows(
    constraints: ConstraintLike, sequences: torch.Tensor | Sequence[Sequence[int]], prompt_length: int
) -> torch.Tensor:
    """``bool[batch]``: row b is complete iff its tokens after `prompt_length`, up to and including
    the first EOS id of the constraint, are accepted by a fresh constraint. Padding after that
    EOS is ignored; a row without EOS (cut at ``max_new_tokens``) is incomplete."""
    constraints = as_constraint_factory(constraints)
    eos = set(constraints.eos_token_ids)
    complete = []
    for row in _as_rows(sequences):
        matcher = constraints()
        ok = False
        for token in row[prompt_length:]:
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


def check_processor_inputs(input_ids: torch.Tensor, scores: torch.Tensor) -> None:
    """The shapes and dtypes transformers passes to a `LogitsProcessor`, or a `ConfigurationError`."""
    if not isinstance(input_ids, torch.Tensor) or not isinstance(scores, torch.Tensor):
        raise ConfigurationError(
            f"`input_ids` and `scores` have to be tensors, but are {type(input_ids).__name__} and {type(scores).__name__}"
        )
    if input_ids.dim() != 2 or scores.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
        raise ConfigurationError(
            "`input_ids` has to be (batch_size, sequence_length) and `scores` (batch_size, "
            f"vocab_size), but they are {tuple(input_ids.shape)} and {tuple(scores.shape)}"
        )
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise ConfigurationError(f"`input_ids` has to hold integer token ids, but its dtype is {input_ids.dtype}")
    if not scores.dtype.is_floating_point:
        raise ConfigurationError(f"`scores` has to be a floating-point tensor, but its dtype is {scores.dtype}")


class TrackedProcessor(LogitsProcessor):
    """What both logits processors share: the constraint (a `gad.CompiledGrammar`, or any
    engine's `gad.constraint.ConstraintFactory`, e.g. from `gad.engines.constraint_factory`), a
    `RowTracker` and the state queries and output check built on it. Subclasses implement
    ``__call__``.

    Attributes:
        constraints: the `ConstraintFactory`.
        compiled: the `gad.CompiledGrammar` behind it, or None for another engine's.
    """

    supports_continuous_batching = False  # it keeps per-row state between calls

    def __init__(self, compiled: ConstraintLike, on_child: Callable[[Row, Row, int], None] | None = None) -> None:
        self.constraints = as_constraint_factory(compiled)
        self.compiled = self.constraints.compiled
        self._eos = tuple(self.constraints.eos_token_ids)
        self._tracker = RowTracker(self.constraints, type(self).__name__, on_child=on_child)

    @property
    def prompt_length(self) -> int | None:
        """The input length at the first step of the latest generation (None before any)."""
        return self._tracker.prompt_length

    @property
    def num_generations(self) -> int:
        """How many generations (new `generate` calls) this processor has seen."""
        return self._tracker.num_generations

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new one."""
        self._tracker.reset()

    def is_complete(self, sequences: torch.Tensor | Sequence[Sequence[int]], prompt_length: int | None = None) -> torch.Tensor:
        """``bool[batch]``: which output rows of `generate` reached an EOS that the grammar accepted.

        A row is complete iff its generated tokens, up to and including the first EOS id of the
        constraint, are accepted by a fresh constraint (so its text is a sentence). A row cut at
        ``max_new_tokens`` is incomplete even if its text happens to be a sentence. Padding after
        the EOS is ignored. This method does not change the processor's state.

        Args:
            sequences: ``(batch, length)`` token ids as returned by `generate` (prompt included).
            prompt_length: where the generated tokens start; by default the prompt length of the
                latest generation this processor took part in, and then every row must start with
                one of that generation's prompt rows (else `ConfigurationError`).
        """
        start = self._tracker.check_sequences(sequences, prompt_length)
        return complete_rows(self.constraints, sequences, start)
