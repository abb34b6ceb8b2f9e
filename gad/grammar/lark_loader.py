"""Lark EBNF → `Grammar`, through lark's own grammar loader (no second grammar-file parser).

lark expands EBNF (`?`, `*`, `+`, `[...]`, `~ n`, templates) into BNF rules and resolves
`%import common.X`; we keep its rules and terminal regexes and turn lark's errors into
`GrammarError`s that carry the source name, line and column — of the file the error is in, which
for an error inside an ``%import``ed grammar is that grammar's file, not the importing one. One
extension: the empty literal ``""`` (which lark refuses) is ε, as in GBNF, llguidance and xgrammar.
"""

from __future__ import annotations

import os
import pkgutil
import re
import sys
from collections.abc import Iterator

from lark.exceptions import LarkError, VisitError
from lark.load_grammar import GrammarBuilder, PackageResource

from gad.errors import GadError, GrammarError, UndefinedRuleError, UnsupportedGrammarError
from gad.grammar.ir import Grammar, Rule, SourceText, Terminal

_AT_LINE_COLUMN = re.compile(r"at line (\d+),? column (\d+)\.?")
_UNDEFINED = re.compile(r"(?:used but not defined: |(?:Rule|Terminal|Using an undefined rule|Using an undefined terminal)\s+(?!used\b)'?)([^' ]+)'?")
_DEFINED_TWICE = re.compile(r"(?:Rule|Terminal) '([^']+)' defined more than once")
_IGNORED_UNDEFINED = re.compile(r"Terminals \{'(\w+)'")
_EMPTY_TERMINAL = re.compile(r"Terminals cannot be empty \((\w+)\)")


def load_lark(
    text: str,
    *,
    start: str = "start",
    source: str = "<grammar>",
    import_paths: list[str] | None = None,
) -> Grammar:
    """Parse Lark grammar ``text`` and build a validated `Grammar` rooted at ``start``."""
    if not isinstance(text, str):
        raise GrammarError(f"grammar text must be a str, not {type(text).__name__}", source=source)
    src = SourceText(source, text)
    builder = GrammarBuilder(False, import_paths or [])
    try:
        builder.load_grammar(_empty_literals_as_epsilon(text), source)
        lark_terminals, lark_rules, ignore = builder.build().compile([start], set())
    except LarkError as exc:
        raise _grammar_error(_ImportedFiles(src, builder.used_files), exc) from None
    except GadError:
        raise
    except RecursionError as exc:  # lark's loader recurses on nesting and on %import
        raise _recursion_error(_ImportedFiles(src, builder.used_files), exc) from None
    except Exception as exc:  # lark lets some malformed input escape as KeyError, ValueError, ...
        raise GrammarError(f"malformed grammar ({type(exc).__name__}: {exc})", source=source) from None
    files = _ImportedFiles(src, builder.used_files)

    terminals: dict[str, Terminal] = {}
    for term in lark_terminals:
        regex = term.pattern.to_regexp()
        try:
            terminal = Terminal.compile(term.name, regex, lexer=True)
        except GrammarError as exc:
            where, name = files.owner(term.name)
            line, column = _locate_pattern(where, term.pattern.value, name)
            message = exc.message.replace(term.name, name)
            message = message if name in message else f"terminal {name}: {message}"
            raise type(exc)(message, source=where.name, line=line, column=column, text=where.text) from None
        terminals[term.name] = terminal

    rules = []
    for lark_rule in lark_rules:
        rhs = tuple(symbol.name for symbol in lark_rule.expansion)
        for symbol in lark_rule.expansion:
            if symbol.is_term and symbol.name not in terminals:
                where, name = files.owner(symbol.name)
                raise where.error(
                    UnsupportedGrammarError,
                    f"terminal {name!r} has no pattern (declared with %declare?); "
                    "gad needs every terminal's regular language",
                    name,
                )
        rules.append(Rule(str(lark_rule.origin.name), rhs))
    return Grammar(rules, terminals, start=start, ignore=tuple(ignore), source=src)


class _ImportedFiles:
    """The grammar files lark read for one load: the user's own, and each ``%import``ed one.

    lark names an imported symbol by its module path and its own name (``lib__WORD``,
    ``_lib__PRIVATE``, ``outer__inner__X``); `owner` undoes that to find the file an error is in.
    """

    def __init__(self, main: SourceText, used_files: dict[object, str]) -> None:
        self.main = main
        self.used_files = used_files

    def owner(self, name: str) -> tuple[SourceText, str]:
        """The file that defines the (maybe mangled) symbol `name`, and the name it has there;
        the user's file and `name` itself when no imported file matches."""
        private = name.startswith("_")
        parts = (name[1:] if private else name).split("__")
        for first in range(len(parts) - 1):  # the longest module path that names a file read
            relative = os.path.join(*parts[first:-1]) + ".lark"
            for key in self.used_files:
                path = key.path if isinstance(key, PackageResource) else str(key)
                if path == relative or path.endswith(os.sep + relative):
                    read = _read_source(key)
                    if read is not None:
                        return read, ("_" if private else "") + parts[-1]
        return self.main, name

    def failing_import(self, exc: BaseException) -> SourceText | None:
        """The imported file lark was loading when it raised `exc` (the innermost one), if any."""
        chain = self.import_chain(exc)
        return chain[-1] if chain else None

    @staticmethod
    def import_chain(exc: BaseException) -> list[SourceText]:
        """The imported files lark was loading when it raised `exc`, outermost first."""
        chain = []
        tb = exc.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals if tb.tb_frame.f_code.co_name == "do_import" else {}
            if isinstance(local.get("text"), str) and local.get("joined_path") is not None:
                chain.append(SourceText(_display_name(local["joined_path"]), local["text"]))
            tb = tb.tb_next
        return chain


