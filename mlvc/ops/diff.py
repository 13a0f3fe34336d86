"""`mlvc diff A [B] [PATH...]`: what changed in the artifacts between two commits.

Pointers are read from git's object database (B defaults to the pointers in
the workspace).  Per artifact: added / removed / modified; for directories,
the files added, removed and modified with their sizes; for checkpoints
(torch.save zips and safetensors) the tensors changed / added / removed,
grouped by top-level module, with the relative L2 change of each changed
tensor.  Checkpoints are read through a seekable chunk-backed reader, one
tensor at a time, never whole: from the cache, and what it lacks as ranged
reads of the default remote's packs (`ObjectSource`), so a fresh clone can diff
without a pull.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import math
import posixpath
from dataclasses import asdict, dataclass, field

from .. import pointer as pointers
from ..errors import MlvcError, ObjectNotFoundError
from ..hashing import from_oid
from .common import PathArg, path_selected, wanted_paths, load_entries, select
from .params import ParamChange

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..objects import TreeEntry
    from ..repo import Repo
    from ..store.types import ObjectReader
    from .report_checkpoints import Tensors

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")
MAX_CHECKPOINTS_PER_ARTIFACT = 32


@dataclass
class FileChange:
    path: str
    change: str  # added / removed / modified
    old_size: int | None = None
    new_size: int | None = None


@dataclass
class TensorChange:
    name: str
    change: str  # added / removed / modified
    dtype: str | None = None
    old_shape: list[int] | None = None
    new_shape: list[int] | None = None
    rel_l2: float | None = None  # ||new - old|| / ||old||; None when not comparable


@dataclass
class CheckpointDiff:
    path: str  # file inside the artifact ("" for a file artifact)
    format: str | None = None
    modules: dict[str, list[TensorChange]] = field(default_factory=dict)  # changed modules only
    unchanged_modules: list[str] = field(default_factory=list)
    # changed module -> its repeated blocks that changed (`model.layers` -> ["model.layers.5"])
    changed_blocks: dict[str, list[str]] = field(default_factory=dict)
    tensors_compared: int = 0
    error: str | None = None


@dataclass
class ArtifactDiff:
    path: str
    change: str  # added / removed / modified / unchanged / invalid
    kind: str | None = None
    old_id: str | None = None
    new_id: str | None = None
    old_size: int | None = None
    new_size: int | None = None
    files: list[FileChange] = field(default_factory=list)
    checkpoints: list[CheckpointDiff] = field(default_factory=list)
    meta: dict[str, dict[str, object]] = field(default_factory=dict)  # key -> {"old": .., "new": ..} (ids apart, below)
    # file inside the artifact ("" for a file artifact) -> {"modules": [...], "blocks": [...]} whose
    # recorded ids differ (added, removed or changed): which modules and layers moved, read from
    # the pointers alone
    id_changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    role: dict[str, str | None] | None = None
    error: str | None = None


@dataclass
class DiffResult:
    rev_a: str
    rev_b: str | None
    artifacts: list[ArtifactDiff] = field(default_factory=list)
    params: list[ParamChange] = field(default_factory=list)  # of the params files (pointer meta: per artifact)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        for a in d["artifacts"]:  # JSON has no inf
            for c in a["checkpoints"]:
                for changes in c["modules"].values():
                    for t in changes:
                        if t["rel_l2"] is not None and math.isinf(t["rel_l2"]):
                            t["rel_l2"] = "inf"
        return d


# ------------------------------------------------------------------ pointer sets


def pointers_at_rev(git: GitRepo, rev: str) -> dict[str, tuple[pointers.PointerFile | None, str | None]]:
    """artifact path -> (pointer, error) at a git revision."""
    return {p.path: (p.ptr, str(p.error) if p.error else None) for p in pointers.pointers_at(git, rev)}


def pointers_in_workspace(repo: Repo) -> dict[str, tuple[pointers.PointerFile | None, str | None]]:
    out: dict[str, tuple[pointers.PointerFile | None, str | None]] = {}
    for t in select(repo):
        out[t.display] = (t.ptr, str(t.error) if t.error else None)
    return out


# ------------------------------------------------------------------ checkpoints


def _looks_like_checkpoint(name: str) -> bool:
    return name.lower().endswith(CHECKPOINT_SUFFIXES)


def checkpoint_diff(store: ObjectReader, old_fid: bytes, new_fid: bytes, name: str,
                    rel: str = "") -> CheckpointDiff | None:
    """Tensor-level comparison of two stored files; None when they are not both checkpoints."""
    from ..checkpoint import HEAD_SIZE, detect_format, read_layout
    from .chunked_reader import ChunkedFile

    try:
        fa = ChunkedFile.for_file(store, old_fid, name)
        fb = ChunkedFile.for_file(store, new_fid, name)
        fmt_a = detect_format(fa.read(HEAD_SIZE), name)
        fmt_b = detect_format(fb.read(HEAD_SIZE), name)
    except MlvcError as exc:
        if not _looks_like_checkpoint(name):
            return None
        return CheckpointDiff(rel, error=_short(exc))
    if fmt_a is None or fmt_b is None:
        return None
    out = CheckpointDiff(rel, format=fmt_b if fmt_a == fmt_b else f"{fmt_a} -> {fmt_b}")
    try:
        la, lb = read_layout(fa), read_layout(fb)
        _compare(out, {t.name: (fa, t) for t in la.tensors}, {t.name: (fb, t) for t in lb.tensors})
    except MlvcError as exc:
        out.error = _short(exc)
    except (ValueError, OSError) as exc:
        out.error = f"unreadable checkpoint: {exc}"
    return out


def _compare(out: CheckpointDiff, ta: Tensors, tb: Tensors) -> None:
    """Fill `out` from two {tensor name: (file, TensorInfo)} maps (one checkpoint, or all shards of one)."""
    from ..checkpoint import comparable_bytes as read_tensor
    from ..checkpoint import block_of, group_by_module, relative_l2_change, state_dict_wrapper

    changes: dict[str, TensorChange] = {}
    for n in sorted(set(ta) - set(tb)):
        changes[n] = TensorChange(n, "removed", ta[n][1].dtype, list(ta[n][1].shape), None)
    for n in sorted(set(tb) - set(ta)):
        changes[n] = TensorChange(n, "added", tb[n][1].dtype, None, list(tb[n][1].shape))
    for n in sorted(set(ta) & set(tb)):
        (fa, a), (fb, b) = ta[n], tb[n]
        out.tensors_compared += 1
        if a.dtype != b.dtype or a.shape != b.shape:
            changes[n] = TensorChange(n, "modified", b.dtype if a.dtype == b.dtype else f"{a.dtype} -> {b.dtype}",
                                      list(a.shape), list(b.shape))
            continue
        (da, exact_a), (db, exact_b) = read_tensor(fa, a), read_tensor(fb, b)
        if da == db:
            continue
        try:  # no weight change for expanded views: their elements are never materialized
            l2 = relative_l2_change(da, db, a.dtype) if exact_a and exact_b else None
        except MlvcError:
            l2 = None
        changes[n] = TensorChange(n, "modified", a.dtype, list(a.shape), list(b.shape), l2)
    all_modules = group_by_module(sorted(set(ta) | set(tb)))
    wrapper = state_dict_wrapper(set(ta) | set(tb))
    for module, names in sorted(all_modules.items()):
        changed = [changes[n] for n in names if n in changes]
        if changed:
            out.modules[module] = changed
            blocks = {blk for t in changed if (blk := block_of(t.name, module, wrapper)) is not None}
            if blocks:
                out.changed_blocks[module] = sorted(blocks, key=_natural)
        else:
            out.unchanged_modules.append(module)


def _natural(name: str) -> list[int | str]:
    """Sort key putting `layers.10` after `layers.9`."""
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def _shard_tensors(store: ObjectReader, entries: Mapping[str, TreeEntry], index_rel: str
                   ) -> tuple[Tensors, list[str], str | None]:
    """({tensor: (file, info)} over every shard, shard paths, format) of one side of a sharded
    checkpoint; ({}, [], None) when the index is absent on that side."""
    from ..checkpoint import read_layout, shard_files
    from .chunked_reader import ChunkedFile

    index = entries.get(index_rel)
    if index is None:
        return {}, [], None
    f = ChunkedFile.for_file(store, index.file_id, index_rel)
    base = index_rel.rpartition("/")[0]
    shards = [f"{base}/{n}" if base else n for n in shard_files(f.read(), index_rel)]
    tensors: Tensors = {}
    fmt = None
    for rel in shards:
        e = entries.get(rel)
        if e is None:
            raise MlvcError(f"{index_rel} names the shard {rel}, which the artifact lacks")
        shard = ChunkedFile.for_file(store, e.file_id, rel)
        layout = read_layout(shard)
        fmt = layout.format
        for t in layout.tensors:
            tensors.setdefault(t.name, (shard, t))
    return tensors, shards, fmt


def sharded_diff(store: ObjectReader, old_entries: Mapping[str, TreeEntry], new_entries: Mapping[str, TreeEntry],
                 index_rel: str) -> tuple[CheckpointDiff, set[str]]:
    """One CheckpointDiff for the model a sharded checkpoint's shards hold together, and the shard
    paths it covers (so they are not compared one by one)."""
    out = CheckpointDiff(index_rel)
    covered: set[str] = set()
    try:
        ta, sa, fa = _shard_tensors(store, old_entries, index_rel)
        tb, sb, fb = _shard_tensors(store, new_entries, index_rel)
        covered.update(sa, sb)
        out.format = f"sharded {fb or fa}"
        _compare(out, ta, tb)
    except MlvcError as exc:
        out.error = _short(exc)
    except (ValueError, OSError) as exc:
        out.error = f"unreadable checkpoint: {exc}"
    return out, covered


def _short(exc: Exception) -> str:
    if isinstance(exc, ObjectNotFoundError):
        return f"{exc} (run `mlvc pull` to compare contents)"
    return str(exc)


# ------------------------------------------------------------------ artifacts


def _id_changes(a: Mapping[str, object], b: Mapping[str, object]) -> dict[str, dict[str, list[str]]]:
    """Per file, the modules and blocks whose recorded ids differ between two pointers' meta."""
    from .report_checkpoints import block_ids, module_ids

    out: dict[str, dict[str, list[str]]] = {}
    for kind, ids_a, ids_b in (("modules", module_ids(a), module_ids(b)), ("blocks", block_ids(a), block_ids(b))):
        for rel in sorted(set(ids_a) | set(ids_b)):
            x, y = ids_a.get(rel, {}), ids_b.get(rel, {})
            moved = sorted((k for k in set(x) | set(y) if x.get(k) != y.get(k)), key=_natural)
            if moved:
                out.setdefault(rel, {})[kind] = moved
    return out


