"""What every sampler shares: the `Sampler` base class, its result type, tempering, the draw,
and the registry by name that `gad.generate`, the CLI and the docs read from.

**The cut** (genlm-control's, `potential/base.py`): a sampler is constructed from a language
model (`gad.lm.LanguageModel`: next-token log-probabilities for a batch of prefixes) and a
constraint (a `gad.CompiledGrammar`, or any `gad.constraint.ConstraintFactory`), and nothing
else. Subclasses implement one method, `Sampler.sample`, which returns `Sample` objects; the
rest has defaults a subclass may override: argument checks, the prompt check, batched masks
(`Sampler.masks`), how `gad.generate` builds it (`Sampler.for_generate`) and how many steps its
progress bar counts (`Sampler.progress_total`).

**Tempering and drawing** happen in one place each: `temper` turns the model's log-probabilities
into ``log P_T(t | u) = log P(t | u)/T − log Σ_t' P(t' | u)^(1/T)`` (float64, renormalised), and
every sampler applies it *before* the grammar, so each targets the tempered model restricted to
the grammar; `draw` is the inverse-CDF draw from non-negative weights that every sampler uses.

**Guarantees** (``Sampler.guarantee``), with respect to ``Q_N(w) ∝ P_T(w) · 1[w ∈ L(G), |w| ≤ N]``
(N = ``max_new_tokens``, EOS included; `gad.exact` enumerates it):

* ``"exact"``: each returned complete sample is a draw from Q_N (CARS);
* ``"consistent"``: the samples' distribution converges to Q_N as the sampler runs longer
  (ASAp as its trie fills; MCMC as its chains run; SMC as the particles grow);
* ``"properly weighted"``: samples come with weights W such that ``E[W · f(w)] = Z · E_Q[f]``
  (AWRS: importance sampling, no resampling);
* ``"biased"``: valid output, but not Q_N (GCD).
"""

from __future__ import annotations

import abc
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from gad.constraint import Constraint, ConstraintLike, as_constraint_factory, next_token_masks
from gad.errors import ConfigurationError
from gad.lm import LanguageModel

__all__ = [
    "FinishReason",
    "SAMPLERS",
    "Sample",
    "Sampler",
    "check_positive_int",
    "check_sampling_args",
    "draw",
    "log_sum",
    "register",
    "sampler_class",
    "seed_for",
    "temper",
]

#: Why a sequence ended: "eos" (a sentence of the grammar), "length" (``max_new_tokens`` reached
#: first) or "rejected" (a weighted or rejection sampler gave it weight 0 / did not accept it).
FinishReason = Literal["eos", "length", "rejected"]


@dataclass(frozen=True)
class Sample:
    """One sequence drawn by a sampler.

    Attributes:
        token_ids: the generated token ids (the prompt excluded); they end with the EOS id when
            ``finish_reason == "eos"``.
        logprob_model: ``Σ_i log P(token_ids[i] | prompt, token_ids[:i])`` under the model itself:
            temperature 1, no mask, no reweighting. The EOS token is included.
        logprob_sampler: ``Σ_i log q_i(token_ids[i])`` where ``q_i`` is the distribution the
            sampler actually drew token i from (after temperature, mask and any reweighting);
            0.0 for greedy decoding, whose choices are deterministic. Each sampler's docstring
            says what q_i is for it.
        finish_reason: "eos" when the sequence ended with EOS (which the grammar allows only
            after a complete sentence), "length" when it hit ``max_new_tokens`` first,
            "rejected" when the sampler gave it weight 0 or did not accept it (AWRS, SMC, CARS).
    """

    token_ids: tuple[int, ...]
    logprob_model: float
    logprob_sampler: float
    finish_reason: FinishReason

    @property
    def complete(self) -> bool:
        """True iff the sequence ended with EOS, i.e. its text is a sentence of the grammar.

        A sequence cut at ``max_new_tokens`` is incomplete even if its text happens to be a
        sentence: the model had not chosen to end it there.
        """
        return self.finish_reason == "eos"


