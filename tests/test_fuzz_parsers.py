"""Fuzzing the indexer's parsers of what a checkpoint holds: safetensors headers, config.json (and
the adapters that read it), tokenizer files and model cards.

The property, for every input: the parser returns a valid result or raises pedigree's own error
(:class:`~pedigree.errors.PedigreeError`) with a one-line message of bounded length - never any
other exception - and its memory stays bounded (the process's peak RSS may not grow by more than
:data:`MEMORY_GROWTH` during one fuzz test).  A card never raises at all: a bad one is ignored.

Budget (``tests.fuzz_budget``): CI runs a fixed number of examples per test (a few seconds in all),
derandomized so that a run is repeatable.  A longer, randomized run::

    PEDIGREE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz_parsers.py

(``PEDIGREE_FUZZ_EXAMPLES`` is the number of examples of each test; hypothesis shrinks what it
finds to a minimal failing input and prints it.)
"""

from __future__ import annotations

import json
import resource
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import yaml
from fuzz_budget import fuzz_settings
from hostile import TINY_LLAMA_CONFIG, tiny_llama_state_dict
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save
from test_hostile_headers import parse_all
from test_vocabulary import _varint

from pedigree.errors import CheckpointError, PedigreeError
from pedigree.indexer import safetensors_format as fmt
from pedigree.indexer.adapters import SUPPORTED_MODEL_TYPES, roles_for
from pedigree.indexer.card import MAX_NAME_CHARS, MAX_NAMES, parse_card, read_card
from pedigree.indexer.probes import select_probes
from pedigree.indexer.sources import StateDictSource
from pedigree.indexer.vocabulary import VOCABULARY_FILES, parse_vocabulary

MAX_MESSAGE_CHARS = 1200
MEMORY_GROWTH = 512 * 2**20

FUZZ = fuzz_settings(120)


@contextmanager
def bounded_memory() -> Iterator[None]:
    """The process's peak RSS may not grow by more than :data:`MEMORY_GROWTH` inside."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    yield
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < MEMORY_GROWTH, f"peak RSS grew by {grown / 2**20:.0f} MiB"


def only_pedigree_errors(parse: Callable[[], object]) -> object | None:
    """Run ``parse``: its result, or None if it raised a PedigreeError with a one-line, bounded
    message (any other exception propagates and fails the example)."""
    try:
        return parse()
    except PedigreeError as error:
        message = str(error)
        assert message and "\n" not in message and len(message) <= MAX_MESSAGE_CHARS, message[:2000]
        return None


# -- JSON-ish values -----------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2, 3, 16, 32, 2**24, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _mutated(blob: bytes) -> st.SearchStrategy[bytes]:
    """``blob`` with a few bytes overwritten, inserted or cut."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        out = bytearray(blob)
        for _ in range(draw(st.integers(1, 6))):
            pos = draw(st.integers(0, max(len(out) - 1, 0)))
            action = draw(st.sampled_from(["set", "insert", "cut"]))
            value = draw(st.sampled_from(list(b'{}[]",:0123456789\\ \xff\x00\x80-eE.') + [draw(st.integers(0, 255))]))
            if action == "set" and out:
                out[pos] = value
            elif action == "insert":
                out[pos:pos] = bytes([value]) * draw(st.sampled_from([1, 2, 100]))
            else:
                del out[pos : pos + draw(st.integers(1, 8))]
        return bytes(out)

    return build()


# -- safetensors headers -------------------------------------------------------------------------

_VALID = save(
    {"model.embed_tokens.weight": torch.randn(4, 3), "norm": torch.ones(3).bfloat16(), "s": torch.tensor(2)},
    metadata={"format": "pt"},
)


_entry = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(sorted(fmt.DTYPES)), _scalars),
        "shape": st.one_of(st.lists(st.one_of(st.integers(-1, 5), _scalars), max_size=4), _json),
        "data_offsets": st.one_of(st.lists(st.one_of(st.integers(-1, 90), _scalars), max_size=3), _json),
    }
)
_header = st.dictionaries(
    st.one_of(st.sampled_from(["a", "b", "__metadata__"]), st.text(max_size=6)), st.one_of(_entry, _json), max_size=4
)


