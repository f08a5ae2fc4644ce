"""Function-preserving reparametrisations of the families' canonical parameters (``decoders``).

* ``residual``: permute the residual stream's coordinates - embedding and head columns, every
  hidden-sized norm gain and bias, the input columns of q/k/v/gate/up and the output rows of o/down
  (RMSNorm and LayerNorm commute with a permutation of their coordinates);
* ``mlp``: permute the MLP units - rows of gate/up, columns of down;
* ``heads``: permute the key/value heads (with the query heads each serves) and the query heads
  within each group - rows of q/k/v, columns of o; Gemma 3's q/k norms act per head alike;
* ``gains``: rescale a norm's effective gain by c > 0 per coordinate (and its LayerNorm bias) and
  divide the input columns of the matrices that read it by c (not the final norm of a tied head,
  nor Gemma's output norms, which write into the residual stream);
* ``units`` (gated MLPs only): rescale each unit's up row by c and its down column by 1/c.
"""

from __future__ import annotations

import torch

from .decoders import DecoderSpec

KINDS = ("residual", "mlp", "heads", "gains", "units")


def available_kinds(spec: DecoderSpec) -> tuple[str, ...]:
    return tuple(k for k in KINDS if k != "units" or spec.glu)


def _residual(spec: DecoderSpec, p: dict[str, torch.Tensor], perm: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in p.items():
        role = name.split(".")[-2] if name.startswith("layers.") else name.split(".")[0]
        if name in ("embed", "head.w") or (t.dim() == 2 and role in ("q", "k", "v", "gate", "up")):
            out[name] = t[:, perm]
        elif role in ("o", "down"):
            out[name] = t[perm]
        elif t.dim() == 1 and t.shape[0] == spec.hidden and role not in ("q", "k", "v", "gate", "up"):
            out[name] = t[perm]
        else:
            out[name] = t
    return out


def _mlp(spec: DecoderSpec, p: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = dict(p)
    for i in range(spec.layers):
        perm = torch.randperm(spec.intermediate, generator=gen)
        for name in (f"layers.{i}.{r}.{x}" for r in ("gate", "up") for x in "wb"):
            if name in p:
                out[name] = p[name][perm]
        out[f"layers.{i}.down.w"] = p[f"layers.{i}.down.w"][:, perm]
    return out


def _heads(spec: DecoderSpec, p: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = dict(p)
    d, g = spec.head_dim, spec.group
    for i in range(spec.layers):
        kv = torch.randperm(spec.kv_heads, generator=gen)
        q_heads = torch.cat([kv[j] * g + torch.randperm(g, generator=gen) for j in range(spec.kv_heads)])
        q_rows = (q_heads[:, None] * d + torch.arange(d)).reshape(-1)
        kv_rows = (kv[:, None] * d + torch.arange(d)).reshape(-1)
        pre = f"layers.{i}."
        for role, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            for x in "wb":
                if pre + f"{role}.{x}" in p:
                    out[pre + f"{role}.{x}"] = p[pre + f"{role}.{x}"][rows]
        out[pre + "o.w"] = p[pre + "o.w"][:, q_rows]
    return out


def _gains(spec: DecoderSpec, p: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = dict(p)
    readers = {
        "attn_norm": ("q", "k", "v", "gate", "up") if spec.parallel else ("q", "k", "v"),
        "mlp_norm": ("gate", "up"),
    }
    for i in range(spec.layers):
        for norm, reads in readers.items():
            name = f"layers.{i}.{norm}"
            if name + ".w" not in p:
                continue
            c = torch.exp(torch.randn(spec.hidden, generator=gen, dtype=p[name + ".w"].dtype) * 0.5)
            out[name + ".w"] = (p[name + ".w"] + spec.gain_offset) * c - spec.gain_offset
            if name + ".b" in p:
                out[name + ".b"] = p[name + ".b"] * c
            for role in reads:
                if f"layers.{i}.{role}.w" in p:
                    out[f"layers.{i}.{role}.w"] = p[f"layers.{i}.{role}.w"] / c
    if not spec.tied:
        c = torch.exp(torch.randn(spec.hidden, generator=gen, dtype=p["final_norm.w"].dtype) * 0.5)
        out["final_norm.w"] = (p["final_norm.w"] + spec.gain_offset) * c - spec.gain_offset
        if "final_norm.b" in p:
            out["final_norm.b"] = p["final_norm.b"] * c
        out["head.w"] = p["head.w"] / c
    return out


def _units(spec: DecoderSpec, p: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = dict(p)
    for i in range(spec.layers):
        c = torch.exp(torch.randn(spec.intermediate, generator=gen, dtype=p[f"layers.{i}.up.w"].dtype) * 0.5)
        out[f"layers.{i}.up.w"] = p[f"layers.{i}.up.w"] * c[:, None]
        out[f"layers.{i}.down.w"] = p[f"layers.{i}.down.w"] / c
    return out


def transform(
    spec: DecoderSpec, canon: dict[str, torch.Tensor], kinds: tuple[str, ...], seed: int
) -> dict[str, torch.Tensor]:
    """``canon`` with the ``kinds`` applied in order, random draws from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(canon)
    for kind in kinds:
        if kind not in available_kinds(spec):
            raise ValueError(f"{kind!r} does not preserve a {spec.model_type} model's function")
        if kind == "residual":
            out = _residual(spec, out, torch.randperm(spec.hidden, generator=gen))
        elif kind == "mlp":
            out = _mlp(spec, out, gen)
        elif kind == "heads":
            out = _heads(spec, out, gen)
        elif kind == "gains":
            out = _gains(spec, out, gen)
        else:
            out = _units(spec, out, gen)
    return out
