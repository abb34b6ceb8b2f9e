"""The language-model protocol samplers talk to, with Hugging Face and toy implementations.

A sampler needs one thing from a model: for a batch of token prefixes, the next-token
distribution of each, as log-probabilities,

    next_token_logprobs([u_1, …, u_B])[b, t] = log P(t | u_b),   shape (B, vocab_size),

normalised over the whole vocabulary (``logsumexp`` of each row is 0). `LanguageModel` is that
protocol; `HuggingFaceLM` wraps a transformers causal LM and reuses its KV cache when a batch
extends the previous one by one token per prefix (what every sampler's inner loop does);
`UniformLM`, `NGramLM` and `TableLM` are small exact models for tests and research, so samplers
can be checked against known distributions without a network or a GPU.

The prefixes are the *whole* context (prompt included); each implementation decides what it
conditions on.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from gad.errors import ConfigurationError

if TYPE_CHECKING:  # transformers is only imported by HuggingFaceLM and random_hf_model
    from transformers import PreTrainedModel

__all__ = [
    "HuggingFaceLM",
    "LanguageModel",
    "NGramLM",
    "TableLM",
    "UniformLM",
    "as_language_model",
    "random_hf_model",
]

Prefix = Sequence[int]


class LanguageModel(abc.ABC):
    """Next-token log-probabilities for a batch of prefixes.

    Subclasses implement `vocab_size` and `next_token_logprobs`. Implementations may keep caches
    between calls (`HuggingFaceLM` keeps its KV cache) but must return the same numbers whatever
    was asked before, up to floating-point rounding.
    """

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """``V``: the length of each row returned by `next_token_logprobs`."""

    @abc.abstractmethod
    def next_token_logprobs(self, prefixes: Sequence[Prefix]) -> torch.Tensor:
        """``float32[B, V]`` with row b = ``log P(· | prefixes[b])``, each row normalised.

        Args:
            prefixes: B token-id sequences (lists, tuples or 1-D tensors); they may differ in
                length.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _as_keys(prefixes: Sequence[Prefix], vocab_size: int | None = None) -> list[tuple[int, ...]]:
    """The prefixes as tuples of ints, validated."""
    if isinstance(prefixes, torch.Tensor):
        prefixes = prefixes.tolist()
    if isinstance(prefixes, (str, bytes)) or not isinstance(prefixes, Iterable):
        raise ConfigurationError(
            f"`prefixes` has to be a sequence of token-id sequences, but is {type(prefixes).__name__}"
        )
    keys = []
    for prefix in prefixes:
        if isinstance(prefix, torch.Tensor):
            prefix = prefix.tolist()
        if isinstance(prefix, (int, str, bytes)) or not isinstance(prefix, Iterable):
            raise ConfigurationError(
                f"each prefix has to be a sequence of token ids, but one is {prefix!r}"
            )
        key = tuple(int(t) for t in prefix)
        if vocab_size is not None and any(not 0 <= t < vocab_size for t in key):
            raise ConfigurationError(f"a prefix holds a token id outside [0, {vocab_size}): {key}")
        keys.append(key)
    if not keys:
        raise ConfigurationError("`prefixes` is empty: give at least one prefix")
    return keys


def _check_vocab_size(vocab_size: object) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ConfigurationError(f"`vocab_size` has to be a positive int, but is {vocab_size!r}")
    return int(vocab_size)


# -- toy models -----------------------------------------------------------------------------------


class UniformLM(LanguageModel):
    """``P(t | u) = 1 / V`` for every prefix: GCD under it samples uniformly among allowed tokens."""

    def __init__(self, vocab_size: int) -> None:
        self._vocab_size = _check_vocab_size(vocab_size)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def next_token_logprobs(self, prefixes: Sequence[Prefix]) -> torch.Tensor:
        keys = _as_keys(prefixes)
        return torch.full((len(keys), self._vocab_size), -math.log(self._vocab_size))


