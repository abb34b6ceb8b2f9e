"""`GrammarMatcher`: one sequence's parser state, token masks, and cheap fork/rollback.

The matcher keeps one immutable `ParserState` per accepted token, so `rollback(k)` drops k entries
and `fork()` copies a list of references: neither copies any parser data.

Masks are exact: token t is allowed iff its bytes extend the text so far to a prefix of some
sentence of the grammar (EOS: iff the text so far is a sentence). How a mask is assembled — and
why a given token is in it or not (`explain`) — is `gad.masks`'s job.
"""

from __future__ import annotations

import numpy as np
import torch

from gad.bitmask import bitmask_words, set_bits, unpack_bitmask
from gad.compiler import CompiledGrammar
from gad.errors import ConfigurationError, DeadEndError, RollbackError, TokenError
from gad.masks import Explanation, explain_token, fill_bitmask
from gad.parser.earley import EarleyParser, ParserState


class GrammarMatcher:
    """Tracks one sequence against a `CompiledGrammar`.

    Args:
        compiled: the grammar compiled for the model's tokenizer.
    """

    def __init__(self, compiled: CompiledGrammar) -> None:
        if not isinstance(compiled, CompiledGrammar):
            raise ConfigurationError(
                f"`compiled` has to be a gad.CompiledGrammar, but is {type(compiled).__name__}"
            )
        self.compiled = compiled
        self._parser: EarleyParser = compiled.parser
        self._tokenizer = compiled.tokenizer_info
        self._states: list[ParserState] = [self._parser.initial]
        self._terminated = False

    # -- state queries (none of these change the matcher state) ---------------------------------

    @property
    def num_accepted(self) -> int:
        """How many tokens (or `accept_bytes` chunks, or EOS) have been accepted and can be rolled back."""
        return len(self._states) - 1 + int(self._terminated)

    def is_accepting(self) -> bool:
        """True when the text so far is a complete sentence (EOS would be accepted).
        This method does not change the matcher state."""
        return self._parser.is_accepting(self._states[-1])

    def is_terminated(self) -> bool:
        """True once EOS has been accepted. This method does not change the matcher state."""
        return self._terminated

    def next_token_mask(self) -> torch.Tensor:
        """Allowed next tokens as a ``torch.BoolTensor`` of shape ``(vocab_size,)``.

        Raises `DeadEndError` when no token (not even EOS) is allowed, which happens only when the
        vocabulary cannot spell any continuation. After termination every entry is False.
        This method does not change the matcher state.
        """
        bits = self._bitmask()
        return torch.from_numpy(unpack_bitmask(bits, self._tokenizer.vocab_size))

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, index: int = 0) -> None:
        """Write the packed mask into row ``index`` of ``bitmask`` (``int32[batch, ceil(V/32)]``,
        from `allocate_token_bitmask`); bit ``i % 32`` of word ``i // 32`` is token i.
        Only the bitmask is changed, not the matcher state."""
        bits = self._bitmask()
        if bitmask.dtype != torch.int32 or bitmask.dim() != 2 or bitmask.shape[1] != bits.shape[0]:
            raise ConfigurationError(
                f"`bitmask` has to be an int32 tensor of shape (batch, {bits.shape[0]}), "
                f"but is {tuple(bitmask.shape)} {bitmask.dtype}"
            )
        bitmask[index].copy_(torch.from_numpy(bits.view(np.int32)))

    def allowed_token_ids(self) -> list[int]:
        """The ids set in `next_token_mask()`, ascending. This method does not change the matcher state."""
        return np.flatnonzero(unpack_bitmask(self._bitmask(), self._tokenizer.vocab_size)).tolist()

    def forced_bytes(self, max_bytes: int = 256) -> bytes:
        """The bytes the grammar forces next (jump-forward), e.g. ``": "`` after a key of a fixed
        schema: each is the only byte that can follow, and the text is not complete before it.
        Empty when the next byte is not determined. This method does not change the matcher state."""
        if self._terminated:
            return b""
        parser = self._parser
        state = self._states[-1]
        forced = bytearray()
        while len(forced) < max_bytes and not parser.is_accepting(state):
            live = parser.live_bytes(state)
            if len(live) != 1:
                break
            (byte,) = live
            forced.append(byte)
            state = parser.advance(state, byte)
        return bytes(forced)

    def _bitmask(self) -> np.ndarray:
        """``uint32[ceil(V/32)]`` mask of the current state (fresh array: callers may keep it)."""
        info = self._tokenizer
        bits = np.zeros(bitmask_words(info.vocab_size), dtype=np.uint32)
        if self._terminated:
            return bits
        state = self._states[-1]
        fill_bitmask(self.compiled, state, bits)
        if self._parser.is_accepting(state):
            set_bits(bits, np.asarray(info.eos_token_ids, dtype=np.int64))
        if not bits.any():
            raise DeadEndError(
                f"no token can continue the text after {self.num_accepted} accepted tokens: "
                "the tokenizer cannot spell any continuation the grammar allows"
            )
        return bits

    # -- state changes --------------------------------------------------------------------------

    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; returns False (state unchanged) if the grammar does not allow it.

        Raises `TokenError` for an id outside ``[0, vocab_size)``.
        """
        info = self._tokenizer
        token_id = checked_token_id(token_id, info.vocab_size)
        if self._terminated:
            return False
        if token_id in info.eos_token_ids:
            if not self.is_accepting():
                return False
            self._terminated = True
            return True
        if token_id in info.special_ids:
            return False
        return self.accept_bytes(info.token_bytes[token_id])

    def accept_bytes(self, data: bytes) -> bool:
        """Advance by raw bytes (one rollback step); False (state unchanged) if not a viable prefix."""
        if not isinstance(data, (bytes, bytearray)):
            raise TokenError(f"accept_bytes takes bytes, not {type(data).__name__}")
        if self._terminated or not data:
            return False if self._terminated else True
        state = self._parser.advance_bytes(self._states[-1], data)
        if state is None:
            return False
        self._states.append(state)
        return True

    def accept_string(self, text: str) -> bool:
        """`accept_bytes` of the UTF-8 encoding of ``text``."""
        return self.accept_bytes(text.encode("utf-8"))

    def rollback(self, num_tokens: int = 1) -> None:
        """Undo the last ``num_tokens`` accepted tokens (EOS counts as one)."""
        check_rollback(num_tokens, self.num_accepted)
        if num_tokens and self._terminated:
            self._terminated = False
            num_tokens -= 1
        if num_tokens:
            del self._states[-num_tokens:]

    def reset(self) -> None:
        """Back to the start of the grammar."""
        del self._states[1:]
        self._terminated = False

    def fork(self) -> GrammarMatcher:
        """An independent matcher in the same state; shares all parser data with this one."""
        twin = GrammarMatcher.__new__(GrammarMatcher)
        twin.compiled = self.compiled
        twin._parser = self._parser
        twin._tokenizer = self._tokenizer
        twin._states = self._states.copy()
        twin._terminated = self._terminated
        return twin

    def __repr__(self) -> str:
        status = "terminated" if self._terminated else ("accepting" if self.is_accepting() else "open")
        return f"GrammarMatcher(accepted={self.num_accepted}, {status})"


def explain(matcher: GrammarMatcher, token_id: int) -> Explanation:
    """Why ``token_id`` is allowed or not after what ``matcher`` has accepted, in words: for each
    live lexeme, which terminal reads the token's bytes, where they die, or where the terminal may
    end and what would have to read the rest. ``str()`` it to read it. This function does not
    change the matcher state.

    Raises `TokenError` for an id outside ``[0, vocab_size)``.
    """
    info = matcher.compiled.tokenizer_info
    token_id = checked_token_id(token_id, info.vocab_size)
    terminated = matcher.is_terminated()
    bits = np.zeros(bitmask_words(info.vocab_size), dtype=np.uint32) if terminated else matcher._bitmask()
    allowed = bool((int(bits[token_id >> 5]) >> (token_id & 31)) & 1)
    return explain_token(
        matcher.compiled, matcher._states[-1], token_id, eos=token_id in info.eos_token_ids,
        special=token_id in info.special_ids, terminated=terminated, allowed=allowed,
        accepting=matcher.is_accepting(),
    )


# -- the contract's argument checks, shared by every constraint (gad.engines too) -----------------


def checked_token_id(token_id: object, vocab_size: int) -> int:
    """`token_id` as an int, or `TokenError` if it is not an int in ``[0, vocab_size)``."""
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
        raise TokenError(f"token id must be an int, not {type(token_id).__name__}")
    token_id = int(token_id)
    if not 0 <= token_id < vocab_size:
        raise TokenError(f"token id {token_id} is out of range [0, {vocab_size})")
    return token_id


def check_rollback(num_tokens: object, num_accepted: int) -> None:
    """`RollbackError` unless `num_tokens` is an int in ``[0, num_accepted]``."""
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise RollbackError(f"`num_tokens` has to be a non-negative int, but is {num_tokens!r}")
    if num_tokens > num_accepted:
        raise RollbackError(f"cannot roll back {num_tokens} tokens: only {num_accepted} have been accepted")
