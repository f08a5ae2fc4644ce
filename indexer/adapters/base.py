"""Roles: what each tensor of a transformer checkpoint *is*, independent of its naming scheme.

An adapter turns a config.json plus the tensor names into a :class:`ModelRoles`.  Every matrix is
described by a :class:`MatrixRef` that says how to cut it out of the checkpoint and returns it in
one orientation, PyTorch ``nn.Linear``'s ``[out_features, in_features]``:

- q: [heads*head_dim, hidden]   k, v: [kv_heads*head_dim, hidden]   o: [hidden, heads*head_dim]
- up, gate: [mlp, hidden]       down: [hidden, mlp]
- embedding, head: [vocab, hidden]

so that GPT-2's transposed Conv1D weights, fused ``c_attn`` and GPT-NeoX's per-head interleaved
``query_key_value`` all look the same to the canonicalisation and fingerprint code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from pedigree.errors import CheckpointError
from pedigree.indexer.safetensors_format import TensorInfo
from pedigree.indexer.sources import TensorSource

MAX_LAYERS = 4096  # a config claiming more layers than this is not a checkpoint we can trust
TOKEN_PROBES = "tokens"  # probe rows: rows of a token embedding, named by the tokenizer's pieces
PIXEL_PROBES = "pixels"  # probe rows: a patch embedding's responses to single pixels (no tokenizer)


@dataclass(frozen=True)
class MatrixRef:
    """A 2-D matrix inside a (possibly fused, possibly transposed) checkpoint tensor.

    ``transpose``: the tensor is stored [in, out] (GPT-2 Conv1D).  ``part``/``parts``: after
    transposing, the rows hold ``parts`` blocks and this is block ``part``.  The rows form
    ``interleave_heads`` groups (0: one group), each group holding one block of every part in turn:
    [groups, parts, rows/groups/parts] (GPT-NeoX's per-head q|k|v).  ``sizes`` gives the parts'
    rows per group when they are not equal: Phi-3's ``qkv_proj`` is one group of sizes
    (H·d, KV·d, KV·d) under GQA; Falcon's new decoder architecture has KV groups of sizes
    (H/KV·d, d, d) - each key/value head's queries, then its key, then its value.

    ``stack``: the matrix spans several same-shape tensors (``name`` is the first), concatenated by
    rows - or by columns with ``stack_columns`` (a down projection, whose units are its columns).
    A mixture-of-experts MLP is one: its units are its experts' units, expert after expert (build
    it with :meth:`stacked`).  A stack of n tensors has ``parts = n``: like a fused tensor it is
    not one stored matrix, so code that reads plain tensors by name (``not transpose and parts ==
    1``) reads it through :class:`MatrixLoader`, which knows every piece
    (:meth:`MatrixLoader.stored_reads`).

    ``flatten``: the tensor has more than two dimensions (a convolution kernel [out, C, kh, kw]) and
    is read as [out, C·kh·kw] before transposing: a ViT / CLIP patch embedding then has one row per
    input pixel (``indexer.adapters.vision``).
    """

    name: str
    transpose: bool = False
    part: int = 0
    parts: int = 1
    interleave_heads: int = 0
    sizes: tuple[int, ...] = ()
    stack: tuple[str, ...] = ()
    stack_columns: bool = False
    flatten: bool = False

    def __post_init__(self) -> None:
        if self.stack and (
            self.stack[0] != self.name
            or self.parts != len(self.stack)
            or self.part
            or self.transpose
            or self.interleave_heads
            or self.sizes
        ):
            raise ValueError(f"a stacked MatrixRef starts at its name and has parts = {len(self.stack)}, untransposed")

    @classmethod
    def stacked(cls, names: tuple[str, ...] | list[str], *, columns: bool = False) -> MatrixRef:
        """The concatenation of ``names`` (same-shape tensors) by rows, or by ``columns``."""
        if not names:
            raise ValueError("a stack needs at least one tensor")
        return cls(names[0], parts=len(names), stack=tuple(names), stack_columns=columns)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """Every stored tensor this matrix is cut from."""
        return self.stack or (self.name,)

    def layout(self, part_rows: int) -> tuple[int, int, int, int]:
        """(groups, rows per group, offset of this part in a group, rows of this part per group)
        of the stored rows, for a matrix of ``part_rows`` rows."""
        groups = self.interleave_heads or 1
        if self.sizes:
            return groups, sum(self.sizes), sum(self.sizes[: self.part]), self.sizes[self.part]
        size = part_rows // groups
        return groups, size * self.parts, size * self.part, size

    def part_rows(self, stored_rows: int) -> int:
        """Rows of this part in a fused tensor of ``stored_rows`` rows (after transposing)."""
        if self.sizes:
            return (self.interleave_heads or 1) * self.sizes[self.part]
        return stored_rows // self.parts

    def select(self, block: torch.Tensor) -> torch.Tensor:
        """This part's rows of ``block``: whole groups of stored rows (after transposing)."""
        if self.parts == 1:
            return block
        rows, cols = block.shape
        _, group_rows, offset, size = self.layout(self.part_rows(rows))
        return block.reshape(-1, group_rows, cols)[:, offset : offset + size].reshape(-1, cols)

    def extract(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            tensor = tensor.reshape(tensor.shape[0], -1)
        return self.select(tensor.t() if self.transpose else tensor)

    def matrix_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The stored tensor's ``shape`` as this reference reads it (flattened, not transposed)."""
        return (shape[0], math.prod(shape[1:])) if self.flatten and len(shape) > 2 else shape

    def stored_rows(self, start: int, stop: int, rows: int) -> tuple[int, int] | None:
        """The rows ``[a, b)`` of the stored tensor that hold rows ``[start, stop)`` of this
        ``rows``-row matrix (for grouped layouts: whole groups, every part), or ``None`` when they
        are not contiguous in storage (a transposed tensor, a span cutting a group)."""
        if self.stack:  # the rows of its first tensor when they lie there (MatrixLoader.stored_reads: all)
            per = rows // len(self.stack)
            return (start, stop) if not self.stack_columns and stop <= per else None
        if self.transpose:
            return None
        if self.parts == 1:
            return start, stop
        groups, group_rows, offset, size = self.layout(rows)
        if groups == 1:
            return offset + start, offset + stop
        if start % size or stop % size:
            return None
        return start // size * group_rows, stop // size * group_rows

    def expected_tensor_shape(self, rows: int, cols: int) -> tuple[int, int]:
        """The stored shape that yields a [rows, cols] matrix (for a stack: of each of its tensors)."""
        if self.stack:
            n = len(self.stack)
            return (rows, cols // n) if self.stack_columns else (rows // n, cols)
        if self.sizes:
            groups, group_rows, _, size = self.layout(rows)
            full = (groups * group_rows if rows == groups * size else -1, cols)  # -1: the sizes disagree
        else:
            full = (rows * self.parts, cols)
        return (full[1], full[0]) if self.transpose else full


@dataclass(frozen=True)
class NormRef:
    """A normalisation layer whose gain (and bias) multiplies what the next matrices read.

    ``kind`` is ``rms`` (x / rms(x)) or ``layer`` (mean-centred, then / std).  Gemma stores the
    gain as ``weight`` with the layer applying ``1 + weight``: that is ``gain_offset = 1``.
    """

    weight: str | None
    bias: str | None = None
    kind: str = "rms"
    gain_offset: float = 0.0


@dataclass(frozen=True)
class LayerRoles:
    index: int
    attn_norm: NormRef | None
    q: MatrixRef
    k: MatrixRef
    v: MatrixRef
    o: MatrixRef
    mlp_norm: NormRef | None
    up: MatrixRef
    down: MatrixRef
    gate: MatrixRef | None
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_size: int
    q_norm: NormRef | None = None  # per-head query/key norms (Qwen3), folded into q/k rows
    k_norm: NormRef | None = None
    # norms on what a block writes (Gemma2/3's post-attention and post-feed-forward norms): roles
    # for inspection, not read by the canonical form (it reads what q/k/gate/up read)
    out_norms: tuple[tuple[str, NormRef], ...] = ()


@dataclass(frozen=True)
class ModelRoles:
    """Everything the canonicaliser needs to know about one checkpoint."""

    architecture: str  # e.g. "LlamaForCausalLM"
    family: str  # llama | gpt2 | gpt_neox | bert
    hidden_size: int
    vocab_size: int
    norm_kind: str  # rms | layer
    embedding: MatrixRef
    head: MatrixRef | None  # None: tied to the embedding, or no LM head (encoders)
    final_norm: NormRef | None  # the norm the head reads
    layers: tuple[LayerRoles, ...]
    tied: bool = False
    notes: tuple[str, ...] = field(default=())
    extras: tuple[tuple[str, str], ...] = field(default=())
    """(tensor, role) of tensors recognised but not read by the canonical form (a mixture-of-
    experts router, T5's cross-attention): listed by :meth:`role_map`, never fingerprinted."""
    probe_kind: str = TOKEN_PROBES
    """What the probe rows are: :data:`TOKEN_PROBES` (embedding rows of tokenizer pieces) or
    :data:`PIXEL_PROBES` (a patch embedding's pixel columns, ``indexer.probes.pixel_vocabulary``)."""

    def role_map(self) -> dict[str, str]:
        """Tensor name -> role string (``layers.3.q``, ``embedding``, ``layers.3.up[2]`` for the
        third tensor of a stack, ...), for inspection."""
        roles: dict[str, str] = {self.embedding.name: "embedding"}
        if self.head is not None:
            roles[self.head.name] = "head"
        if self.final_norm and self.final_norm.weight:
            roles[self.final_norm.weight] = "final_norm"
        for layer in self.layers:
            prefix = f"layers.{layer.index}."
            for role in ("q", "k", "v", "o", "up", "down", "gate"):
                ref = getattr(layer, role)
                if ref is not None and ref.stack:
                    for piece, name in enumerate(ref.stack):
                        roles.setdefault(name, f"{prefix}{role}[{piece}]")
                elif ref is not None:
                    roles.setdefault(ref.name, prefix + role)
            for role in ("attn_norm", "mlp_norm", "q_norm", "k_norm"):
                norm = getattr(layer, role)
                if norm is not None and norm.weight:
                    roles.setdefault(norm.weight, prefix + role)
            for role, norm in layer.out_norms:
                if norm.weight:
                    roles.setdefault(norm.weight, prefix + role)
        for name, role in self.extras:
            roles.setdefault(name, role)
        return roles


def config_int(config: Mapping, *keys: str, default: int | None = None, low: int = 1, high: int = 2**24) -> int:
    """The first present integer config field among ``keys``, range-checked (hostile configs)."""
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            shown = repr(value)  # a hostile value can be megabytes: shown cut short
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise CheckpointError(f"config.json field {key!r} = {shown} is not an integer in [{low}, {high}]")
        return value
    if default is None:
        raise CheckpointError(f"config.json lacks {' / '.join(keys)}")
    return default


def strip_prefix(names: Mapping[str, TensorInfo], candidates: tuple[str, ...], probe: str) -> str:
    """The name prefix (e.g. ``model.``) under which ``probe`` exists, or raise."""
    for prefix in candidates:
        if prefix + probe in names:
            return prefix
    raise CheckpointError(f"no tensor named {probe!r} under any of the prefixes {candidates}")


def check_matrix(tensors: Mapping[str, TensorInfo], ref: MatrixRef, rows: int, cols: int) -> None:
    """Raise unless ``ref``'s tensors exist with the shape that yields a [rows, cols] matrix."""
    expected = ref.expected_tensor_shape(rows, cols)
    for name in ref.tensor_names:
        info = tensors.get(name)
        if info is None:
            raise CheckpointError(f"missing tensor {name!r}")
        if tuple(info.shape) != expected:
            raise CheckpointError(f"tensor {name!r} has shape {list(info.shape)}, expected {list(expected)}")


def embedding_rows(tensors: Mapping[str, TensorInfo], ref: MatrixRef, hidden: int) -> int:
    """Rows of a [vocab, hidden] embedding or head (the tensor, not config.json, is authoritative)."""
    info = tensors.get(ref.name)
    if info is None:
        raise CheckpointError(f"missing tensor {ref.name!r}")
    shape = ref.matrix_shape(tuple(info.shape))
    if ref.transpose:
        shape = shape[::-1]
    if len(shape) != 2 or shape[1] != hidden or shape[0] < 1:
        raise CheckpointError(f"tensor {ref.name!r} has shape {list(info.shape)}, expected [vocab, {hidden}]")
    return shape[0]


def check_vector(tensors: Mapping[str, TensorInfo], name: str | None, size: int) -> None:
    if name is None:
        return
    info = tensors.get(name)
    if info is None:
        raise CheckpointError(f"missing tensor {name!r}")
    if tuple(info.shape) != (size,):
        raise CheckpointError(f"tensor {name!r} has shape {list(info.shape)}, expected [{size}]")


def check_layer(tensors: Mapping[str, TensorInfo], layer: LayerRoles, hidden: int) -> None:
    """Raise unless every matrix and gain of ``layer`` exists with the shape its roles imply."""
    q_rows, kv_rows = layer.num_heads * layer.head_dim, layer.num_kv_heads * layer.head_dim
    for ref, rows, cols in (
        (layer.q, q_rows, hidden),
        (layer.k, kv_rows, hidden),
        (layer.v, kv_rows, hidden),
        (layer.o, hidden, q_rows),
        (layer.up, layer.mlp_size, hidden),
        (layer.gate, layer.mlp_size, hidden),
        (layer.down, hidden, layer.mlp_size),
    ):
        if ref is not None:
            check_matrix(tensors, ref, rows, cols)
    for norm, size in (
        (layer.attn_norm, hidden),
        (layer.mlp_norm, hidden),
        (layer.q_norm, layer.head_dim),
        (layer.k_norm, layer.head_dim),
        *((out, hidden) for _, out in layer.out_norms),
    ):
        check_vector(tensors, norm.weight if norm else None, size)


def assemble_roles(
    tensors: Mapping[str, TensorInfo],
    *,
    architecture: str,
    family: str,
    norm_kind: str,
    hidden: int,
    embedding: str,
    head: str | None,
    final_norm: NormRef | None,
    layers: list[LayerRoles],
    notes: tuple[str, ...] = (),
    patch_embedding: bool = False,
) -> ModelRoles:
    """Check every layer, the embedding and the (optional) head, and build the ModelRoles.

    ``head`` names the LM head tensor if the architecture has one; absent from the checkpoint
    means tied to the embedding.  ``final_norm`` is kept only if its gain tensor exists.  With
    ``patch_embedding`` the embedding is a patch convolution [hidden, C, p, p], probed at its C·p·p
    pixel columns (:data:`PIXEL_PROBES`).
    """
    for layer in layers:
        check_layer(tensors, layer, hidden)
    embedding_ref = MatrixRef(embedding, transpose=True, flatten=True) if patch_embedding else MatrixRef(embedding)
    vocab = embedding_rows(tensors, embedding_ref, hidden)
    head_ref = MatrixRef(head) if head is not None and head in tensors else None
    if head_ref is not None:
        embedding_rows(tensors, head_ref, hidden)
    if final_norm is not None and final_norm.weight not in tensors:
        final_norm = None
    check_vector(tensors, final_norm.weight if final_norm else None, hidden)
    return ModelRoles(
        architecture=architecture,
        family=family,
        hidden_size=hidden,
        vocab_size=vocab,
        norm_kind=norm_kind,
        embedding=embedding_ref,
        head=head_ref,
        final_norm=final_norm,
        layers=tuple(layers),
        tied=head_ref is None,
        notes=notes,
        probe_kind=PIXEL_PROBES if patch_embedding else TOKEN_PROBES,
    )


def layer_tensor_names(layer: LayerRoles) -> list[str]:
    """Every tensor a block's canonical form reads (matrices, norm gains and biases)."""
    refs = [layer.q, layer.k, layer.v, layer.o, layer.up, layer.down, layer.gate]
    names = {name for ref in refs if ref is not None for name in ref.tensor_names}
    for norm in (layer.attn_norm, layer.mlp_norm, layer.q_norm, layer.k_norm):
        if norm is not None:
            names |= {n for n in (norm.weight, norm.bias) if n}
    return sorted(names)


class MatrixLoader:
    """Reads matrices by :class:`MatrixRef` as float32, reading each fused tensor only once."""

    def __init__(self, source: TensorSource) -> None:
        self.source = source
        self._last: tuple[str, torch.Tensor] | None = None

    def tensor(self, name: str) -> torch.Tensor:
        if self._last is not None and self._last[0] == name:
            return self._last[1]
        tensor = self.source.read(name).float()
        self._last = (name, tensor)
        return tensor

    def matrix(self, ref: MatrixRef) -> torch.Tensor:
        if ref.stack:
            return torch.cat([self.source.read(name).float() for name in ref.stack], dim=int(ref.stack_columns))
        return ref.extract(self.tensor(ref.name))

    def matrix_row_count(self, ref: MatrixRef) -> int:
        shape = ref.matrix_shape(tuple(self.source.info(ref.name).shape))
        if ref.stack:
            return shape[0] if ref.stack_columns else shape[0] * len(ref.stack)
        return ref.part_rows(shape[-1] if ref.transpose else shape[0])

    def stored_reads(self, ref: MatrixRef, start: int, stop: int) -> list[tuple[str, int, int]]:
        """(tensor, first stored row, end row) of every read that rows ``[start, stop)`` of
        ``ref`` take: one for a plain or fused tensor (:meth:`stored_span`), one per stacked
        tensor they reach for a stack."""
        if not ref.stack:
            return [(ref.name, *self.stored_span(ref, start, stop))]
        if ref.stack_columns:
            return [(name, start, stop) for name in ref.stack if stop > start]
        per = self.source.info(ref.name).shape[0]
        reads = []
        for piece, name in enumerate(ref.stack):
            a, b = max(start - piece * per, 0), min(stop - piece * per, per)
            if b > a:
                reads.append((name, a, b))
        return reads

    def stored_span(self, ref: MatrixRef, start: int, stop: int) -> tuple[int, int]:
        """Stored rows to read for rows ``[start, stop)`` of ``ref`` (the whole tensor if they
        are not contiguous in storage)."""
        span = ref.stored_rows(start, stop, self.matrix_row_count(ref))
        return span if span is not None else (0, self.source.info(ref.name).rows)

    def matrix_rows(self, ref: MatrixRef, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` of a matrix, reading only the stored rows that hold them (the
        whole tensor for a transposed one); the last span read is kept for fused siblings."""
        if ref.stack:  # the rows of each stacked tensor that hold them
            blocks = [self.source.read_rows(name, a, b).float() for name, a, b in self.stored_reads(ref, start, stop)]
            return torch.cat(blocks, dim=int(ref.stack_columns)) if blocks else self.matrix(ref)[start:stop]
        span = ref.stored_rows(start, stop, self.matrix_row_count(ref))
        if span is None:
            return self.matrix(ref)[start:stop]
        key = f"{ref.name}[{span[0]}:{span[1]}]"
        if self._last is not None and self._last[0] == key:
            block = self._last[1]
        else:
            block = self.source.read_rows(ref.name, *span).float()
            self._last = (key, block)
        if ref.parts == 1 or (ref.interleave_heads or 1) == 1:
            return block  # the span holds this part's rows alone
        _, group_rows, offset, size = ref.layout(self.matrix_row_count(ref))  # whole groups -> this part's rows
        return block.reshape(-1, group_rows, block.shape[-1])[:, offset : offset + size].reshape(-1, block.shape[-1])

    def rows(self, ref: MatrixRef, row_ids: torch.Tensor) -> torch.Tensor:
        """Selected rows of an unfused, untransposed matrix (embedding / head): reads them only."""
        if ref.transpose or ref.parts != 1:
            return self.matrix(ref)[row_ids]
        ids = sorted(set(int(i) for i in row_ids.tolist()))
        blocks: list[torch.Tensor] = []
        start = 0
        while start < len(ids):  # coalesce consecutive ids into one contiguous read
            stop = start
            while stop + 1 < len(ids) and ids[stop + 1] == ids[stop] + 1:
                stop += 1
            blocks.append(self.source.read_rows(ref.name, ids[start], ids[stop] + 1))
            start = stop + 1
        if not blocks:
            return torch.zeros(0, self.source.info(ref.name).shape[-1])
        where = torch.searchsorted(torch.tensor(ids), row_ids.to(torch.int64))  # row i of the sorted, de-duplicated ids
        return torch.cat(blocks).float()[where]

    def gain(self, norm: NormRef | None, size: int) -> torch.Tensor:
        if norm is None or norm.weight is None:
            return torch.ones(size)
        return self.source.read(norm.weight).float() + norm.gain_offset
