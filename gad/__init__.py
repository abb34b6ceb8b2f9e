"""gad: grammar-constrained and grammar-aligned decoding for language models."""

from gad.compiler import CompiledGrammar, GrammarCompiler
from gad.errors import (
    ConfigurationError,
    DeadEndError,
    EmptyLanguageError,
    GadError,
    GrammarError,
    RollbackError,
    TokenError,
    UndefinedRuleError,
    UnsupportedGrammarError,
)
from gad.grammar.ir import Grammar
from gad.matcher import GrammarMatcher
from gad.tokenizer import TokenizerInfo

__version__ = "0.1.0"

__all__ = [
    "CompiledGrammar",
    "ConfigurationError",
    "DeadEndError",
    "EmptyLanguageError",
    "GadError",
    "Grammar",
    "GrammarCompiler",
    "GrammarError",
    "GrammarMatcher",
    "RollbackError",
    "TokenError",
    "TokenizerInfo",
    "UndefinedRuleError",
    "UnsupportedGrammarError",
    "__version__",
]
