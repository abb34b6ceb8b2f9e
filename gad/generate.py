"""`gad.generate` and `gad.stream`: grammar-constrained generation in one call.

    results = gad.generate(model, tokenizer, "Give a JSON object…", "grammars/json.lark", n=4, seed=0)
    results[0].text, results[0].complete, results[0].logprob_model
    for delta in gad.stream(model, tokenizer, "Give a JSON object…", "grammars/json.lark"): ...

The prompt is text (through the tokenizer's chat template when it has one), chat messages, token
ids, or a list of any of these (one batch, each prompt with its own results). The grammar is
compiled for the tokenizer (cached per tokenizer and grammar), the model wrapped in the
`gad.lm.LanguageModel` protocol, and `sampler` dispatched on: "gcd" (greedy or ancestral
sampling under the mask, `gad.samplers.gcd`; batches of prompts, top-k / top-p, jump-forward and
streaming run the same draws through `gad.decoding`), "asap" (grammar-aligned sampling,
`gad.samplers.asap`) and "smc" (sequential Monte Carlo over AWRS particles, `gad.samplers.smc`).
`engine` picks whose masks the sampler runs on: gad's own matcher, xgrammar's or llguidance's
(`gad.engines`).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import numbers
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import tqdm

from gad.compiler import CompiledGrammar, GrammarCompiler
from gad.constraint import ConstraintLike
from gad.decoding import Decoder, ForcedTokenizer
from gad.engines import check_engine, constraint_factory
from gad.errors import ConfigurationError
from gad.grammar.ir import Grammar
from gad.lm import HuggingFaceLM, LanguageModel, as_language_model
from gad.samplers import SAMPLERS as _REGISTRY
from gad.samplers import FinishReason, Sample
from gad.samplers.asap import ASApSampler
from gad.samplers.gcd import GCDSampler, check_sampling_args
from gad.samplers.smc import SMC
from gad.tokenizer import TokenizerInfo
from gad.typed import typed_output

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "GenerationResult", "SAMPLERS", "TextStream", "check_arguments", "compile_grammar", "encode_prompt",
    "generate", "stream", "tokenizer_info",
]  # fmt: skip

#: The sampler names `generate` accepts, and whether each is available yet.
# The registry of samplers by name (`gad.samplers.SAMPLERS`): gcd, asap, smc, awrs, cars, mcmc.
SAMPLERS = _REGISTRY

#: A grammar: a `Grammar`, a `CompiledGrammar`, Lark text, a ``.lark`` path, or a JSON Schema (dict).
GrammarLike = Union[Grammar, CompiledGrammar, str, "os.PathLike[str]", dict]
Message = dict[str, str]
#: One prompt: text, token ids, or a conversation (chat messages).
PromptLike = Union[str, Sequence[int], Sequence[Message]]

#: ``seed + i`` seeds a ``torch.Generator``, which takes at most 64 bits.
MAX_SEED = 2**63


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
        value: with ``generate(..., output_type=T)``, the complete text parsed as a T (None when
            incomplete, or when T's own validators, beyond its JSON Schema, refuse it); else None.
    """

    text: str
    token_ids: tuple[int, ...]
    complete: bool
    logprob_model: float
    logprob_sampler: float
    finish_reason: FinishReason
    value: Any = None

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
    """A path-like object, or a one-line str ending in ``.lark`` or ``.gbnf`` (a file name, not grammar text)."""
    if isinstance(grammar, os.PathLike):
        return True
    return isinstance(grammar, str) and grammar.endswith((".lark", ".gbnf")) and "\n" not in grammar


def _grammar_key(grammar: GrammarLike) -> object:
    if _is_path(grammar):
        path = os.path.abspath(os.fspath(grammar))  # type: ignore[arg-type]
        try:
            return ("file", path, os.stat(path).st_mtime_ns)
        except OSError:
            return ("file", path, None)
    if isinstance(grammar, str):
        return ("text", grammar)
    if isinstance(grammar, dict):
        return ("schema", json.dumps(grammar, sort_keys=True))
    return ("object", grammar)


