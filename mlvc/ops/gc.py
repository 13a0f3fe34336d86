"""`mlvc gc`: remove objects no kept pointer reaches, from the cache or from a remote.

What is kept (the scope):

* ``workspace``: the pointers in the work tree;
* ``all-branches``: those plus the pointers of every local branch head and HEAD;
* ``all-commits``: those plus the pointers of every commit reachable from any ref.

Every object reachable from a kept pointer (tree manifest, file manifests,
chunks) stays.  Packs are immutable, so a pack holding garbage is rewritten:
its live objects are copied into a new pack, the new pack is published
(pack, then index), and only then is the old pack removed (index first, so
readers never see an index without its pack).  Packs newer than the grace
period are never touched, so objects that a concurrent `mlvc add` has just
written (and whose pointer does not exist yet) survive; the workspace
pointers are read again right before anything is deleted for the same reason.

On a remote the same happens under `RemoteLock` (owner and expiry), and only
packs listed in the snapshot taken when gc started (and older than the grace
period) are ever deleted: packs a concurrent push uploads meanwhile are left
alone.  Pushes hold shared locks (``locks/push-*.lock``): gc gives up
(LockedError) when one is in progress, because a push skips objects the remote
already has and gc could delete them under it (see `_check_pushers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .. import pointer as pointers
from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, UsageError
from ..progress import NULL, Progress
from ..store.gc import GcResult, gc as collect
from ..store.journal import RETENTION_S, JournalName, list_names, read_record
from ..store.locks import RemoteLock, check_pushers, default_owner, remote_unlocked, wait_for_lock
from ..store.packs import CHUNK, TREE_MANIFEST
from ..store.readers import FirstThatHas
from ..store.shared_cache import users as registered_users
from .common import ManifestReader, reachable, select

if TYPE_CHECKING:
    from ..repo import Repo
    from ..store.backend import Backend
    from ..store.packstore import PackStore
    from ..store.repack import ChunkHint
    from ..store.types import Key

SCOPES = ("workspace", "all-branches", "all-commits")
DEFAULT_GRACE_S = 3600.0
CLOCK_SLACK_S = 24 * 3600.0  # how far a pusher's clock may lag the store's for the journal's grace
GRACE_ENV = "MLVC_GC_GRACE"


def grace_seconds(repo: Repo, grace: float | None) -> float:
    if grace is not None:
        return float(grace)
    env = os.environ.get(GRACE_ENV)
    if env:
        try:
            return float(env)
        except ValueError:
            raise MlvcError(f"{GRACE_ENV} must be a number of seconds, not {env!r}") from None
    configured = repo.config.settings.gc_grace_seconds
    return configured if configured is not None else DEFAULT_GRACE_S


# ------------------------------------------------------------------ kept pointers


def _workspace_pointers(repo: Repo, warnings: list[str]) -> list[pointers.PointerFile]:
    out = []
    for t in select(repo):
        if t.ptr is None:
            warnings.append(f"{t.rel_pointer}: {t.error} (ignored)")
        else:
            out.append(t.ptr)
    return out


def _history_pointers(repo: Repo, scope: str, warnings: list[str]) -> list[pointers.PointerFile]:
    if scope == "workspace" or not repo.has_git:
        if scope != "workspace":
            warnings.append("no git repository: only the workspace pointers are kept")
        return []
    from ..git import GitRepo
    from .log import History

    git = GitRepo(repo.root)
    try:
        if not git.has_commits():
            return []
        if git.is_shallow():
            warnings.append("this is a shallow clone: commits beyond its depth are unknown, so objects only "
                            "they reference are not protected (run `git fetch --unshallow` first)")
        hist = History(git, set(), None)
        blobs: dict[bytes, str] = {}
        if scope == "all-commits":
            for info in git.all_commits():
                new, old = hist.commit_trees(info.sha)
                for rel, _, b in hist.changed(new, old):
                    if b is not None:
                        blobs.setdefault(b, f"{rel} at {info.short}")
        else:
            heads = set(git.branch_heads().values())
            head = git.head_commit()
            if head:
                heads.add(head)
            for sha in sorted(heads):
                new, _ = hist.commit_trees(sha)
                for rel, _, b in hist.changed(new, None):
                    if b is not None:
                        blobs.setdefault(b, f"{rel} at {sha[:7]}")
        out = []
        for blob, where in blobs.items():
            ptr = hist.pointer(blob, where)
            if isinstance(ptr, MlvcError):
                warnings.append(f"{ptr} (ignored)")
            else:
                out.append(ptr)
        return out
    finally:
        git.close()


def kept_pointers(repo: Repo, scope: str, warnings: list[str]) -> list[pointers.PointerFile]:
    if scope not in SCOPES:
        raise MlvcError(f"gc scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    unique: dict[tuple[str, str], pointers.PointerFile] = {}
    for ptr in _workspace_pointers(repo, warnings) + _history_pointers(repo, scope, warnings):
        unique.setdefault((ptr.kind, ptr.oid), ptr)
    return list(unique.values())


def users_pointers(repo: Repo, scope: str, warnings: list[str]) -> list[pointers.PointerFile]:
    """The kept pointers of every repository that uses `repo`'s cache, and of their worktrees.

    A cache may be shared (`cache.dir`) by several repositories, and a repository's linked
    worktrees share its cache by default: all of them register inside the cache
    (`mlvc.store.shared_cache.register_user`).  A registered repository that cannot be read stops gc,
    naming it, because what only it needs is unknown.  The scope applies to this repository
    (and its worktrees); other repositories keep every commit's pointers.  The one exception is a cache inside
    this repository (not configured as shared) that still lists this repository's own
    former location: the repository was moved."""
    from ..gitcli import linked_worktrees, main_worktree_root
    from ..repo import MLVC_DIR, Repo

    me = main_worktree_root(repo.root)
    own_cache = repo.cache_dir == me / MLVC_DIR / "cache" and not repo.config.settings.cache_dir
    users: dict[Path, str | None] = dict(registered_users(repo.store.backend))
    users.setdefault(me, None)
    unreadable: list[str] = []
    unique: dict[tuple[str, str], pointers.PointerFile] = {}
    for root in sorted(users):
        if not (root / MLVC_DIR / "config").is_file():
            if own_cache and not root.exists():
                warnings.append(f"{root} no longer exists (this repository was moved?); its registration "
                                f"is ignored")
                continue
            unreadable.append(f"{root} (registered in {users[root]})")
            continue
        user = repo if root == repo.root else Repo(root)
        try:
            # The scope is this repository's decision; other users keep everything their history
            # references (they did not ask for anything to go).
            kept = kept_pointers(user, scope if root == me else "all-commits", warnings)
            for wt in linked_worktrees(root):
                if wt != root and (wt / MLVC_DIR / "config").is_file():
                    kept += kept_pointers(repo if wt == repo.root else Repo(wt), "workspace", warnings)
        except MlvcError as exc:
            unreadable.append(f"{root} ({exc})")
            continue
        finally:
            if user is not repo:
                user.close()
        for ptr in kept:
            unique.setdefault((ptr.kind, ptr.oid), ptr)
    if unreadable:
        raise MlvcError(
            f"the cache {repo.cache_dir} is shared with repositories mlvc cannot read: {'; '.join(unreadable)}; "
            "what only they need is unknown, so nothing was deleted",
            hint="make them readable, or if a repository is gone for good, delete its registry entry "
                 "(the file named in parentheses) and run gc again")
    return list(unique.values())


def live_objects(store: ManifestReader, ptrs: Iterable[pointers.PointerFile], warnings: list[str],
                 strict: bool = False) -> set[Key]:
    """Every (type, id) the pointers reach.  A damaged manifest is always an error (what it
    references is unknown, and intact objects of a kept artifact must not go); a missing one
    too with `strict` (a remote), else a warning (a cache need not hold every version)."""
    live: set[Key] = set()
    for ptr in ptrs:
        try:
            live.update(reachable(store, ptr))
        except (ObjectNotFoundError, CorruptObjectError) as exc:
            if strict or isinstance(exc, CorruptObjectError):
                # the same error (corrupt 6, missing 7: what stopped it), saying what it stopped
                raise exc.reworded(f"cannot tell what {ptr.path} ({ptr.oid}) needs: {exc}; nothing was deleted",
                                   hint="push or fetch the missing manifest first" if isinstance(
                                       exc, ObjectNotFoundError) else "run `mlvc verify --repair`, then gc again"
                                   ) from None
            warnings.append(f"{ptr.path} ({ptr.oid}): {exc}; objects only it references cannot be identified")
    return live


# ------------------------------------------------------------------ the cache and remotes


def gc_local(repo: Repo, scope: str = "workspace", *, dry_run: bool = False, grace: float | None = None,
             repack: bool = False, progress: Progress = NULL) -> GcResult:
    """gc of the cache, keeping what every repository that uses it needs (`users_pointers`).
    `repack`: also re-encode the kept checkpoints' float chunks and merge small packs
    (`mlvc.store.repack`, with the hints of `mlvc.ops.repack`)."""
    result = GcResult(scope, None, dry_run)
    grace_s = grace_seconds(repo, grace)
    store = repo.store
    # Exclusive against `add`/`fetch` (which hold the lock shared until their pointer or
    # objects are in place): every pointer an add will write is on disk before we read them.
    with store.host_lock(exclusive=not dry_run):
        kept: list[pointers.PointerFile] = []

        def live() -> set[Key]:
            kept.extend(users_pointers(repo, scope, result.warnings))
            result.kept_artifacts = len(kept)
            return live_objects(store, kept, result.warnings)

        def more_live() -> set[Key]:
            # A pointer written by a concurrent `mlvc add` since we started must keep its objects.
            seen = {(p.kind, p.oid) for p in kept}
            new = [p for p in users_pointers(repo, "workspace", []) if (p.kind, p.oid) not in seen]
            return live_objects(store, new, result.warnings) if new else set()

        if repack:
            from ..store.repack import repack as store_repack
            from .repack import chunk_hints, versions_in_order

            # the versions in the order they were made (git is read unless only the workspace stays)
            def hints() -> Iterator[list[ChunkHint]]:
                return chunk_hints(store, versions_in_order(repo, kept, history=scope != "workspace"))

            store_repack(store, live, hints, result, grace_s=grace_s, dry_run=dry_run, more_live=more_live,
                         progress=progress)
        else:
            collect(store, live, result, grace_s=grace_s, dry_run=dry_run, more_live=more_live)
        if not dry_run:
            store.sweep_tmp()
    return result


def gc_remote(repo: Repo, scope: str, remote: str | None, *, dry_run: bool = False, grace: float | None = None,
              lock_ttl: float = 3600.0, owner: str | None = None, wait_lock: float = 0.0,
              on_wait: Callable[[str], None] | None = None) -> GcResult:
    """gc of a remote, under its exclusive lock, refused while a push runs (`mlvc.store.locks`).

    `wait_lock`: where another gc's lock or a running push stops it (LockedError, before
    anything is deleted), wait up to this many seconds and try again; `on_wait(message)` is
    told once.  While waiting, gc holds no lock of its own, so it never stops a push."""
    rdef, rstore = repo.remote_store(remote)
    try:
        return wait_for_lock(
            lambda: gc_remote_store(repo, rstore, rdef.name, scope, dry_run=dry_run, grace=grace,
                                    lock_ttl=lock_ttl, owner=owner),
            wait_lock, free=lambda: remote_unlocked(rstore.backend), on_wait=on_wait)
    finally:
        rstore.close()


def journal_roots(repo: Repo, backend: Backend, before: set[str],
                  grace_s: float) -> tuple[list[pointers.PointerFile], list[JournalName]]:
    """The roots the push journal (`mlvc.store.journal`) keeps, and the records gc may prune.

    A record keeps its roots when it appeared after `before` (the listing gc took before it read
    any ref: a push that finished while gc ran), when it is younger than the grace, or, for
    `RETENTION_S`, when this repository's git lacks a commit it names (its refs are older than
    that push: not fetched yet).  Records older than both are pruned."""
    from ..git import GitRepo

    now = time.time()
    git = GitRepo(repo.root) if repo.has_git else None
    try:
        def unknown(sha: str) -> bool:
            return git is None or not git.has_commit(sha)

        roots: dict[tuple[str, str], pointers.PointerFile] = {}
        prunable: list[JournalName] = []
        def young(n: JournalName) -> bool:
            # judged as packs are: the store's mtime against our clock.  A record whose name (the
            # pusher's clock) is a day older than the grace is not asked about.
            if now - n.created >= grace_s + CLOCK_SLACK_S:
                return False
            try:
                mtime = backend.mtime(n.key)
            except MlvcError:
                return False  # gone meanwhile: pruned by another gc
            return mtime is None or now - mtime < grace_s

        for n in list_names(backend):
            age = now - n.created
            keep = n.key not in before or (grace_s > 0 and young(n))
            if not keep and age < RETENTION_S:
                keep = (n.commit is not None and unknown(n.commit)) or (
                    n.multi and any(map(unknown, read_record(backend, n).commits)))
            if not keep:
                if age >= max(grace_s, RETENTION_S):
                    prunable.append(n)
                continue
            for r in read_record(backend, n).roots:
                roots.setdefault((r.kind, r.oid), pointers.PointerFile(
                    path=f"{r.kind} pushed by {n.key}", kind=r.kind, oid=r.oid, size=0, files=0))
        return list(roots.values()), prunable
    finally:
        if git is not None:
            git.close()


def gc_remote_store(repo: Repo, rstore: PackStore, name: str, scope: str, *, dry_run: bool = False,
                    grace: float | None = None, lock_ttl: float = 3600.0, owner: str | None = None) -> GcResult:
    """`gc_remote` on an open remote store."""
    result = GcResult(scope, name, dry_run)
    grace_s = grace_seconds(repo, grace)
    # Before any ref is read: a record missing from this listing was written by a push that
    # finished after gc started, which our refs may not show (`journal_roots`).
    journal_before = {n.key for n in list_names(rstore.backend)}
    prunable: list[JournalName] = []
    lock = RemoteLock(rstore.backend, owner=owner or f"mlvc gc ({default_owner()})", ttl_s=lock_ttl)
    with lock:
        if lock.broken is not None:
            why = "its process is gone" if lock.broken.is_abandoned() else "it had expired"
            result.warnings.append(f"took over the gc lock of {lock.broken.describe()}: {why}")

        def live() -> set[Key]:
            # after gc's listing: a push that started before it is seen here (and stops gc); one
            # that ended before it wrote its journal record, read below, after the refs
            check_pushers(rstore.backend, dry_run, result.warnings)
            ptrs = kept_pointers(repo, scope, result.warnings)
            result.kept_artifacts = len(ptrs)
            reader = FirstThatHas([repo.store, rstore], primary=rstore)  # the cache's copies first: local reads
            objects = live_objects(reader, ptrs, result.warnings, strict=True)
            pushed, prunable[:] = journal_roots(repo, rstore.backend, journal_before, grace_s)
            seen = {(p.kind, p.oid) for p in ptrs}
            pushed = [p for p in pushed if (p.kind, p.oid) not in seen]
            result.journal_roots = len(pushed)
            return objects | live_objects(reader, pushed, result.warnings)

        def keep_alive() -> None:
            lock.refresh()

        collect(rstore, live, result, grace_s=grace_s, dry_run=dry_run, keep_alive=keep_alive)
        result.journal_pruned = len(prunable)
        if not dry_run:
            for n in prunable:  # after the deletions: until then they still counted
                rstore.backend.delete(n.key)
            rstore.backend.cleanup(24 * 3600)  # what writers that died a day ago left behind
    return result


def gc(repo: Repo, scope: str = "workspace", remote: str | None = None, dry_run: bool = False,
       grace: float | None = None, wait_lock: float = 0.0, on_wait: Callable[[str], None] | None = None,
       repack: bool = False, progress: Progress = NULL) -> GcResult:
    if scope not in SCOPES:
        raise MlvcError(f"gc scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if repack:
        if remote is not None:
            raise UsageError("--repack works on the cache only (a remote receives what a push sends: repack "
                             "the cache, then push)")
        return gc_local(repo, scope, dry_run=dry_run, grace=grace, repack=True, progress=progress)
    if remote is not None:
        return gc_remote(repo, scope, remote or None, dry_run=dry_run, grace=grace, wait_lock=wait_lock,
                         on_wait=on_wait)
    return gc_local(repo, scope, dry_run=dry_run, grace=grace)


__all__ = ["gc", "gc_local", "gc_remote", "GcResult", "SCOPES", "CHUNK", "TREE_MANIFEST"]
