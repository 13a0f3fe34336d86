"""What a checkpoint's layout is: its tensors (name, dtype, shape, where their bytes lie), its
torch storages and plain values, and the few primitives every format reader shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mlvc.errors import MlvcError


class Readable(Protocol):
    """What a checkpoint is read from: a binary file, or a file over stored chunks."""

    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


CheckpointFormat = Literal["torch-zip", "safetensors"]
TORCH_ZIP: CheckpointFormat = "torch-zip"
SAFETENSORS: CheckpointFormat = "safetensors"

HEAD_SIZE = 4096  # bytes detect_format wants to see; enough for the first zip entry name
STATE_DICT_WRAPPERS = ("model.", "state_dict.")
READ_CHUNK = 8 * 1024 * 1024


# dtype name (torch's, without "torch.") -> bytes per element
DTYPE_ITEMSIZE: dict[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1, "bool": 1,
    "complex128": 16, "complex64": 8, "complex32": 4,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1,
    "qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1,
    "bits8": 1, "bits16": 2, "bits1x8": 1, "bits2x4": 1, "bits4x2": 1,
}


# An expanded (overlapping) view is materialized only up to this many logical bytes.
MAX_EXPANDED_BYTES = 64 * 1024 * 1024


class CheckpointFormatError(MlvcError, ValueError):
    """A file that is not a checkpoint mlvc can read, or a damaged one."""


@dataclass(frozen=True)
class TensorInfo:
    name: str  # dotted path in the saved object, e.g. "model.conv1.weight"
    dtype: str  # torch dtype name without "torch.", e.g. "float32"
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the tensor's first element in the file
    nbytes: int  # bytes from `offset` that hold the tensor (its span, for strided views)
    stride: tuple[int, ...] | None = None  # in elements; None means row-major contiguous

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def contiguous(self) -> bool:
        return self.stride is None or self.stride == row_major_strides(self.shape)

    @property
    def logical_nbytes(self) -> int:
        return self.numel * DTYPE_ITEMSIZE[self.dtype]

    @property
    def overlapping(self) -> bool:
        """A view whose elements share storage bytes (`expand`, `as_strided` with small strides):
        its logical size is not bounded by the file, so it is never materialized (a 1.5 KiB
        checkpoint may declare a 4 GB tensor).  A non-overlapping view never exceeds its span."""
        return self.logical_nbytes > self.nbytes


@dataclass(frozen=True)
class StorageInfo:
    """A torch storage record: the bytes one or more tensors view."""

    key: str
    offset: int
    nbytes: int


@dataclass
class CheckpointLayout:
    format: CheckpointFormat
    tensors: list[TensorInfo]
    extras: dict[str, Any] = field(default_factory=dict)  # non-tensor values, by dotted name
    storages: list[StorageInfo] = field(default_factory=list)
    byteorder: str = "little"

    def tensor(self, name: str) -> TensorInfo:
        for info in self.tensors:
            if info.name == name:
                return info
        raise KeyError(name)


def row_major_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def read_exact(fileobj: Readable, size: int) -> bytes:
    data = fileobj.read(size)
    if len(data) != size:
        raise CheckpointFormatError("checkpoint is truncated")
    return data
