"""Optional: the robust test on real forward-pass activations (φ_H / φ_MATCH as in the paper).

For models small enough to run, both checkpoints are loaded with Hugging Face ``transformers``
(safetensors only - ``use_safetensors=True``, never ``trust_remote_code``; install with
``pip install 'pedigree[forward]'``) and fed the *same text*: random sequences of the probe
strings both vocabularies contain, written in each model's own token ids.  Each MLP unit is
described by its pre-activation outputs at every position:

GLU MLPs only: the gate outputs matched by cos vs the up outputs matched by |cos| (the paper's
φ_MATCH), tested for agreement.  (For other MLPs the paper first distils each block into a GLU;
matching the same activations on two halves of the positions is *not* a valid substitute - on the
zoo it flagged independent GPT-2 / NeoX pairs at 10^-10 - so those pairs are refused.)

Activations are functions of the whole network, so this variant also sees through transforms that
leave the MLP weights intact but act elsewhere.  H0: θ_A ⊥ θ_B (approximate null, like the weight
version).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pedigree.errors import UnsupportedModelError
from pedigree.indexer.independence.inputs import ModelTensors, shared_probes
from pedigree.indexer.independence.logp import log10_bonferroni_min, log10_fisher
from pedigree.indexer.independence.matching import match
from pedigree.indexer.independence.statistics import NULL_ROBUST, agreement

MAX_PARAMETERS = 2_000_000_000
SEQUENCES, LENGTH = 16, 64


def _load(folder: str, family: str) -> torch.nn.Module:
    try:
        import transformers
    except ImportError:
        raise UnsupportedModelError(
            "the activation test needs `transformers` (pip install 'pedigree[forward]')"
        ) from None
    loader = transformers.AutoModelForMaskedLM if family == "bert" else transformers.AutoModelForCausalLM
    model: torch.nn.Module = loader.from_pretrained(
        folder, dtype=torch.float32, use_safetensors=True, trust_remote_code=False
    )
    return model.eval()


def _module(model: torch.nn.Module, tensor_name: str) -> torch.nn.Module:
    """The module whose weight is ``tensor_name`` (checkpoint prefixes may differ from the model's)."""
    wanted = tensor_name.removesuffix(".weight")
    modules: dict[str, torch.nn.Module] = dict(model.named_modules())
    for name, module in modules.items():
        if name == wanted or name.endswith("." + wanted) or (name and wanted.endswith("." + name)):
            return module
    raise UnsupportedModelError(f"no module for {tensor_name} in the loaded model")


def _capture(model: torch.nn.Module, names: list[str], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the named linear modules on ``ids``: [units, sequences*length] each."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(_module: torch.nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor, key: str = name) -> None:
            outputs[key] = output.detach().reshape(-1, output.shape[-1]).t().contiguous()

        hooks.append(_module(model, name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for handle in hooks:
            handle.remove()
    return outputs


def activation_test(a: ModelTensors, b: ModelTensors, folder_a: str, folder_b: str, *, seed: int = 0) -> dict[str, Any]:
    """The activation variant of the robust MLP test on the diagonal block pairs."""
    for model in (a, b):
        if sum(info.numel for info in model.source.tensors().values()) > MAX_PARAMETERS:
            raise UnsupportedModelError(
                f"{model.label} is too large for the activation test (> {MAX_PARAMETERS:,} parameters)"
            )
    ids_a, ids_b = shared_probes(a, b)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids_a), size=(SEQUENCES, LENGTH))
    inputs_a, inputs_b = torch.from_numpy(ids_a[picks]), torch.from_numpy(ids_b[picks])
    if not (a.glu and b.glu):
        raise UnsupportedModelError("the activation test needs GLU MLPs (gate and up projections) in both models")
    blocks = []
    model_a, model_b = _load(folder_a, a.roles.family), _load(folder_b, b.roles.family)
    for layer in range(min(a.depth, b.depth)):
        ra, rb = a.roles.layers[layer], b.roles.layers[layer]
        assert ra.gate is not None and rb.gate is not None  # GLU MLPs (checked above)
        acts_a = _capture(model_a, [ra.gate.name, ra.up.name], inputs_a)
        acts_b = _capture(model_b, [rb.gate.name, rb.up.name], inputs_b)
        first = match(acts_a[ra.gate.name], acts_b[rb.gate.name])
        second = match(acts_a[ra.up.name], acts_b[rb.up.name], absolute=True)
        blocks.append(agreement(first, second, layers=(layer, layer)))
    combined = log10_bonferroni_min(
        [log10_fisher([s.log10_p for s in blocks]), log10_bonferroni_min([s.log10_p for s in blocks])]
    )
    return {
        "name": "mlp_activations",
        "log10_p": round(combined, 4),
        "null": NULL_ROBUST,
        "detail": {"blocks": [s.as_json() for s in blocks], "tokens": SEQUENCES * LENGTH},
    }
