"""`mlvc checkout REV [PATH...]` and `mlvc checkout [REV] --to DIR [PATH...]`.

Switching: refuse (like git) when uncommitted work would be lost, then
`git checkout REV` and restore that commit's artifacts, fetching objects the
cache lacks from the default remote.  A pointer that cannot be read, or an
artifact whose objects cannot be found, is reported in `failed`; every other
artifact is still restored.

Exporting (`--to`): read the pointers of REV straight from git's object
database and write the artifacts under DIR; HEAD, the index and the workspace
are not touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import pointer as pointers
from ..errors import ConflictError, MlvcError, ObjectNotFoundError, PathError, describe
from ..progress import NULL, Progress
from ..safepath import ContainedTree
from ..store.packstore import wrap_os_error
from .checkout import CheckoutResult, checkout, materialize
from .selection import Selection
from .common import PathArg, links_root, path_selected, wanted_paths, load_entries, missing_objects, select

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..pointer import PointerFile
    from ..repo import Repo

# Set while mlvc itself runs `git checkout`, so the post-checkout hook does not restore twice.
HOOK_SKIP_ENV = "MLVC_SKIP_HOOKS"


def default_remote(repo: Repo) -> str | None:
    """The remote missing objects come from (`known_remotes`: this work tree's config, else the
    branch's), None when there is none to try."""
    from ..remote.config import known_remotes

    try:
        return known_remotes(repo)[1]
    except MlvcError:
        return None


def pull_hint(repo: Repo) -> str:
    name = default_remote(repo)
    if name:
        return f"fetch them from remote {name!r} with `mlvc pull` (or `mlvc push` them from a machine that has them)"
    return ("no default remote is configured: add one with `mlvc remote add NAME URL` and "
            "`mlvc remote default NAME`, then `mlvc pull`")


@contextlib.contextmanager
def hooks_skipped() -> Iterator[None]:
    old = os.environ.get(HOOK_SKIP_ENV)
    os.environ[HOOK_SKIP_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(HOOK_SKIP_ENV, None)
        else:
            os.environ[HOOK_SKIP_ENV] = old


@dataclass
class FetchOutcome:
    """Why fetching what the cache lacks did not bring everything: per artifact, so that each
    artifact's message says only its own reason."""

    remote: str
    error: MlvcError | None = None  # the fetch as a whole failed (an unreachable remote, ...)
    failed: dict[str, MlvcError] = field(default_factory=dict)  # artifact -> why its objects did not come
    absent: set[str] = field(default_factory=set)  # artifacts whose objects the remote lacks


def fetch_missing(repo: Repo, rev: str | None, paths: Sequence[PathArg] | None,
                  progress: Progress = NULL) -> FetchOutcome | None:
    """Fetch what the cache lacks from the default remote.  Returns what failed, or None."""
    from .fetch import absent_from_remote, fetch  # (a transfer: not imported by a plain checkout)

    remote = default_remote(repo)
    if remote is None:
        return None  # nothing to try; the pull hint says how to configure one
    try:
        selection = Selection.of(paths or None, revs=(rev,) if rev is not None else (),
                                 workspace=False if rev is not None else None)
        result = fetch(repo, selection, remote=remote, progress=progress)
    except MlvcError as exc:
        return FetchOutcome(remote, error=exc)
    if result.failed:
        return FetchOutcome(remote, failed=dict(result.failed),
                            absent=set(absent_from_remote(result)))
    return None


def _git(repo: Repo) -> GitRepo:
    from ..git import GitRepo

    if not repo.has_git:
        raise MlvcError("checking out a revision needs a git repository (this one was set up with --no-scm)")
    return GitRepo(repo.root)


def unsaved_artifacts(repo: Repo) -> list[str]:
    """Workspace artifacts modified and never added (their content is not in the cache)."""
    from .status import MODIFIED, status

    out = []
    for st in status(repo, check_cache=False):
        if st.state == MODIFIED:
            out.append(st.path)
    if not out:
        return out
    # A modification whose content the cache already holds (e.g. a pointer switched back) loses nothing.
    from ..store.packs import FILE_MANIFEST
    from ..workspace import IdLookup, scan

    unsaved = []
    for t in select(repo, out):
        if t.ptr is None:
            continue
        try:
            lookup = IdLookup(repo.hash_cache, t.display)
            files = scan(t.target, t.display, follow_within=links_root(repo, t.ptr.meta))
            ids = [lookup.id_of(fs, f"{t.display}/{fs.rel}".rstrip("/")) for fs in files]
            lookup.flush()
        except MlvcError:
            unsaved.append(t.display)
            continue
        if any(not repo.store.has_any(FILE_MANIFEST, fid) for fid in ids):
            unsaved.append(t.display)
    return unsaved


def checkout_rev(repo: Repo, rev: str | None, paths: Sequence[PathArg] | None = None, *, force: bool = False,
                 to: Path | str | None = None,
                 progress: Progress = NULL) -> CheckoutResult:
    if rev is None and to is None:  # the workspace's own pointers: no git involved (nor imported)
        return restore(repo, paths, force, progress)
    git = _git(repo)
    repo.config  # noqa: B018 - read the remotes of the commit we start from, before git switches it
    try:
        if to is not None:
            return export_rev(repo, git, rev or "HEAD", paths, Path(to), progress)
        assert rev is not None
        return _switch(repo, git, rev, paths, force, progress)
    finally:
        git.close()


def _switch(repo: Repo, git: GitRepo, rev: str, paths: Sequence[PathArg] | None, force: bool,
            progress: Progress) -> CheckoutResult:
    sha = git.resolve(rev)  # RevisionError for an unknown revision or a repo without commits
    if not force:
        if git.has_commits() and git.is_dirty():
            changed = [line[3:] for line in git.run_git("status", "--porcelain=v1", "--untracked-files=no")
                       .splitlines() if line.strip()]
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ConflictError(f"uncommitted changes to tracked files would be lost by checking out {rev}: "
                                f"{shown}", hint="commit or stash them, or use `mlvc checkout --force`")
        unsaved = unsaved_artifacts(repo)
        if unsaved:
            shown = ", ".join(unsaved[:3]) + (f" and {len(unsaved) - 3} more" if len(unsaved) > 3 else "")
            raise ConflictError(f"{shown}: modified in the workspace and never added; checking out {rev} "
                                "would lose it", hint=f"run `mlvc add {unsaved[0]}` to keep it, "
                                                      "or `mlvc checkout --force`")
    before = [t.display for t in select(repo) if t.ptr is not None]
    # Check out the exact commit when `rev` is not a branch, so that git detaches HEAD as it would.
    target = rev if rev in git.branch_heads() else sha
    with hooks_skipped():
        git.checkout(target, force=force)
    result = restore(repo, paths, force, progress)
    result.kept = left_behind(repo, before)
    return result


def left_behind(repo: Repo, before: list[str]) -> list[str]:
    """Artifacts of `before` (repo-relative paths) that no pointer of the workspace names now but
    that are still on disk: kept there, and out of git (`mlvc.ignore`), never left to be committed."""
    now = {t.display for t in select(repo) if t.ptr is not None}
    kept = [d for d in before if d not in now and os.path.lexists(repo.root / d)]
    repo.keep_out_of_git(repo.root / d for d in kept)
    return kept


def restore(repo: Repo, paths: Sequence[PathArg] | None, force: bool, progress: Progress) -> CheckoutResult:
    """Checkout of the workspace's pointers, fetching objects the cache lacks from the default remote."""
    fetch_error = prefetch(repo, None, select_safe(repo, paths), progress, paths)
    result = checkout(repo, paths, force=force, progress=progress)
    explain_missing(repo, result, fetch_error)
    return result


def select_safe(repo: Repo, paths: Sequence[PathArg] | None) -> list[PointerFile]:
    try:
        return [t.ptr for t in select(repo, paths, within=True) if t.ptr is not None]
    except MlvcError:
        return []


def prefetch(repo: Repo, rev: str | None, ptrs: Iterable[PointerFile], progress: Progress,
             paths: Sequence[PathArg] | None = None) -> FetchOutcome | None:
    """Fetch from the default remote when any selected artifact has objects the cache lacks:
    what the workspace `paths` select (a path inside an artifact: that file's objects only)."""
    need = []
    for ptr in ptrs:
        if ptr.oid in repo.store.complete:
            continue
        try:
            if missing_objects(repo.store, ptr):
                need.append(ptr)
        except MlvcError:
            need.append(ptr)
    if not need:
        return None
    return fetch_missing(repo, rev, paths if rev is None else None, progress)


def missing_message(repo: Repo, base: str, fetched: FetchOutcome | None, name: str = "") -> str:
    """One line for artifact `name`: `base`, the missing-object error's message (without its
    hint), and the one next step that can work."""
    if fetched is not None and name in fetched.absent:
        from .fetch import push_hint

        return f"{base} and from remote {fetched.remote!r}: {push_hint(fetched.remote)}"
    why = None
    if fetched is not None and name in fetched.failed:
        why = describe(fetched.failed[name])
    elif fetched is not None and fetched.error is not None:
        why = str(fetched.error)
    if fetched is not None and why:
        return f"{base}; fetching it from remote {fetched.remote!r} failed ({why}): run `mlvc pull` once that is fixed"
    return f"{base}: {pull_hint(repo)}"


def explain_missing(repo: Repo, result: CheckoutResult, fetched: FetchOutcome | None) -> None:
    for name, base in result.missing.items():
        result.failed[name] = result.failed[name].worded(missing_message(repo, base, fetched, name))


def export_rev(repo: Repo, git: GitRepo, rev: str, paths: Sequence[PathArg] | None, dest: Path,
               progress: Progress = NULL) -> CheckoutResult:
    git.resolve(rev)
    result = CheckoutResult()
    wanted = wanted_paths(repo, paths)
    found = [p for p in pointers.pointers_at(git, rev) if path_selected(p[1], wanted) or (wanted and p[0] in wanted)]
    if wanted and not found:
        raise PathError(", ".join(os.fspath(p) for p in paths or ()), f"is not tracked by mlvc at {rev}")
    dest = Path(os.path.abspath(dest))
    ptrs = [ptr for _, _, ptr, _ in found if ptr is not None]
    fetch_error = prefetch(repo, rev, ptrs, progress)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise wrap_os_error(exc, str(dest)) from exc
    with ContainedTree(dest) as tree:
        for _, display, ptr, err in found:
            _export_one(repo, tree, display, ptr, err, fetch_error, result, progress)
    return result


def _export_one(repo: Repo, tree: ContainedTree, display: str, ptr: PointerFile | None, err: MlvcError | None,
                fetch_error: FetchOutcome | None, result: CheckoutResult, progress: Progress) -> None:
    """Write one artifact of the exported revision under `tree`, recording a failure in `result`."""
    if ptr is None:
        assert err is not None  # a PointerAt holds its pointer or the error reading it
        result.failed[display] = err.worded(str(err))
        return
    try:
        entries = load_entries(repo.store, ptr)
        progress.start(f"export {display}", ptr.size)
        try:
            materialize(repo.store, entries, tree, tuple(display.split("/")), ptr.kind, progress)
        finally:
            progress.finish()
        result.restored.append(display)
        result.written_files += len(entries)
        result.written_bytes += sum(e.size for e in entries)
    except MlvcError as exc:
        if isinstance(exc, ObjectNotFoundError):
            exc = exc.worded(missing_message(repo, str(exc), fetch_error, display))
        result.failed[display] = exc
    except OSError as exc:
        err2 = wrap_os_error(exc, display)
        result.failed[display] = err2.worded(str(err2))
