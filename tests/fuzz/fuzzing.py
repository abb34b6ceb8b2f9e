"""What the fuzzing suite shares: its example budget, the mutations, a byte-level vocabulary.

Every test in `tests/fuzz/` feeds gad inputs drawn by hypothesis — real grammars, schemas,
regexes and saved files, mutated — and asserts that gad either refuses the input with a
`gad.GadError` or gives a correct answer, checked against an independent oracle (lark, Python's
`re`, `jsonschema`, the unmutated original). Any other exception fails the test. The draws are
derandomized: CI runs the same examples every time. ``GAD_FUZZ_EXAMPLES`` sets the number of
examples per test (default 40); a longer local campaign is ``GAD_FUZZ_EXAMPLES=2000 pytest
tests/fuzz``, and ``GAD_FUZZ_RANDOM=1`` draws new examples on each run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import gad
from gad.testing import random_walk

EXAMPLES = int(os.environ.get("GAD_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not os.environ.get("GAD_FUZZ_RANDOM"),
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

REPO = Path(__file__).resolve().parents[2]
GRAMMARS = REPO / "grammars"
DATA = REPO.parent / "shared" / "data"

# Every byte as one token, and EOS: masks over it are the grammar's byte-level language.
BYTES = [bytes([b]) for b in range(256)] + [b"<eos>"]
EOS = 256
BYTE_INFO = gad.TokenizerInfo.from_vocab(BYTES, eos_token_id=EOS)
BYTE_COMPILER = gad.GrammarCompiler(BYTE_INFO)


@st.composite
def mutated(draw: st.DrawFn, text: str, alphabet: str, max_edits: int = 3) -> str:
    """`text` after 1 to `max_edits` random edits: a character inserted, deleted or replaced (from
    `alphabet` or from `text` itself), a span deleted or duplicated, or a line dropped."""
    pool = st.one_of(st.sampled_from(alphabet), st.sampled_from(text or alphabet))
    for _ in range(draw(st.integers(1, max_edits))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 12)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "drop-span", "duplicate-span", "drop-line"]))
        if edit == "insert":
            text = text[:i] + draw(pool) + text[i:]
        elif edit == "delete":
            text = text[:i] + text[i + 1 :]
        elif edit == "replace":
            text = text[:i] + draw(pool) + text[i + 1 :]
        elif edit == "drop-span":
            text = text[:i] + text[j:]
        elif edit == "duplicate-span":
            text = text[:j] + text[i:j] + text[j:]
        else:
            lines = text.split("\n")
            del lines[min(i, len(lines) - 1)]
            text = "\n".join(lines)
    return text


def sentences(compiled: gad.CompiledGrammar, seed: int, count: int, max_bytes: int = 40) -> list[bytes]:
    """Up to `count` random sentences of the compiled byte-level grammar (walks that end in EOS)."""
    rng = random.Random(seed)
    matcher = gad.GrammarMatcher(compiled)
    walks = (random_walk(matcher, rng, max_bytes, stop_probability=0.25) for _ in range(3 * count))
    return [w for w in walks if w is not None][:count]
