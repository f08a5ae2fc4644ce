"""Embedding-free block signatures: what a block *is*, from its own weights only.

The token-space fingerprint (``indexer.fingerprint``) sees every block through the model's own
input embedding, so a block moved under another model's embedding (a passthrough frankenmerge)
no longer looks like itself.  These signatures use nothing outside the block.

**Unit descriptors.**  Row-vector convention, W stored [out, in], norm gains folded into the
readers (``indexer.canonical``).  For one block let Q, K be the query rows of the sampled heads
and the key rows serving them (GQA expanded), Q_h, K_h, V_g their per-head blocks, r_u the read
row of MLP unit u (its gate row in a gated MLP, else its up row), w_u its up row, d_u its down
column, and x̂ = x / ‖x‖.  With the h x h matrices

    M_qk = Σ_h Q_hᵀ K_h          (the QK circuit of the sampled heads)
    Π_Q, Π_K, Π_V = mean over heads of the projector onto the row space of Q_h, K_h, V_g
    N_r = R̂ᵀ R̂ / G,  N_w = Ŵᵀ Ŵ / G   (Grams of the first G unit rows, unit-normalised)

a vector x of the residual space is described by the quadratic forms

    x̂ S x̂ᵀ  for  S ∈ {M_qk, M_qk M_qkᵀ, M_qkᵀ M_qk, Π_Q, Π_K, Π_V, N_r, N_r², N_w, Π_V N_r Π_V, Π_Q N_r Π_Q}

(:data:`FORMS`; all computed from low-rank factors, never as h x h products).  A residual
rotation or permutation R maps every reader row x -> x R, every writer column d -> Rᵀ d and
every S -> Rᵀ S R, so each form is unchanged; a per-head invertible map (q -> M q, k -> M⁻ᵀ k,
v -> C v) leaves Q_hᵀ K_h and the row spaces unchanged; a head or unit permutation permutes the
sums' terms; per-unit rescaling (w × s, d ÷ s) is removed by x̂ and by using |·| where a sign
could flip; gain folding or rescaling is invisible once gains are folded.  A unit u is then the
point (forms(r̂_u), log ‖r_u‖, forms(ŵ_u), |r̂_u · ŵ_u|) - :data:`DESCRIPTOR_SIZE` numbers that
every function-preserving transform leaves exactly unchanged (up to float rounding) when the
block's heads and units fit in the sample, and that fine-tuning moves only slightly.

**Why not spectra.**  Singular-value spectra of W_down W_up, Σ_h W_o,h W_v,h and Σ_h W_q,hᵀ W_k,h
are invariant too, but they self-average: on the small zoo the standardised log-spectra of
independently trained blocks have cosine 0.98 ± 0.01 against 0.99 for fine-tunes, so they carry
no usable noise bar (``bench/block_signatures.py`` reports both).

**Signature.**  A permutation-invariant summary of n such points that stays individual: any
average over all units self-averages, so the signature looks at the *tails*.  With Z the
descriptors z-scored over the block's units (n x F), for every descriptor a (skipping a constant
one) and each tail s = ±1

    E_a = Z - [z_a, z_a²] Bₐ          (every descriptor's least-squares residual on z_a and z_a²)
    p_a,s = Σ_u w_u E_a[u],   w = softmax(s β z_a)      (β = :data:`TAIL_BETA`)

- what the few most extreme units of descriptor a look like in every other descriptor, beyond
what the bulk's (quadratic) trend predicts.  The weights are smooth, so fine-tuning, which moves
units a little, moves p little; which units are extreme, and how they sit in the other
descriptors, is an accident of the initialisation.  The F · 2 · F numbers are compressed by a
fixed seeded Gaussian projection (``indexer.sketch.gaussian_matrix``) to :data:`SIGNATURE_DIM`
and normalised: cosine ≈ 0.03 ± 0.11 for unrelated blocks of the small zoo, 0.70 on average for
a block and its fine-tuned, adapted, merged, quantized or transformed copy.  (Removing only the
linear trend leaves a generic shape shared by every trained block, cosine 0.13; hard top-k units
instead of soft weights are reordered by fine-tuning.)

Reads are bounded like the fingerprint's: the first whole GQA groups up to
:data:`ATTENTION_ROWS` query rows (and their key/value heads), the first :data:`MAX_UNITS` gate
and up rows - one contiguous range each; a block whose heads and units fit is read whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pedigree.indexer.adapters.base import LayerRoles, MatrixLoader, ModelRoles
from pedigree.indexer.canonical import canonical_layer
from pedigree.indexer.sampling import SampleSize, block_sample
from pedigree.indexer.sketch import gaussian_matrix
from pedigree.indexer.unit_selection import contiguous_units
from pedigree.indexer.versions import SIGNATURE_ATTENTION_ROWS as ATTENTION_ROWS
from pedigree.indexer.versions import SIGNATURE_DIM, TAIL_BETA, projection_seed
from pedigree.indexer.versions import SIGNATURE_UNITS as MAX_UNITS

FORMS = (
    "qk",
    "qk_qkT",
    "qkT_qk",
    "proj_q",
    "proj_k",
    "proj_v",
    "gram_read",
    "gram_read2",
    "gram_up",
    "proj_v_gram_read",
    "proj_q_gram_read",
)
DESCRIPTOR_SIZE = 2 * len(FORMS) + 2
# Block-signature cosine above which two blocks are called the same block (alignment), and the
# lower bar above which a block proposes its owner as a candidate pair (the tests decide).  On
# the small zoo (bench/block_signatures.py) unrelated block pairs have cosine 0.03 ± 0.11, at most
# 0.48; a block and its derivative's (fine-tuned, adapted, merged, quantized, pruned, transformed)
# are above 0.35 always and above 0.55 in 96 % of pairs.
SIGNATURE_BAR = 0.55
PROPOSAL_BAR = 0.35


@dataclass(frozen=True)
class BlockRows:
    """One block's canonical rows (gains folded, float64): what descriptors are computed from.

    ``read`` are the described units' gate rows (gated MLP) or up rows, ``up`` their up rows
    (gated MLPs only), ``down_t`` their down columns (read only when asked); the Gram sample G is
    the first ``gram_units`` of them."""

    q: torch.Tensor  # [r, h]
    k: torch.Tensor  # [r, h], one key row per query row
    v: torch.Tensor  # [r_kv, h], value rows of the key/value heads serving the sampled heads
    head_dim: int
    read: torch.Tensor  # [n, h]
    up: torch.Tensor | None  # [n, h]
    down_t: torch.Tensor | None = None  # [n, h]
    gram_units: int = MAX_UNITS


def read_block_rows(
    loader: MatrixLoader, roles: ModelRoles, layer: LayerRoles, *, units: int | None = MAX_UNITS, down: bool = False
) -> BlockRows:
    """Read the sampled heads and the first ``units`` MLP units of a block (None: every unit),
    and with ``down`` their down columns (the whole down matrix is read: its units are columns).
    A wide gated MLP gives at most its first units (``indexer.unit_selection.contiguous_units``)."""
    first = contiguous_units(layer)
    if units is not None and first is not None:
        units = min(units, first)
    sample = block_sample(layer, SampleSize(ATTENTION_ROWS, layer.mlp_size if units is None else units))
    canonical = canonical_layer(loader, roles, layer, sample)
    gain = loader.gain(layer.attn_norm, roles.hidden_size)
    v = loader.matrix_rows(layer.v, 0, sample.kv_rows) * gain
    glu = canonical.gate is not None
    down_t = loader.matrix(layer.down)[:, : sample.units].t() if down else None
    return BlockRows(
        q=canonical.q.double(),
        k=canonical.k.double(),
        v=v.double(),
        head_dim=layer.head_dim,
        read=(canonical.gate if canonical.gate is not None else canonical.up).double(),
        up=canonical.up.double() if glu else None,
        down_t=None if down_t is None else down_t.double(),
    )


def read_attention(
    loader: MatrixLoader, roles: ModelRoles, layer: LayerRoles
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q, k, v) rows of the sampled heads alone, as :func:`read_block_rows` reads them (for
    callers that hold the block's MLP rows already)."""
    sample = block_sample(layer, SampleSize(ATTENTION_ROWS, 1))
    canonical = canonical_layer(loader, roles, layer, sample)
    v = loader.matrix_rows(layer.v, 0, sample.kv_rows) * loader.gain(layer.attn_norm, roles.hidden_size)
    return canonical.q.double(), canonical.k.double(), v.double()


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / torch.clamp(torch.linalg.vector_norm(x, dim=1, keepdim=True), min=1e-300)


