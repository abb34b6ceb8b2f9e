"""SQL for SQLite: the ``SELECT`` grammar shipped as ``sql`` (``gad.grammars.resolve("sql")``), and
that grammar restricted to one database.

``grammar_for_schema(tables)`` admits exactly the statements of ``sql.lark`` whose table names are
tables of the database and whose column references name a column of a table in the same ``FROM``
clause, through a valid qualifier, unambiguously. SQLite then never answers "no such table",
"no such column", "ambiguous column name", or a syntax error (the tests execute random outputs).

How: the statement templates of ``sql.lark`` are instantiated once per *scope*, a choice of the
tables in the ``FROM`` clause and of their qualifiers. The ``SELECT`` list comes before ``FROM``, so
a context-free grammar must choose the scope first; it does, and ``FROM`` then spells that choice.
A scope is one table (referred to by its name, or aliased ``T1``), or up to ``max_join_tables``
tables joined and aliased ``T1``, ``T2``, ... (as in the Spider benchmark), or two distinct tables
joined without aliases. The grammar grows with the number of scopes, which is (tables ** n) for
n-way joins: keep ``max_join_tables`` small for large databases. The statements without ``FROM``
are kept as they are; in a join of 3 or more tables a ``LEFT JOIN ... ON`` comes last (SQLite
refuses an ``ON`` after a ``LEFT JOIN`` that names a table to its right).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Mapping

from gad import grammars
from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar, Rule, Terminal
from gad.grammar.regex import DEAD, ByteDFA
from gad.grammar.regex import _finish as _minimal_dfa  # the regex compiler's canonical form

__all__ = ["SQLITE_KEYWORDS", "grammar_for_schema", "schema_of", "sql_grammar"]

SQLITE_KEYWORDS = tuple(
    """ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
    BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT
    CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC DETACH
    DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST
    FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX
    INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH
    MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER
    PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX
    RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP
    TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW
    VIRTUAL WHEN WHERE WINDOW WITH WITHOUT TRUE FALSE""".split()
)
"""SQLite's 147 keywords (https://sqlite.org/lang_keywords.html) plus TRUE and FALSE: never
unquoted identifiers in these grammars."""

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset(k.lower() for k in SQLITE_KEYWORDS)


def sql_grammar() -> Grammar:
    """The shipped ``sql`` grammar with unquoted identifiers that are never keywords."""
    return _generic_grammar()


@functools.cache
def _generic_grammar() -> Grammar:
    return _with_identifiers(grammars.load("sql"))


def schema_of(connection: sqlite3.Connection) -> dict[str, list[str]]:
    """``{table or view: [columns]}`` of a SQLite database, in definition order."""
    rows = connection.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    ).fetchall()
    return {name: [col[1] for col in connection.execute(f'PRAGMA table_info("{name.replace(chr(34), chr(34) * 2)}")')]
            for (name,) in rows}  # fmt: skip


def grammar_for_schema(
    tables: Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]] | sqlite3.Connection,
    *,
    max_join_tables: int = 2,
) -> Grammar:
    """The ``SELECT`` statements of ``sql.lark`` over one database (see the module docstring).

    Args:
        tables: ``{table: [column, ...]}``, a list of ``(table, [column, ...])`` pairs, or an open
            `sqlite3.Connection` whose tables and views are read.
        max_join_tables: the most tables one ``FROM`` clause joins (1 = no joins).

    Names are matched as SQLite matches them: ASCII case-insensitively, bare when they are plain
    identifiers that are not keywords, and always also in double quotes.
    """
    if isinstance(tables, sqlite3.Connection):
        tables = schema_of(tables)
    items = list(tables.items()) if isinstance(tables, Mapping) else list(tables)
    if not items:
        raise ConfigurationError("`tables` has to name at least one table, but is empty")
    schema: dict[str, list[str]] = {}
    for entry in items:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ConfigurationError(f"`tables` entries have to be (table name, [columns]), but one is {entry!r}")
        name, columns = entry[0], list(entry[1])
        if not columns or not all(isinstance(c, str) and c for c in columns):
            raise ConfigurationError(f"table {name!r} needs a non-empty list of column names, but has {columns!r}")
        schema[name] = list(dict.fromkeys(columns))
    if isinstance(max_join_tables, bool) or not isinstance(max_join_tables, int) or max_join_tables < 1:
        raise ConfigurationError(f"`max_join_tables` has to be a positive int, but is {max_join_tables!r}")
    return _scoped(_generic_grammar(), schema, max_join_tables)


_PLACEHOLDERS = {"column_ref": "column", "from_clause": "from", "star": "star"}
_DISPATCH = {
    "simple_select": "simple{column_ref,from_clause,star}",
    "simple_1": "simple1{column_ref,from_clause}",
    "core_1": "core1{column_ref,from_clause}",
    "core_2": "core2{column_ref,from_clause}",
}
_IN_BRACES = re.compile(r"(?<=[{,])(column_ref|from_clause|star)(?=[},])")


def _scoped(generic: Grammar, schema: dict[str, list[str]], max_join: int) -> Grammar:
    """Copy the template instances of the generic scope once per scope of ``schema``, renaming the
    placeholders (``column_ref``, ``from_clause``, ``star``) to the scope's own rules. Working on
    the BNF is much faster than having lark expand the templates once per scope."""
    terminals = dict(generic.terminals)
    rules: list[Rule] = [r for r in generic.rules if r.rhs != (_DISPATCH.get(r.lhs),)]  # keeps the ones without FROM
    scoped = [r for r in generic.rules if "{" in r.lhs and _IN_BRACES.search(r.lhs)]
    names: dict[tuple[str, str], str] = {}

    def name_terminal(kind: str, name: str) -> str:
        key = (kind, name.lower())
        if key not in names:
            terminal = names[key] = f"{kind}_{len(names)}"
            terminals[terminal] = Terminal.compile(terminal, _name_regex(name), whole_input=True)
        return names[key]

    tables = list(schema)
    columns_of = {}
    for t in tables:
        columns_of[t] = rule = f"columns_{len(columns_of)}"
        rules += [Rule(rule, (name_terminal("COLUMN", c),)) for c in schema[t]]
    alias = [name_terminal("ALIAS", f"T{i + 1}") for i in range(max_join)]
    scopes: list[list[tuple[str, str]]] = []  # [(qualifier terminal, table)]
    for t in tables:
        scopes.append([(name_terminal("TABLE", t), t)])
        scopes.append([(alias[0], t)])
    for n in range(2, max_join + 1):
        for combo in _tuples(tables, n):
            scopes.append([(alias[i], t) for i, t in enumerate(combo)])
            if n == 2 and combo[0].lower() != combo[1].lower():
                scopes.append([(name_terminal("TABLE", t), t) for t in combo])
    for k, scope in enumerate(scopes):
        own = {p: f"scope_{k}_{suffix}" for p, suffix in _PLACEHOLDERS.items()}

        def rename(symbol: str) -> str:
            if symbol in own:
                return own[symbol]
            return _IN_BRACES.sub(lambda m: own[m.group(1)], symbol) if "{" in symbol else symbol

        rules += [Rule(rename(r.lhs), tuple(map(rename, r.rhs))) for r in scoped]
        column, frm, star = own["column_ref"], own["from_clause"], own["star"]
        counts: dict[str, int] = {}
        for _, t in scope:
            for c in {c.lower() for c in schema[t]}:
                counts[c] = counts.get(c, 0) + 1
        for t in dict.fromkeys(t for _, t in scope):
            rules += [Rule(column, (name_terminal("COLUMN", c),)) for c in schema[t] if counts[c.lower()] == 1]
        rules += [Rule(column, (q, "_DOT", columns_of[t])) for q, t in scope]
        rules += [Rule(star, ("STAR",))] + [Rule(star, (q, "_DOT", "STAR")) for q, _ in scope]
        for i, (q, t) in enumerate(scope):
            item, table = f"{frm}_item_{i}", name_terminal("TABLE", t)
            if q == table:
                rules.append(Rule(item, (table,)))
            else:
                rules += [Rule(item, (table, "_WS", q)), Rule(item, (table, "_WS", "AS", "_WS", q))]
            prefix = f"{frm}_{i}" if i < len(scope) - 1 else frm
            if i == 0:
                rules.append(Rule(prefix, (item,)))
            else:
                before = f"{frm}_{i - 1}" if i > 1 else f"{frm}_0"
                # SQLite: "ON clause references tables to its right" after a LEFT JOIN, and ON
                # may name every table of the scope; so a LEFT JOIN with ON comes last.
                on_join = "join_op" if i == len(scope) - 1 else "inner_join_op"
                rules += [
                    Rule(prefix, (before, "join_op", item)),
                    Rule(prefix, (before, on_join, item, "_WS", "ON", "_WS", rename("expr{column_ref}"))),
                    Rule(prefix, (before, "_COMMA", item)),
                ]
        for rule, instance in _DISPATCH.items():
            rules.append(Rule(rule, (rename(instance),)))
    return Grammar(rules, terminals, start=generic.start, ignore=generic.ignore, source=generic.source)


def _tuples(items: list[str], n: int) -> Iterable[tuple[str, ...]]:
    if n == 0:
        yield ()
        return
    for first in items:
        for rest in _tuples(items, n - 1):
            yield (first, *rest)


def _name_regex(name: str) -> str:
    """A regex for ``name`` as SQLite reads it: bare (when it can be) or double-quoted,
    ASCII case-insensitively."""
    quoted = '"' + re.escape(name.replace('"', '""')) + '"'
    forms = [quoted]
    if _PLAIN_NAME.fullmatch(name) and name.lower() not in _KEYWORDS:
        forms.insert(0, re.escape(name))
    return "(?ai:" + "|".join(forms) + ")"


# -- identifiers that are not keywords --------------------------------------------------------------

_FIRST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_REST = _FIRST | frozenset(b"0123456789")


def _with_identifiers(grammar: Grammar) -> Grammar:
    terminals = dict(grammar.terminals)
    if "IDENT" in terminals:
        terminals["IDENT"] = Terminal("IDENT", _identifier_regex(), _identifier_dfa(), whole_input=True)
    return Grammar(grammar.rules, terminals, start=grammar.start, ignore=grammar.ignore, source=grammar.source)


@functools.cache
def _identifier_dfa() -> ByteDFA:
    """``[A-Za-z_][A-Za-z0-9_]*`` minus the keywords, ASCII case-insensitively: a keyword trie whose
    missing edges lead to a state that accepts every continuation. Built directly; the regex
    compiler takes seconds on the equivalent regex (`_identifier_regex`)."""
    trie: list[dict[int, int]] = [{}]
    is_keyword = [False]
    for word in sorted(_KEYWORDS):
        node = 0
        for ch in word.encode():
            if ch not in trie[node]:
                trie[node][ch] = len(trie)
                trie.append({})
                is_keyword.append(False)
            node = trie[node][ch]
        is_keyword[node] = True
    free = len(trie)
    rows = []
    for node, edges in enumerate(trie):
        allowed = _FIRST if node == 0 else _REST
        row = [DEAD] * 256
        for b in allowed:
            row[b] = edges.get(ord(chr(b).lower()), free)
        rows.append(tuple(row))
    rows.append(tuple(free if b in _REST else DEAD for b in range(256)))
    accepting = {free} | {n for n in range(1, len(trie)) if not is_keyword[n]}
    out = _minimal_dfa(rows, accepting, 0)
    assert out is not None
    return ByteDFA(out[0], out[1], 0, "IDENT")


@functools.cache
def _identifier_regex() -> str:
    """The regex of `_identifier_dfa` (same language), for `Terminal.regex`."""

    def node(words: list[str], depth: int) -> str:
        children: dict[str, list[str]] = {}
        for w in words:
            if w:
                children.setdefault(w[0], []).append(w[1:])
        alternatives = [""] if depth and "" not in words else []
        base = "abcdefghijklmnopqrstuvwxyz_" + ("" if depth == 0 else "0123456789")
        others = "".join(c + c.upper() if c.isalpha() else c for c in base if c not in children)
        alternatives.append(f"[{others}][A-Za-z0-9_]*")
        for c in sorted(children):
            alternatives.append((f"[{c}{c.upper()}]" if c.isalpha() else c) + node(children[c], depth + 1))
        return "(?:" + "|".join(alternatives) + ")"

    return node(sorted(_KEYWORDS), 0)
