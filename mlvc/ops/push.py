"""`mlvc push`: upload what the remote lacks of the selected artifacts; `unpushed_counts` for status.

Selection (shared with fetch and pull): the workspace's pointers, optionally
narrowed by PATHs; or, with `revs` / `all_commits` / `all_branches`, the
pointers stored in those commits, read from git's object database without
checking anything out.
"""

from __future__ import annotations

from pathlib import Path

from .. import pointer as pointers
from ..errors import MlvcError, PathError
from ..progress import NULL, Progress
from ..store.journal import JournalRoot, write_record
from ..store.locks import gc_guard, gc_lock_free, take_push_lock, wait_for_lock
from ..store.transfer import Artifact, TransferResult, missing_at, transfer
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
                     workspace: bool | None = None, narrow=None) -> tuple[list[Artifact], dict[str, MlvcError]]:
    """The artifacts to transfer and the pointers that could not be read.

    `workspace` (default: only when no revision is given) includes the workspace's pointers.
    Artifacts with the same content (same root id) are transferred once.  A workspace path
    inside a directory artifact selects that artifact; `narrow(tracked)`, when given, turns
    it into the artifacts to transfer instead (fetch: just that file's objects).
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
        if key in seen and (art.pointer_path is None or art.name in names):
            return  # the same content at another commit (or named twice): transferred once
        seen.add(key)
        names.add(art.name)
        arts.append(art)

    wanted = _wanted(repo, paths)
    if workspace:
        tracked = select(repo, paths, within=True) if (paths and not use_revs) else select(repo)
        for t in tracked:
            if use_revs and not _matches(wanted, t.display, t.rel_pointer):
                continue
            if t.ptr is None:
                errors[t.display] = t.parse_error
                continue
            if t.inner and narrow is not None:
                try:
                    for art in narrow(t):
                        add(art)
                except MlvcError as exc:
                    errors[t.shown] = exc
                continue
            add(Artifact(t.display, t.ptr, t.pointer_path))
    if use_revs:
        shas, git = _rev_shas(repo, revs, all_commits, all_branches)
        found_any = False
        try:
            for sha in shas:
                for p in pointers.pointers_at(git, sha, label=sha[:8]):
                    if p.ptr is None:
                        if _matches(wanted, p.path, p.rel_pointer):
                            errors[f"{p.rel_pointer}@{sha[:8]}"] = p.parse_error
                        continue
                    if not _matches(wanted, p.path, p.rel_pointer):
                        continue
                    found_any = True
                    name = p.path if p.path not in names else f"{p.path}@{sha[:8]}"
                    add(Artifact(name, p.ptr, None))
        finally:
            git.close()
        if wanted and not found_any and not arts:
            raise PathError(", ".join(str(p) for p in paths), "is not tracked by mlvc in the selected commits")
    return arts, errors


def add_errors(result: TransferResult, errors: dict[str, MlvcError]) -> None:
    for name, exc in errors.items():
        result.fail(name, exc)


def push(repo, paths=None, *, remote: str | None = None, revs=(), all_commits: bool = False,
         all_branches: bool = False, jobs: int | None = None, progress: Progress = NULL,
         lock_ttl: float = PUSH_LOCK_TTL_S, wait_lock: float = 0.0, on_wait=None) -> TransferResult:
    """Upload every object the selected artifacts need that the remote lacks.

    Holds a shared push lock on the remote throughout (`mlvc.store.locks`), so a
    remote gc cannot delete objects this push relies on without uploading.

    `wait_lock`: where a running gc makes the push give up (LockedError, before anything is
    uploaded), wait up to this many seconds for it to finish and try again; `on_wait(message)`
    is told once when the waiting starts.  While waiting the push holds no lock of its own.
    """
    arts, errors = select_artifacts(repo, paths, revs=revs, all_commits=all_commits, all_branches=all_branches)
    commits = _commits(repo, revs, all_commits, all_branches)
    rdef, rstore = repo.remote_store(remote, jobs=jobs, create=True)
    try:
        result = wait_for_lock(lambda: _push_once(repo, rdef, rstore, arts, commits, progress, lock_ttl), wait_lock,
                               free=lambda: gc_lock_free(rstore.backend), on_wait=on_wait)
    finally:
        rstore.close()
    add_errors(result, errors)
    return result


def _commits(repo, revs, all_commits: bool, all_branches: bool) -> list[str]:
    """The commits whose pointers a push publishes, for its journal record: HEAD for the workspace
    (its pointers may differ from HEAD's: then no commit protects them beyond the grace)."""
    if revs or all_commits or all_branches:
        shas, git = _rev_shas(repo, revs, all_commits, all_branches)
        git.close()
        return shas
    if not repo.has_git:
        return []
    from ..git import GitRepo

    with GitRepo(repo.root) as git:
        head = git.head_commit()
    return [head] if head else []


def _push_once(repo, rdef, rstore, arts: list[Artifact], commits: list[str], progress: Progress,
               lock_ttl: float) -> TransferResult:
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


def unpushed_counts(repo, remote_name: str | None, paths) -> dict[str, int]:
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
