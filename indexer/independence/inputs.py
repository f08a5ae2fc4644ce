"""What the independence tests read from a checkpoint, loaded lazily through its TensorSource.

Only the tensors a test needs are read: probe rows of the embedding and head, and per block the
MLP matrices (or a contiguous block of their rows: one range read).  Matrices come back in the
canonical orientation with norm gains folded (``indexer.canonical``), so a model whose gains were
folded or rescaled looks the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import torch

from pedigree.errors import UnsupportedModelError
from pedigree.indexer.adapters import MatrixLoader, MatrixRef, ModelRoles, roles_for
from pedigree.indexer.adapters.base import PIXEL_PROBES
from pedigree.indexer.block_signatures import BlockRows, matching_descriptors, read_attention
from pedigree.indexer.canonical import normalize_rows
from pedigree.indexer.fingerprint import whole_block_vectors
from pedigree.indexer.probes import ProbeSelection, pixel_vocabulary, select_probes
from pedigree.indexer.sources import TensorSource
from pedigree.indexer.unit_selection import canonical_eligible, residual_dims, select_units
from pedigree.indexer.vocabulary import Vocabulary, read_vocabulary, vocabulary_sample

EXACT_DESCRIPTORS = 1 << 24  # unit descriptors of blocks up to this many MLP weights are computed in float64
TEST_PROBES: int | None = None  # the tests use every probe of the global list (None: no prefix)
RAW_ROWS = 32  # first rows of q, k and v kept raw for the lineage evidence
VOCAB_SAMPLE_BYTES = 2**20  # embedding rows of the vocabulary's hashed sample: about this many bytes (bf16)
VOCAB_MIN_ROWS = 256


@dataclass(frozen=True)
class Mlp:
    """One block's MLP: rows are hidden units.  ``gate`` is None for non-GLU MLPs."""

    gate: torch.Tensor | None  # [units, hidden], gain folded
    up: torch.Tensor  # [units, hidden], gain folded
    down_t: torch.Tensor | None  # [units, hidden]: down projection transposed (None for a row block)


