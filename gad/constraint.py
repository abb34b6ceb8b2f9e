"""The constraint protocol: what samplers and logits processors need from a grammar matcher.

A *constraint* tracks one sequence and answers which tokens may come next. `Constraint` writes
down the whole surface the samplers use — nothing else of `gad.GrammarMatcher` is touched — so
any engine's matcher that offers it (gad's own, or an adapter around xgrammar's or llguidance's)
can drive every sampler:

==============================================  ==================================================
``fill_next_token_bitmask(bitmask, index)``      write the allowed next tokens, packed
                                                 (``int32[batch, ceil(V/32)]``, bit ``i % 32`` of
                                                 word ``i // 32`` is token i), into row `index`
``accept_token(id) -> bool``                     advance by one token; False (state unchanged) if
                                                 the token is not allowed; EOS is allowed exactly
                                                 when the text is a complete sentence
``rollback(k)``                                  undo the last k accepted tokens (EOS counts as one)
``fork()``                                       an independent copy in the same state
``is_accepting()``                               the text so far is a complete sentence
``is_terminated()``                              EOS has been accepted
==============================================  ==================================================

Samplers take a `ConstraintFactory`: it makes a fresh constraint at the start of the language
and knows what all of them share — V (token ids are ``0 … V-1``) and the EOS ids.
`ConstraintFactory.of(compiled)` builds one for gad's own `gad.GrammarMatcher` from a
`gad.CompiledGrammar` (which every sampler also accepts directly); `ConstraintFactory(new=...,
vocab_size=..., eos_token_ids=...)` wraps any other engine. Samplers that need a boolean mask
get it from the bitmask through `next_token_masks`, the one shared helper.
`gad.testing.check_masks` checks any implementation's masks against the brute-force oracle
(every token fed alone to a fork).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Union, runtime_checkable

import numpy as np
import torch

from gad.bitmask import bitmask_words
from gad.compiler import CompiledGrammar, grammar_fingerprint, tokenizer_fingerprint
from gad.errors import ConfigurationError
from gad.matcher import GrammarMatcher

__all__ = [
    "Constraint",
    "ConstraintFactory",
    "ConstraintLike",
    "as_constraint_factory",
    "fit_mask",
    "next_token_mask",
    "next_token_masks",
]


@runtime_checkable
class Constraint(Protocol):
    """One sequence's state under a constraint (see the module docstring for the contract)."""

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0) -> None:
        """Write the packed mask of the allowed next tokens into ``bitmask[index]``
        (``int32[batch, ceil(V/32)]``). Does not change the constraint's state."""
        ...

    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; False, with the state unchanged, if it is not allowed."""
        ...

    def rollback(self, num_tokens: int = 1) -> None:
        """Undo the last `num_tokens` accepted tokens (EOS counts as one)."""
        ...

    def fork(self) -> Constraint:
        """An independent copy in the same state."""
        ...

    def is_accepting(self) -> bool:
        """True when the text so far is a complete sentence. Does not change the state."""
        ...

    def is_terminated(self) -> bool:
        """True once EOS has been accepted. Does not change the state."""
        ...


@dataclass(frozen=True)
class ConstraintFactory:
    """Makes fresh constraints for samplers, with what a sampler may want to know besides.

    Attributes:
        new: returns a fresh `Constraint` at the start of the language.
        vocab_size: V of the constraints.
        eos_token_ids: their EOS ids.
        never_allowed: ids no state ever allows (special tokens other than EOS), which AWRS
            removes from the model's distribution without a check; () if unknown.
        decode: token ids → their bytes (for critics and text); None if unknown.
        fingerprint: identifies the grammar and tokenizer, for files that must only be reloaded
            with the same constraint (ASAp and CARS tries); None if unknown.
        compiled: the `CompiledGrammar` behind it, when there is one.
    """

    new: Callable[[], Constraint]
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    never_allowed: tuple[int, ...] = ()
    decode: Callable[[Sequence[int]], bytes] | None = field(default=None, repr=False)
    fingerprint: str | None = None
    compiled: CompiledGrammar | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.new):
            raise ConfigurationError(f"`new` has to be a callable returning a fresh constraint, but is {self.new!r}")
        v = self.vocab_size
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigurationError(f"`vocab_size` has to be a strictly positive int, but is {v!r}")
        bad = [e for e in self.eos_token_ids if not 0 <= int(e) < v]
        if bad:
            raise ConfigurationError(f"EOS id {bad[0]} is outside the vocabulary [0, {v})")

    def __call__(self) -> Constraint:
        """A fresh constraint at the start of the language."""
        return self.new()

    @classmethod
    def of(cls, compiled: CompiledGrammar) -> ConstraintFactory:
        """The factory of gad's own matcher for `compiled`."""
        info = compiled.tokenizer_info
        eos = tuple(int(e) for e in info.eos_token_ids)
        return cls(
            new=lambda: GrammarMatcher(compiled),
            vocab_size=int(info.vocab_size),
            eos_token_ids=eos,
            never_allowed=tuple(sorted(int(t) for t in info.special_ids if t not in eos)),
            decode=info.decode_bytes,
            fingerprint=f"{grammar_fingerprint(compiled.grammar)}/{tokenizer_fingerprint(info)}",
            compiled=compiled,
        )


