"""A contract checker for token masks, shipped so users can check their own grammars — and any
engine behind the `gad.constraint.Constraint` protocol — too.

The oracle is deliberately naive: for every token it forks the constraint and feeds that token
alone (`accept_token`), with no vocabulary trie, caching or precomputation involved. A mask
optimisation that changes any answer shows up as a disagreement here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gad.constraint import Constraint, next_token_mask
from gad.errors import ConfigurationError
from gad.matcher import GrammarMatcher


def _vocab_size(constraint: Constraint, vocab_size: int | None) -> int:
    if vocab_size is not None:
        return int(vocab_size)
    if isinstance(constraint, GrammarMatcher):
        return constraint.compiled.vocab_size
    size = getattr(constraint, "vocab_size", None)
    if isinstance(size, int):
        return size
    raise ConfigurationError(f"give `vocab_size` for a {type(constraint).__name__}")


def brute_force_allowed(matcher: Constraint, vocab_size: int | None = None) -> np.ndarray:
    """``bool[V]``: token t is set iff a fork of ``matcher`` accepts t. State unchanged.
    `vocab_size` defaults to the constraint's own (``compiled.vocab_size`` or ``vocab_size``)."""
    size = _vocab_size(matcher, vocab_size)
    allowed = np.zeros(size, dtype=np.bool_)
    for token_id in range(size):
        allowed[token_id] = matcher.fork().accept_token(token_id)
    return allowed


@dataclass(frozen=True)
class MaskDisagreement:
    """One prefix at which `next_token_mask()` and the brute-force oracle differ."""

    prefix: bytes
    wrongly_allowed: list[int]
    wrongly_rejected: list[int]

    def __str__(self) -> str:
        return (
            f"after {self.prefix!r}: mask allows {self.wrongly_allowed[:10]} that the oracle rejects, "
            f"rejects {self.wrongly_rejected[:10]} that the oracle allows"
        )


def check_masks(
    matcher: Constraint,
    token_ids: Iterable[int],
    vocab_size: int | None = None,
    decode: Callable[[Sequence[int]], bytes] | None = None,
) -> list[MaskDisagreement]:
    """Walk ``token_ids`` from ``matcher``'s state, comparing mask and oracle before every token.

    ``matcher`` is a `gad.GrammarMatcher` or any `gad.constraint.Constraint` (give `vocab_size`
    when it has no ``vocab_size`` attribute, and `decode` — e.g. a factory's — for readable
    prefixes). Returns the disagreements (empty when the masks are exact); stops at the first
    token the matcher rejects. ``matcher`` itself is not changed.
    """
    size = _vocab_size(matcher, vocab_size)
    if decode is None and isinstance(matcher, GrammarMatcher):
        decode = matcher.compiled.tokenizer_info.decode_bytes
    walker = matcher.fork()
    accepted: list[int] = []
    problems = []
    for token_id in [*token_ids, None]:
        mask = next_token_mask(walker, size)
        oracle = brute_force_allowed(walker, size)
        if not np.array_equal(mask, oracle):
            prefix = decode(accepted) if decode is not None else repr(accepted).encode()
            problems.append(
                MaskDisagreement(
                    prefix,
                    np.flatnonzero(mask & ~oracle).tolist(),
                    np.flatnonzero(oracle & ~mask).tolist(),
                )
            )
        if token_id is None or not walker.accept_token(token_id):
            break
        accepted.append(int(token_id))
    return problems


def random_walk(
    matcher: GrammarMatcher,
    rng: random.Random,
    max_steps: int,
    *,
    stop_probability: float = 1 / 3,
    choose: Callable[[int, Sequence[int], GrammarMatcher], int] | None = None,
) -> bytes | None:
    """A random sentence of the grammar, drawn token by token through the masks (no model).

    At each step, EOS with probability `stop_probability` when it is allowed (always when nothing
    else is), otherwise ``choose(step, allowed_non_eos_ids, walker)`` (default: uniform). Returns
    the bytes before EOS, or None when `max_steps` tokens pass without EOS. Works on a fork:
    ``matcher`` itself is not changed.
    """
    walker = matcher.fork()
    info = matcher.compiled.tokenizer_info
    eos = set(info.eos_token_ids)
    text = b""
    for step in range(max_steps):
        allowed = walker.allowed_token_ids()
        choices = [t for t in allowed if t not in eos]
        stops = [t for t in allowed if t in eos]
        if stops and (not choices or rng.random() < stop_probability):
            assert walker.accept_token(stops[0]), "the mask allowed an EOS that accept_token refused"
            return text
        token = choose(step, choices, walker) if choose is not None else rng.choice(choices)
        assert walker.accept_token(token), f"the mask allowed token {token} that accept_token refused"
        text += info.token_bytes[token]
    return None