def check_positive_int(name: str, value: object) -> None:
    """Raise `ConfigurationError` naming `name` unless `value` is an int ≥ 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"`{name}` has to be a strictly positive int, but is {value!r}")


def check_sampling_args(
    *, n: int = 1, max_new_tokens: int = 1, temperature: float = 1.0, seed: int | None = None
) -> None:
    """Raise `ConfigurationError` for a bad `n`, `max_new_tokens`, `temperature` or `seed`."""
    check_positive_int("n", n)
    check_positive_int("max_new_tokens", max_new_tokens)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 < temperature < float("inf")
    ):
        raise ConfigurationError(
            f"`temperature` has to be a strictly positive float, but is {temperature!r}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigurationError(f"`seed` has to be None or a non-negative int, but is {seed!r}")


def temper(logprobs: torch.Tensor | np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``float64[..., V]``: ``log P_T(t | u)``, the tempered, renormalised log-probabilities.

    ``P_T(t | u) = P(t | u)^(1/T) / Σ_t' P(t' | u)^(1/T)``, per row, from the model's
    log-probabilities (any float dtype; numpy, so small batches stay single-threaded). Rows whose
    every entry is −inf stay −inf. The input is not modified.
    """
    if isinstance(logprobs, torch.Tensor):
        logprobs = logprobs.detach().cpu().numpy()
    rows = np.asarray(logprobs, dtype=np.float64)
    if temperature != 1.0:
        rows = rows / temperature
    top = rows.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return rows - (top + np.log(np.exp(rows - top).sum(axis=-1, keepdims=True)))


def draw(weights: np.ndarray, uniform: float) -> int:
    """The inverse-CDF draw: the first i with ``cumsum(weights)[i] > uniform · Σ weights``.

    `weights` are non-negative and need not be normalised; a uniform that rounds to the very end
    picks the last index of positive weight, and an index of weight 0 is never returned. Raises
    `ConfigurationError` when every weight is 0.
    """
    cdf = np.cumsum(weights, dtype=np.float64)
    total = float(cdf[-1]) if cdf.size else 0.0
    if not total > 0:
        raise ConfigurationError("cannot draw from weights that are all 0")
    i = int(np.searchsorted(cdf, uniform * total, side="right"))
    if i >= cdf.shape[0] or weights[i] <= 0:
        i = int(np.flatnonzero(np.asarray(weights) > 0)[-1])
    return i


def seed_for(seed: int, index: int) -> int:
    """A 63-bit seed for stream `index` of a run seeded with `seed` (``SeedSequence`` mixing, so
    ``(seed, index)`` and ``(seed + 1, index - 1)`` never share random numbers)."""
    return int(np.random.SeedSequence((int(seed), int(index))).generate_state(1, np.uint64)[0] >> np.uint64(1))


# -- the base class and the registry ------------------------------------------------------------------

#: Every sampler by its name (`Sampler.name`), in the order the docs list them.
SAMPLERS: dict[str, type[Sampler]] = {}


def register(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: add a `Sampler` subclass to `SAMPLERS` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Sampler)) or not getattr(cls, "name", ""):
        raise ConfigurationError(f"{cls!r} is not a named gad Sampler subclass")
    if cls.name in SAMPLERS and SAMPLERS[cls.name] is not cls:
        raise ConfigurationError(f"a sampler named {cls.name!r} is already registered ({SAMPLERS[cls.name].__name__})")
    SAMPLERS[cls.name] = cls
    return cls


def sampler_class(name: str) -> type[Sampler]:
    """The registered sampler called `name`; `ConfigurationError` naming the choices otherwise."""
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ConfigurationError(
            f"`sampler` has to be one of {', '.join(repr(s) for s in SAMPLERS)}, but is {name!r}"
        )
    return SAMPLERS[name]


