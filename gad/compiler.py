"""`GrammarCompiler` binds a grammar to one tokenizer, producing an immutable `CompiledGrammar`.

Everything a matcher needs that does not depend on one sequence's state lives here: the Earley
tables and terminal DFAs, and the tokenizer's sorted vocabulary. Every matcher of the same
compiled grammar shares it.
"""

from __future__ import annotations

from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar
from gad.parser.earley import EarleyParser, EarleyTables
from gad.tokenizer import TokenizerInfo


class CompiledGrammar:
    """A `Grammar` compiled for one `TokenizerInfo`. Immutable; share it between matchers."""

    def __init__(self, grammar: Grammar, tokenizer_info: TokenizerInfo) -> None:
        self.grammar = grammar
        self.tokenizer_info = tokenizer_info
        self.parser = EarleyParser(EarleyTables(grammar))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer_info.vocab_size

    def __repr__(self) -> str:
        return f"CompiledGrammar({self.grammar!r}, vocab_size={self.vocab_size})"


class GrammarCompiler:
    """Compiles grammars for one tokenizer: ``GrammarCompiler(tok_info).compile(grammar)``."""

    def __init__(self, tokenizer_info: TokenizerInfo) -> None:
        if not isinstance(tokenizer_info, TokenizerInfo):
            raise ConfigurationError(
                f"`tokenizer_info` has to be a gad.TokenizerInfo, but is {type(tokenizer_info).__name__}"
            )
        self.tokenizer_info = tokenizer_info

    def compile(self, grammar: Grammar | str, start: str = "start") -> CompiledGrammar:
        """Compile a `Grammar`, or Lark grammar text, for this compiler's tokenizer."""
        if isinstance(grammar, str):
            grammar = Grammar.from_lark(grammar, start=start)
        elif not isinstance(grammar, Grammar):
            raise ConfigurationError(
                f"`grammar` has to be a gad.Grammar or Lark grammar text, but is {type(grammar).__name__}"
            )
        return CompiledGrammar(grammar, self.tokenizer_info)
