"""The SQLite SELECT grammar (`grammars/sql.lark`) and `gad.sql.grammar_for_schema`.

Oracle: SQLite itself (the `sqlite3` module), on an in-memory copy of Spider's `concert_singer`
database: every corpus query runs there and both grammars accept it; the constructs still refused
are prepared by SQLite and refused by gad (the README lists them); queries naming an unknown table
or column are rejected by the schema grammar; thousands of random derivations of each grammar
(random rules, random strings of each terminal's automaton) are prepared by SQLite with no error at
all (schema grammar) or only an unknown name (generic grammar: its names are arbitrary); and
complete random walks through the schema grammar's masks (a toy vocabulary of SQL keywords, names
and punctuation) run without SQLite reporting any error.
"""

from __future__ import annotations

import functools
import random
import re
import sqlite3
from collections import deque

import pytest

import gad
from gad.grammar.regex import DEAD
from gad.sql import SQLITE_KEYWORDS, _identifier_dfa, _identifier_regex, grammar_for_schema, schema_of, sql_grammar

SCHEMA_SQL = """
CREATE TABLE stadium (Stadium_ID INTEGER PRIMARY KEY, Location TEXT, Name TEXT, Capacity INTEGER,
                      Highest INTEGER, Lowest INTEGER, Average INTEGER);
CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT, Country TEXT, Song_Name TEXT,
                     Song_release_year TEXT, Age INTEGER, Is_male TEXT);
CREATE TABLE concert (concert_ID INTEGER PRIMARY KEY, concert_Name TEXT, Theme TEXT,
                      Stadium_ID INTEGER REFERENCES stadium(Stadium_ID), Year TEXT);
CREATE TABLE singer_in_concert (concert_ID INTEGER REFERENCES concert(concert_ID),
                                Singer_ID INTEGER REFERENCES singer(Singer_ID));
INSERT INTO stadium VALUES (1, 'Raith Rovers', 'Stark''s Park', 10104, 4812, 1294, 2106),
                           (2, 'Ayr United', 'Somerset Park', 11998, 2363, 1057, 1477),
                           (3, 'East Fife', 'Bayview Stadium', 2000, 1980, 533, 864);
INSERT INTO singer VALUES (1, 'Joe Sharp', 'Netherlands', 'You', '1992', 52, 'F'),
                          (2, 'Timbaland', 'United States', 'Dangerous', '2008', 32, 'T'),
                          (3, 'Justin Brown', 'France', 'Hey Oh', '2013', 29, 'T'),
                          (4, 'Rose White', 'France', 'Sun', '2003', 41, 'F');
INSERT INTO concert VALUES (1, 'Auditions', 'Free choice', 1, '2014'), (2, 'Super bootcamp', 'Free choice 2', 2, '2014'),
                           (3, 'Home Visits', 'Bleeding Love', 2, '2015');
INSERT INTO singer_in_concert VALUES (1, 2), (1, 3), (2, 3), (3, 1), (3, 4);
"""


@functools.cache
def database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(SCHEMA_SQL)
    return db