class Sampler(abc.ABC):
    """Draws sequences from a language model under a constraint.

    Subclasses set the class attributes and implement `sample`; everything else has a default.

    Args:
        lm: the model, any `gad.lm.LanguageModel`.
        compiled: the constraint: a `gad.CompiledGrammar` compiled for the model's tokenizer, or a
            `gad.constraint.ConstraintFactory` (any engine's matcher); its EOS ids end a sequence.
        temperature: ``T > 0``, applied to the model's distribution before the grammar.

    Attributes:
        lm, temperature: as given.
        constraints: the `ConstraintFactory`; ``constraints()`` is a fresh constraint.
        compiled: the `CompiledGrammar`, or None when the sampler was given a factory without one.
        eos_ids: the EOS ids.
    """

    #: The name `gad.generate(sampler=...)` and ``gad generate --sampler`` use.
    name: ClassVar[str] = ""
    #: "exact", "consistent", "properly weighted" or "biased" (see the module docstring).
    guarantee: ClassVar[str] = ""
    #: One line for the CLI's help and the docs.
    summary: ClassVar[str] = ""

    def __init__(self, lm: LanguageModel, compiled: ConstraintLike, *, temperature: float = 1.0) -> None:
        if not isinstance(lm, LanguageModel):
            raise ConfigurationError(f"`lm` has to be a gad.LanguageModel, but is {type(lm).__name__}")
        constraints = as_constraint_factory(compiled)
        check_sampling_args(temperature=temperature)
        if not constraints.eos_token_ids:
            raise ConfigurationError(
                "the grammar's TokenizerInfo has no EOS token, so no sample could ever be complete; "
                "build it with eos_token_ids=..."
            )
        self.lm = lm
        self.constraints = constraints
        self.compiled = constraints.compiled
        self.temperature = float(temperature)
        self.eos_ids = tuple(constraints.eos_token_ids)

    # -- the required surface -------------------------------------------------------------------------

    @abc.abstractmethod
    def sample(
        self,
        prompt_ids: Sequence[int],
        n: int = 1,
        *,
        max_new_tokens: int = 256,
        seed: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> list[Sample]:
        """Draw `n` sequences after `prompt_ids` (given to the model, never to the constraint).

        Args:
            prompt_ids: the context.
            n: how many sequences.
            max_new_tokens: N, the length limit (EOS included).
            seed: None draws a fresh seed; each sampler says how it derives its streams.
            progress: called with the number of steps done (e.g. ``tqdm.update``).
        """

    # -- defaults a sampler may override ---------------------------------------------------------------

    @classmethod
    def for_generate(cls, lm: LanguageModel, compiled: ConstraintLike, *, temperature: float, greedy: bool) -> Sampler:
        """The sampler `gad.generate` uses for ``sampler=cls.name``; only GCD decodes greedily."""
        if greedy:
            raise ConfigurationError(
                f"`greedy` has no meaning for sampler {cls.name!r}, which samples; use sampler='gcd'"
            )
        return cls(lm, compiled, temperature=temperature)

    def progress_total(self, n: int, max_new_tokens: int) -> int:
        """How many times `sample` calls `progress` at most (for a progress bar's total)."""
        return max_new_tokens

    def check_prompt(self, prompt_ids: Sequence[int]) -> list[int]:
        """The prompt as a list of ints; `ConfigurationError` for an id outside the model's vocabulary."""
        prompt = [int(t) for t in prompt_ids]
        vocab = self.lm.vocab_size
        if any(not 0 <= t < vocab for t in prompt):
            raise ConfigurationError(f"a prompt token id is outside the model's vocabulary [0, {vocab})")
        return prompt

    def masks(self, constraints: Sequence[Constraint], size: int) -> np.ndarray:
        """``bool[B, size]``: each constraint's allowed next tokens (`gad.constraint.next_token_masks`).
        Does not change the constraints' states."""
        return next_token_masks(constraints, self.constraints.vocab_size, size)

    def base_seed(self, seed: int | None) -> int:
        """`seed`, or a fresh one when it is None."""
        return secrets.randbits(62) if seed is None else seed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lm!r}, temperature={self.temperature})"


def log_sum(values: Sequence[float]) -> float:
    """``log Σ exp(values)`` (−inf for an empty or all −inf input)."""
    top = max(values, default=-math.inf)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values))
