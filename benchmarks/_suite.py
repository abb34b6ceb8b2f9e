"""The grammars and documents of `grammar_suite.py`, each grammar in the form every engine reads
natively, and the check that every document is a sentence of its grammar (``--check-documents``).

An `Entry` holds the forms of one grammar: Lark text (gad's and llguidance's), the original GBNF
when the grammar came as GBNF (xgrammar's and llguidance's native form, and gad's when
``gad.Grammar.from_gbnf`` exists), a hand translation into xgrammar's EBNF when there is no GBNF,
a JSON Schema or a regex (each engine's own entry point for those), or a function building a
`gad.Grammar` (``gad.sql``: gad only). Grammars written for this suite are in
``benchmarks/suite/``; the research grammars and their solutions are read from ``../shared/data``
(never copied into the repository).

Documents are checked with independent oracles, never with the engines: lark's own parser
(``lark.Lark(text, parser="earley", lexer="dynamic_complete")``; LALR for the right-recursive and
the 20,000-token documents, where lark's Earley parser is cubic), ``jsonschema`` for the JSON
Schema documents, and for SQL lark on ``grammars/sql.lark`` plus SQLite preparing the statement
against the schema.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE_DIR = Path(__file__).resolve().parent / "suite"
GRAMMAR_DIR = ROOT / "grammars"


def data_dir() -> Path:
    """``../shared/data`` beside the repository root (as in CI), else ``/work/shared/data``."""
    for candidate in (ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"the suite reads research grammars from ../shared/data (not found beside {ROOT}, nor at "
        "/work/shared/data): see /work/shared/data/README.md for what it holds and where it comes from"
    )


def _suite(name: str) -> str:
    return (SUITE_DIR / name).read_text(encoding="utf-8")


def _data(*parts: str) -> str:
    return data_dir().joinpath(*parts).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Document:
    """The text to replay: ``head``, then the ``cycle`` pieces repeated until the document has
    ``tokens`` tokens (each piece is encoded on its own: a model that drifts into whitespace emits
    one whitespace token after another, which the encoder of the whole text would merge), then
    ``tail``."""

    head: str
    cycle: tuple[str, ...] = ()
    tail: str = ""
    tokens: int = 0

    def text(self, pieces: int | None = None) -> str:
        """The text with ``pieces`` cycle pieces (default ``tokens``: an upper bound of what is
        replayed, as each piece is at least one token)."""
        n = self.tokens if pieces is None else pieces
        return self.head + "".join(self.cycle[i % len(self.cycle)] for i in range(n if self.cycle else 0)) + self.tail

    def encode(self, encode: Callable[[str], list[int]], tokens: int | None = None) -> list[int]:
        """Token ids: the encoder on ``head`` and ``tail``, and on each cycle piece alone until the
        whole has at least ``tokens`` (default ``self.tokens``) ids."""
        ids = list(encode(self.head))
        if self.cycle:
            tail = encode(self.tail)
            pieces = [encode(p) for p in self.cycle]
            target = (self.tokens if tokens is None else tokens) - len(tail)
            i = 0
            while len(ids) < target:
                ids += pieces[i % len(pieces)]
                i += 1
            return ids + list(tail)
        return ids + (list(encode(self.tail)) if self.tail else [])


@dataclass(frozen=True)
class Entry:
    name: str
    about: str
    documents: dict[str, Document]
    lark: str | None = None  # gad (unless gbnf and from_gbnf) and llguidance (unless gbnf)
    gbnf: str | None = None  # the original GBNF: xgrammar, llguidance, gad when it reads GBNF
    ebnf: str | None = None  # xgrammar's EBNF, hand-translated, when there is no GBNF
    schema: str | None = None  # JSON Schema text: every engine's JSON Schema entry point
    regex: str | None = None  # every engine's regex entry point
    gad_grammar: Callable[[], object] | None = None  # builds a gad.Grammar (gad only)
    notes: dict[str, str] = field(default_factory=dict)  # engine family -> why it has no form / how it differs
    lark_for: tuple[str, ...] = ()  # engine families given `lark` although there is GBNF (why: in `notes`)
    check: str = "earley"  # "earley" / "lalr" (lark on `lark` or `check_lark`), "jsonschema", "sql"
    check_lark: str | None = None  # the Lark text to check with when `lark` is None
    long: bool = False  # a 20,000-token generation (run with --long)
    quick: bool = True  # part of --quick


# -- documents ---------------------------------------------------------------------------------

CHAR_LEVEL_DOC = "x1 = 3 * (y_2 + 41.5);\ntotal = x1 / 2 - rate_9;\nz = ((a + b) * (c - 10));\n"
# Two daily records in the layout of NOAA's GHCN-Daily CSV exports (station, date, name, tmax, tmin, prcp).
CSV_DOC = ("# station,date,name,tmax,tmin,prcp\n"
           "USW00014739,2023-07-14,BOSTON LOGAN INTERNATIONAL AIRPORT,27.8,21.1,0.51\n"
           "USW00094728,2023-07-14,NY CITY CENTRAL PARK,29.4,22.8,1.02\n")
SQL_TABLES = {
    "customers": ["id", "name", "email", "city", "created_at"],
    "orders": ["id", "customer_id", "ordered_at", "status", "total"],
    "order_items": ["order_id", "product_id", "quantity", "unit_price"],
    "products": ["id", "name", "category", "price"],
}
SQL_DOC = ("SELECT T1.name, COUNT(*) AS n, SUM(T2.total) FROM customers AS T1 JOIN orders AS T2 "
           "ON T2.customer_id = T1.id WHERE T2.status = 'shipped' AND T1.city LIKE 'San%' "
           "GROUP BY T1.id ORDER BY COUNT(*) DESC LIMIT 5;")  # not ORDER BY n: gad.sql has no select aliases there
GBNF_DOCS = {
    "json": ('{\n  "name": "Zo\\u00eb M\u00fcller",\n  "tags": ["admin", "dev\\tops"],\n  "score": -12.5e3,\n'
             '  "active": true,\n  "manager": null,\n  "address": {"street": "1 Main St", "zip": "02139"}\n}'),
    "arithmetic": "price *(qty +2) = total\nx1 -3 = y\n",
    "list": "- buy milk\n- call Zo\u00eb about the 3 o'clock meeting\n- finish report (draft v2)\n",
    "chess": "1. e4 e5\n2. Nf3 Nc6\n3. Bb5 a6\n4. Ba4 Nf6\n5. O-O Be7\n6. Re1 b5\n7. Bb3 d6\n8. c3 O-O\n",
    "c": "int add(int a){return a+1;}int main(){int x = 3;// count up\nwhile(x<10){x = add(x);}return x*2;}",
    "english": "The quick brown fox, aged 3, jumps over 2 lazy dogs!\nThen it rests (briefly) near the river.",
}
SCHEMA_DOCS = {
    "small": {"name": "Ada Lovelace", "age": 36, "active": True},
    "person": {"name": "Maria", "age": 34, "languages": ["Portuguese", "English", "French"]},
    "invoice": {
        "invoice_id": "INV-004217", "date": "2024-02-29",
        "customer": {"name": "Acme Tools Ltd.", "email": "billing@acme.example",
                     "address": {"street": "12 Harbour Rd", "city": "Bristol", "country": "GB"}},
        "items": [{"sku": "HT-220", "description": "Hammer, 16 oz", "quantity": 3, "unit_price": 12.5},
                  {"sku": "SC-014", "description": "Screwdriver set \u2014 6 pieces", "quantity": 1,
                   "unit_price": 24.99}],
        "currency": "GBP", "paid": False, "notes": None,
    },
}
# A long generation that drifts into whitespace after `{"a": ` (the failure mode of issue 10),
# and a long array of numbers; both in grammars/json.lark.
LONG_TOKENS = 20_000
WHITESPACE_DRIFT = Document('{"a": ', (" ", "\n", " ", "\n\n", "  "), "1}", LONG_TOKENS)
_rng = random.Random(10)
NUMBER_ARRAY = Document("[", tuple(
    f"{_rng.choice(['', '-'])}{_rng.randrange(10 ** _rng.randrange(1, 6))}"
    + _rng.choice(["", "", f".{_rng.randrange(1000)}", f"e{_rng.randrange(-9, 10)}"]) + ", "
    for _ in range(97)), "0]", LONG_TOKENS)

# -- the ASAp paper's GBNF subset (literals, rule names, alternatives) ---------------------------

_GBNF_ITEM = re.compile(r'"((?:[^"\\]|\\.)*)"|([A-Za-z_][\w-]*)|(\|)|(\S)')


def asap_rules(text: str) -> dict[str, list[list[tuple[str, str]]]]:
    """``name ::= alt | alt`` lines of literals and rule names → {name: [[("lit"|"ref", value)]]},
    with every alternative that refers to an undefined rule dropped, repeatedly (the CP grammars
    point at depth-bounded rules that do not exist: the reference code treats them as dead ends)."""
    rules: dict[str, list[list[tuple[str, str]]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, body = line.partition("::=")
        if not sep:
            raise ValueError(f"line {number}: no '::=' in {line[:60]!r}")
        alternatives: list[list[tuple[str, str]]] = [[]]
        for m in _GBNF_ITEM.finditer(body):
            literal, ref, bar, other = m.groups()
            if other:
                raise ValueError(f"line {number}: {other!r} is outside the literal/name/| subset")
            if bar:
                alternatives.append([])
            elif ref:
                alternatives[-1].append(("ref", ref))
            else:
                alternatives[-1].append(("lit", literal))
        rules[name.strip()] = alternatives
    while True:
        kept = {n: [a for a in alts if all(k == "lit" or v in rules for k, v in a)] for n, alts in rules.items()}
        kept = {n: alts for n, alts in kept.items() if alts}
        if kept == rules:
            return rules
        rules = kept


def asap_to_gbnf(rules: dict[str, list[list[tuple[str, str]]]]) -> str:
    return "\n".join(f"{name} ::= " + " | ".join(" ".join(f'"{v}"' if k == "lit" else v for k, v in alt)
                                                  for alt in alts) for name, alts in rules.items())


def asap_to_lark(rules: dict[str, list[list[tuple[str, str]]]]) -> str:
    """The same rules in Lark: names lower-cased (``root`` → ``start``), ``""`` as nothing."""
    lower = {name: "start" if name == "root" else name.lower() for name in rules}
    if len(set(lower.values())) != len(lower):
        raise ValueError("rule names collide when lower-cased")
    return "\n".join(f"{lower[name]}: " + " | ".join(
        " ".join(f'"{v}"' if k == "lit" else lower[v] for k, v in alt if (k, v) != ("lit", "")) for alt in alts)
        for name, alts in rules.items())


# -- the suite ---------------------------------------------------------------------------------

CP_PROBLEM = "CP_re_ptb_1001"  # the smallest of the 40 CP problems whose correct parse is in its grammar
SYGUS_PROBLEM = "bikes"


@cache
def entries() -> dict[str, Entry]:
    """Every grammar of the suite, by name, in the order they are run."""
    from mask_bench import JSON_DOCUMENTS, JSON_EBNF

    json_lark = (GRAMMAR_DIR / "json.lark").read_text(encoding="utf-8")
    same_layout = {f: "its JSON Schema layout differs from gad's (whitespace: gad at most 16 characters "
                      "between tokens, the peers any); the document is laid out validly for all three"
                   for f in ("xgrammar", "llguidance")}
    out = [
        Entry("json", "grammars/json.lark (RFC 8259), the pretty document of mask_bench.py",
              {"pretty": Document(JSON_DOCUMENTS["pretty"])}, lark=json_lark, ebnf=JSON_EBNF),
    ]
    for size in ("small", "person", "invoice"):
        out.append(Entry(
            f"schema-{size}", {"small": "JSON Schema: an object with 3 typed properties",
                               "person": "JSON Schema: the README's person (maxLength, bounded integer, maxItems)",
                               "invoice": "JSON Schema: a nested invoice (pattern, date, email, enums, "
                                          "arrays of objects)"}[size],
            {"doc": Document(json.dumps(SCHEMA_DOCS[size], indent=2, ensure_ascii=False))},
            schema=_suite(f"schema_{size}.json"), notes=same_layout, check="jsonschema"))
    sygus_gbnf = _data("gad-benchmark", "examples", "sygus", "SLIA", f"{SYGUS_PROBLEM}.ebnf")
    out.append(Entry(
        f"sygus-{SYGUS_PROBLEM}", f"SyGuS SLIA '{SYGUS_PROBLEM}' (ASAp benchmark, GBNF), its correct solution",
        {"solution": Document(_data("gad-benchmark", "correct", "SLIA", SYGUS_PROBLEM).strip())},
        lark=_suite("sygus_bikes.lark"), gbnf=sygus_gbnf, lark_for=("llguidance",),
        notes={"llguidance": "llguidance reads our Lark translation: its GBNF reader rejects the grammar "
                             "(rule 'Start' collides with the 'start' it makes of 'root')"}))
    cp_rules = asap_rules(_data("gad-benchmark", "examples", "nlp", "CP", f"{CP_PROBLEM}.ebnf"))
    out.append(Entry(
        "constituency", f"constituency parsing {CP_PROBLEM} (ASAp benchmark): {len(cp_rules)} rules, "
        "~340 literal tags; the correct parse",
        {"parse": Document("[ " + _data("gad-benchmark", "correct", "nlp", "CP", CP_PROBLEM).strip() + " ]")},
        lark=asap_to_lark(cp_rules), gbnf=asap_to_gbnf(cp_rules)))
    out += [
        Entry("char-level", "character-level GBNF-style grammar written in Lark (one-character terminals)",
              {"code": Document(CHAR_LEVEL_DOC)}, lark=_suite("char_level.lark"), ebnf=_suite("char_level.ebnf")),
        Entry("csv", "delimited records like lark's csv example, on two real weather records",
              {"records": Document(CSV_DOC)}, lark=_suite("csv.lark"), ebnf=_suite("csv.ebnf")),
        Entry("right-rec-1k", 'right recursion s: "a" s | "a", 1,000 bytes', {"a1000": Document("a" * 1000)},
              lark='start: s\ns: "a" s | "a"', ebnf='root ::= "a" root | "a"', check="lalr"),
        Entry("right-rec-2k", 'right recursion s: "a" s | "a", 2,000 bytes', {"a2000": Document("a" * 2000)},
              lark='start: s\ns: "a" s | "a"', ebnf='root ::= "a" root | "a"', check="lalr", quick=False),
        Entry("right-rec-10k", 'right recursion s: "a" s | "a", 10,000 bytes', {"a10000": Document("a" * 10_000)},
              lark='start: s\ns: "a" s | "a"', ebnf='root ::= "a" root | "a"', check="lalr", quick=False),
        Entry("regex-ab300", "bounded repetition /(ab){2,300}c/ (each engine's regex entry point)",
              {"ab200": Document("ab" * 200 + "c")}, regex="(ab){2,300}c", check_lark="start: /(ab){2,300}c/"),
        Entry("sql-4-tables", "gad.sql.grammar_for_schema for 4 tables: a 2-table join with GROUP BY",
              {"join": Document(SQL_DOC)}, gad_grammar=_sql_grammar, check="sql",
              notes={f: "no form: gad.sql builds the grammar as gad's IR (templates instantiated per "
                        "scope, identifiers as automata); there is no text to give a peer"
                     for f in ("xgrammar", "llguidance")}),
    ]
    for name in ("json", "arithmetic", "list", "chess", "c", "english"):
        out.append(Entry(f"gbnf-{name}", f"llama.cpp's {name}.gbnf (../shared/data/gbnf)",
                         {"doc": Document(GBNF_DOCS[name])}, lark=_suite(f"gbnf_{name}.lark"),
                         gbnf=_data("gbnf", f"{name}.gbnf")))
    out += [
        Entry("long-whitespace", f'grammars/json.lark: {{"a": then whitespace tokens, {LONG_TOKENS:,} tokens',
              {"drift": WHITESPACE_DRIFT}, lark=json_lark, ebnf=JSON_EBNF, check="lalr", long=True, quick=False),
        Entry("long-array", f"grammars/json.lark: an array of numbers, {LONG_TOKENS:,} tokens",
              {"numbers": NUMBER_ARRAY}, lark=json_lark, ebnf=JSON_EBNF, check="lalr", long=True, quick=False),
    ]
    return {e.name: e for e in out}


def _sql_grammar() -> object:
    import gad

    return gad.sql.grammar_for_schema(SQL_TABLES)


# -- --check-documents -------------------------------------------------------------------------


def check_document(entry: Entry, document: Document) -> None:
    """Raise (lark's, jsonschema's or SQLite's error) unless ``document`` is a sentence of ``entry``."""
    import lark

    text = document.text()
    if entry.check == "jsonschema":
        import jsonschema

        schema = json.loads(entry.schema)
        jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker()).validate(
            json.loads(text))
        return
    if entry.check == "sql":
        lark.Lark((GRAMMAR_DIR / "sql.lark").read_text(encoding="utf-8"), parser="earley",
                  lexer="dynamic_complete").parse(text)
        db = sqlite3.connect(":memory:")
        for table, columns in SQL_TABLES.items():
            db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        db.execute(text).fetchall()  # prepares and runs it: no such table/column, no syntax error
        return
    grammar = entry.lark or entry.check_lark
    if entry.check == "lalr":
        lark.Lark(grammar, parser="lalr").parse(text)
    else:
        lark.Lark(grammar, parser="earley", lexer="dynamic_complete").parse(text)


def check_documents(names: list[str], log: Callable[[str], None]) -> int:
    """Check every document of the named entries; the number that fail."""
    failed = 0
    for name in names:
        entry = entries()[name]
        for doc_name, document in entry.documents.items():
            try:
                check_document(entry, document)
                log(f"ok    {name}/{doc_name} ({entry.check}, {len(document.text()):,} characters)")
            except Exception as exc:  # noqa: BLE001 - reported, and the check goes on
                failed += 1
                log(f"FAIL  {name}/{doc_name} ({entry.check}): {type(exc).__name__}: {str(exc).strip()[:500]}")
    return failed
