"""`mlvc import` and `mlvc update`: another repository's artifact, tracked in this project.

The pointer written is an ordinary pointer (same id, size, chunker, role and meta as the
source's) plus `source: {url, path, rev, commit}`.  Order, as for `add`: every object the
artifact needs is fetched from the source's remote into this project's cache (verified),
then the pointer is written, then the workspace files are restored from the cache and
git-ignored.  A later `mlvc push` copies the objects to this project's remote like any
other artifact's; `mlvc fetch/pull` in a clone that lacks them takes them from this project's
remote, else from the source (`fetch_imported`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

from .. import pointer as pointers
from ..errors import ConflictError, MlvcError, PathError
from ..hashing import from_oid
from ..ignore import ensure_ignored
from ..pointer import PointerFile, PointerSource
from ..sources import SourceRepo, open_source, recorded_url
from ..store.packs import TREE_MANIFEST
from .checkout import checkout
from .common import PathArg, Tracked, select
from .get import fetch_files
from .object_source import SourceStats
from .read import RevisionView, repo_path

if TYPE_CHECKING:
    from ..repo import Repo


@dataclass
class ImportResult:
    path: str  # the artifact in this project (repository-relative)
    pointer: str
    kind: str
    oid: str
    size: int
    files: int
    source: PointerSource
    changed: bool = True  # update: whether the pointer moved
    previous: str | None = None  # update: the commit it was at
    fetched: SourceStats = field(default_factory=SourceStats)

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "pointer": self.pointer, "kind": self.kind, "id": self.oid, "size": self.size,
                "files": self.files, "source": self.source.as_dict(), "changed": self.changed,
                "previous_commit": self.previous, "requests": self.fetched.requests,
                "bytes_downloaded": self.fetched.bytes_downloaded}


def _source_pointer(view: RevisionView, path: str, name: str) -> PointerFile:
    """The pointer this project records for `path` of the source (an artifact, or one file of a
    directory artifact), named `name`."""
    rel = repo_path(path)
    found = view.containing_artifact(rel) if rel else None
    if found is None:
        if rel and not view.is_dir(rel):
            view.entry(rel)  # PathError when there is nothing at `rel`
            raise PathError(rel, f"is not tracked by mlvc {view.where}",
                            hint="`mlvc get` copies files git tracks")
        what = "a directory" if rel else "the repository's top"
        raise PathError(rel or ".", f"is {what} {view.where}, not a tracked artifact",
                        hint="import one of its artifacts (`mlvc ls URL PATH` lists them)")
    artifact, ptr, inner = found
    if not inner:
        return PointerFile(name, ptr.kind, ptr.oid, ptr.size, ptr.files, ptr.chunker, ptr.role, dict(ptr.meta))
    if view.is_dir(rel):
        raise PathError(rel, f"is a directory inside the artifact {artifact} {view.where}",
                        hint=f"import the whole artifact ({artifact}), or copy this part with `mlvc get`")
    e = view.entry(rel)
    return PointerFile(name, "file", e.ref, view.size(e), 1, ptr.chunker, None, {})


def _fetch_objects(view: RevisionView, ptr: PointerFile) -> None:
    """Every object `ptr` needs, into the cache the view's source writes to."""
    source = view.source
    oid = from_oid(ptr.oid)
    if ptr.kind == "dir":
        source.fetch_missing([(TREE_MANIFEST, oid)])
        fetch_files(source, [e.file_id for e in source.tree(oid).entries])
    else:
        fetch_files(source, [oid])


def _install(repo: Repo, pointer_path: Path, ptr: PointerFile, force: bool) -> None:
    """Pointer, then workspace files (from the cache), then the ignore entries."""
    pointers.write(pointer_path, ptr, fsync=repo.config.settings.fsync)
    target = pointers.target_of(pointer_path, ptr)
    ensure_ignored(target)
    repo.keep_out_of_git([target])
    result = checkout(repo, [pointer_path], force=force)
    if result.failed:
        name, message = next(iter(result.failed.items()))
        err = MlvcError(f"{name}: {message}")
        err.exit_code = result.failed_codes.get(name, MlvcError.exit_code)
        raise err


def import_artifact(repo: Repo, url: str, path: str, out: str | os.PathLike[str] | None = None, *,
                    rev: str | None = None, force: bool = False) -> ImportResult:
    """Track `path` of the repository at `url` (at `rev`, default its HEAD) as `out` (default: the
    path's last component in the current directory; an `out` that is an existing directory, not
    itself tracked, gets it inside, under that name, as cp does)."""
    rel = repo_path(path)
    name = rel.rsplit("/", 1)[-1] or "."
    target = repo.resolve_user_path(out if out is not None else name)
    if out is not None and target.is_dir() and not pointers.pointer_path_for(target).exists():
        target = repo.resolve_user_path(target / name)
    pointer_path = pointers.pointer_path_for(target)
    if not force and (pointer_path.exists() or os.path.lexists(target)):
        what = pointer_path if pointer_path.exists() else target
        raise ConflictError(f"{repo.rel(what)}: already exists",
                            hint="choose another -o, or pass --force to replace it")
    src = open_source(url, rev, into=repo)
    try:
        with RevisionView(src) as view:
            ptr = _source_pointer(view, rel, target.name)
            ptr.source = PointerSource(recorded_url(url, repo.root), rel, src.pinned_rev, rev)
            _fetch_objects(view, ptr)
            stats = view.source.stats
    finally:
        src.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    _install(repo, pointer_path, ptr, force)
    return ImportResult(repo.rel(target), repo.rel(pointer_path), ptr.kind, ptr.oid, ptr.size, ptr.files,
                        ptr.source, fetched=stats)


