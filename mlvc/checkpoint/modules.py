"""A checkpoint's modules and blocks: tensor names grouped (a training checkpoint's wrapper and
Hugging Face base-model prefixes understood), per-module and per-block ids, storage boundaries
(where chunking cuts), and the shard files of a sharded checkpoint's index."""

from __future__ import annotations

import itertools
import json
import struct
import threading
from collections.abc import Iterable
from typing import Any

import xxhash

from .content import iter_region, tensor_bytes
from .layout import (
    DTYPE_ITEMSIZE,
    READ_CHUNK,
    STATE_DICT_WRAPPERS,
    CheckpointFormatError,
    CheckpointLayout,
    Readable,
    StorageInfo,
    TensorInfo,
)


def storage_boundaries(layout: CheckpointLayout) -> list[int]:
    """Sorted byte offsets where tensor (and torch storage) data regions begin or end."""
    cuts: set[int] = set()
    regions: Iterable[TensorInfo | StorageInfo] = itertools.chain(layout.tensors, layout.storages)
    for region in regions:
        cuts.add(region.offset)
        cuts.add(region.offset + region.nbytes)
    return sorted(cuts)


# Top-level keys of a training checkpoint that hold state other than the model's tensors.


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


# ------------------------------------------------------------- sharded checkpoints


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


# ------------------------------------------------------------- hashing tensors


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
        for chunk in iter_region(fileobj, offset, nbytes):
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