def _recursion_error(files: _ImportedFiles, exc: RecursionError) -> GrammarError:
    """lark's loader ran out of stack: an ``%import`` cycle, or nesting too deep; say which, and where."""
    chain = [files.main, *files.import_chain(exc)]
    names = [src.name for src in chain]
    for end, name in enumerate(names):
        if name in names[:end]:
            start = names.index(name)
            importer, stem = chain[end - 1], os.path.splitext(os.path.basename(name))[0]
            line = column = None
            for match in _IMPORT.finditer(importer.text):
                if match.group(1).split(".")[-1] == stem:
                    line, column = importer.locate(match.group(0).strip())
                    break
            cycle = " → ".join(os.path.basename(n) for n in names[start : end + 1])
            return GrammarError(f"%import cycle: {cycle}", source=importer.name, line=line, column=column,
                                text=importer.text)  # fmt: skip
    src = chain[-1]
    depth, at = _deepest_nesting(src.text)
    line, column = src.position(at) if at is not None else (None, None)
    return GrammarError(
        f"the grammar nests ( ) and [ ] {depth} levels deep, more than lark's grammar loader can read "
        f"(Python's recursion limit is {sys.getrecursionlimit()}); name the inner parts as rules",
        source=src.name, line=line, column=column, text=src.text,
    )


def _deepest_nesting(text: str) -> tuple[int, int | None]:
    """The deepest nesting of ``(``/``[`` in the code of `text` (not in comments, strings or
    regexes), and the offset of the first bracket that reaches it (None when there is none)."""
    depth = deepest = 0
    at = None
    for start, _, code in _lark_segments(text):
        if code and text[start] in "([":
            depth += 1
            if depth > deepest:
                deepest, at = depth, start
        elif code and text[start] in ")]":
            depth = max(depth - 1, 0)
    return deepest, at


def _display_name(key: object) -> str:
    return f"{key.pkg_name}/{key.path}" if isinstance(key, PackageResource) else str(key)


def _read_source(key: object) -> SourceText | None:
    """The text of a grammar file lark read (a path, or a resource of a package), or None."""
    try:
        if isinstance(key, PackageResource):
            data = pkgutil.get_data(key.pkg_name, key.path)
            text = data.decode("utf-8") if data is not None else None
        else:
            with open(str(key), encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    return None if text is None else SourceText(_display_name(key), text)


_EPSILON = "/(?:)/"  # what lark reads for ``""``: a regex whose only match is the empty string


def _lark_segments(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, code) for each piece of Lark grammar text, in order: a ``//`` comment (to the
    end of the line), a string or ``/regex/`` literal (with backslash escapes; it ends at its
    closing quote, or before the end of its line), or one character of code."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
        elif c == '"' or c == "/":
            end = i + 1
            while end < n and text[end] != c and text[end] != "\n":
                end += 2 if text[end] == "\\" else 1
            end = min(end, n)
            if end < n and text[end] == c:
                end += 1
        else:
            yield i, i + 1, True
            i += 1
            continue
        yield i, end, False
        i = end


def _empty_literals_as_epsilon(text: str) -> str:
    """``text`` with every empty string literal ``""`` (or ``""i``) written as `_EPSILON`; a
    ``""`` inside a comment or another literal (`_lark_segments`) is left alone."""
    if '""' not in text:
        return text
    out: list[str] = []
    skip = 0  # the flag of an empty literal ("" i) is dropped with it
    for start, end, code in _lark_segments(text):
        if start < skip:
            continue
        if not code and text[start:end] == '""':
            out.append(_EPSILON)
            skip = end + 1 if text.startswith("i", end) else end
        else:
            out.append(text[start:end])
    return "".join(out)


def _epsilon_shift(src: SourceText, line: int, column: int) -> int:
    """``column`` in the rewritten text, mapped back to the text the user wrote."""
    original = src.text.split("\n")[line - 1] if 0 < line <= src.text.count("\n") + 1 else ""
    rewritten = _empty_literals_as_epsilon(original)
    if rewritten == original:
        return column
    for k in range(len(original) + 1):  # the shortest prefix whose rewriting reaches the column
        if len(_empty_literals_as_epsilon(original[:k])) >= column - 1:
            return k + 1
    return column


