"""Token strings are normalised so the same piece matches across tokenizer families."""

from __future__ import annotations

import json
import struct

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pedigree.errors import CheckpointError
from pedigree.indexer.probes import probe_keys, select_probes
from pedigree.indexer.sources import StateDictSource
from pedigree.indexer.vocabulary import canonical_key, read_vocabulary

TEXT = [
    "def parse(self, value):\n    return value + 1  # the result\n",
    "the quick brown fox jumps over the lazy dog",
] * 20


@pytest.mark.parametrize(
    ("token", "style", "key"),
    [
        ("Ġdef", "byte_level", "␣def"),
        ("def", "byte_level", "def"),
        ("Ċ", "byte_level", "\n"),
        ("âĢ", "byte_level", None),  # a partial UTF-8 sequence has no textual form
        ("▁def", "metaspace", "␣def"),
        ("ing", "metaspace", "ing"),
        ("<0x41>", "metaspace", "A"),
        ("<0x0A>", "metaspace", None),
        ("##ing", "wordpiece", "ing"),
        ("def", "wordpiece", "␣def"),
    ],
)
def test_canonical_key(token, style, key):
    assert canonical_key(token, style) == key


def _trained(model, pre, decoder, trainer) -> str:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre
    tok.decoder = decoder
    tok.train_from_iterator(TEXT, trainer)
    return tok.to_str()


def test_three_tokenizer_families_agree_on_shared_pieces():
    byte_level = _trained(
        models.BPE(),
        pre_tokenizers.ByteLevel(),
        decoders.ByteLevel(),
        trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    metaspace = _trained(
        models.BPE(byte_fallback=True),
        pre_tokenizers.Metaspace(),
        decoders.Metaspace(),
        trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>"]),
    )
    wordpiece = _trained(
        models.WordPiece(unk_token="[UNK]"),
        pre_tokenizers.BertPreTokenizer(),
        decoders.WordPiece(),
        trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]", "[CLS]"]),
    )
    vocabs = [
        read_vocabulary(StateDictSource({}, {"tokenizer.json": spec})) for spec in (byte_level, metaspace, wordpiece)
    ]
    shared = set(vocabs[0].ids_by_key) & set(vocabs[1].ids_by_key) & set(vocabs[2].ids_by_key)
    assert {"␣the", "␣value", "e"} <= shared
    assert "<s>" not in vocabs[1].ids_by_key and "[CLS]" not in vocabs[2].ids_by_key  # special tokens never probe
    selection = select_probes(vocabs[1], vocabs[1].size)
    keys = probe_keys()
    assert all(vocabs[1].lookup(keys[p]) == t for p, t in zip(selection.positions, selection.token_ids))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + (_varint(len(payload)) + payload if wire == 2 else payload)


def sentencepiece_model(pieces: list[tuple[str, int]]) -> bytes:
    """A ModelProto with pieces (text, type) in protobuf wire format."""
    out = b""
    for text, kind in pieces:
        body = _field(1, 2, text.encode()) + _field(2, 5, struct.pack("<f", 0.0)) + _field(3, 0, _varint(kind))
        out += _field(1, 2, body)
    return out + _field(2, 2, b"\x08\x01")  # an unrelated trainer_spec field is skipped


def test_sentencepiece_protobuf_is_parsed_without_executing_anything():
    raw = sentencepiece_model([("<unk>", 2), ("<s>", 3), ("<0x41>", 6), ("▁the", 1), ("A", 1)])
    vocab = read_vocabulary(StateDictSource({}, {"tokenizer.model": raw}))
    assert vocab.source == "tokenizer.model" and vocab.size == 5
    assert vocab.lookup("␣the") == 3 and vocab.lookup("A") == 4  # a regular piece beats the byte piece
    assert vocab.lookup("<s>") is None


