"""Helpers shared by operations: selecting pointers and reading manifests."""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import pointer as pointers
from ..errors import MlvcError, OverlappingPointersError, PathError, UnsafePathError
from ..hashing import from_oid
from ..objects import FileManifest, TreeEntry, TreeManifest
from ..store.packs import FILE_MANIFEST, TREE_MANIFEST
from ..workspace import FileStat

if TYPE_CHECKING:
    from ..repo import Repo
    from ..store.packstore import PackStore

PathArg = str | os.PathLike[str]  # an artifact or pointer path as a user gives it


class ManifestReader(Protocol):
    """What walking an artifact's manifests reads: verified objects by key and trees (the cache,
    a remote's store, `ObjectSource`, or the first of several stores that has each)."""

    def get(self, typ: int, oid: bytes) -> bytes: ...

    def tree(self, oid: bytes) -> TreeManifest: ...


@dataclass
class Tracked:
    """A pointer in the workspace, parsed (or the error that parsing raised)."""

    pointer_path: Path
    rel_pointer: str
    ptr: pointers.PointerFile | None
    error: MlvcError | None = None
    # a path inside a directory artifact the user named (`models/m.bin` of `models`): the
    # operation acts on just that file (or subdirectory); "" for the whole artifact
    inner: str = ""

    @property
    def pointer(self) -> pointers.PointerFile:
        """The parsed pointer; raises why it did not parse where it did not."""
        if self.ptr is None:
            raise self.parse_error
        return self.ptr

    @property
    def parse_error(self) -> MlvcError:
        """Why the pointer did not parse (for a Tracked without `ptr`)."""
        return self.error if self.error is not None else MlvcError(f"{self.rel_pointer}: no pointer read")

    @property
    def target(self) -> Path:
        return pointers.target_of(self.pointer_path, self.pointer)

    @property
    def display(self) -> str:
        if self.ptr is None:
            return self.rel_pointer[: -len(pointers.SUFFIX)]
        parent = Path(self.rel_pointer).parent
        return (parent / self.ptr.path).as_posix() if str(parent) != "." else self.ptr.path

    @property
    def shown(self) -> str:
        """What the user selected: the artifact, or the path inside it."""
        return f"{self.display}/{self.inner}" if self.inner else self.display

    def within(self, entries: Sequence[TreeEntry]) -> Sequence[TreeEntry]:
        """The entries (in path order) the selection covers: all, or those at or below `inner`,
        found by bisection (a path in a million-file tree costs no pass over it)."""
        if not self.inner:
            return entries
        out: list[TreeEntry] = []
        i = bisect_left(entries, self.inner, key=attrgetter("path"))
        if i < len(entries) and entries[i].path == self.inner:
            out.append(entries[i])
        below = self.inner + "/"  # "inner-x" and "inner.y" sort between "inner" and "inner/"
        for j in range(bisect_left(entries, below, key=attrgetter("path")), len(entries)):
            e = entries[j]
            if not e.path.startswith(below):
                break
            out.append(e)
        return out


def _pointer_for_arg(repo: Repo, arg: PathArg) -> Path:
    p = repo.resolve_user_path(arg)
    if p.name.endswith(pointers.SUFFIX):
        return p
    return pointers.pointer_path_for(p)


def containing(repo: Repo, arg: PathArg) -> tuple[Tracked, str]:
    """The tracked artifact that is `arg` or contains it, and `arg`'s path inside it ("" if itself)."""
    pp = _pointer_for_arg(repo, arg)
    if pp.exists():
        (t,) = select(repo, [arg])
        return t, ""
    inside = _inside_artifact(repo, pp)
    if inside is not None:
        (t,) = select(repo, [inside[0]])
        return t, inside[1]
    raise PathError(arg, "is not tracked by mlvc (no pointer file for it or a directory above it)",
                    hint=f"run `mlvc add {arg}` first")


def _inside_artifact(repo: Repo, pp: Path) -> tuple[Path, str] | None:
    """(pointer of the directory artifact above `pp`'s target, path inside it), or None."""
    target = pp.with_name(pp.name[: -len(pointers.SUFFIX)])
    for ancestor in target.parents:
        if ancestor == repo.root or repo.root not in ancestor.parents:
            return None
        anc_ptr = pointers.pointer_path_for(ancestor)
        if anc_ptr.is_file():
            return anc_ptr, target.relative_to(ancestor).as_posix()
    return None


def links_root(repo: Repo, *metas: Mapping[str, object] | None) -> Path | None:
    """The repository root when any of these pointer metas asks to follow symlinks inside it
    (`mlvc add --follow-links`), for `workspace.scan(follow_within=)`; None otherwise."""
    return repo.root if any((m or {}).get(pointers.FOLLOW_LINKS) is True for m in metas) else None


