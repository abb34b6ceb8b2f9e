"""`gad.generate`: grammar-constrained generation in one call.

    results = gad.generate(model, tokenizer, "Give a JSON object…", "grammars/json.lark", n=4, seed=0)
    results[0].text, results[0].complete, results[0].logprob_model

It turns the prompt into token ids (through the tokenizer's chat template when it has one),
compiles the grammar for the tokenizer (cached per tokenizer and grammar), wraps the model in the
`gad.lm.LanguageModel` protocol and looks `sampler` up in the registry `gad.samplers.SAMPLERS`
(gcd, asap, smc, awrs, cars, mcmc; see `gad.samplers`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import tqdm

from gad.compiler import CompiledGrammar, GrammarCompiler
from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar
from gad.lm import HuggingFaceLM, LanguageModel, as_language_model
from gad.samplers import SAMPLERS, FinishReason, Sample, sampler_class
from gad.samplers.base import check_sampling_args
from gad.tokenizer import TokenizerInfo

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["GenerationResult", "SAMPLERS", "check_arguments", "compile_grammar", "encode_prompt", "generate"]

GrammarLike = Union[Grammar, CompiledGrammar, str, "os.PathLike[str]"]


@dataclass(frozen=True)
class GenerationResult:
    """One generated sequence.

    Attributes:
        text: the generated text (the prompt excluded, EOS not included), decoded from the
            tokens' exact bytes; invalid UTF-8 (only possible in an incomplete sequence cut inside
            a character) is replaced with U+FFFD.
        token_ids: the generated token ids, ending with the EOS id when ``finish_reason == "eos"``.
        complete: True iff the sequence ended with EOS, so `text` is a sentence of the grammar.
            A sequence cut at ``max_new_tokens`` is never complete, even if its text happens to be
            a sentence: the model had not chosen to stop there.
        logprob_model: ``Σ_i log P(token_ids[i] | prompt, token_ids[:i])`` under the model alone:
            temperature 1, no mask (the EOS token included).
        logprob_sampler: ``Σ_i log q_i(token_ids[i])``, ``q_i`` being the distribution the sampler
            actually drew token i from (after temperature and mask); 0.0 for greedy decoding.
        finish_reason: "eos" or "length" (hit ``max_new_tokens``).
    """

    text: str
    token_ids: tuple[int, ...]
    complete: bool
    logprob_model: float
    logprob_sampler: float
    finish_reason: FinishReason

    @classmethod
    def from_sample(cls, sample: Sample, info: TokenizerInfo) -> GenerationResult:
        text = info.decode_bytes(sample.token_ids).decode("utf-8", errors="replace")
        return cls(
            text=text,
            token_ids=sample.token_ids,
            complete=sample.complete,
            logprob_model=sample.logprob_model,
            logprob_sampler=sample.logprob_sampler,
            finish_reason=sample.finish_reason,
        )


# -- grammar compilation, cached per tokenizer ----------------------------------------------------

_lock = threading.Lock()
# tokenizer → {(vocab_size, eos ids): (TokenizerInfo, LRU of compiled grammars)}
_per_tokenizer: weakref.WeakKeyDictionary[Any, dict[tuple, tuple[TokenizerInfo, OrderedDict]]] = (
    weakref.WeakKeyDictionary()
)
_COMPILED_PER_TOKENIZER = 8


def _model_eos_ids(model: Any) -> list[int]:
    """The EOS ids of a transformers model's generation config (int or list), if any."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _is_path(grammar: object) -> bool:
    """A path-like object, or a one-line str ending in ``.lark`` (a file name, not grammar text)."""
    if isinstance(grammar, os.PathLike):
        return True
    return isinstance(grammar, str) and grammar.endswith(".lark") and "\n" not in grammar


def _grammar_key(grammar: GrammarLike) -> object:
    if _is_path(grammar):
        path = os.path.abspath(os.fspath(grammar))  # type: ignore[arg-type]
        try:
            return ("file", path, os.stat(path).st_mtime_ns)
        except OSError:
            return ("file", path, None)
    if isinstance(grammar, str):
        return ("text", grammar)
    return ("object", grammar)


