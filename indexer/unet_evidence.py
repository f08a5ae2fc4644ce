"""The evidence file of a diffusers UNet: what the UNet relatedness test and lineage read, captured
once at ingest (issue 16, part 5), so that after ingest nothing opens the checkpoint again.

The UNet counterpart of ``indexer.stored_model`` (same file format, ``indexer.evidence_file``:
a pickle-free ``.npz`` with a JSON manifest, bounded on read).  :func:`capture_unet` stores
exactly what ``indexer.unet.unet_test`` and ``indexer.unet_lineage`` use of one UNet
(``indexer.unet.UNetEvidence``):

- the config and the tensor headers (name, dtype, shape), so its roles (``indexer.adapters.unet``)
  are rebuilt exactly;
- per transformer block: its shape (width, heads, units), its signature, its read-side and
  write-side unit descriptors and the inputs of the raw (gate | value | down) rows of the first
  units the test matches - those gate and value rows and down columns as the checkpoint stores
  them, and ``norm3``'s gain (``block_<i>.*``); :func:`raw_unit_rows` folds and centres them
  exactly as ``indexer.unet.block_rows`` does (the same float64 operations on the same values),
  which keeps a float16 UNet's rows in 2 bytes instead of the folded rows' 4;
- per tensor: the raw-weight sketch rows (``sketch.<name>``).

Values are stored as computed (descriptors and signatures in their own dtype; the raw rows'
inputs and the sketch rows in the narrowest float dtype that holds them exactly,
``evidence_file.compact``, and widened back on read), so :class:`StoredUNet` gives the test and
the lineage the very numbers a live read gives.  The recipe is named by
:data:`UNET_CAPTURE_VERSION`: a change re-captures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pedigree.errors import EvidenceMissingError
from pedigree.indexer.adapters.unet import unet_roles
from pedigree.indexer.evidence_file import EvidenceFile, compact
from pedigree.indexer.safetensors_format import DTYPES, TensorInfo
from pedigree.indexer.sources import TensorSource
from pedigree.indexer.unet import BlockEvidence, UNetEvidence, unet_version

UNET_CAPTURE_VERSION = f"uev2-{unet_version()}"
KIND = "unet"


def _centred(rows: torch.Tensor) -> torch.Tensor:
    return rows - rows.mean(dim=1, keepdim=True)  # as indexer.unet._centred


def raw_unit_rows(gate: torch.Tensor, value: torch.Tensor, down: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """[n, 3·width] float32: the (gate | value | down) unit rows of ``indexer.unet.block_evidence``
    from the stored gate and value rows [n, width], down columns [width, n] and ``norm3`` gain."""
    g3 = gain.double()
    read, up = _centred(gate.double() * g3), _centred(value.double() * g3)
    return torch.cat([read, up, down.double().t().contiguous()], dim=1).float()


def capture_unet(
    evidence: UNetEvidence, config: Mapping[str, Any], source: TensorSource
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest and arrays of one UNet's evidence file (module docstring); ``source`` is the
    checkpoint ``evidence`` was read from (its headers and the raw rows' inputs, read again)."""
    arrays: dict[str, torch.Tensor] = {}
    blocks = []
    for i, (block, roles) in enumerate(zip(evidence.blocks, evidence.roles.blocks)):
        n = block.raw.shape[0]
        arrays[f"block_{i}.signature"] = torch.from_numpy(block.signature.copy())
        arrays[f"block_{i}.read"] = torch.from_numpy(block.read.copy())
        arrays[f"block_{i}.write"] = torch.from_numpy(block.write.copy())
        arrays[f"block_{i}.gate"] = compact(source.read_rows(roles.ff_in, roles.units, roles.units + n))
        arrays[f"block_{i}.value"] = compact(source.read_rows(roles.ff_in, 0, n))
        arrays[f"block_{i}.down"] = compact(source.read(roles.ff_out)[:, :n].contiguous())
        arrays[f"block_{i}.gain"] = compact(source.read(roles.norms[2]))
        blocks.append(list(block.shape))
    sketch = sorted(evidence.sketch)
    for name in sketch:
        arrays[f"sketch.{name}"] = compact(evidence.sketch[name])
    manifest = {
        "kind": KIND,
        "version": UNET_CAPTURE_VERSION,
        "label": evidence.label,
        "config": dict(config),
        "tensors": {name: [info.dtype, list(info.shape)] for name, info in sorted(source.tensors().items())},
        "blocks": blocks,
        "sketch": sketch,
    }
    return manifest, arrays


def _headers(raw: object) -> dict[str, TensorInfo]:
    """Tensor headers from the manifest (no file offsets: only names, dtypes and shapes are used)."""
    if not isinstance(raw, dict):
        raise EvidenceMissingError("UNet evidence: its tensor headers are not an object")
    out: dict[str, TensorInfo] = {}
    for name, entry in raw.items():
        dtype, shape = entry
        if dtype not in DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise EvidenceMissingError(f"UNet evidence: bad header for {name!r}")
        numel = 1
        for n in shape:
            numel *= n
        out[name] = TensorInfo(name, dtype, tuple(shape), "", 0, numel * DTYPES[dtype].bits // 8)
    return out


class StoredUNet:
    """One UNet's evidence read back from its file: :attr:`evidence` is the
    ``indexer.unet.UNetEvidence`` that ``unet_test`` and ``unet_lineage`` take; nothing here opens
    the checkpoint.  EvidenceMissingError when the file is not a UNet capture of this recipe."""

    def __init__(self, file: EvidenceFile, label: str | None = None) -> None:
        manifest = file.manifest
        if manifest.get("kind") != KIND or manifest.get("version") != UNET_CAPTURE_VERSION:
            raise EvidenceMissingError(f"{file.path.name} is not a UNet evidence file of recipe {UNET_CAPTURE_VERSION}")
        self.file = file
        self.label = label or str(manifest.get("label", file.path.name))
        self.config: dict[str, Any] = manifest.get("config") or {}
        self.tensors = _headers(manifest.get("tensors"))
        try:
            self.roles = unet_roles(self.config, self.tensors)
            self._blocks = [tuple(int(n) for n in shape) for shape in manifest["blocks"]]
            self._sketch = [str(name) for name in manifest["sketch"]]
        except (KeyError, TypeError, ValueError) as error:
            raise EvidenceMissingError(f"{self.label}: UNet evidence manifest is damaged: {error}") from None
        if len(self._blocks) != len(self.roles.blocks):
            raise EvidenceMissingError(f"{self.label}: {len(self._blocks)} stored blocks, not as its roles")

    def block(self, i: int) -> BlockEvidence:
        width, heads, units = self._blocks[i]
        return BlockEvidence(
            shape=(width, heads, units),
            signature=self.file.tensor(f"block_{i}.signature").numpy(),
            read=self.file.tensor(f"block_{i}.read").numpy(),
            write=self.file.tensor(f"block_{i}.write").numpy(),
            raw=raw_unit_rows(*(self.file.tensor(f"block_{i}.{part}") for part in ("gate", "value", "down", "gain"))),
        )

    def sketch(self) -> dict[str, torch.Tensor]:
        return {name: self.file.tensor(f"sketch.{name}").float() for name in self._sketch}

    @property
    def evidence(self) -> UNetEvidence:
        """The stored ``UNetEvidence`` (every block and the whole sketch)."""
        blocks = [self.block(i) for i in range(len(self._blocks))]
        return UNetEvidence(self.label, self.roles, blocks, self.sketch())

    def close(self) -> None:
        self.file.close()
