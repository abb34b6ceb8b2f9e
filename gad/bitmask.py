"""Packed token bitmasks, the interchange format of constrained-decoding engines.

A bitmask for a vocabulary of V tokens is ``int32[ceil(V/32)]`` (``[batch, ceil(V/32)]`` for a
batch): bit ``i % 32`` of word ``i // 32`` is set when token i is allowed — the layout xgrammar and
llguidance use, so the same buffers and kernels serve all of them.
"""

from __future__ import annotations

import numpy as np
import torch

from gad.errors import ConfigurationError


def bitmask_words(vocab_size: int) -> int:
    """Length of a packed token bitmask: ``ceil(vocab_size / 32)`` 32-bit words."""
    return (vocab_size + 31) // 32


def pack_bool_mask(mask: np.ndarray) -> np.ndarray:
    """``bool[V]`` → ``uint32[ceil(V/32)]``."""
    words = bitmask_words(mask.shape[0])
    packed = np.packbits(mask, bitorder="little")
    packed = np.concatenate([packed, np.zeros(words * 4 - packed.shape[0], dtype=np.uint8)])
    return packed.view(np.uint32)


def unpack_bitmask(bits: np.ndarray, vocab_size: int) -> np.ndarray:
    """``uint32[ceil(V/32)]`` → ``bool[V]`` (inverse of `pack_bool_mask`)."""
    return np.unpackbits(bits.view(np.uint8), bitorder="little", count=vocab_size).view(np.bool_)


def set_bits(bits: np.ndarray, token_ids: np.ndarray) -> None:
    """Set the bits of ``token_ids`` (int64 array) in ``bits`` (``uint32`` words), in place."""
    np.bitwise_or.at(bits, token_ids >> 5, np.left_shift(np.uint32(1), (token_ids & 31).astype(np.uint32)))


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> torch.Tensor:
    """An ``int32[batch_size, ceil(vocab_size/32)]`` CPU tensor with every token allowed.

    Fill rows with `GrammarMatcher.fill_next_token_bitmask`; rows left as they are allow all.
    """
    if batch_size < 1 or vocab_size < 1:
        raise ConfigurationError(
            f"`batch_size` and `vocab_size` have to be positive, but are {batch_size} and {vocab_size}"
        )
    return torch.full((batch_size, bitmask_words(vocab_size)), -1, dtype=torch.int32)


def apply_token_bitmask_inplace(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set ``logits[b, i] = -inf`` wherever bit i of ``bitmask[b]`` is clear, in place.

    ``logits`` is ``(vocab,)`` or ``(batch, vocab)`` on any device (CPU or CUDA), and ``bitmask``
    the matching ``int32`` ``(ceil(V/32),)`` or ``(batch, ceil(V/32))`` on any device. Logit
    columns beyond the bitmask's ``32 * words`` (padding of the model's vocabulary) are masked.
    """
    if bitmask.dtype != torch.int32:
        raise ConfigurationError(f"`bitmask` has to be an int32 tensor, but is {bitmask.dtype}")
    if logits.dim() != bitmask.dim() or logits.dim() not in (1, 2) or logits.shape[:-1] != bitmask.shape[:-1]:
        raise ConfigurationError(
            f"`logits` {tuple(logits.shape)} and `bitmask` {tuple(bitmask.shape)} do not match: "
            "expected (vocab,) with (words,) or (batch, vocab) with (batch, words)"
        )
    vocab = logits.shape[-1]
    bits = bitmask.to(logits.device, non_blocking=True)
    shifts = torch.arange(32, device=logits.device, dtype=torch.int32)
    allowed = ((bits.unsqueeze(-1) >> shifts) & 1).flatten(-2).bool()
    if allowed.shape[-1] < vocab:
        pad = torch.zeros(*allowed.shape[:-1], vocab - allowed.shape[-1], dtype=torch.bool, device=logits.device)
        allowed = torch.cat([allowed, pad], dim=-1)
    logits.masked_fill_(~allowed[..., :vocab], float("-inf"))
