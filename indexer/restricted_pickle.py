"""A restricted reader of the ``data.pkl`` that ``torch.save`` writes, interpreted opcode by opcode.

Nothing here unpickles: no ``pickle.loads``, no import, no call.  The opcodes are those of
CPython's ``pickletools`` (protocols 2-4 as ``torch.save`` writes them, see
``torch/serialization.py`` ``_save`` and ``torch/_weights_only_unpickler.py``): plain values and
containers, the memo, ``GLOBAL``/``STACK_GLOBAL`` of a short allow-list, ``REDUCE`` of three
callables (``torch._utils._rebuild_tensor_v2``, ``torch._utils._rebuild_parameter``,
``collections.OrderedDict``), ``BINPERSID`` of a storage reference ``('storage', <torch
Storage type>, key, location, numel)`` and ``BUILD`` of an ``OrderedDict`` whose state is empty or
only torch's ``_metadata`` (dropped).  Everything else - ``INST``, ``OBJ``, ``NEWOBJ``, ``EXT*``,
any other global or callable, unknown opcodes - is a :class:`~pedigree.errors.CheckpointError`
naming it.  The results are inert records (:class:`StorageRef`, :class:`TensorRef`); the memo,
the stack, mark nesting, container depth, string lengths and the tensor count are capped.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from pedigree.errors import CheckpointError

MAX_PICKLE_BYTES = 64 * 2**20
"""The largest data.pkl read (a 400 B-parameter shard's is a few MB)."""
MAX_MEMO = 1_000_000
MAX_STACK = 100_000
MAX_CONTAINERS = 600_000
"""Most containers one data.pkl may build (torch builds about four per tensor); each is kept
alive while the reader runs, so this bounds its memory whatever the file's length."""
MAX_MARKS = 64
MAX_DEPTH = 32
"""Deepest container nesting (torch's state dicts nest 3 deep)."""
MAX_STRING = 64 * 1024
MAX_TENSORS = 100_000
MAX_DIMS = 16

STORAGE_DTYPES = {
    "DoubleStorage": "F64",
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "ComplexFloatStorage": "C64",
}
"""torch's storage classes (``torch.storage._dtype_to_storage_type_map``) and the safetensors
dtype name of their elements."""
ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
ITEM_BYTES["C64"] = 8
DTYPE_NAMES = frozenset(
    ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool", "complex64")
)
REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = ("torch._utils", "_rebuild_parameter")
ORDERED_DICT = ("collections", "OrderedDict")


@dataclass(frozen=True)
class Global:
    """An allowed global, kept as its name (never imported)."""

    module: str
    name: str


@dataclass(frozen=True)
class StorageRef:
    """A persistent storage id: ``numel`` elements of ``dtype`` stored in entry ``data/<key>``."""

    dtype: str
    key: str
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * ITEM_BYTES[self.dtype]


@dataclass(frozen=True)
class TensorRef:
    """A contiguous tensor: ``shape`` elements of its storage's dtype from element ``offset``."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]


class OrderedDictValue(dict[Any, Any]):
    """An ``OrderedDict`` as data (a plain dict keeps insertion order)."""


class _Mark:
    pass


_MARK = _Mark()


def _allowed(module: str, name: str) -> bool:
    if (module, name) in (REBUILD_TENSOR, REBUILD_PARAMETER, ORDERED_DICT):
        return True
    return module == "torch" and (name in STORAGE_DTYPES or name in DTYPE_NAMES)


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.path, self.pos = data, path, 0
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.depth: dict[int, int] = {}  # id(container) -> nesting depth
        self.keep: list[Any] = []  # every container, alive while the reader runs: ids stay unique
        self.tensors = 0
        self.storages: dict[str, StorageRef] = {}

    def fail(self, msg: str) -> CheckpointError:
        return CheckpointError(f"data.pkl: {msg} (at byte {self.pos})", path=self.path)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("ends in the middle of an opcode (truncated)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + 257)
        if end < 0:
            raise self.fail("a GLOBAL name longer than 256 bytes or without its newline")
        text = self.take(end - self.pos + 1)[:-1]
        try:
            return text.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("a GLOBAL name that is not ASCII") from None

    def text(self, n: int, utf8: bool = True) -> str | bytes:
        if n > MAX_STRING:
            raise self.fail(f"a {n}-byte string, longer than the {MAX_STRING}-byte limit")
        raw = self.take(n)
        if not utf8:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a string that is not UTF-8") from None

    # -- stack ------------------------------------------------------------------------------
    def push(self, value: Any) -> None:
        if len(self.stack) >= MAX_STACK:
            raise self.fail(f"more than {MAX_STACK} values on the stack")
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise self.fail("pops an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.fail("needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise self.fail("reads an empty stack")
        return self.stack[-1]

    def nest(self, container: Any, items: list[Any]) -> Any:
        """Record ``container``'s nesting depth after ``items`` went into it (a guard only:
        nothing here walks a container recursively, so cycles and stale depths are harmless)."""
        deepest = max((self.depth.get(id(v), 0) for v in items), default=0)
        if id(container) not in self.depth:
            if len(self.keep) >= MAX_CONTAINERS:
                raise self.fail(f"more than {MAX_CONTAINERS} containers")
            self.keep.append(container)
        level = max(self.depth.get(id(container), 1), deepest + 1)
        if level > MAX_DEPTH:
            raise self.fail(f"containers nested deeper than {MAX_DEPTH}")
        self.depth[id(container)] = level
        return container

    def setitems(self, target: Any, items: list[Any]) -> None:
        if not isinstance(target, dict) or len(items) % 2:
            raise self.fail(f"SETITEM(S) on a {type(target).__name__} or with an odd number of items")
        for k, v in zip(items[::2], items[1::2]):
            if not isinstance(k, (str, int, float, bool, bytes)) and k is not None:
                raise self.fail(f"a dict key that is a {type(k).__name__}")
            target[k] = v
        self.nest(target, items[1::2])

    def append(self, target: Any, items: list[Any]) -> None:
        if not isinstance(target, list):
            raise self.fail(f"APPEND(S) on a {type(target).__name__}")
        target.extend(items)
        self.nest(target, items)

    # -- torch ------------------------------------------------------------------------------
    def persistent(self, pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self.fail("a persistent id that is not ('storage', type, key, location, numel)")
        _, kind, key, location, numel = pid
        if not (isinstance(kind, Global) and kind.module == "torch" and kind.name in STORAGE_DTYPES):
            shown = f"{kind.module}.{kind.name}" if isinstance(kind, Global) else type(kind).__name__
            raise self.fail(f"a storage of type {shown}, not a typed torch storage")
        if not (isinstance(key, str) and key.isascii() and key.isalnum() and len(key) <= 64):
            raise self.fail("a storage key that is not a short alphanumeric string")
        if not isinstance(location, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise self.fail(f"storage {key!r} has a bad location or element count")
        ref = StorageRef(STORAGE_DTYPES[kind.name], key, numel)
        if self.storages.setdefault(key, ref) != ref:
            raise self.fail(f"storage {key!r} is declared twice with different types or sizes")
        return ref

    def rebuild_tensor(self, args: tuple[Any, ...]) -> TensorRef:
        if len(args) not in (6, 7):
            raise self.fail(f"_rebuild_tensor_v2 with {len(args)} arguments")
        storage, offset, shape, stride, requires_grad, hooks = args[:6]
        if not isinstance(storage, StorageRef):
            raise self.fail("_rebuild_tensor_v2 of something that is not a storage")
        ints = (offset, *shape, *stride) if isinstance(shape, tuple) and isinstance(stride, tuple) else (None,)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise self.fail("a tensor whose offset, shape or strides are not non-negative integers")
        if len(shape) != len(stride) or len(shape) > MAX_DIMS:
            raise self.fail(f"a tensor with {len(shape)} dimensions and {len(stride)} strides")
        if not isinstance(requires_grad, bool) or not (isinstance(hooks, dict) and not hooks):
            raise self.fail("a tensor with backward hooks or a non-boolean requires_grad")
        if len(args) == 7 and not isinstance(args[6], dict):
            raise self.fail("a tensor whose metadata is not a dict")
        expected = 1
        for size, step in reversed(list(zip(shape, stride))):
            if size > 1 and step != expected:
                raise self.fail(f"a non-contiguous tensor (shape {shape}, strides {stride})")
            expected *= size
            if expected > storage.numel:
                break
        if offset > storage.numel or math.prod(shape) > storage.numel - offset:
            raise self.fail(f"a tensor of shape {shape} at element {offset} beyond its storage of {storage.numel}")
        self.tensors += 1
        if self.tensors > MAX_TENSORS:
            raise self.fail(f"more than {MAX_TENSORS} tensors")
        return TensorRef(storage, offset, shape)

    def reduce(self, func: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise self.fail("REDUCE with arguments that are not a tuple")
        called = (func.module, func.name) if isinstance(func, Global) else None
        if called == REBUILD_TENSOR:
            return self.rebuild_tensor(args)
        if called == REBUILD_PARAMETER:
            if len(args) != 3 or not isinstance(args[0], TensorRef):
                raise self.fail("_rebuild_parameter of something that is not a tensor")
            return args[0]
        if called == ORDERED_DICT:
            if args:
                raise self.fail("OrderedDict called with arguments")
            return OrderedDictValue()
        shown = f"{func.module}.{func.name}" if isinstance(func, Global) else f"a {type(func).__name__}"
        raise self.fail(f"REDUCE calls {shown}, which is not a tensor rebuild or OrderedDict")

    def build(self, target: Any, state: Any) -> None:
        if not isinstance(target, OrderedDictValue):
            raise self.fail(f"BUILD sets the state of a {type(target).__name__}")
        if state is not None and not (isinstance(state, dict) and set(state) <= {"_metadata"}):
            raise self.fail("BUILD of an OrderedDict with a state other than torch's _metadata")

    def glob(self, module: str, name: str) -> Global:
        if not _allowed(module, name):
            raise self.fail(f"GLOBAL {module[:100]}.{name[:100]} is not allowed (only tensor rebuilds and storages)")
        return Global(module, name)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Any:  # noqa: C901 - one branch per opcode
        while True:
            if self.pos >= len(self.data):
                raise self.fail("ends without STOP (truncated)")
            start = self.pos
            op = self.take(1)
            if op == b"\x80":  # PROTO
                if self.take(1)[0] > 5:
                    raise self.fail("an unknown pickle protocol")
            elif op == b"\x95":  # FRAME (protocol 4): the frame length is only a hint
                self.take(8)
            elif op == b".":  # STOP
                return self.pop()
            elif op == b"(":
                if len(self.marks) >= MAX_MARKS:
                    raise self.fail(f"MARKs nested deeper than {MAX_MARKS}")
                self.marks.append(len(self.stack))
            elif op == b"0":
                self.pop()
            elif op == b"1":
                self.pop_mark()
            elif op == b"2":
                self.push(self.top())
            elif op == b"N":
                self.push(None)
            elif op in (b"\x88", b"\x89"):
                self.push(op == b"\x88")
            elif op == b"J":
                self.push(self.unpack("<i"))
            elif op == b"K":
                self.push(self.take(1)[0])
            elif op == b"M":
                self.push(self.unpack("<H"))
            elif op == b"\x8a":  # LONG1
                n = self.take(1)[0]
                if n > 16:
                    raise self.fail(f"a {n}-byte integer")
                self.push(int.from_bytes(self.take(n), "little", signed=True))
            elif op == b"G":
                self.push(self.unpack(">d"))
            elif op == b"X":
                self.push(self.text(self.unpack("<I")))
            elif op == b"\x8c":  # SHORT_BINUNICODE
                self.push(self.text(self.take(1)[0]))
            elif op == b"B":
                self.push(self.text(self.unpack("<I"), utf8=False))
            elif op == b"C":
                self.push(self.text(self.take(1)[0], utf8=False))
            elif op == b"}":
                self.push(self.nest({}, []))
            elif op == b"]":
                self.push(self.nest([], []))
            elif op == b")":
                self.push(())
            elif op in (b"t", b"\x85", b"\x86", b"\x87"):
                items = self.pop_mark() if op == b"t" else [self.pop() for _ in range(op[0] - 0x84)][::-1]
                self.push(self.nest(tuple(items), items))
            elif op == b"l":
                items = self.pop_mark()
                self.push(self.nest(list(items), items))
            elif op == b"d":
                items, target = self.pop_mark(), self.nest({}, [])
                self.setitems(target, items)
                self.push(target)
            elif op == b"a":
                value = self.pop()
                self.append(self.top(), [value])
            elif op == b"e":
                items = self.pop_mark()
                self.append(self.top(), items)
            elif op == b"s":
                value, key = self.pop(), self.pop()
                self.setitems(self.top(), [key, value])
            elif op == b"u":
                items = self.pop_mark()
                self.setitems(self.top(), items)
            elif op in (b"q", b"r", b"\x94"):  # BINPUT, LONG_BINPUT, MEMOIZE
                index = len(self.memo) if op == b"\x94" else self.take(1)[0] if op == b"q" else self.unpack("<I")
                if index >= MAX_MEMO:
                    raise self.fail(f"a memo index beyond {MAX_MEMO}")
                self.memo[index] = self.top()
            elif op in (b"h", b"j"):
                index = self.take(1)[0] if op == b"h" else self.unpack("<I")
                if index not in self.memo:
                    raise self.fail(f"memo entry {index} is read before it is written")
                self.push(self.memo[index])
            elif op == b"c":
                module = self.line()
                self.push(self.glob(module, self.line()))
            elif op == b"\x93":  # STACK_GLOBAL
                name, module = self.pop(), self.pop()
                if not isinstance(module, str) or not isinstance(name, str):
                    raise self.fail("STACK_GLOBAL of names that are not strings")
                self.push(self.glob(module, name))
            elif op == b"R":
                args = self.pop()
                self.push(self.reduce(self.pop(), args))
            elif op == b"Q":
                self.push(self.persistent(self.pop()))
            elif op == b"b":
                state = self.pop()
                self.build(self.top(), state)
            else:
                self.pos = start
                raise self.fail(f"opcode {_opname(op)} is not allowed")


_NAMES = {
    b"i": "INST", b"o": "OBJ", b"\x81": "NEWOBJ", b"\x92": "NEWOBJ_EX", b"\x82": "EXT1", b"\x83": "EXT2",
    b"\x84": "EXT4", b"P": "PERSID", b"I": "INT", b"L": "LONG", b"S": "STRING", b"V": "UNICODE", b"F": "FLOAT",
    b"g": "GET", b"p": "PUT", b"\x8b": "LONG4", b"T": "BINSTRING", b"U": "SHORT_BINSTRING",
    b"\x8d": "BINUNICODE8", b"\x8e": "BINBYTES8", b"\x8f": "EMPTY_SET", b"\x90": "ADDITEMS",
    b"\x91": "FROZENSET", b"\x96": "BYTEARRAY8", b"\x97": "NEXT_BUFFER", b"\x98": "READONLY_BUFFER",
}  # fmt: skip


def _opname(op: bytes) -> str:
    return _NAMES.get(op, f"0x{op.hex()}")


def read_state_dict(data: bytes, path: str) -> dict[str, TensorRef]:
    """The ``{name: tensor}`` mapping a torch ``data.pkl`` describes, read without unpickling."""
    if len(data) > MAX_PICKLE_BYTES:
        raise CheckpointError(f"data.pkl of {len(data)} bytes exceeds the {MAX_PICKLE_BYTES}-byte limit", path=path)
    reader = _Reader(data, path)
    top = reader.run()
    if not isinstance(top, dict):
        raise CheckpointError(f"data.pkl holds a {type(top).__name__}, not a state dict", path=path)
    out: dict[str, TensorRef] = {}
    for name, value in top.items():
        if not isinstance(name, str):
            raise CheckpointError(f"data.pkl: a state dict key that is a {type(name).__name__}", path=path)
        if not isinstance(value, TensorRef):
            raise CheckpointError(
                f"data.pkl: {name[:200]!r} is a {type(value).__name__}, not a tensor (a nested checkpoint?)", path=path
            )
        out[name] = value
    return out
