"""The layout of a ``torch.save`` zip (PyTorch >= 1.6), read without torch and without running
pickled code: ``<prefix>/data.pkl`` is read with an allowlisting unpickler that maps the few
torch rebuild helpers to inert stand-ins; every tensor refers to a storage entry
``<prefix>/data/<key>``, stored uncompressed, whose offset comes from its zip local header."""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mlvc.errors import MlvcError, UnsafeCheckpointError

from .layout import (
    DTYPE_ITEMSIZE,
    TORCH_ZIP,
    CheckpointFormatError,
    CheckpointLayout,
    Readable,
    StorageInfo,
    TensorInfo,
    read_exact,
    row_major_strides,
)


ZIP_LOCAL_MAGIC = b"PK\x03\x04"


ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra length


TORCH_RECORDS = ("data.pkl", "byteorder", "version", ".format_version", ".storage_alignment")


TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")


# torch.<X>Storage classes named in pickles -> element dtype
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}


# torch.<alias> dtype globals that are not canonical names
_DTYPE_ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64",
    "int": "int32", "short": "int16", "cfloat": "complex64", "cdouble": "complex128",
    "chalf": "complex32",
}


def read_torch_zip(fileobj: Readable) -> CheckpointLayout:
    try:
        with zipfile.ZipFile(fileobj) as archive:
            prefix = _torch_record_prefix(archive)
            saved = _restricted_load(archive.read(prefix + "data.pkl"))
            byteorder = _byteorder(archive, prefix)
            entries = {info.filename: info for info in archive.infolist()}
    except zipfile.BadZipFile as err:
        raise CheckpointFormatError(f"damaged torch checkpoint: {err}") from err
    tensor_refs: dict[str, _TensorRef] = {}
    extras: dict[str, Any] = {}
    _flatten(saved, "", tensor_refs, extras, _TensorFinder())
    storages = _locate_storages(fileobj, entries, prefix, tensor_refs.values())
    tensors = [_tensor_info(name, ref, storages[ref.storage.key])
               for name, ref in tensor_refs.items()]
    return CheckpointLayout(format=TORCH_ZIP, tensors=tensors, extras=extras,
                            storages=sorted(storages.values(), key=lambda s: s.offset),
                            byteorder=byteorder)


def _torch_record_prefix(archive: zipfile.ZipFile) -> str:
    """The archive's top folder (torch names it after the file: "model/data.pkl")."""
    pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pickles:
        raise CheckpointFormatError("zip file has no data.pkl; not a torch.save checkpoint")
    return min(pickles, key=len)[: -len("data.pkl")]


def _byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    try:
        mark = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
    except KeyError:
        return "little"  # files older than the byteorder record were little-endian in practice
    return mark if mark in ("little", "big") else "little"


def _locate_storages(fileobj: Readable, entries: dict[str, zipfile.ZipInfo], prefix: str,
                     refs: Iterable[_TensorRef]) -> dict[str, StorageInfo]:
    located: dict[str, StorageInfo] = {}
    for ref in refs:
        key = ref.storage.key
        if key in located:
            continue
        info = entries.get(f"{prefix}data/{key}")
        if info is None:
            raise CheckpointFormatError(f"torch checkpoint lacks storage record data/{key}")
        located[key] = StorageInfo(key=key, offset=_entry_data_offset(fileobj, info),
                                   nbytes=info.file_size)
    return located


