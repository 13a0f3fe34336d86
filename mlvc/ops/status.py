"""`mlvc status`: how the workspace and the cache compare with the pointers."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from ..errors import MlvcError, ObjectNotFoundError, PathError
from ..hashing import from_oid, to_oid
from ..objects import TreeEntry, TreeManifest
from ..progress import NULL, Progress
from ..safepath import refuse_links_above
from ..workspace import IdLookup, scan, scan_within, stat_signature
from .data_meta import config_drift
from .common import Tracked, file_manifest, links_root, load_entries, missing_objects, overlapping, select

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

    def as_dict(self) -> dict:
        doc = asdict(self)
        del doc["failed_code"]
        return doc


def workspace_ids(repo, t: Tracked, files=None, progress: Progress = NULL) -> dict[str, tuple]:
    """{relative path: (file id, FileStat)} of the artifact's files (scanned now unless given)."""
    if files is None:
        files = scan(t.target, t.display, follow_within=links_root(repo, t.ptr.meta))
    lookup = IdLookup(repo.hash_cache, t.display)
    out = {}
    for fs in files:
        out[fs.rel] = (lookup.id_of(fs, f"{t.display}/{fs.rel}".rstrip("/"), progress), fs)
    lookup.flush()
    return out


def current_oid(ptr_kind: str, ids: dict[str, tuple]) -> bytes | None:
    if ptr_kind == "file":
        return ids[""][0] if "" in ids else None
    if "" in ids:  # the artifact became a file
        return None
    tree = TreeManifest.build(TreeEntry(rel, fs.size, fid, fs.executable) for rel, (fid, fs) in ids.items())
    return tree.oid()


def status_one(repo, t: Tracked, check_cache: bool = True, progress: Progress = NULL) -> ArtifactStatus:
    if t.ptr is None:
        return ArtifactStatus(t.shown, t.rel_pointer, INVALID, error=str(t.error), hint=t.error.hint)
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
    now = current_oid(t.ptr.kind, ids)
    if now is not None and sig is not None:
        repo.state.remember_signature(t.display, sig, to_oid(now))
    if now is not None and to_oid(now) == t.ptr.oid:
        return st
    st.state = MODIFIED
    if t.ptr.kind == "file" or "" in ids:
        st.modified = [t.display]
        return st
    try:
        expected = {e.path: e.file_id for e in load_entries(repo.store, t.ptr)}
    except ObjectNotFoundError:
        st.error = "the pointer's manifest is not in the cache; file-level changes unknown"
        return st
    st.added = sorted(set(ids) - set(expected))
    st.removed = sorted(set(expected) - set(ids))
    st.modified = sorted(p for p in set(ids) & set(expected) if ids[p][0] != expected[p])
    return st


def _status_within(repo, t: Tracked, check_cache: bool, progress: Progress) -> ArtifactStatus:
    """Status of one file (or subdirectory) inside a directory artifact: its files only."""
    st = ArtifactStatus(t.shown, t.rel_pointer, UNCHANGED)
    try:
        expected = {e.path: e for e in t.within(load_entries(repo.store, t.ptr))}
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
        files = scan_within(t.target, t.display, t.inner, follow_within=links_root(repo, t.ptr.meta))
        ids = workspace_ids(repo, t, files, progress)
    except PathError as exc:
        st.state, st.error, st.failed_code = MODIFIED, str(exc), exc.exit_code
        return st
    if not expected and not ids:
        raise PathError(t.shown, f"is not a file of the tracked artifact {t.display}",
                        hint=f"`mlvc show {t.display}` lists its files")
    if check_cache:
        from ..store.packs import CHUNK, FILE_MANIFEST

        st.cache_complete = all(
            repo.store.has_any(FILE_MANIFEST, e.file_id)
            and all(repo.store.has(CHUNK, cid) for cid, _ in file_manifest(repo.store, e.file_id).chunks)
            for e in expected.values())
    if not ids:
        st.state = MISSING
        return st
    below = len(t.inner) + 1  # lists name paths relative to the selection, as for an artifact

    def shown(rel: str) -> str:
        return rel[below:] if len(rel) > len(t.inner) else rel.rsplit("/", 1)[-1]

    st.added = sorted(shown(p) for p in set(ids) - set(expected))
    st.removed = sorted(shown(p) for p in set(expected) - set(ids))
    st.modified = sorted(shown(p) for p in set(ids) & set(expected)
                         if ids[p][0] != expected[p].file_id or ids[p][1].executable != expected[p].executable)
    if st.added or st.removed or st.modified:
        st.state = MODIFIED
    return st


def status(repo, paths=None, *, check_cache: bool = True, progress: Progress = NULL) -> list[ArtifactStatus]:
    selected = select(repo, paths, within=True)
    clashes = overlapping(select(repo) if paths else selected)
    return [status_one(repo, Tracked(t.pointer_path, t.rel_pointer, None, clashes[t.rel_pointer], t.inner)
                       if t.rel_pointer in clashes else t, check_cache, progress) for t in selected]


__all__ = ["status", "ArtifactStatus", "workspace_ids", "from_oid"]
