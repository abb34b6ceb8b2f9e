"""Adapters to other libraries' generation loops. Each module imports its library; `import gad` imports none.

- `gad.integrations.hf`: `GrammarLogitsProcessor` for transformers' ``model.generate``.
"""
