"""The Python API beneath the CLI: `import mlvc; mlvc.add(...)`.

Each function finds the repository from `repo` (default: the one holding the current
directory; a path names exactly the repository whose top directory it is, never one found
above it), runs one operation and returns its result object.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .progress import NULL, Progress
from .repo import Repo, RepoArg

if TYPE_CHECKING:
    from .ops.add import AddResult
    from .ops.checkout import CheckoutResult
    from .ops.diff import DiffResult
    from .ops.fetch import PullResult
    from .ops.gc import GcResult
    from .ops.log import LogEntry
    from .ops.status import ArtifactStatus
    from .ops.verify import VerifyResult
    from .store.transfer import TransferResult

# What the path arguments accept: a path as text or a path object (`repo=` takes a `mlvc.repo.RepoArg`:
# such a path, or a Repo).
PathArg = str | os.PathLike[str]
Paths = PathArg | Iterable[PathArg] | None


def _repo(repo: RepoArg) -> Repo:
    """The `Repo` for a `repo=` argument: a Repo as is, None: the one holding the cwd, a path:
    exactly the repository whose top it is (never one found above it)."""
    if isinstance(repo, Repo):
        return repo
    return Repo.find() if repo is None else Repo.at(repo)


def init(path: str | Path | None = None, *, no_scm: bool = False) -> Repo:
    """Set up mlvc at the top of the git work tree holding `path` (default: the current directory).

    Creates `.mlvc/` with its config and a git-ignored cache; running it again is harmless.
    `no_scm=True` uses `path` itself without git (history commands then need none).
    Returns the `Repo`.
    """
    return Repo.init(path, no_scm=no_scm)


def add(paths: PathArg | Iterable[PathArg], *, role: str | None = None, meta: dict[str, Any] | None = None,
        config: PathArg | dict[str, Any] | None = None, seed: int | str | None = None,
        follow_links: bool | None = None, repo: RepoArg = None,
        progress: Progress = NULL) -> AddResult | list[AddResult]:
    """Add one path (returns its AddResult) or a list of paths (returns a list).

    `config` (a file path or a dict) and `seed` are recorded in the pointer's
    meta beside the content id, so a data version says what produced it.
    `follow_links=True` stores what symlinks inside the repository point to (remembered in the
    pointer); links pointing outside it are refused either way.
    """
    from .ops.add import add as _add
    from .ops.data_meta import config_meta
    from .pointer import FOLLOW_LINKS

    r = _repo(repo)
    try:
        full_meta = {**config_meta(r, config, seed), **(meta or {})}
        if follow_links is not None:
            full_meta[FOLLOW_LINKS] = follow_links
        if isinstance(paths, (str, os.PathLike)):
            return _add(r, [paths], role=role, meta=full_meta, progress=progress)[0]
        return _add(r, list(paths), role=role, meta=full_meta, progress=progress)
    finally:
        r.close()


def status(paths: Paths = None, *, repo: RepoArg = None, check_cache: bool = True,
           progress: Progress = NULL) -> list[ArtifactStatus]:
    """How each tracked artifact's workspace files compare with its pointer.

    Returns a list of `ArtifactStatus` (path, state such as "unchanged", "modified",
    "missing", "not in cache", and the files that differ) for `paths`, or every
    pointer of the workspace.  `check_cache=False` skips checking that the cache
    holds every object.
    """
    from .ops.status import status as _status

    r = _repo(repo)
    try:
        return _status(r, _paths(paths), check_cache=check_cache, progress=progress)
    finally:
        r.close()


def checkout(paths: Paths = None, *, force: bool = False, repo: RepoArg = None,
             progress: Progress = NULL) -> CheckoutResult:
    """Make the workspace files of `paths` (default: every artifact) match their pointers, from the cache.

    Files with unsaved changes are left alone unless `force`.  Returns a
    `CheckoutResult` (restored, unchanged, failed with reasons, files and bytes written).
    """
    from .ops.checkout import checkout as _checkout

    r = _repo(repo)
    try:
        return _checkout(r, _paths(paths), force=force, progress=progress)
    finally:
        r.close()


def verify(*, repo: RepoArg = None, remote: str | None = None, read_data: bool | None = None,
           progress: Progress = NULL) -> VerifyResult:
    """Check the objects of the local cache (or, with `remote`, of a remote) against their ids.

    `read_data` reads every object's bytes (the default for the cache); without it a remote
    check compares indexes and pack sizes.  Returns the verify report `mlvc verify` prints.
    """
    from .ops.verify import verify_store

    r = _repo(repo)
    try:
        return verify_store(r, remote=remote, read_data=read_data, progress=progress)
    finally:
        r.close()


# ---------------------------------------------------------------------- reading versions


def open(path: PathArg, rev: str | None = None, mode: str = "rb", *, remote: str | None = None,
         repo: RepoArg = None, encoding: str | None = None,
         errors: str | None = None) -> io.BufferedReader | io.TextIOWrapper:
    """Open one file of the repository as it was at revision `rev`, without checking anything out.

    `path` is a file of a tracked artifact (a single-file artifact, or a file inside a
    tracked directory) or any file git tracks (read from git's object database).
    `rev` is a git revision (`"v1"`, `"HEAD~2"`, a sha); None reads the workspace's
    pointers (and, for files outside artifacts, the workspace file).  Objects the
    local cache lacks are fetched from `remote` (default: the default remote), only
    those the reads touch, and kept in the cache; a fresh clone with nothing pulled
    works.  The workspace is never written.

    `repo`: None (the repository holding the current directory), a local repository's top
    directory, or another repository's git URL (`https://`, `ssh://`, `git://`, `file://`,
    `user@host:path`, a bare repository's path): that repository at `rev` (default: its
    HEAD), mirrored in the user's cache, its objects read from its own remote.  A `repo`
    that is none of these raises NotARepoError, never falls back to the current project.

    Returns a read-only, seekable binary file (`mode="rb"`) or a text file (`mode="r"`,
    with `encoding`, default UTF-8); use it as a context manager.  A relative `path`
    is relative to the current directory, or to the repository root when `repo` is given.

        with mlvc.open("data/table.csv", rev="v1", mode="r") as f:
            header = f.readline()
    """
    from .ops.read import open_file
    from .sources import open_repo

    owned = not isinstance(repo, Repo)
    r = open_repo(repo, rev)
    try:
        return open_file(r, path, rev, mode, remote=remote, encoding=encoding, errors=errors,
                         relative_to_cwd=repo is None, close_repo=owned)
    except BaseException:
        if owned:
            r.close()
        raise


def read(path: PathArg, rev: str | None = None, mode: str = "rb", *, remote: str | None = None,
         repo: RepoArg = None, encoding: str | None = None, errors: str | None = None) -> bytes | str:
    """The whole contents of `path` at `rev`: bytes (`mode="rb"`) or text (`mode="r"`).

    Same arguments and sources as `mlvc.open`.
    """
    with open(path, rev, mode, remote=remote, repo=repo, encoding=encoding, errors=errors) as f:
        raw = f.buffer if isinstance(f, io.TextIOWrapper) else f
        prefetch_all = getattr(raw, "prefetch_all", None)  # mlvc's reader: what the cache lacks in one batch
        if prefetch_all is not None:
            prefetch_all()
        return f.read()


# ---------------------------------------------------------------------- remotes


def push(paths: Paths = None, *, remote: str | None = None, revs: Iterable[str] = (), all_commits: bool = False,
         all_branches: bool = False, jobs: int | None = None, repo: RepoArg = None,
         progress: Progress = NULL) -> TransferResult:
    """Upload to `remote` (default: the default remote) every object of the selected artifacts it lacks.

    Selects the workspace's artifacts (narrowed by `paths`), or those of the commits
    named by `revs` / `all_commits` / `all_branches`.  Returns the `TransferResult`
    `mlvc push` prints: `done`, `up_to_date`, `failed` (artifact -> the `MlvcError` that stopped it), objects,
    bytes, packs and requests moved.  Per-artifact failures are in the result;
    remote-wide failures (unreachable, credentials) raise.
    """
    from .ops.push import push as _push
    from .ops.selection import Selection

    r = _repo(repo)
    try:
        return _push(r, Selection.of(paths, revs=revs, all_commits=all_commits, all_branches=all_branches),
                     remote=remote, jobs=jobs, progress=progress)
    finally:
        r.close()


def fetch(paths: Paths = None, *, remote: str | None = None, revs: Iterable[str] = (), all_commits: bool = False,
          all_branches: bool = False, jobs: int | None = None, repo: RepoArg = None,
          progress: Progress = NULL) -> TransferResult:
    """Download the objects of the selected artifacts into the cache (verified); the workspace is untouched.

    Selection as in `push`.  Returns the `TransferResult` `mlvc fetch` prints.
    """
    from .ops.fetch import fetch as _fetch
    from .ops.selection import Selection

    r = _repo(repo)
    try:
        return _fetch(r, Selection.of(paths, revs=revs, all_commits=all_commits, all_branches=all_branches),
                      remote=remote, jobs=jobs, progress=progress)
    finally:
        r.close()


def pull(paths: Paths = None, *, remote: str | None = None, revs: Iterable[str] = (), all_commits: bool = False,
         all_branches: bool = False, jobs: int | None = None, force: bool = False, repo: RepoArg = None,
         progress: Progress = NULL) -> PullResult:
    """`fetch`, then `checkout` of the workspace's artifacts whose objects all arrived.

    Returns a `PullResult` (`.fetch`, `.checkout`, `.failed`, `.restored`).
    """
    from .ops.fetch import pull as _pull
    from .ops.selection import Selection

    r = _repo(repo)
    try:
        return _pull(r, Selection.of(paths, revs=revs, all_commits=all_commits, all_branches=all_branches),
                     remote=remote, jobs=jobs, force=force, progress=progress)
    finally:
        r.close()


def gc(scope: str, *, remote: str | None = None, dry_run: bool = False, grace: float | None = None,
       repo: RepoArg = None) -> GcResult:
    """Remove objects that no kept pointer reaches, from the cache or (with `remote`) a remote.

    `scope` says what to keep: `"workspace"` (the workspace's pointers),
    `"all-branches"` (also every branch head's) or `"all-commits"` (any commit on
    any ref).  Packs younger than `grace` seconds are never touched.  Returns the
    `GcResult` `mlvc gc` prints (plans, objects and bytes removed, warnings).
    """
    from .ops.gc import gc as _gc

    r = _repo(repo)
    try:
        return _gc(r, scope, remote=remote, dry_run=dry_run, grace=grace)
    finally:
        r.close()


# ---------------------------------------------------------------------- history


def diff(rev_a: str, rev_b: str | None = None, paths: Paths = None, *, contents: bool = True,
         repo: RepoArg = None) -> DiffResult:
    """What changed between two revisions (`rev_b=None`: the workspace's pointers).

    Returns the `DiffResult` `mlvc diff` prints: per artifact added / removed /
    modified, the files that changed, for checkpoints the tensors that changed
    grouped by module (with their relative L2 change), meta and params changes.
    `contents=False` compares pointers only.
    """
    from .ops.diff import diff as _diff

    r = _repo(repo)
    try:
        return _diff(r, rev_a, rev_b, _paths(paths), contents=contents)
    finally:
        r.close()


def log(path: PathArg | None = None, *, since: str | datetime | None = None, max_count: int | None = None,
        rev: str = "HEAD", repo: RepoArg = None) -> list[LogEntry]:
    """An artifact's history (or every artifact's), newest first, read from git without a checkout.

    Returns the list of `LogEntry` `mlvc log` prints (commit, date, author, message,
    artifact, change, id, size, role, meta).  `since` is a datetime or text such as
    `"2.weeks"`, `"yesterday"` or `"2024-05-01"`.
    """
    from .ops.log import log as _log

    r = _repo(repo)
    try:
        return _log(r, str(path) if path is not None else None, since, max_count, rev)
    finally:
        r.close()


def manifest(rev: str | None = None, *, repo: RepoArg = None) -> dict[str, Any]:
    """The version manifest of `rev` (None: the workspace), as `mlvc manifest --json` prints it.

    A dict with the commit, branch, dirty flag and every artifact's path, role, id,
    size, data config hash and seed, per-module model ids and params.
    """
    from .lineage import manifest as _manifest

    r = _repo(repo)
    try:
        return _manifest(r, rev)
    finally:
        r.close()


def _paths(paths: Paths) -> list[PathArg] | None:
    """`paths` as the list the operations take (one path, a list, or None for all)."""
    if paths is None:
        return None
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths) or None
