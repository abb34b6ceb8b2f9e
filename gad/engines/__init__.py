"""gad's samplers and processors on other mask engines: xgrammar and llguidance.

    factory = gad.engines.constraint_factory(schema, tokenizer, engine="llguidance")
    gad.SMC(lm, factory).run(prompt_ids, 16, max_new_tokens=64)      # any sampler takes it
    gad.generate(model, tokenizer, prompt, schema, sampler="smc", engine="xgrammar")

`constraint_factory` turns the inputs a user gives gad — Lark text, the path or shipped name of
a ``.lark`` file, a ``.gbnf`` path, a JSON Schema (a dict, or `GrammarSource.json_schema`), a
regex (`GrammarSource.regex`), or a `gad.Grammar` built by ``from_lark`` / ``from_regex`` /
``from_json_schema`` (read through the source it was built from) — plus a Hugging Face tokenizer
or a `gad.TokenizerInfo`, into a `gad.constraint.ConstraintFactory` for one engine:

==============  ==============================================  ==============================
``engine``      constraints                                     install
==============  ==============================================  ==============================
``"gad"``       `gad.GrammarMatcher` (the reference)             (built in)
``"xgrammar"``  `gad.engines.xgrammar_engine.XGrammarConstraint`  ``pip install 'gad[engines]'``
``"llguidance"`` `gad.engines.llguidance_engine.LLGuidanceConstraint`  ``pip install 'gad[engines]'``
==============  ==============================================  ==============================

The peers are imported only when asked for; a missing one is a `gad.ConfigurationError` naming
the extra to install. Each adapter's docstring says where that engine's language differs from
gad's on the same input (whitespace before the first token, lexing, JSON Schema whitespace);
``V`` and the EOS ids are always gad's (`gad.generate.tokenizer_info`: the model's logits size,
the tokenizer's and the generation config's EOS), so every engine's masks line up with the
model's logits. Factories are cached per tokenizer object and grammar, like `gad.compile_grammar`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gad.constraint import ConstraintFactory
from gad.errors import ConfigurationError, GrammarError

if TYPE_CHECKING:
    from gad.tokenizer import TokenizerInfo

__all__ = ["ENGINES", "GrammarSource", "constraint_factory", "grammar_source"]

#: The engine names `constraint_factory`, `gad.generate(engine=...)` and ``gad generate --engine`` take.
ENGINES = ("gad", "xgrammar", "llguidance")

_MODULES = {"xgrammar": "gad.engines.xgrammar_engine", "llguidance": "gad.engines.llguidance_engine"}
_KINDS = ("lark", "json_schema", "regex", "gbnf")


@dataclass(frozen=True)
class GrammarSource:
    """A grammar as text in one of the input languages every engine reads: ``kind`` is "lark",
    "json_schema" (the schema as JSON text), "regex" (a whole-string match) or "gbnf"."""

    kind: str
    text: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError(f"`kind` has to be one of {', '.join(map(repr, _KINDS))}, but is {self.kind!r}")
        if not isinstance(self.text, str):
            raise ConfigurationError(f"`text` has to be a str, but is {type(self.text).__name__}")

    @classmethod
    def lark(cls, text: str) -> GrammarSource:
        return cls("lark", text)

    @classmethod
    def regex(cls, pattern: str) -> GrammarSource:
        return cls("regex", pattern)

    @classmethod
    def json_schema(cls, schema: object) -> GrammarSource:
        """A schema given as a dict, a bool or JSON text."""
        if isinstance(schema, str):
            try:
                json.loads(schema)
            except ValueError as exc:
                raise ConfigurationError(f"the JSON Schema is not JSON text: {exc}") from None
            return cls("json_schema", schema)
        if not isinstance(schema, (dict, bool)):
            raise ConfigurationError(f"a JSON Schema has to be a dict, a bool or JSON text, but is {type(schema).__name__}")
        return cls("json_schema", json.dumps(schema))

    def to_grammar(self) -> Any:
        """The `gad.Grammar` of this source (gad's defaults)."""
        from gad.grammar.ir import Grammar

        if self.kind == "lark":
            return Grammar.from_lark(self.text)
        if self.kind == "json_schema":
            return Grammar.from_json_schema(self.text)
        if self.kind == "regex":
            return Grammar.from_regex(self.text)
        return Grammar.from_gbnf(self.text)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.text}".encode()).hexdigest()


def grammar_source(grammar: object) -> GrammarSource:
    """The `GrammarSource` of what a user gives gad (see the module docstring). Raises
    `ConfigurationError` for a `gad.CompiledGrammar` (compiled for gad alone) or anything else,
    `GrammarError` for a file that cannot be read."""
    from gad.compiler import CompiledGrammar
    from gad.grammar.ir import Grammar

    if isinstance(grammar, GrammarSource):
        return grammar
    if isinstance(grammar, (dict, bool)):
        return GrammarSource.json_schema(grammar)
    if isinstance(grammar, Grammar):
        name, text = grammar.source.name, grammar.source.text
        if not text:
            raise ConfigurationError("this gad.Grammar has no source text to give another engine; give the grammar text")
        kind = {"<regex>": "regex", "<json schema>": "json_schema"}.get(name, "gbnf" if name.endswith(".gbnf") else "lark")
        return GrammarSource(kind, text)
    if isinstance(grammar, CompiledGrammar):
        raise ConfigurationError(
            "a gad.CompiledGrammar is compiled for gad's engine; give another engine the grammar itself "
            "(Lark text, a file, a JSON Schema or a gad.Grammar)"
        )
    if isinstance(grammar, os.PathLike) or (isinstance(grammar, str) and "\n" not in grammar and grammar.endswith((".lark", ".gbnf"))):
        path = os.fspath(grammar)
        if not os.path.exists(path) and path.endswith(".lark"):
            from gad import grammars

            path = str(grammars.resolve(path))
        return GrammarSource("gbnf" if path.endswith(".gbnf") else "lark", _read(path))
    if isinstance(grammar, str):
        from gad import grammars

        if grammar in grammars.names():
            return GrammarSource("lark", _read(str(grammars.resolve(grammar))))
        return GrammarSource("lark", grammar)
    raise ConfigurationError(
        "`grammar` has to be Lark text, the path of a .lark or .gbnf file, a JSON Schema (dict), a "
        f"gad.Grammar or a gad.engines.GrammarSource, but is {type(grammar).__name__}"
    )


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise GrammarError(f"cannot read grammar file: {exc.strerror}", source=path) from None
    except UnicodeDecodeError as exc:
        raise GrammarError(f"grammar file is not UTF-8 ({exc.reason})", source=path) from None