@FUZZ
@given(st.one_of(_mutated(_VALID), _header.map(lambda h: json.dumps(h).encode())), st.binary(max_size=96))
def test_fuzz_safetensors_headers(body: bytes, data: bytes) -> None:
    blob = body if body[:8] == _VALID[:8] and len(body) > 8 else struct.pack("<Q", len(body)) + body + data
    with bounded_memory():
        only_pedigree_errors(lambda: parse_all(blob))


# -- config.json and the adapters ----------------------------------------------------------------

_TENSORS = StateDictSource(tiny_llama_state_dict()).tensors()
_CONFIG_KEYS = sorted(TINY_LLAMA_CONFIG) + [
    "head_dim",
    "text_config",
    "rope_scaling",
    "n_embd",
    "n_head",
    "n_layer",
    "num_experts",
    "num_local_experts",
    "layer_norm_eps",
    "hidden_act",
    "type_vocab_size",
]
_model_types = st.one_of(st.sampled_from(SUPPORTED_MODEL_TYPES), _scalars)
_config_changes = st.dictionaries(
    st.sampled_from(_CONFIG_KEYS),
    st.one_of(_json, st.integers(-4, 40), _model_types, st.sampled_from(["x" * 5000, list(range(3000))])),
    max_size=5,
)


def _config_roles(raw: bytes) -> None:
    config = fmt.loads_json(raw, "config.json", "fuzz")
    roles_for(config, _TENSORS)


@FUZZ
@given(
    st.one_of(
        _config_changes.map(lambda changes: json.dumps({**TINY_LLAMA_CONFIG, **changes}).encode()),
        _mutated(json.dumps(TINY_LLAMA_CONFIG).encode()),
        _json.map(lambda value: json.dumps(value).encode()),
    )
)
def test_fuzz_config_json_and_adapters(raw: bytes) -> None:
    with bounded_memory():
        only_pedigree_errors(lambda: _config_roles(raw))


# -- tokenizer files -----------------------------------------------------------------------------

_tokens = st.text(max_size=6)
_vocab = st.one_of(
    st.dictionaries(_tokens, st.one_of(st.integers(-2, 40), _scalars), max_size=12),
    st.lists(st.one_of(st.tuples(_tokens, st.floats(allow_nan=False)).map(list), _json), max_size=12),
    _json,
)
_component = st.recursive(
    st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["ByteLevel", "Metaspace", "WordPiece", "Replace", "x"])}),
        _json,
    ),
    lambda inner: st.fixed_dictionaries(
        {
            "type": st.just("Sequence"),
            "pretokenizers": st.one_of(st.lists(inner, max_size=3), _json),
            "normalizers": st.one_of(st.lists(inner, max_size=3), _json),
            "decoders": st.one_of(st.lists(inner, max_size=3), _json),
        }
    ),
    max_leaves=6,
)
_tokenizer_json = st.fixed_dictionaries(
    {
        "model": st.one_of(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["BPE", "WordPiece", "Unigram", "WordLevel", "x"]),
                    "vocab": _vocab,
                    "byte_fallback": _scalars,
                }
            ),
            _json,
        ),
        "added_tokens": st.one_of(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({"id": st.integers(-2, 60), "content": _tokens, "special": _scalars}),
                    _json,
                ),
                max_size=4,
            ),
            _json,
        ),
        "pre_tokenizer": _component,
        "decoder": _component,
        "normalizer": _component,
    }
)


def _protobuf_field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


_piece = st.builds(
    lambda text, kind: _protobuf_field(1, _protobuf_field(1, text.encode()) + _protobuf_field(3, kind)),
    _tokens,
    st.integers(0, 7),
)
_sentencepiece = st.lists(_piece, max_size=8).map(lambda pieces: b"".join(_protobuf_field(1, p) for p in pieces))


def _vocabulary_in_use(name: str, raw: bytes) -> None:
    vocabulary = parse_vocabulary(name, raw)
    select_probes(vocabulary, 32, 16)
    assert isinstance(vocabulary.ids_by_key, dict)