@pytest.mark.parametrize("raw", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x0b"])
def test_malformed_sentencepiece_is_a_checkpoint_error(raw):
    with pytest.raises(CheckpointError):
        read_vocabulary(StateDictSource({}, {"tokenizer.model": raw}))


def test_bad_tokenizer_json_is_a_checkpoint_error():
    with pytest.raises(CheckpointError):
        read_vocabulary(StateDictSource({}, {"tokenizer.json": "{not json"}))
    with pytest.raises(CheckpointError):
        read_vocabulary(StateDictSource({}, {"tokenizer.json": json.dumps({"model": 3})}))


def test_vocab_txt_and_vocab_json_fallbacks():
    wp = read_vocabulary(StateDictSource({}, {"vocab.txt": "[PAD]\nthe\n##ing\n"}))
    assert wp.lookup("␣the") == 1 and wp.lookup("ing") == 2 and wp.lookup("[PAD]") is None
    bl = read_vocabulary(StateDictSource({}, {"vocab.json": json.dumps({"Ġthe": 0, "ing": 1})}))
    assert bl.lookup("␣the") == 0 and bl.lookup("ing") == 1


def _agrees_with_the_full_map(vocab) -> None:
    for key, token_id in vocab.ids_by_key.items():
        assert vocab.lookup(key) == token_id, key
    for key in probe_keys():
        assert vocab.lookup(key) == vocab.ids_by_key.get(key), key


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "gpt_neox", "bert"])
def test_lookup_by_spelling_equals_the_full_canonical_map_on_the_zoo_tokenizers(small_zoo, family):
    """lookup() spells a key every way the style allows instead of canonicalising every token:
    it must find exactly what the full key -> id map finds, for every key of every family."""
    folder = next(
        p
        for p in sorted(small_zoo.glob("*/*"))
        if json.loads((p / "config.json").read_text())["model_type"] == family
        and ((p / "tokenizer.json").exists() or (p / "vocab.txt").exists())
    )
    files = {
        name: (folder / name).read_text()
        for name in ("tokenizer.json", "vocab.json", "vocab.txt")
        if (folder / name).exists()
    }
    _agrees_with_the_full_map(read_vocabulary(StateDictSource({}, files)))


def test_lookup_by_spelling_covers_the_odd_spellings():
    """Literal ␣ in a token, a real space in a SentencePiece piece, lower-case byte pieces,
    doubled boundaries, WordPiece pieces that look like continuations."""
    pieces = [
        ("<unk>", 2),
        ("▁the", 1),
        (" the", 1),
        ("␣the", 1),
        ("<0x21>", 6),
        ("<0x2a>", 6),
        ("!", 1),
        ("▁▁x", 1),
        ("▁ x", 1),
        ("▁", 1),
        ("<0x0A>", 6),
        ("ab▁cd", 1),
    ]
    _agrees_with_the_full_map(read_vocabulary(StateDictSource({}, {"tokenizer.model": sentencepiece_model(pieces)})))
    wp = read_vocabulary(StateDictSource({}, {"vocab.txt": "[PAD]\nthe\n##the\n####x\n##\n␣the\n##␣the\n"}))
    _agrees_with_the_full_map(wp)
    bl = read_vocabulary(
        StateDictSource({}, {"vocab.json": json.dumps({"Ġthe": 0, "the": 1, "âĢ": 2, "ĠĠ": 3, "âĲ£the": 4})})
    )
    _agrees_with_the_full_map(bl)


def test_vocabulary_samples_of_a_pruned_and_a_full_vocabulary_are_nested():
    """The evidence store keeps each model's hashed vocabulary sample; a pruned vocabulary's sample
    (higher rate) holds every shared piece the full one sampled, so the two compare row for row."""
    from pedigree.indexer.vocabulary import Vocabulary, piece_rank, vocabulary_sample

    full = {f"piece{i}": i for i in range(20000)}
    pruned = {p: k for k, p in enumerate(p for p in full if int(p[5:]) % 7 == 0)}
    big = Vocabulary(full, "plain", len(full), "", "test")
    small = Vocabulary(pruned, "plain", len(pruned), "", "test")
    sample_big = dict(vocabulary_sample(big, len(full), 500))
    sample_small = dict(vocabulary_sample(small, len(pruned), 500))
    assert 350 < len(sample_big) < 650 and 350 < len(sample_small) < 650
    shared_in_big = {p for p in sample_big if p in pruned}
    assert shared_in_big and shared_in_big <= set(sample_small)
    assert all(0 <= piece_rank(p) < 1 for p in sample_big)
    # ids beyond the embedding's rows are never sampled
    assert max(dict(vocabulary_sample(big, 1000, 500)).values()) < 1000