# Spider-style queries over concert_singer (the shapes of the benchmark's gold queries).
CORPUS = [
    "SELECT count(*) FROM singer",
    "SELECT name ,  country ,  age FROM singer ORDER BY age DESC",
    "SELECT avg(age) ,  min(age) ,  max(age) FROM singer WHERE country  =  'France'",
    "SELECT song_name ,  song_release_year FROM singer ORDER BY age LIMIT 1",
    "SELECT DISTINCT country FROM singer WHERE age  >  20",
    "SELECT country ,  count(*) FROM singer GROUP BY country",
    "SELECT song_name FROM singer WHERE age  >  (SELECT avg(age) FROM singer)",
    "SELECT LOCATION ,  name FROM stadium WHERE capacity BETWEEN 5000 AND 10000",
    "select max(capacity), average from stadium",
    "SELECT name ,  capacity FROM stadium ORDER BY average DESC LIMIT 1",
    "SELECT count(*) FROM concert WHERE YEAR  =  2014 OR YEAR  =  2015",
    "SELECT T2.name ,  count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id  =  T2.stadium_id GROUP BY T1.stadium_id",
    "SELECT T2.name ,  T2.capacity FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id  =  T2.stadium_id WHERE T1.year  >=  2014 GROUP BY T2.stadium_id ORDER BY count(*) DESC LIMIT 1",
    "SELECT YEAR FROM concert GROUP BY YEAR ORDER BY count(*) DESC LIMIT 1",
    "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)",
    "SELECT country FROM singer WHERE age  >  40 INTERSECT SELECT country FROM singer WHERE age  <  30",
    "SELECT name FROM stadium EXCEPT SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id  =  T2.stadium_id WHERE T1.year  =  2014",
    "SELECT T2.concert_name ,  T2.theme ,  count(*) FROM singer_in_concert AS T1 JOIN concert AS T2 ON T1.concert_id  =  T2.concert_id GROUP BY T2.concert_id",
    "select T2.concert_name , T2.theme , count(*) from singer_in_concert as T1 join concert as T2 on T1.concert_id = T2.concert_id group by T2.concert_id",
    "SELECT T2.name ,  count(*) FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id  =  T2.singer_id GROUP BY T2.singer_id",
    "SELECT name ,  country FROM singer WHERE song_name LIKE '%Hey%'",
    "SELECT name FROM stadium WHERE capacity  >  (SELECT avg(capacity) FROM stadium) AND average  <  1500",
    "SELECT count(*) FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)",
    "SELECT DISTINCT T1.Name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.Singer_ID = T2.Singer_ID WHERE T1.Age > 30",
    "SELECT sum(capacity), CASE WHEN max(highest) > 4000 THEN 'big' ELSE 'small' END FROM stadium",
    "SELECT upper(name), length(country) FROM singer WHERE is_male = 'T' AND NOT age < 30",
    "SELECT name FROM singer WHERE country IN ('France', 'Netherlands') ORDER BY name ASC, age DESC LIMIT 2 OFFSET 1",
    "SELECT CAST(year AS INTEGER) + 1 FROM concert WHERE theme IS NOT NULL",
    "SELECT count(DISTINCT country) FROM singer",
    "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 JOIN concert AS T3 ON T1.singer_id = T2.singer_id AND T2.concert_id = T3.concert_id WHERE T3.year = 2014",
    "SELECT name FROM singer WHERE EXISTS (SELECT * FROM singer_in_concert WHERE singer_in_concert.singer_id = 1)",
    "SELECT stadium.name, concert.year FROM stadium JOIN concert ON stadium.stadium_id = concert.stadium_id",
    'SELECT "Name", round(avg(age), 1) FROM singer GROUP BY "Country" HAVING count(*) >= 1;',
    "SELECT name FROM singer UNION ALL SELECT concert_name FROM concert LIMIT 3",
    "SELECT coalesce(theme, 'none'), substr(concert_name, 1, 3) FROM concert WHERE concert_id % 2 = 1 OR year - 2014 >= 1",
    # without FROM, and other forms real code writes
    "SELECT 'x', 'y'",
    "SELECT 1",
    "select 1 + 1 as two, 'a' || 'b', NULL, -2.5e3, x'00ff'",
    "SELECT date('now'), strftime('%Y', '2014-01-01'), random(), abs(-3), typeof(1.5)",
    "SELECT count(*)",
    "SELECT 1 WHERE 2 > 1",
    "SELECT 1 UNION SELECT 2 UNION ALL SELECT count(*) FROM singer",
    "SELECT name FROM singer WHERE age > (SELECT 30) ORDER BY 1 DESC",
    "SELECT name, age FROM singer ORDER BY 2.5, -age LIMIT 2, 1",
    "SELECT name FROM singer WHERE age IN (SELECT 29 UNION SELECT 32)",
    "SELECT T1.name FROM singer AS T1 LEFT JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id WHERE T2.concert_id IS NULL",
    "SELECT T1.name FROM singer AS T1 LEFT OUTER JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T1.name HAVING count(T2.concert_id) = 0",
    "SELECT name FROM singer WHERE country IS NOT 'France' AND age NOT BETWEEN 30 AND 40",
    "SELECT T3.name FROM concert AS T1 JOIN singer_in_concert AS T2 ON T1.concert_id = T2.concert_id JOIN singer AS T3 ON T2.singer_id = T3.singer_id WHERE T1.year = '2014'",
    "SELECT count(*), max(capacity) FROM stadium GROUP BY location ORDER BY count(*) DESC, 1",
    "SELECT name FROM singer WHERE NOT EXISTS (SELECT 1 FROM singer_in_concert WHERE singer_in_concert.singer_id = 5)",
    "SELECT iif(age > 40, 'old', 'young'), group_concat(DISTINCT country) FROM singer",
    "SELECT name FROM stadium WHERE capacity > 5000 INTERSECT SELECT name FROM stadium WHERE average < 2000 LIMIT 5",
]

