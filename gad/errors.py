"""Every error gad raises derives from `GadError`, so callers can catch the whole family at once."""

from __future__ import annotations


class GadError(Exception):
    """Root of all errors raised by gad."""


class ConfigurationError(GadError, ValueError):
    """An argument or setting is invalid (also a `ValueError`, as users of the stdlib expect)."""


class GrammarError(GadError):
    """A grammar is malformed, empty, or uses something gad does not support.

    Carries the source name, 1-based line and column where known, and a caret line of context
    (as lark's `UnexpectedInput.get_context` does) so the message points at the offending text.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
        text: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        where = ""
        if source is not None or line is not None:
            where = f"{source or '<grammar>'}"
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        context = ""
        if text is not None and line is not None:
            lines = text.splitlines()
            if 1 <= line <= len(lines):
                context = "\n    " + lines[line - 1]
                if column is not None and column >= 1:
                    context += "\n    " + " " * (column - 1) + "^"
        super().__init__(where + message + context)


class UndefinedRuleError(GrammarError):
    """A rule or terminal is used but never defined."""


class EmptyLanguageError(GrammarError):
    """The grammar (or one of its terminals) accepts no string at all."""


class UnsupportedGrammarError(GrammarError):
    """The grammar uses a construct gad cannot compile (e.g. a regex lookahead or backreference)."""


class TokenError(GadError, ValueError):
    """A token id is out of range or is not allowed where it was given."""


class RollbackError(GadError, ValueError):
    """`rollback(k)` asked to undo more tokens than were accepted."""


class DeadEndError(GadError):
    """No token can continue the current state: the constraint is unsatisfiable from here."""


class EngineError(GadError):
    """Another engine behind `gad.engines` (xgrammar, llguidance) failed; its message is included."""


class SchemaError(GrammarError):
    """A JSON Schema is malformed, or uses a keyword that cannot be compiled to an exact grammar.

    ``pointer`` is the JSON pointer of the offending subschema (``#/properties/age``) and
    ``keyword`` the keyword at fault, when there is one.
    """

    def __init__(self, message: str, *, pointer: str = "#", keyword: str | None = None) -> None:
        self.pointer = pointer
        self.keyword = keyword
        super().__init__(message)


class UnsupportedSchemaError(SchemaError, UnsupportedGrammarError):
    """A JSON Schema keyword (or keyword value) that gad cannot compile exactly; see the README's
    table of supported keywords. ``lenient=True`` drops it instead, and reports it."""