def _load_grammar(grammar: GrammarLike) -> Grammar:
    if isinstance(grammar, Grammar):
        return grammar
    if isinstance(grammar, dict):  # a JSON Schema
        return Grammar.from_json_schema(grammar)
    if _is_path(grammar):
        return Grammar.from_file(os.fspath(grammar))  # type: ignore[arg-type]
    if isinstance(grammar, str):
        from gad import grammars

        if grammar in grammars.names():  # a shipped grammar by name: "json", "sql", ...
            return grammars.load(grammar)
        return Grammar.from_lark(grammar)
    raise ConfigurationError(
        "`grammar` has to be a gad.Grammar, a gad.CompiledGrammar, Lark grammar text, the path "
        f"of a .lark file or a JSON Schema (dict), but is {type(grammar).__name__}"
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
        grammar: a `Grammar`, a `CompiledGrammar` (returned as is), Lark text, the path of a
            ``.lark`` file (a ``pathlib.Path``, or a one-line str ending in ``.lark``), or a JSON
            Schema (a dict).
        tokenizer: a transformers tokenizer, or a `TokenizerInfo` (toy vocabularies).
        model: a transformers model or `LanguageModel`, for the vocabulary size and EOS ids.
    """
    if isinstance(grammar, CompiledGrammar):
        return grammar
    if isinstance(tokenizer, TokenizerInfo):
        return GrammarCompiler(tokenizer).compile(_load_grammar(grammar))
    info, compiled_cache = _tokenizer_entry(tokenizer, model)
    key = _grammar_key(grammar)
    with _lock:
        if key in compiled_cache:
            compiled_cache.move_to_end(key)
            return compiled_cache[key]
    compiled = GrammarCompiler(info).compile(_load_grammar(grammar))
    with _lock:
        compiled_cache[key] = compiled
        while len(compiled_cache) > _COMPILED_PER_TOKENIZER:
            compiled_cache.popitem(last=False)
    return compiled


def tokenizer_info(
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo, model: PreTrainedModel | LanguageModel | None = None
) -> TokenizerInfo:
    """The `TokenizerInfo` that `compile_grammar` compiles for (same sizes and EOS ids; cached per
    tokenizer object). A `TokenizerInfo` is returned as is."""
    if isinstance(tokenizer, TokenizerInfo):
        return tokenizer
    return _tokenizer_entry(tokenizer, model)[0]


def _tokenizer_entry(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | LanguageModel | None
) -> tuple[TokenizerInfo, OrderedDict[object, CompiledGrammar]]:
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
    with _lock:
        try:
            entries = _per_tokenizer.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: no cache
            entries = {}
        if settings not in entries:
            info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, eos_token_ids=tuple(eos))
            entries[settings] = (info, OrderedDict())
        return entries[settings]


# -- prompts --------------------------------------------------------------------------------------


def _check_messages(messages: object, where: str = "`messages`") -> list[Message]:
    """A conversation: a non-empty list of ``{"role": str, "content": str}`` dicts."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ConfigurationError(f"{where} has to be a non-empty list of chat messages, but is {messages!r:.80}")
    for i, message in enumerate(messages):
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise ConfigurationError(
                f'{where}[{i}] has to be a dict with str "role" and "content", but is {message!r:.80}'
            )
    return list(messages)  # type: ignore[arg-type]


def _is_ids(prompt: object) -> bool:
    return isinstance(prompt, Sequence) and not isinstance(prompt, (str, bytes, bytearray)) and all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in prompt
    )


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    prompt: PromptLike,
    chat_template: bool | None = None,
) -> list[int]:
    """One prompt's token ids: ids are taken as given; a conversation (a list of
    ``{"role", "content"}`` messages, e.g. a system prompt then a user message) goes through the
    tokenizer's chat template; text goes through the chat template as one user message when
    `chat_template` is True (None: when the tokenizer has one), else through ``tokenizer.encode``.
    The chat template always ends with the assistant's turn (``add_generation_prompt=True``)."""
    if hasattr(prompt, "tolist") and not isinstance(prompt, (str, Sequence)):
        prompt = prompt.tolist()  # a 1-D tensor or array of ids
    if not isinstance(prompt, str):
        if isinstance(prompt, Sequence) and prompt and all(isinstance(m, dict) for m in prompt):
            messages = _check_messages(prompt)
            if chat_template is False:
                raise ConfigurationError("chat messages need the chat template, but `chat_template=False`")
            return _apply_chat_template(tokenizer, messages)
        if not _is_ids(prompt):
            raise ConfigurationError(
                "`prompt` has to be text, token ids or chat messages, but is "
                f"{type(prompt).__name__}{'' if not isinstance(prompt, Sequence) else f' {prompt!r:.60}'}"
            )
        return [int(t) for t in prompt]  # type: ignore[union-attr]
    if isinstance(tokenizer, TokenizerInfo):
        raise ConfigurationError(
            "a text prompt needs a transformers tokenizer; with a gad.TokenizerInfo give the prompt as token ids"
        )
    if chat_template is None:
        chat_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template:
        return _apply_chat_template(tokenizer, [{"role": "user", "content": prompt}])
    return [int(t) for t in tokenizer.encode(prompt)]