# Constructs SQLite prepares that the grammar still refuses, by construct (README: SQL).
REFUSED = [
    ("WITH t AS (SELECT 1 AS x) SELECT x FROM t", "common table expressions (WITH)"),
    ("VALUES (1, 2)", "VALUES as a statement"),
    ("SELECT row_number() OVER (ORDER BY age) FROM singer", "window functions"),
    ("SELECT name FROM singer ORDER BY name COLLATE NOCASE", "COLLATE"),
    ("SELECT name FROM singer WHERE name LIKE '%a\\_%' ESCAPE '\\'", "LIKE ... ESCAPE"),
    ("SELECT name FROM singer WHERE age ISNULL", "ISNULL / NOTNULL / NOT NULL postfix"),
    ("SELECT age & 1, age << 2, ~age, +age FROM singer", "bitwise operators, unary + and ~"),
    ("SELECT name, country, age FROM singer UNION SELECT name, location, capacity FROM stadium", "compounds of 3+ columns"),
    ("SELECT name FROM singer UNION SELECT name FROM stadium ORDER BY 1", "ORDER BY after a compound"),
    ("SELECT * FROM singer UNION SELECT * FROM singer", "* in a compound"),
    ("SELECT name FROM singer ORDER BY 2 - 1 + 0, (1)", "a parenthesised ORDER BY / GROUP BY index"),
    ("SELECT name FROM singer ORDER BY 3 - 2, name AND 5", "an integer AND operand in a sort or group term"),
    ("SELECT name FROM singer WHERE age IN ()", "empty IN lists"),
    ("SELECT count(*) FROM singer ORDER BY count(*)", "aggregates in ORDER BY without GROUP BY"),
    ("SELECT name FROM singer WHERE age = ?", "bound parameters"),
    ("SELECT name FROM singer NATURAL JOIN singer_in_concert", "NATURAL / RIGHT / FULL joins, USING"),
    ("SELECT likelihood(age > 30, 0.5), max(1, 2, age) FROM singer", "likelihood(); multi-argument min/max"),
    ("SELECT name FROM singer WHERE (age, country) = (52, 'Netherlands')", "row values"),
]


def accepts(compiled: gad.CompiledGrammar, text: str) -> bool:
    m = gad.GrammarMatcher(compiled)
    return m.accept_string(text) and m.is_accepting()


# A toy vocabulary: keywords, the database's names, aliases, punctuation, a few literals.
VOCAB = sorted(
    {
        *[f"{k} " for k in ("SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "AND", "OR",
                            "NOT", "AS", "JOIN", "ON", "IN", "LIKE", "BETWEEN", "DISTINCT", "UNION", "EXCEPT",
                            "INTERSECT", "CASE", "WHEN", "THEN", "ELSE", "IS", "NULL", "DESC", "EXISTS")],
        *[k.lower() for k in ("SELECT", "FROM", "WHERE", "AND", "AS", "JOIN", "ON", "END", "NULL", "ASC", "DESC")],
        *["singer", "concert", "stadium", "singer_in_concert", "name", "age", "country", "year", "stadium_id",
          "singer_id", "concert_id", "capacity", "theme", "Name", "T1", "T2", "count", "avg", "max", "sum",
          "length", "upper", "round", "cast", "integer"],
        *list(" .,()*=<>+-/%'\"_;"), *"abcdefghijklmnopqrstuvwxyz0123456789", "20", "'France'", "'a'", "a", "b", " = ", ", ", "(*)", " AS T1", " AS T2",
    }
)  # fmt: skip
VOCAB = [t.encode() for t in VOCAB] + [b"<eos>"]
EOS = len(VOCAB) - 1
INFO = gad.TokenizerInfo.from_vocab(VOCAB, eos_token_id=EOS)


