"""Token-space invariant fingerprints (HuRef's invariant terms, fixed as the reference notes say),
computed from a fixed sample of each block's rows so that a 7B checkpoint costs ~1.1 % of its bytes.

With X̂ the normalised input-embedding rows of the n probe tokens (``indexer.probes``) and each
block's sampled canonical rows (``indexer.sampling``, ``indexer.canonical``; x is a row vector, W
is [out, in], S the sampled heads, U the sampled MLP units):

    QK term    M_qk   = Σ_{h∈S} (X̂ W_q,hᵀ)(X̂ W_k,hᵀ)ᵀ     content part of the sampled heads' logits
    up term    M_up   = Σ_{u∈U} r̂_u r̂_uᵀ,  r_u = X̂ w_up,u   co-activation of probe pairs over units
    gate term  M_gate = the same with w_gate,u            (gated MLPs only)

with r̂ = r / ‖r‖ (per-unit scale removed).  Residual permutation or (RMSNorm models) rotation R
rotates X̂ and every row together (X̂R Rᵀwᵀ), per-head maps C cancel in W_q,hᵀ W_k,h, per-unit
rescaling (up × s, down ÷ s) cancels in r̂ r̂ᵀ (its sign too) and folded norm gains make gain
rescaling invisible: these terms are exactly invariant.  Permuting heads or MLP units changes
*which* heads and units sit in the sample; the terms are then sums over another sample of the same
population (all of them, exactly invariant again, when a block's heads/units fit in the sample).
HuRef's OV and down-projection terms are dropped: o and down store heads and units as columns, so
a sample of them is not contiguous in the file.

Each n x n term is z-scored over its off-diagonal entries and compressed by a seeded rank-one
Gaussian sketch (``indexer.sketch``, from the low-rank factors) to D numbers; a block's vector is
the normalised sum of its unit-normalised term sketches (cosine ≈ mean of the term correlations,
HuRef's ICS).  The model vector is the normalised sum of the block vectors.  Two more vectors
describe the embedding (M_emb = X̂ X̂ᵀ) and the output head (M_head = X̂ Ôᵀ, final gain folded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Self

import torch

from pedigree.errors import CheckpointError
from pedigree.indexer import bf16
from pedigree.indexer.adapters.base import MatrixLoader, MatrixRef, ModelRoles
from pedigree.indexer.canonical import (
    CanonicalLayer,
    canonical_layer,
    head_ref,
    head_rows,
    probe_rows,
)
from pedigree.indexer.probes import MIN_PROBES, ProbeSelection, probe_keys, probe_list_digest
from pedigree.indexer.sampling import SampleSize, block_reads, block_sample
from pedigree.indexer.sketch import Projection, sketch_product, sketch_products, unit, unit_rows
from pedigree.indexer.versions import (
    DEFAULT_DIM,
    DEFAULT_SAMPLE,
    FINGERPRINT_PROBES,
    FINGERPRINT_RECIPE,
    fingerprint_version,
    sketch_version,
)

READ_AHEAD_BLOCKS = 16  # blocks whose sampled rows may be requested ahead of the maths (~25 MB for a 7B)
SKETCH_BATCH = 4  # blocks sketched together: a few large tensor operations instead of many small ones


@dataclass(frozen=True)
class Fingerprint:
    """Unit vectors of one model: per block, for the whole model, the embedding and the head."""

    version: str
    model: torch.Tensor  # [D]
    layers: torch.Tensor  # [L, D]
    embedding: torch.Tensor  # [D]
    head: torch.Tensor | None  # [D], None for encoders without an LM head
    probe_count: int

    @property
    def dim(self) -> int:
        return int(self.model.shape[0])


def _unit_columns(r: torch.Tensor) -> torch.Tensor:
    """r_u / ‖r_u‖ for every column u of each [n, r] matrix (zero columns stay zero)."""
    return r / torch.clamp(torch.linalg.vector_norm(r, dim=-2, keepdim=True), min=1e-30)


def _layout(layer: CanonicalLayer) -> tuple[int, ...]:
    """Sampled row counts of a block: blocks with the same layout are sketched together."""
    return (len(layer.q), len(layer.k), len(layer.up), -1 if layer.gate is None else len(layer.gate))


def block_factors(
    x: torch.Tensor, layers: Sequence[CanonicalLayer]
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Each term of a run of blocks with one layout (:func:`_layout`) as batched factors (A, B),
    [blocks, n, r] each, with M = A Bᵀ per block (B None: the Gram A Aᵀ; see the module
    docstring).  The responses X̂ Wᵀ of all sampled rows of the run come from one bfloat16 product
    (``indexer.bf16``; pass ``x`` already in bfloat16 to convert it once per model)."""
    first = layers[0]
    sizes = [len(first.q), len(first.k), len(first.up)] + ([len(first.gate)] if first.gate is not None else [])
    rows = torch.cat([m for layer in layers for m in (layer.q, layer.k, layer.up, layer.gate) if m is not None])
    responses = bf16.matmul(x, rows.t()).reshape(len(x), len(layers), sum(sizes)).transpose(0, 1).split(sizes, dim=2)
    factors: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {
        "qk": (responses[0], responses[1]),
        "up": (_unit_columns(responses[2]), None),
    }
    if first.gate is not None:
        factors["gate"] = (_unit_columns(responses[3]), None)
    return factors