def _engine_module(engine: str) -> Any:
    try:
        return importlib.import_module(_MODULES[engine])
    except ImportError as exc:
        if exc.name not in (engine, None) and not str(exc.name).startswith(engine):
            raise
        raise ConfigurationError(
            f"engine {engine!r} needs the {engine} package, which is not installed: "
            f"pip install 'gad[engines]' (pins xgrammar==0.2.8 and llguidance==1.9.1)"
        ) from None


def check_engine(engine: object) -> None:
    """`ConfigurationError` unless `engine` is one of `ENGINES` (imports nothing)."""
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConfigurationError(f"`engine` has to be one of {', '.join(map(repr, ENGINES))}, but is {engine!r}")


# -- factories, cached per tokenizer object -----------------------------------------------------

_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[Any, OrderedDict] = weakref.WeakKeyDictionary()
_PER_TOKENIZER = 8


def constraint_factory(
    grammar: object,
    tokenizer: Any,
    engine: str = "gad",
    *,
    model: Any = None,
    engine_tokenizer: bool = False,
) -> ConstraintFactory:
    """A `ConstraintFactory` for `grammar` on `engine`, for the model's tokenizer.

    Args:
        grammar: Lark text, a ``.lark`` / ``.gbnf`` path or shipped grammar name, a JSON Schema
            (dict), a `gad.Grammar`, or a `GrammarSource`; for ``engine="gad"`` also a
            `gad.CompiledGrammar`.
        tokenizer: a Hugging Face tokenizer, or a `gad.TokenizerInfo` (toy vocabularies).
        engine: "gad", "xgrammar" or "llguidance".
        model: a transformers model or `gad.LanguageModel`, for V and the EOS ids (as
            `gad.compile_grammar`).
        engine_tokenizer: xgrammar / llguidance read the Hugging Face tokenizer with their own
            converter instead of gad's bytes (see each adapter's docstring for what changes).

    Raises:
        ConfigurationError: an unknown engine, an engine that is not installed, a bad input.
        GrammarError: the engine cannot read or compile the grammar (its message included).
    """
    from gad.generate import compile_grammar, tokenizer_info
    from gad.tokenizer import TokenizerInfo

    check_engine(engine)
    if engine == "gad":
        if engine_tokenizer:
            raise ConfigurationError("`engine_tokenizer` applies to xgrammar and llguidance only")
        if isinstance(grammar, (GrammarSource, dict, bool)):
            grammar = grammar_source(grammar).to_grammar()
        return ConstraintFactory.of(compile_grammar(grammar, tokenizer, model))  # type: ignore[arg-type]
    module = _engine_module(engine)
    source = grammar_source(grammar)
    info = tokenizer_info(tokenizer, model)
    hf = None if isinstance(tokenizer, TokenizerInfo) else tokenizer
    key = (engine, source, info.vocab_size, info.eos_token_ids, engine_tokenizer)
    with _lock:
        entries = _entries(tokenizer)
        if entries is not None and key in entries:
            entries.move_to_end(key)
            return entries[key]
    factory = _build(module, engine, source, info, hf, engine_tokenizer)
    with _lock:
        if entries is not None:
            entries[key] = factory
            while len(entries) > _PER_TOKENIZER:
                entries.popitem(last=False)
    return factory


def _entries(tokenizer: Any) -> OrderedDict | None:
    try:
        return _cache.setdefault(tokenizer, OrderedDict())
    except TypeError:  # not weak-referenceable: no cache
        return None


def _build(module: Any, engine: str, source: GrammarSource, info: TokenizerInfo, hf: Any, engine_tokenizer: bool) -> ConstraintFactory:
    from gad.compiler import tokenizer_fingerprint

    if engine_tokenizer and hf is None:
        raise ConfigurationError("`engine_tokenizer=True` needs a Hugging Face tokenizer, not a gad.TokenizerInfo")
    version = importlib.metadata.version(engine)
    fingerprint = f"{engine} {version}{' native' if engine_tokenizer else ''}/{source.fingerprint}/{tokenizer_fingerprint(info)}"
    if engine == "xgrammar":
        return module.xgrammar_factory(
            source.kind, source.text, info, tokenizer=hf if engine_tokenizer else None, fingerprint=fingerprint
        )
    return module.llguidance_factory(
        source.kind, source.text, info, tokenizer=hf, engine_tokenizer=engine_tokenizer, fingerprint=fingerprint
    )
