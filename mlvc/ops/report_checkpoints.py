"""Checkpoint versions in a report: which modules changed between two versions, and by how much.

Two sources, the cheap one first: the per-module ids that `mlvc add` records in
the pointer meta say *which* modules moved without reading anything; the stored
checkpoints (read from the cache through the chunk reader, each layout parsed
once) say by how much, tensor by tensor, for those modules only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import pointer as pointers
from ..errors import MlvcError
from ..hashing import from_oid
from .modules import is_checkpoint_name

if TYPE_CHECKING:
    import contextlib

    from ..checkpoint import CheckpointLayout, Readable, TensorInfo
    from ..store.types import ObjectReader
    from .chunked_reader import ChunkedFile

Tensors = dict[str, "tuple[Readable, TensorInfo]"]  # tensor name -> (the file it is read from, where it lies)


@dataclass
class ModuleChange:
    module: str
    change: str  # modified / added / removed
    tensors_changed: int | None = None  # None when only the module ids were compared
    rel_l2: float | None = None  # the largest ||new - old|| / ||old|| among the module's tensors
    blocks: list[str] = field(default_factory=list)  # its repeated blocks that changed ("model.layers.5")


@dataclass
class CheckpointChange:
    artifact: str
    file: str  # file inside a directory artifact, "" for a file artifact
    modules: list[ModuleChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    shape_changes: list[str] = field(default_factory=list)  # "fusion.weight [3, 12] -> [4, 12]"
    note: str | None = None  # e.g. weights not in the cache: module ids only


def module_ids(meta: Mapping[str, object]) -> dict[str, dict[str, str]]:
    """{file inside the artifact ("" for a file artifact): {module: id}} from pointer meta."""
    modules = meta.get("modules") or {}
    if not isinstance(modules, dict) or not modules:
        return {}
    if all(isinstance(v, str) for v in modules.values()):
        return {"": modules}
    return {k: v for k, v in modules.items() if isinstance(v, dict)}


def block_ids(meta: Mapping[str, object]) -> dict[str, dict[str, str]]:
    """{file inside the artifact: {block: id}} from pointer meta (shaped as `module_ids`)."""
    return module_ids({"modules": meta.get("blocks")})


def changed_blocks(module: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The blocks of `module` whose ids differ between two versions' block ids (present in both)."""
    prefix = module + "."
    return sorted((k for k in set(old) & set(new) if k.startswith(prefix) and old[k] != new[k]), key=_natural)


