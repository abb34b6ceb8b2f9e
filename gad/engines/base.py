"""What the engine adapters share: the `gad.constraint.Constraint` contract enforced around
another engine's matcher.

`EngineConstraint` does the bookkeeping every adapter needs and that the engines do not do the
same way: token ids are checked (`TokenError` outside ``[0, V)``), a terminated constraint
accepts nothing and its mask is all zeros, `rollback` refuses to undo more than was accepted
(`RollbackError`), the bits of a bitmask beyond V are cleared (xgrammar sets them), and an empty
mask before termination raises `DeadEndError`, as `gad.GrammarMatcher` does. A subclass wraps
one engine matcher and implements five small methods (`_accept`, `_fill`, `_rollback`,
`_fork_engine`, `_accepting`).
"""

from __future__ import annotations

import abc
from collections.abc import Collection

import torch

from gad.bitmask import bitmask_words
from gad.errors import ConfigurationError, DeadEndError
from gad.matcher import check_rollback, checked_token_id

__all__ = ["EngineConstraint"]


class EngineConstraint(abc.ABC):
    """One sequence's state in another engine, behind the `gad.constraint.Constraint` protocol.

    Args:
        vocab_size: V, the mask length (the model's logits size).
        eos_token_ids: the ids that end a sequence.
    """

    #: The engine's name, as `gad.engines.constraint_factory` takes it.
    engine = ""

    def __init__(self, vocab_size: int, eos_token_ids: Collection[int]) -> None:
        self.vocab_size = int(vocab_size)
        self.eos_token_ids = frozenset(int(e) for e in eos_token_ids)
        self.num_accepted = 0
        self._terminated = False

    # -- what a subclass implements -------------------------------------------------------------

    @abc.abstractmethod
    def _accept(self, token_id: int) -> bool:
        """Advance the engine by one token; False with the engine state unchanged if rejected."""

    @abc.abstractmethod
    def _fill(self, bitmask: torch.Tensor, index: int) -> None:
        """Write the engine's mask into ``bitmask[index]`` (checked: int32, CPU, contiguous)."""

    @abc.abstractmethod
    def _rollback(self, num_tokens: int) -> None:
        """Undo the engine's last `num_tokens` tokens (checked: at most those accepted)."""

    @abc.abstractmethod
    def _fork_engine(self) -> EngineConstraint:
        """A new adapter around an independent copy of the engine's state (bookkeeping is copied
        by `fork`)."""

    @abc.abstractmethod
    def _accepting(self) -> bool:
        """The engine's answer to "is the text so far a complete sentence"."""

    # -- the protocol ---------------------------------------------------------------------------

    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; False, with the state unchanged, if the engine does not allow it
        (always False once terminated). Raises `TokenError` for an id outside ``[0, V)``."""
        token_id = checked_token_id(token_id, self.vocab_size)
        if self._terminated or not self._accept(token_id):
            return False
        self.num_accepted += 1
        if token_id in self.eos_token_ids:
            self._terminated = True
        return True

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0) -> None:
        """Write the packed mask of the allowed next tokens into ``bitmask[index]``
        (``int32[batch, ceil(V/32)]``, CPU; bits beyond V cleared; all zeros after termination).
        Raises `DeadEndError` if the engine allows no token at all before termination.
        Only the bitmask is changed, not the constraint's state."""
        words = bitmask_words(self.vocab_size)
        if (
            not isinstance(bitmask, torch.Tensor) or bitmask.dtype != torch.int32 or bitmask.dim() != 2
            or bitmask.shape[1] != words or bitmask.device.type != "cpu" or not bitmask.is_contiguous()
        ):  # fmt: skip
            raise ConfigurationError(
                f"`bitmask` has to be a contiguous int32 CPU tensor of shape (batch, {words}), but is "
                f"{tuple(getattr(bitmask, 'shape', ()))} {getattr(bitmask, 'dtype', type(bitmask).__name__)}"
            )
        row = bitmask[index]
        if self._terminated:
            row.zero_()
            return
        self._fill(bitmask, index)
        tail = self.vocab_size % 32
        if tail:
            row[-1] &= (1 << tail) - 1
        if not bool(row.any()):
            raise DeadEndError(
                f"{self.engine} allows no token after {self.num_accepted} accepted tokens: the "
                "tokenizer cannot spell any continuation the grammar allows"
            )

    def rollback(self, num_tokens: int = 1) -> None:
        """Undo the last `num_tokens` accepted tokens (EOS counts as one)."""
        check_rollback(num_tokens, self.num_accepted)
        if num_tokens:
            self._rollback(num_tokens)
            self.num_accepted -= num_tokens
            self._terminated = False

    def fork(self) -> EngineConstraint:
        """An independent copy in the same state (through the engine's own fork or copy)."""
        twin = self._fork_engine()
        twin.num_accepted = self.num_accepted
        twin._terminated = self._terminated
        return twin

    def is_accepting(self) -> bool:
        """True when the text so far is a complete sentence. Does not change the state."""
        return not self._terminated and self._accepting()

    def is_terminated(self) -> bool:
        """True once EOS has been accepted. Does not change the state."""
        return self._terminated

    def __repr__(self) -> str:
        status = "terminated" if self._terminated else ("accepting" if self.is_accepting() else "open")
        return f"{type(self).__name__}(accepted={self.num_accepted}, {status})"
