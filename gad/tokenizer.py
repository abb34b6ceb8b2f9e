"""`TokenizerInfo`: every token id of a tokenizer mapped to the exact bytes it stands for.

The grammar engine consumes bytes, not characters (design notes, "Tokens are bytes"). A token's
string in the vocabulary is an *encoding* of its bytes, and the encoding depends on the tokenizer:

- **byte-level BPE** (GPT-2, Llama-3, Qwen, SmolLM2): each byte is written as one printable
  character of GPT-2's `bytes_to_unicode` table (``Ġ`` = space, ``Ċ`` = newline), so a token may
  hold half of a UTF-8 character (``ä¸`` is the first two bytes of ``中``);
- **SentencePiece** (Llama-2, Mistral, T5): ``▁`` stands for a space, and with *byte fallback*
  the tokens ``<0x00>`` … ``<0xFF>`` stand for single raw bytes;
- anything else is recovered by decoding each token after a fixed anchor token (see
  `_bytes_by_decoding`), which keeps the leading spaces that a lone ``decode([id])`` drops.

The kind is read from the tokenizer itself (the fast tokenizer's decoder / pre-tokenizer, a slow
tokenizer's SentencePiece model, or the vocabulary contents), never from a model name. Special and
control tokens (``<s>``, ``</s>``, ``<unk>``, ``<|endoftext|>``, added tokens marked special) are
never grammar text: their bytes are ``b""`` and they are listed in `TokenizerInfo.special_ids`.

Invariant: a token id is special if and only if its bytes are ``b""``. A token that decodes to
nothing could never advance a grammar, so it is treated as special (never allowed).
"""

from __future__ import annotations

import json
import operator
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gad.errors import ConfigurationError, TokenError

if TYPE_CHECKING:  # transformers is only needed by callers that already hold a tokenizer
    from transformers import PreTrainedTokenizerBase

__all__ = ["TokenizerInfo"]

#: The kinds of vocabulary `TokenizerInfo.kind` can name.
KINDS = ("byte_level", "sentencepiece", "decoded", "vocab")

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>\Z")
_SPACE_MARK = "\u2581"  # "▁", SentencePiece's space


def _gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from byte value to the printable character that stands for it."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


_BYTE_TO_CHAR = _gpt2_bytes_to_unicode()
# str.translate table from GPT-2's characters back to latin-1 characters (one per byte); the
# latin-1 characters that are *not* in GPT-2's alphabet (space, controls, soft hyphen …) map to
# U+FFFF so that the final `.encode("latin-1")` fails on them instead of passing them through.
_CHAR_TO_LATIN1: dict[int, str] = {c: "\uffff" for c in range(256)}
_CHAR_TO_LATIN1.update({ord(ch): chr(b) for b, ch in _BYTE_TO_CHAR.items()})


def _byte_level_bytes(piece: str) -> bytes | None:
    """Bytes of a byte-level BPE piece (``"Ġhello"`` → ``b" hello"``), or None if it is not one."""
    try:
        return piece.translate(_CHAR_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:
        return None


def _sentencepiece_bytes(piece: str, space: str, byte_fallback: bool) -> bytes:
    """Bytes of a SentencePiece piece (``"▁hello"`` → ``b" hello"``, ``"<0x0A>"`` → ``b"\\n"``)."""
    if byte_fallback:
        match = _BYTE_TOKEN.match(piece)
        if match is not None:
            return bytes((int(match.group(1), 16),))
    return piece.replace(space, " ").encode("utf-8")


def _check_id(value: Any, size: int, what: str, error: type[Exception]) -> int:
    """`value` as an int in ``[0, size)``, or `error` naming `what`."""
    if isinstance(value, bool):
        raise error(f"{what} must be an int, but is {value!r}")
    try:
        tid = operator.index(value)
    except TypeError:
        raise error(f"{what} must be an int, but is {type(value).__name__} {value!r}") from None
    if not 0 <= tid < size:
        raise error(f"{what} is {tid}, outside the vocabulary [0, {size})")
    return tid


def _id_items(value: Any, what: str) -> list[Any]:
    """The items of a collection of ids, or ``[value]`` for one id (an int, numpy or torch scalar)."""
    if isinstance(value, (str, bytes, bytearray)):
        raise ConfigurationError(f"{what} must be an int or a collection of ints, but is {value!r}")
    if isinstance(value, int):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]  # a 0-d array or tensor: validated as one id


