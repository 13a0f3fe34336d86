"""The layout of a safetensors file: an 8-byte little-endian header length, a JSON header
(name -> dtype, shape, data_offsets; ``__metadata__``), then the tensors' bytes."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from .layout import (
    DTYPE_ITEMSIZE,
    SAFETENSORS,
    CheckpointFormatError,
    CheckpointLayout,
    Readable,
    TensorInfo,
    read_exact,
)

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors spec's own limit


_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


def read_safetensors(fileobj: Readable) -> CheckpointLayout:
    fileobj.seek(0)
    (header_len,) = struct.unpack("<Q", read_exact(fileobj, 8))
    try:
        header = json.loads(read_exact(fileobj, header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointFormatError(f"safetensors header is not valid JSON: {err}") from err
    if not isinstance(header, dict):
        raise CheckpointFormatError("safetensors header is not a JSON object")
    data_start = 8 + header_len
    metadata = header.pop("__metadata__", None) or {}
    tensors = [_safetensors_entry(name, entry, data_start) for name, entry in header.items()]
    tensors.sort(key=lambda t: (t.offset, t.name))
    return CheckpointLayout(format=SAFETENSORS, tensors=tensors,
                            extras=dict(metadata) if isinstance(metadata, dict) else {})


def _safetensors_entry(name: str, entry: Any, data_start: int) -> TensorInfo:
    try:
        dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        shape = tuple(int(dim) for dim in entry["shape"])
        begin, end = (int(x) for x in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointFormatError(f"safetensors entry {name!r} is malformed: {err!r}") from err
    if begin < 0 or end - begin != math.prod(shape) * DTYPE_ITEMSIZE[dtype]:
        raise CheckpointFormatError(f"safetensors entry {name!r} has inconsistent data_offsets")
    return TensorInfo(name=name, dtype=dtype, shape=shape, offset=data_start + begin,
                      nbytes=end - begin)
