"""The seeded projection: platform-stable, unbiased for cosine, blind to scale and offset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pedigree.indexer.sketch import (
    Projection,
    gaussian_matrix,
    offdiagonal_zscore,
    sketch,
    sketch_product,
    sketch_products,
    unit,
)


def test_gaussian_matrix_is_a_pure_function_of_its_seed():
    a = gaussian_matrix("seed-a", 64, 32)
    assert torch.equal(a, gaussian_matrix("seed-a", 64, 32))
    assert not torch.equal(a, gaussian_matrix("seed-b", 64, 32))
    # Golden values: changing the generator would silently change every stored fingerprint.
    assert np.allclose(a[0, :3].numpy(), GOLDEN, atol=1e-6), a[0, :3].tolist()


GOLDEN = [0.3489617, -0.1220839, -0.0606469]  # recorded when the generator was written


def test_gaussian_matrix_moments():
    g = gaussian_matrix("moments", 400, 500).double()
    assert abs(g.mean()) < 0.01 and abs(g.std() - 1) < 0.01
    assert abs(((g - g.mean()) ** 4).mean() / g.var() ** 2 - 3) < 0.05  # Gaussian kurtosis


def test_zscore_drops_diagonal_and_ignores_scale_and_offset():
    m = torch.randn(50, 50)
    z = offdiagonal_zscore(m)
    assert torch.all(torch.diagonal(z) == 0)
    assert torch.allclose(z, offdiagonal_zscore(3.0 * m + 7.0 + 100 * torch.eye(50)), atol=1e-5)
    assert torch.all(offdiagonal_zscore(torch.ones(5, 5)) == 0)


def test_sketch_cosine_estimates_matrix_cosine():
    torch.manual_seed(0)
    n, dim = 300, 512
    positions = torch.arange(n)
    errors = []
    for trial in range(5):
        a = torch.randn(n, n)
        b = 0.6 * a + 0.8 * torch.randn(n, n)  # true cosine 0.6
        za, zb = offdiagonal_zscore(a), offdiagonal_zscore(b)
        true = float((za * zb).sum() / (za.norm() * zb.norm()))
        sa, sb = unit(sketch(za, positions, f"t{trial}", n, dim)), unit(sketch(zb, positions, f"t{trial}", n, dim))
        errors.append(float(sa @ sb) - true)
    assert abs(np.mean(errors)) < 0.03 and max(map(abs, errors)) < 4 / np.sqrt(dim)


@pytest.mark.parametrize("same", [False, True])
def test_sketch_from_factors_equals_the_sketch_of_the_zscored_product(same):
    """s_k from the low-rank factors (never forming a bᵀ) is the dense formula's value."""
    gen = torch.Generator().manual_seed(3)
    n, r, universe = 300, 40, 700
    a = torch.randn(n, r, generator=gen) + 0.5  # an offset: μ ≠ 0 must be removed exactly
    b = a if same else torch.randn(n, r, generator=gen)
    positions = torch.randperm(universe, generator=gen)[:n].sort().values
    dense = sketch(offdiagonal_zscore(a @ b.t()), positions, "t", universe, 64)
    projection = Projection.of("t", positions, universe, 64)
    factored = sketch_product(a, b, projection)
    assert torch.allclose(factored, dense, rtol=1e-4, atol=1e-3 * float(dense.abs().max()))
    wide = torch.randn(n, n + 5, generator=gen)  # r >= n: the dense path
    assert torch.allclose(
        sketch_product(wide, wide, projection),
        sketch(offdiagonal_zscore(wide @ wide.t()), positions, "t", universe, 64),
    )


@pytest.mark.parametrize(
    "positions", [list(range(3, 1024)), [5], sorted(np.random.default_rng(0).choice(1500, 700, replace=False).tolist())]
)
def test_projection_from_the_per_process_tables_is_bit_identical(positions):
    """The fast path (gathered from tables built once per process) stores the very numbers the
    direct construction does: fingerprints do not depend on which path built the projection."""
    index = torch.tensor(positions)
    direct = Projection.of("tables", index, 1832, 64).stored_as(torch.bfloat16)
    fast = Projection.of_bf16("tables", index, 1832, 64)
    for name in ("left", "right", "left_sum", "right_sum", "products", "both"):
        a, b = getattr(direct, name), getattr(fast, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_a_batch_of_sketches_equals_the_dense_sketch_of_each_pair():
    """sketch_products row i is the sketch of pair i's z-scored product formed densely (Grams and
    cross products), and a pair whose product is constant off the diagonal (σ = 0) gives a zero
    row, not NaN."""
    gen = torch.Generator().manual_seed(5)
    n, r, universe, dim = 200, 24, 500, 32
    positions = torch.randperm(universe, generator=gen)[:n].sort().values
    projection = Projection.of("batch", positions, universe, dim)
    a = torch.randn(3, n, r, generator=gen) + 0.3
    b = torch.randn(3, n, r, generator=gen)
    for batch, pairs in (
        (sketch_products(a, b, projection), [(a[i], b[i]) for i in range(3)]),
        (sketch_products(a, None, projection), [(a[i], a[i]) for i in range(3)]),
    ):
        for row, (x, y) in zip(batch, pairs):
            dense = sketch(offdiagonal_zscore(x @ y.t()), positions, "batch", universe, dim)
            assert torch.allclose(row, dense, rtol=1e-4, atol=1e-3 * float(dense.abs().max()))
    constant = torch.zeros(1, n, r)
    constant[0, :, 0] = 1.0  # a aᵀ: every entry equals 1
    assert torch.equal(sketch_products(torch.cat([a[:1], constant]), None, projection)[1], torch.zeros(dim))
