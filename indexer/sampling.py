"""Which rows of each block the fingerprint reads: a fixed, position-based sample.

A 7B checkpoint is ~13.5 GB; reading every block to fingerprint it costs as much as downloading
it.  The fingerprint therefore reads, per block, only

* the first ``kv`` key/value heads and the query heads they serve (whole GQA groups), as many
  groups as fit in ``attention_rows`` query rows and at least one;
* the first ``mlp_units`` units of the MLP (rows of up and gate);
* the norm gains the canonical form folds in.

These rows are contiguous in storage, so each is one range request (GPT-2's transposed Conv1D
tensors are the exception: they are read whole).  Small models whose heads and units fit in the
sample are read completely.  A fixed position-based sample is a uniform sample of a block's units
and heads: at initialisation units (and heads) are exchangeable, so which ones sit first is
independent of what they learn; a derivative that keeps its parent's layout (fine-tunes, merges,
quantisation, pruning that keeps the first units) is read at the very same units, and a permuted
copy at a different sample of the same population (see ``indexer.fingerprint``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pedigree.errors import CheckpointError
from pedigree.indexer.adapters.base import LayerRoles, MatrixLoader, MatrixRef, NormRef
from pedigree.indexer.versions import ATTENTION_ROWS, MLP_UNITS, SampleSize

__all__ = ["ATTENTION_ROWS", "MLP_UNITS", "BlockSample", "SampleSize", "block_reads", "block_sample", "check_block"]


@dataclass(frozen=True)
class BlockSample:
    """The first ``kv_heads`` key/value heads, the ``q_heads`` query heads they serve, and the
    first ``units`` MLP units of one block."""

    kv_heads: int
    q_heads: int
    units: int
    head_dim: int

    @property
    def q_rows(self) -> int:
        return self.q_heads * self.head_dim

    @property
    def kv_rows(self) -> int:
        return self.kv_heads * self.head_dim


def check_block(layer: LayerRoles) -> None:
    """``CheckpointError`` unless the block has heads and units to sample: at least one query and
    key/value head, heads at least one row wide, query heads a multiple of key/value heads and at
    least one MLP unit (a config and tensors that agree on zero-width heads pass every shape check)."""
    sizes = {
        "query heads": layer.num_heads,
        "key/value heads": layer.num_kv_heads,
        "head width": layer.head_dim,
        "MLP units": layer.mlp_size,
    }
    empty = [f"{what} = {n}" for what, n in sizes.items() if n < 1]
    if empty:
        raise CheckpointError(f"block {layer.index} has nothing to sample ({', '.join(empty)})")
    if layer.num_heads % layer.num_kv_heads:
        raise CheckpointError(
            f"block {layer.index}: {layer.num_heads} query heads are not a multiple of "
            f"{layer.num_kv_heads} key/value heads"
        )


def block_sample(layer: LayerRoles, size: SampleSize) -> BlockSample:
    """Whole GQA groups up to ``size.attention_rows`` query rows (at least one group), and
    ``min(mlp_size, size.mlp_units)`` units (:func:`check_block` first)."""
    check_block(layer)
    group = layer.num_heads // layer.num_kv_heads
    groups = max(1, min(layer.num_kv_heads, size.attention_rows // (group * layer.head_dim)))
    return BlockSample(groups, groups * group, min(layer.mlp_size, size.mlp_units), layer.head_dim)


def _norm_names(*norms: NormRef | None) -> list[str]:
    return [name for norm in norms if norm is not None for name in (norm.weight,) if name]


def block_reads(loader: MatrixLoader, layer: LayerRoles, sample: BlockSample) -> list[tuple[str, int, int]]:
    """(tensor, first stored row, end row) of everything the fingerprint reads for one block."""
    wanted: list[tuple[MatrixRef | None, int]] = [
        (layer.q, sample.q_rows),
        (layer.k, sample.kv_rows),
        (layer.up, sample.units),
        (layer.gate, sample.units),
    ]
    reads = [read for ref, rows in wanted if ref is not None for read in loader.stored_reads(ref, 0, rows)]
    for name in _norm_names(layer.attn_norm, layer.mlp_norm, layer.q_norm, layer.k_norm):
        reads.append((name, 0, loader.source.info(name).rows))
    return reads