#: What every sampler accepts as its constraint.
ConstraintLike = Union[CompiledGrammar, ConstraintFactory]


def as_constraint_factory(grammar: object) -> ConstraintFactory:
    """A `ConstraintFactory` from a `CompiledGrammar` or a `ConstraintFactory` (returned as it
    is). Raises `ConfigurationError` for anything else."""
    if isinstance(grammar, ConstraintFactory):
        return grammar
    if isinstance(grammar, CompiledGrammar):
        return ConstraintFactory.of(grammar)
    raise ConfigurationError(
        "`compiled` has to be a gad.CompiledGrammar or a gad.constraint.ConstraintFactory, but is "
        f"{type(grammar).__name__}"
    )


def fit_mask(mask: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """A token mask cut or padded (with False) to length `size`, the model's logits size.

    A mask is as long as the constraint's `vocab_size`; a model may have more logits (padding
    rows, never allowed) or, rarely, fewer (the tokens it lacks can never be produced).
    """
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    length = mask.shape[-1]
    if length == size:
        return mask
    if length > size:
        return mask[..., :size]
    padded = torch.zeros((*mask.shape[:-1], size), dtype=torch.bool)
    padded[..., :length] = mask
    return padded


def next_token_masks(constraints: Sequence[Constraint], vocab_size: int, size: int | None = None) -> np.ndarray:
    """``bool[B, size]``: the allowed next tokens of each constraint (of V = `vocab_size`
    tokens), unpacked from its bitmask (`size` defaults to V; ids beyond V are False).
    Constraints that are the same object share one computation. Does not change any
    constraint's state."""
    if not constraints:
        raise ConfigurationError("`constraints` is empty")
    vocab = int(vocab_size)
    words = bitmask_words(vocab)
    bitmask = torch.zeros((len(constraints), words), dtype=torch.int32)
    seen: dict[int, int] = {}
    for b, constraint in enumerate(constraints):
        first = seen.setdefault(id(constraint), b)
        if first == b:
            constraint.fill_next_token_bitmask(bitmask, b)
        else:
            bitmask[b] = bitmask[first]
    bits = bitmask.numpy().view(np.uint32)
    masks = np.unpackbits(bits.view(np.uint8), axis=-1, bitorder="little", count=vocab).view(np.bool_)
    size = vocab if size is None else int(size)
    if size == vocab:
        return masks
    out = np.zeros((len(constraints), size), dtype=np.bool_)
    keep = min(size, vocab)
    out[:, :keep] = masks[:, :keep]
    return out


def next_token_mask(constraint: Constraint, vocab_size: int, size: int | None = None) -> np.ndarray:
    """``bool[size]``: the allowed next tokens of one constraint (see `next_token_masks`)."""
    return next_token_masks([constraint], vocab_size, size)[0]
