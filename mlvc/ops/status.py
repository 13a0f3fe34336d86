"""`mlvc status`: how the workspace and the cache compare with the pointers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..errors import MlvcError, ObjectNotFoundError, PathError
from ..hashing import from_oid, to_oid
from ..objects import TreeManifest
from ..progress import NULL, Progress
from ..safepath import refuse_links_above
from ..workspace import IdLookup, ScannedFiles, scan, scan_within, stat_signature
from .data_meta import config_drift
from .common import (Tracked, file_manifest, links_root, load_entries, missing_objects, overlapping, paired,
                     select)

if TYPE_CHECKING:
    from ..repo import Repo

UNCHANGED = "unchanged"
MODIFIED = "modified"
MISSING = "missing"  # not in the workspace
INVALID = "invalid"  # pointer unreadable


@dataclass
class ArtifactStatus:
    path: str
    pointer: str
    state: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    cache_complete: bool | None = None  # None: not checked
    error: str | None = None
    hint: str | None = None  # the next command to run about `error`, when there is one
    config_changed: str | None = None  # the recorded config file changed since the data was added
    # the exit code of the error that kept this artifact from being compared (a symlink on the
    # way, a corrupt manifest); None when the comparison ran
    failed_code: int | None = None

    def as_dict(self) -> dict[str, object]:
        doc = asdict(self)
        del doc["failed_code"]
        return doc


def workspace_ids(repo: Repo, t: Tracked, files: ScannedFiles, progress: Progress = NULL) -> bytes:
    """The file ids of `files` (a scan of the artifact), 16 bytes each in their order."""
    lookup = IdLookup(repo.hash_cache, t.display)
    ids = bytearray()
    for fs in files:
        ids += lookup.id_of(fs, f"{t.display}/{fs.rel}".rstrip("/"), progress)
    lookup.flush()
    return bytes(ids)


def _is_file(files: ScannedFiles) -> bool:
    return len(files) == 1 and files[0].rel == ""


def current_oid(ptr_kind: str, files: ScannedFiles, ids: bytes) -> bytes | None:
    if _is_file(files):  # a file now; the artifact may have been a directory
        return ids if ptr_kind == "file" else None
    if ptr_kind == "file":
        return None
    paths, ends, sizes, executable = files.columns()
    return TreeManifest.from_columns(paths, ends, sizes, ids, executable).oid()


def _explain_incomplete(repo: Repo, t: Tracked, st: ArtifactStatus) -> None:
    """Objects the cache lacks that the last fetch found missing on the remote too: say so, and
    what can help (a pull cannot)."""
    from . import remote_gaps
    from .fetch import push_hint

    remote = remote_gaps.lookup(repo).get(t.pointer.oid)
    if remote is not None and st.error is None:
        st.error = f"its objects are missing from the cache, and remote {remote!r} lacked them at the last fetch"
        st.hint = push_hint(remote)


def status_one(repo: Repo, t: Tracked, check_cache: bool = True, progress: Progress = NULL) -> ArtifactStatus:
    if t.ptr is None:
        return ArtifactStatus(t.shown, t.rel_pointer, INVALID, error=str(t.error), hint=t.parse_error.hint)
    if t.inner:
        return _status_within(repo, t, check_cache, progress)
    st = ArtifactStatus(t.display, t.rel_pointer, UNCHANGED, config_changed=config_drift(repo, t.ptr.meta, t.display))
    if check_cache:
        if t.ptr.oid in repo.store.complete:
            st.cache_complete = True
        else:
            try:
                st.cache_complete = not missing_objects(repo.store, t.ptr)
            except MlvcError as exc:
                st.cache_complete, st.error, st.failed_code = False, str(exc), exc.exit_code
            if st.cache_complete:
                repo.store.complete.add([t.ptr.oid])
            else:
                _explain_incomplete(repo, t, st)
    try:
        # A symlinked directory on the way would make status hash files outside the repository.
        refuse_links_above(repo.root, t.target, t.display)
    except PathError as exc:
        st.state, st.error, st.failed_code = MODIFIED, str(exc), exc.exit_code
        return st
    if not t.target.exists() and not t.target.is_symlink():
        st.state = MISSING
        return st
    try:
        files = scan(t.target, t.display, follow_within=links_root(repo, t.ptr.meta))
        sig = stat_signature(files) if files and files[0].rel else None
        if sig is not None and repo.state.tree_for_signature(t.display, sig) == t.ptr.oid:
            return st
        ids = workspace_ids(repo, t, files, progress)
    except PathError as exc:
        st.state, st.error, st.failed_code = MODIFIED, str(exc), exc.exit_code
        return st
    now = current_oid(t.ptr.kind, files, ids)
    if now is not None and sig is not None:
        repo.state.remember_signature(t.display, sig, to_oid(now))
    if now is not None and to_oid(now) == t.ptr.oid:
        return st
    st.state = MODIFIED
    if t.ptr.kind == "file" or _is_file(files):
        st.modified = [t.display]
        return st
    try:
        entries = load_entries(repo.store, t.ptr)
    except ObjectNotFoundError:
        st.error = "the pointer's manifest is not in the cache; file-level changes unknown"
        return st
    for e, _j, fs, i in paired(entries, files):
        if fs is None:
            assert e is not None  # paired() never yields two Nones
            st.removed.append(e.path)
        elif e is None:
            st.added.append(fs.rel)
        elif ids[16 * i:16 * i + 16] != e.file_id:
            st.modified.append(fs.rel)
    return st


def _status_within(repo: Repo, t: Tracked, check_cache: bool, progress: Progress) -> ArtifactStatus:
    """Status of one file (or subdirectory) inside a directory artifact: its files only."""
    st = ArtifactStatus(t.shown, t.rel_pointer, UNCHANGED)
    try:
        expected = t.within(load_entries(repo.store, t.pointer))
    except ObjectNotFoundError:
        st.cache_complete = False
        if not os.path.lexists(t.target / t.inner):
            st.state = MISSING
        else:
            st.state = MODIFIED
            st.error = "the artifact's manifest is not in the cache; whether it changed is unknown"
        return st
    try:
        path = t.target / t.inner
        refuse_links_above(repo.root, path, t.shown)
        files = scan_within(t.target, t.display, t.inner, follow_within=links_root(repo, t.pointer.meta))
        ids = workspace_ids(repo, t, files, progress)
    except PathError as exc:
        st.state, st.error, st.failed_code = MODIFIED, str(exc), exc.exit_code
        return st
    if not expected and not files:
        raise PathError(t.shown, f"is not a file of the tracked artifact {t.display}",
                        hint=f"`mlvc show {t.display}` lists its files")
    if check_cache:
        from ..store.packs import CHUNK, FILE_MANIFEST

        st.cache_complete = all(
            repo.store.has_any(FILE_MANIFEST, e.file_id)
            and all(repo.store.has(CHUNK, cid) for cid, _ in file_manifest(repo.store, e.file_id).chunks)
            for e in expected)
    if not files:
        st.state = MISSING
        return st
    below = len(t.inner) + 1  # lists name paths relative to the selection, as for an artifact

    def shown(rel: str) -> str:
        return rel[below:] if len(rel) > len(t.inner) else rel.rsplit("/", 1)[-1]

    for e, _j, fs, i in paired(expected, files):
        if fs is None:
            assert e is not None  # paired() never yields two Nones
            st.removed.append(shown(e.path))
        elif e is None:
            st.added.append(shown(fs.rel))
        elif ids[16 * i:16 * i + 16] != e.file_id or fs.executable != e.executable:
            st.modified.append(shown(fs.rel))
    if st.added or st.removed or st.modified:
        st.state = MODIFIED
    return st


def status(repo: Repo, paths: Sequence[str | os.PathLike[str]] | None = None, *,
            check_cache: bool = True, progress: Progress = NULL) -> list[ArtifactStatus]:
    selected = select(repo, paths, within=True)
    clashes = overlapping(select(repo) if paths else selected)
    return [status_one(repo, Tracked(t.pointer_path, t.rel_pointer, None, clashes[t.rel_pointer], t.inner)
                       if t.rel_pointer in clashes else t, check_cache, progress) for t in selected]


__all__ = ["status", "ArtifactStatus", "workspace_ids", "from_oid"]