def _head_bases(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[heads, h, hd]: an orthonormal basis of each head's row space (a per-head invertible map
    leaves it unchanged)."""
    heads = rows.reshape(-1, head_dim, rows.shape[1])
    basis, _ = torch.linalg.qr(heads.transpose(1, 2))
    return basis


class BlockForms:
    """The matrices S of :data:`FORMS` of one block, kept as low-rank factors: every form of a
    batch of rows comes from one product of the rows with the stacked directions (query and key
    rows, the heads' orthonormal bases, the Gram sample), in the dtype of the block's read rows."""

    def __init__(self, rows: BlockRows) -> None:
        dtype = rows.read.dtype
        g = min(rows.gram_units, len(rows.read))
        q, k = rows.q.to(dtype), rows.k.to(dtype)
        bases = [_head_bases(m.to(dtype), rows.head_dim) for m in (rows.q, rows.k, rows.v)]  # [heads, h, hd] each
        gram_read = _unit_rows(rows.read[:g])
        gram_up = _unit_rows(rows.up[:g].to(dtype)) if rows.up is not None else gram_read
        self.parts = [q, k, *(b.transpose(1, 2).reshape(-1, b.shape[1]) for b in bases), gram_read, gram_up]
        self.directions = torch.cat(self.parts)  # [D, h]
        self.kkt, self.qqt = k @ k.t(), q @ q.t()
        self.heads = [len(b) for b in bases]
        # (x Π) R̂ᵀ = Σ_heads (x E) (Eᵀ R̂ᵀ): the heads' bases against the Gram sample, [heads, hd, G]
        self.bases_gram = [b.transpose(1, 2) @ gram_read.t() for b in bases]
        self.gram, self.g = gram_read, g

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[n, len(FORMS)]: x̂ S x̂ᵀ for every row x of ``x`` (rows need not be normalised)."""
        x = _unit_rows(x.to(self.directions.dtype))
        coords = x @ self.directions.t()
        xq, xk, cq, ck, cv, read, up = coords.split([len(p) for p in self.parts], dim=1)
        heads = [c.reshape(len(x), h, -1) for c, h in zip((cq, ck, cv), self.heads)]  # [n, heads, hd]

        def projector(c: torch.Tensor) -> torch.Tensor:  # x Π xᵀ, Π the mean of the heads' projectors
            return c.pow(2).sum(dim=(1, 2)) / c.shape[1]

        def projector_gram(c: torch.Tensor, bases_gram: torch.Tensor) -> torch.Tensor:  # ‖R̂ Π xᵀ‖² / G
            projected = torch.einsum("nbd,bdg->ng", c, bases_gram) / c.shape[1]
            return projected.pow(2).sum(dim=1) / self.g

        forms = [
            (xq * xk).sum(dim=1),  # x Qᵀ K xᵀ
            ((xq @ self.kkt) * xq).sum(dim=1),  # ‖x Qᵀ K‖²
            ((xk @ self.qqt) * xk).sum(dim=1),  # ‖x Kᵀ Q‖²
            *(projector(c) for c in heads),  # Π_Q, Π_K, Π_V
            read.pow(2).sum(dim=1) / self.g,  # ‖R̂ xᵀ‖² / G
            (read @ self.gram).pow(2).sum(dim=1) / self.g**2,  # ‖R̂ᵀ R̂ xᵀ‖² / G²
            up.pow(2).sum(dim=1) / self.g,  # ‖Ŵ xᵀ‖² / G
            projector_gram(heads[2], self.bases_gram[2]),  # x Π_V N_r Π_V xᵀ
            projector_gram(heads[0], self.bases_gram[0]),  # x Π_Q N_r Π_Q xᵀ
        ]
        return torch.stack(forms, dim=1)


def unit_descriptors(rows: BlockRows, forms: BlockForms | None = None) -> torch.Tensor:
    """[n, DESCRIPTOR_SIZE]: (forms(r̂_u), log ‖r_u‖, forms(ŵ_u), |r̂_u · ŵ_u|) per unit (module
    docstring); an ungated MLP has w = r."""
    forms = forms or BlockForms(rows)
    up = rows.up if rows.up is not None else rows.read
    cosine = (_unit_rows(rows.read) * _unit_rows(up)).sum(dim=1, keepdim=True).abs()
    norms = torch.log(torch.clamp(torch.linalg.vector_norm(rows.read, dim=1, keepdim=True), min=1e-300))
    return torch.cat([forms(rows.read), norms, forms(up), cosine], dim=1)


def matching_descriptors(rows: BlockRows) -> tuple[torch.Tensor, torch.Tensor]:
    """Two descriptions of the same units from disjoint weights, for the embedding-free
    independence test: (forms(r̂_u), log ‖r_u‖) from the read rows, and from the write side
    forms(ŵ_u) (gated MLPs; plus forms(d̂_u) and log ‖w_u‖‖d_u‖ when the down columns were read)
    or (forms(d̂_u), log ‖d_u‖) (ungated MLPs, whose read row is the up row)."""
    forms = BlockForms(rows)

    def log_norm(x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(torch.linalg.vector_norm(x, dim=1, keepdim=True), min=1e-300))

    read = torch.cat([forms(rows.read), log_norm(rows.read)], dim=1)
    if rows.up is None:
        if rows.down_t is None:
            raise ValueError("an ungated MLP's second description needs its down columns")
        return read, torch.cat([forms(rows.down_t), log_norm(rows.down_t)], dim=1)
    write = [forms(rows.up)]
    if rows.down_t is not None:
        write += [forms(rows.down_t), log_norm(rows.up) + log_norm(rows.down_t)]
    return read, torch.cat(write, dim=1)


def zscore_columns(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std per column over the rows; a column constant up to float rounding (e.g.
    |r̂ · ŵ| = 1 when the read row is the up row) becomes 0 rather than amplified rounding noise."""
    std = x.std(axis=0)
    varies = std > 1e-9 * np.maximum(np.abs(x).max(axis=0, initial=0.0), 1e-300)
    return np.where(varies, (x - x.mean(axis=0)) / np.where(varies, std, 1.0), 0.0)


def tail_profiles(descriptors: np.ndarray, beta: float = TAIL_BETA) -> np.ndarray:
    """The raw signature (module docstring): for every descriptor a and tail s = ±1, the
    softmax(s β z_a)-weighted mean over units of the other descriptors' residuals after their least
    squares fit on (z_a, z_a²); F · 2 · F numbers, zeros for a descriptor constant over the units."""
    z = zscore_columns(np.asarray(descriptors, dtype=np.float64))
    f = z.shape[1]
    parts = np.zeros((f, 2, f))
    for a in range(f):
        if not z[:, a].any():
            continue  # a constant descriptor ranks no unit above another
        basis = np.stack([z[:, a], z[:, a] ** 2], axis=1)
        basis -= basis.mean(axis=0)
        coefficients, *_ = np.linalg.lstsq(basis, z, rcond=None)
        residuals = z - basis @ coefficients
        for tail, sign in enumerate((-1.0, 1.0)):
            logits = sign * beta * z[:, a]
            weights = np.exp(logits - logits.max())
            parts[a, tail] = weights @ residuals / weights.sum()
    return parts.ravel()


def signature_of(descriptors: np.ndarray) -> np.ndarray:
    """The block's unit-length float32 signature: :func:`tail_profiles` through the fixed
    projection (cosine-preserving, standard error about 1/√SIGNATURE_DIM)."""
    raw = tail_profiles(descriptors)
    projection = gaussian_matrix(projection_seed(), len(raw), SIGNATURE_DIM).double().numpy()
    sketch = raw @ projection
    norm = float(np.linalg.norm(sketch))
    return (sketch / norm if norm > 0 else sketch).astype(np.float32)


def block_signature(rows: BlockRows) -> np.ndarray:
    """Signature of one block from its (sampled) rows."""
    with torch.no_grad():
        return signature_of(unit_descriptors(rows).numpy())


def block_signatures(loader: MatrixLoader, roles: ModelRoles) -> np.ndarray:
    """[blocks, SIGNATURE_DIM] signatures of every block of a checkpoint (bounded reads)."""
    vectors = [block_signature(read_block_rows(loader, roles, layer)) for layer in roles.layers]
    return np.stack(vectors) if vectors else np.zeros((0, SIGNATURE_DIM), np.float32)


def block_signature_alignment(
    sigs_a: np.ndarray, sigs_b: np.ndarray, bar: float = SIGNATURE_BAR
) -> list[tuple[int, int, float]]:
    """Which block of B each block of A is: ``(i, j, cosine)`` for every block i of A whose most
    similar block j of B (by signature cosine) clears ``bar``; many-to-one (a frankenmerge may
    repeat a parent's block), ordered by i.  For the lineage stage's layer maps of transplanted
    blocks; pass ``bar=-1`` to get every block's best match."""
    if len(sigs_a) == 0 or len(sigs_b) == 0:
        return []
    cosines = np.clip(np.asarray(sigs_a, np.float64) @ np.asarray(sigs_b, np.float64).T, -1.0, 1.0)
    best = cosines.argmax(axis=1)
    return [(i, int(j), float(cosines[i, j])) for i, j in enumerate(best) if cosines[i, j] >= bar]
