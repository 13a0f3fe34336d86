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

The package, by concept: `layout` (the types every reader answers with), `detect` (which
format, and `read_layout`), `torch_zip` and `safetensors_` (one reader per format), `content`
(a tensor's bytes, weight change), `modules` (modules, blocks, their ids, shard indexes).
Callers import from `mlvc.checkpoint`: the names in `__all__` below.
"""

from __future__ import annotations

from .content import (
    comparable_bytes,
    relative_l2_change,
    tensor_bytes,
)
from .detect import (
    detect_format,
    layout_ranges,
    read_layout,
)
from .layout import (
    CheckpointFormat,
    CheckpointFormatError,
    CheckpointLayout,
    DTYPE_ITEMSIZE,
    HEAD_SIZE,
    MAX_EXPANDED_BYTES,
    READ_CHUNK,
    Readable,
    SAFETENSORS,
    STATE_DICT_WRAPPERS,
    StorageInfo,
    TORCH_ZIP,
    TensorInfo,
)
from .modules import (
    BASE_MODEL_PREFIXES,
    SHARD_INDEX_SUFFIXES,
    TRAINING_STATE_KEYS,
    block_of,
    group_by_module,
    is_shard_index,
    module_and_block_digests,
    module_digests,
    module_digests_of,
    shard_files,
    state_dict_wrapper,
    storage_boundaries,
)
from .safetensors_ import (
    MAX_SAFETENSORS_HEADER,
)

__all__ = [
    "BASE_MODEL_PREFIXES",
    "CheckpointFormat",
    "CheckpointFormatError",
    "CheckpointLayout",
    "DTYPE_ITEMSIZE",
    "HEAD_SIZE",
    "MAX_EXPANDED_BYTES",
    "MAX_SAFETENSORS_HEADER",
    "READ_CHUNK",
    "Readable",
    "SAFETENSORS",
    "SHARD_INDEX_SUFFIXES",
    "STATE_DICT_WRAPPERS",
    "StorageInfo",
    "TORCH_ZIP",
    "TRAINING_STATE_KEYS",
    "TensorInfo",
    "block_of",
    "comparable_bytes",
    "detect_format",
    "group_by_module",
    "is_shard_index",
    "layout_ranges",
    "module_and_block_digests",
    "module_digests",
    "module_digests_of",
    "read_layout",
    "relative_l2_change",
    "shard_files",
    "state_dict_wrapper",
    "storage_boundaries",
    "tensor_bytes",
]