def _natural(name: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def changes_from_ids(artifact: str, old: Mapping[str, object], new: Mapping[str, object]
                     ) -> list[CheckpointChange]:
    a, b = module_ids(old), module_ids(new)
    blocks_a, blocks_b = block_ids(old), block_ids(new)
    out = []
    for rel in sorted(set(a) | set(b)):
        ma, mb = a.get(rel, {}), b.get(rel, {})
        if ma == mb:
            continue
        ck = CheckpointChange(artifact, rel)
        for m in sorted(set(ma) | set(mb)):
            if m not in ma:
                ck.modules.append(ModuleChange(m, "added"))
            elif m not in mb:
                ck.modules.append(ModuleChange(m, "removed"))
            elif ma[m] != mb[m]:
                ck.modules.append(ModuleChange(m, "modified", blocks=changed_blocks(
                    m, blocks_a.get(rel, {}), blocks_b.get(rel, {}))))
            else:
                ck.unchanged.append(m)
        out.append(ck)
    return out


class StoredCheckpoints:
    """Checkpoint versions read from the cache, each layout parsed once per report.

    A version is compared with its predecessor and then with its successor, so
    the few most recent are kept open; reading only the zip directory, data.pkl
    and the tensors of modules whose ids changed keeps a commit to a few reads.
    """

    KEEP = 8

    def __init__(self, store: ObjectReader) -> None:
        self.store = store
        self._open: dict[bytes, tuple[ChunkedFile, CheckpointLayout] | None] = {}

    def close(self) -> None:
        for got in self._open.values():
            if got is not None:
                got[0].close()
        self._open.clear()

    def layout(self, fid: bytes, name: str) -> tuple[ChunkedFile, CheckpointLayout] | None:
        """(reader, layout) of a stored file, or None when it is not a checkpoint mlvc reads."""
        from ..checkpoint import HEAD_SIZE, CheckpointFormatError, detect_format, read_layout
        from .chunked_reader import ChunkedFile

        if fid in self._open:
            return self._open[fid]
        reader = ChunkedFile.for_file(self.store, fid, name)  # ObjectNotFoundError: not in the cache
        got = None
        try:
            if detect_format(reader.read(HEAD_SIZE), name) is not None:
                got = (reader, read_layout(reader))
        except CheckpointFormatError:
            got = None
        if got is None:
            reader.close()
        if len(self._open) >= self.KEEP:
            oldest = next(iter(self._open))
            evicted = self._open.pop(oldest)
            if evicted is not None:
                evicted[0].close()
        self._open[fid] = got
        return got

    def certificate(self, fid: bytes, name: str) -> dict[str, object] | None:
        from .provenance import KEY

        got = self.layout(fid, name)
        raw = got[1].extras.get(KEY) if got else None
        if isinstance(raw, str):  # safetensors keep it as JSON text in the header metadata
            try:
                raw = json.loads(raw)
            except ValueError:
                return None
        return raw if isinstance(raw, dict) else None

    def compare(self, artifact: str, rel: str, old: bytes, new: bytes, name: str,
                only: set[str] | None) -> CheckpointChange | None:
        """Module changes between two stored versions; `only` limits the tensors read to those modules."""
        a, b = self.layout(old, name), self.layout(new, name)
        if a is None or b is None:
            return None
        (fa, la), (fb, lb) = a, b
        return compare_tensors(artifact, rel, {t.name: (fa, t) for t in la.tensors},
                               {t.name: (fb, t) for t in lb.tensors}, only)

    def compare_sharded(self, artifact: str, index_rel: str, old: dict[str, bytes], new: dict[str, bytes],
                        only: set[str] | None) -> CheckpointChange | None:
        """Module changes of the one model a sharded checkpoint's shards hold together, between two
        versions given as {file inside the artifact: file id} (a re-shard moves tensors between
        files: they are matched by name).  None when a side is not a readable sharded checkpoint."""
        import contextlib

        with contextlib.ExitStack() as stack:
            ta = self._shard_tensors(stack, old, index_rel)
            tb = self._shard_tensors(stack, new, index_rel)
            if ta is None or tb is None:
                return None
            return compare_tensors(artifact, index_rel, ta, tb, only)

    def shard_paths(self, files: dict[str, bytes], index_rel: str) -> list[str]:
        """The shards an index names (paths inside the artifact); [] when it is absent or unreadable."""
        from ..checkpoint import CheckpointFormatError, shard_files
        from .chunked_reader import ChunkedFile

        if index_rel not in files:
            return []
        try:
            names = shard_files(ChunkedFile.for_file(self.store, files[index_rel], index_rel).read(), index_rel)
        except CheckpointFormatError:
            return []
        base = index_rel.rpartition("/")[0]
        return [f"{base}/{n}" if base else n for n in names]

    def _shard_tensors(self, stack: contextlib.ExitStack, files: dict[str, bytes], index_rel: str
                       ) -> Tensors | None:
        from ..checkpoint import CheckpointFormatError, read_layout
        from .chunked_reader import ChunkedFile

        shards = self.shard_paths(files, index_rel)
        if not shards or any(rel not in files for rel in shards):
            return None
        tensors: Tensors = {}
        try:
            for rel in shards:
                reader = stack.enter_context(ChunkedFile.for_file(self.store, files[rel], rel.rpartition("/")[2]))
                for t in read_layout(reader).tensors:
                    tensors.setdefault(t.name, (reader, t))
        except CheckpointFormatError:
            return None
        return tensors


def compare_tensors(artifact: str, rel: str, ta: Tensors, tb: Tensors, only: set[str] | None) -> CheckpointChange:
    """Module changes between two {tensor name: (reader, TensorInfo)} maps; `only` limits the
    tensors read to those modules."""
    from ..checkpoint import block_of, group_by_module, relative_l2_change, state_dict_wrapper, tensor_bytes

    out = CheckpointChange(artifact, rel)
    wrapper = state_dict_wrapper(set(ta) | set(tb))
    for module, names in sorted(group_by_module(sorted(set(ta) | set(tb))).items()):
        if only is not None and module not in only:
            out.unchanged.append(module)
            continue
        if not any(n in ta for n in names):
            out.modules.append(ModuleChange(module, "added", len(names)))
            continue
        if not any(n in tb for n in names):
            out.modules.append(ModuleChange(module, "removed", len(names)))
            continue
        changed, worst = 0, None
        blocks: set[str] = set()
        for n in names:
            x, y = ta.get(n), tb.get(n)
            block = block_of(n, module, wrapper) or ""
            if x is None or y is None or x[1].dtype != y[1].dtype or x[1].shape != y[1].shape:
                changed += 1
                blocks.add(block)
                if x is not None and y is not None:
                    out.shape_changes.append(f"{n} {list(x[1].shape)} -> {list(y[1].shape)}")
                continue
            bx, by = tensor_bytes(*x), tensor_bytes(*y)
            if bx == by:
                continue
            changed += 1
            blocks.add(block)
            try:
                l2 = relative_l2_change(bx, by, x[1].dtype)
            except MlvcError:
                continue
            worst = l2 if worst is None else max(worst, l2)
        if changed:
            out.modules.append(ModuleChange(module, "modified", changed, worst, sorted(blocks - {""}, key=_natural)))
        else:
            out.unchanged.append(module)
    return out


def checkpoint_files(store: ObjectReader, ptr: pointers.PointerFile, indexes: bool = False) -> dict[str, bytes]:
    """{file inside the artifact ("" for a file artifact): file id} of an artifact version's checkpoints
    (with `indexes`, the sharded-checkpoint indexes too)."""
    from ..checkpoint import is_shard_index
    from .common import load_entries

    if ptr.kind == "file":
        return {"": from_oid(ptr.oid)}
    return {e.path: e.file_id for e in load_entries(store, ptr)
            if is_checkpoint_name(e.path) or (indexes and is_shard_index(e.path))}

