"""The read plan: how many bytes indexing one model reads, known before any weight is read.

The budget of a model comes from what the recipe reads, never from the sizes a server (or a
header) claims: per tensor, the rows the fingerprint's sample (``indexer.sampling``), the block
signatures, the weight statistics and the evidence capture (``indexer.stored_model``) take, times
the tensor's row size; a tensor that cannot be read by rows (transposed, or rows not contiguous)
and an ungated MLP's down projection count whole.  The counts are upper bounds of those stages'
constants.

A tensor whose share is over :data:`MAX_TENSOR_READ` - one attention head 32,768 wide makes the
sample of q the whole 4 GiB matrix - or a model whose plan is over :data:`MAX_MODEL_READ` fails
with that reason (:class:`~pedigree.errors.CheckpointError`) before a byte of its weights is read;
the plan's total then bounds the source's byte budget and deadline (``limit_reads``).
"""

from __future__ import annotations

from collections.abc import Iterable

from pedigree.errors import CheckpointError
from pedigree.indexer.adapters.base import MatrixLoader, MatrixRef, ModelRoles
from pedigree.indexer.block_signatures import ATTENTION_ROWS, MAX_UNITS
from pedigree.indexer.independence.inputs import RAW_ROWS, VOCAB_MIN_ROWS, VOCAB_SAMPLE_BYTES
from pedigree.indexer.probes import probe_keys
from pedigree.indexer.sampling import MLP_UNITS, SampleSize, block_sample
from pedigree.indexer.sources import TensorSource
from pedigree.indexer.stored_model import GATED_DOWN_BYTES, WHOLE_BLOCK_BYTES
from pedigree.indexer.unit_selection import (
    CANONICAL_UNITS,
    DOWN_ROWS,
    WHOLE_MLP,
    WIDE_FIRST_UNITS,
    WIDE_MLP,
    canonical_eligible,
)
from pedigree.indexer.weight_stats import GRID_ROWS

MAX_TENSOR_READ = 256 * 2**20
"""The most bytes any one tensor may cost a model (a GPT-NeoX-12B down projection, read whole, is 200 MB)."""
MAX_MODEL_READ = 16 * 2**30
"""The most bytes one model's plan may add up to."""
UNIT_ROWS = max(MLP_UNITS, WIDE_MLP, MAX_UNITS, GRID_ROWS, WIDE_FIRST_UNITS + CANONICAL_UNITS)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class _Plan:
    def __init__(self, source: TensorSource) -> None:
        self.source, self.loader = source, MatrixLoader(source)
        self.spans: dict[str, list[tuple[int, int]]] = {}
        self.why: dict[str, str] = {}

    def whole(self, name: str | None, why: str) -> None:
        if name:
            self.spans.setdefault(name, []).append((0, self.source.info(name).rows))
            self.why.setdefault(name, why)

    def rows(self, ref: MatrixRef | None, count: int) -> None:
        """Rows ``[0, count)`` of the matrix ``ref`` (the stored rows that hold them)."""
        if ref is None:
            return
        count = min(count, self.loader.matrix_row_count(ref))
        if ref.stack:  # experts stacked as one matrix: the rows of every piece they reach
            for name, start, stop in self.loader.stored_reads(ref, 0, count):
                self.spans.setdefault(name, []).append((start, stop))
            return
        span = ref.stored_rows(0, count, self.loader.matrix_row_count(ref))
        if span is None:
            self.whole(ref.name, "its rows are not contiguous in storage")
        else:
            self.spans.setdefault(ref.name, []).append(span)

    def token_rows(self, ref: MatrixRef | None, count: int) -> None:
        """``count`` scattered rows of a token matrix (embedding, head)."""
        if ref is None:
            return
        if ref.transpose or ref.parts != 1:
            self.whole(ref.name, "a token matrix stored transposed")
        else:
            rows = min(count, self.source.info(ref.name).rows)
            self.spans.setdefault(ref.name, []).append((0, rows))

    def bytes_of(self, name: str) -> tuple[int, int]:
        """(rows, bytes) of the union of ``name``'s spans."""
        info = self.source.info(name)
        rows = sum(b - a for a, b in _union(self.spans[name]))
        return rows, min(info.nbytes, rows * info.row_nbytes)


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def read_plan(source: TensorSource, roles: ModelRoles) -> int:
    """Bytes indexing this model reads at most (module docstring); ``CheckpointError`` naming the
    tensor when one is over :data:`MAX_TENSOR_READ`, or the model over :data:`MAX_MODEL_READ`."""
    plan = _Plan(source)
    signature = SampleSize(ATTENTION_ROWS, 1)
    for layer in roles.layers:
        fingerprint, described = block_sample(layer, SampleSize()), block_sample(layer, signature)
        plan.rows(layer.q, max(fingerprint.q_rows, described.q_rows, RAW_ROWS, GRID_ROWS))
        plan.rows(layer.k, max(fingerprint.kv_rows, described.kv_rows, RAW_ROWS))
        plan.rows(layer.v, max(described.kv_rows, RAW_ROWS))
        # an ungated block's canonical units are single up rows beyond its first WIDE_MLP (as many bytes)
        ungated_canonical = layer.gate is None and canonical_eligible(layer)
        unit_rows = max(UNIT_ROWS, layer.mlp_size if layer.mlp_size <= WHOLE_MLP else 0)  # a narrow MLP: whole
        plan.rows(layer.up, unit_rows + CANONICAL_UNITS * ungated_canonical)
        plan.rows(layer.gate, unit_rows)
        if layer.gate is None or source.info(layer.down.name).nbytes <= GATED_DOWN_BYTES:
            plan.whole(layer.down.name, "an MLP's down projection is read whole")
        elif canonical_eligible(layer):  # the rows that choose the canonical units (as many bytes as the first rows)
            plan.rows(layer.down, DOWN_ROWS)
        for norm in (layer.attn_norm, layer.mlp_norm, layer.q_norm, layer.k_norm):
            plan.whole(norm.weight if norm else None, "a norm gain")
    probes = len(probe_keys())
    vocabulary = max(VOCAB_MIN_ROWS, VOCAB_SAMPLE_BYTES // (2 * max(1, roles.hidden_size)))
    plan.token_rows(roles.embedding, probes + vocabulary)
    plan.token_rows(roles.head, probes)
    plan.whole(roles.final_norm.weight if roles.final_norm else None, "a norm gain")
    total = WHOLE_BLOCK_BYTES
    for name in sorted(plan.spans):
        rows, nbytes = plan.bytes_of(name)
        if nbytes > MAX_TENSOR_READ:
            info = source.info(name)
            how = (
                f"is read whole ({plan.why[name]})"
                if name in plan.why
                else f"has rows of {_size(info.row_nbytes)}: its sample is {rows} of them"
            )
            raise CheckpointError(
                f"tensor {name!r} {how}, {_size(nbytes)} - over the {_size(MAX_TENSOR_READ)} one tensor may "
                "cost (its rows or heads are too wide to sample)",
                path=source.label,
            )
        total += nbytes
    if total > MAX_MODEL_READ:
        raise CheckpointError(
            f"indexing would read {_size(total)} of this model, over the {_size(MAX_MODEL_READ)} one model may cost",
            path=source.label,
        )
    return total
