"""The evidence file of one model revision: named arrays and a JSON manifest, bounded on read.

Layout: an uncompressed ``.npz`` (a zip of ``.npy`` arrays, ``numpy.savez``) with one extra
array, ``__manifest__``, holding the zlib-compressed UTF-8 JSON manifest.  Reading never
unpickles (``allow_pickle=False``), refuses a file larger than :data:`MAX_FILE_BYTES`, an array
whose declared size exceeds what is left of the file, and a manifest that inflates past
:data:`MAX_MANIFEST_BYTES`.  bfloat16 arrays are kept as their raw 16-bit patterns (numpy has no
bfloat16) and named in the manifest's ``dtypes``.  Files are written to a temporary name and
renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pedigree.errors import EvidenceMissingError

MANIFEST = "__manifest__"
MAX_FILE_BYTES = 4 * 2**30
MAX_MANIFEST_BYTES = 256 * 2**20
_EXACT = (torch.bfloat16, torch.float16, torch.float32)


def compact(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in the narrowest float dtype that holds every value exactly (bf16, f16, f32):
    rows read from a bfloat16 checkpoint and widened to float32 are stored in 2 bytes again."""
    tensor = tensor.detach().to("cpu")
    if not tensor.is_floating_point():
        return tensor
    wide = tensor.float()
    for dtype in _EXACT:
        narrow = wide.to(dtype)
        if torch.equal(narrow.float(), wide) or dtype == torch.float32:
            return narrow
    return wide


def _to_numpy(tensor: torch.Tensor) -> tuple[np.ndarray, str]:
    if tensor.dtype == torch.bfloat16:
        return tensor.contiguous().view(torch.int16).numpy(), "bfloat16"
    array = tensor.contiguous().numpy()
    return array, str(array.dtype)


def write_evidence(path: Path, manifest: dict[str, Any], arrays: dict[str, torch.Tensor]) -> int:
    """Write the file atomically; returns its size in bytes."""
    stored: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, tensor in arrays.items():
        stored[name], dtypes[name] = _to_numpy(tensor)
    body = json.dumps({**manifest, "dtypes": dtypes}, separators=(",", ":")).encode()
    stored[MANIFEST] = np.frombuffer(zlib.compress(body, 6), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    with open(partial, "wb") as out:
        np.savez(out, **stored)  # type: ignore[arg-type]
    os.replace(partial, path)
    return path.stat().st_size


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data, MAX_MANIFEST_BYTES)
    except zlib.error as error:
        raise EvidenceMissingError(f"evidence manifest is not zlib data: {error}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise EvidenceMissingError("evidence manifest is larger than its limit or truncated")
    return body


class EvidenceFile:
    """Read access to one evidence file: ``manifest`` and lazily loaded tensors by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            size = path.stat().st_size
        except OSError:
            raise EvidenceMissingError(f"evidence file {path.name} is missing") from None
        if size > MAX_FILE_BYTES:
            raise EvidenceMissingError(f"evidence file {path.name} is larger than {MAX_FILE_BYTES} bytes")
        try:
            self._zip = zipfile.ZipFile(path)
            infos = {i.filename: i for i in self._zip.infolist()}
            if sum(i.file_size for i in infos.values()) > MAX_FILE_BYTES:
                raise EvidenceMissingError(f"evidence file {path.name} declares more than {MAX_FILE_BYTES} bytes")
            self._names = {name[: -len(".npy")] for name in infos if name.endswith(".npy")}
            raw = self._array(MANIFEST)
            manifest = json.loads(_inflate(raw.tobytes()))
        except (zipfile.BadZipFile, ValueError, OSError, KeyError) as error:
            raise EvidenceMissingError(f"evidence file {path.name} is unreadable: {error}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("dtypes", {}), dict):
            raise EvidenceMissingError(f"evidence file {path.name}: its manifest is not an object")
        self.manifest: dict[str, Any] = manifest
        self._dtypes: dict[str, str] = manifest.get("dtypes", {})

    def _array(self, name: str) -> np.ndarray:
        """One member, its header checked before anything is allocated: no object dtype, and no
        more data declared than the member holds."""
        info = self._zip.getinfo(name + ".npy")
        with self._zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"{name} holds Python objects (allow_pickle=False)")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if count < 0 or count * dtype.itemsize > info.file_size:
                raise ValueError(f"{name} declares more data than its {info.file_size} bytes")
            data = member.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"{name} is truncated")
        array = np.frombuffer(data, dtype=dtype).copy()
        return array.reshape(shape, order="F" if fortran else "C")

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def tensor(self, name: str) -> torch.Tensor:
        """The stored tensor ``name`` (EvidenceMissingError when the file has none)."""
        if name not in self._names or name == MANIFEST:
            raise EvidenceMissingError(f"{self.manifest.get('label', self.path.name)}: no stored {name}")
        try:
            array = self._array(name)
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
            raise EvidenceMissingError(f"evidence array {name} is unreadable: {error}") from None
        tensor = torch.from_numpy(np.array(array))
        return tensor.view(torch.bfloat16) if self._dtypes.get(name) == "bfloat16" else tensor

    def close(self) -> None:
        self._zip.close()