def followed_link_warnings(repo: Repo, target: Path, display: str, files: Iterable[FileStat]) -> list[str]:
    """A warning when files an artifact reads through symlinks live outside it and git does not
    ignore them (a Hugging Face cache's `blobs/` beside `snapshots/`): `git add -A` would commit
    the very bytes mlvc stores."""
    import os

    from ..ignore import not_ignored

    inside = os.path.realpath(target)
    outside = sorted({os.path.relpath(real, os.path.realpath(repo.root)) for real in
                      (os.path.realpath(f.fspath) for f in files) if real != inside
                      and not real.startswith(inside + os.sep)})
    exposed = not_ignored(repo.root, outside) if repo.has_git else []
    if not exposed:
        return []
    shown = ", ".join(exposed[:3]) + (f" and {len(exposed) - 3} more" if len(exposed) > 3 else "")
    return [f"{display}: its links point to files git does not ignore ({shown}); `git add -A` would commit "
            "them: add their directory to .gitignore"]


def existing_meta(ptr_path: Path) -> dict[str, Any]:
    """The meta of the pointer at `ptr_path`, {} when there is none (or it cannot be read)."""
    try:
        return pointers.load(ptr_path).meta if ptr_path.is_file() else {}
    except MlvcError:
        return {}


def select(repo: Repo, paths: Sequence[PathArg] | None = None, *, within: bool = False) -> list[Tracked]:
    """Pointers named by `paths` (artifact or pointer paths), or all pointers of the workspace.

    `within`: a path inside a directory artifact (`models/m.bin` of `models`) selects that
    artifact with `inner` set, for operations that can act on part of one."""
    picked: list[tuple[Path, str, PathArg]] = []  # (pointer, path inside, as the user named it)
    if paths:
        for a in paths:
            pp = _pointer_for_arg(repo, a)
            if pp.exists():
                picked.append((pp, "", a))
                continue
            inside = _inside_artifact(repo, pp) if within else None
            if inside is None:
                raise PathError(a, "is not tracked by mlvc (no pointer file "
                                   f"{repo.rel(pp)})", hint=f"run `mlvc add {a}` first")
            picked.append((*inside, a))
    else:
        picked = [(pp, "", pp) for pp in pointers.discover(repo.root, repo.has_git)]
    out: list[Tracked] = []
    for pp, inner, arg in picked:
        rel = repo.rel(pp)
        try:
            t = Tracked(pp, rel, pointers.load(pp, rel), inner=inner)
            refuse_git_and_mlvc_paths(t)
        except MlvcError as exc:
            t = Tracked(pp, rel, None, exc, inner)
        if inner and t.ptr is not None and t.ptr.kind != "dir":
            raise PathError(arg, f"is not inside a directory artifact ({t.display} is a file)")
        out.append(t)
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


def load_entries(store: ManifestReader, ptr: pointers.PointerFile) -> Sequence[TreeEntry]:
    """The files of an artifact as tree entries, in path order (a single entry with path "" for
    a file).  A tree's entries stay packed: a million of them cost tens of MB, not hundreds."""
    oid = from_oid(ptr.oid)
    if ptr.kind == "file":
        return [TreeEntry("", ptr.size, oid, False)]
    return store.tree(oid).entries


def paired(entries: Iterable[TreeEntry], files: Iterable[FileStat]
           ) -> Iterator[tuple[TreeEntry | None, int, FileStat | None, int]]:
    """Tree entries and scanned workspace files, both in path order, joined by path in one pass:
    (entry, j, file, i) with `j` the entry's index in `entries` and `i` the file's in `files`;
    the entry is None (j = -1) for a file only the workspace has, the file None (i = -1) for
    one only the tree has.  Nothing is built per file, so comparing a million-file artifact
    costs no dict of a million paths."""
    ei, fi = iter(entries), iter(files)
    e, f = next(ei, None), next(fi, None)
    i = j = 0
    while e is not None or f is not None:
        if f is None or (e is not None and e.path < f.rel):
            yield e, j, None, -1
            e, j = next(ei, None), j + 1
        elif e is None or f.rel < e.path:
            yield None, -1, f, i
            f, i = next(fi, None), i + 1
        else:
            yield e, j, f, i
            e, f, i, j = next(ei, None), next(fi, None), i + 1, j + 1


def natural_key(path: str) -> list[tuple[int, int, str]]:
    """step_40 before step_120: digit runs compare as numbers (the order `add` stores a run's
    checkpoints in, each against the one before it, and a restore writes them in)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path)]


def file_manifest(store: ManifestReader, fid: bytes) -> FileManifest:
    return FileManifest.decode(store.get(FILE_MANIFEST, fid), fid)


def missing_objects(store: PackStore, ptr: pointers.PointerFile) -> list[bytes]:
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


def reachable(store: ManifestReader, ptr: pointers.PointerFile) -> list[tuple[int, bytes]]:
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


def wanted_paths(repo: Repo, paths: Iterable[PathArg] | None) -> list[str] | None:
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