def _meta_changes(a: Mapping[str, object], b: Mapping[str, object]) -> dict[str, dict[str, object]]:
    from .params import ID_META, flatten

    a = flatten({k: v for k, v in a.items() if k not in ID_META})  # module and block ids: `_id_changes`
    b = flatten({k: v for k, v in b.items() if k not in ID_META})  # nested meta: the leaves that changed
    out = {}
    for k in sorted(set(a) | set(b), key=str):
        if a.get(k) != b.get(k) or (k in a) != (k in b):
            out[str(k)] = {"old": a.get(k), "new": b.get(k)}
    return out


def artifact_diff(store: ObjectReader, path: str, old: pointers.PointerFile | None, new: pointers.PointerFile | None,
                  contents: bool = True) -> ArtifactDiff:
    if old is None:
        if new is None:
            return ArtifactDiff(path, "unchanged")
        d = ArtifactDiff(path, "added", new.kind, None, new.oid, None, new.size)
    elif new is None:
        d = ArtifactDiff(path, "removed", old.kind, old.oid, None, old.size, None)
    else:
        same = old.oid == new.oid and old.kind == new.kind
        d = ArtifactDiff(path, "unchanged" if same else "modified", new.kind, old.oid, new.oid, old.size, new.size)
        d.meta = _meta_changes(old.meta or {}, new.meta or {})
        d.id_changes = _id_changes(old.meta or {}, new.meta or {})
        if old.role != new.role:
            d.role = {"old": old.role, "new": new.role}
        if (d.meta or d.role or d.id_changes) and same:
            d.change = "modified"
    if not contents:
        return d
    try:
        old_entries = {e.path: e for e in load_entries(store, old)} if old else {}
        new_entries = {e.path: e for e in load_entries(store, new)} if new else {}
    except MlvcError as exc:
        d.error = _short(exc)
        return d
    if d.kind == "dir" or (old and old.kind == "dir"):
        for p in sorted(set(old_entries) | set(new_entries)):
            a, b = old_entries.get(p), new_entries.get(p)
            if a is None:
                assert b is not None  # p is a path of one of them
                d.files.append(FileChange(p, "added", None, b.size))
            elif b is None:
                d.files.append(FileChange(p, "removed", a.size, None))
            elif a.file_id != b.file_id:
                d.files.append(FileChange(p, "modified", a.size, b.size))
    if d.change != "modified" or old is None or new is None:
        return d
    if old.kind == new.kind == "file":
        pairs = [("", old_entries[""].file_id, new_entries[""].file_id, posixpath.basename(path))]
    else:
        from ..checkpoint import is_shard_index

        covered: set[str] = set()
        changed = {f.path for f in d.files}
        for index_rel in sorted(p for p in set(old_entries) | set(new_entries) if is_shard_index(p)):
            if not any(p == index_rel or _looks_like_checkpoint(p) for p in changed):
                continue
            cd, shards = sharded_diff(store, old_entries, new_entries, index_rel)
            covered.update(shards)
            if index_rel in changed or changed & shards:
                d.checkpoints.append(cd)
        pairs = [(f.path, old_entries[f.path].file_id, new_entries[f.path].file_id, f.path)
                 for f in d.files if f.change == "modified" and _looks_like_checkpoint(f.path)
                 and f.path not in covered]
        pairs = pairs[:MAX_CHECKPOINTS_PER_ARTIFACT]
    for rel, fa, fb, name in pairs:
        if fa == fb:
            continue
        one = checkpoint_diff(store, fa, fb, name, rel)
        if one is not None:
            d.checkpoints.append(one)
    return d


