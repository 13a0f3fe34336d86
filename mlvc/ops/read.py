"""Read any file of any revision without checking it out: `mlvc.open`, `mlvc.read`, the fsspec filesystem.

A revision's files are the union of git's tree at that commit and the contents
of the artifacts its pointers name.  A path inside an artifact is read from the
cache (missing objects are fetched from the remote, see `ObjectSource`); any
other path is read from git's object database.  With `rev=None` the
workspace's pointers and files are used.  The workspace is never written.

Listing an artifact reads its pointer and (for a directory) its tree manifest
only: tree entries carry sizes, so a 100,000-file dataset lists from one object.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import pointer as pointers
from ..errors import MlvcError, PathError
from ..hashing import from_oid, to_oid
from ..objects import TreeEntries
from .object_source import ObjectSource

if TYPE_CHECKING:
    from ..repo import Repo
    from ..git import GitRepo

GIT, ARTIFACT, WORKSPACE = "git", "artifact", "workspace"


@dataclass(frozen=True)
class FileEntry:
    """One file of a revision and where its bytes are."""

    path: str  # repo-relative POSIX path
    size: int | None  # None: a git blob whose size is not known without reading it
    source: str  # GIT, ARTIFACT or WORKSPACE
    ref: str  # git blob sha, "xxh128:<file id>", or the workspace path
    artifact: str | None = None  # the artifact's path, for files inside one
    executable: bool = False


def _norm(path: str | os.PathLike[str]) -> str:
    """A repo-relative POSIX path ('' for the root); PathError for one that leaves the repository."""
    text = os.fspath(path).replace("\\", "/").strip("/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathError(path, "must not contain '..'")
    return "/".join(parts)


repo_path = _norm  # the public name, for the operations that select paths of a revision (get, ls)


class RevisionView:
    """The files of one revision of a repository (None: the workspace).

    `remote`: where missing objects come from (None: the default remote).  `cache=False`:
    fetched objects are held in memory, not kept in the cache (`ObjectSource.release` frees them).
    """

    def __init__(self, repo: Repo, rev: str | None = None, remote: str | None = None, *, cache: bool = True):
        if repo.pinned_rev is not None:
            rev = repo.pinned_rev  # another repository, opened at the commit `rev` named there
        self.repo = repo
        self.rev = rev
        self.source = ObjectSource(repo, remote, cache=cache)
        self._git: GitRepo | None = None
        self.sha: str | None = None
        if rev is not None:
            if not repo.has_git:
                raise MlvcError(f"cannot read revision {rev!r}: {repo.root} is not a git repository")
            from ..git import GitRepo

            self._git = GitRepo(repo.root)
            try:
                self.sha = self._git.resolve(rev)
            except BaseException:
                self._git.close()
                raise
        self._pointers: dict[str, pointers.PointerFile | None] = {}
        self._trees: dict[str, TreeEntries] = {}
        self._listing: dict[str, FileEntry] | None = None
        self._dirs: set[str] | None = None

    @property
    def where(self) -> str:
        if self.repo.origin is not None:
            return f"in {self.repo.origin} at {(self.sha or self.rev or '')[:12]}"
        return f"at {self.rev}" if self.rev is not None else "in the workspace"

    # ------------------------------------------------------------------ pointers
    def _read_text(self, rel: str) -> bytes | None:
        """A non-artifact file's bytes at the revision (None: absent)."""
        if self._git is not None:
            return self._git.read_blob(self._rev_sha(), rel)
        p = self.repo.root / rel
        return p.read_bytes() if p.is_file() and not _internal(rel) else None

    def pointer(self, artifact: str) -> pointers.PointerFile | None:
        """The pointer of the artifact at `artifact` (repo-relative), or None."""
        if artifact not in self._pointers:
            rel_ptr = artifact + pointers.SUFFIX
            blob = self._read_text(rel_ptr) if artifact else None
            where = f"{rel_ptr} {self.where}"
            ptr = pointers.PointerFile.parse(blob, where) if blob is not None else None
            if ptr is not None and Path(ptr.path).name != Path(artifact).name:
                ptr = None  # a pointer naming another path: not this artifact's
            self._pointers[artifact] = ptr
        return self._pointers[artifact]

    def _tree(self, artifact: str, ptr: pointers.PointerFile) -> TreeEntries:
        """The artifact's entries, packed and in path order (a million-file tree: tens of MB)."""
        if artifact not in self._trees:
            self._trees[artifact] = self.source.tree(from_oid(ptr.oid)).entries
        return self._trees[artifact]

    def containing_artifact(self, rel: str) -> tuple[str, pointers.PointerFile, str] | None:
        """(artifact path, pointer, path inside it) of the artifact that is or holds `rel`."""
        parts = rel.split("/") if rel else []
        for i in range(len(parts), 0, -1):
            artifact = "/".join(parts[:i])
            ptr = self.pointer(artifact)
            if ptr is not None:
                return artifact, ptr, "/".join(parts[i:])
        return None

    # ------------------------------------------------------------------ lookup
    def entry(self, path: str | os.PathLike[str]) -> FileEntry:
        """The file at `path`; PathError when there is none (or it is a directory)."""
        rel = _norm(path)
        found = self.containing_artifact(rel)
        if found is not None:
            artifact, ptr, inner = found
            if ptr.kind == "file":
                if inner:
                    raise PathError(rel, f"does not exist {self.where} ({artifact} is a file)")
                return FileEntry(rel, ptr.size, ARTIFACT, ptr.oid, artifact)
            e = self._tree(artifact, ptr).find(inner)
            if e is None:
                what = "is a directory" if self.is_dir(rel) else "does not exist"
                raise PathError(rel, f"{what} {self.where} (in the tracked artifact {artifact})")
            return FileEntry(rel, e.size, ARTIFACT, to_oid(e.file_id), artifact, e.executable)
        if self._git is not None:
            found_blob = self._git_entry(rel)
            if found_blob is not None:
                return found_blob
        elif rel and not _internal(rel) and (self.repo.root / rel).is_file():
            p = self.repo.root / rel
            return FileEntry(rel, p.stat().st_size, WORKSPACE, str(p))
        what = "is a directory" if rel == "" or self.is_dir(rel) else "does not exist"
        raise PathError(rel or ".", f"{what} {self.where}")

    def _git_entry(self, rel: str) -> FileEntry | None:
        listing = self._listing
        if listing is not None:
            e = listing.get(rel)
            return e if e is not None and e.source == GIT else None
        data = self._read_text(rel) if rel else None
        if data is None:
            return None
        return FileEntry(rel, len(data), GIT, "", None)

    def is_dir(self, path: str | os.PathLike[str]) -> bool:
        rel = _norm(path)
        if rel == "":
            return True
        found = self.containing_artifact(rel)
        if found is not None:
            artifact, ptr, inner = found
            if ptr.kind == "file":
                return False
            if not inner:
                return True
            return self._tree(artifact, ptr).has_below(inner)
        return rel in self._directories()

    # ------------------------------------------------------------------ listing
    def listing(self) -> dict[str, FileEntry]:
        """Every file of the revision: git's (or the workspace's non-ignored) files plus artifact contents."""
        if self._listing is None:
            files = self.plain_files()
            for rel_ptr in [p for p in files if p.endswith(pointers.SUFFIX)]:
                artifact = rel_ptr[: -len(pointers.SUFFIX)]
                if _internal(artifact):
                    continue
                try:
                    ptr = self.pointer(artifact)
                except MlvcError:
                    continue  # an unreadable pointer lists as the file it is
                if ptr is None:
                    continue
                for stale in [p for p in files if p == artifact or p.startswith(artifact + "/")]:
                    del files[stale]  # workspace copies of artifact files: the pointer decides
                if ptr.kind == "file":
                    files[artifact] = FileEntry(artifact, ptr.size, ARTIFACT, ptr.oid, artifact)
                    continue
                for e in self._tree(artifact, ptr):
                    path = f"{artifact}/{e.path}"
                    files[path] = FileEntry(path, e.size, ARTIFACT, to_oid(e.file_id), artifact, e.executable)
            dirs = {""}
            for path in files:
                d = path
                while "/" in d:
                    d = d.rsplit("/", 1)[0]
                    if d in dirs:
                        break
                    dirs.add(d)
            self._listing = dict(sorted(files.items()))
            self._dirs = dirs
        return self._listing

    def plain_files(self) -> dict[str, FileEntry]:
        """git's files at the revision (the workspace's non-ignored files), pointers included and
        artifacts not expanded: what `listing` starts from, without reading any tree manifest."""
        files: dict[str, FileEntry] = {}
        if self._git is not None:
            for path, mode, sha in self._git.tree_files(self._rev_sha()):
                files[path] = FileEntry(path, None, GIT, sha, None, bool(mode & 0o111))
        else:
            for path in _workspace_files(self.repo):
                p = self.repo.root / path
                files[path] = FileEntry(path, p.stat().st_size, WORKSPACE, str(p))
        return files

    def directories(self) -> set[str]:
        return set(self._directories())

    def _directories(self) -> set[str]:
        self.listing()
        assert self._dirs is not None  # set with the listing
        return self._dirs

    def _rev_sha(self) -> str:
        """The commit of this view (only asked where it reads a revision)."""
        assert self.sha is not None, "a git read in the workspace view"
        return self.sha

    def _git_blob(self, entry: FileEntry) -> bytes:
        """The bytes of an entry read from git (only a view of a revision has those)."""
        assert self._git is not None, "a git entry in the workspace view"
        if entry.ref:
            return self._git.blob(entry.ref)
        return self._git.read_blob(self._rev_sha(), entry.path) or b""

    def size(self, entry: FileEntry) -> int:
        if entry.size is not None:
            return entry.size
        return len(self._git_blob(entry))

    # ------------------------------------------------------------------ reading
    def open_raw(self, entry: FileEntry) -> io.RawIOBase | io.BytesIO:
        """A seekable binary file over `entry`'s bytes."""
        if entry.source == ARTIFACT:
            return self.source.open_file(from_oid(entry.ref), name=entry.path.rsplit("/", 1)[-1])
        if entry.source == WORKSPACE:
            return open(entry.ref, "rb", buffering=0)
        return io.BytesIO(self._git_blob(entry))

    def close(self) -> None:
        self.source.close()
        if self._git is not None:
            self._git.close()
            self._git = None

    def __enter__(self) -> "RevisionView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _internal(rel: str) -> bool:
    first = rel.split("/", 1)[0]
    return first in (".git", ".mlvc")