@functools.cache
def schema_compiled() -> gad.CompiledGrammar:
    return gad.GrammarCompiler(INFO).compile(grammar_for_schema(database(), max_join_tables=3))


@functools.cache
def generic_compiled() -> gad.CompiledGrammar:
    return gad.GrammarCompiler(INFO).compile(sql_grammar())


@pytest.mark.parametrize("query", CORPUS)
def test_corpus_runs_and_is_accepted(query):
    database().execute(query).fetchall()
    assert accepts(generic_compiled(), query), query
    assert accepts(schema_compiled(), query), query


@pytest.mark.parametrize("query, construct", REFUSED)
def test_refused_constructs_are_still_refused(query, construct):
    """Keeps README's list of refused constructs true: SQLite prepares each one, gad refuses it."""
    prepared = sqlite3.connect(":memory:")
    prepared.executescript(SCHEMA_SQL)
    prepared.execute("EXPLAIN " + query, [1] * query.count("?")).fetchall()
    assert not accepts(generic_compiled(), query), construct


@pytest.mark.parametrize(
    "query, why",
    [
        ("SELECT title FROM singer", "no such column"),
        ("SELECT name FROM singers", "no such table"),
        ("SELECT name FROM singer AS T1 JOIN concert AS T2", "ambiguous column"),  # no: name is only in singer
        ("SELECT stadium_id FROM stadium AS T1 JOIN concert AS T2", "ambiguous column name"),
        ("SELECT singer.name FROM singer AS T1", "no such column"),
        ("SELECT T2.name FROM singer AS T1", "no such column"),
        ("SELECT T1.theme FROM singer AS T1 JOIN concert AS T2", "no such column"),
    ],
)
def test_schema_grammar_rejects_unknown_names(query, why):
    try:
        database().execute(query).fetchall()
        runs = True
    except sqlite3.Error:
        runs = False
    assert accepts(schema_compiled(), query) == runs, (query, why)


@pytest.mark.parametrize(
    "text",
    [
        "SELECTname FROM singer", "SELECT name FROMsinger", "SELECT name FROM singer WHERE count(*) > 1",
        "SELECT name FROM singer WHERE age --1", "SELECT name FROM singer WHERE age - -1 > 0",
        "SELECT name, age FROM singer UNION SELECT name FROM singer", "SELECT select FROM singer",
        "SELECT name FROM singer ORDER BY", "SELECT max(count(*)) FROM singer", "SELECT abs(1, 2) FROM singer",
        "SELECT * FROM singer UNION SELECT * FROM singer", "SELECT name FROM singer UNION SELECT name FROM singer ORDER BY age",
    ],
)  # fmt: skip
def test_grammar_rejects_what_sqlite_would(text):
    assert not accepts(generic_compiled(), text), text
    assert not accepts(schema_compiled(), text), text


CLOSERS = [VOCAB.index(t) for t in (b"'", b")", b"end", b" ", b"FROM ", b"singer", b"1", b"name", b"T1")]


def _closes(m: gad.GrammarMatcher, first: int, then: list[int]) -> bool:
    """Whether ``first``, then at most one token of ``then``, completes the statement."""
    after = m.fork()
    if not after.accept_token(first):
        return False
    return after.is_accepting() or any((f := after.fork()).accept_token(t) and f.is_accepting() for t in then)


