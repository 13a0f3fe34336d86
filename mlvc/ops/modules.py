"""Per-module ids of checkpoints, recorded in the pointer's meta when a checkpoint is added.

A module id is `checkpoint.module_digests` over the model's tensors: one
xxh3-128 per top-level module (the first dotted component of the state-dict
key), over each tensor's name, dtype, shape and bytes.  A model with repeated
blocks (`model.layers.0` ... `model.layers.31`) also gets one id per block, in
the meta's `blocks` (beside `modules`, whose ids stay what they always were, so
old and new pointers compare), so diff, show and report can say which layer changed.  Tensor names are taken
relative to the model, i.e. a `model.` / `state_dict.` wrapper (what
`mlvc.torch.save` writes) is stripped and the other top-level entries of the
saved object (optimizer state, ...) are left out, so the ids equal what
`mlvc.torch.module_versions(model)` computes from the live model.

Reading is torch-free and never executes pickled code.  Any failure (not a
checkpoint, unsafe pickle, damaged file, file changed meanwhile) records
nothing: an unreadable checkpoint never fails an add.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import checkpoint as ckpt
from ..workspace import FileStat

if TYPE_CHECKING:
    from ..objects import TreeEntries
    from ..repo import Repo
    from ..store.types import ObjectReader

Meta = dict[str, Any]  # pointer meta, as a pointer file holds it (`PointerFile.meta`)

# Files inside a directory artifact that are sniffed for a checkpoint format.
# (A single-file artifact is always sniffed: it costs one 4 KiB read.)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar", ".safetensors")


def is_checkpoint_name(name: str) -> bool:
    return name.lower().endswith(CHECKPOINT_SUFFIXES)


def model_layout(layout: ckpt.CheckpointLayout) -> ckpt.CheckpointLayout:
    """The layout restricted to the model's tensors, named relative to the model.

    When the saved object wraps the state dict (`{"model": ..., "optimizer": ...}`, see
    `checkpoint.state_dict_wrapper`), only the tensors under the wrapper are kept, with the
    wrapper prefix removed.  A Hugging Face state dict (`model.*` beside `lm_head.weight`) is
    not wrapped: all of it is the model.
    """
    wrapper = ckpt.state_dict_wrapper(t.name for t in layout.tensors)
    if not wrapper:
        return layout
    tensors = [dataclasses.replace(t, name=t.name[len(wrapper):]) for t in layout.tensors
               if t.name.startswith(wrapper) and len(t.name) > len(wrapper)]
    return dataclasses.replace(layout, tensors=tensors)


def file_module_ids(path: Path, name: str | None = None) -> dict[str, str] | None:
    """{module: "xxh128:<hex>"} of one checkpoint file, or None if it is not one mlvc can read."""
    ids = file_ids(path, name)
    return ids["modules"] if ids else None


def file_ids(path: Path, name: str | None = None) -> dict[str, Any] | None:
    """`module_ids_of` of one checkpoint file, or None if it is not one mlvc can read."""
    with open(path, "rb") as f:
        head = f.read(ckpt.HEAD_SIZE)
        if ckpt.detect_format(head, name or path.name) is None:
            return None
        return module_ids_of(f, ckpt.read_layout(f))


def module_ids_of(f: ckpt.Readable, layout: ckpt.CheckpointLayout) -> dict[str, Any] | None:
    """The pointer meta of an open checkpoint whose layout is known: `{"modules": {module: id}}`,
    with `"blocks": {block: id}` when it has repeated blocks; None if it holds no model tensors."""
    layout = model_layout(layout)
    if not layout.tensors:
        return None
    return _meta_of(*ckpt.module_and_block_digests([(f, layout)]))


def _meta_of(modules: dict[str, str], blocks: dict[str, str]) -> dict[str, Any]:
    return {"modules": modules, "blocks": blocks} if blocks else {"modules": modules}


def checkpoint_layout(path: Path, name: str | None = None) -> ckpt.CheckpointLayout | None:
    """The tensor layout of a checkpoint file (a few small reads: head, zip directory, pickle),
    or None for other files and on any error."""
    try:
        with open(path, "rb") as f:
            if ckpt.detect_format(f.read(ckpt.HEAD_SIZE), name or path.name) is None:
                return None
            return ckpt.read_layout(f)
    except Exception:  # noqa: BLE001 - not a checkpoint mlvc can read: plain chunking, no module ids
        return None


def layout_cuts(layout: ckpt.CheckpointLayout | None, size: int, min_size: int = 64 * 1024) -> list[int] | None:
    """Tensor-aware chunk boundaries: where each tensor storage starts, and where the last one
    ends.  None without a layout, for small files, or a layout without tensors.

    Cutting at storage *starts* (not ends) keeps the bytes between two storages with the
    storage before them: torch's zip writer puts each entry's CRC in a data descriptor
    after its data, so those bytes change exactly when that storage does
    (benchmarks/bench_lineage.py; docs/concepts/lineage.md).
    """
    if layout is None or size < min_size:
        return None
    regions = layout.storages or layout.tensors
    if not regions:
        return None
    cuts = {r.offset for r in regions}
    cuts.add(max(r.offset + r.nbytes for r in regions))
    return sorted(c for c in cuts if 0 < c < size)


def checkpoint_cuts(path: Path, size: int, min_size: int = 64 * 1024) -> list[int] | None:
    """`layout_cuts` of a checkpoint file; None for other files, small files, or on any error."""
    if size < min_size:
        return None
    return layout_cuts(checkpoint_layout(path), size, min_size)


def _module_ids_if_stable(fs: FileStat) -> dict[str, Any] | None:
    try:
        before = os.stat(fs.path)
        if before.st_size != fs.size or before.st_mtime_ns != fs.mtime_ns:
            return None
        ids = file_ids(fs.path)
        after = os.stat(fs.path)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint records nothing, never fails the add
        return None
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return None  # changed while read: the ids could belong to neither version
    return ids


def wants_module_ids(fs: FileStat, kind: str, sharded: set[str]) -> bool:
    """Whether `checkpoint_meta` reads this file of an artifact for its own module ids."""
    return kind == "file" or (is_checkpoint_name(fs.rel) and fs.rel not in sharded)


def sharded_files(files: Sequence[FileStat]) -> set[str]:
    """The shards of the sharded checkpoints among an artifact's files (their ids are computed
    together, from the index; an unreadable index names none)."""
    indexes = [fs for fs in files if ckpt.is_shard_index(fs.rel)]
    if not indexes:  # the usual case: no set of every path of a million-file dataset
        return set()
    by_rel = {fs.rel for fs in files}
    out: set[str] = set()
    for fs in indexes:
        base = fs.rel.rpartition("/")[0]
        try:
            names = ckpt.shard_files(fs.path.read_bytes(), fs.rel)
        except (OSError, ckpt.CheckpointFormatError):
            continue
        rels = [f"{base}/{n}" if base else n for n in names]
        if all(r in by_rel for r in rels):
            out.update(rels)
    return out


def checkpoint_meta(repo: Repo, target: Path, files: Sequence[FileStat],
                    known: Mapping[str, Meta | None] | None = None, examined: bytearray | None = None) -> Meta:
    """Pointer meta for an artifact: `{"modules": {module: id}}` for a checkpoint file,
    `{"modules": {file: {module: id}}}` for a directory holding checkpoints, else `{}`; with
    `"blocks"` beside it, shaped alike, for models with repeated blocks (`module_ids_of`).

    `examined[i]` set: the ids of `files[i]` were already computed while it was stored
    (`mlvc add` reads each file once): they are `known[rel]`, or it has none.  Other files are
    read here.  (A flag per file, not a map of every path: a million `.bin` samples are
    examined and are not checkpoints.)"""
    del repo, target  # the signature leaves room for config (depth, formats); nothing needed yet
    known = known or {}

    def ids_of(i: int, fs: FileStat) -> Meta | None:
        return known.get(fs.rel) if examined is not None and examined[i] else _module_ids_if_stable(fs)

    if len(files) == 1 and files[0].rel == "":
        ids = ids_of(0, files[0])
        return dict(ids) if ids else {}
    per_file: dict[str, object] = {}
    blocks: dict[str, object] = {}
    sharded: set[str] = set()
    indexes = [fs for fs in files if ckpt.is_shard_index(fs.rel)]
    by_rel = {fs.rel: fs for fs in files} if indexes else {}  # never for a plain dataset
    found: list[tuple[str, Meta]] = []
    for fs in indexes:
        ids, shards = _sharded_module_ids(fs, by_rel)
        sharded.update(shards)
        if ids:
            found.append((fs.rel, ids))
    for i, fs in enumerate(files):
        if not is_checkpoint_name(fs.rel) or fs.rel in sharded:
            continue
        ids = ids_of(i, fs)
        if ids:
            found.append((fs.rel, ids))
    for rel, ids in found:
        per_file[rel] = ids["modules"]
        if ids.get("blocks"):
            blocks[rel] = ids["blocks"]
    out: dict[str, Any] = {"modules": per_file} if per_file else {}
    if blocks:
        out["blocks"] = blocks
    return out


def _sharded_module_ids(index: FileStat, by_rel: Mapping[str, FileStat]) -> tuple[dict[str, Any] | None, list[str]]:
    """Module ids of the one model a sharded checkpoint's shards hold together (recorded under the
    index's path), and the shards' paths; (None, []) when the index or a shard is unreadable."""
    import contextlib

    base = index.rel.rpartition("/")[0]
    try:
        names = ckpt.shard_files(index.path.read_bytes(), index.rel)
    except (OSError, ckpt.CheckpointFormatError):
        return None, []
    rels = [f"{base}/{n}" if base else n for n in names]
    if not all(r in by_rel for r in rels):
        return None, []
    try:
        with contextlib.ExitStack() as stack:
            parts = []
            for r in rels:
                f = stack.enter_context(open(by_rel[r].path, "rb"))
                parts.append((f, ckpt.read_layout(f)))
            return _meta_of(*ckpt.module_and_block_digests(parts)), rels
    except Exception:  # noqa: BLE001 - an unreadable checkpoint records nothing, never fails the add
        return None, rels


def file_modules(store: ObjectReader, tree: TreeEntries, modules: Mapping[str, object], inner: str,
                 blocks: bool = False) -> dict[str, str] | None:
    """The module ids shown for one file `inner` of a directory artifact (entries `tree`) whose pointer records
    `modules` ({file: {module: id}}): its own, or, for a shard of a sharded checkpoint (recorded
    under its index), those of the modules with tensors in that shard (a module split across
    shards has one id, over all of its tensors).  None when the file has none.  With `blocks`,
    `modules` is the pointer's block ids and the blocks are chosen alike."""
    import json

    from .chunked_reader import ChunkedFile

    own = modules.get(inner)
    if isinstance(own, dict):
        return own
    for index_rel, ids in modules.items():
        if not (ckpt.is_shard_index(index_rel) and isinstance(ids, dict)):
            continue
        base = index_rel.rpartition("/")[0]
        if inner.rpartition("/")[0] != base:
            continue
        index = tree.find(index_rel)
        if index is None:
            continue
        try:
            raw = ChunkedFile.for_file(store, index.file_id, index_rel).read()
            ckpt.shard_files(raw, index_rel)
            weight_map = json.loads(raw)["weight_map"]
        except (ckpt.CheckpointFormatError, ValueError, KeyError, TypeError):
            continue
        shard = inner.rpartition("/")[2]
        if shard not in weight_map.values():
            continue
        wrapper = ckpt.state_dict_wrapper(weight_map)
        held: set[str] = set()
        for module, names in ckpt.group_by_module(weight_map).items():
            for n in names:
                name = (ckpt.block_of(n, module, wrapper) if blocks else module) if weight_map[n] == shard else None
                if name is not None:
                    held.add(name)
        return {m: ids[m] for m in sorted(held) if m in ids}
    return None
