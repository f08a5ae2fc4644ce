"""Function-preserving reparametrisations of a transformer (the adversarial transforms T1–T6).

Every transform maps (config, HF state dict) to a new pair with *identical* logits (up to float
rounding; maths done in float64, result cast back to the input dtype).  Row-vector convention,
linear maps W [out, in] (x ↦ x Wᵀ); "readers" are maps whose input is the residual stream (q, k, v,
gate, up, the untied head), "writers" add into it (o, down).

* residual permutation P (T1):  E → E P, reader W → W P, writer W → Pᵀ W (b → b P), every norm
  vector on the residual stream permuted — valid for RMSNorm and LayerNorm (post-LN too).
* residual rotation R (T3, RMSNorm only): fold each RMSNorm gain into its readers (W → W diag g,
  g → 1), then E → E R, reader W → W R, writer W → Rᵀ W; RMSNorm(xR) = RMSNorm(x) R.
* norm-gain rescaling (T5): g → g ⊙ c, LayerNorm b → b ⊙ c, readers W → W diag(1/c), c ≠ 0
  (pre-norm models; not a tied head's final norm).
* MLP unit permutation (T2) per layer: rows of gate/up (and up bias) and columns of down by π;
  MLP rescaling (T6, SwiGLU only): up row j × s_j, down column j ÷ s_j, any s_j ≠ 0
  (silu(g)·(s u)/s = silu(g)·u; GELU MLPs allow permutation only).
* attention head permutation per layer, GQA-aware: kv heads (k, v rows) by σ, q heads of new
  group g are old group σ(g)'s heads in the order τ_g; o columns follow the q heads.
* V/O maps: per kv head any invertible C: v rows → C v, every o column block of that group's q
  heads → O C⁻¹ (softmax weights do not depend on v).
* Q/K maps: per kv head M with q → M q, k → M⁻ᵀ k, so qᵀk is unchanged.  On rotary dims M must
  commute with RoPE: per frequency pair (j, j + r/2) a complex scalar z, q-pair × z and k-pair ×
  1/conj(z) (a scaled 2-D rotation); on non-rotary dims any invertible C.

``plan_function_preserving``/``random_function_preserving`` compose a random subset valid for an
architecture; ``Step.summary`` gives the recordable part (kinds, seeds, permutation indices).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .architectures import Spec, spec_from_config
from .hf_layout import to_canonical, to_hf

Params = dict[str, torch.Tensor]
StateDict = dict[str, torch.Tensor]
KINDS = (
    "residual_permutation",
    "residual_rotation",
    "norm_gains",
    "mlp_permutation",
    "mlp_rescale",
    "head_permutation",
    "vo_maps",
    "qk_maps",
)


# ----------------------------------------------------------------------------- structure
def pre_norms(spec: Spec) -> dict[str, list[str]]:
    """Each pre-norm and the linear maps that read its output (empty for post-LN BERT)."""
    if spec.residual == "post":
        return {}
    out: dict[str, list[str]] = {}
    for i in range(spec.layers):
        p = f"layers.{i}."
        out[p + "attn_norm"] = [p + "q", p + "k", p + "v"]
        out[p + "mlp_norm"] = ([p + "gate"] if spec.glu else []) + [p + "up"]
    out["final_norm"] = [] if spec.tied else ["head"]
    return out


def _readers(spec: Spec) -> list[str]:
    names = [
        f"layers.{i}.{n}" for i in range(spec.layers) for n in ("q", "k", "v", "gate", "up") if n != "gate" or spec.glu
    ]
    return names + (["head_dense"] if spec.model_type == "bert" else [] if spec.tied else ["head"])


def _writers(spec: Spec) -> list[str]:
    names = [f"layers.{i}.{n}" for i in range(spec.layers) for n in ("o", "down")]
    return names + (["head_dense"] if spec.model_type == "bert" else [])


def _vectors(c: Params) -> list[str]:
    return [n for n in c if n.endswith(("norm.w", "norm.b"))]


def _embeddings(c: Params) -> list[str]:
    return [n for n in ("embed", "pos_embed", "type_embed") if n in c]


# ----------------------------------------------------------------------------- canonical maths
def _permute_residual(spec: Spec, c: Params, perm: torch.Tensor) -> None:
    for n in _embeddings(c):
        c[n] = c[n][:, perm]
    for n in _readers(spec):
        c[n + ".w"] = c[n + ".w"][:, perm]
    for n in _writers(spec):
        c[n + ".w"] = c[n + ".w"][perm]
        if n + ".b" in c:
            c[n + ".b"] = c[n + ".b"][perm]
    for n in _vectors(c):
        c[n] = c[n][perm]


def _fold_norms(spec: Spec, c: Params) -> None:
    for norm, readers in pre_norms(spec).items():
        bias = c.get(norm + ".b")
        if not readers or (bias is not None and not all(r + ".b" in c for r in readers)):
            continue
        for r in readers:
            if bias is not None:
                c[r + ".b"] = c[r + ".b"] + c[r + ".w"] @ bias
            c[r + ".w"] = c[r + ".w"] * c[norm + ".w"][None, :]
        c[norm + ".w"] = torch.ones_like(c[norm + ".w"])
        if bias is not None:
            c[norm + ".b"] = torch.zeros_like(bias)


def _rotate_residual(spec: Spec, c: Params, rotation: torch.Tensor) -> None:
    if spec.norm != "rms" or spec.tied:
        raise ValueError("residual rotation needs RMSNorm and an untied head")
    _fold_norms(spec, c)
    r = rotation.to(torch.float64)
    for n in _embeddings(c):
        c[n] = c[n] @ r
    for n in _readers(spec):
        c[n + ".w"] = c[n + ".w"] @ r
    for n in _writers(spec):
        c[n + ".w"] = r.T @ c[n + ".w"]
        if n + ".b" in c:
            c[n + ".b"] = c[n + ".b"] @ r


def _rescale_norms(spec: Spec, c: Params, scales: dict[str, torch.Tensor]) -> None:
    readers = pre_norms(spec)
    for norm, s in scales.items():
        c[norm + ".w"] = c[norm + ".w"] * s
        if norm + ".b" in c:
            c[norm + ".b"] = c[norm + ".b"] * s
        for r in readers[norm]:
            c[r + ".w"] = c[r + ".w"] / s[None, :]


def _permute_mlp(spec: Spec, c: Params, perms: Sequence[torch.Tensor]) -> None:
    for i, perm in enumerate(perms):
        p = f"layers.{i}."
        for n in ([p + "gate"] if spec.glu else []) + [p + "up"]:
            c[n + ".w"] = c[n + ".w"][perm]
            if n + ".b" in c:
                c[n + ".b"] = c[n + ".b"][perm]
        c[p + "down.w"] = c[p + "down.w"][:, perm]


def _rescale_mlp(spec: Spec, c: Params, scales: Sequence[torch.Tensor]) -> None:
    if not spec.glu:
        raise ValueError("per-unit MLP rescaling is function-preserving only for gated (SwiGLU) MLPs")
    for i, s in enumerate(scales):
        p = f"layers.{i}."
        c[p + "up.w"] = c[p + "up.w"] * s[:, None]
        if p + "up.b" in c:
            c[p + "up.b"] = c[p + "up.b"] * s
        c[p + "down.w"] = c[p + "down.w"] / s[None, :]


def _head_rows(order: torch.Tensor, hd: int) -> torch.Tensor:
    return (order[:, None] * hd + torch.arange(hd)[None, :]).flatten()


def _permute_heads(spec: Spec, c: Params, kv_perms: Sequence[torch.Tensor], q_perms: Sequence[torch.Tensor]) -> None:
    hd, g = spec.head_dim, spec.group
    for i, (sigma, tau) in enumerate(zip(kv_perms, q_perms)):
        p = f"layers.{i}."
        q_rows = _head_rows((sigma[:, None] * g + tau).flatten(), hd)
        kv_rows = _head_rows(sigma, hd)
        for n, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            c[p + n + ".w"] = c[p + n + ".w"][rows]
            if p + n + ".b" in c:
                c[p + n + ".b"] = c[p + n + ".b"][rows]
        c[p + "o.w"] = c[p + "o.w"][:, q_rows]


def _map_heads(c: Params, name: str, mats: torch.Tensor) -> None:
    """Rows of head block k of ``name`` → mats[k] @ block (bias likewise)."""
    heads, hd = mats.shape[0], mats.shape[1]
    c[name + ".w"] = torch.einsum("kab,kbh->kah", mats, c[name + ".w"].view(heads, hd, -1)).reshape(heads * hd, -1)
    if name + ".b" in c:
        c[name + ".b"] = torch.einsum("kab,kb->ka", mats, c[name + ".b"].view(heads, hd)).reshape(-1)


def _map_vo(spec: Spec, c: Params, mats: Sequence[torch.Tensor]) -> None:
    for i, m in enumerate(mats):
        p, m = f"layers.{i}.", m.to(torch.float64)
        _map_heads(c, p + "v", m)
        inv = torch.linalg.inv(m).repeat_interleave(spec.group, dim=0)
        o = c[p + "o.w"].view(spec.hidden, spec.heads, spec.head_dim)
        c[p + "o.w"] = torch.einsum("hnb,nba->hna", o, inv).reshape(spec.hidden, -1)


def _map_qk(spec: Spec, c: Params, mats: Sequence[torch.Tensor]) -> None:
    for i, m in enumerate(mats):
        p, m = f"layers.{i}.", m.to(torch.float64)
        _map_heads(c, p + "q", m.repeat_interleave(spec.group, dim=0))
        _map_heads(c, p + "k", torch.linalg.inv(m).transpose(-1, -2))


# ----------------------------------------------------------------------------- sampling
def haar_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of diag(R) fixed."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def random_invertible(n: int, gen: torch.Generator) -> torch.Tensor:
    """Q₁ diag(s) Q₂ with Haar Q's and s ∈ [1/2, 2] log-uniform (condition number ≤ 4)."""
    s = torch.exp((torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.log(2))
    return haar_orthogonal(n, gen) @ torch.diag(s) @ haar_orthogonal(n, gen)


def random_scales(n: int, gen: torch.Generator, signed: bool = True) -> torch.Tensor:
    """Per-channel non-zero scales: ±exp(U(−ln 2, ln 2))."""
    s = torch.exp((torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.log(2))
    return s * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double() if signed else s


def rope_commuting_map(spec: Spec, gen: torch.Generator) -> torch.Tensor:
    """[hd, hd] map commuting with RoPE: z_j = a + ib on each rotary pair (j, j + r/2) as
    [[a, −b], [b, a]], an arbitrary invertible C on the non-rotary dims."""
    hd, r = spec.head_dim, spec.rotary_dims
    m = torch.zeros(hd, hd, dtype=torch.float64)
    half = r // 2
    for j in range(half):
        mag = math.exp((torch.rand(1, generator=gen).item() * 2 - 1) * math.log(2))
        ang = torch.rand(1, generator=gen).item() * 2 * math.pi
        a, b = mag * math.cos(ang), mag * math.sin(ang)
        m[j, j], m[j, j + half], m[j + half, j], m[j + half, j + half] = a, -b, b, a
    if r < hd:
        m[r:, r:] = random_invertible(hd - r, gen)
    return m


def available_kinds(config: dict) -> tuple[str, ...]:
    """The transform kinds that preserve the function of this architecture."""
    spec = spec_from_config(config)
    ok = {"residual_permutation", "mlp_permutation", "head_permutation", "vo_maps", "qk_maps"}
    if spec.norm == "rms" and not spec.tied:
        ok.add("residual_rotation")
    if spec.residual != "post":
        ok.add("norm_gains")
    if spec.glu:
        ok.add("mlp_rescale")
    return tuple(k for k in KINDS if k in ok)


@dataclass(frozen=True)
class Step:
    """One sampled transform: its kind, the seed it was drawn with, and its parameters."""

    kind: str
    seed: int
    params: dict

    def summary(self) -> dict:
        """JSON-able record: kind, seed, and permutation indices where the step has them."""
        out: dict = {"kind": self.kind, "seed": self.seed}
        for key in ("perm", "perms", "kv_perms", "q_perms"):
            if key in self.params:
                value = self.params[key]
                out[key] = value.tolist() if torch.is_tensor(value) else [v.tolist() for v in value]
        return out


def sample_step(kind: str, config: dict, seed: int) -> Step:
    """Draw the parameters of one transform ``kind`` for ``config`` from ``seed``."""
    spec, gen = spec_from_config(config), torch.Generator().manual_seed(seed)
    layers = range(spec.layers)
    if kind == "residual_permutation":
        params: dict = {"perm": torch.randperm(spec.hidden, generator=gen)}
    elif kind == "residual_rotation":
        params = {"rotation": haar_orthogonal(spec.hidden, gen)}
    elif kind == "norm_gains":
        params = {"scales": {n: random_scales(spec.hidden, gen) for n, r in pre_norms(spec).items() if r}}
    elif kind == "mlp_permutation":
        params = {"perms": [torch.randperm(spec.intermediate, generator=gen) for _ in layers]}
    elif kind == "mlp_rescale":
        params = {"scales": [random_scales(spec.intermediate, gen) for _ in layers]}
    elif kind == "head_permutation":
        params = {
            "kv_perms": [torch.randperm(spec.kv_heads, generator=gen) for _ in layers],
            "q_perms": [
                torch.stack([torch.randperm(spec.group, generator=gen) for _ in range(spec.kv_heads)]) for _ in layers
            ],
        }
    elif kind == "vo_maps":
        params = {
            "mats": [torch.stack([random_invertible(spec.head_dim, gen) for _ in range(spec.kv_heads)]) for _ in layers]
        }
    elif kind == "qk_maps":
        params = {"mats": [torch.stack([rope_commuting_map(spec, gen) for _ in range(spec.kv_heads)]) for _ in layers]}
    else:
        raise ValueError(f"unknown transform kind {kind!r}")
    return Step(kind, seed, params)


_APPLY: dict[str, Callable[[Spec, Params, dict], None]] = {
    "residual_permutation": lambda s, c, p: _permute_residual(s, c, p["perm"]),
    "residual_rotation": lambda s, c, p: _rotate_residual(s, c, p["rotation"]),
    "norm_gains": lambda s, c, p: _rescale_norms(s, c, p["scales"]),
    "mlp_permutation": lambda s, c, p: _permute_mlp(s, c, p["perms"]),
    "mlp_rescale": lambda s, c, p: _rescale_mlp(s, c, p["scales"]),
    "head_permutation": lambda s, c, p: _permute_heads(s, c, p["kv_perms"], p["q_perms"]),
    "vo_maps": lambda s, c, p: _map_vo(s, c, p["mats"]),
    "qk_maps": lambda s, c, p: _map_qk(s, c, p["mats"]),
}


# ----------------------------------------------------------------------------- public API
def _on_canonical(config: dict, state_dict: StateDict, fn: Callable[[Spec, Params], None]) -> tuple[dict, StateDict]:
    """Run ``fn`` on a float64 canonical copy and convert back to HF names and the input dtype."""
    dtype = next(iter(state_dict.values())).dtype
    canon = {k: v.to(torch.float64).clone() for k, v in to_canonical(config, state_dict).items()}
    fn(spec_from_config(config), canon)
    return dict(config), {k: v.to(dtype) for k, v in to_hf(config, canon).items()}


def apply_steps(config: dict, state_dict: StateDict, steps: Sequence[Step]) -> tuple[dict, StateDict]:
    """Apply sampled steps in order (one float64 round trip)."""

    def run(spec: Spec, c: Params) -> None:
        for step in steps:
            _APPLY[step.kind](spec, c, step.params)

    return _on_canonical(config, state_dict, run)


def plan_function_preserving(config: dict, seed: int, kinds: Sequence[str] | None = None) -> list[Step]:
    """Steps for ``kinds`` in the given order, or (``kinds`` None) a random non-empty subset of
    ``available_kinds`` in random order; step k is drawn with seed ``seed``·1000 + k."""
    valid = available_kinds(config)
    if kinds is None:
        rng = random.Random(seed)
        kinds = rng.sample(valid, rng.randint(1, len(valid)))
    bad = [k for k in kinds if k not in valid]
    if bad:
        raise ValueError(f"{bad} do not preserve the function of {config['model_type']}")
    return [sample_step(k, config, seed * 1000 + i) for i, k in enumerate(kinds)]


def random_function_preserving(
    config: dict, state_dict: StateDict, seed: int, kinds: Sequence[str] | None = None
) -> tuple[dict, StateDict]:
    """A random composition of function-preserving transforms valid for the architecture."""
    return apply_steps(config, state_dict, plan_function_preserving(config, seed, kinds))


def permute_residual(config: dict, state_dict: StateDict, perm: torch.Tensor) -> tuple[dict, StateDict]:
    """Residual-stream permutation P (new channel j = old channel perm[j])."""
    return _on_canonical(config, state_dict, lambda s, c: _permute_residual(s, c, perm))


def rotate_residual(config: dict, state_dict: StateDict, rotation: torch.Tensor) -> tuple[dict, StateDict]:
    """Fold RMSNorm gains, then rotate the residual stream by the orthogonal ``rotation`` (Rot(θ))."""
    return _on_canonical(config, state_dict, lambda s, c: _rotate_residual(s, c, rotation))


def fold_norm_gains(config: dict, state_dict: StateDict) -> tuple[dict, StateDict]:
    """W → W diag(g) (+ W b into the reader bias) for every pre-norm whose readers allow it; g → 1."""
    return _on_canonical(config, state_dict, _fold_norms)


def rescale_norm_gains(config: dict, state_dict: StateDict, scales: dict[str, torch.Tensor]) -> tuple[dict, StateDict]:
    """g → g ⊙ c (and b ⊙ c), readers ÷ c; ``scales`` keyed by canonical norm name (``pre_norms``)."""
    return _on_canonical(config, state_dict, lambda s, c: _rescale_norms(s, c, scales))


def permute_mlp(config: dict, state_dict: StateDict, perms: Sequence[torch.Tensor]) -> tuple[dict, StateDict]:
    """Per-layer MLP unit permutation."""
    return _on_canonical(config, state_dict, lambda s, c: _permute_mlp(s, c, perms))


def rescale_mlp(config: dict, state_dict: StateDict, scales: Sequence[torch.Tensor]) -> tuple[dict, StateDict]:
    """Per-layer SwiGLU unit rescaling: up row j × s_j, down column j ÷ s_j."""
    return _on_canonical(config, state_dict, lambda s, c: _rescale_mlp(s, c, scales))


def permute_heads(
    config: dict, state_dict: StateDict, kv_perms: Sequence[torch.Tensor], q_perms: Sequence[torch.Tensor]
) -> tuple[dict, StateDict]:
    """Per-layer head permutation: kv heads by ``kv_perms[i]``, q heads within groups by ``q_perms[i]`` [kv, G]."""
    return _on_canonical(config, state_dict, lambda s, c: _permute_heads(s, c, kv_perms, q_perms))


def map_vo(config: dict, state_dict: StateDict, mats: Sequence[torch.Tensor]) -> tuple[dict, StateDict]:
    """Per-layer, per-kv-head invertible C [kv, hd, hd]: v → C v, o blocks → O C⁻¹."""
    return _on_canonical(config, state_dict, lambda s, c: _map_vo(s, c, mats))


def map_qk(config: dict, state_dict: StateDict, mats: Sequence[torch.Tensor]) -> tuple[dict, StateDict]:
    """Per-layer, per-kv-head M [kv, hd, hd] (RoPE-commuting on rotary dims): q → M q, k → M⁻ᵀ k."""
    return _on_canonical(config, state_dict, lambda s, c: _map_qk(s, c, mats))