def _as_id_tuple(value: Any, size: int, what: str) -> tuple[int, ...]:
    """One id or a collection of ids, validated and deduplicated (first occurrence kept)."""
    checked = [_check_id(v, size, f"{what} entry", ConfigurationError) for v in _id_items(value, what)]
    return tuple(dict.fromkeys(checked))


class TokenizerInfo:
    """Token id → exact bytes for one tokenizer, plus the vocabulary sorted for a trie walk.

    Build it with `from_huggingface` or `from_vocab`. Attributes (read-only; do not mutate the
    lists, the compiler and matchers share them):

    - ``vocab_size`` (int): length of the masks, i.e. the model's logits size ``V``; may exceed
      the tokenizer's length, the extra ids are special.
    - ``token_bytes`` (``list[bytes]``, length ``V``): the bytes of each id; ``b""`` exactly for
      special ids.
    - ``special_ids`` (``frozenset[int]``): ids that are never grammar text (control tokens,
      added tokens marked special, EOS, padding ids ≥ the tokenizer's length).
    - ``eos_token_ids`` (``tuple[int, ...]``): the ids that end a sequence (all special).
    - ``kind`` (str): how the bytes were read: ``"byte_level"``, ``"sentencepiece"``,
      ``"decoded"`` (per-token decoding fallback) or ``"vocab"`` (given as bytes).
    - ``sorted_ids`` (``list[int]``): the non-special ids sorted by their bytes, ties by id.
    - ``sorted_bytes`` (``list[bytes]``): ``token_bytes[sorted_ids[i]]``.
    - ``sorted_lcp`` (``list[int]``): ``sorted_lcp[i]`` = length of the common prefix of
      ``sorted_bytes[i]`` and ``sorted_bytes[i - 1]``; 0 for ``i = 0``.
    - ``subtree_end`` (``list[int]``): the first ``j > i`` whose ``sorted_bytes[j]`` does not
      start with ``sorted_bytes[i]`` (or ``len(sorted_ids)``); the tokens that extend token
      ``sorted_ids[i]`` — its prefix-trie subtree — are exactly the entries ``[i, j)``.
    """

    __slots__ = (
        "vocab_size",
        "token_bytes",
        "special_ids",
        "eos_token_ids",
        "kind",
        "sorted_ids",
        "sorted_bytes",
        "sorted_lcp",
        "subtree_end",
        "_frozen",
        "__weakref__",
    )

    vocab_size: int
    token_bytes: list[bytes]
    special_ids: frozenset[int]
    eos_token_ids: tuple[int, ...]
    kind: str
    sorted_ids: list[int]
    sorted_bytes: list[bytes]
    sorted_lcp: list[int]
    subtree_end: list[int]

    def __init__(
        self,
        token_bytes: Sequence[bytes],
        *,
        eos_token_ids: int | Sequence[int] = (),
        special_ids: Iterable[int] = (),
        kind: str = "vocab",
    ) -> None:
        """Validate and index a complete table; `from_vocab` / `from_huggingface` are friendlier.

        Args:
            token_bytes: the bytes of every id ``0 … V-1``; ``V = len(token_bytes)``.
            eos_token_ids: the id(s) that end a sequence; they become special.
            special_ids: further ids that are never grammar text; their bytes are recorded
                as ``b""`` whatever `token_bytes` holds.
            kind: one of `KINDS`, for `__repr__` and diagnostics.

        Raises:
            ConfigurationError: an entry is not bytes, an id is out of range, a non-special
                token is empty, or the vocabulary is empty.
        """
        if isinstance(token_bytes, (bytes, str)) or not isinstance(token_bytes, Sequence):
            raise ConfigurationError(
                f"token_bytes must be a sequence of bytes objects, but is {type(token_bytes).__name__}"
            )
        size = len(token_bytes)
        if size == 0:
            raise ConfigurationError("the vocabulary is empty: give at least one token")
        if kind not in KINDS:
            raise ConfigurationError(f"kind must be one of {KINDS}, but is {kind!r}")
        eos = _as_id_tuple(eos_token_ids, size, "eos_token_ids")
        special = set(_as_id_tuple(special_ids, size, "special_ids"))
        special.update(eos)

        table: list[bytes] = []
        for tid, tok in enumerate(token_bytes):
            if tid in special:
                table.append(b"")
                continue
            if type(tok) is not bytes:
                if isinstance(tok, (bytearray, memoryview)):
                    tok = bytes(tok)
                elif isinstance(tok, bytes):  # a subclass: store the plain value
                    tok = bytes(tok)
                else:
                    hint = f" (encode it, e.g. {tok!r}.encode())" if isinstance(tok, str) else ""
                    raise ConfigurationError(
                        f"token {tid} must be bytes, but is {type(tok).__name__} {tok!r}{hint}"
                    )
            if not tok:
                raise ConfigurationError(
                    f"token {tid} is b'' but not special: an empty token never advances a grammar; "
                    "list it in special_ids"
                )
            table.append(tok)

        sorted_ids = sorted((tid for tid in range(size) if tid not in special), key=table.__getitem__)
        sorted_bytes = [table[tid] for tid in sorted_ids]
        sorted_lcp, subtree_end = _trie_ranges(sorted_bytes)

        setattr_ = object.__setattr__
        setattr_(self, "vocab_size", size)
        setattr_(self, "token_bytes", table)
        setattr_(self, "special_ids", frozenset(special))
        setattr_(self, "eos_token_ids", eos)
        setattr_(self, "kind", kind)
        setattr_(self, "sorted_ids", sorted_ids)
        setattr_(self, "sorted_bytes", sorted_bytes)
        setattr_(self, "sorted_lcp", sorted_lcp)
        setattr_(self, "subtree_end", subtree_end)
        setattr_(self, "_frozen", True)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_vocab(
        cls,
        tokens: Sequence[bytes],
        eos_token_id: int | Sequence[int],
        vocab_size: int | None = None,
        special_ids: Iterable[int] = (),
    ) -> TokenizerInfo:
        """A toy vocabulary: ``tokens[i]`` is the bytes of id ``i``.

        Args:
            tokens: the bytes of ids ``0 … len(tokens)-1``. The entries of the EOS and special
                ids may hold anything bytes-like (e.g. ``b"</s>"``); they are recorded as ``b""``.
            eos_token_id: the id, or ids, that end a sequence; they are special.
            vocab_size: the mask length, at least ``len(tokens)``; ids ``≥ len(tokens)`` are
                special (padding of the logits). Defaults to ``len(tokens)``.
            special_ids: further ids that are never grammar text.

        Raises:
            ConfigurationError: `tokens` holds something other than bytes, an id is out of
                range, a non-special token is ``b""``, or `vocab_size` is too small.

        >>> info = TokenizerInfo.from_vocab([b"a", b"ab", b"</s>"], eos_token_id=2)
        >>> info.token_bytes, info.sorted_bytes, info.subtree_end
        ([b'a', b'ab', b''], [b'a', b'ab'], [2, 2])
        """
        if isinstance(tokens, (bytes, str)) or not isinstance(tokens, Sequence):
            raise ConfigurationError(
                f"tokens must be a sequence of bytes objects, but is {type(tokens).__name__}"
            )
        table = list(tokens)
        n = len(table)
        if vocab_size is not None:
            size = _check_vocab_size(vocab_size)
            if size < n:
                raise ConfigurationError(
                    f"vocab_size={size} is smaller than the {n} tokens given"
                )
            table.extend([b""] * (size - n))
        specials = _id_items(special_ids, "special_ids") + list(range(n, len(table)))
        return cls(table, eos_token_ids=eos_token_id, special_ids=specials, kind="vocab")

    @classmethod
    def from_huggingface(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        vocab_size: int | None = None,
        *,
        eos_token_ids: int | Sequence[int] | None = None,
    ) -> TokenizerInfo:
        """Read a Hugging Face tokenizer (fast or slow) once and record every token's bytes.

        Args:
            tokenizer: a `transformers` tokenizer.
            vocab_size: the model's logits size (``model.config.vocab_size``), at least the
                tokenizer's highest id + 1; ids the tokenizer does not have are special.
                Defaults to the tokenizer's size.
            eos_token_ids: overrides ``tokenizer.eos_token_id`` (e.g. with the ids of a
                generation config that stops on several tokens).

        Raises:
            ConfigurationError: `vocab_size` is smaller than the tokenizer, or an EOS id is
                out of range.

        Tokens whose bytes cannot be determined are made special (never allowed) with a
        `UserWarning` naming them, rather than guessed.
        """
        strings = _vocab_strings(tokenizer)
        n_tok = max(len(strings), _safe_len(tokenizer))  # ids 0 … n_tok-1 belong to the tokenizer
        if vocab_size is None:
            size = n_tok
        else:
            size = _check_vocab_size(vocab_size)
            if size < n_tok:
                raise ConfigurationError(
                    f"vocab_size={size} is smaller than the tokenizer, whose highest token id is "
                    f"{n_tok - 1} ({n_tok} tokens)"
                )
        reader = _ByteReader.detect(tokenizer, strings)
        table, special, undetermined = reader.read(tokenizer, strings, n_tok)
        if undetermined:
            shown = ", ".join(str(i) for i in undetermined[:10])
            more = f" and {len(undetermined) - 10} more" if len(undetermined) > 10 else ""
            warnings.warn(
                f"the bytes of {len(undetermined)} token(s) of this {reader.kind} tokenizer could "
                f"not be determined; they are treated as special (never allowed): ids {shown}{more}",
                UserWarning,
                stacklevel=2,
            )
        table.extend([b""] * (size - n_tok))
        special.update(range(n_tok, size))
        if eos_token_ids is None:
            eos_id = getattr(tokenizer, "eos_token_id", None)
            eos_token_ids = () if eos_id is None else eos_id
        return cls(table, eos_token_ids=eos_token_ids, special_ids=special, kind=reader.kind)

    # -- use --------------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that the token ids `ids` stand for, concatenated; special ids add nothing.

        Accepts any iterable of ints, including a 1-D numpy array or torch tensor.

        Raises:
            TokenError: an id is not an int in ``[0, vocab_size)``.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        table = self.token_bytes
        size = self.vocab_size
        out = []
        for pos, tid in enumerate(ids):
            if type(tid) is not int or not 0 <= tid < size:
                tid = _check_id(tid, size, f"token id at position {pos}", TokenError)
            out.append(table[tid])
        return b"".join(out)

    def __repr__(self) -> str:
        return (
            f"TokenizerInfo(kind={self.kind!r}, vocab_size={self.vocab_size}, "
            f"special={len(self.special_ids)}, eos_token_ids={self.eos_token_ids})"
        )

    # -- immutability (and pickling despite it) ---------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"TokenizerInfo is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"TokenizerInfo is read-only (cannot delete {name!r})")

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "__weakref__"}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)


