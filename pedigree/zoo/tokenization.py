"""Tokenizers for the zoo, trained with the ``tokenizers`` library, written as the Hub writes them.

Five kinds, one per family (each trained on that family's own text):

* ``llama``  -- SentencePiece-style BPE: spaces become the Metaspace marker "▁" (pre-tokenizer
  ``Metaspace(prepend_scheme="first")``), ``<unk>``=0, ``<s>``=1, ``</s>``=2, then the 256
  byte-fallback pieces ``<0x00>``..``<0xFF>``, then the learned pieces; ``byte_fallback=True``.
* ``qwen2``  -- byte-level BPE behind Qwen2's regex pre-split, ``<|endoftext|>``, ``<|im_start|>``,
  ``<|im_end|>`` appended after the learned vocabulary.
* ``gpt2`` / ``neox`` -- byte-level BPE (GPT-2's regex), ``<|endoftext|>`` (NeoX: also
  ``<|padding|>``) first.
* ``bert``   -- WordPiece, lower-cased, ``[PAD] [UNK] [CLS] [SEP] [MASK]``, ``[CLS] $A [SEP]``.

The BPE/WordPiece trainers are deterministic for a given text and vocabulary size.
``extend_tokenizer`` appends new whole-word tokens (the vocabulary-extension transform),
``prune_tokenizer`` keeps only the pieces a text uses (vocabulary trimming).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TokenizerKind:
    """What a family's tokenizer looks like on the Hub: specials and ``tokenizer_config`` fields."""

    name: str
    tokenizer_class: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str | None
    unk: str | None
    pad: str | None
    extra: tuple[tuple[str, str], ...] = ()  # e.g. (("mask_token", "[MASK]"), ("cls_token", "[CLS]"))


KINDS: dict[str, TokenizerKind] = {
    "llama": TokenizerKind("llama", "LlamaTokenizerFast", ("<unk>", "<s>", "</s>"), "<s>", "</s>", "<unk>", None),
    "qwen2": TokenizerKind(
        "qwen2",
        "Qwen2TokenizerFast",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        None,
        "<|endoftext|>",
        None,
        "<|endoftext|>",
    ),
    "gpt2": TokenizerKind(
        "gpt2", "GPT2TokenizerFast", ("<|endoftext|>",), "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", None
    ),
    "neox": TokenizerKind(
        "neox",
        "GPTNeoXTokenizerFast",
        ("<|endoftext|>", "<|padding|>"),
        "<|endoftext|>",
        "<|endoftext|>",
        "<|endoftext|>",
        "<|padding|>",
    ),
    "bert": TokenizerKind(
        "bert",
        "BertTokenizerFast",
        ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
        None,
        None,
        "[UNK]",
        "[PAD]",
        (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("mask_token", "[MASK]")),
    ),
}


def _chunks(text: str, size: int = 4000) -> list[str]:
    """Fixed-size pieces of the training text (the trainers take an iterator of strings)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def _train_llama(text: str, vocab_size: int) -> Tokenizer:
    """SentencePiece-style BPE: Metaspace "▁" pre-tokenizer, merges learned on "▁"-marked words,
    vocabulary re-assembled as specials + 256 byte pieces + learned pieces, ``byte_fallback`` on."""
    meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    specials = list(KINDS["llama"].specials)
    probe = Tokenizer(models.BPE(unk_token="<unk>"))
    probe.pre_tokenizer = meta
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 256, special_tokens=specials, limit_alphabet=120, show_progress=False
    )
    probe.train_from_iterator(_chunks(text), trainer=trainer)
    learned = json.loads(probe.to_str())["model"]
    vocab: dict[str, int] = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = meta
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _train_byte_level(text: str, vocab_size: int, kind: TokenizerKind) -> Tokenizer:
    """Byte-level BPE (GPT-2 regex; Qwen2's regex for ``qwen2``) over the 256-symbol byte alphabet."""
    tok = Tokenizer(models.BPE())
    if kind.name == "qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.normalizer = normalizers.NFC()
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    lead = [] if kind.name == "qwen2" else list(kind.specials)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - (len(kind.specials) - len(lead)),
        special_tokens=lead,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_chunks(text), trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in kind.specials])
    return tok


_PUA = 0xF0000  # continuation characters are shifted into Unicode plane 15 while learning pieces


