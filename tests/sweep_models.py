"""Model factories for the sweep tests (`tests/test_experiments.py`): ``model.factory =
"sweep_models:bits"`` in a spec. Ray workers import this module by name, so the tests put
``tests/`` on their PYTHONPATH."""

from __future__ import annotations

import os
import time
from pathlib import Path

import gad
from gad.experiments import Model
from gad.lm import HuggingFaceLM, LanguageModel, UniformLM
from gad.lm_testing import random_hf_model

#: The bits vocabulary of tests/problems.py: "0", "1", EOS.
BITS = gad.TokenizerInfo.from_vocab([b"0", b"1", b"<eos>"], eos_token_id=2)


class StallOnce(LanguageModel):
    """`lm`, except that the first call in the first process to get here writes that process's
    pid to `marker` and sleeps (so that a test can kill it in the middle of a task)."""

    def __init__(self, lm: LanguageModel, marker: str) -> None:
        self.lm, self.marker = lm, Path(marker)

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    def next_token_logprobs(self, prefixes):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self.lm.next_token_logprobs(prefixes)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(60)  # killed long before this ends
        return self.lm.next_token_logprobs(prefixes)

    def reset(self) -> None:
        if hasattr(self.lm, "reset"):
            self.lm.reset()


def bits(kind: str = "hf", seed: int = 0, stall_marker: str | None = None) -> Model:
    """A model over the bits vocabulary: a tiny random transformers model (`kind = "hf"`, the
    prompt has to be non-empty) or the uniform model (`kind = "uniform"`)."""
    lm: LanguageModel = HuggingFaceLM(random_hf_model(3, seed=seed)) if kind == "hf" else UniformLM(3)
    if stall_marker is not None:
        lm = StallOnce(lm, stall_marker)
    return Model(lm, BITS, f"bits-{kind}")