class ModelEvidence(Protocol):
    """What the tests and the lineage evidence ask of a model: a live checkpoint
    (:class:`ModelTensors`) or its stored evidence (``indexer.stored_model.StoredModel``)."""

    label: str

    @property
    def roles(self) -> ModelRoles: ...
    @property
    def probes(self) -> ProbeSelection: ...
    @property
    def vocabulary(self) -> Vocabulary | None: ...
    @property
    def depth(self) -> int: ...
    @property
    def glu(self) -> bool: ...
    def mlp_units(self, layer: int) -> int: ...
    def probe_rows(self, token_ids: np.ndarray) -> torch.Tensor: ...
    def embedding_rows(self, token_ids: np.ndarray) -> torch.Tensor: ...
    def head_rows(self, token_ids: np.ndarray) -> torch.Tensor | None: ...
    def mlp(self, layer: int, start: int | None = None, stop: int | None = None, *, down: bool = True) -> Mlp: ...
    def unit_descriptors(self, layer: int, units: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def raw_up_rows(self, layer: int, start: int, stop: int) -> torch.Tensor: ...
    def canonical_units(self, layer: int) -> np.ndarray | None: ...
    def canonical_mlp(self, layer: int) -> Mlp | None: ...
    def raw_attention_rows(self, layer: int) -> list[torch.Tensor]: ...
    def whole_block_vectors(self, layers: list[int]) -> torch.Tensor: ...
    def vocabulary_rows(self, *, read: bool = True) -> tuple[list[str], np.ndarray, torch.Tensor]: ...
    def close(self) -> None: ...


class ShapeFacts:
    """What follows from a model's roles alone, shared by :class:`ModelTensors` and the stored
    evidence (``indexer.stored_model.StoredModel``)."""

    @property
    def roles(self) -> ModelRoles:
        raise NotImplementedError

    @property
    def depth(self) -> int:
        return len(self.roles.layers)

    @property
    def glu(self) -> bool:
        return self.roles.layers[0].gate is not None if self.roles.layers else False

    def mlp_units(self, layer: int) -> int:
        return self.roles.layers[layer].mlp_size

    def embedding_rows(self, token_ids: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def probe_rows(self, token_ids: np.ndarray) -> torch.Tensor:
        """X̂: normalised embedding rows of the given tokens (as the first norm would see them)."""
        return normalize_rows(self.embedding_rows(token_ids), self.roles.norm_kind)


class ModelTensors(ShapeFacts):
    """Lazy, cached access to one checkpoint's tensors for the tests."""

    def __init__(self, source: TensorSource, label: str | None = None) -> None:
        self.source = source
        self.label = label or source.label
        self.loader = MatrixLoader(source)
        self._mlp: dict[tuple[int, int | None, int | None, bool], Mlp] = {}
        self._units: dict[tuple[int, int | None], tuple[np.ndarray, np.ndarray]] = {}
        self._canonical: dict[int, np.ndarray | None] = {}
        self._canonical_down: dict[int, torch.Tensor] = {}  # an ungated block's canonical down columns

    @cached_property
    def roles(self) -> ModelRoles:
        return roles_for(self.source.read_json("config.json"), self.source.tensors())

    @cached_property
    def vocabulary(self) -> Vocabulary | None:
        if self.roles.probe_kind == PIXEL_PROBES:  # a vision encoder: pixel tokens, no tokenizer
            return pixel_vocabulary(self.roles.vocab_size)
        return read_vocabulary(self.source)

    @cached_property
    def probes(self) -> ProbeSelection:
        if self.vocabulary is None:
            raise UnsupportedModelError(f"{self.label}: no tokenizer files, so no probe tokens")
        return select_probes(self.vocabulary, self.roles.vocab_size, TEST_PROBES)

    def rows_of(self, ref: MatrixRef, token_ids: np.ndarray) -> torch.Tensor:
        return self.loader.rows(ref, torch.from_numpy(token_ids))

    def embedding_rows(self, token_ids: np.ndarray) -> torch.Tensor:
        return self.rows_of(self.roles.embedding, token_ids)

    def head_rows(self, token_ids: np.ndarray) -> torch.Tensor | None:
        """Rows of an untied LM head (None when tied or absent)."""
        return None if self.roles.head is None else self.rows_of(self.roles.head, token_ids)

    def mlp(self, layer: int, start: int | None = None, stop: int | None = None, *, down: bool = True) -> Mlp:
        """The block's MLP, gain folded; with ``start``/``stop`` only that contiguous unit block.

        A block is read with one range request per matrix (gate/up rows are contiguous); the down
        projection's units are its columns, which are not contiguous, so its block comes from the
        whole matrix (``down=False`` skips it: GLU tests never need it).
        """
        key = (layer, start, stop, down)
        if key not in self._mlp:
            roles = self.roles.layers[layer]
            gain = self.loader.gain(roles.mlp_norm, self.roles.hidden_size)

            def rows(ref: MatrixRef | None) -> torch.Tensor | None:
                if ref is None:
                    return None
                if start is None:
                    return self.loader.matrix(ref) * gain
                assert stop is not None  # a unit block has both ends
                if ref.transpose or ref.parts != 1:  # fused or stacked: only the stored rows that hold them
                    return self.loader.matrix_rows(ref, start, stop) * gain
                return self.source.read_rows(ref.name, start, stop).float() * gain

            down_t = self.loader.matrix(roles.down).t()[start:stop].contiguous() if down else None
            gate, up = rows(roles.gate), rows(roles.up)
            assert up is not None  # every MLP has an up projection
            self._mlp[key] = Mlp(gate=gate, up=up, down_t=down_t)
        return self._mlp[key]

    def unit_descriptors(self, layer: int, units: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embedding-free (read, write) descriptors of the block's first ``units`` MLP units (None:
        all of them), for the ``block_units`` test (``indexer.block_signatures``), from the MLP
        rows :meth:`mlp` reads (and caches for the other tests) and the sampled heads' rows."""
        key = (layer, units)
        if key not in self._units:
            roles = self.roles.layers[layer]
            glu = roles.gate is not None
            span = (0, units) if units is not None else (None, None)
            mlp = self.mlp(layer, *span, down=not glu)  # ungated: the second description needs the down columns
            q, k, v = read_attention(self.loader, self.roles, roles)
            read = (mlp.gate if mlp.gate is not None else mlp.up)[:units]
            dtype = torch.float64 if read.numel() <= EXACT_DESCRIPTORS else torch.float32  # a 7B block: float32
            rows = BlockRows(
                q=q,
                k=k,
                v=v,
                head_dim=roles.head_dim,
                read=read.to(dtype),
                up=mlp.up[:units].to(dtype) if glu else None,
                down_t=None if mlp.down_t is None else mlp.down_t[:units].to(dtype),
            )
            with torch.no_grad():
                first, second = matching_descriptors(rows)
            self._units[key] = (first.numpy(), second.numpy())
        return self._units[key]

    def down_rows_for_selection(self, layer: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """(J, the row reads of W_down[J]) for the block's canonical units (``indexer.unit_selection``)."""
        roles = self.roles.layers[layer]
        dims = residual_dims(self.loader.gain(roles.mlp_norm, self.roles.hidden_size).numpy())
        return dims, [(roles.down.name, int(j), int(j) + 1) for j in dims]

    def canonical_units(self, layer: int) -> np.ndarray | None:
        """The block's canonical MLP units (sorted ids), None when it has none (not a wide MLP
        with one down matrix): ``indexer.unit_selection``.  A gated block reads the |J| down rows;
        an ungated one takes them from its down projection, which its tests read whole."""
        if layer not in self._canonical:
            roles = self.roles.layers[layer]
            chosen = None
            if canonical_eligible(roles):
                dims, reads = self.down_rows_for_selection(layer)
                if roles.gate is None:  # the whole down projection, once: it also gives the units' columns
                    whole = self.loader.matrix(roles.down).float()
                    chosen = select_units(whole[torch.from_numpy(dims)].numpy())
                    self._canonical_down[layer] = whole.t()[torch.from_numpy(chosen.astype(np.int64))].contiguous()
                else:
                    down = torch.cat([self.source.read_rows(name, a, b).float() for name, a, b in reads])
                    chosen = select_units(down.numpy())
            self._canonical[layer] = chosen
        return self._canonical[layer]

    def canonical_rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Raw (unfolded) rows of the canonical units: (gate, up) of a gated block, one row read
        each; (up, down columns) of an ungated one (its down projection is read whole)."""
        units = self.canonical_units(layer)
        if units is None:
            return None
        roles = self.roles.layers[layer]
        if roles.gate is None:
            index = torch.from_numpy(units.astype(np.int64))
            if roles.up.transpose:  # GPT-2's Conv1D: the up units are stored columns, read whole
                up = self.loader.matrix(roles.up)[index].float()
            else:
                up = torch.cat([self.source.read_rows(roles.up.name, int(u), int(u) + 1).float() for u in units])
            return up, self._canonical_down[layer]
        gate = torch.cat([self.source.read_rows(roles.gate.name, int(u), int(u) + 1).float() for u in units])
        up = torch.cat([self.source.read_rows(roles.up.name, int(u), int(u) + 1).float() for u in units])
        return gate, up

    def canonical_mlp(self, layer: int) -> Mlp | None:
        """The canonical units, gain folded: gate and up rows of a gated block, up rows and down
        columns of an ungated one."""
        rows = self.canonical_rows(layer)
        if rows is None:
            return None
        gain = self.loader.gain(self.roles.layers[layer].mlp_norm, self.roles.hidden_size)
        if self.roles.layers[layer].gate is None:
            return Mlp(gate=None, up=rows[0] * gain, down_t=rows[1])
        return Mlp(gate=rows[0] * gain, up=rows[1] * gain, down_t=None)

    def raw_attention_rows(self, layer: int) -> list[torch.Tensor]:
        """The first :data:`RAW_ROWS` rows of the block's q, k and v, raw (unfolded, own coordinates)."""
        roles = self.roles.layers[layer]
        out = []
        for ref in (roles.q, roles.k, roles.v):
            if ref.transpose or ref.parts != 1:
                out.append(self.loader.matrix(ref)[:RAW_ROWS].float())
            else:
                rows = min(RAW_ROWS, self.source.info(ref.name).rows)
                out.append(self.source.read_rows(ref.name, 0, rows).float())
        return out

    def whole_block_vectors(self, layers: list[int]) -> torch.Tensor:
        """Block vectors of ``layers`` read whole (``indexer.fingerprint.whole_block_vectors``)."""
        return whole_block_vectors(self.loader, self.roles, self.probes, layers)

    def close(self) -> None:
        self.source.close()

    def raw_rows(self, ref: MatrixRef, start: int, stop: int) -> torch.Tensor:
        """Unfolded rows [start, stop) of a matrix (one range read unless it is transposed or fused)."""
        if ref.transpose or ref.parts != 1:
            return self.loader.matrix_rows(ref, start, stop)
        return self.source.read_rows(ref.name, start, stop).float()

    def raw_up_rows(self, layer: int, start: int, stop: int) -> torch.Tensor:
        """Unfolded up-projection rows [start, stop) (the constrained test's cheap read)."""
        return self.raw_rows(self.roles.layers[layer].up, start, stop)

    @cached_property
    def _vocabulary_sample(self) -> list[tuple[str, int]]:
        if self.vocabulary is None:
            return []
        count = max(VOCAB_MIN_ROWS, VOCAB_SAMPLE_BYTES // (2 * self.roles.hidden_size))
        return vocabulary_sample(self.vocabulary, self.roles.vocab_size, count)

    def vocabulary_rows(self, *, read: bool = True) -> tuple[list[str], np.ndarray, torch.Tensor]:
        """(pieces, token ids, embedding rows) of the vocabulary's hashed sample
        (``indexer.vocabulary.vocabulary_sample``: about :data:`VOCAB_SAMPLE_BYTES` of rows, at
        least :data:`VOCAB_MIN_ROWS`), for the pruned-or-extended vocabulary evidence
        (``read=False``: the rows are left unread and empty)."""
        sample = self._vocabulary_sample
        ids = np.array([i for _, i in sample], dtype=np.int64)
        rows = self.embedding_rows(ids) if read else torch.zeros(0, self.roles.hidden_size)
        return [p for p, _ in sample], ids, rows


def shared_probes(a: ModelEvidence, b: ModelEvidence) -> tuple[np.ndarray, np.ndarray]:
    """Token ids in A and in B of the probe strings both vocabularies contain (same order)."""
    common, in_a, in_b = np.intersect1d(a.probes.positions, b.probes.positions, assume_unique=True, return_indices=True)
    del common
    return a.probes.token_ids[in_a], b.probes.token_ids[in_b]