def _train_wordpiece(text: str, vocab_size: int) -> Tokenizer:
    """BERT WordPiece: BertNormalizer (lower case), BertPreTokenizer, ``##`` continuation pieces.

    The pieces are learned by the (deterministic) BPE trainer on words whose non-initial
    characters are shifted into a private-use plane, so merges never mix word-initial and
    continuation text; a learned piece starting with a shifted character becomes ``##piece``.
    (The WordPiece trainer, and BPE with ``continuing_subword_prefix``, break ties in hash order.)"""
    specials = list(KINDS["bert"].specials)
    norm, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()

    def shift(word: str) -> str:
        return word[0] + "".join(chr(_PUA + ord(c)) if ord(c) < 0xFFFD else c for c in word[1:])

    def unshift(piece: str) -> str:
        plain = "".join(chr(ord(c) - _PUA) if _PUA <= ord(c) < _PUA + 0xFFFD else c for c in piece)
        return "##" + plain if _PUA <= ord(piece[0]) < _PUA + 0xFFFD else plain

    shifted = [
        " ".join(shift(w) for w, _ in pre.pre_tokenize_str(norm.normalize_str(chunk))) for chunk in _chunks(text)
    ]
    probe = Tokenizer(models.BPE(unk_token="[UNK]"))
    probe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, limit_alphabet=300, show_progress=False
    )
    probe.train_from_iterator(shifted, trainer=trainer)
    learned = sorted(json.loads(probe.to_str())["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab: dict[str, int] = {}
    for piece, _ in learned:
        vocab.setdefault(piece if piece in specials else unshift(piece), len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer = norm, pre
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def train_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    """Train the tokenizer of family ``kind`` on ``text`` with about ``vocab_size`` entries."""
    if kind == "llama":
        return _train_llama(text, vocab_size)
    if kind == "bert":
        return _train_wordpiece(text, vocab_size)
    return _train_byte_level(text, vocab_size, KINDS[kind])


def special_ids(tok: Tokenizer, kind: str) -> dict[str, int | None]:
    """``bos/eos/pad/unk/mask`` token ids for config.json and training (None where absent)."""
    k = KINDS[kind]
    extra = dict(k.extra)
    return {
        "bos": _id(tok, k.bos),
        "eos": _id(tok, k.eos),
        "pad": _id(tok, k.pad),
        "unk": _id(tok, k.unk),
        "mask": _id(tok, extra.get("mask_token")),
        "cls": _id(tok, extra.get("cls_token")),
        "sep": _id(tok, extra.get("sep_token")),
    }


def _id(tok: Tokenizer, token: str | None) -> int | None:
    return None if token is None else tok.token_to_id(token)


def encode(tok: Tokenizer, text: str) -> list[int]:
    """Token ids of a long text, encoded in one piece without special tokens (splitting it would
    change the tokenization at the seams: Metaspace prefixes, whitespace runs)."""
    return tok.encode(text, add_special_tokens=False).ids


def new_words(tok: Tokenizer, text: str, n: int) -> list[str]:
    """The ``n`` most frequent identifier-like words of ``text`` (ties by the word) that ``tok``
    splits into at least two tokens: the words a vocabulary extension would add."""
    counts = Counter(re.findall(r"[A-Za-z_][A-Za-z0-9_]{3,}", text))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = tok.get_vocab()
    out: list[str] = []
    for word, _ in ranked:
        if word not in vocab and len(tok.encode(word, add_special_tokens=False).ids) >= 2:
            out.append(word)
        if len(out) == n:
            break
    return out


def extend_tokenizer(tok: Tokenizer, words: list[str]) -> Tokenizer:
    """A copy of ``tok`` with ``words`` appended as whole-word added tokens (ids ``len(tok)``...)."""
    new = Tokenizer.from_str(tok.to_str())
    new.add_tokens([AddedToken(w, single_word=True, normalized=False) for w in words])
    return new


def prune_tokenizer(tok: Tokenizer, text: str, share: float = 1.0) -> tuple[Tokenizer, list[int]]:
    """A BPE tokenizer trimmed to the most used ``share`` of the learned pieces ``text`` encodes to
    (ties by id), the pieces they are merged from, the added (special) tokens and, with byte
    fallback, the 256 byte pieces; merges of dropped pieces are dropped, ids renumbered in their old
    order.  Returns the tokenizer and ``kept``: new id i was old id ``kept[i]``."""
    spec = json.loads(tok.to_str())
    model = spec["model"]
    if model["type"] != "BPE":
        raise ValueError("vocabulary pruning needs a BPE tokenizer")
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    piece_of = {i: piece for piece, i in vocab.items()}
    added = {t["content"] for t in spec["added_tokens"]}
    fixed = added | ({p for p in vocab if re.fullmatch(r"<0x[0-9A-F]{2}>", p)} if model.get("byte_fallback") else set())
    counts = Counter(encode(tok, text))
    used = sorted((i for i in counts if i in piece_of and piece_of[i] not in fixed), key=lambda i: (-counts[i], i))
    keep = fixed | {piece_of[i] for i in used[: round(share * len(used))]}
    made_from: dict[str, list[tuple[str, ...]]] = {}
    for merge in merges:
        made_from.setdefault("".join(merge), []).append(merge)
    todo = list(keep)
    while todo:
        for merge in made_from.get(todo.pop(), []):
            todo += [part for part in merge if part not in keep]
            keep.update(merge)
    kept = sorted({vocab[p] for p in keep if p in vocab} | {t["id"] for t in spec["added_tokens"]})
    new_id = {old: new for new, old in enumerate(kept)}
    model["vocab"] = {piece_of[old]: new_id[old] for old in kept if old in piece_of}
    model["merges"] = [list(m) for m in merges if all(part in model["vocab"] for part in (*m, "".join(m)))]
    for t in spec["added_tokens"]:
        t["id"] = new_id[t["id"]]
    for entry in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        entry["ids"] = [new_id[i] for i in entry["ids"]]
    return Tokenizer.from_str(json.dumps(spec)), kept


def write_tokenizer(folder: Path, tok: Tokenizer, kind: str, model_max_length: int) -> None:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` as on the Hub."""
    k = KINDS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    named = {"bos_token": k.bos, "eos_token": k.eos, "unk_token": k.unk, "pad_token": k.pad, **dict(k.extra)}
    named = {key: value for key, value in named.items() if value is not None}
    decoder = {}
    for content, idx in sorted(tok.get_added_tokens_decoder().items()):
        decoder[str(content)] = {
            "content": idx.content,
            "lstrip": idx.lstrip,
            "normalized": idx.normalized,
            "rstrip": idx.rstrip,
            "single_word": idx.single_word,
            "special": idx.special,
        }
    config = {
        "added_tokens_decoder": decoder,
        **named,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "tokenizer_class": k.tokenizer_class,
    }
    if kind == "llama":
        config.update(add_bos_token=True, add_eos_token=False, legacy=False)
    if kind == "bert":
        config.update(do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(named, indent=2, ensure_ascii=False) + "\n")


def load_tokenizer(folder: Path) -> Tokenizer:
    """The ``tokenizer.json`` of a checkpoint folder."""
    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
