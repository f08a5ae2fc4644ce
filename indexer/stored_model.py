"""The evidence store's per-model content: captured once at ingest, answered from ever after.

:func:`capture` reads, through a live :class:`~pedigree.indexer.independence.inputs.ModelTensors`,
everything the independence tests (``indexer.independence.suite``) and the lineage evidence
(``indexer.lineage``) ask of one model, whatever the other model of a pair is:

- the config and the tensor headers (so the roles are rebuilt exactly), the vocabulary's pieces;
- the probe tokens and their embedding and output-head rows;
- per block, the MLP's raw gate/up rows and norm gain: every unit of a narrow MLP, the first units
  of a wide one and, for wide MLPs (gated or not), the canonical units (``indexer.unit_selection``:
  chosen by a permutation- and rescaling-invariant rule, so a unit-permuted derivative keeps most
  of them) (their down columns too: always for ungated MLPs, whose tests need them; for gated ones
  up to :data:`GATED_DOWN_BYTES`, for pairs with an ungated model), and their embedding-free unit
  descriptors;
- per block, the first ``RAW_ROWS`` raw rows of q, k and v (raw-weight distances, low-rank and
  merge fits, update geometry);
- the embedding rows of a hashed sample of the vocabulary (``indexer.vocabulary.vocabulary_sample``:
  pruned-or-extended vocabularies);
- whole-block vectors of the first, middle and last blocks when those blocks are small
  (:data:`WHOLE_BLOCK_BYTES`: the copy test in other coordinates).

Every value is stored exactly as the live reader returns it (``indexer.evidence_file.compact``
keeps bfloat16 rows in 2 bytes), so :class:`StoredModel` - which has the methods of
``ModelTensors`` - gives the tests the very numbers a live read would.  What was not captured
raises :class:`~pedigree.errors.EvidenceMissingError`; nothing here ever opens the checkpoint.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import torch

from pedigree.errors import EvidenceMissingError
from pedigree.indexer.adapters import LayerRoles, MatrixRef, ModelRoles, roles_for
from pedigree.indexer.block_signatures import ATTENTION_ROWS
from pedigree.indexer.evidence_file import EvidenceFile, compact
from pedigree.indexer.fingerprint import FINGERPRINT_PROBES
from pedigree.indexer.independence.inputs import RAW_ROWS, TEST_PROBES, Mlp, ModelTensors, ShapeFacts
from pedigree.indexer.independence.suite import Budget
from pedigree.indexer.probes import ProbeSelection
from pedigree.indexer.safetensors_format import TensorInfo
from pedigree.indexer.sampling import MLP_UNITS, SampleSize, block_sample
from pedigree.indexer.unit_selection import (
    CANONICAL_UNITS,
    DOWN_ROWS,
    WIDE_FIRST_UNITS,
    canonical_eligible,
    contiguous_units,
)
from pedigree.indexer.vocabulary import Vocabulary

UNITS = Budget().unit_block
GATED_DOWN_BYTES = 4 * 2**20  # a gated MLP's down columns (only a pair with an ungated MLP needs them) up to this
WHOLE_BLOCK_BYTES = 4 * 2**20  # whole-block vectors are captured when the three blocks are this small
CAPTURE_VERSION = f"ev4-u{UNITS}w{WIDE_FIRST_UNITS}c{CANONICAL_UNITS}j{DOWN_ROWS}-p{TEST_PROBES or 'all'}-r{RAW_ROWS}"


def whole_layers(depth: int) -> list[int]:
    """The blocks whose whole-block vectors are captured: first, middle and last."""
    return sorted({0, depth // 2, depth - 1}) if depth else []


def _block_bytes(model: ModelTensors, layer: int) -> int:
    roles = model.roles.layers[layer]
    names = {name for ref in vars(roles).values() if isinstance(ref, MatrixRef) for name in ref.tensor_names}
    return sum(model.source.info(name).nbytes for name in names)


def _vocabulary_json(vocabulary: Vocabulary | None) -> dict[str, Any] | None:
    if vocabulary is None:
        return None
    return {
        "tokens": vocabulary.tokens,
        "style": vocabulary.style,
        "size": vocabulary.size,
        "digest": vocabulary.digest,
        "source": vocabulary.source,
    }


def capture_plan(model: ModelTensors, units: int = UNITS) -> list[tuple[str, int, int]]:
    """The stored rows a capture (and the block signatures, ``indexer.block_signatures``) read
    beyond the fingerprint's sample (``indexer.sampling``): MLP units [sample, units) of gate and
    up, the sampled heads' value rows, the probes' embedding and head rows and the vocabulary
    sample's embedding rows.  Prefetched merging only touching spans, so that on a remote source
    the rows the fingerprint just read come from its cache and nothing is read twice."""
    plan: list[tuple[str, int, int]] = []

    def rows(ref: MatrixRef | None, start: int, stop: int) -> None:
        if ref is None or stop <= start:
            return
        if ref.stack:  # experts stacked as one matrix: the rows of every piece they reach
            plan.extend(model.loader.stored_reads(ref, start, stop))
        elif not ref.transpose and ref.parts == 1:
            plan.append((ref.name, start, stop))

    for layer in model.roles.layers:
        first, kept = min(layer.mlp_size, MLP_UNITS), _kept_units(layer, units)
        rows(layer.up, first, kept)
        rows(layer.gate, first, kept)
        value_rows = max(RAW_ROWS, block_sample(layer, SampleSize(ATTENTION_ROWS, 1)).kv_rows)
        rows(layer.v, 0, min(value_rows, model.source.info(layer.v.name).rows))
    _, vocab_ids, _ = model.vocabulary_rows(read=False)
    read = set(model.probes.within(FINGERPRINT_PROBES).token_ids.tolist())  # the fingerprint's probe rows
    probes = set(model.probes.token_ids.tolist()) - read
    for t in sorted(probes | (set(vocab_ids.tolist()) - read)):
        rows(model.roles.embedding, t, t + 1)
    for t in sorted(probes):
        rows(model.roles.head, t, t + 1)
    return plan


def _kept_units(layer: LayerRoles, units: int) -> int:
    """The first units a capture keeps: all of a narrow MLP, else its first sample (``indexer.unit_selection``)."""
    if layer.mlp_size <= units:
        return layer.mlp_size
    first = contiguous_units(layer)
    return units if first is None else min(first, units)


def _prefetch_canonical(model: ModelTensors) -> None:
    """Two rounds of coalesced reads for the canonical units: the down-projection rows that choose
    them, then their gate and up rows (scattered single rows)."""
    layers = [i for i, layer in enumerate(model.roles.layers) if canonical_eligible(layer)]
    gated = [i for i in layers if model.roles.layers[i].gate is not None]  # ungated: down is read whole
    model.source.prefetch_rows([read for i in gated for read in model.down_rows_for_selection(i)[1]], gap=1)
    rows: list[tuple[str, int, int]] = []
    for i in layers:
        layer, chosen = model.roles.layers[i], model.canonical_units(i)
        assert chosen is not None  # eligible blocks choose units
        per_unit = [ref for ref in (layer.gate, layer.up) if ref is not None and not ref.transpose]
        rows += [(ref.name, int(u), int(u) + 1) for ref in per_unit for u in chosen]
    model.source.prefetch_rows(rows, gap=1)


def capture(model: ModelTensors, units: int = UNITS) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(manifest, arrays) of one model's evidence (module docstring), read through ``model``."""
    roles = model.roles
    model.source.prefetch_rows(capture_plan(model, units), gap=1)  # touching spans merge, gaps are never read
    _prefetch_canonical(model)
    arrays: dict[str, torch.Tensor] = {}
    probes = model.probes
    arrays["probe_positions"] = torch.from_numpy(probes.positions)
    arrays["probe_ids"] = torch.from_numpy(probes.token_ids)
    arrays["probe_embedding"] = compact(model.embedding_rows(probes.token_ids))
    head = model.head_rows(probes.token_ids)
    if head is not None:
        arrays["probe_head"] = compact(head)
    pieces, ids, rows = model.vocabulary_rows()
    arrays["vocab_ids"] = torch.from_numpy(ids)
    arrays["vocab_rows"] = compact(rows)
    layers = []
    for i, layer in enumerate(roles.layers):
        total = layer.mlp_size
        kept = _kept_units(layer, units)
        span = (0, kept) if total > kept else (None, None)
        glu = layer.gate is not None
        arrays[f"up.{i}"] = compact(model.raw_rows(layer.up, 0, kept))
        if glu:
            assert layer.gate is not None
            arrays[f"gate.{i}"] = compact(model.raw_rows(layer.gate, 0, kept))
        if not glu or model.source.info(layer.down.name).nbytes <= GATED_DOWN_BYTES:
            mlp = model.mlp(i, *span)
            assert mlp.down_t is not None  # asked for
            arrays[f"down_t.{i}"] = compact(mlp.down_t)
        arrays[f"mlp_gain.{i}"] = compact(model.loader.gain(layer.mlp_norm, roles.hidden_size))
        first, second = model.unit_descriptors(i, kept if total > kept else None)
        canonical = model.canonical_rows(i)
        if canonical is not None:
            units_kept = model.canonical_units(i)
            assert units_kept is not None  # rows come with their units
            arrays[f"canonical_units.{i}"] = torch.from_numpy(units_kept.astype(np.int64))
            if glu:
                arrays[f"canonical_gate.{i}"] = compact(canonical[0])
                arrays[f"canonical_up.{i}"] = compact(canonical[1])
            else:  # raw up rows and the down columns
                arrays[f"canonical_up.{i}"] = compact(canonical[0])
                arrays[f"canonical_down_t.{i}"] = compact(canonical[1])
        arrays[f"desc_read.{i}"] = torch.from_numpy(first)
        arrays[f"desc_write.{i}"] = torch.from_numpy(second)
        for name, raw in zip("qkv", model.raw_attention_rows(i)):
            arrays[f"raw_{name}.{i}"] = compact(raw)
        layers.append({"units": total, "kept": kept})
    chosen = whole_layers(len(roles.layers))
    if chosen and sum(_block_bytes(model, i) for i in chosen) <= WHOLE_BLOCK_BYTES:
        arrays["whole"] = model.whole_block_vectors(chosen).float()
    else:
        chosen = []
    manifest = {
        "version": CAPTURE_VERSION,
        "label": model.label,
        "config": model.source.read_json("config.json"),
        "tensors": [[t.name, t.dtype, list(t.shape), t.file, t.begin, t.end] for t in model.source.tensors().values()],
        "vocabulary": _vocabulary_json(model.vocabulary),
        "vocab_pieces": pieces,
        "layers": layers,
        "whole_layers": chosen,
    }
    return manifest, arrays