def _check_vocab_size(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not hasattr(vocab_size, "__index__"):
        raise ConfigurationError(f"vocab_size must be an int, but is {vocab_size!r}")
    size = operator.index(vocab_size)
    if size <= 0:
        raise ConfigurationError(f"vocab_size must be positive, but is {size}")
    return size


def _trie_ranges(sorted_bytes: Sequence[bytes]) -> tuple[list[int], list[int]]:
    """`sorted_lcp` and `subtree_end` of a sorted list of byte strings, in O(total length).

    `subtree_end` uses a stack that always holds a chain of entries, each a prefix of the next:
    when entry ``k`` arrives, every entry on top that ``k`` does not extend has its subtree end
    at ``k`` (sorted order keeps each subtree contiguous).
    """
    m = len(sorted_bytes)
    lcp = [0] * m
    end = [m] * m
    stack: list[int] = []
    prev = b""
    for k, cur in enumerate(sorted_bytes):
        n = min(len(prev), len(cur))
        j = 0
        while j < n and prev[j] == cur[j]:
            j += 1
        lcp[k] = j
        prev = cur
        while stack and not cur.startswith(sorted_bytes[stack[-1]]):
            end[stack.pop()] = k
        stack.append(k)
    return lcp, end


# -- reading a Hugging Face tokenizer -----------------------------------------------------------


def _safe_len(tokenizer: Any) -> int:
    try:
        return len(tokenizer)
    except TypeError:
        return 0


def _vocab_strings(tokenizer: Any) -> list[str | None]:
    """``strings[id]`` = the vocabulary string of ``id`` (None for ids without one)."""
    vocab = tokenizer.get_vocab()
    if not vocab:
        raise ConfigurationError(f"the tokenizer {type(tokenizer).__name__} has an empty vocabulary")
    strings: list[str | None] = [None] * (max(vocab.values()) + 1)
    for piece, tid in vocab.items():
        strings[tid] = piece
    return strings


def _component(obj: Any) -> dict[str, Any] | None:
    """The JSON description of a `tokenizers` component (decoder, pre-tokenizer …), if any."""
    if obj is None:
        return None
    try:
        state = obj.__getstate__()
        return json.loads(state) if isinstance(state, (bytes, str)) else None
    except (AttributeError, TypeError, ValueError):
        return None


def _nodes(spec: Any) -> Iterator[dict[str, Any]]:
    """Every typed node of a `tokenizers` component, `Sequence`s flattened."""
    if isinstance(spec, dict):
        if "type" in spec:
            yield spec
        for key in ("decoders", "pretokenizers", "normalizers", "processors"):
            for child in spec.get(key) or ():
                yield from _nodes(child)


class _ByteReader:
    """Turns vocabulary strings into bytes for one kind of tokenizer."""

    def __init__(self, kind: str, *, space: str = _SPACE_MARK, byte_fallback: bool = False) -> None:
        self.kind = kind
        self.space = space
        self.byte_fallback = byte_fallback

    @classmethod
    def detect(cls, tokenizer: Any, strings: Sequence[str | None]) -> _ByteReader:
        """Read the kind from the fast tokenizer's pipeline, a slow one's SentencePiece model,
        or, failing both, the vocabulary contents."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        byte_fallback = False
        if backend is not None:
            decoder = list(_nodes(_component(getattr(backend, "decoder", None))))
            pre = list(_nodes(_component(getattr(backend, "pre_tokenizer", None))))
            types = {node["type"] for node in decoder}
            byte_fallback = bool(getattr(getattr(backend, "model", None), "byte_fallback", False))
            byte_fallback = byte_fallback or "ByteFallback" in types
            if "ByteLevel" in types or (not decoder and any(n["type"] == "ByteLevel" for n in pre)):
                return cls("byte_level")
            for node in decoder:
                if node["type"] == "Metaspace":
                    return cls("sentencepiece", space=node.get("replacement", _SPACE_MARK),
                               byte_fallback=byte_fallback)
                pattern = node.get("pattern")
                if node["type"] == "Replace" and node.get("content") == " " and isinstance(pattern, dict):
                    mark = pattern.get("String")
                    if isinstance(mark, str) and mark:
                        return cls("sentencepiece", space=mark, byte_fallback=byte_fallback)
            if decoder:  # a decoder we do not model (WordPiece, CTC …): decode token by token
                return cls("decoded")
        sp_model = getattr(tokenizer, "sp_model", None)
        if sp_model is not None and hasattr(sp_model, "IsByte"):
            return cls("sentencepiece", byte_fallback=True)
        return cls._guess_from_vocab(strings, byte_fallback)

    @classmethod
    def _guess_from_vocab(cls, strings: Sequence[str | None], byte_fallback: bool) -> _ByteReader:
        """No decoder to read: ``▁``-words mean SentencePiece, an all-GPT-2-alphabet vocabulary
        with ``Ġ`` / ``Ċ`` means byte-level BPE, anything else is decoded token by token."""
        pieces = [s for s in strings if s]
        if not pieces:
            return cls("decoded")
        if sum(s.startswith(_SPACE_MARK) for s in pieces) >= 0.05 * len(pieces):
            byte_tokens = sum(_BYTE_TOKEN.match(s) is not None for s in pieces)
            byte_fallback = byte_fallback or byte_tokens >= 256
            return cls("sentencepiece", byte_fallback=byte_fallback)
        byte_level = sum(_byte_level_bytes(s) is not None for s in pieces)
        marks = _BYTE_TO_CHAR[ord(" ")] + _BYTE_TO_CHAR[ord("\n")]
        if byte_level >= 0.99 * len(pieces) and any(c in s for s in pieces for c in marks):
            return cls("byte_level")
        return cls("decoded")

    def read(
        self, tokenizer: Any, strings: Sequence[str | None], n: int
    ) -> tuple[list[bytes], set[int], list[int]]:
        """``(token_bytes, special_ids, undetermined_ids)`` for ids ``0 … n-1``."""
        table: list[bytes | None] = [None] * n
        special: set[int] = set()
        sp_model = getattr(tokenizer, "sp_model", None) if self.kind == "sentencepiece" else None
        if sp_model is not None and not hasattr(sp_model, "IsByte"):
            sp_model = None
        base = sp_model.get_piece_size() if sp_model is not None else 0

        if sp_model is not None:  # slow SentencePiece: the model says which pieces are what
            for tid in range(min(base, n)):
                if sp_model.IsControl(tid) or sp_model.IsUnknown(tid) or sp_model.IsUnused(tid):
                    special.add(tid)
                elif sp_model.IsByte(tid):
                    table[tid] = _sentencepiece_bytes(sp_model.IdToPiece(tid), self.space, True)
                else:
                    table[tid] = sp_model.IdToPiece(tid).replace(self.space, " ").encode("utf-8")
        if self.kind == "byte_level":
            for tid in range(base, n):
                piece = strings[tid] if tid < len(strings) else None
                if piece is not None:
                    table[tid] = _byte_level_bytes(piece)
        elif self.kind == "sentencepiece":
            space, fallback = self.space, self.byte_fallback
            for tid in range(base, n):
                piece = strings[tid] if tid < len(strings) else None
                if piece is not None:
                    table[tid] = _sentencepiece_bytes(piece, space, fallback)

        # Added tokens: special ones are control tokens; the others stand for their literal text
        # (that is what the tokenizer matches in the input), unless they are a base-vocabulary
        # token re-registered under the same string.
        model_vocab = _model_vocab(tokenizer)
        for tid, added in _added_tokens(tokenizer).items():
            if not 0 <= tid < n:
                continue
            if getattr(added, "special", False):
                special.add(tid)
                continue
            content = str(getattr(added, "content", added))
            if model_vocab.get(content) == tid and table[tid] is not None:
                continue
            if self.kind == "sentencepiece" and getattr(added, "normalized", False):
                content = content.replace(self.space, " ")
            table[tid] = content.encode("utf-8")
        special.update(_declared_special_ids(tokenizer, n))

        if self.kind == "decoded":
            todo = [tid for tid in range(n) if table[tid] is None and tid not in special]
            for tid, value in _bytes_by_decoding(tokenizer, todo, special).items():
                table[tid] = value

        undetermined = [tid for tid in range(n) if table[tid] is None and tid not in special]
        empty = [tid for tid in range(n) if table[tid] == b"" and tid not in special]
        special.update(undetermined)
        special.update(empty)  # a token of no bytes is never grammar text
        return [b"" if tid in special else table[tid] for tid in range(n)], special, undetermined


def _added_tokens(tokenizer: Any) -> dict[int, Any]:
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if isinstance(decoder, Mapping):
        return dict(decoder)
    return {}


def _model_vocab(tokenizer: Any) -> Mapping[str, int]:
    """The underlying model's own vocabulary (without added tokens), where it can be told apart."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        try:
            return backend.get_vocab(with_added_tokens=False)
        except (AttributeError, TypeError):
            pass
    return {}


def _declared_special_ids(tokenizer: Any, n: int) -> set[int]:
    """Ids the tokenizer declares as control tokens: `all_special_ids`, the unk id, and the
    tokens its post-processor inserts."""
    ids: set[int] = set()
    for tid in getattr(tokenizer, "all_special_ids", None) or ():
        if isinstance(tid, int):
            ids.add(tid)
    unk = getattr(tokenizer, "unk_token_id", None)
    if isinstance(unk, int):
        ids.add(unk)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        for node in _nodes(_component(getattr(backend, "post_processor", None))):
            specials = node.get("special_tokens")
            if isinstance(specials, dict):
                for entry in specials.values():
                    ids.update(i for i in entry.get("ids", ()) if isinstance(i, int))
        unk_piece = getattr(getattr(backend, "model", None), "unk_token", None)
        if isinstance(unk_piece, str):
            unk_id = backend.token_to_id(unk_piece)
            if unk_id is not None:
                ids.add(unk_id)
    return {tid for tid in ids if 0 <= tid < n}


def _bytes_by_decoding(tokenizer: Any, ids: Sequence[int], special: set[int]) -> dict[int, bytes]:
    """Fallback for tokenizers of unknown kind: the text each token adds after an anchor token.

    ``decode([anchor, t])`` minus ``decode([anchor])`` keeps the space a token adds in front of
    itself (``decode([t])`` alone often strips it, and a WordPiece ``##ab`` then differs from
    ``ab``). Tokens whose text holds U+FFFD (part of a UTF-8 character: the decoder hides the
    bytes) are left out, i.e. undetermined.
    """
    if not ids:
        return {}
    kwargs = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    anchor, prefix = None, ""
    for candidate in ("a", "the", "x", "0"):
        tid = tokenizer.convert_tokens_to_ids(candidate)
        if isinstance(tid, int) and tid not in special and tid != getattr(tokenizer, "unk_token_id", None):
            prefix = tokenizer.decode([tid], **kwargs)
            if prefix:
                anchor = tid
                break
    out: dict[int, bytes] = {}
    if anchor is None:
        texts = tokenizer.batch_decode([[tid] for tid in ids], **kwargs)
        prefix = ""
    else:
        texts = tokenizer.batch_decode([[anchor, tid] for tid in ids], **kwargs)
    for tid, text in zip(ids, texts):
        if text.startswith(prefix) and "\ufffd" not in text:
            out[tid] = text[len(prefix):].encode("utf-8")
    return out
