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
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from gad.errors import ConfigurationError

if TYPE_CHECKING:  # transformers is only imported where a transformers model is used
    from transformers import PreTrainedModel

__all__ = [
    "HuggingFaceLM",
    "LanguageModel",
    "NGramLM",
    "TableLM",
    "UniformLM",
    "as_language_model",
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

    def extend_logprobs(self, prefixes: Sequence[Prefix], extensions: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """The rows along each extension: item b is ``float32[len(extensions[b]), V]`` with row j =
        ``log P(· | prefixes[b] + extensions[b][: j + 1])``, so row j scores token j + 1 of the
        extension and the last row is the distribution after all of it. Extensions are non-empty.

        The default asks `next_token_logprobs` for every prefix along the extensions in one call;
        `HuggingFaceLM` runs them on top of its KV cache in one forward pass.
        """
        keys = _as_keys(prefixes)
        exts = _as_extensions(extensions, len(keys))
        rows = self.next_token_logprobs([key + ext[: j + 1] for key, ext in zip(keys, exts) for j in range(len(ext))])
        return list(torch.split(rows, [len(ext) for ext in exts]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _as_extensions(extensions: Sequence[Sequence[int]], count: int) -> list[tuple[int, ...]]:
    """`extensions` as `count` non-empty tuples of ints, validated."""
    if isinstance(extensions, (str, bytes)) or not isinstance(extensions, Iterable):
        raise ConfigurationError(f"`extensions` has to be a sequence of token-id sequences, but is {type(extensions).__name__}")
    exts = [tuple(int(t) for t in (e.tolist() if isinstance(e, torch.Tensor) else e)) for e in extensions]
    if len(exts) != count:
        raise ConfigurationError(f"`extensions` has {len(exts)} items for {count} prefixes")
    if any(not e for e in exts):
        raise ConfigurationError("an extension is empty: give at least one token per prefix")
    return exts


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


class _ForwardAPI:
    """How this transformers version names a model's KV cache and its logits limit.

    transformers 5.2x renamed ``past_key_values`` to ``cache`` (in ``forward`` and in the output);
    the old name still works there but warns, and is removed in 5.40. 4.x returns a tuple-of-tuples
    cache unless given a ``Cache`` object, and names the logits limit ``num_logits_to_keep``.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        try:
            parameters = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            parameters = {}
        self.cache = "cache" if "cache" in parameters else "past_key_values"
        self.keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in parameters), None)

    def kwargs(self, cache: object, keep: int) -> dict[str, object]:
        out: dict[str, object] = {"use_cache": True}
        if cache is not None:
            out[self.cache] = cache
        if self.keep is not None:
            out[self.keep] = keep
        return out

    def output_cache(self, out: object) -> object:
        """The output's cache as a ``Cache`` object (None when the model has none)."""
        fields = getattr(type(out), "__dataclass_fields__", {})
        cache = getattr(out, "cache" if "cache" in fields else "past_key_values", None)
        if isinstance(cache, (tuple, list)):  # transformers 4.x legacy format
            from transformers import DynamicCache

            cache = DynamicCache.from_legacy_cache(cache)
        return cache if hasattr(cache, "reorder_cache") else None


class HuggingFaceLM(LanguageModel):
    """A transformers causal LM as a `LanguageModel`, reusing its KV cache across calls.

    The model's key/value cache of the previous call is kept. When every prefix of a call is a
    prefix of that call extended by one token (rows may be reordered, repeated or dropped, as
    sampling, beam search and SMC resampling do), the cache is reordered and only the new tokens
    are run; a call that asks again for the previous prefixes reuses their log-probabilities.
    `extend_logprobs` runs extensions of several tokens in one forward pass the same way.
    Anything else recomputes the batch from scratch, left-padded. Equal prefixes within a call
    are run once. Logits are converted to float32 before the ``log_softmax``. The cache is passed
    under the name the installed transformers expects (``cache``, or ``past_key_values`` before
    transformers 5.2x), so no deprecation warning is triggered.

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
        self._api = _ForwardAPI(model)
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

    def extend_logprobs(self, prefixes: Sequence[Prefix], extensions: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        keys = _as_keys(prefixes)
        exts = _as_extensions(extensions, len(keys))
        if all(len(e) == 1 for e in exts):
            rows = self.next_token_logprobs([k + e for k, e in zip(keys, exts)])
            return [rows[b : b + 1] for b in range(len(keys))]
        if any(not key for key in keys):
            raise ConfigurationError("a prefix is empty: a Hugging Face model needs at least one token of context")
        pairs = list(dict.fromkeys(zip(keys, exts)))
        last = self._last
        parents = [None] if last is None else [last.index.get(key) for key, _ in pairs]
        if None in parents:
            rows = self._full([k + e for k, e in pairs], tails=[len(e) for _, e in pairs])
        else:
            rows = self._extend(last, [k + e for k, e in pairs], parents, tails=[len(e) for _, e in pairs])  # type: ignore[arg-type]
        row_of = {pair: i for i, pair in enumerate(pairs)}
        return [rows[row_of[pair]] for pair in zip(keys, exts)]

    def _unique_logprobs(self, keys: list[tuple[int, ...]]) -> torch.Tensor:
        last = self._last
        if last is not None:
            same = [last.index.get(key) for key in keys]
            if None not in same:
                self.stats["reused"] += 1
                return last.logprobs[same]
            parents = [last.index.get(key[:-1]) for key in keys]
            if None not in parents:
                return torch.stack([r[0] for r in self._extend(last, keys, parents, [1] * len(keys))])  # type: ignore[arg-type]
        return torch.stack([r[0] for r in self._full(keys, [1] * len(keys))])

    @torch.no_grad()
    def _extend(self, last: _Batch, keys: list[tuple[int, ...]], parents: list[int], tails: list[int]) -> list[torch.Tensor]:
        """Run the last ``tails[b]`` tokens of each key on top of the cached row ``parents[b]``;
        row b of the result holds the ``tails[b]`` next-token rows along them."""
        self._last = None  # the cache is changed in place: forget it until this call succeeds
        rows = torch.tensor(parents, dtype=torch.long, device=self._device)
        cache = last.cache
        if not (len(parents) == len(last.prefixes) and parents == list(range(len(parents)))):
            cache.reorder_cache(rows)
        width = max(tails)
        input_ids = torch.zeros(len(keys), width, dtype=torch.long)
        new = torch.zeros(len(keys), width, dtype=torch.long)
        for b, (key, tail) in enumerate(zip(keys, tails)):  # right padding, masked out for good
            input_ids[b, :tail] = torch.tensor(key[len(key) - tail :])
            new[b, :tail] = 1
        input_ids, new = input_ids.to(self._device), new.to(self._device)
        attention_mask = torch.cat([last.attention_mask.index_select(0, rows), new], dim=1)
        position_ids = last.positions.index_select(0, rows)[:, None] + new.cumsum(dim=1)
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            **self._api.kwargs(cache, width),
        )  # fmt: skip
        logprobs = torch.log_softmax(out.logits[:, -width:].float(), dim=-1).cpu()
        result = [logprobs[b, :tail] for b, tail in enumerate(tails)]
        positions = position_ids[:, -1]
        self._last = _Batch(keys, self._api.output_cache(out), attention_mask, positions, torch.stack([r[-1] for r in result]))
        self.stats["incremental"] += 1
        return result

    @torch.no_grad()
    def _full(self, keys: list[tuple[int, ...]], tails: list[int]) -> list[torch.Tensor]:
        """Run every key from scratch, left-padded; row b of the result holds the next-token rows
        after each of the last ``tails[b]`` tokens of key b."""
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
        keep = max(tails)
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            **self._api.kwargs(None, keep),
        )  # fmt: skip
        logprobs = torch.log_softmax(out.logits[:, -keep:].float(), dim=-1).cpu()
        result = [logprobs[b, keep - tail :] for b, tail in enumerate(tails)]
        cache = self._api.output_cache(out)
        if cache is not None:
            self._last = _Batch(keys, cache, attention_mask, position_ids[:, -1], torch.stack([r[-1] for r in result]))
        self.stats["full"] += 1
        return result

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


def __getattr__(name: str) -> object:
    # `random_hf_model` moved to `gad.lm_testing` (a test helper); the old name still resolves.
    if name == "random_hf_model":
        from gad.lm_testing import random_hf_model

        return random_hf_model
    raise AttributeError(f"module 'gad.lm' has no attribute {name!r}")
