"""`mlvc push`: upload what the remote lacks of the selected artifacts; `unpushed_counts` for status.

Selection (shared with fetch and pull): the workspace's pointers, optionally
narrowed by PATHs; or, with `revs` / `all_commits` / `all_branches`, the
pointers stored in those commits, read from git's object database without
checking anything out.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .. import pointer as pointers
from ..errors import LockedError, MlvcError, PathError, RemoteError
from ..progress import NULL, Progress
from ..remote.config import load_remote
from ..remote.index import RemoteIndex, cache_dir_for
from ..remote.transfer import PUSH_PACK_SIZE, Artifact, TransferResult, plan_push, push_objects
from .common import select

PUSH_LOCK_TTL_S = 3600.0  # refreshed every quarter of it while the push runs
LEASE_MARGIN_S = 60.0  # stop uploading indexes this long before the lease would run out


def _wanted(repo, paths) -> list[str]:
    return [repo.rel(repo.resolve_user_path(p)) for p in paths or []]


def _matches(wanted: list[str], display: str, rel_pointer: str) -> bool:
    if not wanted:
        return True
    return any(display == w or display.startswith(w + "/") or rel_pointer == w for w in wanted)


def _rev_shas(repo, revs, all_commits: bool, all_branches: bool):
    from ..git import GitRepo

    if not repo.has_git:
        raise MlvcError("--rev, --all-commits and --all-branches need a git repository")
    git = GitRepo(repo.root)
    try:
        shas: list[str] = [git.resolve(r) for r in revs or []]
        if all_branches:
            shas.extend(git.branch_heads().values())
        if all_commits:
            shas.extend(c.sha for c in git.all_commits())
        return list(dict.fromkeys(shas)), git
    except BaseException:
        git.close()
        raise


def select_artifacts(repo, paths=None, *, revs=(), all_commits: bool = False, all_branches: bool = False,
                     workspace: bool | None = None) -> tuple[list[Artifact], dict[str, MlvcError]]:
    """The artifacts to transfer and the pointers that could not be read.

    `workspace` (default: only when no revision is given) includes the workspace's pointers.
    Artifacts with the same content (same root id) are transferred once.
    """
    use_revs = bool(revs) or all_commits or all_branches
    if workspace is None:
        workspace = not use_revs
    arts: list[Artifact] = []
    errors: dict[str, MlvcError] = {}
    seen: set[tuple] = set()
    names: set[str] = set()

    def add(art: Artifact) -> None:
        key = art.root
        if key in seen and art.pointer_path is None:
            return  # the same content at another commit: transferred once
        seen.add(key)
        names.add(art.name)
        arts.append(art)

    wanted = _wanted(repo, paths)
    if workspace:
        tracked = select(repo, paths) if (paths and not use_revs) else select(repo)
        for t in tracked:
            if use_revs and not _matches(wanted, t.display, t.rel_pointer):
                continue
            if t.ptr is None:
                errors[t.display] = t.error
                continue
            add(Artifact(t.display, t.ptr, t.pointer_path))
    if use_revs:
        shas, git = _rev_shas(repo, revs, all_commits, all_branches)
        found_any = False
        try:
            for sha in shas:
                for rel_pointer in git.list_files(sha, pointers.SUFFIX):
                    if rel_pointer.startswith(".mlvc/"):
                        continue
                    parent = os.path.dirname(rel_pointer)
                    where = f"{rel_pointer}@{sha[:8]}"
                    text = git.read_blob(sha, rel_pointer)
                    if text is None:
                        continue
                    try:
                        ptr = pointers.PointerFile.parse(text, where)
                    except MlvcError as exc:
                        if _matches(wanted, rel_pointer[: -len(pointers.SUFFIX)], rel_pointer):
                            errors[where] = exc
                        continue
                    display = f"{parent}/{ptr.path}" if parent else ptr.path
                    if not _matches(wanted, display, rel_pointer):
                        continue
                    found_any = True
                    name = display if display not in names else f"{display}@{sha[:8]}"
                    add(Artifact(name, ptr, None))
        finally:
            git.close()
        if wanted and not found_any and not arts:
            raise PathError(", ".join(str(p) for p in paths), "is not tracked by mlvc in the selected commits")
    return arts, errors


def open_remote(repo, remote: str | None, *, create: bool = False, jobs: int | None = None):
    """(definition, backend, loaded remote index) for a configured remote."""
    rdef = load_remote(repo, remote)
    backend = rdef.backend()
    if create:
        backend.ensure_base()
    njobs = jobs or rdef.default_jobs()
    return rdef, backend, _load_index(repo, rdef, backend, njobs), njobs


def _load_index(repo, rdef, backend, njobs: int) -> RemoteIndex:
    return RemoteIndex(backend, cache_dir_for(repo.cache_dir, rdef.resolved_url)).load(jobs=njobs)


def _add_errors(result: TransferResult, errors: dict[str, MlvcError]) -> None:
    for name, exc in errors.items():
        result.fail(name, exc)


def push(repo, paths=None, *, remote: str | None = None, revs=(), all_commits: bool = False,
         all_branches: bool = False, jobs: int | None = None, progress: Progress = NULL,
         lock_ttl: float = PUSH_LOCK_TTL_S) -> TransferResult:
    """Upload every object the selected artifacts need that the remote lacks.

    Holds a shared push lock on the remote throughout (see `_gc_guard`), so a
    remote gc cannot delete objects this push relies on without uploading.
    """
    arts, errors = select_artifacts(repo, paths, revs=revs, all_commits=all_commits, all_branches=all_branches)
    rdef = load_remote(repo, remote)
    backend = rdef.backend()
    backend.ensure_base()
    njobs = jobs or rdef.default_jobs()
    # Our lock first, then look for a gc: a gc that starts later sees our lock and gives up.
    lock = _take_push_lock(backend, lock_ttl)
    try:
        check_plan = keep_alive = None
        if lock is not None:
            lock.keep_alive()
            margin = min(LEASE_MARGIN_S, lock_ttl / 10)
            check_plan = _gc_guard(backend, lock)
            keep_alive = lambda: lock.check(margin)  # noqa: E731
        rindex = _load_index(repo, rdef, backend, njobs)
        if backend.kind == "local":
            backend.cleanup_temp(24 * 3600)  # temp files of pushers that died a day ago
        try:
            repo.store.sweep_tmp()
        except OSError:
            pass
        pack_size = int(repo.config.core.get("remote_pack_size") or PUSH_PACK_SIZE)
        result = push_objects(repo.store, backend, rindex, arts, jobs=njobs, progress=progress,
                              pack_size=pack_size, description=f"push to {rdef.name}",
                              check_plan=check_plan, keep_alive=keep_alive)
        if lock is not None:
            lock.check()  # a lease that ran out mid-push: a gc may have removed what we relied on
    finally:
        if lock is not None:
            try:
                lock.release()
            except MlvcError:
                pass  # an unreleased lock only expires; the push itself decides the outcome
    _add_errors(result, errors)
    return result


def _take_push_lock(backend, ttl_s: float):
    """Create this push's shared lock, or None where the remote cannot hold locks at all: there
    `mlvc gc --remote` cannot take its lock either, so no gc can run against this push."""
    from ..remote.backend import _UNSUPPORTED_CODES, _s3_error_code
    from ..remote.lock import SharedLock, default_owner

    if backend.kind not in ("local", "s3"):
        return None  # other fsspec remotes have no atomic create (and no remote gc)
    lock = SharedLock(backend, owner=f"mlvc push ({default_owner()})", ttl_s=ttl_s)
    try:
        lock.acquire()
    except RemoteError as exc:
        if exc.__cause__ is not None and _s3_error_code(exc.__cause__) in _UNSUPPORTED_CODES:
            return None  # an S3 service without conditional requests (no remote gc there either)
        raise
    return lock


def _gc_guard(backend, lock):
    """Look for a running remote gc (after our own lock exists).  Returns the check for the push plan.

    No gc running: any gc that starts later sees our lock and stops before it
    deletes anything, so the plan may rely on whatever the remote has.  A gc
    running: it may delete any pack it listed, so the push may go ahead only if
    it relies on nothing already there.  gc lists the packs before it looks for
    push locks, so either it sees our lock (and stops), or its listing is older
    than anything we upload (and it never touches those packs).  Otherwise:
    LockedError (exit 13) before anything is uploaded.
    """
    from ..remote.lock import DEFAULT_LOCK_NAME, RemoteLock, format_time

    holder = RemoteLock(backend).held_by()
    if holder is None or holder.is_stale():  # expired, or left by a gc killed on this machine
        return None

    if math.isinf(holder.expires):
        hint = (f"if no `mlvc gc --remote` is running against this remote, delete {DEFAULT_LOCK_NAME} "
                "from it and push again")
    else:
        hint = (f"push again when that gc has finished (if it crashed, its lock stops counting at "
                f"{format_time(holder.expires)})")

    def check_plan(reused: int) -> None:
        if reused:
            lock.release()
            raise LockedError(
                f"remote {backend.describe()} is being garbage-collected by {holder.describe()} "
                f"[{DEFAULT_LOCK_NAME}], and this push relies on {reused} object(s) already there that "
                "it may delete; nothing was uploaded", hint=hint)

    return check_plan


def unpushed_counts(repo, remote_name: str | None, paths) -> dict[str, int]:
    """{artifact path: number of objects the remote lacks} for the given artifact paths.

    An artifact whose objects the cache lacks too counts what can be seen (at least 1)."""
    if not paths:
        return {}
    _rdef, _backend, rindex, _ = open_remote(repo, remote_name)
    out: dict[str, int] = {}
    tracked = select(repo, [repo.root / Path(p) for p in paths])
    repo.store.refresh()
    for t, p in zip(tracked, paths, strict=True):
        if t.ptr is None:
            continue
        probe = TransferResult()
        owners = plan_push(repo.store, rindex, [Artifact(t.display, t.ptr, t.pointer_path)], probe)
        n = len(owners.map)
        out[p] = n if not probe.failed else max(n, 1)
    return out