def _apply_chat_template(tokenizer: PreTrainedTokenizerBase | TokenizerInfo, messages: list[Message]) -> list[int]:
    if isinstance(tokenizer, TokenizerInfo) or not getattr(tokenizer, "chat_template", None):
        raise ConfigurationError("chat messages and `chat_template=True` need a chat template, but the tokenizer has no chat template")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    return [int(t) for t in ids]


def _prompts(
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    lm: LanguageModel,
    prompt: object,
    messages: object,
    chat_template: bool | None,
) -> tuple[list[list[int]], bool]:
    """(the token ids of each prompt, whether a batch was given)."""
    if (prompt is None) == (messages is None):
        raise ConfigurationError("give either `prompt` or `messages`, not both" if prompt is not None else "give a `prompt` or `messages`")
    if messages is not None:
        if isinstance(messages, Sequence) and messages and all(isinstance(m, Sequence) and not isinstance(m, (str, dict)) for m in messages):
            batch, items = True, [_check_messages(m, f"`messages[{j}]`") for j, m in enumerate(messages)]
        else:
            batch, items = False, [_check_messages(messages)]
    else:
        if hasattr(prompt, "tolist") and getattr(prompt, "ndim", 1) == 2:
            prompt = prompt.tolist()  # type: ignore[union-attr]
        batch = (
            isinstance(prompt, Sequence) and not isinstance(prompt, (str, bytes, bytearray)) and bool(prompt)
            and not _is_ids(prompt) and not all(isinstance(m, dict) for m in prompt)
        )  # fmt: skip
        items = list(prompt) if batch else [prompt]  # type: ignore[arg-type]
        if batch and not items:
            raise ConfigurationError("`prompt` is an empty list of prompts")
    ids = [encode_prompt(tokenizer, item, chat_template) for item in items]
    if isinstance(lm, HuggingFaceLM):
        for j, prompt_ids in enumerate(ids):
            if not prompt_ids:
                bos = getattr(tokenizer, "bos_token_id", None)
                if bos is None:
                    raise ConfigurationError("the prompt is empty and the tokenizer has no BOS token to start from")
                ids[j] = [int(bos)]
    return ids, batch


# -- the entry point ------------------------------------------------------------------------------