def _load_grammar(grammar: GrammarLike) -> Grammar:
    if isinstance(grammar, Grammar):
        return grammar
    if _is_path(grammar):
        return Grammar.from_file(os.fspath(grammar))  # type: ignore[arg-type]
    if isinstance(grammar, str):
        return Grammar.from_lark(grammar)
    raise ConfigurationError(
        "`grammar` has to be a gad.Grammar, a gad.CompiledGrammar, Lark grammar text or the path "
        f"of a .lark file, but is {type(grammar).__name__}"
    )


def compile_grammar(
    grammar: GrammarLike,
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    model: PreTrainedModel | LanguageModel | None = None,
) -> CompiledGrammar:
    """`grammar` compiled for `tokenizer`, with the mask sized and the EOS ids taken from `model`.

    For a Hugging Face tokenizer the `TokenizerInfo` gets ``vocab_size`` = the model's logits size
    and EOS ids = the tokenizer's EOS plus those of ``model.generation_config`` (what
    ``model.generate`` stops on). Both the `TokenizerInfo` and the last few compiled grammars are
    cached per tokenizer object, so repeated calls cost nothing.

    Args:
        grammar: a `Grammar`, a `CompiledGrammar` (returned as is), Lark text, or the path of a
            ``.lark`` file (a ``pathlib.Path``, or a one-line str ending in ``.lark``).
        tokenizer: a transformers tokenizer, or a `TokenizerInfo` (toy vocabularies).
        model: a transformers model or `LanguageModel`, for the vocabulary size and EOS ids.
    """
    if isinstance(grammar, CompiledGrammar):
        return grammar
    if isinstance(tokenizer, TokenizerInfo):
        return GrammarCompiler(tokenizer).compile(_load_grammar(grammar))
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise ConfigurationError(
            f"`tokenizer` has to be a transformers tokenizer or a gad.TokenizerInfo, but is {type(tokenizer).__name__}"
        )
    hf_model = model.model if isinstance(model, HuggingFaceLM) else model
    vocab_size = None
    if isinstance(model, LanguageModel):
        vocab_size = model.vocab_size
    elif model is not None:
        vocab_size = as_language_model(model).vocab_size
    eos = [] if getattr(tokenizer, "eos_token_id", None) is None else [int(tokenizer.eos_token_id)]
    eos += [e for e in _model_eos_ids(hf_model) if e not in eos]
    settings = (vocab_size, tuple(eos))
    key = _grammar_key(grammar)
    with _lock:
        try:
            entries = _per_tokenizer.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: no cache
            entries = {}
        if settings not in entries:
            info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, eos_token_ids=tuple(eos))
            entries[settings] = (info, OrderedDict())
        info, compiled_cache = entries[settings]
        if key in compiled_cache:
            compiled_cache.move_to_end(key)
            return compiled_cache[key]
    compiled = GrammarCompiler(info).compile(_load_grammar(grammar))
    with _lock:
        compiled_cache[key] = compiled
        while len(compiled_cache) > _COMPILED_PER_TOKENIZER:
            compiled_cache.popitem(last=False)
    return compiled


# -- prompts --------------------------------------------------------------------------------------


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    prompt: str | Sequence[int],
    chat_template: bool | None = None,
) -> list[int]:
    """The prompt's token ids: ids are taken as given; text goes through the chat template when
    `chat_template` is True (None: when the tokenizer has one), else through ``tokenizer.encode``."""
    if not isinstance(prompt, str):
        if isinstance(prompt, (bytes, bytearray)) or not isinstance(prompt, Sequence):
            if hasattr(prompt, "tolist"):
                prompt = prompt.tolist()
            else:
                raise ConfigurationError(
                    f"`prompt` has to be text or a sequence of token ids, but is {type(prompt).__name__}"
                )
        try:
            return [int(t) for t in prompt]
        except (TypeError, ValueError):
            raise ConfigurationError("`prompt` has to be text or a sequence of token ids") from None
    if isinstance(tokenizer, TokenizerInfo):
        raise ConfigurationError(
            "a text prompt needs a transformers tokenizer; with a gad.TokenizerInfo give the prompt as token ids"
        )
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template is None:
        chat_template = has_template
    if chat_template:
        if not has_template:
            raise ConfigurationError("`chat_template=True`, but the tokenizer has no chat template")
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
        )
        if hasattr(ids, "keys") and "input_ids" in ids:  # a BatchEncoding in transformers 5
            ids = ids["input_ids"]
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return [int(t) for t in ids]
    return [int(t) for t in tokenizer.encode(prompt)]


# -- the entry point ------------------------------------------------------------------------------


