"""Matrix products at the precision the Hub stores weights in: bfloat16 inputs, float32 sums.

Most Hub checkpoints are bfloat16, so rounding the other operand (the probe rows) to bfloat16 as
well costs the fingerprint nothing it could resolve, and CPUs with AVX512-BF16 or AMX multiply
bfloat16 3-4x faster than float32 (the block products are most of a fingerprint's arithmetic).

The product is defined, whatever the hardware, as

    C_ij = bf16( Σ_k bf16(a_ik) · bf16(b_kj) )     (products exact, sums in float32)

and returned as float32.  On a CPU without a bfloat16 kernel the same numbers come from a
float32 product of the rounded inputs, rounded once more: results agree across machines up to
the order of the float32 sums (measured: 0.02 % of entries differ by one bfloat16 step).
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def has_bf16_kernel() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except (RuntimeError, AttributeError):  # private torch helpers: absent or failing means "no"
        return False


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bf16(Σ_k bf16(a_ik) bf16(b_kj)) as float32 (see the module docstring)."""
    a16, b16 = a.to(torch.bfloat16), b.to(torch.bfloat16)
    if a.is_cuda or has_bf16_kernel():
        return (a16 @ b16).float()
    return (a16.float() @ b16.float()).to(torch.bfloat16).float()