def _workspace_files(repo: Repo) -> list[str]:
    """The workspace's files git would see (tracked and untracked, not ignored); all files without git."""
    if repo.has_git:
        from .. import gitcli as git

        names = git.ls_files(repo.root, "--cached", "--others", "--exclude-standard")
        if names is not None:
            return sorted(n for n in names if not _internal(n) and (repo.root / n).is_file())
    out: list[str] = []
    for d, dirs, names in os.walk(repo.root):
        dirs[:] = [x for x in dirs if x not in (".git", ".mlvc")]
        out.extend(Path(d, n).relative_to(repo.root).as_posix() for n in names)
    return sorted(out)


# ---------------------------------------------------------------------- open / read
class _Closing(io.BufferedReader):
    """A buffered reader that also closes the revision view (and publishes fetched objects)."""

    def __init__(self, raw: io.RawIOBase | io.BytesIO, view: RevisionView, entry: FileEntry,
                 close_repo: bool) -> None:
        super().__init__(raw, buffer_size=1 << 20)
        self._view = view
        self._entry = entry
        self._close_repo = close_repo
        self.size = view.size(entry)

    def prefetch_all(self) -> None:
        """Fetch every missing object of the file now, in one batch (before a whole-file read)."""
        entry = self._entry
        if entry.source == ARTIFACT:
            self._view.source.prefetch(from_oid(entry.ref), [(0, self.size)])

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            try:
                self._view.close()
            finally:
                if self._close_repo:
                    self._view.repo.close()


