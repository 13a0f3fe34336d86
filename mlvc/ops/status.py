"""`mlvc status`: how the workspace and the cache compare with the pointers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import MlvcError, ObjectNotFoundError, PathError
from ..hashing import from_oid, to_oid
from ..objects import TreeEntry, TreeManifest
from ..progress import NULL, Progress
from ..safepath import refuse_links_above
from ..workspace import IdLookup, scan, stat_signature
from .common import Tracked, load_entries, missing_objects, overlapping, select

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
        files = scan(t.target, t.display)
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
        return ArtifactStatus(t.display, t.rel_pointer, INVALID, error=str(t.error), hint=t.error.hint)
    st = ArtifactStatus(t.display, t.rel_pointer, UNCHANGED)
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
        files = scan(t.target, t.display)
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


def status(repo, paths=None, *, check_cache: bool = True, progress: Progress = NULL) -> list[ArtifactStatus]:
    selected = select(repo, paths)
    clashes = overlapping(select(repo) if paths else selected)
    return [status_one(repo, Tracked(t.pointer_path, t.rel_pointer, None, clashes[t.rel_pointer])
                       if t.rel_pointer in clashes else t, check_cache, progress) for t in selected]


__all__ = ["status", "ArtifactStatus", "workspace_ids", "from_oid"]