def _log_normalise(weights: object, vocab_size: int, what: str) -> torch.Tensor:
    """Non-negative weights of length V (any array-like) as a normalised float32 log row."""
    row = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if row.shape != (vocab_size,):
        raise ConfigurationError(f"{what} has shape {tuple(row.shape)}, expected ({vocab_size},)")
    if not torch.isfinite(row).all() or (row < 0).any():
        raise ConfigurationError(f"{what} has to hold finite non-negative weights")
    total = float(row.sum())
    if total <= 0:
        raise ConfigurationError(f"{what} sums to 0: at least one token needs positive weight")
    return torch.log(row / total).to(torch.float32)


class TableLM(LanguageModel):
    """A fixed table: ``P(· | u) = table[u]`` (weights, normalised), or `default` elsewhere.

    Args:
        table: maps a prefix (a tuple of token ids, the whole context) to V non-negative weights.
        vocab_size: V.
        default: the weights used for prefixes not in `table`; None (the default) makes an
            unknown prefix a `ConfigurationError`, "uniform" uses ``1/V``.

    >>> lm = TableLM({(): [3, 1], (0,): [0, 1]}, vocab_size=2)
    >>> lm.next_token_logprobs([[]]).exp()
    tensor([[0.7500, 0.2500]])
    """

    def __init__(
        self,
        table: Mapping[Sequence[int], Sequence[float]],
        vocab_size: int,
        default: Sequence[float] | str | None = None,
    ) -> None:
        self._vocab_size = _check_vocab_size(vocab_size)
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"`table` has to be a mapping, but is {type(table).__name__}")
        self._table = {
            tuple(int(t) for t in prefix): _log_normalise(w, self._vocab_size, f"table[{tuple(prefix)}]")
            for prefix, w in table.items()
        }
        if default is None:
            self._default = None
        elif isinstance(default, str):
            if default != "uniform":
                raise ConfigurationError(f"`default` has to be None, 'uniform' or weights, but is {default!r}")
            self._default = torch.full((self._vocab_size,), -math.log(self._vocab_size))
        else:
            self._default = _log_normalise(default, self._vocab_size, "default")

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def next_token_logprobs(self, prefixes: Sequence[Prefix]) -> torch.Tensor:
        rows = []
        for key in _as_keys(prefixes):
            row = self._table.get(key, self._default)
            if row is None:
                raise ConfigurationError(f"TableLM has no entry for prefix {key} and no default")
            rows.append(row)
        return torch.stack(rows)


class NGramLM(LanguageModel):
    """An n-gram model with add-k smoothing and back-off to shorter contexts.

    ``P(t | u)`` conditions on the last ``order - 1`` tokens of u; a context never seen in
    training backs off to its longest seen suffix (down to the unigram distribution). Smoothed
    counts: ``P(t | c) = (count(c, t) + k) / (count(c) + k·V)``, so with ``k > 0`` every token has
    positive probability. Build it with `NGramLM.fit`.
    """

    def __init__(self, order: int, vocab_size: int, counts: Mapping[tuple[int, ...], np.ndarray], smoothing: float) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ConfigurationError(f"`order` has to be a positive int, but is {order!r}")
        if not isinstance(smoothing, (int, float)) or not smoothing >= 0:
            raise ConfigurationError(f"`smoothing` has to be a non-negative float, but is {smoothing!r}")
        self.order = order
        self.smoothing = float(smoothing)
        self._vocab_size = _check_vocab_size(vocab_size)
        self._rows: dict[tuple[int, ...], torch.Tensor] = {}
        for context, row in counts.items():
            row = np.asarray(row, dtype=np.float64) + self.smoothing
            if row.shape != (self._vocab_size,):
                raise ConfigurationError(f"counts[{context}] has shape {row.shape}, expected ({self._vocab_size},)")
            if row.sum() > 0:
                with np.errstate(divide="ignore"):
                    self._rows[tuple(context)] = torch.from_numpy(np.log(row / row.sum())).to(torch.float32)
        if () not in self._rows:
            raise ConfigurationError(
                "the unigram counts are all zero: train on at least one token or use smoothing > 0"
            )

    @classmethod
    def fit(
        cls, sequences: Iterable[Sequence[int]], order: int, vocab_size: int, smoothing: float = 1.0
    ) -> NGramLM:
        """Count every n-gram (and every shorter one, for back-off) in `sequences`.

        Each sequence is read as a whole context: token i is counted after each suffix of length
        ``0 … order-1`` of ``sequence[:i]``.
        """
        vocab_size = _check_vocab_size(vocab_size)
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ConfigurationError(f"`order` has to be a positive int, but is {order!r}")
        counts: dict[tuple[int, ...], np.ndarray] = {(): np.zeros(vocab_size)}
        for sequence in sequences:
            tokens = [int(t) for t in sequence]
            for i, token in enumerate(tokens):
                if not 0 <= token < vocab_size:
                    raise ConfigurationError(f"token id {token} is outside [0, {vocab_size})")
                for n in range(0, min(order - 1, i) + 1):
                    context = tuple(tokens[i - n : i])
                    counts.setdefault(context, np.zeros(vocab_size))[token] += 1
        return cls(order, vocab_size, counts, smoothing)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def next_token_logprobs(self, prefixes: Sequence[Prefix]) -> torch.Tensor:
        rows = []
        for key in _as_keys(prefixes):
            start = max(0, len(key) - (self.order - 1))
            while (row := self._rows.get(key[start:])) is None:
                start += 1
            rows.append(row)
        return torch.stack(rows)