def repo_relative(repo: Repo, path: str | os.PathLike[str], relative_to_cwd: bool) -> str:
    """The repo-relative path of a user path: relative to the cwd (inside the repo) or the root."""
    p = Path(path)
    if p.is_absolute() or relative_to_cwd:
        ab = Path(os.path.abspath(p if p.is_absolute() else Path.cwd() / p))
        try:
            return ab.relative_to(Path(os.path.abspath(repo.root))).as_posix()
        except ValueError:
            try:
                return Path(os.path.realpath(ab)).relative_to(Path(os.path.realpath(repo.root))).as_posix()
            except ValueError:
                raise PathError(path, f"is outside the repository {repo.root}") from None
    return _norm(p)


def open_file(repo: Repo, path: str | os.PathLike[str], rev: str | None = None, mode: str = "rb", *,
              remote: str | None = None, encoding: str | None = None, errors: str | None = None,
              relative_to_cwd: bool = False, close_repo: bool = False) -> io.BufferedReader | io.TextIOWrapper:
    """A read-only, seekable file object over `path` at `rev` (closing it publishes fetched objects;
    with `close_repo`, closing it also closes `repo`)."""
    if mode not in ("r", "rb", "rt"):
        raise MlvcError(f"mode must be 'r', 'rt' or 'rb', not {mode!r} (versions are read-only)")
    if "b" in mode and (encoding is not None or errors is not None):
        raise MlvcError("encoding and errors are for text mode ('r'), not 'rb'")
    rel = repo_relative(repo, path, relative_to_cwd)
    view = RevisionView(repo, rev, remote)
    try:
        entry = view.entry(rel)
        raw = view.open_raw(entry)
        f = _Closing(raw, view, entry, close_repo)
    except BaseException:
        view.close()
        raise
    if "b" in mode:
        return f
    return io.TextIOWrapper(f, encoding=encoding or "utf-8", errors=errors)


def read(repo: Repo, path: str | os.PathLike[str], rev: str | None = None, mode: str = "rb", *,
         remote: str | None = None, encoding: str | None = None, errors: str | None = None,
         relative_to_cwd: bool = False) -> bytes | str:
    """The whole file; what the cache lacks is fetched first in one batch of parallel ranged reads."""
    with open_file(repo, path, rev, mode, remote=remote, encoding=encoding, errors=errors,
                   relative_to_cwd=relative_to_cwd) as f:
        binary = f.buffer if isinstance(f, io.TextIOWrapper) else f
        if isinstance(binary, _Closing):
            binary.prefetch_all()
        return f.read()


__all__ = ["RevisionView", "FileEntry", "open_file", "read", "repo_relative", "GIT", "ARTIFACT", "WORKSPACE"]
