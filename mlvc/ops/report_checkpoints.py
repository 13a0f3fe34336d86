"""Checkpoint versions in a report: which modules changed between two versions, and by how much.

Two sources, the cheap one first: the per-module ids that `mlvc add` records in
the pointer meta say *which* modules moved without reading anything; the stored
checkpoints (read from the cache through the chunk reader, each layout parsed
once) say by how much, tensor by tensor, for those modules only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import pointer as pointers
from ..errors import MlvcError
from ..hashing import from_oid
from .modules import is_checkpoint_name


@dataclass
class ModuleChange:
    module: str
    change: str  # modified / added / removed
    tensors_changed: int | None = None  # None when only the module ids were compared
    rel_l2: float | None = None  # the largest ||new - old|| / ||old|| among the module's tensors


@dataclass
class CheckpointChange:
    artifact: str
    file: str  # file inside a directory artifact, "" for a file artifact
    modules: list[ModuleChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    shape_changes: list[str] = field(default_factory=list)  # "fusion.weight [3, 12] -> [4, 12]"
    note: str | None = None  # e.g. weights not in the cache: module ids only


def module_ids(meta: dict) -> dict[str, dict[str, str]]:
    """{file inside the artifact ("" for a file artifact): {module: id}} from pointer meta."""
    modules = meta.get("modules") or {}
    if not isinstance(modules, dict) or not modules:
        return {}
    if all(isinstance(v, str) for v in modules.values()):
        return {"": modules}
    return {k: v for k, v in modules.items() if isinstance(v, dict)}


def changes_from_ids(artifact: str, old: dict, new: dict) -> list[CheckpointChange]:
    a, b = module_ids(old), module_ids(new)
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
                ck.modules.append(ModuleChange(m, "modified"))
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

    def __init__(self, store):
        self.store = store
        self._open: dict[bytes, tuple[Any, Any] | None] = {}

    def close(self) -> None:
        for got in self._open.values():
            if got is not None:
                got[0].close()
        self._open.clear()

    def layout(self, fid: bytes, name: str):
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

    def certificate(self, fid: bytes, name: str) -> dict | None:
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
        from ..checkpoint import group_by_module, relative_l2_change, tensor_bytes

        a, b = self.layout(old, name), self.layout(new, name)
        if a is None or b is None:
            return None
        (fa, la), (fb, lb) = a, b
        ta, tb = {t.name: t for t in la.tensors}, {t.name: t for t in lb.tensors}
        out = CheckpointChange(artifact, rel)
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
            for n in names:
                x, y = ta.get(n), tb.get(n)
                if x is None or y is None or x.dtype != y.dtype or x.shape != y.shape:
                    changed += 1
                    if x is not None and y is not None:
                        out.shape_changes.append(f"{n} {list(x.shape)} -> {list(y.shape)}")
                    continue
                bx, by = tensor_bytes(fa, x), tensor_bytes(fb, y)
                if bx == by:
                    continue
                changed += 1
                try:
                    l2 = relative_l2_change(bx, by, x.dtype)
                except MlvcError:
                    continue
                worst = l2 if worst is None else max(worst, l2)
            if changed:
                out.modules.append(ModuleChange(module, "modified", changed, worst))
            else:
                out.unchanged.append(module)
        return out


def checkpoint_files(store, ptr: pointers.PointerFile) -> dict[str, bytes]:
    """{file inside the artifact ("" for a file artifact): file id} of an artifact version's checkpoints."""
    from .common import load_entries

    if ptr.kind == "file":
        return {"": from_oid(ptr.oid)}
    return {e.path: e.file_id for e in load_entries(store, ptr) if is_checkpoint_name(e.path)}

