"""Tensor layouts of checkpoint files, read without torch and without running pickled code.

Two formats are understood:

* ``torch-zip``: what ``torch.save`` writes since PyTorch 1.6 — a zip archive
  (entries stored uncompressed) holding ``<prefix>/data.pkl``, a pickle of the
  saved object in which every tensor refers to a storage entry
  ``<prefix>/data/<key>``.  The pickle is read with an allowlisting unpickler
  that maps the few torch rebuild helpers to inert stand-ins, so no torch import
  and no arbitrary code execution is needed to learn names, dtypes, shapes and
  where in the file each tensor's bytes are.
* ``safetensors``: an 8-byte little-endian header length, a JSON header, then data.

Knowing tensor byte ranges lets mlvc chunk on tensor boundaries (so a change to
one layer leaves every other layer's chunks intact), hash per module, and
compare weights between versions.
"""

from __future__ import annotations

import array
import functools
import io
import itertools
import json
import math
import pickle
import struct
import threading
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import xxhash

from mlvc.errors import MlvcError, UnsafeCheckpointError


class Readable(Protocol):
    """What a checkpoint is read from: a binary file, or a file over stored chunks."""

    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


CheckpointFormat = Literal["torch-zip", "safetensors"]
TORCH_ZIP: CheckpointFormat = "torch-zip"
SAFETENSORS: CheckpointFormat = "safetensors"

HEAD_SIZE = 4096  # bytes detect_format wants to see; enough for the first zip entry name
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors spec's own limit
STATE_DICT_WRAPPERS = ("model.", "state_dict.")
READ_CHUNK = 8 * 1024 * 1024

_ZIP_LOCAL_MAGIC = b"PK\x03\x04"
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... name length, extra length
_TORCH_RECORDS = ("data.pkl", "byteorder", "version", ".format_version", ".storage_alignment")
_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")

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

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
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
        return self.stride is None or self.stride == _row_major_strides(self.shape)

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


# ------------------------------------------------------------------ detection


def detect_format(head: bytes, name: str = "") -> CheckpointFormat | None:
    """Recognise a checkpoint from its first bytes (ideally HEAD_SIZE of them) and its file name."""
    if head.startswith(_ZIP_LOCAL_MAGIC):
        return TORCH_ZIP if _looks_like_torch_zip(head, name) else None
    if _looks_like_safetensors(head):
        return SAFETENSORS
    return None


def _looks_like_torch_zip(head: bytes, name: str) -> bool:
    # torch.save's first zip entry is always one of its own records.
    entry = _first_zip_entry_name(head)
    if entry is not None and entry.rsplit("/", 1)[-1] in _TORCH_RECORDS:
        return True
    return str(name).lower().endswith(_TORCH_SUFFIXES)


def _first_zip_entry_name(head: bytes) -> str | None:
    if len(head) < _ZIP_LOCAL_HEADER.size:
        return None
    _, name_len, _ = _ZIP_LOCAL_HEADER.unpack_from(head)
    raw = head[_ZIP_LOCAL_HEADER.size:_ZIP_LOCAL_HEADER.size + name_len]
    return raw.decode("utf-8", "replace") if len(raw) == name_len else None


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack_from("<Q", head)
    return 2 <= header_len <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


# ------------------------------------------------------------------ layouts


def read_layout(fileobj: Readable) -> CheckpointLayout:
    """Tensor layout of a seekable binary checkpoint file (torch zip or safetensors)."""
    fileobj.seek(0)
    head = fileobj.read(HEAD_SIZE)
    fmt = detect_format(head, str(getattr(fileobj, "name", "")))
    if fmt == TORCH_ZIP:
        return _read_torch_zip(fileobj)
    if fmt == SAFETENSORS:
        return _read_safetensors(fileobj)
    raise CheckpointFormatError("not a torch.save zip or safetensors checkpoint")


