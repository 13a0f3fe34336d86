"""`mlvc push`: upload what the remote lacks of the selected artifacts (`mlvc.ops.selection`);
`unpushed_counts` for status."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import pointer as pointers
from ..errors import MlvcError
from ..progress import NULL, Progress
from ..store.journal import JournalRoot, write_record
from ..store.locks import gc_guard, gc_lock_free, take_push_lock, wait_for_lock
from ..store.transfer import Artifact, TransferResult, missing_at, transfer
from .common import select
from .selection import Selection, add_errors, revision_shas, select_artifacts

if TYPE_CHECKING:
    from ..remote.config import RemoteDef
    from ..repo import Repo
    from ..store.packstore import PackStore

PUSH_LOCK_TTL_S = 3600.0  # refreshed every quarter of it while the push runs
LEASE_MARGIN_S = 60.0  # stop uploading indexes this long before the lease would run out


def push(repo: Repo, selection: Selection = Selection(), *, remote: str | None = None, jobs: int | None = None,
         progress: Progress = NULL, lock_ttl: float = PUSH_LOCK_TTL_S, wait_lock: float = 0.0,
         on_wait: Callable[[str], None] | None = None) -> TransferResult:
    """Upload every object the selected artifacts need that the remote lacks.

    Holds a shared push lock on the remote throughout (`mlvc.store.locks`), so a
    remote gc cannot delete objects this push relies on without uploading.

    `wait_lock`: where a running gc makes the push give up (LockedError, before anything is
    uploaded), wait up to this many seconds for it to finish and try again; `on_wait(message)`
    is told once when the waiting starts.  While waiting the push holds no lock of its own.
    """
    arts, errors, _ = select_artifacts(repo, selection)
    commits = _commits(repo, selection)
    rdef, rstore = repo.remote_store(remote, jobs=jobs, create=True)
    try:
        result = wait_for_lock(lambda: _push_once(repo, rdef, rstore, arts, commits, progress, lock_ttl), wait_lock,
                               free=lambda: gc_lock_free(rstore.backend), on_wait=on_wait)
    finally:
        rstore.close()
    add_errors(result, errors)
    return result


def _commits(repo: Repo, selection: Selection) -> list[str]:
    """The commits whose pointers a push publishes, for its journal record: HEAD for the workspace
    (its pointers may differ from HEAD's: then no commit protects them beyond the grace)."""
    if selection.uses_revisions:
        shas, git = revision_shas(repo, selection)
        git.close()
        return shas
    if not repo.has_git:
        return []
    from ..git import GitRepo

    with GitRepo(repo.root) as git:
        head = git.head_commit()
    return [head] if head else []


def _push_once(repo: Repo, rdef: RemoteDef, rstore: PackStore, arts: list[Artifact], commits: list[str],
               progress: Progress, lock_ttl: float) -> TransferResult:
    # Our lock first, then look for a gc: a gc that starts later sees our lock and gives up.
    lock = take_push_lock(rstore.backend, lock_ttl)
    try:
        check_plan = before_index = None
        if lock is not None:
            lock.keep_alive()
            margin = min(LEASE_MARGIN_S, lock_ttl / 10)
            check_plan = gc_guard(rstore.backend, lock)
            before_index = lambda: lock.check(margin)  # noqa: E731 - what the index promises stays
        try:
            repo.store.sweep_tmp()
        except OSError:
            pass
        result = transfer(repo.store, rstore, arts, jobs=rstore.jobs, progress=progress,
                          description=f"push to {rdef.name}", check_plan=check_plan, before_index=before_index)
        # Still under our lock: name what we published, for a gc whose refs do not show it yet
        # (docs/concepts/storage-format.md, "gc and concurrent writers").
        done = set(result.done)
        # (store.transfer.Artifact types its pointer as `object`: every one built here is a PointerFile)
        roots = [JournalRoot(p.kind, p.oid) for a in arts
                 if a.name in done and isinstance(p := a.ptr, pointers.PointerFile)]
        if roots:
            write_record(rstore.backend, roots, commits)
        if lock is not None:
            lock.check()  # a lease that ran out mid-push: a gc may have removed what we relied on
    finally:
        if lock is not None:
            try:
                lock.release()
            except MlvcError:
                pass  # an unreleased lock only expires; the push itself decides the outcome
    return result


def unpushed_counts(repo: Repo, remote_name: str | None, paths: Sequence[str]) -> dict[str, int]:
    """{artifact path: number of objects the remote lacks} for the given artifact paths.

    An artifact whose objects the cache lacks too counts what can be seen (at least 1)."""
    if not paths:
        return {}
    _rdef, rstore = repo.remote_store(remote_name)
    out: dict[str, int] = {}
    tracked = select(repo, [repo.root / Path(p) for p in paths])
    try:
        for t, p in zip(tracked, paths, strict=True):
            if t.ptr is None:
                continue
            missing, failed = missing_at(repo.store, rstore, Artifact(t.display, t.ptr, t.pointer_path))
            out[p] = missing if not failed else max(missing, 1)
    finally:
        rstore.close()
    return out
