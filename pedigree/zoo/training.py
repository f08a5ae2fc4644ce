"""Real (small) training on CPU: causal LM, masked LM, LoRA and logit distillation.

Objectives, per token position t with targets y and logits z:

* CLM  — cross-entropy −log softmax(z_t)[y_{t+1}] on random windows of the token stream;
* MLM  — BERT masking: 15 % of non-special positions are chosen, 80 % of those become ``[MASK]``,
  10 % a random token, 10 % stay; cross-entropy on the chosen positions only;
* distillation — T²·KL(softmax(z_teacher/T) ‖ softmax(z_student/T)) (Hinton et al.), teacher frozen;
* LoRA — W + (α/r)·B A with A ~ N(0, 1/in), B = 0, only A and B trained (Hu et al.), merged
  into W at the end.

AdamW (β, ε and decoupled weight decay on matrices only; by default β = 0.9, 0.95, ε = 1e-8, decay
0.1), linear warm-up then cosine decay to ``min_lr_frac``·lr, gradient-norm clipping (at 1 by
default); a zoo sets these through its ``OptimizerSettings``.  Every random draw comes from a seeded
``torch.Generator``, so a run is reproducible on a given machine and thread count.
Training runs on canonical parameters (``architectures``) and returns an HF-named state dict.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from .architectures import Spec, forward, spec_from_config
from .hf_layout import to_canonical, to_hf

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclass(frozen=True)
class TokenData:
    """A tokenised text: ``train`` ids (the first 95 %) and ``heldout`` ids (the last 5 %)."""

    train: torch.Tensor
    heldout: torch.Tensor

    @staticmethod
    def from_ids(ids: list[int], heldout_frac: float = 0.05) -> TokenData:
        t = torch.tensor(ids, dtype=torch.long)
        cut = int(len(t) * (1 - heldout_frac))
        return TokenData(train=t[:cut], heldout=t[cut:])


@dataclass(frozen=True)
class OptimizerSettings:
    """A zoo's optimiser and schedule: AdamW β/ε/weight decay, clipping, warm-up fractions (pre-training
    and everything else) and the final LR fraction.  The defaults are zoo A's."""

    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    warmup_pretrain: float = 0.1
    warmup_other: float = 0.05
    min_lr_frac: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """One training run.  ``objective``: "clm" | "mlm" | "distill"; ``lora_rank`` > 0 trains LoRA."""

    steps: int
    lr: float
    batch: int
    seq_len: int
    seed: int
    objective: str = "clm"
    warmup_frac: float = 0.1
    optimizer: OptimizerSettings = OptimizerSettings()  # its warm-up fractions are the caller's to pick
    lora_rank: int = 0
    lora_alpha: float = 16.0
    temperature: float = 2.0
    eval_windows: int = 32
    mask_id: int | None = None
    special_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrainResult:
    """Held-out loss before/after, mean loss of the last 10 % of steps, and what was run."""

    initial_loss: float
    final_loss: float
    final_train_loss: float
    steps: int
    lr: float
    tokens_seen: int
    seconds: float

    def as_notes(self) -> dict:
        return {
            "initial_loss": round(self.initial_loss, 4),
            "final_loss": round(self.final_loss, 4),
            "final_train_loss": round(self.final_train_loss, 4),
            "steps": self.steps,
            "lr": self.lr,
            "tokens_seen": self.tokens_seen,
        }


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up for ``warmup_frac``·steps, then cosine from lr to ``optimizer.min_lr_frac``·lr."""
    warm = max(1, int(tc.warmup_frac * tc.steps))
    if step < warm:
        return tc.lr * (step + 1) / warm
    progress = (step - warm) / max(1, tc.steps - warm)
    floor = tc.optimizer.min_lr_frac
    return tc.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def windows(ids: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ids[s : s + length] for every start s."""
    return ids[starts[:, None] + torch.arange(length)[None, :]]