def random_walk(matcher: gad.GrammarMatcher, rng: random.Random, max_steps: int = 120) -> str | None:
    """Allowed tokens at random (words more often than single characters; EOS half the time it is
    allowed); past 25 steps, a token that completes the statement within two steps when there is one,
    else the closing tokens in turn."""
    m = matcher.fork()
    out = b""
    for step in range(max_steps):
        allowed = m.allowed_token_ids()
        if EOS in allowed and (rng.random() < 0.5 or len(allowed) == 1 or step > 25):
            assert m.accept_token(EOS)
            return out.decode()
        choices = [t for t in allowed if t != EOS]
        words = [t for t in choices if len(VOCAB[t]) > 1]
        if words and rng.random() < 0.85:
            choices = words
        if step > 25:
            finishing = [t for t in choices if _closes(m, t, CLOSERS)]
            rotated = CLOSERS[step % len(CLOSERS) :] + CLOSERS[: step % len(CLOSERS)]
            choices = finishing[:1] or [t for t in rotated if t in allowed][:1] or choices
        token = rng.choice(choices)
        assert m.accept_token(token)
        out += VOCAB[token]
    return None


def test_random_walks_run_on_sqlite():
    """Complete outputs of the schema grammar prepare and run without any error."""
    rng = random.Random(0)
    matcher = gad.GrammarMatcher(schema_compiled())
    done = 0
    for _ in range(30):
        query = random_walk(matcher, rng)
        if query is None:
            continue
        done += 1
        try:
            database().execute(query).fetchmany(5)
        except sqlite3.Error as exc:
            pytest.fail(f"SQLite rejected a generated query: {exc}\n{query}")
    assert done >= 12  # walks that run out of steps are not counted


def test_keyword_free_identifiers():
    dfa = _identifier_dfa()
    regex = re.compile(_identifier_regex())
    words = [k.lower() for k in SQLITE_KEYWORDS] + [k.upper() for k in SQLITE_KEYWORDS] + ["Select", "selects", "x", "_", "t1",
             "from_", "cas", "naturally", "in1", "1a", "", "a-b", "é"]  # fmt: skip
    rng = random.Random(3)
    words += ["".join(rng.choice("aeinrtsoc_1") for _ in range(rng.randint(1, 6))) for _ in range(500)]
    for w in words:
        expected = bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", w)) and w.lower() not in {k.lower() for k in SQLITE_KEYWORDS}
        assert dfa.fullmatch(w.encode()) == expected == bool(regex.fullmatch(w)), w


def test_schema_inputs_and_errors():
    from_dict = grammar_for_schema({"t": ["a", "b"]}, max_join_tables=1)
    from_pairs = grammar_for_schema([("t", ["a", "b"])], max_join_tables=1)
    info = gad.TokenizerInfo.from_vocab([b"x", b"<eos>"], eos_token_id=1)
    for grammar in (from_dict, from_pairs):
        compiled = gad.GrammarCompiler(info).compile(grammar)
        assert accepts(compiled, "SELECT a, T1.b FROM t AS T1") and not accepts(compiled, "SELECT c FROM t")
        assert not accepts(compiled, "SELECT a FROM t JOIN t")  # max_join_tables=1
    keyword_table = gad.GrammarCompiler(info).compile(grammar_for_schema({"order": ["group", "x y"]}))
    assert accepts(keyword_table, 'SELECT "group", "X Y" FROM "order"')
    assert not accepts(keyword_table, "SELECT group FROM order")
    assert schema_of(database())["concert"] == ["concert_ID", "concert_Name", "Theme", "Stadium_ID", "Year"]
    for bad in ({}, {"t": []}, [("t",)], {"t": [1]}):
        with pytest.raises(gad.ConfigurationError):
            grammar_for_schema(bad)
    with pytest.raises(gad.ConfigurationError, match="max_join_tables"):
        grammar_for_schema({"t": ["a"]}, max_join_tables=0)


# -- random derivations, prepared by SQLite ---------------------------------------------------------

_TEXT_BYTES = [*range(32, 127), 10]


