"""Read a checkpoint's vocabulary and normalise token strings so tokens match across tokenizers.

Token-space fingerprints use the rows of the input embedding for a fixed list of *probe* token
strings.  Different tokenizers spell the same piece differently: GPT-2's byte-level BPE writes a
leading space as ``Ġ`` (and every byte through a printable-unicode table), SentencePiece writes
``▁`` and falls back to ``<0xNN>`` byte pieces, WordPiece marks continuations with ``##``.  The
*canonical key* of a token is its decoded text with a single leading word boundary written as
``␣``: GPT-2 ``Ġdef``, Llama ``▁def`` and BERT ``def`` all become ``␣def``; BERT ``##ing`` and
GPT-2 ``ing`` become ``ing``.

Sources, in order of preference: ``tokenizer.json`` (the Hugging Face tokenizers format: BPE,
WordPiece, WordLevel and Unigram models), ``vocab.json`` (GPT-2 style byte-level BPE),
``vocab.txt`` (WordPiece), ``tokenizer.model`` (a SentencePiece protobuf, parsed by hand: it is
never unpickled or executed).  Everything is parsed as data with sizes bounded by the source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pedigree.errors import CheckpointError
from pedigree.indexer.bounded_json import loads_json

if TYPE_CHECKING:  # annotations only: the vocabulary (and indexer.versions) imports no torch
    from pedigree.indexer.sources import TensorSource

WORD_BOUNDARY = "␣"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
MAX_TOKENIZER_BYTES = 64 * 2**20
VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")
"""Where a vocabulary is read from, in order of preference (the first present is used)."""


@dataclass(frozen=True)
class Vocabulary:
    """The non-special tokens of one tokenizer, looked up by canonical key.

    :meth:`lookup` spells the key every way this tokenizer's style can (:func:`spellings`) and
    looks those strings up, so a probe costs a few dict lookups and the tokenizer's other tokens
    are never canonicalised; :attr:`ids_by_key` is the full map, built on first use.  Among the
    tokens of one key a regular piece wins over a byte piece, then the lowest id.
    """

    tokens: dict[str, int]  # non-special token string -> lowest id
    style: str  # byte_level | metaspace | wordpiece | plain (see canonical_key)
    size: int  # number of token ids the tokenizer defines (incl. special tokens)
    digest: str  # sha256 of the tokenizer file that was read ("" if none)
    source: str  # which file the vocabulary came from

    def lookup(self, key: str) -> int | None:
        found = [
            (1 if _BYTE_PIECE.match(t) else 0, self.tokens[t]) for t in spellings(key, self.style) if t in self.tokens
        ]
        return min(found)[1] if found else None

    @cached_property
    def ids_by_key(self) -> dict[str, int]:
        """Canonical key -> token id for every token that has a key."""
        chosen: dict[str, tuple[int, int]] = {}  # key -> (rank, id)
        for token, token_id in self.tokens.items():
            key = canonical_key(token, self.style)
            if key is None:
                continue
            rank = 1 if _BYTE_PIECE.match(token) else 0
            best = chosen.get(key)
            if best is None or (rank, token_id) < best:
                chosen[key] = (rank, token_id)
        return {key: tid for key, (_, tid) in chosen.items()}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (openai/gpt-2 encoder.py)."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


_BYTE_TO_UNICODE = _bytes_to_unicode()
_UNICODE_TO_BYTE = {char: byte for byte, char in _BYTE_TO_UNICODE.items()}


def _mark_boundary(text: str) -> str:
    """Write one leading space as the word-boundary marker ``␣``."""
    return WORD_BOUNDARY + text[1:] if text.startswith(" ") else text


def _decode_byte_level(token: str) -> str | None:
    try:
        raw = bytes(_UNICODE_TO_BYTE[char] for char in token)
    except KeyError:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # a partial UTF-8 sequence: not a string any other tokenizer would share


def canonical_key(token: str, style: str) -> str | None:
    """The tokenizer-independent key of one token string, or None if it has no textual form.

    ``style`` is ``byte_level`` (GPT-2 family), ``metaspace`` (SentencePiece ``▁``) or
    ``wordpiece`` (``##`` continuations; other tokens start a word).
    """
    if style == "byte_level":
        text = _decode_byte_level(token)
        return None if text is None or text == "" else _mark_boundary(text)
    if style == "metaspace":
        match = _BYTE_PIECE.match(token)
        if match:
            byte = int(match.group(1), 16)
            return chr(byte) if 0x21 <= byte <= 0x7E else None
        return _mark_boundary(token.replace("▁", " ")) if token else None
    if style == "wordpiece":
        if token.startswith("##"):
            return token[2:] or None
        return WORD_BOUNDARY + token if token else None
    return _mark_boundary(token) if token else None


def _unmarked(key: str) -> list[str]:
    """The texts ``t`` with ``_mark_boundary(t) == key``: a leading ``␣`` was a space or itself."""
    if key.startswith(WORD_BOUNDARY):
        return [" " + key[1:], key]
    return [] if key.startswith(" ") else [key]


def _space_variants(text: str) -> list[str]:
    """``text`` with each space written as ``▁`` or left as a space (SentencePiece reads both)."""
    variants = [""]
    for char in text:
        variants = [v + c for v in variants for c in (("▁", " ") if char == " " else (char,))]
    return variants


def spellings(key: str, style: str) -> list[str]:
    """Every token string whose :func:`canonical_key` in ``style`` is ``key`` (its inverse)."""
    if not key:
        return []
    if style == "byte_level":
        return ["".join(_BYTE_TO_UNICODE[b] for b in text.encode("utf-8")) for text in _unmarked(key)]
    if style == "metaspace":
        out = [
            t
            for text in _unmarked(key)
            if "▁" not in text and text.count(" ") <= 8
            for t in _space_variants(text)
            if not _BYTE_PIECE.match(t)
        ]
        if len(key) == 1 and 0x21 <= ord(key) <= 0x7E:  # byte-fallback pieces <0xNN>, either hex case
            digits = f"{ord(key):02X}"
            out += sorted(
                {f"<0x{a}{b}>" for a in {digits[0], digits[0].lower()} for b in {digits[1], digits[1].lower()}}
            )
        return out
    if style == "wordpiece":
        out = ["##" + key]
        if key.startswith(WORD_BOUNDARY) and len(key) > 1 and not key[1:].startswith("##"):
            out.append(key[1:])
        return out
    return _unmarked(key)


def _tokenizer_style(spec: dict[str, Any]) -> str:
    """Infer how token strings are spelled from a tokenizer.json's components."""
    names: list[str] = []
    pending = [spec.get(part) for part in ("pre_tokenizer", "decoder", "normalizer")]
    while pending:  # the components and their Sequence children (iterative: nesting is the file's)
        component = pending.pop()
        if isinstance(component, dict):
            if isinstance(component.get("type"), str):
                names.append(component["type"])
            for key in ("pretokenizers", "decoders", "normalizers"):
                children = component.get(key)
                pending.extend(children if isinstance(children, list) else [])
    found = spec.get("model")
    model: dict[str, Any] = found if isinstance(found, dict) else {}
    if "ByteLevel" in names:
        return "byte_level"
    if model.get("type") == "WordPiece" or "WordPiece" in names or "BertPreTokenizer" in names:
        return "wordpiece"
    if "Metaspace" in names or model.get("byte_fallback") or model.get("type") == "Unigram":
        return "metaspace"
    if any("Replace" == name for name in names):  # Llama-2 style: normalizer replaces " " by "▁"
        return "metaspace"
    return "plain"


def _build(pairs: list[tuple[str, int, bool]], style: str, size: int, digest: str, source: str) -> Vocabulary:
    """Keep the non-special tokens (the lowest id of a string that repeats)."""
    tokens: dict[str, int] = {}
    for token, token_id, special in pairs:
        if not special and token_id < tokens.get(token, token_id + 1):
            tokens[token] = token_id
    return Vocabulary(tokens, style, size, digest, source)


def _from_tokenizer_json(spec: object, digest: str) -> Vocabulary:
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise CheckpointError("tokenizer.json has no 'model' object")
    model = spec["model"]
    vocab = model.get("vocab")
    entries = spec.get("added_tokens")
    added = [
        (entry["content"], entry["id"], bool(entry.get("special")))
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("content"), str)
    ]
    specials = {token_id for _, token_id, special in added if special}
    pairs: list[tuple[str, int, bool]]
    if isinstance(vocab, dict):  # type(...) is int: JSON true/false are not ids
        pairs = [(tok, tid, tid in specials) for tok, tid in vocab.items() if type(tid) is int]
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
        pairs = [
            (entry[0], i, i in specials)
            for i, entry in enumerate(vocab)
            if isinstance(entry, list) and entry and isinstance(entry[0], str)
        ]
    else:
        raise CheckpointError("tokenizer.json model has no vocabulary")
    pairs.extend((tok, tid, special or tid in specials) for tok, tid, special in added)
    size = 1 + max((tid for _, tid, _ in pairs), default=-1)
    return _build(pairs, _tokenizer_style(spec), size, digest, "tokenizer.json")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CheckpointError("tokenizer.model: truncated or invalid varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _protobuf_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of one protobuf message (wire format only)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise CheckpointError("tokenizer.model: field runs past the end of the file")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise CheckpointError(f"tokenizer.model: unsupported protobuf wire type {wire}")
        yield field, wire, value


def _from_sentencepiece(raw: bytes, digest: str) -> Vocabulary:
    """ModelProto.pieces (field 1): SentencePiece {piece = 1; score = 2; type = 3}.

    Types: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE.
    """
    pairs: list[tuple[str, int, bool]] = []
    for field, wire, value in _protobuf_fields(raw):
        if field != 1 or wire != 2:
            continue
        assert isinstance(value, bytes)  # wire type 2: length-delimited
        piece: str | None = None
        kind: int | bytes = 1
        for sub_field, sub_wire, sub_value in _protobuf_fields(value):
            if sub_field == 1 and sub_wire == 2 and isinstance(sub_value, bytes):
                piece = sub_value.decode("utf-8", errors="replace")
            elif sub_field == 3 and sub_wire == 0:
                kind = sub_value
        if piece is not None:
            pairs.append((piece, len(pairs), kind in (2, 3, 5)))
    return _build(pairs, "metaspace", len(pairs), digest, "tokenizer.model")


def find_vocabulary_file(source: TensorSource) -> tuple[str, bytes] | None:
    """(name, bytes) of the first of :data:`VOCABULARY_FILES` the checkpoint has, or None."""
    for name in VOCABULARY_FILES:
        raw = source.read_bytes(name, MAX_TOKENIZER_BYTES)
        if raw is not None:
            return name, raw
    return None


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{name} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def parse_vocabulary(name: str, raw: bytes) -> Vocabulary:
    """The vocabulary in tokenizer file ``name`` (one of :data:`VOCABULARY_FILES`), parsed as data."""
    if name == "tokenizer.model":
        return _from_sentencepiece(raw, hashlib.sha256(raw).hexdigest())
    text = _text(name, raw)
    if name == "vocab.txt":
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        pairs = [(line, i, line.startswith("[") and line.endswith("]")) for i, line in enumerate(lines)]
        return _build(pairs, "wordpiece", len(pairs), hashlib.sha256(text.encode()).hexdigest(), "vocab.txt")
    if name == "vocab.json":
        vocab_json = loads_json(text, name, None)
        if not isinstance(vocab_json, dict):
            raise CheckpointError("vocab.json is not a JSON object of token -> id")
        pairs = [(tok, tid, False) for tok, tid in vocab_json.items() if isinstance(tid, int)]
        digest = hashlib.sha256(repr(sorted(vocab_json.items())).encode()).hexdigest()
        return _build(pairs, "byte_level", 1 + max((p[1] for p in pairs), default=-1), digest, "vocab.json")
    if name != "tokenizer.json":
        raise ValueError(f"not a vocabulary file: {name!r}")
    spec = loads_json(text, name, None, unique_keys=False)  # bounded; a repeated key: the last wins, as before
    return _from_tokenizer_json(spec, hashlib.sha256(text.encode()).hexdigest())


def read_vocabulary(source: TensorSource) -> Vocabulary | None:
    """The checkpoint's vocabulary, from the first tokenizer file present; None if it has none."""
    found = find_vocabulary_file(source)
    return None if found is None else parse_vocabulary(*found)


def piece_rank(piece: str) -> float:
    """A fixed pseudo-random number in [0, 1) per token string (blake2b of its UTF-8)."""
    digest = hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def vocabulary_sample(vocabulary: Vocabulary, rows: int, count: int) -> list[tuple[str, int]]:
    """About ``count`` (piece, id) pairs of the vocabulary (ids below ``rows``), by id: the pieces
    whose :func:`piece_rank` is below ``count / size``.  Two models' samples are nested (the one
    with the lower rate is a subset of the other's where both have the piece), so the pieces
    they share are sampled alike without either knowing the other."""
    pairs = [(piece, token_id) for piece, token_id in vocabulary.tokens.items() if token_id < rows]
    rate = min(1.0, count / max(len(pairs), 1))
    return sorted(((p, i) for p, i in pairs if piece_rank(p) < rate), key=lambda pair: pair[1])
