"""Helpers shared by operations: selecting pointers and reading manifests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import pointer as pointers
from ..errors import MlvcError, OverlappingPointersError, PathError, UnsafePathError
from ..hashing import from_oid
from ..objects import FileManifest, TreeEntry, TreeManifest
from ..store.packs import FILE_MANIFEST, TREE_MANIFEST


@dataclass
class Tracked:
    """A pointer in the workspace, parsed (or the error that parsing raised)."""

    pointer_path: Path
    rel_pointer: str
    ptr: pointers.PointerFile | None
    error: MlvcError | None = None

    @property
    def target(self) -> Path:
        return pointers.target_of(self.pointer_path, self.ptr)

    @property
    def display(self) -> str:
        if self.ptr is None:
            return self.rel_pointer[: -len(pointers.SUFFIX)]
        parent = Path(self.rel_pointer).parent
        return (parent / self.ptr.path).as_posix() if str(parent) != "." else self.ptr.path


def _pointer_for_arg(repo, arg: str | Path) -> Path:
    p = repo.resolve_user_path(arg)
    if p.name.endswith(pointers.SUFFIX):
        return p
    return pointers.pointer_path_for(p)


def containing(repo, arg: str | Path) -> tuple[Tracked, str]:
    """The tracked artifact that is `arg` or contains it, and `arg`'s path inside it ("" if itself)."""
    pp = _pointer_for_arg(repo, arg)
    if pp.exists():
        (t,) = select(repo, [arg])
        return t, ""
    target = pp.with_name(pp.name[: -len(pointers.SUFFIX)])
    for ancestor in target.parents:
        if ancestor == repo.root or repo.root not in ancestor.parents:
            break
        anc_ptr = pointers.pointer_path_for(ancestor)
        if anc_ptr.exists():
            (t,) = select(repo, [anc_ptr])
            return t, target.relative_to(ancestor).as_posix()
    raise PathError(arg, "is not tracked by mlvc (no pointer file for it or a directory above it)",
                    hint=f"run `mlvc add {arg}` first")


def select(repo, paths=None) -> list[Tracked]:
    """Pointers named by `paths` (artifact or pointer paths), or all pointers of the workspace."""
    if paths:
        ptr_paths = []
        for a in paths:
            pp = _pointer_for_arg(repo, a)
            if not pp.exists():
                raise PathError(a, "is not tracked by mlvc (no pointer file "
                                   f"{repo.rel(pp)})", hint=f"run `mlvc add {a}` first")
            ptr_paths.append(pp)
    else:
        ptr_paths = pointers.discover(repo.root, repo.has_git)
    out = []
    for pp in ptr_paths:
        rel = repo.rel(pp)
        try:
            t = Tracked(pp, rel, pointers.load(pp, rel))
            refuse_git_and_mlvc_paths(t)
            out.append(t)
        except MlvcError as exc:
            out.append(Tracked(pp, rel, None, exc))
    return out


def refuse_git_and_mlvc_paths(t: Tracked) -> None:
    """A pointer may not name a path inside `.git/` (any directory of that name, in any case, as
    git itself refuses: a hook written there runs on the next git command) or inside `.mlvc/`."""
    parts = t.display.split("/")
    if any(part.lower() == ".git" for part in parts) or parts[0].lower() == ".mlvc":
        where = ".git/" if any(part.lower() == ".git" for part in parts) else ".mlvc/"
        raise UnsafePathError(t.rel_pointer, f"unsafe path {t.display!r}: inside {where}, which mlvc never writes")


def overlapping(tracked: list[Tracked]) -> dict[str, OverlappingPointersError]:
    """{pointer path: error} for every pointer whose artifact is, contains or lies inside another's."""
    by_path: dict[str, list[Tracked]] = {}
    for t in tracked:
        if t.ptr is not None:
            by_path.setdefault(t.display, []).append(t)
    out: dict[str, OverlappingPointersError] = {}

    def clash(t: Tracked, other: Tracked, how: str) -> None:
        out.setdefault(t.rel_pointer, OverlappingPointersError(
            t.rel_pointer, f"its artifact {t.display} {how} {other.display} (pointer {other.rel_pointer}); "
                           "remove one of the two pointers"))

    for display, same in by_path.items():
        for t in same:
            for other in same:
                if other is not t:
                    clash(t, other, "is also named by")
        parts = display.split("/")
        for i in range(1, len(parts)):
            for outer in by_path.get("/".join(parts[:i]), ()):
                for t in same:
                    clash(t, outer, "lies inside the artifact")
                    clash(outer, t, "contains the artifact")
    return out


def load_entries(store, ptr: pointers.PointerFile) -> list[TreeEntry]:
    """The files of an artifact as tree entries (a single entry with path "" for a file)."""
    oid = from_oid(ptr.oid)
    if ptr.kind == "file":
        return [TreeEntry("", ptr.size, oid, False)]
    return list(TreeManifest.decode(store.get(TREE_MANIFEST, oid), oid).entries)


def file_manifest(store, fid: bytes) -> FileManifest:
    return FileManifest.decode(store.get(FILE_MANIFEST, fid), fid)


def missing_objects(store, ptr: pointers.PointerFile) -> list[bytes]:
    """Chunk/manifest ids under a pointer that the cache lacks (empty when complete)."""
    from ..errors import ObjectNotFoundError
    from ..store.packs import CHUNK

    oid = from_oid(ptr.oid)
    if ptr.kind == "dir" and not store.has_any(TREE_MANIFEST, oid):
        return [oid]
    try:
        entries = load_entries(store, ptr)
    except ObjectNotFoundError:
        return [oid]
    missing = []
    for e in entries:
        if not store.has_any(FILE_MANIFEST, e.file_id):
            missing.append(e.file_id)
            continue
        for cid, _ in file_manifest(store, e.file_id).chunks:
            if not store.has(CHUNK, cid):
                missing.append(cid)
    return missing


def reachable(store, ptr: pointers.PointerFile) -> list[tuple[int, bytes]]:
    """Every (type, id) an artifact needs: its tree (if a dir), file manifests, chunks.

    Raises ObjectNotFoundError when a manifest needed to walk further is missing.
    """
    from ..store.packs import CHUNK

    oid = from_oid(ptr.oid)
    out: list[tuple[int, bytes]] = []
    if ptr.kind == "dir":
        out.append((TREE_MANIFEST, oid))
    seen: set[bytes] = set()
    for e in load_entries(store, ptr):
        if e.file_id in seen:
            continue
        seen.add(e.file_id)
        out.append((FILE_MANIFEST, e.file_id))
        out.extend((CHUNK, cid) for cid, _ in file_manifest(store, e.file_id).chunks)
    return out


def wanted_paths(repo, paths) -> list[str] | None:
    """Repo-relative POSIX artifact paths named on the command line (artifacts or pointers)."""
    if not paths:
        return None
    out = []
    for p in paths:
        rel = repo.rel(repo.resolve_user_path(p))
        out.append(rel[: -len(pointers.SUFFIX)] if rel.endswith(pointers.SUFFIX) else rel)
    return out


def path_selected(display: str, wanted: list[str] | None) -> bool:
    """True when `display` is one of `wanted` or inside one of them (None selects everything)."""
    return wanted is None or any(display == w or display.startswith(w.rstrip("/") + "/") for w in wanted)
