"""gad: grammar-constrained and grammar-aligned decoding for language models."""

from typing import TYPE_CHECKING, Any

from gad.bitmask import allocate_token_bitmask, apply_token_bitmask_inplace
from gad.compiler import CompiledGrammar, GrammarCompiler
from gad.errors import (
    ConfigurationError,
    DeadEndError,
    EmptyLanguageError,
    GadError,
    GrammarError,
    RollbackError,
    SchemaError,
    TokenError,
    UndefinedRuleError,
    UnsupportedGrammarError,
    UnsupportedSchemaError,
)
from gad.exact import ExactDistribution, exact_distribution
from gad.generate import GenerationResult, compile_grammar, generate
from gad.grammar.ir import Grammar
from gad.lm import HuggingFaceLM, LanguageModel, NGramLM, TableLM, UniformLM
from gad.matcher import GrammarMatcher, explain
from gad.samplers.asap import ASApSampler
from gad.samplers.awrs import AWRSSampler
from gad.samplers.gcd import GCDSampler
from gad.samplers.smc import SMC, SMCResult
from gad.tokenizer import TokenizerInfo
from gad import sql  # noqa: E402  (light: sqlite3 and the grammar IR; grammars load on first use)

if TYPE_CHECKING:
    from gad.integrations.asap_hf import ASApLogitsProcessor
    from gad.integrations.hf import GrammarLogitsProcessor

# Names whose modules import heavy libraries (transformers): imported on first access, so that
# `import gad` stays light.
_LAZY = {"GrammarLogitsProcessor": "gad.integrations.hf", "ASApLogitsProcessor": "gad.integrations.asap_hf"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "ASApLogitsProcessor",
    "ASApSampler",
    "AWRSSampler",
    "ExactDistribution",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "CompiledGrammar",
    "ConfigurationError",
    "DeadEndError",
    "EmptyLanguageError",
    "GCDSampler",
    "GadError",
    "GenerationResult",
    "Grammar",
    "GrammarCompiler",
    "GrammarError",
    "GrammarLogitsProcessor",
    "GrammarMatcher",
    "HuggingFaceLM",
    "LanguageModel",
    "NGramLM",
    "RollbackError",
    "SMC",
    "SMCResult",
    "SchemaError",
    "TableLM",
    "TokenError",
    "TokenizerInfo",
    "UndefinedRuleError",
    "UniformLM",
    "UnsupportedGrammarError",
    "UnsupportedSchemaError",
    "__version__",
    "compile_grammar",
    "exact_distribution",
    "explain",
    "generate",
    "sql",
]