class _Sketcher:
    """Sketches terms with one :class:`Projection` per term name (built once per model)."""

    def __init__(self, probes: ProbeSelection, dim: int, version: str) -> None:
        self.positions = torch.from_numpy(probes.positions)
        self.universe = len(probe_keys())
        self.dim = dim
        self.version = version
        self._projections: dict[str, Projection] = {}

    def prepare(self, *terms: str) -> None:
        """Build the projections of ``terms`` now (e.g. while the probe rows are on their way)."""
        for term in terms:
            if term not in self._projections:
                # u, v in bfloat16: bf16.matmul rounds them anyway
                self._projections[term] = Projection.of_bf16(
                    f"{self.version}/{term}", self.positions, self.universe, self.dim
                )

    def __call__(self, a: torch.Tensor, b: torch.Tensor, term: str) -> torch.Tensor:
        self.prepare(term)
        return unit(sketch_product(a, b, self._projections[term], bf16.matmul))

    def blocks(self, x16: torch.Tensor, layers: Sequence[CanonicalLayer]) -> torch.Tensor:
        """[blocks, D]: each block's vector, the normalised sum of its unit term sketches (blocks of one layout)."""
        total = torch.zeros(len(layers), self.dim)
        for name, (a, b) in block_factors(x16, layers).items():
            self.prepare(name)
            total += unit_rows(sketch_products(a, b, self._projections[name], bf16.matmul))
        return unit_rows(total)


class ReadAhead:
    """Reads a model's rows ahead: first the probe tokens' embedding rows the maths starts
    from, then each block's sampled rows (at most :data:`READ_AHEAD_BLOCKS` blocks ahead of the
    maths), then the probe tokens' output-head rows, used last.  The reads are queued on the
    source (``prefetch_rows_async``) in that order, one batch per block, so that on a remote
    source the link carries them back to back while the maths starts on each block as soon as
    its own rows are in."""

    def __init__(
        self, loader: MatrixLoader, roles: ModelRoles, token_ids: torch.Tensor, sample: SampleSize = DEFAULT_SAMPLE
    ) -> None:
        self.loader = loader
        self.samples = [block_sample(layer, sample) for layer in roles.layers]
        blocks = [block_reads(loader, layer, block) for layer, block in zip(roles.layers, self.samples)]
        ids = sorted(set(token_ids.tolist()))
        self._jobs = [_probe_reads(roles.embedding, ids), *blocks, _head_reads(roles, ids)]
        self._futures: list[Future[None]] = []
        self._request(1 + READ_AHEAD_BLOCKS)

    def _request(self, jobs: int) -> None:
        while len(self._futures) < min(jobs, len(self._jobs)):
            self._futures.append(self.loader.source.prefetch_rows_async(self._jobs[len(self._futures)]))

    def embedding_ready(self) -> None:
        """Wait until the probe tokens' embedding rows are cached (raising the read's error, if any)."""
        self._futures[0].result()

    def block_ready(self, index: int) -> None:
        """Wait until block ``index``'s rows are cached and keep the read-ahead requested beyond it."""
        self._request(index + 2 + READ_AHEAD_BLOCKS)
        self._futures[1 + index].result()

    def head_ready(self) -> None:
        """Wait until the probe tokens' output-head rows and the final norm are cached."""
        self._request(len(self._jobs))
        self._futures[-1].result()

    def close(self) -> None:
        """Stop waiting: requests still queued are the source's to cancel when it closes."""
        for future in self._futures:
            future.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _probe_reads(ref: MatrixRef | None, ids: list[int]) -> list[tuple[str, int, int]]:
    """(tensor, start, stop) of the probe tokens' rows of one token matrix (stored rows only)."""
    return [(ref.name, i, i + 1) for i in ids] if ref is not None and not ref.transpose and ref.parts == 1 else []