class RandomSentences:
    """Random sentences of a grammar straight from its rules: uniformly chosen alternatives until
    ``budget`` rules are expanded, then the shortest ones; each terminal a random string of its
    automaton (printable ASCII and newline). Independent of the matcher."""

    def __init__(self, grammar: gad.Grammar) -> None:
        self.grammar = grammar
        self.alternatives: dict[str, list[tuple[str, ...]]] = {}
        for rule in grammar.rules:
            self.alternatives.setdefault(rule.lhs, []).append(rule.rhs)
        cost = {t: 1 for t in grammar.terminals}
        changed = True
        while changed:  # the size of each symbol's smallest derivation
            changed = False
            for lhs, alternatives in self.alternatives.items():
                for rhs in alternatives:
                    if all(s in cost for s in rhs) and 1 + sum(cost[s] for s in rhs) < cost.get(lhs, 1e18):
                        cost[lhs], changed = 1 + sum(cost[s] for s in rhs), True
        self.cost = cost
        self.to_accepting: dict[str, dict[int, int]] = {}

    def _distances(self, name: str) -> dict[int, int]:
        if name not in self.to_accepting:
            dfa = self.grammar.terminals[name].dfa
            back: list[list[int]] = [[] for _ in range(dfa.num_states)]
            for state, row in enumerate(dfa.table):
                for b in _TEXT_BYTES:
                    if row[b] != DEAD:
                        back[row[b]].append(state)
            dist = dict.fromkeys(dfa.accepting, 0)
            queue = deque(dfa.accepting)
            while queue:
                state = queue.popleft()
                for before in back[state]:
                    if before not in dist:
                        dist[before] = dist[state] + 1
                        queue.append(before)
            self.to_accepting[name] = dist
        return self.to_accepting[name]

    def _terminal_text(self, name: str, rng: random.Random) -> bytes:
        dfa, dist = self.grammar.terminals[name].dfa, self._distances(name)
        state, out = dfa.initial, bytearray()
        for _ in range(6):
            moves = [b for b in _TEXT_BYTES if dfa.table[state][b] in dist]
            if not moves or (state in dfa.accepting and rng.random() < 0.4):
                break
            out.append(b := rng.choice(moves))
            state = dfa.table[state][b]
        while state not in dfa.accepting:
            b = min((b for b in _TEXT_BYTES if dfa.table[state][b] in dist), key=lambda b: dist[dfa.table[state][b]])
            out.append(b)
            state = dfa.table[state][b]
        return bytes(out)

    def __call__(self, rng: random.Random, budget: int = 60) -> str:
        out, stack, expanded = bytearray(), [self.grammar.start], 0
        while stack:
            symbol = stack.pop()
            if symbol in self.grammar.terminals:
                out += self._terminal_text(symbol, rng)
                continue
            alternatives = [a for a in self.alternatives[symbol] if all(s in self.cost for s in a)]
            expanded += 1
            if expanded > budget:
                rhs = min(alternatives, key=lambda a: sum(self.cost[s] for s in a))
            else:
                rhs = rng.choice(alternatives)
            stack.extend(reversed(rhs))
        return out.decode()


@pytest.mark.parametrize("which", ["generic", "schema"])
def test_random_sentences_are_prepared_by_sqlite(which):
    """SQLite prepares (EXPLAIN: compiled, not run) random sentences of the grammars: the schema
    grammar's with no error at all; the generic grammar's with no error but an unknown name (its
    names are arbitrary, and name resolution comes after the syntax)."""
    grammar = grammar_for_schema(database(), max_join_tables=3) if which == "schema" else sql_grammar()
    sentences = RandomSentences(grammar)
    prepared = sqlite3.connect(":memory:")
    prepared.executescript(SCHEMA_SQL)
    prepared.text_factory = bytes  # EXPLAIN lists blob literals as text
    rng = random.Random(0)
    clean = 0
    for _ in range(1500):
        query = sentences(rng)
        try:
            prepared.execute("EXPLAIN " + query).fetchall()
            clean += 1
        except sqlite3.Error as exc:
            if which == "schema" or not re.match(r"no such (table|column)", str(exc)):
                pytest.fail(f"SQLite: {exc}\n{query}")
    assert clean >= (1500 if which == "schema" else 300)