def _entry_data_offset(fileobj: Readable, info: zipfile.ZipInfo) -> int:
    """Absolute offset of a stored zip entry's bytes, from its local file header."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointFormatError(f"{info.filename} is compressed; torch writes storages uncompressed")
    fileobj.seek(info.header_offset)
    header = read_exact(fileobj, ZIP_LOCAL_HEADER.size)
    magic, name_len, extra_len = ZIP_LOCAL_HEADER.unpack(header)
    # The local header must agree with the central directory, or offsets could point anywhere.
    if magic != ZIP_LOCAL_MAGIC or read_exact(fileobj, name_len) != info.orig_filename.encode():
        raise CheckpointFormatError(f"zip local header of {info.filename} is damaged")
    return info.header_offset + ZIP_LOCAL_HEADER.size + name_len + extra_len


def _tensor_info(name: str, ref: _TensorRef, storage: StorageInfo) -> TensorInfo:
    itemsize = DTYPE_ITEMSIZE[ref.dtype]
    shape, stride = tuple(ref.size), tuple(ref.stride)
    if any(d < 0 for d in shape):
        raise CheckpointFormatError(f"tensor {name!r} has a negative dimension")
    if math.prod(shape) == 0:
        span = 0
    elif stride == row_major_strides(shape):
        span = math.prod(shape) * itemsize
    else:
        span = (1 + sum((dim - 1) * step for dim, step in zip(shape, stride, strict=True))) * itemsize
    start = ref.storage_offset * itemsize
    if start < 0 or start + span > storage.nbytes or any(s < 0 for s in stride):
        raise CheckpointFormatError(f"tensor {name!r} points outside its storage")
    contiguous = stride == row_major_strides(shape)
    return TensorInfo(name=name, dtype=ref.dtype, shape=shape, offset=storage.offset + start,
                      nbytes=span, stride=None if contiguous else stride)


# ------------------------------------------------------- restricted unpickling


@dataclass(frozen=True)
class _StorageType:
    dtype: str


@dataclass(frozen=True)
class _DType:
    name: str

    def __str__(self) -> str:
        return f"torch.{self.name}"


@dataclass(frozen=True)
class _TypeMarker:
    """A class named in the pickle (torch.Tensor, Parameter) that we never import."""

    qualname: str


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: str


class _TensorRef:
    """Stand-in for a tensor: which storage, where in it, what shape."""

    def __init__(self, storage: _StorageRef, storage_offset: int, size: Iterable[int],
                 stride: Iterable[int], dtype: str | None = None):
        if not isinstance(storage, _StorageRef):
            raise CheckpointFormatError("tensor record does not reference a storage")
        self.storage = storage
        self.storage_offset = int(storage_offset)
        self.size = tuple(int(d) for d in size)
        self.stride = tuple(int(s) for s in stride)
        self.dtype = dtype or storage.dtype
        if self.dtype not in DTYPE_ITEMSIZE or len(self.size) != len(self.stride):
            raise CheckpointFormatError(f"unsupported tensor record (dtype {self.dtype})")


def _rebuild_tensor(storage: _StorageRef, storage_offset: int, size: Iterable[int],
                    stride: Iterable[int], *_ignored: Any) -> _TensorRef:
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: _StorageRef, storage_offset: int, size: Iterable[int],
                       stride: Iterable[int], requires_grad: bool, backward_hooks: Any,
                       dtype: _DType, *_ignored: Any) -> _TensorRef:
    if not isinstance(dtype, _DType):
        raise CheckpointFormatError("tensor record has no dtype")
    return _TensorRef(storage, storage_offset, size, stride, dtype.name)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    return data  # a Parameter's data is all a layout needs


def _rebuild_from_type_v2(func: Callable[..., Any], new_type: Any, args: tuple[Any, ...],
                          state: Any) -> Any:
    # `func` can only be something find_class handed out, i.e. one of our stand-ins.
    return func(*args)


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes objects as _codecs.encode(text, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"checkpoint pickle uses _codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _TypeMarker("torch.Tensor"),
        ("torch.nn.parameter", "Parameter"): _TypeMarker("torch.nn.Parameter"),
        ("torch", "Size"): tuple,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("_codecs", "encode"): _encode_latin1,
    }
    for storage_name, dtype in _STORAGE_DTYPES.items():
        allowed[("torch", storage_name)] = _StorageType(dtype)
    # Storages of newer dtypes are saved untyped, under their defining module.
    allowed[("torch.storage", "UntypedStorage")] = _StorageType("uint8")
    for dtype in DTYPE_ITEMSIZE:
        allowed[("torch", dtype)] = _DType(dtype)
    for alias, dtype in _DTYPE_ALIASES.items():
        allowed[("torch", alias)] = _DType(dtype)
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's data.pkl, resolving only allowlisted globals to inert stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint refers to {module}.{name}; refusing to load code from a pickle",
                hint="only tensors, containers and plain values can be read without torch",
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointFormatError(f"unsupported persistent record in checkpoint: {pid!r:.80}")
        return _StorageRef(key=str(pid[2]), dtype=pid[1].dtype)


def _restricted_load(data: bytes) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except MlvcError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            IndexError, KeyError, RecursionError, OverflowError) as err:
        raise CheckpointFormatError(f"cannot read checkpoint pickle: {err}") from err


# ---------------------------------------------------------------- flattening


class _TensorFinder:
    """Memoised "does this container hold a tensor?" (flattening asks again at every level)."""

    def __init__(self) -> None:
        self._memo: dict[int, bool] = {}

    def holds_tensor(self, obj: Any) -> bool:
        if isinstance(obj, _TensorRef):
            return True
        if not isinstance(obj, (dict, list, tuple)):
            return False
        key = id(obj)
        if key not in self._memo:
            self._memo[key] = False  # guards against self-referencing containers
            values = obj.values() if isinstance(obj, dict) else obj
            self._memo[key] = any(self.holds_tensor(v) for v in values)
        return self._memo[key]


def _flatten(obj: Any, name: str, tensors: dict[str, _TensorRef], extras: dict[str, Any],
             counter: _TensorFinder) -> None:
    """Tensors by dotted name; containers without tensors are kept whole as extras."""
    if isinstance(obj, _TensorRef):
        tensors[name or "tensor"] = obj
    elif counter.holds_tensor(obj):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in items:
            _flatten(value, f"{name}.{key}" if name else str(key), tensors, extras, counter)
    else:
        extras[name or "value"] = _plain(obj)


def _plain(obj: Any) -> Any:
    """Plain Python values for extras: OrderedDict -> dict, torch markers -> strings."""
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_plain(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(value) for value in obj)
    if isinstance(obj, (_DType, _TypeMarker, _StorageType)):
        return str(obj)
    return obj
