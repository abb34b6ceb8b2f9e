"""Tiny randomly initialised transformers models, for tests and examples (no download, no file).

`random_hf_model` builds a causal LM of a few thousand weights whose logits have the size you ask
for, so that tests and docstring examples can drive `model.generate`, `gad.HuggingFaceLM` and the
logits processors with a toy vocabulary (`gad.TokenizerInfo.from_vocab`). It lives apart from
`gad.lm` because it is a test helper, not a model users generate with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gad.errors import ConfigurationError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["random_hf_model"]


def random_hf_model(vocab_size: int, *, seed: int = 0, architecture: str = "llama") -> PreTrainedModel:
    """A tiny randomly initialised transformers causal LM (a few thousand weights), for tests.

    The global torch RNG is left as it was.

    Args:
        vocab_size: the size of its logits.
        seed: the weights are a function of the seed alone.
        architecture: "llama" (``LlamaForCausalLM``) or "gpt2" (``GPT2LMHeadModel``).
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ConfigurationError(f"`vocab_size` has to be a positive int, but is {vocab_size!r}")
    if architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            bos_token_id=None, eos_token_id=None, pad_token_id=None, initializer_range=0.5,
        )  # fmt: skip
        model_class = LlamaForCausalLM
    elif architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=1024,
            bos_token_id=None, eos_token_id=None, initializer_range=0.5,
        )  # fmt: skip
        model_class = GPT2LMHeadModel
    else:
        raise ConfigurationError(f"`architecture` has to be 'llama' or 'gpt2', but is {architecture!r}")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = model_class(config)
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return model
