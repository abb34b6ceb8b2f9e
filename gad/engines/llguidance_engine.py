"""llguidance 1.9.1 behind gad's constraint protocol: `LLGuidanceConstraint` and its factory.

**Vocabulary.** By default llguidance gets the vocabulary as gad reads it: an ``LLTokenizer``
built from `gad.TokenizerInfo`'s exact bytes per id, gad's special ids as llguidance special
tokens (never text), gad's EOS ids and V; llguidance's tokenize callback is the Hugging Face
tokenizer's encoder when one is given, else a greedy longest match over the vocabulary (it is
used for forced text, not for masks). ``engine_tokenizer=True`` uses llguidance's own converter
(``llguidance.hf.from_tokenizer``, fast tokenizers only) instead.

**Language** (where llguidance differs from gad on the same input; tested in
tests/test_engines.py):

- Lark text is taken as it is (``LLMatcher.grammar_from_lark``): llguidance reads gad's dialect,
  but *lexes* it. ``%ignore`` text is a separator between lexemes only: no whitespace before the
  first token, and none after a finished document once nothing but EOS can follow (after a
  top-level JSON object; where the grammar could go on, it is allowed). Terminals are matched
  longest first (a keyword glued to a name, ``ORdinary``, is one NAME), where gad's language is
  scannerless.
- JSON Schema: ``LLMatcher.grammar_from_json_schema`` with llguidance's defaults (any
  whitespace between tokens; gad allows at most 16 characters by default).
- Regex: ``LLMatcher.grammar_from_regex``, a whole-string match as `gad.Grammar.from_regex`.
- EOS is allowed exactly where the text is a complete sentence, as in gad.

**State.** llguidance's ``consume_token`` puts the matcher in a permanent error state when the
token is not allowed, so `accept_token` uses ``try_consume_tokens([t])``, which consumes the
token only if it is allowed and otherwise leaves the state as it was. EOS is never given to
llguidance: once the grammar cannot go on, llguidance stops, refuses EOS in
``try_consume_tokens`` and takes it in ``consume_token`` without counting it for ``rollback``;
so the adapter accepts EOS exactly when ``is_accepting()`` and keeps the termination itself (its
mask is then all zeros, as gad's). `fork` is ``LLMatcher.deep_copy`` (~2 µs), `rollback` its
``rollback``. An engine error (llguidance's parser limits) raises `gad.errors.EngineError` with
its message.
"""

from __future__ import annotations

from typing import Any

import torch

from gad.constraint import ConstraintFactory
from gad.engines.base import EngineConstraint
from gad.errors import ConfigurationError, EngineError, GrammarError
from gad.tokenizer import TokenizerInfo

try:
    import llguidance
    import llguidance.hf
    from llguidance import LLMatcher, LLTokenizer, TokenizerWrapper
except ImportError as exc:  # pragma: no cover - reported by gad.engines with the extra to install
    raise ImportError(exc.msg, name="llguidance") from exc

__all__ = ["LLGuidanceConstraint", "llguidance_factory", "llguidance_tokenizer"]


class LLGuidanceConstraint(EngineConstraint):
    """One sequence in an ``llguidance.LLMatcher`` (see the module docstring)."""

    engine = "llguidance"

    def __init__(self, matcher: Any, vocab_size: int, eos_token_ids: tuple[int, ...]) -> None:
        super().__init__(vocab_size, eos_token_ids)
        self.matcher = matcher

    def _check(self) -> None:
        if self.matcher.is_error():
            raise EngineError(f"llguidance: {self.matcher.get_error()}")

    def _accept(self, token_id: int) -> bool:
        if token_id in self.eos_token_ids:  # kept out of llguidance: see the module docstring
            return bool(self.matcher.is_accepting())
        ok = self.matcher.try_consume_tokens([token_id]) == 1
        self._check()
        return ok

    def _fill(self, bitmask: torch.Tensor, index: int) -> None:
        row = bitmask[index]
        self.matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * 4)
        self._check()

    def _rollback(self, num_tokens: int) -> None:
        engine_tokens = num_tokens - int(self._terminated)  # the EOS was never given to llguidance
        if engine_tokens:
            self.matcher.rollback(engine_tokens)
            self._check()

    def _fork_engine(self) -> LLGuidanceConstraint:
        return LLGuidanceConstraint(self.matcher.deep_copy(), self.vocab_size, tuple(self.eos_token_ids))

    def _accepting(self) -> bool:
        return bool(self.matcher.is_accepting())