def update(repo: Repo, paths: Sequence[PathArg] | None = None, *, rev: str | None = None,
           force: bool = False) -> list[ImportResult]:
    """Move imported artifacts (`paths`, default: every one) to their source's `rev` (default:
    the revision they were imported at, e.g. a branch, or the source's HEAD)."""
    tracked = [(t, t.ptr, t.ptr.source) for t in select(repo, paths) if t.ptr is not None and t.ptr.source is not None]
    if paths and not tracked:
        raise PathError(", ".join(map(str, paths)), "is not an imported artifact (no source in its pointer)",
                        hint="`mlvc import URL PATH` tracks another repository's artifact")
    results = []
    for t, old, old_source in tracked:
        want = rev if rev is not None else old_source.rev
        src = open_source(old_source.url, want, base=repo.root, into=repo)
        try:
            with RevisionView(src) as view:
                ptr = _source_pointer(view, old_source.path, old.path)
                ptr.source = new_source = PointerSource(old_source.url, old_source.path, src.pinned_rev, want)
                changed = ptr.oid != old.oid or ptr.kind != old.kind
                if changed:
                    _fetch_objects(view, ptr)
                stats = view.source.stats
        finally:
            src.close()
        if changed and not force:
            _refuse_unsaved(repo, t)
        if new_source != old_source or changed:
            if changed:
                _install(repo, t.pointer_path, ptr, force)
            else:
                pointers.write(t.pointer_path, ptr, fsync=repo.config.settings.fsync)
        results.append(ImportResult(t.display, t.rel_pointer, ptr.kind, ptr.oid, ptr.size, ptr.files, new_source,
                                    changed=changed, previous=old_source.commit, fetched=stats))
    return results


def _refuse_unsaved(repo: Repo, t: Tracked) -> None:
    """ConflictError, before anything is written, when the artifact's files differ from its pointer."""
    from .status import MISSING, UNCHANGED, status

    for st in status(repo, [t.pointer_path], check_cache=False):
        if st.state not in (UNCHANGED, MISSING):
            raise ConflictError(f"{t.display}: {st.state} in the workspace; update would overwrite it",
                                hint=f"save it with `mlvc add {t.display}` first, or pass --force")


@dataclass
class SourceMove:
    """An imported artifact whose source's revision now names another commit."""

    path: str
    rev: str | None  # the revision followed (None: the source's HEAD)
    commit: str  # what it names now
    artifact_changed: bool | None  # whether the artifact differs there (None: unreadable there)
    error: str | None = None  # the source could not be checked (unreachable ...)

    def as_dict(self) -> dict[str, object]:
        return {"rev": self.rev, "commit": self.commit, "artifact_changed": self.artifact_changed,
                "error": self.error}


def source_moves(repo: Repo, paths: Sequence[PathArg] | None = None) -> dict[str, SourceMove]:
    """For each imported artifact among `paths` (default: all), whether its source moved: its
    recorded revision fetched again (once per source and revision).  Nothing is written but the
    mirrors; an unreachable source is reported in `error`, not raised."""
    out: dict[str, SourceMove] = {}
    heads: dict[tuple[str, str | None], SourceRepo | MlvcError] = {}
    for t in select(repo, paths, within=True):
        if t.ptr is None or t.ptr.source is None or t.display in out:
            continue
        here = t.ptr
        src = t.ptr.source
        key = (src.url, src.rev)
        try:
            if key not in heads:
                heads[key] = open_source(src.url, src.rev, base=repo.root)
            opened = heads[key]
            if isinstance(opened, MlvcError):
                raise opened
        except MlvcError as exc:
            heads[key] = exc
            out[t.display] = SourceMove(t.display, src.rev, src.commit, None, str(exc))
            continue
        if opened.pinned_rev == src.commit:
            continue
        try:
            with RevisionView(opened) as view:
                now = _source_pointer(view, src.path, here.path)
            changed = now.oid != here.oid
        except MlvcError:
            changed = None
        out[t.display] = SourceMove(t.display, src.rev, opened.pinned_rev, changed)
    for opened in heads.values():
        if not isinstance(opened, MlvcError):
            opened.close()
    return out


def fetch_imported(repo: Repo, ptr: PointerFile) -> SourceStats:
    """Fetch every object of the imported artifact `ptr` from its source's remote (as the source
    committed it at the recorded commit) into this project's cache."""
    if ptr.source is None:
        raise MlvcError(f"{ptr.path} is not an imported artifact (no source in its pointer)")
    src = open_source(ptr.source.url, ptr.source.commit, base=repo.root, into=repo)
    try:
        with RevisionView(src) as view:
            _fetch_objects(view, ptr)
            return view.source.stats
    finally:
        src.close()


__all__ = ["import_artifact", "update", "fetch_imported", "source_moves", "ImportResult", "SourceMove"]
