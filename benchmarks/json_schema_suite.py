"""gad on the official JSON-Schema-Test-Suite (draft 2020-12 and draft 7, the required files, not
``optional/``): how many schema groups compile, how many invalid instances a compiled grammar
accepts (must be 0), how many valid instances it refuses, and why.

Each group's schema is converted with `gad.Grammar.from_json_schema` (strict mode) and compiled for
a small byte-level vocabulary; each instance is written with ``json.dumps`` (``ensure_ascii=False``,
the default separators, which the default ``whitespace=16`` layout allows) and fed to a
`GrammarMatcher`. An instance counts as accepted when the matcher takes the whole text and then
EOS. The oracle for valid/invalid is the suite's own label (which `jsonschema` agrees with).
Remote references are served from the suite's ``remotes/`` folder.

    python benchmarks/json_schema_suite.py            # both drafts, a summary per draft
    python benchmarks/json_schema_suite.py --details  # every refused group and refused valid instance

CPU time of the whole conversion (``time.process_time``) is reported per draft; it is not a
benchmark of anything else.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import referencing
import referencing.jsonschema

import gad
from gad.errors import GadError

ROOT = Path(__file__).resolve().parents[1]
SUITE = next((p for p in (ROOT.parent / "shared" / "data" / "json-schema-test-suite", Path("/work/shared/data/json-schema-test-suite")) if p.is_dir()), None)
DRAFTS = {"draft2020-12": "https://json-schema.org/draft/2020-12/schema", "draft7": "http://json-schema.org/draft-07/schema#"}

VOCAB = [bytes([b]) for b in range(256)] + [b"<eos>"]
EOS = len(VOCAB) - 1


def remotes(draft: str) -> referencing.Registry:
    """The suite's ``remotes/`` folder as the documents at ``http://localhost:1234/``."""
    default = referencing.jsonschema.DRAFT202012 if draft == "draft2020-12" else referencing.jsonschema.DRAFT7
    resources = []
    for path in sorted((SUITE / "remotes").rglob("*.json")):
        contents = json.loads(path.read_text())
        uri = "http://localhost:1234/" + path.relative_to(SUITE / "remotes").as_posix()
        resources.append((uri, referencing.Resource.from_contents(contents, default_specification=default)))
    return referencing.Registry().with_resources(resources)


def groups(draft: str):
    """(file stem, group index, group) for every group of the draft's required files."""
    for path in sorted((SUITE / "tests" / draft).glob("*.json")):
        for i, group in enumerate(json.loads(path.read_text())):
            yield path.stem, i, group


def with_draft(schema, draft: str):
    """The group's schema, told its draft (the suite's schemas rely on the runner's default)."""
    if isinstance(schema, dict) and "$schema" not in schema:
        return {"$schema": DRAFTS[draft], **schema}
    return schema


def accepts(compiled, text: str) -> bool:
    m = gad.GrammarMatcher(compiled)
    return m.accept_string(text) and m.is_accepting() and m.accept_token(EOS)


def run(draft: str, compiler, details: bool) -> dict:
    stats = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    refused_valid: list[str] = []
    accepted_invalid: list[str] = []
    registry = remotes(draft)
    start = time.process_time()
    for stem, i, group in groups(draft):
        stats["groups"] += 1
        where = f"{draft}/{stem}.json#{i} ({group['description']})"
        try:
            compiled = compiler.compile(gad.Grammar.from_json_schema(with_draft(group["schema"], draft), registry=registry))
        except GadError as exc:
            stats["refused"] += 1
            if "no JSON document satisfies" in str(exc) or "no document validates" in str(exc):
                stats["empty"] += 1  # a correct verdict: the schema admits nothing
                kind = "empty language (correct)"
            else:
                kind = f"{type(exc).__name__}: {getattr(exc, 'keyword', None) or '?'}"
            reasons[kind] += 1
            if details:
                print(f"refused {where}: {str(exc)[:160]}")
            continue
        except Exception as exc:  # a crash: counted and shown, never hidden
            stats["crashed"] += 1
            print(f"CRASH {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        stats["compiled"] += 1
        for test in group["tests"]:
            try:
                text = json.dumps(test["data"], ensure_ascii=False)
                text.encode()
            except (ValueError, UnicodeEncodeError):
                text = json.dumps(test["data"])  # lone surrogates: only the escaped spelling exists
            ok = accepts(compiled, text)
            if test["valid"]:
                stats["valid"] += 1
                if not ok:
                    stats["valid refused"] += 1
                    refused_valid.append(f"{where}: {test['description']}: {text[:80]}")
            else:
                stats["invalid"] += 1
                if ok:
                    stats["invalid accepted"] += 1
                    accepted_invalid.append(f"{where}: {test['description']}: {text[:80]}")
    stats["cpu_s"] = round(time.process_time() - start, 1)
    for line in accepted_invalid:
        print("ACCEPTED INVALID", line, file=sys.stderr)
    if details:
        for line in refused_valid:
            print("refused valid", line)
    return {"stats": stats, "reasons": reasons}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draft", choices=sorted(DRAFTS), action="append")
    parser.add_argument("--details", action="store_true")
    args = parser.parse_args()
    if SUITE is None:
        sys.exit("the JSON-Schema-Test-Suite is not at ../shared/data/json-schema-test-suite")
    compiler = gad.GrammarCompiler(gad.TokenizerInfo.from_vocab(VOCAB, eos_token_id=EOS))
    total = collections.Counter()
    for draft in args.draft or sorted(DRAFTS):
        result = run(draft, compiler, args.details)
        s = result["stats"]
        total.update({k: v for k, v in s.items() if k != "cpu_s"})
        print(f"{draft}: {s['compiled']}/{s['groups']} groups compiled ({s['empty']} more refused as empty, "
              f"correctly), {s['crashed']} crashed; "
              f"invalid instances accepted {s['invalid accepted']}/{s['invalid']}; "
              f"valid instances refused {s['valid refused']}/{s['valid']}; CPU {s['cpu_s']} s")
        print("  refusals: " + ", ".join(f"{k} {v}" for k, v in result["reasons"].most_common()))
    print(f"total: {total['compiled']}/{total['groups']} groups compiled ({total['empty']} refused as empty, correctly), "
          f"{total['crashed']} crashed; "
          f"invalid accepted {total['invalid accepted']}/{total['invalid']}; valid refused {total['valid refused']}/{total['valid']}")


if __name__ == "__main__":
    main()