class _Vocabulary:
    """What ``llguidance.TokenizerWrapper`` reads: gad's bytes, special ids, EOS, and an encoder."""

    def __init__(self, info: TokenizerInfo, tokenizer: Any) -> None:
        self.eos_token_id = int(info.eos_token_ids[0])
        self.bos_token_id = None
        # llguidance wants a name for each special token; gad records them as b"".
        self.tokens = [b or f"<|gad special {i}|>".encode() for i, b in enumerate(info.token_bytes)]
        self.special_token_ids = sorted(int(t) for t in info.special_ids)
        self._tokenizer = tokenizer
        self._by_bytes = {b: i for i, b in enumerate(info.token_bytes) if b}
        self._longest = max((len(b) for b in self._by_bytes), default=1)

    def __call__(self, text: str) -> list[int]:
        if self._tokenizer is not None:
            return [int(t) for t in self._tokenizer.encode(text, add_special_tokens=False)]
        data, ids, i = text.encode("utf-8"), [], 0
        while i < len(data):
            for j in range(min(len(data), i + self._longest), i, -1):
                tid = self._by_bytes.get(data[i:j])
                if tid is not None:
                    ids.append(tid)
                    i = j
                    break
            else:  # a byte no token spells: nothing to tokenize it with
                break
        return ids


def llguidance_tokenizer(info: TokenizerInfo, tokenizer: Any = None, *, engine_tokenizer: bool = False) -> Any:
    """llguidance's ``LLTokenizer`` for gad's `info` (see the module docstring); with
    ``engine_tokenizer=True``, llguidance's own reading of the Hugging Face `tokenizer`."""
    eos = [int(e) for e in info.eos_token_ids]
    if engine_tokenizer:
        if tokenizer is None:
            raise ConfigurationError("`engine_tokenizer=True` needs a Hugging Face tokenizer, not a gad.TokenizerInfo")
        try:
            return llguidance.hf.from_tokenizer(tokenizer, n_vocab=info.vocab_size, eos_token=eos)
        except ValueError as exc:
            raise ConfigurationError(f"llguidance cannot read this tokenizer: {exc}") from None
    return LLTokenizer(TokenizerWrapper(_Vocabulary(info, tokenizer)), n_vocab=info.vocab_size, eos_token=eos)


def grammar_text(kind: str, text: str) -> str:
    """llguidance's grammar for a grammar source."""
    if kind == "lark":
        return LLMatcher.grammar_from_lark(text)
    if kind == "json_schema":
        return LLMatcher.grammar_from_json_schema(text)
    if kind == "regex":
        return LLMatcher.grammar_from_regex(text)
    if kind == "gbnf":
        return llguidance.grammar_from("gbnf", text)
    raise ConfigurationError(f"llguidance has no reader for grammar kind {kind!r}")


def llguidance_factory(
    kind: str, text: str, info: TokenizerInfo, *, tokenizer: Any = None, engine_tokenizer: bool = False,
    fingerprint: str | None = None,
) -> ConstraintFactory:
    """A `ConstraintFactory` of `LLGuidanceConstraint`s for a grammar source (`kind`: "lark",
    "json_schema", "regex" or "gbnf"; `text`: its text) and gad's `info` (V, EOS ids, bytes).
    Raises `GrammarError` with llguidance's message when it refuses the grammar."""
    ll_tokenizer = llguidance_tokenizer(info, tokenizer, engine_tokenizer=engine_tokenizer)
    try:
        grammar = grammar_text(kind, text)
    except ValueError as exc:
        raise GrammarError(f"llguidance cannot read this {kind.replace('_', ' ')}: {exc}", source="<llguidance>") from None
    pristine = LLMatcher(ll_tokenizer, grammar, log_level=0)
    if pristine.is_error():
        raise GrammarError(
            f"llguidance cannot compile this {kind.replace('_', ' ')}: {pristine.get_error()}", source="<llguidance>"
        )
    vocab, eos = int(info.vocab_size), tuple(int(e) for e in info.eos_token_ids)
    specials = {t for t in range(min(vocab, ll_tokenizer.vocab_size)) if ll_tokenizer.is_special_token(t)}
    specials |= set(range(ll_tokenizer.vocab_size, vocab))
    return ConstraintFactory(
        new=lambda: LLGuidanceConstraint(pristine.deep_copy(), vocab, eos),
        vocab_size=vocab,
        eos_token_ids=eos,
        never_allowed=tuple(sorted(specials - set(eos))),
        decode=info.decode_bytes,
        fingerprint=fingerprint,
    )