def diff(repo: Repo, rev_a: str, rev_b: str | None = None, paths: Sequence[PathArg] | None = None, *,
         contents: bool = True, with_params: bool = True) -> DiffResult:
    from ..git import GitRepo
    from .params import params_diff, params_files

    if not repo.has_git:
        raise MlvcError("`mlvc diff` compares git revisions; this repository was set up with --no-scm")
    from .object_source import ObjectSource

    git = GitRepo(repo.root)
    source = ObjectSource(repo)  # the cache, then ranged reads of the default remote for what it lacks
    try:
        git.resolve(rev_a)
        if rev_b is not None:
            git.resolve(rev_b)
        a = pointers_at_rev(git, rev_a)
        b = pointers_at_rev(git, rev_b) if rev_b is not None else pointers_in_workspace(repo)
        wanted = wanted_paths(repo, paths)
        result = DiffResult(rev_a, rev_b)
        for path in sorted(set(a) | set(b)):
            if not path_selected(path, wanted):
                continue
            (pa, ea), (pb, eb) = a.get(path, (None, None)), b.get(path, (None, None))
            if ea or eb:
                result.artifacts.append(ArtifactDiff(path, "invalid", error=ea or eb))
                continue
            d = artifact_diff(source, path, pa, pb, contents)
            if d.change != "unchanged":
                result.artifacts.append(d)
        if with_params:
            files = set(params_files(repo))  # pointer meta is reported per artifact above
            result.params = [c for c in params_diff(repo, rev_a, rev_b, git=git) if c.source in files]
        return result
    finally:
        source.close()
        git.close()


__all__ = ["diff", "artifact_diff", "checkpoint_diff", "DiffResult", "ArtifactDiff", "from_oid"]