class StoredModel(ShapeFacts):
    """One model's captured evidence with the methods of ``ModelTensors`` the tests and the
    lineage stage call; reads only the evidence file."""

    def __init__(self, evidence: EvidenceFile, label: str | None = None) -> None:
        self.evidence = evidence
        self.manifest = evidence.manifest
        self.label = label or self.manifest.get("label", "?")
        self._cache: dict[str, torch.Tensor] = {}

    def _get(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            self._cache[name] = self.evidence.tensor(name)
        return self._cache[name]

    @cached_property
    def roles(self) -> ModelRoles:
        tensors = {
            name: TensorInfo(name, dtype, tuple(shape), file, begin, end)
            for name, dtype, shape, file, begin, end in self.manifest["tensors"]
        }
        return roles_for(self.manifest.get("config"), tensors)

    @cached_property
    def vocabulary(self) -> Vocabulary | None:
        data = self.manifest.get("vocabulary")
        if data is None:
            return None
        return Vocabulary(dict(data["tokens"]), data["style"], data["size"], data["digest"], data["source"])

    @cached_property
    def probes(self) -> ProbeSelection:
        return ProbeSelection(self._get("probe_positions").numpy(), self._get("probe_ids").numpy())

    def _rows(self, token_ids: np.ndarray, matrix: str, ids: str) -> torch.Tensor:
        stored = self._get(ids).numpy()
        where = {int(t): k for k, t in enumerate(stored)}
        missing = [int(t) for t in token_ids if int(t) not in where]
        if missing:
            raise EvidenceMissingError(f"{self.label}: no stored {matrix} row for token ids {missing[:5]}")
        return self._get(matrix)[[where[int(t)] for t in token_ids]].float()

    def embedding_rows(self, token_ids: np.ndarray) -> torch.Tensor:
        probes = set(self.probes.token_ids.tolist())
        if all(int(t) in probes for t in token_ids):
            return self._rows(token_ids, "probe_embedding", "probe_ids")
        return self._rows(token_ids, "vocab_rows", "vocab_ids")

    def head_rows(self, token_ids: np.ndarray) -> torch.Tensor | None:
        if self.roles.head is None:
            return None
        return self._rows(token_ids, "probe_head", "probe_ids")

    def vocabulary_rows(self, *, read: bool = True) -> tuple[list[str], np.ndarray, torch.Tensor]:
        return list(self.manifest["vocab_pieces"]), self._get("vocab_ids").numpy(), self._get("vocab_rows").float()

    def _kept(self, layer: int, start: int | None, stop: int | None) -> slice:
        kept = int(self.manifest["layers"][layer]["kept"])
        begin, end = start or 0, kept if stop is None else stop
        if end > kept:
            raise EvidenceMissingError(f"{self.label}: block {layer} keeps units [0, {kept}), not [{begin}, {end})")
        return slice(begin, end)

    def mlp(self, layer: int, start: int | None = None, stop: int | None = None, *, down: bool = True) -> Mlp:
        part = self._kept(layer, start, stop)
        gain = self._get(f"mlp_gain.{layer}").float()
        gate = self._get(f"gate.{layer}")[part].float() * gain if self.glu else None
        up = self._get(f"up.{layer}")[part].float() * gain
        down_t = self._get(f"down_t.{layer}")[part].float() if down else None
        return Mlp(gate=gate, up=up, down_t=down_t)

    def unit_descriptors(self, layer: int, units: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        part = self._kept(layer, None, units)
        return self._get(f"desc_read.{layer}")[part].numpy(), self._get(f"desc_write.{layer}")[part].numpy()

    def raw_up_rows(self, layer: int, start: int, stop: int) -> torch.Tensor:
        return self._get(f"up.{layer}")[self._kept(layer, start, stop)].float()

    def canonical_units(self, layer: int) -> np.ndarray | None:
        if f"canonical_units.{layer}" not in self.evidence:
            return None
        return self._get(f"canonical_units.{layer}").numpy()

    def canonical_mlp(self, layer: int) -> Mlp | None:
        if self.canonical_units(layer) is None:
            return None
        gain = self._get(f"mlp_gain.{layer}").float()
        up = self._get(f"canonical_up.{layer}").float() * gain
        if f"canonical_gate.{layer}" not in self.evidence:  # an ungated block: up rows and down columns
            return Mlp(gate=None, up=up, down_t=self._get(f"canonical_down_t.{layer}").float())
        return Mlp(gate=self._get(f"canonical_gate.{layer}").float() * gain, up=up, down_t=None)

    def raw_attention_rows(self, layer: int) -> list[torch.Tensor]:
        return [self._get(f"raw_{name}.{layer}").float() for name in "qkv"]

    def whole_block_vectors(self, layers: list[int]) -> torch.Tensor:
        stored = list(self.manifest.get("whole_layers", []))
        missing = [i for i in layers if i not in stored]
        if missing:
            raise EvidenceMissingError(f"{self.label}: no whole-block vectors stored for blocks {missing}")
        whole = self._get("whole")
        return torch.stack([whole[stored.index(i)] for i in layers])

    def close(self) -> None:
        self.evidence.close()