def layout_ranges(fileobj: Readable) -> list[tuple[int, int]]:
    """(offset, length) of the scattered regions `read_layout` will read beyond the file's head and
    end: the zip local headers of a torch checkpoint (a safetensors header is at the head).

    Reading the zip's central directory costs a read at the end of the file; a reader that
    fetches over a network can prefetch these ranges in one batch instead of one by one.
    """
    fileobj.seek(0)
    head = fileobj.read(HEAD_SIZE)
    if detect_format(head, str(getattr(fileobj, "name", ""))) != TORCH_ZIP:
        return []
    try:
        with zipfile.ZipFile(fileobj) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as err:
        raise CheckpointFormatError(f"damaged torch checkpoint: {err}") from err
    return [(i.header_offset, _ZIP_LOCAL_HEADER.size + len(i.orig_filename.encode()) + 256) for i in infos]


def _read_safetensors(fileobj: Readable) -> CheckpointLayout:
    fileobj.seek(0)
    (header_len,) = struct.unpack("<Q", _read_exact(fileobj, 8))
    try:
        header = json.loads(_read_exact(fileobj, header_len))
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


def _read_torch_zip(fileobj: Readable) -> CheckpointLayout:
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
    header = _read_exact(fileobj, _ZIP_LOCAL_HEADER.size)
    magic, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(header)
    # The local header must agree with the central directory, or offsets could point anywhere.
    if magic != _ZIP_LOCAL_MAGIC or _read_exact(fileobj, name_len) != info.orig_filename.encode():
        raise CheckpointFormatError(f"zip local header of {info.filename} is damaged")
    return info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len


def _tensor_info(name: str, ref: _TensorRef, storage: StorageInfo) -> TensorInfo:
    itemsize = DTYPE_ITEMSIZE[ref.dtype]
    shape, stride = tuple(ref.size), tuple(ref.stride)
    if any(d < 0 for d in shape):
        raise CheckpointFormatError(f"tensor {name!r} has a negative dimension")
    if math.prod(shape) == 0:
        span = 0
    elif stride == _row_major_strides(shape):
        span = math.prod(shape) * itemsize
    else:
        span = (1 + sum((dim - 1) * step for dim, step in zip(shape, stride, strict=True))) * itemsize
    start = ref.storage_offset * itemsize
    if start < 0 or start + span > storage.nbytes or any(s < 0 for s in stride):
        raise CheckpointFormatError(f"tensor {name!r} points outside its storage")
    contiguous = stride == _row_major_strides(shape)
    return TensorInfo(name=name, dtype=ref.dtype, shape=shape, offset=storage.offset + start,
                      nbytes=span, stride=None if contiguous else stride)


def _row_major_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


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


# -------------------------------------------------------- boundaries & modules


def storage_boundaries(layout: CheckpointLayout) -> list[int]:
    """Sorted byte offsets where tensor (and torch storage) data regions begin or end."""
    cuts: set[int] = set()
    regions: Iterable[TensorInfo | StorageInfo] = itertools.chain(layout.tensors, layout.storages)
    for region in regions:
        cuts.add(region.offset)
        cuts.add(region.offset + region.nbytes)
    return sorted(cuts)


# Top-level keys of a training checkpoint that hold state other than the model's tensors.
TRAINING_STATE_KEYS = frozenset({"optimizer", "optimizer_state", "optimizer_states", "optim", "scheduler",
                                 "lr_scheduler", "lr_schedulers", "scaler", "grad_scaler", "amp"})
# Hugging Face base-model attributes (`base_model_prefix`): a `*ForCausalLM` keeps nearly all of its
# weights under one of these, so its modules are the base model's children plus the heads
# (`model.embed_tokens`, `model.layers`, `model.norm`, `lm_head`).
BASE_MODEL_PREFIXES = frozenset({"model", "transformer", "gpt_neox", "bert", "roberta", "deberta", "distilbert",
                                 "albert", "electra", "xlm_roberta", "vit", "backbone", "language_model",
                                 "vision_model", "vision_tower", "text_model"})


def state_dict_wrapper(names: Iterable[str]) -> str:
    """The prefix that wraps the state dict in a training checkpoint (`{"model": sd, "optimizer": ...}`
    flattens to "model.<key>"), or "" when the names are the model's own.

    "state_dict." always wraps (no module can be called state_dict).  "model." wraps only
    when every tensor outside it is training state (optimizer, scheduler, ...): a Hugging Face
    state dict has `model.*` beside `lm_head.weight`, and there "model" is a real module.
    """
    names = list(names)
    for wrapper in STATE_DICT_WRAPPERS:
        inner = [n for n in names if n.startswith(wrapper) and len(n) > len(wrapper)]
        if not inner:
            continue
        if wrapper == "state_dict." or all(n.split(".", 1)[0] in TRAINING_STATE_KEYS
                                           for n in names if not n.startswith(wrapper)):
            return wrapper
    return ""


