"""Tiny ViT and CLIP-vision encoders in plain torch, with Hugging Face's exact tensor names.

The modules nest like ``transformers``' ``ViTForImageClassification`` and ``CLIPVisionModel``
(``modeling_vit.py``, ``modeling_clip.py``), so ``state_dict()`` gives the names and shapes their
checkpoints store and ``config()`` a config.json those classes load (tests/test_vision.py loads the
zoo's folders with transformers and compares the outputs):

- ViT: pre-LayerNorm blocks (``layernorm_before`` / ``layernorm_after``), exact GELU, LayerNorm
  eps 1e-12, a conv patch embedding with bias, ``cls_token`` and learned ``position_embeddings``,
  ``classifier`` on the final-normed class token;
- CLIP vision: ``pre_layrnorm`` on the embeddings, pre-LayerNorm blocks (``layer_norm1`` /
  ``layer_norm2``), quick-GELU, eps 1e-5, a bias-free patch embedding, ``class_embedding``; the
  pooled output is ``post_layernorm`` of the class token.  ``CLIPVisionModel`` has no classifier:
  training puts a linear probe (:attr:`CLIPVision.probe`) on the pooled output, left out of the
  checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VisionShape:
    """Sizes of one tiny encoder."""

    hidden: int
    heads: int
    layers: int
    mlp: int
    image: int
    patch: int
    channels: int = 3
    labels: int = 10

    @property
    def patches(self) -> int:
        return (self.image // self.patch) ** 2


class _Node(nn.Module):
    """A named container (HF's intermediate modules that only hold children)."""


def _attention(x: torch.Tensor, q: nn.Linear, k: nn.Linear, v: nn.Linear, heads: int) -> torch.Tensor:
    b, n, h = x.shape
    d = h // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, n, heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q(x)), split(k(x)), split(v(x)))
    return out.transpose(1, 2).reshape(b, n, h)


class ViTLayer(nn.Module):
    def __init__(self, s: VisionShape) -> None:
        super().__init__()
        self.heads = s.heads
        self.attention = _Node()
        self.attention.attention = _Node()
        for name in ("query", "key", "value"):
            setattr(self.attention.attention, name, nn.Linear(s.hidden, s.hidden))
        self.attention.output = _Node()
        self.attention.output.dense = nn.Linear(s.hidden, s.hidden)
        self.intermediate = _Node()
        self.intermediate.dense = nn.Linear(s.hidden, s.mlp)
        self.output = _Node()
        self.output.dense = nn.Linear(s.mlp, s.hidden)
        self.layernorm_before = nn.LayerNorm(s.hidden, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(s.hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attention.attention
        y = self.layernorm_before(x)
        x = x + self.attention.output.dense(_attention(y, a.query, a.key, a.value, self.heads))
        y = F.gelu(self.intermediate.dense(self.layernorm_after(x)))
        return x + self.output.dense(y)


class ViTClassifier(nn.Module):
    """``ViTForImageClassification`` (``vit.*`` + ``classifier``)."""

    def __init__(self, s: VisionShape) -> None:
        super().__init__()
        self.shape = s
        self.vit = _Node()
        self.vit.embeddings = _Node()
        self.vit.embeddings.cls_token = nn.Parameter(torch.randn(1, 1, s.hidden) * 0.02)
        self.vit.embeddings.position_embeddings = nn.Parameter(torch.randn(1, s.patches + 1, s.hidden) * 0.02)
        self.vit.embeddings.patch_embeddings = _Node()
        self.vit.embeddings.patch_embeddings.projection = nn.Conv2d(s.channels, s.hidden, s.patch, stride=s.patch)
        self.vit.encoder = _Node()
        self.vit.encoder.layer = nn.ModuleList(ViTLayer(s) for _ in range(s.layers))
        self.vit.layernorm = nn.LayerNorm(s.hidden, eps=1e-12)
        self.classifier = nn.Linear(s.hidden, s.labels)
        _init(self)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        e = self.vit.embeddings
        x = e.patch_embeddings.projection(images).flatten(2).transpose(1, 2)
        x = torch.cat([e.cls_token.expand(len(x), -1, -1), x], dim=1) + e.position_embeddings
        for layer in self.vit.encoder.layer:
            x = layer(x)
        return self.vit.layernorm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images)[:, 0])

    def config(self) -> dict:
        s = self.shape
        return {
            "architectures": ["ViTForImageClassification"],
            "model_type": "vit",
            "hidden_size": s.hidden,
            "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads,
            "intermediate_size": s.mlp,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "initializer_range": 0.02,
            "layer_norm_eps": 1e-12,
            "image_size": s.image,
            "patch_size": s.patch,
            "num_channels": s.channels,
            "qkv_bias": True,
            "id2label": {str(i): str(i) for i in range(s.labels)},
            "label2id": {str(i): i for i in range(s.labels)},
        }

    def checkpoint(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}


class CLIPLayer(nn.Module):
    def __init__(self, s: VisionShape) -> None:
        super().__init__()
        self.heads = s.heads
        self.self_attn = _Node()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, name, nn.Linear(s.hidden, s.hidden))
        self.layer_norm1 = nn.LayerNorm(s.hidden, eps=1e-5)
        self.mlp = _Node()
        self.mlp.fc1 = nn.Linear(s.hidden, s.mlp)
        self.mlp.fc2 = nn.Linear(s.mlp, s.hidden)
        self.layer_norm2 = nn.LayerNorm(s.hidden, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.self_attn
        x = x + a.out_proj(_attention(self.layer_norm1(x), a.q_proj, a.k_proj, a.v_proj, self.heads))
        y = self.mlp.fc1(self.layer_norm2(x))
        return x + self.mlp.fc2(y * torch.sigmoid(1.702 * y))  # quick_gelu


class CLIPVision(nn.Module):
    """``CLIPVisionModel`` (``vision_model.*``) plus a linear probe that is not saved."""

    def __init__(self, s: VisionShape) -> None:
        super().__init__()
        self.shape = s
        self.vision_model = _Node()
        vm = self.vision_model
        vm.embeddings = _Node()
        vm.embeddings.class_embedding = nn.Parameter(torch.randn(s.hidden) * 0.02)
        vm.embeddings.patch_embedding = nn.Conv2d(s.channels, s.hidden, s.patch, stride=s.patch, bias=False)
        vm.embeddings.position_embedding = nn.Embedding(s.patches + 1, s.hidden)
        vm.pre_layrnorm = nn.LayerNorm(s.hidden, eps=1e-5)
        vm.encoder = _Node()
        vm.encoder.layers = nn.ModuleList(CLIPLayer(s) for _ in range(s.layers))
        vm.post_layernorm = nn.LayerNorm(s.hidden, eps=1e-5)
        self.probe = nn.Linear(s.hidden, s.labels)
        _init(self)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        vm = self.vision_model
        e = vm.embeddings
        x = e.patch_embedding(images).flatten(2).transpose(1, 2)
        x = torch.cat([e.class_embedding.expand(len(x), 1, -1), x], dim=1) + e.position_embedding.weight
        x = vm.pre_layrnorm(x)
        for layer in vm.encoder.layers:
            x = layer(x)
        return x

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        return self.vision_model.post_layernorm(self.features(images)[:, 0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.probe(self.pooled(images))

    def config(self) -> dict:
        s = self.shape
        return {
            "architectures": ["CLIPVisionModel"],
            "model_type": "clip_vision_model",
            "hidden_size": s.hidden,
            "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads,
            "intermediate_size": s.mlp,
            "hidden_act": "quick_gelu",
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "initializer_factor": 1.0,
            "layer_norm_eps": 1e-5,
            "image_size": s.image,
            "patch_size": s.patch,
            "num_channels": s.channels,
            "projection_dim": s.hidden,
        }

    def checkpoint(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items() if not k.startswith("probe.")}


VisionModel = ViTClassifier | CLIPVision


def _init(model: nn.Module) -> None:
    """Truncated-normal(0.02) linear and conv weights, zero biases, unit LayerNorms (as HF's ViT)."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)


def build(kind: str, shape: VisionShape, seed: int) -> VisionModel:
    """A freshly initialised ``vit`` or ``clip_vision`` model (``torch.manual_seed(seed)`` first)."""
    torch.manual_seed(seed)
    return ViTClassifier(shape) if kind == "vit" else CLIPVision(shape)


def load(kind: str, shape: VisionShape, tensors: dict[str, torch.Tensor], seed: int = 0) -> VisionModel:
    """A model holding ``tensors`` (a CLIP-vision checkpoint gets a fresh linear probe, from ``seed``)."""
    model = build(kind, shape, seed)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or any(not name.startswith("probe.") for name in missing):
        raise ValueError(f"checkpoint does not fit: missing {missing}, unexpected {unexpected}")
    return model
