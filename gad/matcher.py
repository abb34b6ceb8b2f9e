"""`GrammarMatcher`: one sequence's parser state, token masks, and cheap fork/rollback.

The matcher keeps one immutable `ParserState` per accepted token, so `rollback(k)` drops k entries
and `fork()` copies a list of references: neither copies any parser data.

Masks are exact: token t is allowed iff its bytes extend the text so far to a prefix of some
sentence of the grammar (EOS: iff the text so far is a sentence). They are computed by walking the
tokenizer's sorted vocabulary as a prefix trie: tokens sharing a prefix share the parser work for
it, and once a prefix is rejected its whole subtree is skipped.
"""

from __future__ import annotations

import numpy as np
import torch

from gad.compiler import CompiledGrammar
from gad.errors import ConfigurationError, DeadEndError, RollbackError, TokenError
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
        return torch.from_numpy(self._allowed_array())

    def allowed_token_ids(self) -> list[int]:
        """The ids set in `next_token_mask()`, ascending. This method does not change the matcher state."""
        return np.flatnonzero(self._allowed_array()).tolist()

    def _allowed_array(self) -> np.ndarray:
        info = self._tokenizer
        allowed = np.zeros(info.vocab_size, dtype=np.bool_)
        if self._terminated:
            return allowed
        state = self._states[-1]
        _walk_vocabulary(self._parser, state, info.sorted_ids, info.sorted_bytes, info.sorted_lcp, allowed)
        if self._parser.is_accepting(state):
            allowed[list(info.eos_token_ids)] = True
        if not allowed.any():
            raise DeadEndError(
                f"no token can continue the text after {self.num_accepted} accepted tokens: "
                "the tokenizer cannot spell any continuation the grammar allows"
            )
        return allowed

    # -- state changes --------------------------------------------------------------------------

    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; returns False (state unchanged) if the grammar does not allow it.

        Raises `TokenError` for an id outside ``[0, vocab_size)``.
        """
        info = self._tokenizer
        if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
            raise TokenError(f"token id must be an int, not {type(token_id).__name__}")
        token_id = int(token_id)
        if not 0 <= token_id < info.vocab_size:
            raise TokenError(f"token id {token_id} is out of range [0, {info.vocab_size})")
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
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
            raise RollbackError(f"`num_tokens` has to be a non-negative int, but is {num_tokens!r}")
        if num_tokens > self.num_accepted:
            raise RollbackError(
                f"cannot roll back {num_tokens} tokens: only {self.num_accepted} have been accepted"
            )
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


def _walk_vocabulary(
    parser: EarleyParser,
    state: ParserState,
    ids: list[int],
    tokens: list[bytes],
    lcp: list[int],
    allowed: np.ndarray,
) -> None:
    """Set ``allowed[id]`` for every token whose bytes the parser accepts from ``state``.

    ``tokens`` is sorted and ``lcp[i]`` is the length of the prefix token i shares with token i-1,
    so ``stack[d]`` (the state after the first d bytes of the current token) is reused by the next
    token for its first ``lcp`` bytes; a byte rejected at depth d rejects every following token
    that shares those d+1 bytes.
    """
    advance = parser.advance
    stack = [state]
    count = len(ids)
    i = 0
    while i < count:
        token = tokens[i]
        depth = lcp[i]
        del stack[depth + 1 :]
        current = stack[depth]
        length = len(token)
        while depth < length:
            current = advance(current, token[depth])
            if current is None:
                break
            stack.append(current)
            depth += 1
        if current is None:
            i += 1
            while i < count and lcp[i] > depth:
                i += 1
            continue
        allowed[ids[i]] = True
        i += 1
