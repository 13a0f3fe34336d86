"""Three-way merge of directory artifacts: `mlvc merge PATH` and the git merge driver for `*.mlvc`.

Two branches that both changed a directory artifact give git two pointers with different tree
ids.  The merge works on the tree manifests only (base, ours, theirs), never on file bytes:

* a file path is taken from the side that changed it (added, edited or deleted); a path both
  sides changed the same way is taken once;
* a path both sides changed differently (edited on both, or edited on one and deleted on the
  other) is a **conflict**, named with both file ids;
* the merged tree is written to the cache and the pointer names it (size and file count
  recomputed; `meta` merged key by key the same way, per-file module ids per file; a key both
  sides changed differently is dropped: it described neither result).

With conflicts, both resolutions are written to the cache (conflicting files as ours, and as
theirs), and the pointer gets git's conflict markers around the two pointers, so any mlvc
command names both ids, and `mlvc merge PATH --ours` / `--theirs` (or the ids themselves)
restore either side.  The original trees stay in the cache and in their commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..atomic import write_bytes
from .. import pointer as pointers
from ..errors import MergeConflictError, MlvcError, PathError, PointerError
from ..hashing import from_oid, to_oid
from ..objects import TreeEntry, TreeManifest
from ..store.packs import TREE_MANIFEST

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..repo import Repo
    from .common import ManifestReader

T = TypeVar("T")

OURS, THEIRS = "ours", "theirs"
_NONE = object()  # a meta key absent on one side


@dataclass(frozen=True)
class FileConflict:
    """A file of the artifact changed on both sides: its id on each (None: deleted there)."""

    path: str
    ours: str | None
    theirs: str | None

    def describe(self) -> str:
        return f"{self.path} (ours {self.ours or 'deleted'}, theirs {self.theirs or 'deleted'})"


@dataclass
class MergeResult:
    artifact: str  # the artifact's path, repo-relative
    pointer: str  # its pointer file, repo-relative
    merged: pointers.PointerFile | None  # the result; with conflicts, the side `prefer` named (or None)
    conflicts: list[FileConflict] = field(default_factory=list)
    sides: dict[str, pointers.PointerFile] = field(default_factory=dict)  # with conflicts: each resolution
    taken_from_theirs: int = 0  # file paths whose theirs version was taken (added, edited or deleted)
    dropped_meta: list[str] = field(default_factory=list)
    staged: bool = False

    @property
    def clean(self) -> bool:
        return not self.conflicts

    def as_dict(self) -> dict[str, object]:
        return {"artifact": self.artifact, "pointer": self.pointer,
                "id": self.merged.oid if self.merged else None,
                "conflicts": [{"path": c.path, "ours": c.ours, "theirs": c.theirs} for c in self.conflicts],
                "sides": {k: v.oid for k, v in self.sides.items()},
                "taken_from_theirs": self.taken_from_theirs, "dropped_meta": self.dropped_meta,
                "staged": self.staged}


# ------------------------------------------------------------------ the merge itself


def _merge3(base: T, ours: T, theirs: T) -> tuple[T | None, bool]:
    """(value, conflicted) of one three-way choice; equal values are one value."""
    if ours == theirs:
        return ours, False
    if ours == base:
        return theirs, False
    if theirs == base:
        return ours, False
    return None, True


def _walk3(base: Iterable[TreeEntry], ours: Iterable[TreeEntry], theirs: Iterable[TreeEntry]
           ) -> Iterator[tuple[str, TreeEntry | None, TreeEntry | None, TreeEntry | None]]:
    """(path, base entry, ours entry, theirs entry) over the union of three sorted entry lists."""
    its = [iter(base), iter(ours), iter(theirs)]
    heads = [next(it, None) for it in its]
    while any(h is not None for h in heads):
        path = min(h.path for h in heads if h is not None)
        row: list[TreeEntry | None] = []
        for i, h in enumerate(heads):
            if h is not None and h.path == path:
                row.append(h)
                heads[i] = next(its[i], None)
            else:
                row.append(None)
        yield path, row[0], row[1], row[2]


def merge_entries(base: Iterable[TreeEntry], ours: Iterable[TreeEntry], theirs: Iterable[TreeEntry]
                  ) -> tuple[list[TreeEntry], list[TreeEntry], list[FileConflict], int]:
    """(entries resolved as ours, entries resolved as theirs, conflicts, paths taken from theirs):
    the two lists differ only at the conflicts."""
    as_ours: list[TreeEntry] = []
    as_theirs: list[TreeEntry] = []
    conflicts: list[FileConflict] = []
    from_theirs = 0
    for path, b, o, t in _walk3(base, ours, theirs):
        chosen, conflicted = _merge3(b, o, t)
        if conflicted:
            conflicts.append(FileConflict(path, to_oid(o.file_id) if o else None, to_oid(t.file_id) if t else None))
            if o is not None:
                as_ours.append(o)
            if t is not None:
                as_theirs.append(t)
            continue
        if chosen is not o:
            from_theirs += 1
        if chosen is not None:
            as_ours.append(chosen)
            as_theirs.append(chosen)
    for entries in (as_ours, as_theirs):
        _refuse_file_dir_clash(entries)
    return as_ours, as_theirs, conflicts, from_theirs


def _refuse_file_dir_clash(entries: list[TreeEntry]) -> None:
    """One side made `x` a file, the other put files below `x/`: no tree can hold both."""
    files = {e.path for e in entries}
    for e in entries:
        parent = e.path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in files:
                raise MlvcError(f"cannot merge: {parent} is a file on one side and a directory on the other",
                                hint="keep one side with `git checkout --ours/--theirs`, then re-add the "
                                     "other side's files")


def merge_meta(base: Mapping[str, object], ours: Mapping[str, object], theirs: Mapping[str, object]
               ) -> tuple[dict[str, object], list[str]]:
    """Key by key, nested mappings (per-file module ids, per-block ids) entry by entry;
    (merged meta, keys dropped as conflicting)."""
    out: dict[str, object] = {}
    dropped: list[str] = []
    for key in dict.fromkeys([*ours, *theirs, *base]):
        b, o, t = base.get(key, _NONE), ours.get(key, _NONE), theirs.get(key, _NONE)
        sides = (b, o, t)
        if any(isinstance(v, dict) for v in sides) and all(isinstance(v, dict) or v is _NONE for v in sides):
            # nested ids (per-file module ids, per-block ids): entry by entry
            inner, lost = merge_meta(_mapping(b), _mapping(o), _mapping(t))
            dropped += [f"{key}.{k}" for k in lost]
            if inner:
                out[key] = inner
            continue
        value, conflicted = _merge3(b, o, t)
        if conflicted:
            dropped.append(key)
        elif value is not _NONE:
            out[key] = value
    return out, dropped


def _mapping(v: object) -> Mapping[str, object]:
    """A nested meta mapping; {} for a key absent on that side."""
    return v if isinstance(v, Mapping) else {}


def _tree(source: ManifestReader, ptr: pointers.PointerFile | None) -> Sequence[TreeEntry]:
    if ptr is None:
        return []
    return source.tree(from_oid(ptr.oid)).entries


def merge_pointers(repo: Repo, base: pointers.PointerFile | None, ours: pointers.PointerFile,
                   theirs: pointers.PointerFile, *, artifact: str, pointer: str,
                   remote: str | None = None) -> MergeResult:
    """Merge two versions of one artifact's pointer against their common base (None: both
    sides added it).  Trees missing from the cache are read from the remote.  Writes the
    merged tree(s) to the cache; writes no file."""
    result = MergeResult(artifact, pointer, None)
    meta, result.dropped_meta = merge_meta(base.meta if base else {}, ours.meta, theirs.meta)
    role, _ = _merge3(base.role if base else None, ours.role, theirs.role)
    if ours.oid == theirs.oid or (base is not None and theirs.oid == base.oid):
        result.merged = replace(ours, meta=meta, role=role or ours.role)
        return result
    if base is not None and ours.oid == base.oid:
        result.merged, result.taken_from_theirs = replace(theirs, meta=meta, role=role or theirs.role), theirs.files
        return result
    if ours.kind != "dir" or theirs.kind != "dir" or (base is not None and base.kind != "dir"):
        raise MlvcError(f"cannot merge {artifact}: both sides changed it and it is not a directory on both "
                        f"(ours {ours.oid}, theirs {theirs.oid})",
                        hint=f"keep one side: `git checkout --ours {pointer}` or `git checkout --theirs {pointer}`")
    from .object_source import ObjectSource

    source = ObjectSource(repo, remote)
    try:
        b_entries, o_entries, t_entries = (_tree(source, p) for p in (base, ours, theirs))
    finally:
        source.close()
    as_ours, as_theirs, conflicts, from_theirs = merge_entries(b_entries, o_entries, t_entries)
    store = repo.store
    with store.host_lock():  # shared: a concurrent gc keeps what we are about to name
        try:
            sides = {}
            for side, entries in ((OURS, as_ours), (THEIRS, as_theirs)):
                if side == THEIRS and not conflicts:
                    break
                tree = TreeManifest.from_sorted(entries)
                oid = to_oid(store.put_pieces(TREE_MANIFEST, tree.pieces()))
                sides[side] = pointers.PointerFile(ours.path, "dir", oid, tree.entries.total_size(), len(entries),
                                                   ours.chunker, role or ours.role, meta)
            store.commit()
        except BaseException:
            store.abort()
            raise
    result.conflicts, result.taken_from_theirs = conflicts, from_theirs
    if conflicts:
        result.sides = sides
    else:
        result.merged = sides[OURS]
    return result


# ------------------------------------------------------------------ writing results


def conflict_text(result: MergeResult) -> bytes:
    """The pointer file of a conflicted merge: git's markers around both resolutions, so every
    mlvc command reading it names both ids."""
    files = f"{len(result.conflicts)} conflicting file{'s' if len(result.conflicts) != 1 else ''}"
    ours = result.sides[OURS].to_yaml()
    theirs = result.sides[THEIRS].to_yaml()
    return (f"<<<<<<< merged, {files} as ours\n{ours}"
            f"=======\n{theirs}>>>>>>> merged, {files} as theirs\n").encode()


def plain_conflict(ours: bytes, theirs: bytes) -> bytes:
    """Both pointers whole between conflict markers (what git's text merge would leave, roughly)."""
    def block(data: bytes) -> bytes:
        return data if data.endswith(b"\n") or not data else data + b"\n"

    return b"<<<<<<<\n" + block(ours) + b"=======\n" + block(theirs) + b">>>>>>>\n"


def _write_bytes(path: Path, data: bytes, fsync: bool) -> None:
    """Temp + fsync + rename: a merge interrupted at any point leaves git's file or ours whole."""
    write_bytes(path, data, fsync=fsync)


def _parse_side(data: bytes, where: str) -> pointers.PointerFile | None:
    return pointers.PointerFile.parse(data, where) if data.strip() else None


def merge_driver(repo: Repo, base_file: str, ours_file: str, theirs_file: str, path: str) -> tuple[int, list[str]]:
    """git's merge driver for `*.mlvc` (`%O %A %B %P`): the result replaces the file `ours_file`.
    (0, messages) when clean; (1, messages) on a conflict, which git then reports."""
    fsync = repo.config.settings.fsync
    artifact = path[: -len(pointers.SUFFIX)] if path.endswith(pointers.SUFFIX) else path
    messages: list[str] = []
    try:
        sides = [Path(f).read_bytes() for f in (base_file, ours_file, theirs_file)]
        base, ours, theirs = (_parse_side(data, f"{path} ({name})")
                              for data, name in zip(sides, ("base", "ours", "theirs"), strict=True))
        if ours is None or theirs is None:
            raise PointerError(path, "one side of the merge is empty")
        result = merge_pointers(repo, base, ours, theirs, artifact=artifact, pointer=path)
    except MlvcError as exc:
        messages.append(f"mlvc: cannot merge {path}: {exc}")
        if exc.hint:
            messages.append(f"mlvc: hint: {exc.hint}")
        try:  # git takes the driver's file as the result: mark the conflict as git's own merge would
            _write_bytes(Path(ours_file), plain_conflict(Path(ours_file).read_bytes(), Path(theirs_file).read_bytes()),
                         fsync)
        except OSError as err:
            messages.append(f"mlvc: cannot write {path}: {err}")
        return 1, messages
    if result.conflicts:
        _write_bytes(Path(ours_file), conflict_text(result), fsync)
        messages += conflict_messages(result)
        return 1, messages
    assert result.merged is not None  # merge_pointers names the result when nothing conflicts
    merged = result.merged.to_yaml().encode()
    if merged != sides[1]:
        _write_bytes(Path(ours_file), merged, fsync)
    if result.taken_from_theirs:
        messages.append(f"mlvc: merged {artifact}: {result.taken_from_theirs} file(s) from theirs")
    for key in result.dropped_meta:
        messages.append(f"mlvc: {artifact}: meta {key} differs on both sides; dropped from the merged pointer")
    return 0, messages


def conflict_messages(result: MergeResult) -> list[str]:
    out = [f"mlvc: {result.artifact}: {len(result.conflicts)} file(s) changed on both sides:"]
    out += [f"mlvc:   {c.describe()}" for c in result.conflicts[:20]]
    if len(result.conflicts) > 20:
        out.append(f"mlvc:   ... and {len(result.conflicts) - 20} more (`mlvc merge {result.pointer} --json`)")
    out.append(f"mlvc: resolve with `mlvc merge {result.pointer} --ours` or `--theirs` (the other changes "
               "stay merged either way)")
    return out


def _stages(git: GitRepo, rel: str) -> dict[int, bytes]:
    """The index stages (1 base, 2 ours, 3 theirs) of a conflicted path: their blob contents."""
    out = git.run_git("ls-files", "-u", "-z", "--", rel)
    stages: dict[int, bytes] = {}
    for record in filter(None, out.split("\0")):
        info, _, name = record.partition("\t")
        if name != rel:
            continue
        _mode, sha, stage = info.split()
        stages[int(stage)] = git.blob(sha)
    return stages


def merge(repo: Repo, path: str | Path, *, prefer: str | None = None, remote: str | None = None) -> MergeResult:
    """`mlvc merge PATH`: merge the artifact's pointer left conflicted by `git merge` (from the
    index's base, ours and theirs) and, when it is clean or `prefer` picks a side for the
    conflicting files, write and `git add` the merged pointer.  Conflicts without `prefer`: the
    pointer gets both resolutions between conflict markers and MergeConflictError is raised."""
    from ..git import GitRepo

    if prefer not in (None, OURS, THEIRS):
        raise MlvcError(f"prefer must be {OURS!r} or {THEIRS!r}")
    target = repo.resolve_user_path(path)
    ptr_path = target if target.name.endswith(pointers.SUFFIX) else pointers.pointer_path_for(target)
    rel = repo.rel(ptr_path)
    artifact = rel[: -len(pointers.SUFFIX)]
    if not repo.has_git:
        raise MlvcError("mlvc merge needs a git repository (this one was set up with --no-scm)")
    git = GitRepo(repo.root)
    try:
        stages = _stages(git, rel)
        if 2 not in stages or 3 not in stages:
            raise PathError(rel, "is not conflicted in a git merge (nothing to merge)",
                            hint="run it after `git merge` (or `git pull`) reported a conflict in this pointer")
        base = _parse_side(stages[1], f"{rel} (base)") if 1 in stages else None
        ours, theirs = _parse_side(stages[2], f"{rel} (ours)"), _parse_side(stages[3], f"{rel} (theirs)")
        if ours is None or theirs is None:
            raise PointerError(rel, "one side of the merge is empty")
        result = merge_pointers(repo, base, ours, theirs, artifact=artifact, pointer=rel, remote=remote)
        fsync = repo.config.settings.fsync
        if result.conflicts and prefer is None:
            _write_bytes(ptr_path, conflict_text(result), fsync)
            raise MergeConflictError(artifact, [(c.path, c.ours, c.theirs) for c in result.conflicts],
                                     pointer=rel)
        if result.conflicts and prefer is not None:
            result.merged = result.sides[prefer]
        assert result.merged is not None  # merge_pointers names the result when nothing conflicts
        pointers.write(ptr_path, result.merged, fsync=fsync)
        git.run_git("add", "--", rel)
        result.staged = True
    finally:
        git.close()
    return result


__all__ = ["merge", "merge_driver", "merge_pointers", "merge_entries", "merge_meta", "MergeResult",
           "FileConflict", "conflict_text", "conflict_messages", "OURS", "THEIRS"]
