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
from dataclasses import dataclass

from indexer.sources import TensorSource
from pedigree.errors import CheckpointError

WORD_BOUNDARY = "␣"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
MAX_TOKENIZER_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Vocabulary:
    """Canonical key -> token id for the non-special tokens of one tokenizer."""

    ids_by_key: dict[str, int]
    size: int  # number of token ids the tokenizer defines (incl. special tokens)
    digest: str  # sha256 of the tokenizer file that was read ("" if none)
    source: str  # which file the vocabulary came from

    def lookup(self, key: str) -> int | None:
        return self.ids_by_key.get(key)


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


_UNICODE_TO_BYTE = {char: byte for byte, char in _bytes_to_unicode().items()}


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


def _tokenizer_style(spec: dict) -> str:
    """Infer how token strings are spelled from a tokenizer.json's components."""
    names: list[str] = []

    def collect(component: object) -> None:
        if isinstance(component, dict):
            if isinstance(component.get("type"), str):
                names.append(component["type"])
            for key in ("pretokenizers", "decoders", "normalizers"):
                for child in component.get(key) or []:
                    collect(child)

    for part in ("pre_tokenizer", "decoder", "normalizer"):
        collect(spec.get(part))
    model = spec.get("model") or {}
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
    """Map canonical key -> id; among tokens sharing a key prefer regular pieces, then low ids."""
    chosen: dict[str, tuple[int, int]] = {}  # key -> (rank, id)
    for token, token_id, special in pairs:
        if special:
            continue
        key = canonical_key(token, style)
        if key is None:
            continue
        rank = 1 if _BYTE_PIECE.match(token) else 0
        best = chosen.get(key)
        if best is None or (rank, token_id) < best:
            chosen[key] = (rank, token_id)
    return Vocabulary({key: tid for key, (_, tid) in chosen.items()}, size, digest, source)


def _from_tokenizer_json(spec: object, digest: str) -> Vocabulary:
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise CheckpointError("tokenizer.json has no 'model' object")
    model = spec["model"]
    vocab = model.get("vocab")
    pairs: list[tuple[str, int, bool]] = []
    if isinstance(vocab, dict):
        pairs = [(tok, tid, False) for tok, tid in vocab.items() if isinstance(tid, int) and not isinstance(tid, bool)]
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
        pairs = [(entry[0], i, False) for i, entry in enumerate(vocab) if isinstance(entry, list) and entry and isinstance(entry[0], str)]
    else:
        raise CheckpointError("tokenizer.json model has no vocabulary")
    specials = set()
    for added in spec.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("id"), int) and isinstance(added.get("content"), str):
            pairs.append((added["content"], added["id"], bool(added.get("special"))))
            if added.get("special"):
                specials.add(added["id"])
    pairs = [(tok, tid, special or tid in specials) for tok, tid, special in pairs]
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


def _protobuf_fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message (wire format only)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
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
        piece, kind = None, 1
        for sub_field, sub_wire, sub_value in _protobuf_fields(value):
            if sub_field == 1 and sub_wire == 2:
                piece = sub_value.decode("utf-8", errors="replace")
            elif sub_field == 3 and sub_wire == 0:
                kind = sub_value
        if piece is not None:
            pairs.append((piece, len(pairs), kind in (2, 3, 5)))
    return _build(pairs, "metaspace", len(pairs), digest, "tokenizer.model")


def read_vocabulary(source: TensorSource) -> Vocabulary | None:
    """The checkpoint's vocabulary, from the first tokenizer file present; None if it has none."""
    text = source.read_text("tokenizer.json", MAX_TOKENIZER_BYTES)
    if text is not None:
        import json

        try:
            spec = json.loads(text)
        except ValueError as error:
            raise CheckpointError(f"tokenizer.json is not valid JSON: {error}") from None
        return _from_tokenizer_json(spec, hashlib.sha256(text.encode()).hexdigest())
    vocab_json = source.read_json("vocab.json", MAX_TOKENIZER_BYTES)
    if isinstance(vocab_json, dict):
        pairs = [(tok, tid, False) for tok, tid in vocab_json.items() if isinstance(tid, int)]
        digest = hashlib.sha256(repr(sorted(vocab_json.items())).encode()).hexdigest()
        return _build(pairs, "byte_level", 1 + max((p[1] for p in pairs), default=-1), digest, "vocab.json")
    vocab_txt = source.read_text("vocab.txt", MAX_TOKENIZER_BYTES)
    if vocab_txt is not None:
        lines = vocab_txt.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        pairs = [(line, i, line.startswith("[") and line.endswith("]")) for i, line in enumerate(lines)]
        return _build(pairs, "wordpiece", len(pairs), hashlib.sha256(vocab_txt.encode()).hexdigest(), "vocab.txt")
    raw = source.read_bytes("tokenizer.model", MAX_TOKENIZER_BYTES)
    if raw is not None:
        return _from_sentencepiece(raw, hashlib.sha256(raw).hexdigest())
    return None