def mlm_mask(
    x: torch.Tensor, tc: TrainConfig, vocab: int, gen: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 15 % / 80-10-10 corruption: (corrupted inputs, labels with −100 where not chosen)."""
    assert tc.mask_id is not None  # an MLM configuration names its mask token
    special = torch.zeros_like(x, dtype=torch.bool)
    for s in tc.special_ids:
        special |= x == s
    chosen = (torch.rand(x.shape, generator=gen) < 0.15) & ~special
    labels = torch.where(chosen, x, torch.full_like(x, -100))
    roll = torch.rand(x.shape, generator=gen)
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(x, tc.mask_id), x)
    random_tokens = torch.randint(0, vocab, x.shape, generator=gen)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_tokens, inputs)
    return inputs, labels


def batch_loss(
    spec: Spec,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    tc: TrainConfig,
    gen: torch.Generator | None,
    teacher: tuple[Spec, dict] | None = None,
) -> torch.Tensor:
    """The objective on one batch of windows ``x`` (length seq_len + 1 for causal models)."""
    if tc.objective == "mlm":
        inputs, labels = mlm_mask(x, tc, spec.vocab_size, gen)
        logits = forward(spec, params, inputs)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    inputs, targets = x[:, :-1], x[:, 1:]
    logits = forward(spec, params, inputs)
    if tc.objective == "distill" and teacher is not None:
        with torch.no_grad():
            soft = F.log_softmax(forward(teacher[0], teacher[1], inputs) / tc.temperature, dim=-1)
        student = F.log_softmax(logits / tc.temperature, dim=-1)
        kl = F.kl_div(student.flatten(0, 1), soft.flatten(0, 1), log_target=True, reduction="batchmean")
        return kl * tc.temperature**2
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def heldout_loss(spec: Spec, params: dict[str, torch.Tensor], data: TokenData, tc: TrainConfig) -> float:
    """Cross-entropy (CLM or fixed-seed MLM) on ``eval_windows`` evenly spaced held-out windows."""
    length = tc.seq_len + (0 if tc.objective == "mlm" else 1)
    span = max(1, len(data.heldout) - length)
    starts = torch.linspace(0, span - 1, tc.eval_windows).long()
    x = windows(data.heldout, starts, length)
    plain = replace(tc, objective="mlm" if tc.objective == "mlm" else "clm")
    with torch.no_grad():
        losses = [
            batch_loss(spec, params, chunk, plain, torch.Generator().manual_seed(0)).item()
            for chunk in x.split(tc.batch)
        ]
    return sum(losses) / len(losses)


def train(
    config: dict,
    state_dict: dict[str, torch.Tensor],
    data: TokenData,
    tc: TrainConfig,
    *,
    teacher: tuple[dict, dict[str, torch.Tensor]] | None = None,
) -> tuple[dict[str, torch.Tensor], TrainResult]:
    """Train an HF-named state dict on ``data``; returns the new float32 state dict and the losses.

    ``teacher`` (config, state dict) is required for ``objective="distill"``."""
    spec = spec_from_config(config)
    start = time.perf_counter()
    params = {k: v.detach().float().clone() for k, v in to_canonical(config, state_dict).items()}
    teacher_c = None
    if teacher is not None:
        teacher_c = (
            spec_from_config(teacher[0]),
            {k: v.detach().float() for k, v in to_canonical(teacher[0], teacher[1]).items()},
        )
    gen = torch.Generator().manual_seed(tc.seed)
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if tc.lora_rank:
        for name, w in params.items():
            if name.startswith("layers.") and name.split(".")[2] in LORA_TARGETS and name.endswith(".w"):
                a = (torch.randn(tc.lora_rank, w.shape[1], generator=gen) / math.sqrt(w.shape[1])).requires_grad_()
                lora[name] = (a, torch.zeros(w.shape[0], tc.lora_rank, requires_grad=True))
        trainable = [t for pair in lora.values() for t in pair]
        groups: list[dict[str, Any]] = [{"params": trainable, "weight_decay": 0.0}]
    else:
        for t in params.values():
            t.requires_grad_()
        groups = [
            {"params": [t for t in params.values() if t.dim() >= 2], "weight_decay": tc.optimizer.weight_decay},
            {"params": [t for t in params.values() if t.dim() < 2], "weight_decay": 0.0},
        ]
    scale = tc.lora_alpha / max(1, tc.lora_rank)

    def effective() -> dict[str, torch.Tensor]:
        if not lora:
            return params
        return {**params, **{n: params[n] + scale * (b @ a) for n, (a, b) in lora.items()}}

    initial = heldout_loss(spec, params, data, tc)
    opt = torch.optim.AdamW(groups, lr=tc.lr, betas=tc.optimizer.betas, eps=tc.optimizer.eps)
    length = tc.seq_len + (0 if tc.objective == "mlm" else 1)
    losses: list[float] = []
    for step in range(tc.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        starts = torch.randint(0, len(data.train) - length, (tc.batch,), generator=gen)
        loss = batch_loss(spec, effective(), windows(data.train, starts, length), tc, gen, teacher_c)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], tc.optimizer.clip_norm)
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final_params = {k: v.detach() for k, v in effective().items()}
    final = heldout_loss(spec, final_params, data, tc)
    tail = losses[-max(1, len(losses) // 10) :] if losses else [initial]
    result = TrainResult(
        initial,
        final,
        sum(tail) / len(tail),
        tc.steps,
        tc.lr,
        tc.steps * tc.batch * tc.seq_len,
        time.perf_counter() - start,
    )
    return to_hf(config, final_params), result