def check_arguments(
    *, sampler: str = "gcd", n: int = 1, max_new_tokens: int = 1, temperature: float = 1.0, seed: int | None = None
) -> None:
    """Raise the `ConfigurationError` that `generate` would raise for these arguments (the CLI
    checks them before it spends seconds loading a model)."""
    sampler_class(sampler)
    check_sampling_args(n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)


def generate(
    model: PreTrainedModel | LanguageModel,
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    prompt: str | Sequence[int],
    grammar: GrammarLike,
    *,
    sampler: str = "gcd",
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    greedy: bool = False,
    seed: int | None = None,
    chat_template: bool | None = None,
    progress: bool = False,
) -> list[GenerationResult]:
    """Generate `n` sequences after `prompt` that follow `grammar`.

    Args:
        model: a transformers causal LM (wrapped in `gad.lm.HuggingFaceLM`, KV cache reused) or
            any `gad.LanguageModel`.
        tokenizer: the model's transformers tokenizer, or a `TokenizerInfo` for toy vocabularies
            (then `prompt` must be token ids).
        prompt: text, or token ids used as they are. The prompt is never fed to the grammar.
        grammar: a `Grammar`, a `CompiledGrammar`, Lark grammar text, or the path of a ``.lark``
            file (a ``pathlib.Path``, or a one-line str ending in ``.lark``).
        sampler: a name in `gad.samplers.SAMPLERS`: "gcd" (grammar-constrained decoding),
            "asap" (grammar-aligned sampling: the `n` sequences share one expected-futures trie,
            drawn 8 at a time, so later ones follow ``P(w | w ∈ L(G))`` more closely; for a trie
            that persists across calls use `gad.ASApSampler` directly), "smc" (sequential Monte
            Carlo: one run with `n` AWRS particles, the `n` results drawn from its weighted
            particles; for the weights, Ẑ and critics use `gad.SMC` directly), "awrs" (`n`
            independent AWRS sequences: GCD's distribution, each with its importance weight,
            which at temperature 1 is ``exp(logprob_model − logprob_sampler)``), "cars" (`n`
            exact draws of ``P(w | w ∈ L(G), |w| ≤ max_new_tokens)`` by adaptive rejection) or
            "mcmc" (`n` Metropolis–Hastings chains of 10 steps with GCD proposals).
        n: how many sequences; they are decoded as one batch.
        max_new_tokens: sequences without EOS after this many tokens are returned with
            ``complete=False, finish_reason="length"``.
        temperature: ``T > 0``, applied to the model's distribution *before* the grammar: the
            sampler targets the tempered model ``P_T ∝ P^(1/T)`` restricted to the grammar
            (see `gad.samplers.gcd` for why the order matters).
        greedy: take the most likely allowed token at each step (then `temperature` and `seed`
            play no role and ``logprob_sampler`` is 0).
        seed: sequence i draws from a generator seeded with ``seed + i``, so results do not
            depend on `n` or on the other sequences; None draws a fresh seed.
        chat_template: wrap a text prompt in the tokenizer's chat template as a user message
            (None: when the tokenizer has one).
        progress: show a progress bar (stderr) over the decoding steps.

    Returns:
        `n` `GenerationResult`s, in order.

    Raises:
        ConfigurationError: a bad argument, or a sampler that is not available yet.
        GrammarError: the grammar does not load.
        DeadEndError: the tokenizer cannot spell any continuation the grammar allows.
    """
    check_arguments(sampler=sampler, n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    lm = as_language_model(model)
    compiled = compile_grammar(grammar, tokenizer, lm)
    prompt_ids = encode_prompt(tokenizer, prompt, chat_template)
    if not prompt_ids and isinstance(lm, HuggingFaceLM):
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            raise ConfigurationError("the prompt is empty and the tokenizer has no BOS token to start from")
        prompt_ids = [int(bos)]

    chosen = sampler_class(sampler).for_generate(lm, compiled, temperature=temperature, greedy=greedy)
    steps = chosen.progress_total(n, max_new_tokens)
    bar = tqdm.tqdm(total=steps, desc="generating", unit="tok", disable=not progress, leave=False)
    try:
        samples = chosen.sample(prompt_ids, n, max_new_tokens=max_new_tokens, seed=seed, progress=bar.update)
    finally:
        bar.close()
    return [GenerationResult.from_sample(s, compiled.tokenizer_info) for s in samples]