def group_by_module(names: Iterable[str], depth: int = 1) -> dict[str, list[str]]:
    """Names grouped by their module: the first `depth` dotted components, the parameter name excluded.

    The `state_dict_wrapper` prefix (a torch.save'd object may nest the state dict) is
    skipped, so in `{"model": sd, "optimizer": ...}`
    "model.encoder.weight" belongs to "encoder".  Under a Hugging Face base-model prefix
    (`BASE_MODEL_PREFIXES`) one more component is kept: "model.layers.0.mlp.weight" belongs to
    "model.layers", "lm_head.weight" to "lm_head".  A top-level parameter is its own module.
    """
    names = list(names)
    wrapper = state_dict_wrapper(names)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_module_of(name, depth, wrapper), []).append(name)
    return groups


def _module_of(name: str, depth: int, wrapper: str = "") -> str:
    if wrapper and name.startswith(wrapper) and len(name) > len(wrapper):
        name = name[len(wrapper):]
    parts = name.split(".")
    want = depth + 1 if parts[0] in BASE_MODEL_PREFIXES and len(parts) > 2 else depth
    keep = max(1, min(want, len(parts) - 1))
    return ".".join(parts[:keep])


# ------------------------------------------------------------- tensor content


def tensor_bytes(fileobj: Readable, info: TensorInfo) -> bytes:
    """The tensor's elements in row-major order (strided views are gathered).

    An overlapping view larger than MAX_EXPANDED_BYTES is refused: its size comes from the
    declared shape, not from bytes in the file."""
    if info.overlapping and info.logical_nbytes > MAX_EXPANDED_BYTES:
        raise CheckpointFormatError(f"tensor {info.name!r} is an expanded view of {info.nbytes} stored bytes "
                                    f"declaring {info.logical_nbytes}; mlvc does not materialize it")
    if info.contiguous:
        return b"".join(_iter_region(fileobj, info.offset, info.nbytes))
    span = b"".join(_iter_region(fileobj, info.offset, info.nbytes))
    return _gather(span, info)


def comparable_bytes(fileobj: Readable, info: TensorInfo) -> tuple[bytes, bool]:
    """(bytes, exact): the tensor's elements when they are bounded by the file (exact), else, for
    an overlapping view, its stride and viewed bytes, which are equal exactly when the views are."""
    if info.overlapping:
        span = b"".join(_iter_region(fileobj, info.offset, info.nbytes))
        return json.dumps(["view", list(info.stride or ())]).encode() + b"\0" + span, False
    return tensor_bytes(fileobj, info), True


def module_digests(fileobj: Readable, layout: CheckpointLayout) -> dict[str, str]:
    """Per top-level module, "xxh128:<hex>" of its tensors' names, dtypes, shapes and bytes."""
    return module_digests_of([(fileobj, layout)])


def module_digests_of(parts: Iterable[tuple[Readable, CheckpointLayout]]) -> dict[str, str]:
    """`module_digests` of one model stored in several files (the shards of a sharded checkpoint)."""
    return module_and_block_digests(parts)[0]


def module_and_block_digests(parts: Iterable[tuple[Readable, CheckpointLayout]]
                             ) -> tuple[dict[str, str], dict[str, str]]:
    """({module: id}, {block: id}) of one model, each tensor read once.

    A block is one of a module's repeated, numbered children (`model.layers.5` of
    `model.layers`, see `block_of`); its id hashes its tensors exactly as a module id does, so
    two versions' block ids say which layer changed where the module id only says that one did.
    """
    by_name: dict[str, tuple[Readable, TensorInfo]] = {}
    for fileobj, layout in parts:
        for info in layout.tensors:
            by_name.setdefault(info.name, (fileobj, info))
    wrapper = state_dict_wrapper(by_name)
    modules: dict[str, str] = {}
    blocks: dict[str, Any] = {}
    for module, names in sorted(group_by_module(by_name).items()):
        hasher = xxhash.xxh3_128()
        for name in sorted(names):
            fileobj, info = by_name[name]
            block = block_of(name, module, wrapper)
            if block is None:
                _hash_tensor(hasher, fileobj, info)
            else:
                _hash_tensor(_Both(hasher, blocks.setdefault(block, xxhash.xxh3_128())), fileobj, info)
        modules[module] = "xxh128:" + hasher.hexdigest()
    return modules, {b: "xxh128:" + h.hexdigest() for b, h in sorted(blocks.items())}


