"""A tensor's content: its elements in row-major order (strided views gathered), read in
bounded pieces, and how far two versions of a float tensor moved (`relative_l2_change`)."""

from __future__ import annotations

import array
import functools
import itertools
import json
import math
import struct
import sys
from collections.abc import Iterator
from typing import Any

from .layout import (
    MAX_EXPANDED_BYTES,
    READ_CHUNK,
    DTYPE_ITEMSIZE,
    CheckpointFormatError,
    Readable,
    TensorInfo,
    row_major_strides,
)


def tensor_bytes(fileobj: Readable, info: TensorInfo) -> bytes:
    """The tensor's elements in row-major order (strided views are gathered).

    An overlapping view larger than MAX_EXPANDED_BYTES is refused: its size comes from the
    declared shape, not from bytes in the file."""
    if info.overlapping and info.logical_nbytes > MAX_EXPANDED_BYTES:
        raise CheckpointFormatError(f"tensor {info.name!r} is an expanded view of {info.nbytes} stored bytes "
                                    f"declaring {info.logical_nbytes}; mlvc does not materialize it")
    if info.contiguous:
        return b"".join(iter_region(fileobj, info.offset, info.nbytes))
    span = b"".join(iter_region(fileobj, info.offset, info.nbytes))
    return _gather(span, info)


def comparable_bytes(fileobj: Readable, info: TensorInfo) -> tuple[bytes, bool]:
    """(bytes, exact): the tensor's elements when they are bounded by the file (exact), else, for
    an overlapping view, its stride and viewed bytes, which are equal exactly when the views are."""
    if info.overlapping:
        span = b"".join(iter_region(fileobj, info.offset, info.nbytes))
        return json.dumps(["view", list(info.stride or ())]).encode() + b"\0" + span, False
    return tensor_bytes(fileobj, info), True


def iter_region(fileobj: Readable, offset: int, nbytes: int) -> Iterator[bytes]:
    fileobj.seek(offset)
    remaining = nbytes
    while remaining > 0:
        chunk = fileobj.read(min(READ_CHUNK, remaining))
        if not chunk:
            raise CheckpointFormatError("checkpoint is truncated: tensor data runs past the end")
        remaining -= len(chunk)
        yield chunk


def _gather(span: bytes, info: TensorInfo) -> bytes:
    itemsize = DTYPE_ITEMSIZE[info.dtype]
    stride = info.stride or row_major_strides(info.shape)
    np = numpy_or_none()
    if np is not None and span:  # a C loop: the Python one below takes minutes per 100 M elements
        items = np.frombuffer(span, dtype=np.dtype((np.void, itemsize)))
        view = np.lib.stride_tricks.as_strided(items, shape=info.shape,
                                               strides=tuple(s * itemsize for s in stride), writeable=False)
        return np.ascontiguousarray(view).tobytes()
    *outer_shape, inner = info.shape
    *outer_stride, inner_step = stride
    out = bytearray()
    for index in itertools.product(*(range(d) for d in outer_shape)):
        base = sum(i * s for i, s in zip(index, outer_stride, strict=True)) * itemsize
        if inner_step == 1:
            out += span[base:base + inner * itemsize]
        else:
            for j in range(inner):
                at = base + j * inner_step * itemsize
                out += span[at:at + itemsize]
    return bytes(out)


# ------------------------------------------------------------- weight change


def relative_l2_change(a_bytes: bytes, b_bytes: bytes, dtype: str) -> float:
    """||b - a|| / ||a|| for two little-endian float tensors of the same dtype and size.

    0.0 when both are zero, inf when only `a` is.  Uses numpy when available and
    the standard library otherwise (numpy is not a dependency of mlvc).
    """
    if len(a_bytes) != len(b_bytes):
        raise CheckpointFormatError("cannot compare tensors of different sizes")
    if dtype not in ("float32", "float64", "float16", "bfloat16"):
        raise CheckpointFormatError(f"cannot compute weight change for dtype {dtype}")
    np = numpy_or_none()
    if np is not None:
        diff_sq, base_sq = _squared_norms_numpy(np, a_bytes, b_bytes, dtype)
    else:
        a, b = _floats(a_bytes, dtype), _floats(b_bytes, dtype)
        diff_sq = math.fsum((y - x) * (y - x) for x, y in zip(a, b, strict=True))
        base_sq = math.fsum(x * x for x in a)
    if base_sq == 0.0:
        return 0.0 if diff_sq == 0.0 else math.inf
    return math.sqrt(diff_sq) / math.sqrt(base_sq)


@functools.cache
def numpy_or_none() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _squared_norms_numpy(np: Any, a_bytes: bytes, b_bytes: bytes, dtype: str) -> tuple[float, float]:
    def load(raw: bytes) -> Any:
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
            return bits.view("<f4").astype(np.float64)
        code = {"float32": "<f4", "float64": "<f8", "float16": "<f2"}[dtype]
        return np.frombuffer(raw, dtype=code).astype(np.float64)

    a, b = load(a_bytes), load(b_bytes)
    diff = b - a
    return float(np.dot(diff, diff)), float(np.dot(a, a))


def _floats(raw: bytes, dtype: str) -> Any:
    """Decode little-endian floats with the stdlib only."""
    if dtype == "float16":
        return struct.unpack(f"<{len(raw) // 2}e", raw)
    if dtype == "bfloat16":
        halves = array.array("H", raw)
        if sys.byteorder == "big":
            halves.byteswap()
        # bfloat16 is the top half of a float32: shift into place and reinterpret.
        widened = array.array("I", (h << 16 for h in halves))
        return array.array("f", widened.tobytes())
    values = array.array("f" if dtype == "float32" else "d", raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values
