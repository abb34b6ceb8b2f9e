"""gad: grammar-constrained and grammar-aligned decoding for language models.

Every public name is imported on first access (PEP 562), so ``import gad`` — and the ``gad``
command's ``--help`` — load neither torch nor transformers; the errors are imported at once.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from gad.errors import (
    ConfigurationError,
    DeadEndError,
    EngineError,
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

if TYPE_CHECKING:
    from gad import grammars, sql, structural
    from gad.bitmask import allocate_token_bitmask, apply_token_bitmask_inplace
    from gad.compiler import CompiledGrammar, GrammarCompiler
    from gad.exact import ExactDistribution, exact_distribution
    from gad.generate import GenerationResult, compile_grammar, generate, stream
    from gad.grammar.ir import Grammar
    from gad.integrations.asap_hf import ASApLogitsProcessor
    from gad.integrations.hf import GrammarLogitsProcessor
    from gad.lm import HuggingFaceLM, LanguageModel, NGramLM, TableLM, UniformLM
    from gad.matcher import GrammarMatcher, explain
    from gad.samplers.asap import ASApSampler
    from gad.samplers.awrs import AWRSSampler
    from gad.samplers.base import Sampler
    from gad.samplers.cars import CARSSampler
    from gad.samplers.gcd import GCDSampler
    from gad.samplers.mcmc import MCMCSampler
    from gad.samplers.smc import SMC, SMCResult
    from gad.tokenizer import TokenizerInfo
    from gad.typed import choice

# name -> the module it comes from, imported on first access.
_LAZY = {
    "allocate_token_bitmask": "gad.bitmask",
    "apply_token_bitmask_inplace": "gad.bitmask",
    "CompiledGrammar": "gad.compiler",
    "GrammarCompiler": "gad.compiler",
    "ExactDistribution": "gad.exact",
    "exact_distribution": "gad.exact",
    "GenerationResult": "gad.generate",
    "compile_grammar": "gad.generate",
    "generate": "gad.generate",
    "stream": "gad.generate",
    "choice": "gad.typed",
    "Grammar": "gad.grammar.ir",
    "ASApLogitsProcessor": "gad.integrations.asap_hf",
    "GrammarLogitsProcessor": "gad.integrations.hf",
    "HuggingFaceLM": "gad.lm",
    "LanguageModel": "gad.lm",
    "NGramLM": "gad.lm",
    "TableLM": "gad.lm",
    "UniformLM": "gad.lm",
    "GrammarMatcher": "gad.matcher",
    "explain": "gad.matcher",
    "ASApSampler": "gad.samplers.asap",
    "AWRSSampler": "gad.samplers.awrs",
    "Sampler": "gad.samplers.base",
    "CARSSampler": "gad.samplers.cars",
    "GCDSampler": "gad.samplers.gcd",
    "MCMCSampler": "gad.samplers.mcmc",
    "SMC": "gad.samplers.smc",
    "SMCResult": "gad.samplers.smc",
    "TokenizerInfo": "gad.tokenizer",
}
_SUBMODULES = {"grammars", "sql", "structural"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"gad.{name}")
    else:
        raise AttributeError(f"module 'gad' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


class _Package(types.ModuleType):
    """`gad` itself. The import system binds a loaded submodule on its package (``gad.generate =
    <module gad.generate>``); for a submodule named like the function it exports, the function wins."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType) and value.__name__ == f"gad.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "ASApLogitsProcessor",
    "ASApSampler",
    "AWRSSampler",
    "CARSSampler",
    "ExactDistribution",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "CompiledGrammar",
    "ConfigurationError",
    "DeadEndError",
    "EngineError",
    "EmptyLanguageError",
    "GCDSampler",
    "GadError",
    "GenerationResult",
    "choice",
    "Grammar",
    "GrammarCompiler",
    "GrammarError",
    "GrammarLogitsProcessor",
    "GrammarMatcher",
    "HuggingFaceLM",
    "LanguageModel",
    "MCMCSampler",
    "NGramLM",
    "RollbackError",
    "SMC",
    "SMCResult",
    "Sampler",
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
    "grammars",
    "sql",
    "stream",
    "structural",
]