def block_of(name: str, module: str, wrapper: str = "") -> str | None:
    """The repeated block of `module` that tensor `name` belongs to: the module's path down to
    the first numbered component below it (`model.layers.5.mlp.up_proj.weight` -> `model.layers.5`,
    `bert.encoder.layer.3.output.dense.bias` -> `bert.encoder.layer.3`), or None (no numbered
    component before the parameter's own name)."""
    if wrapper and name.startswith(wrapper) and len(name) > len(wrapper):
        name = name[len(wrapper):]
    parts = name.split(".")
    depth = module.count(".") + 1
    for i in range(depth, len(parts) - 1):
        if parts[i].isdigit():
            return ".".join(parts[:i + 1])
    return None


class _Both:
    """Feeds what is hashed to two hashers (a tensor's module and its block)."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: Any, b: Any) -> None:
        self._a, self._b = a, b

    def update(self, data: Any) -> None:
        self._a.update(data)
        self._b.update(data)


SHARD_INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json")


def is_shard_index(name: str) -> bool:
    """A Hugging Face sharded-checkpoint index (`model.safetensors.index.json`)."""
    return name.endswith(SHARD_INDEX_SUFFIXES)


def shard_files(index_bytes: bytes, where: str = "index") -> list[str]:
    """The shard file names an index's `weight_map` names (relative to the index's directory)."""
    try:
        doc = json.loads(index_bytes)
        weight_map = doc["weight_map"]
        files = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointFormatError(f"{where}: not a sharded-checkpoint index ({err})") from None
    if not all(isinstance(f, str) and f and "/" not in f.strip("./") and ".." not in f for f in files):
        raise CheckpointFormatError(f"{where}: shard names must be files beside the index")
    return files


def _hash_tensor(hasher: Any, fileobj: Readable, info: TensorInfo) -> None:
    # Length-prefixed fields so that no two different tensors hash the same stream.
    header = json.dumps([info.name, info.dtype, list(info.shape)]).encode()
    hasher.update(struct.pack("<Q", len(header)) + header)
    hasher.update(struct.pack("<Q", info.numel * DTYPE_ITEMSIZE[info.dtype]))
    if info.contiguous:
        _hash_region(hasher, fileobj, info.offset, info.nbytes)
    elif info.overlapping:  # the view's definition: hashing its logical bytes costs its declared size
        hasher.update(json.dumps(["view", list(info.stride or ())]).encode())
        _hash_region(hasher, fileobj, info.offset, info.nbytes)
    else:
        hasher.update(tensor_bytes(fileobj, info))


_scratch = threading.local()


def _hash_region(hasher: Any, fileobj: Readable, offset: int, nbytes: int) -> None:
    """Hash a byte range through one reused buffer: `read()` would allocate (and page-fault)
    a fresh object per block, which costs more than hashing a 1 GiB checkpoint itself."""
    readinto = getattr(fileobj, "readinto", None)
    if readinto is None:
        for chunk in _iter_region(fileobj, offset, nbytes):
            hasher.update(chunk)
        return
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = memoryview(bytearray(READ_CHUNK))
    fileobj.seek(offset)
    remaining = nbytes
    while remaining > 0:
        n = readinto(buf[:min(READ_CHUNK, remaining)])
        if not n:
            raise CheckpointFormatError("checkpoint is truncated: tensor data runs past the end")
        hasher.update(buf[:n])
        remaining -= n


def _iter_region(fileobj: Readable, offset: int, nbytes: int) -> Iterator[bytes]:
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
    stride = info.stride or _row_major_strides(info.shape)
    np = _numpy()
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
    np = _numpy()
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
def _numpy() -> Any:
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


def _read_exact(fileobj: Readable, size: int) -> bytes:
    data = fileobj.read(size)
    if len(data) != size:
        raise CheckpointFormatError("checkpoint is truncated")
    return data
