"""Samplers: draw sequences from a `LanguageModel` under a constraint's token masks.

Every sampler is a `gad.samplers.base.Sampler`: it takes its model (a `gad.lm.LanguageModel`)
and its constraint (a `gad.CompiledGrammar` or a `gad.constraint.ConstraintFactory`) and
nothing else, and returns `Sample` objects. `SAMPLERS` holds them by name, in this order; it is
what `gad.generate(sampler=...)`, ``gad generate --sampler`` and the docs read.

- `gad.samplers.gcd` ("gcd"): grammar-constrained decoding — greedy or ancestral sampling under
  the mask. Biased.
- `gad.samplers.asap` ("asap"): grammar-aligned sampling — reweights by learned expected futures
  (ASAp). Consistent.
- `gad.samplers.smc` ("smc"): sequential Monte Carlo over AWRS particles, with resampling.
  Consistent in the number of particles; Ẑ unbiased.
- `gad.samplers.awrs` ("awrs"): adaptive weighted rejection sampling — a few grammar checks per
  token instead of a mask, and an importance weight. Properly weighted.
- `gad.samplers.cars` ("cars"): constrained adaptive rejection sampling — exact samples.
- `gad.samplers.mcmc` ("mcmc"): Metropolis–Hastings over complete sentences with GCD proposals.
  Consistent in the number of steps.
"""

from __future__ import annotations

from gad.constraint import fit_mask
from gad.samplers.base import SAMPLERS, FinishReason, Sample, Sampler, register, sampler_class
from gad.samplers.gcd import GCDSampler
from gad.samplers.asap import ASApSampler
from gad.samplers.smc import SMC
from gad.samplers.awrs import AWRSSampler
from gad.samplers.cars import CARSSampler
from gad.samplers.mcmc import MCMCSampler

for _cls in (GCDSampler, ASApSampler, SMC, AWRSSampler, CARSSampler, MCMCSampler):
    register(_cls)
del _cls

__all__ = ["FinishReason", "SAMPLERS", "Sample", "Sampler", "fit_mask", "register", "sampler_class"]