def _head_reads(roles: ModelRoles, ids: list[int]) -> list[tuple[str, int, int]]:
    """The probe tokens' output-head rows and the final norm (nothing new when the head is tied)."""
    reads = _probe_reads(head_ref(roles), ids)
    if roles.final_norm is not None and roles.final_norm.weight:
        reads.append((roles.final_norm.weight, 0, roles.hidden_size))
    return reads


def compute_fingerprint(
    loader: MatrixLoader,
    roles: ModelRoles,
    probes: ProbeSelection,
    *,
    dim: int = DEFAULT_DIM,
    sample: SampleSize = DEFAULT_SAMPLE,
    progress: Callable[[int, int], None] | None = None,
    on_layer: Callable[[CanonicalLayer], None] | None = None,
) -> Fingerprint:
    """Fingerprint one checkpoint.  ``progress(done, total)`` is called after each block and
    ``on_layer(layer)`` with each block's sampled canonical rows (to compute more from one read)."""
    probes = probes.within(FINGERPRINT_PROBES)
    if len(probes) < MIN_PROBES:
        raise CheckpointError(f"only {len(probes)} probe tokens found in the vocabulary (need {MIN_PROBES})")
    version = fingerprint_version(dim, sample)
    sketcher = _Sketcher(probes, dim, sketch_version(dim, sample))
    token_ids = torch.from_numpy(probes.token_ids)
    with torch.no_grad(), ReadAhead(loader, roles, token_ids, sample) as reads:
        sketcher.prepare(
            "embedding",
            "qk",
            "up",
            *(["head"] if head_ref(roles) is not None else []),
            *(["gate"] if any(layer.gate is not None for layer in roles.layers) else []),
        )
        reads.embedding_ready()
        x = probe_rows(loader, roles, token_ids)
        embedding = sketcher(x, x, "embedding")  # while the first blocks are still arriving
        x16 = x.to(torch.bfloat16)
        layer_vectors: list[torch.Tensor] = []
        run: list[CanonicalLayer] = []  # blocks read, not yet sketched (one layout)
        for done, (layer_roles, block) in enumerate(zip(roles.layers, reads.samples), start=1):
            reads.block_ready(done - 1)
            layer = canonical_layer(loader, roles, layer_roles, block)
            if on_layer is not None:
                on_layer(layer)
            if run and _layout(run[0]) != _layout(layer):
                layer_vectors.extend(sketcher.blocks(x16, run))
                run = []
            run.append(layer)
            if len(run) == SKETCH_BATCH or done == len(roles.layers):
                layer_vectors.extend(sketcher.blocks(x16, run))
                run = []
            if progress is not None:
                progress(done, len(roles.layers))
        reads.head_ready()
        head_matrix = head_rows(loader, roles, token_ids)
        head = sketcher(x, head_matrix, "head") if head_matrix is not None else None
        layers = torch.stack(layer_vectors) if layer_vectors else torch.zeros(0, dim)
        model = unit(layers.sum(dim=0)) if len(layer_vectors) else embedding
    return Fingerprint(version, model, layers, embedding, head, len(probes))


def whole_block_vectors(
    loader: MatrixLoader, roles: ModelRoles, probes: ProbeSelection, layers: list[int], dim: int = DEFAULT_DIM
) -> torch.Tensor:
    """[len(layers), D] block vectors of the given blocks read *whole* (every head and unit): the
    quantity a sampled block vector estimates, exactly invariant under every function-preserving
    transform (a permuted copy scores 1.0).  For the lineage stage's copy test on a few blocks."""
    probes = probes.within(FINGERPRINT_PROBES)
    sketcher = _Sketcher(probes, dim, f"{FINGERPRINT_RECIPE}-whole-d{dim}-n{FINGERPRINT_PROBES}-p{probe_list_digest()}")
    with torch.no_grad():
        x16 = probe_rows(loader, roles, torch.from_numpy(probes.token_ids)).to(torch.bfloat16)
        vectors = [sketcher.blocks(x16, [canonical_layer(loader, roles, roles.layers[index])])[0] for index in layers]
    return torch.stack(vectors) if vectors else torch.zeros(0, dim)