# -- Hugging Face ---------------------------------------------------------------------------------


def _logits_size(model: PreTrainedModel) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    size = getattr(head, "out_features", None)
    if isinstance(size, int) and size > 0:
        return size
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(size, int) and size > 0:
        return size
    raise ConfigurationError("cannot tell the model's vocabulary size: it has no output embeddings or config.vocab_size")


class _Batch:
    """What `HuggingFaceLM` remembers of its last forward pass."""

    __slots__ = ("prefixes", "index", "cache", "attention_mask", "positions", "logprobs")

    def __init__(self, prefixes, cache, attention_mask, positions, logprobs) -> None:
        self.prefixes: list[tuple[int, ...]] = prefixes
        self.index = {key: i for i, key in enumerate(prefixes)}
        self.cache = cache
        self.attention_mask: torch.Tensor = attention_mask  # (B, L) 1 for real tokens
        self.positions: torch.Tensor = positions  # (B,) position id of each row's last token
        self.logprobs: torch.Tensor = logprobs  # (B, V) float32, on the CPU


class HuggingFaceLM(LanguageModel):
    """A transformers causal LM as a `LanguageModel`, reusing its KV cache across calls.

    The model's key/value cache of the previous call is kept. When every prefix of a call is a
    prefix of that call extended by one token (rows may be reordered, repeated or dropped, as
    sampling, beam search and SMC resampling do), the cache is reordered and only the new tokens
    are run; a call that asks again for the previous prefixes reuses their log-probabilities.
    Anything else recomputes the batch from scratch, left-padded. Equal prefixes within a call
    are run once. Logits are converted to float32 before the ``log_softmax``.

    Args:
        model: a transformers model with a language-modelling head (``AutoModelForCausalLM``).
            It is put in eval mode.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        if not callable(model) or not hasattr(model, "config"):
            raise ConfigurationError(
                f"`model` has to be a transformers causal LM, but is {type(model).__name__}"
            )
        self.model = model
        model.eval()
        self._vocab_size = _logits_size(model)
        try:
            self._device = next(model.parameters()).device
        except (StopIteration, AttributeError, TypeError):
            self._device = torch.device("cpu")
        self._last: _Batch | None = None
        #: How many forward passes reused the cache / started over (for tests and benchmarks).
        self.stats = {"incremental": 0, "full": 0, "reused": 0}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def reset(self) -> None:
        """Forget the KV cache (it is rebuilt on the next call)."""
        self._last = None

    def next_token_logprobs(self, prefixes: Sequence[Prefix]) -> torch.Tensor:
        keys = _as_keys(prefixes)
        if any(not key for key in keys):
            raise ConfigurationError(
                "a prefix is empty: a Hugging Face model needs at least one token of context "
                "(start from the tokenizer's BOS token)"
            )
        # Equal prefixes (n samples of one prompt, identical greedy rows) are run once.
        unique = list(dict.fromkeys(keys))
        logprobs = self._unique_logprobs(unique)
        if len(unique) == len(keys):
            return logprobs
        row_of = {key: i for i, key in enumerate(unique)}
        return logprobs[[row_of[key] for key in keys]]

    def _unique_logprobs(self, keys: list[tuple[int, ...]]) -> torch.Tensor:
        last = self._last
        if last is not None:
            same = [last.index.get(key) for key in keys]
            if None not in same:
                self.stats["reused"] += 1
                return last.logprobs[same]
            parents = [last.index.get(key[:-1]) for key in keys]
            if None not in parents:
                return self._extend(last, keys, parents)
        return self._full(keys)

    @torch.no_grad()
    def _extend(self, last: _Batch, keys: list[tuple[int, ...]], parents: list[int | None]) -> torch.Tensor:
        self._last = None  # the cache is changed in place: forget it until this call succeeds
        rows = torch.tensor(parents, dtype=torch.long, device=self._device)
        cache = last.cache
        if not (len(parents) == len(last.prefixes) and parents == list(range(len(parents)))):
            cache.reorder_cache(rows)
        attention_mask = torch.cat(
            [last.attention_mask.index_select(0, rows), torch.ones(len(keys), 1, dtype=torch.long, device=self._device)],
            dim=1,
        )
        positions = last.positions.index_select(0, rows) + 1
        input_ids = torch.tensor([[key[-1]] for key in keys], dtype=torch.long, device=self._device)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
        self._last = _Batch(keys, out.past_key_values, attention_mask, positions, logprobs)
        self.stats["incremental"] += 1
        return logprobs

    @torch.no_grad()
    def _full(self, keys: list[tuple[int, ...]]) -> torch.Tensor:
        self._last = None
        width = max(len(key) for key in keys)
        input_ids = torch.zeros(len(keys), width, dtype=torch.long)
        attention_mask = torch.zeros(len(keys), width, dtype=torch.long)
        for b, key in enumerate(keys):  # left padding: the last token of every row is aligned
            input_ids[b, width - len(key) :] = torch.tensor(key)
            attention_mask[b, width - len(key) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        input_ids, attention_mask, position_ids = (
            t.to(self._device) for t in (input_ids, attention_mask, position_ids)
        )
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True
        )
        logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
        cache = getattr(out, "past_key_values", None)
        if cache is not None and hasattr(cache, "reorder_cache"):
            self._last = _Batch(keys, cache, attention_mask, position_ids[:, -1], logprobs)
        self.stats["full"] += 1
        return logprobs

    def __repr__(self) -> str:
        return f"HuggingFaceLM({type(self.model).__name__}, vocab_size={self.vocab_size})"


def as_language_model(model: object) -> LanguageModel:
    """`model` itself if it is a `LanguageModel`, a `HuggingFaceLM` around a transformers model."""
    if isinstance(model, LanguageModel):
        return model
    if callable(model) and hasattr(model, "config") and hasattr(model, "get_output_embeddings"):
        return HuggingFaceLM(model)
    raise ConfigurationError(
        f"`model` has to be a gad.LanguageModel or a transformers causal LM, but is {type(model).__name__}"
    )


def random_hf_model(vocab_size: int, *, seed: int = 0, architecture: str = "llama") -> PreTrainedModel:
    """A tiny randomly initialised transformers causal LM (a few thousand weights), for tests.

    Args:
        vocab_size: the size of its logits.
        seed: the weights are a function of the seed alone.
        architecture: "llama" (``LlamaForCausalLM``) or "gpt2" (``GPT2LMHeadModel``).
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    vocab_size = _check_vocab_size(vocab_size)
    if architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            bos_token_id=None, eos_token_id=None, pad_token_id=None, initializer_range=0.5,
        )
        model_class = LlamaForCausalLM
    elif architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=1024,
            bos_token_id=None, eos_token_id=None, initializer_range=0.5,
        )
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
