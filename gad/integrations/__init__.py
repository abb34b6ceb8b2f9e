"""Adapters to transformers' generation loop. Each module imports transformers; `import gad` imports none.

- `gad.integrations.hf`: `GrammarLogitsProcessor`, grammar-constrained decoding in ``model.generate``.
- `gad.integrations.asap_hf`: `ASApLogitsProcessor`, grammar-aligned sampling (ASAp) in ``model.generate``.
- `gad.integrations.rows`: the row tracking both share (which generation a call belongs to, each
  row's grammar state, `is_complete`).
"""
