"""xgrammar 0.2.8 behind gad's constraint protocol: `XGrammarConstraint` and its factory.

**Vocabulary.** By default xgrammar gets the vocabulary as gad reads it: each id's exact bytes
from `gad.TokenizerInfo` (``VocabType.RAW``), special ids as empty tokens (which xgrammar treats
as special, never text), gad's EOS ids as its stop tokens and V as its vocabulary size. So mask
differences from gad are differences of grammar language only. ``engine_tokenizer=True`` uses
xgrammar's own converter (``xgr.TokenizerInfo.from_huggingface``) instead, which lists no
special tokens for SmolLM2 or Llama-3 and reads an added token such as ``<|im_start|>`` as its
literal text: it then allows those tokens wherever ``<`` may follow, e.g. inside a JSON string
(tested; gad never allows a special token as text).

**Language** (where xgrammar differs from gad on the same input; tested in tests/test_engines.py):

- Lark text goes through xgrammar's own Lark converter (`GrammarCompiler.compile_lark`). It puts
  ``%ignore`` text after each terminal but not before the first: no whitespace before the first
  token (gad: ``%ignore`` is allowed at both ends). Rule shapes, ``"..."i`` and regex terminals
  are converted by xgrammar; a construct it cannot convert is a `GrammarError` carrying its
  message.
- JSON Schema: ``compile_json_schema(any_whitespace=True, strict_mode=False)``, so additional
  properties are allowed unless the schema forbids them (as the spec and gad say), and any amount
  of whitespace (gad: at most 16 characters between tokens by default).
- Regex: ``compile_regex``, a whole-string match as `gad.Grammar.from_regex`.
- xgrammar, like gad, is scannerless on Lark input, and allows EOS exactly where the text is a
  complete sentence.

**State.** `fork` is xgrammar's ``GrammarMatcher.fork`` (a deep copy of the parser state, a few
µs); `rollback` is its ``rollback`` (the matcher is built with unbounded rollback). A rejected
token leaves xgrammar's state unchanged (its ``accept_token`` returns False).
"""

from __future__ import annotations

from typing import Any

import torch

from gad.constraint import ConstraintFactory
from gad.engines.base import EngineConstraint
from gad.errors import ConfigurationError, GrammarError
from gad.tokenizer import TokenizerInfo

try:
    import xgrammar as xgr
except ImportError as exc:  # pragma: no cover - reported by gad.engines with the extra to install
    raise ImportError(exc.msg, name="xgrammar") from exc

__all__ = ["XGrammarConstraint", "xgrammar_factory", "xgrammar_tokenizer_info"]


class XGrammarConstraint(EngineConstraint):
    """One sequence in an ``xgrammar.GrammarMatcher`` (see the module docstring)."""

    engine = "xgrammar"

    def __init__(self, compiled: Any, vocab_size: int, eos_token_ids: tuple[int, ...], matcher: Any = None) -> None:
        super().__init__(vocab_size, eos_token_ids)
        self.compiled = compiled
        self.matcher = matcher if matcher is not None else xgr.GrammarMatcher(compiled, max_rollback_tokens=-1)

    def _accept(self, token_id: int) -> bool:
        return bool(self.matcher.accept_token(token_id))

    def _fill(self, bitmask: torch.Tensor, index: int) -> None:
        self.matcher.fill_next_token_bitmask(bitmask, index)

    def _rollback(self, num_tokens: int) -> None:
        self.matcher.rollback(num_tokens)

    def _fork_engine(self) -> XGrammarConstraint:
        return XGrammarConstraint(self.compiled, self.vocab_size, tuple(self.eos_token_ids), self.matcher.fork())

    def _accepting(self) -> bool:
        return bool(self.matcher.is_completed())


def xgrammar_tokenizer_info(info: TokenizerInfo, tokenizer: Any = None) -> Any:
    """xgrammar's ``TokenizerInfo`` for gad's `info` (exact bytes, specials empty); with a Hugging
    Face `tokenizer`, xgrammar's own reading of it instead (V and stop ids still gad's)."""
    stop = list(info.eos_token_ids)
    if tokenizer is not None:
        return xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=info.vocab_size, stop_token_ids=stop)
    return xgr.TokenizerInfo(list(info.token_bytes), xgr.VocabType.RAW, vocab_size=info.vocab_size, stop_token_ids=stop)


def compile_source(kind: str, text: str, xgr_info: Any) -> Any:
    """The xgrammar ``CompiledGrammar`` of a grammar source; `GrammarError` with xgrammar's message."""
    compiler = xgr.GrammarCompiler(xgr_info, max_threads=1, cache_enabled=False)
    try:
        if kind == "lark":
            return compiler.compile_lark(text)
        if kind == "json_schema":
            return compiler.compile_json_schema(text, any_whitespace=True, strict_mode=False)
        if kind == "regex":
            return compiler.compile_regex(text)
        if kind == "gbnf":
            return compiler.compile_grammar(text)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise GrammarError(f"xgrammar cannot compile this {kind.replace('_', ' ')}: {exc}", source="<xgrammar>") from None
    raise ConfigurationError(f"xgrammar has no reader for grammar kind {kind!r}")


def xgrammar_factory(kind: str, text: str, info: TokenizerInfo, *, tokenizer: Any = None, fingerprint: str | None = None) -> ConstraintFactory:
    """A `ConstraintFactory` of `XGrammarConstraint`s for a grammar source (`kind`: "lark",
    "json_schema", "regex" or "gbnf"; `text`: its text) and gad's `info` (V, EOS ids, bytes);
    `tokenizer`: a Hugging Face tokenizer to read with xgrammar's own converter instead."""
    xgr_info = xgrammar_tokenizer_info(info, tokenizer)
    compiled = compile_source(kind, text, xgr_info)
    vocab, eos = int(info.vocab_size), tuple(int(e) for e in info.eos_token_ids)
    specials = {int(t) for t in xgr_info.special_token_ids} | set(range(xgr_info.vocab_size, vocab))
    return ConstraintFactory(
        new=lambda: XGrammarConstraint(compiled, vocab, eos),
        vocab_size=vocab,
        eos_token_ids=eos,
        never_allowed=tuple(sorted(specials - set(eos))),
        decode=info.decode_bytes,
        fingerprint=fingerprint,
    )