@FUZZ
@given(
    st.one_of(
        st.tuples(st.just("tokenizer.json"), _tokenizer_json.map(lambda spec: json.dumps(spec).encode())),
        st.tuples(
            st.just("tokenizer.json"),
            _tokenizer_json.map(lambda spec: json.dumps(spec).encode()).flatmap(_mutated),
        ),
        st.tuples(st.just("vocab.json"), _vocab.map(lambda v: json.dumps(v).encode())),
        st.tuples(st.just("vocab.txt"), st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode))),
        st.tuples(st.just("tokenizer.model"), st.one_of(_sentencepiece, _sentencepiece.flatmap(_mutated))),
        st.tuples(st.sampled_from(VOCABULARY_FILES), st.binary(max_size=64)),
    )
)
def test_fuzz_tokenizer_files(file: tuple[str, bytes]) -> None:
    name, raw = file
    with bounded_memory():
        only_pedigree_errors(lambda: _vocabulary_in_use(name, raw))


# -- model cards ---------------------------------------------------------------------------------

_YAML_PIECES = [
    "base_model: ",
    "tags: ",
    "created_at: ",
    "license: ",
    "base_model_relation: ",
    "&a ",
    "&b ",
    "*a",
    "*b",
    "<<: *a",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "- ",
    "\n",
    "\n  ",
    "? ",
    ": ",
    "2024-13-45",
    "2024-01-01 00:00:00 +99:00",
    "0001-01-01T00:00:00+05:00",
    "9" * 5000,
    "!!binary AAAA",
    "!!python/object:os.system",
    "!!timestamp x",
    "!!int x",
    "!!set {a}",
    "!!omap [a: 1]",
    "org/model",
    "'quoted",
    '"\\x00"',
    "\t",
    "...",
    "---",
    "%YAML 1.1",
    ".inf",
    "x" * 3000,
]
_front_matter = st.one_of(
    st.lists(st.one_of(st.sampled_from(_YAML_PIECES), st.text(max_size=5)), max_size=40).map("".join),
    _json.map(lambda value: yaml.safe_dump(value, default_flow_style=None)),
    st.dictionaries(
        st.sampled_from(["base_model", "tags", "created_at", "license", "base_model_relation"]), _json, max_size=5
    ).map(lambda value: yaml.safe_dump(value)),
)
_aliases = st.builds(
    lambda size, refs, depth: (
        "a0: &a0 "
        + "x" * size
        + "\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * refs)}]\n" for i in range(1, depth))
        + f"tags: *a{depth - 1}\n"
    ),
    st.integers(0, 100_000),
    st.integers(1, 400),
    st.integers(1, 8),
)
_cards = st.one_of(
    st.builds(lambda fm, body: f"---\n{fm}\n---\n{body}", st.one_of(_front_matter, _aliases), st.text(max_size=20)),
    st.text(max_size=200),
)
_CARD_JSON_CHARS = 2 * MAX_NAMES * (MAX_NAME_CHARS + 8) + 4096


def _card_checked(text: str) -> None:
    card = parse_card(text)
    assert card.card_error is None or (card.card_error.startswith("card ignored: ") and "\n" not in card.card_error)
    assert len(json.dumps(card.as_json())) <= _CARD_JSON_CHARS


@FUZZ
@given(_cards)
def test_fuzz_cards_never_raise_and_stay_small(text: str) -> None:
    with bounded_memory():
        _card_checked(text)


@FUZZ
@given(st.one_of(_cards.map(str.encode), _cards.map(str.encode).flatmap(_mutated)))
def test_fuzz_card_bytes_through_a_source(raw: bytes) -> None:
    source = StateDictSource({}, texts={"README.md": raw})
    with bounded_memory():
        card = read_card(source)
    assert card.card_error is None or card.card_error.startswith("card ignored: ")


def test_a_checkpoint_error_is_what_the_fuzz_tests_allow() -> None:
    """The allowed exception is pedigree's own, and it is what a bad input gives."""
    assert issubclass(CheckpointError, PedigreeError)
    assert only_pedigree_errors(lambda: fmt.loads_json(b"[" * 100, "x.json", "p")) is None
    assert only_pedigree_errors(lambda: parse_vocabulary("vocab.json", b"\xff")) is None
    assert (
        parse_card("---\na: &a [*a]\n---\n").card_error
        == "card ignored: YAML alias *a refers to the node that contains it"
    )