def _locate_pattern(src: SourceText, value: str, name: str | None = None) -> tuple[int | None, int | None]:
    """Where a terminal's pattern is written: as ``/regex/``, as ``"string"``, or anywhere; else
    where the terminal `name` is defined."""
    for written in (f"/{value}/", f'"{value}"', value):
        if value and written in src.text:
            return src.locate(written)
    return _locate_definition(src, name) if name else (None, None)


def _locate_definition(src: SourceText, name: str, nth: int = 0) -> tuple[int | None, int | None]:
    """The line and column of the `nth` definition of rule or terminal `name` (``name:``,
    ``?name:``, ``NAME.2:``), or (None, None)."""
    found = re.finditer(rf"^[ \t]*[?!]?({re.escape(name)})(?:\.-?\d+)?[ \t]*(?:\{{[^}}]*\}}[ \t]*)?:", src.text, re.MULTILINE)
    for k, match in enumerate(found):
        if k == nth:
            return src.position(match.start(1))
    return None, None


def _grammar_error(files: _ImportedFiles, exc: LarkError) -> GrammarError:
    """`exc` as a `GrammarError` located in the file it is about."""
    imported = files.failing_import(exc)
    src = imported or files.main
    if isinstance(exc, VisitError):
        return _visit_error(src, exc, rewritten=imported is None)
    args = exc.args
    if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], SyntaxError):
        # lark's literal evaluation failed: ('\\xZZ', SyntaxError("... truncated \\xXX escape"))
        reason = str(args[1].msg).split(": ", 1)[-1]
        line, column = src.locate(f'"{args[0]}"')
        return GrammarError(f'invalid escape in the string literal "{args[0]}": {reason}', source=src.name,
                            line=line, column=column, text=src.text)  # fmt: skip
    message = str(exc).strip().split("\n")[0]
    position = _AT_LINE_COLUMN.search(str(exc))
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    if position:
        line, column = int(position.group(1)), int(position.group(2))
        message = _AT_LINE_COLUMN.sub("", message).rstrip(" ,:")
    if isinstance(line, int) and isinstance(column, int) and line >= 1 and imported is None:
        column = _epsilon_shift(src, line, column)
    twice = _DEFINED_TWICE.search(message)
    if twice and line is None:
        line, column = _locate_definition(src, twice.group(1), nth=1)
    ignored = _IGNORED_UNDEFINED.search(message)
    if ignored and line is None:
        found = re.search(rf"^[ \t]*%ignore[ \t]+({re.escape(ignored.group(1))})\b", src.text, re.MULTILINE)
        if found:
            line, column = src.position(found.start(1))
    empty = _EMPTY_TERMINAL.search(message)
    if empty and line is None:
        line, column = _locate_definition(src, empty.group(1))
    cls = GrammarError
    undefined = _UNDEFINED.search(message)
    if "not defined" in message or "undefined" in message.lower():
        cls = UndefinedRuleError
        asked = undefined and _import_of(src, undefined.group(1))
        if asked:
            module, line, column = asked
            message = f"%import {module}: {module!r} defines no rule or terminal named {undefined.group(1)!r}"  # type: ignore[union-attr]
        elif undefined and line is None:
            owner, name = files.owner(undefined.group(1)) if imported is None else (src, undefined.group(1))
            if owner is not src:
                src, message = owner, message.replace(undefined.group(1), name)
            line, column = src.locate(name)
    if isinstance(line, int) and line < 1:
        line = column = None
    return cls(message, source=src.name, line=line, column=column, text=src.text)


_IMPORT = re.compile(r"^[ \t]*%import[ \t]+([\w.]+?)(?:\.(\w+)|[ \t]*\(([^)]*)\))", re.MULTILINE)


def _import_of(src: SourceText, name: str) -> tuple[str, int, int] | None:
    """The module, line and column of the ``%import`` that asks for ``name``, if one does."""
    for match in _IMPORT.finditer(src.text):
        names = [match.group(2)] if match.group(2) else re.split(r"[\s,]+", match.group(3).strip())
        if name in names:
            return match.group(1), *src.position(match.start(1))
    return None


def _visit_error(src: SourceText, exc: VisitError, rewritten: bool = True) -> GrammarError:
    """lark failed while transforming a construct (``exc.rule``); say which, and where."""
    tokens = [t for t in getattr(exc.obj, "scan_values", lambda _p: [])(lambda v: hasattr(v, "line"))]
    line = getattr(tokens[0], "line", None) if tokens else None
    column = getattr(tokens[0], "column", None) if tokens else None
    if exc.rule == "range":
        ends = " and ".join(str(t) for t in tokens[:2])
        message = f"a character range {'..'.join(str(t) for t in tokens[:2])} needs one character at each end (got {ends})"
    else:
        reason = str(exc.orig_exc) or type(exc.orig_exc).__name__
        message = f"invalid {exc.rule}: {reason}"
    if isinstance(line, int) and isinstance(column, int) and rewritten:
        column = _epsilon_shift(src, line, column)
    return GrammarError(message, source=src.name, line=line, column=column, text=src.text)