def check_arguments(
    *,
    sampler: str = "gcd",
    n: int = 1,
    max_new_tokens: int = 1,
    temperature: float = 1.0,
    seed: int | None = None,
    greedy: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    jump_forward: bool = False,
    engine: str = "gad",
) -> None:
    """Raise the `ConfigurationError` that `generate` would raise for these arguments (the CLI
    checks them before it spends seconds loading a model). Changes nothing."""
    check_engine(engine)
    if jump_forward and engine != "gad":
        raise ConfigurationError(f"`jump_forward` needs gad's own engine (it reads GrammarMatcher.forced_bytes), not {engine!r}")
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ConfigurationError(
            f"`sampler` has to be one of {', '.join(repr(s) for s in SAMPLERS)}, but is {sampler!r}"
        )
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= MAX_SEED:
        raise ConfigurationError(f"`seed` has to be None or an int in [0, 2**63), but is {seed}")
    check_sampling_args(n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigurationError(f"`top_k` has to be None or a strictly positive int, but is {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ConfigurationError(f"`top_p` has to be None or a float in (0, 1], but is {top_p!r}")
    if sampler != "gcd":
        if greedy:
            raise ConfigurationError(f"`greedy` has no meaning for sampler {sampler!r}, which samples; use sampler='gcd'")
        for name, value in (("top_k", top_k), ("top_p", top_p), ("jump_forward", jump_forward or None)):
            if value is not None:
                raise ConfigurationError(
                    f"`{name}` is a GCD option; sampler {sampler!r} targets the model conditioned on the "
                    "grammar, which truncating the model or jumping would change"
                )


def generate(
    model: PreTrainedModel | LanguageModel,
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    prompt: PromptLike | Sequence[PromptLike] | None = None,
    grammar: GrammarLike | None = None,
    *,
    messages: Sequence[Message] | Sequence[Sequence[Message]] | None = None,
    sampler: str = "gcd",
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    seed: int | None = None,
    chat_template: bool | None = None,
    jump_forward: bool = False,
    progress: bool = False,
    engine: str = "gad",
    output_type: Any = None,
) -> list[GenerationResult] | list[list[GenerationResult]]:
    """Generate `n` sequences after `prompt` that follow `grammar`.

    Args:
        model: a transformers causal LM (wrapped in `gad.lm.HuggingFaceLM`, KV cache reused) or
            any `gad.LanguageModel`.
        tokenizer: the model's transformers tokenizer, or a `TokenizerInfo` for toy vocabularies
            (then `prompt` must be token ids).
        prompt: text, token ids (used as they are), or chat messages; or a list of these: one
            batch, with `n` results for each prompt. The prompt is never fed to the grammar.
        grammar: a `Grammar`, a `CompiledGrammar`, Lark grammar text, or the path of a ``.lark``
            file (a ``pathlib.Path``, or a one-line str ending in ``.lark``).
        messages: instead of `prompt`, a conversation for the chat template —
            ``[{"role": "system", "content": …}, {"role": "user", "content": …}]`` — or a list of
            conversations (a batch). Generation continues as the assistant.
        sampler: "gcd" (grammar-constrained decoding) or "asap" (grammar-aligned sampling:
            the `n` sequences share one expected-futures trie, drawn 8 at a time, so later ones
            follow ``P(w | w ∈ L(G))`` more closely; for a trie that persists across calls use
            `gad.ASApSampler` directly), or "smc" (sequential Monte Carlo: one run with `n` AWRS
            particles, the `n` results drawn from its weighted particles, so more particles follow
            ``P(w | w ∈ L(G), |w| ≤ max_new_tokens)`` more closely; a particle without a sentence
            at the limit has weight 0; for the weights, Ẑ and critics use `gad.SMC` directly), or
            any other name in `gad.samplers.SAMPLERS` ("awrs", "cars": exact draws by adaptive
            rejection, "mcmc": Metropolis-Hastings chains with GCD proposals; README "Which
            sampler?"). "gcd" decodes a batch of prompts together; the others run one prompt
            after the other.
        n: how many sequences per prompt; they are decoded as one batch.
        max_new_tokens: sequences without EOS after this many tokens are returned with
            ``complete=False, finish_reason="length"``.
        temperature: ``T > 0``, applied to the model's distribution *before* the grammar: the
            sampler targets the tempered model ``P_T ∝ P^(1/T)`` restricted to the grammar
            (see `gad.samplers.gcd` for why the order matters).
        top_k, top_p: "gcd" only. Applied after the grammar, as transformers' warpers are: each
            token is drawn from ``P_T`` restricted to the allowed tokens, then to the `top_k` most
            likely of them, then to the smallest most-likely set of mass ≥ `top_p` (of the masked,
            renormalised distribution); see `gad.decoding` for why not before.
        greedy: take the most likely allowed token at each step (then `temperature`, `top_k`,
            `top_p` and `seed` play no role and ``logprob_sampler`` is 0).
        seed: sequence i draws from a generator seeded with ``seed + i`` (for every prompt), so
            results do not depend on `n`, on the other sequences or on the other prompts; None
            draws a fresh seed. At most ``2**63 - 1``.
        chat_template: wrap a text prompt in the tokenizer's chat template as a user message
            (None: when the tokenizer has one).
        jump_forward: "gcd" only. Where the grammar forces the next bytes, append them as tokens
            without sampling (see `gad.decoding`: canonical tokenization, the last forced token
            left to the model, jumped tokens scored by the model in ``logprob_model`` and not
            counted in ``logprob_sampler``).
        progress: show a progress bar (stderr) over the decoding steps.
        engine: whose token masks the sampler runs on: "gad" (its own matcher), "xgrammar" or
            "llguidance" (`gad.engines.constraint_factory`; install ``gad[engines]``). Every
            sampler runs on each; the grammar is then read in that engine's language (see the
            adapters' docstrings for where it differs from gad's), and `jump_forward` needs gad.
        output_type: instead of `grammar`, a type whose JSON values to generate — a pydantic
            model, a dataclass, a ``TypedDict``, ``Literal[...]``, an ``enum.Enum``,
            ``list[...]``, ``int``, ``bool``… (its JSON Schema, by pydantic) or a JSON Schema
            dict; each complete result then carries the parsed value in ``.value``.

    Returns:
        For one prompt, its `n` `GenerationResult`s in order; for a list of prompts (or of
        conversations), one such list per prompt.

    Raises:
        ConfigurationError: a bad argument, or a sampler that is not available yet.
        GrammarError: the grammar does not load.
        DeadEndError: the tokenizer cannot spell any continuation the grammar allows, or the
            model gives every allowed token probability 0.
    """
    check_arguments(
        sampler=sampler, n=n, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
        greedy=greedy, top_k=top_k, top_p=top_p, jump_forward=jump_forward, engine=engine,
    )  # fmt: skip
    if output_type is not None:
        if grammar is not None:
            raise ConfigurationError("give `grammar` or `output_type`, not both")
        schema, parse = typed_output(output_type)
        results = generate(
            model, tokenizer, prompt, schema, messages=messages, sampler=sampler, n=n,
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
            seed=seed, chat_template=chat_template, jump_forward=jump_forward, progress=progress, engine=engine,
        )  # fmt: skip
        rows = results if results and isinstance(results[0], list) else [results]
        typed = [[dataclasses.replace(r, value=parse(r.text)) if r.complete else r for r in row]
                 for row in rows]  # type: ignore[union-attr]
        return typed if rows is results else typed[0]
    if grammar is None:
        raise ConfigurationError("`grammar` (or `output_type`) is required")
    lm = as_language_model(model)
    compiled: ConstraintLike
    if engine == "gad":
        compiled = compile_grammar(grammar, tokenizer, lm)
        info = compiled.tokenizer_info
    else:
        compiled = constraint_factory(grammar, tokenizer, engine, model=lm)
        info = tokenizer_info(tokenizer, lm)
    prompts, batch = _prompts(tokenizer, lm, prompt, messages, chat_template)
    if sampler == "gcd" and (batch or top_k is not None or top_p is not None or jump_forward):
        decoder = _decoder(
            lm, tokenizer, compiled, prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
            top_k=top_k, top_p=top_p, greedy=greedy, seed=seed, jump_forward=jump_forward,
        )  # fmt: skip
        with tqdm.tqdm(total=max_new_tokens, desc="generating", unit="tok", disable=not progress, leave=False) as bar:
            while not decoder.done:
                decoder.step()
                bar.update(1)
        results = [[GenerationResult.from_sample(s, info) for s in row] for row in decoder.samples]
        return results if batch else results[0]
    if batch:
        return [
            generate(  # type: ignore[misc]
                lm, tokenizer, ids, compiled if engine == "gad" else grammar, sampler=sampler, n=n,
                max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy, seed=seed,
                progress=progress, engine=engine,
            )  # fmt: skip
            for ids in prompts
        ]
    prompt_ids = prompts[0]

    if sampler == "asap":
        chosen: GCDSampler | ASApSampler | SMC = ASApSampler(lm, compiled, temperature=temperature)
        steps = max_new_tokens * -(-n // chosen.batch_size)
    elif sampler == "smc":
        chosen = SMC(lm, compiled, temperature=temperature)
        steps = max_new_tokens
    elif sampler != "gcd":  # awrs, cars, mcmc: straight from the registry
        chosen = _REGISTRY[sampler].for_generate(lm, compiled, temperature=temperature, greedy=greedy)
        steps = chosen.progress_total(n, max_new_tokens)
    else:
        chosen = GCDSampler(lm, compiled, temperature=temperature, greedy=greedy)
        steps = max_new_tokens
    bar = tqdm.tqdm(total=steps, desc="generating", unit="tok", disable=not progress, leave=False)
    try:
        samples = chosen.sample(prompt_ids, n, max_new_tokens=max_new_tokens, seed=seed, progress=bar.update)
    finally:
        bar.close()
    return [GenerationResult.from_sample(s, info) for s in samples]


def _decoder(
    lm: LanguageModel,
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    compiled: ConstraintLike,
    prompts: list[list[int]],
    *,
    jump_forward: bool,
    **options: Any,
) -> Decoder:
    jump = None
    if jump_forward:
        encode = None
        if not isinstance(tokenizer, TokenizerInfo) and hasattr(tokenizer, "encode"):
            encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
        jump = ForcedTokenizer(compiled.tokenizer_info, encode)  # type: ignore[union-attr]  # gad's engine only
    return Decoder(lm, compiled, prompts, jump_forward=jump, **options)


# -- streaming ------------------------------------------------------------------------------------


class TextStream:
    """The text of one GCD sequence as it is generated: iterate for the deltas (str; a character
    split across tokens comes out once complete), then read `result`.

    ``"".join(stream) == stream.result.text``, and the result is the one `generate` returns for
    ``n=1`` with the same arguments and seed. Iterating again yields nothing.
    """

    def __init__(self, decoder: Decoder, info: TokenizerInfo) -> None:
        self._decoder = decoder
        self._info = info
        self._steps: Iterator[str] | None = None
        #: The `GenerationResult`, once the iteration has ended (None before).
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        if self._steps is None:
            self._steps = self._run()
        return self._steps

    def _run(self) -> Iterator[str]:
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        decoder = self._decoder
        while not decoder.done:
            tokens = decoder.step().get(0, [])
            text = utf8.decode(self._info.decode_bytes(tokens))
            if text:
                yield text
        tail = utf8.decode(b"", final=True)
        if tail:
            yield tail
        self.result = GenerationResult.from_sample(decoder.samples[0][0], self._info)


def stream(
    model: PreTrainedModel | LanguageModel,
    tokenizer: PreTrainedTokenizerBase | TokenizerInfo,
    prompt: PromptLike | None = None,
    grammar: GrammarLike | None = None,
    *,
    messages: Sequence[Message] | None = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    seed: int | None = None,
    chat_template: bool | None = None,
    jump_forward: bool = False,
) -> TextStream:
    """One GCD sequence after `prompt` (or `messages`), streamed: a `TextStream` yielding the text
    as it is generated. The arguments are those of `generate` (one prompt, ``n=1``, GCD).

        for delta in gad.stream(model, tokenizer, "Name a colour.", 'start: "red" | "blue"'):
            print(delta, end="", flush=True)
    """
    check_arguments(
        n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, greedy=greedy,
        top_k=top_k, top_p=top_p, jump_forward=jump_forward,
    )  # fmt: skip
    if grammar is None:
        raise ConfigurationError("`grammar` is required")
    lm = as_language_model(model)
    compiled = compile_grammar(grammar, tokenizer, lm)
    prompts, batch = _prompts(tokenizer, lm, prompt, messages, chat_template)
    if batch:
        raise ConfigurationError("`stream` takes one prompt; use `generate` for a batch")
    decoder = _decoder(
        lm, tokenizer, compiled, prompts, n=1, max_new_tokens=max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, greedy=greedy, seed=seed, jump_forward=jump_forward,
    )  # fmt: skip
    return TextStream(decoder, compiled.tokenizer_info)
