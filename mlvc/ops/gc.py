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

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import codec
from .. import pointer as pointers
from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, RemoteNotFoundError
from ..hashing import digest, to_oid
from ..store.packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST, PackWriter, decode_index
from .common import reachable, select

SCOPES = ("workspace", "all-branches", "all-commits")
DEFAULT_GRACE_S = 3600.0
GRACE_ENV = "MLVC_GC_GRACE"


@dataclass
class PackPlan:
    name: str
    objects: int
    dead_objects: int
    dead_bytes: int  # stored (compressed) bytes that would go
    dead_raw_bytes: int
    delete_whole: bool


@dataclass
class GcResult:
    scope: str
    remote: str | None
    dry_run: bool
    kept_artifacts: int = 0
    live_objects: int = 0
    packs_scanned: int = 0
    packs_recent: int = 0  # skipped: newer than the grace period (or uploaded after gc started)
    packs_rewritten: int = 0
    packs_deleted: int = 0
    packs_written: int = 0
    objects_removed: int = 0
    bytes_removed: int = 0
    raw_bytes_removed: int = 0
    plans: list[PackPlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def grace_seconds(repo, grace: float | None) -> float:
    if grace is not None:
        return float(grace)
    env = os.environ.get(GRACE_ENV)
    if env:
        try:
            return float(env)
        except ValueError:
            raise MlvcError(f"{GRACE_ENV} must be a number of seconds, not {env!r}") from None
    try:
        configured = (repo.config.data.get("gc") or {}).get("grace_seconds")
    except (MlvcError, AttributeError):
        configured = None
    return float(configured) if configured is not None else DEFAULT_GRACE_S


# ------------------------------------------------------------------ kept pointers


def _workspace_pointers(repo, warnings: list[str]) -> list[pointers.PointerFile]:
    out = []
    for t in select(repo):
        if t.ptr is None:
            warnings.append(f"{t.rel_pointer}: {t.error} (ignored)")
        else:
            out.append(t.ptr)
    return out


def _history_pointers(repo, scope: str, warnings: list[str]) -> list[pointers.PointerFile]:
    if scope == "workspace" or not repo.has_git:
        if scope != "workspace":
            warnings.append("no git repository: only the workspace pointers are kept")
        return []
    from ..git import GitRepo
    from .log import _History

    git = GitRepo(repo.root)
    try:
        if not git.has_commits():
            return []
        if git.is_shallow():
            warnings.append("this is a shallow clone: commits beyond its depth are unknown, so objects only "
                            "they reference are not protected (run `git fetch --unshallow` first)")
        hist = _History(git, set(), None)
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


def kept_pointers(repo, scope: str, warnings: list[str]) -> list[pointers.PointerFile]:
    if scope not in SCOPES:
        raise MlvcError(f"gc scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    unique: dict[tuple[str, str], pointers.PointerFile] = {}
    for ptr in _workspace_pointers(repo, warnings) + _history_pointers(repo, scope, warnings):
        unique.setdefault((ptr.kind, ptr.oid), ptr)
    return list(unique.values())


def live_objects(store, ptrs, warnings: list[str], strict: bool = False) -> set[tuple[int, bytes]]:
    """Every (type, id) the pointers reach.  strict: a manifest that cannot be read is an error."""
    live: set[tuple[int, bytes]] = set()
    for ptr in ptrs:
        try:
            live.update(reachable(store, ptr))
        except (ObjectNotFoundError, CorruptObjectError) as exc:
            if strict:
                raise MlvcError(f"cannot tell what {ptr.path} ({ptr.oid}) needs: {exc}; nothing was deleted",
                                hint="push or fetch the missing manifest first") from None
            warnings.append(f"{ptr.path} ({ptr.oid}): {exc}; objects only it references cannot be identified")
    return live


# ------------------------------------------------------------------ local cache


def _plan(name: str, entries, live) -> tuple[PackPlan, list]:
    keep = [e for e in entries if (e.type, e.oid) in live]
    dead = [e for e in entries if (e.type, e.oid) not in live]
    return PackPlan(name, len(entries), len(dead), sum(e.stored for e in dead), sum(e.raw for e in dead),
                    not keep), keep


def _copy_live(readers, writer_dir: Path, publish_dir: Path, fsync: bool, pack_size: int,
               already: set[tuple[int, bytes]]) -> list[str]:
    """Copy live records (without recompressing) into new packs; returns the new pack names."""
    names: list[str] = []
    writer: PackWriter | None = None
    copied = set(already)
    try:
        for read, keep in readers:
            for e in keep:
                key = (e.type, e.oid)
                if key in copied:
                    continue
                payload = read(e)
                if len(payload) != e.stored:
                    raise CorruptObjectError(to_oid(e.oid), "a pack being rewritten", f"{e.stored} bytes",
                                             f"{len(payload)} bytes")
                _check(e, payload)
                if writer is None:
                    writer = PackWriter(writer_dir, fsync=fsync)
                writer.append(e.oid, e.type, e.codec, payload, e.raw)
                copied.add(key)
                if writer.size >= pack_size:
                    published = writer.publish(publish_dir)
                    writer = None
                    if published:
                        names.append(published[0])
        if writer is not None:
            published = writer.publish(publish_dir)
            writer = None
            if published:
                names.append(published[0])
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return names


def _check(e, payload: bytes) -> None:
    """Never carry a damaged object into a new pack (gc would launder the corruption)."""
    try:
        data = codec.decode(e.codec, payload, e.raw)
    except Exception:  # noqa: BLE001 - any decoder failure means a damaged record
        raise CorruptObjectError(to_oid(e.oid), "a pack being rewritten", "a decodable payload", "garbage") from None
    if e.type != FILE_MANIFEST and digest(data) != e.oid:
        raise CorruptObjectError(to_oid(e.oid), "a pack being rewritten", to_oid(e.oid), to_oid(digest(data)))


def gc_local(repo, scope: str = "workspace", *, dry_run: bool = False, grace: float | None = None) -> GcResult:
    # Exclusive against `add`/`fetch` (which hold the cache lock shared until their pointer or
    # objects are in place): every pointer an add will write is on disk before we read them.
    with repo.store.lock(exclusive=not dry_run):
        return _gc_local(repo, scope, dry_run=dry_run, grace=grace)


def _gc_local(repo, scope: str, *, dry_run: bool, grace: float | None) -> GcResult:
    result = GcResult(scope, None, dry_run)
    grace_s = grace_seconds(repo, grace)
    store = repo.store
    ptrs = kept_pointers(repo, scope, result.warnings)
    result.kept_artifacts = len(ptrs)
    live = live_objects(store, ptrs, result.warnings)
    store.refresh()
    packs_dir = store.packs_dir
    now = time.time()
    indexes: dict[str, list] = {}
    for name in sorted(store.pack_names()):
        idx, pack = packs_dir / f"{name}.idx", packs_dir / f"{name}.pack"
        try:
            mtime = max(idx.stat().st_mtime, pack.stat().st_mtime)
            entries = decode_index(idx.read_bytes(), f"pack index {name}")
        except FileNotFoundError:
            continue  # removed by another gc meanwhile
        result.packs_scanned += 1
        if now - mtime < grace_s:
            result.packs_recent += 1
            continue
        indexes[name] = entries

    def plan(live_set):
        plans, keeps = [], {}
        for name, entries in indexes.items():
            p, keep = _plan(name, entries, live_set)
            if p.dead_objects:
                plans.append(p)
                keeps[name] = keep
        return plans, keeps

    plans, keeps = plan(live)
    if not dry_run and plans:
        # A pointer written by a concurrent `mlvc add` since we started must keep its objects.
        again = kept_pointers(repo, "workspace", [])
        new = [p for p in again if (p.kind, p.oid) not in {(q.kind, q.oid) for q in ptrs}]
        if new:
            live |= live_objects(store, new, result.warnings)
            plans, keeps = plan(live)
    result.live_objects = len(live)
    result.plans = plans
    for p in plans:
        result.objects_removed += p.dead_objects
        result.bytes_removed += p.dead_bytes
        result.raw_bytes_removed += p.dead_raw_bytes
    if dry_run or not plans:
        return result

    rewritten = {p.name for p in plans}
    in_kept_packs = {(e.type, e.oid) for name in store.pack_names() if name not in rewritten
                     for e in indexes.get(name, ())}
    for name in store.pack_names():  # recent packs too: their objects need no copy
        if name not in rewritten and name not in indexes:
            try:
                in_kept_packs.update((e.type, e.oid) for e in
                                     decode_index((packs_dir / f"{name}.idx").read_bytes(), name))
            except (FileNotFoundError, CorruptObjectError):
                pass
    fds: dict[str, int] = {}
    try:
        readers = []
        for p in plans:
            if p.delete_whole:
                continue
            fd = os.open(packs_dir / f"{p.name}.pack", os.O_RDONLY)
            fds[p.name] = fd
            readers.append((lambda e, fd=fd: os.pread(fd, e.stored, e.offset), keeps[p.name]))
        store.ensure_dirs()
        new_names = _copy_live(readers, store.tmp_dir, packs_dir, store.fsync, store.pack_size, in_kept_packs)
    finally:
        for fd in fds.values():
            os.close(fd)
    result.packs_written = len(new_names)
    for p in plans:
        if p.name in new_names:  # identical content re-published under the same name
            continue
        (packs_dir / f"{p.name}.idx").unlink(missing_ok=True)
        (packs_dir / f"{p.name}.pack").unlink(missing_ok=True)
        if p.delete_whole:
            result.packs_deleted += 1
        else:
            result.packs_rewritten += 1
    repo.state.clear_complete()
    store.sweep_tmp()
    return result


# ------------------------------------------------------------------ remote


def open_backend(repo, name: str | None):
    """(name, RemoteBackend) of a configured remote (the default one when name is None)."""
    try:
        from ..remote.config import load_remote
    except ImportError:
        load_remote = None
    if load_remote is not None:
        rdef = load_remote(repo, name)
        return rdef.name, rdef.backend()
    from ..remote.backend import RemoteBackend

    remotes = repo.config["remotes"] or {}
    name = name or repo.config.data.get("default_remote")
    if not name:
        raise RemoteNotFoundError("no remote named and no default remote configured",
                                  hint="use `--remote NAME` or `mlvc remote default NAME`")
    cfg = remotes.get(name)
    if cfg is None:
        raise RemoteNotFoundError(f"no remote named {name!r} in .mlvc/config",
                                  hint="list them with `mlvc remote list`")
    if isinstance(cfg, str):
        return name, RemoteBackend(cfg)
    options = {k: v for k, v in cfg.items() if k != "url" and v is not None}
    return name, RemoteBackend(str(cfg["url"]), options)


def _remote_mtime(backend, key: str) -> float | None:
    try:
        return backend.mtime(key)
    except MlvcError:
        return None


class _RemoteObjects:
    """Reads manifests for the reachability walk: local cache first, else the remote's packs."""

    def __init__(self, store, backend, indexes: dict[str, list]):
        self.store, self.backend = store, backend
        self.where: dict[tuple[int, bytes], tuple[str, object]] = {}
        for name, entries in indexes.items():
            for e in entries:
                self.where.setdefault((e.type, e.oid), (name, e))

    def get(self, typ: int, oid: bytes) -> bytes:
        if self.store.has_any(typ, oid):
            return self.store.get(typ, oid)
        loc = self.where.get((typ, oid))
        if loc is None:
            raise ObjectNotFoundError(to_oid(oid), f"remote {self.backend.describe()}")
        name, e = loc
        payload = self.backend.get_range(f"packs/{name}.pack", e.offset, e.stored)
        _check(e, payload)
        return codec.decode(e.codec, payload, e.raw)


def gc_remote(repo, scope: str, remote: str | None, *, dry_run: bool = False, grace: float | None = None,
              lock_ttl: float = 3600.0, owner: str | None = None, _after_snapshot=None) -> GcResult:
    from ..remote.lock import RemoteLock, default_owner

    name, backend = open_backend(repo, remote)
    result = GcResult(scope, name, dry_run)
    grace_s = grace_seconds(repo, grace)
    lock = RemoteLock(backend, owner=owner or f"mlvc gc ({default_owner()})", ttl_s=lock_ttl)
    with lock:
        if lock.broken is not None:
            why = "its process is gone" if lock.broken.is_abandoned() else "it had expired"
            result.warnings.append(f"took over the gc lock of {lock.broken.describe()}: {why}")
        started = time.time()
        snapshot = backend.list("packs/")  # packs uploaded after this are never touched
        _check_pushers(backend, dry_run, result.warnings)
        names = sorted({k[len("packs/"):-4] for k in snapshot if k.endswith(".idx")}
                       & {k[len("packs/"):-5] for k in snapshot if k.endswith(".pack")})
        indexes: dict[str, list] = {}
        all_indexes: dict[str, list] = {}
        for pname in names:
            try:
                entries = decode_index(backend.get_bytes(f"packs/{pname}.idx"), f"remote pack index {pname}")
            except ObjectNotFoundError:
                continue
            result.packs_scanned += 1
            all_indexes[pname] = entries
            mtime = _remote_mtime(backend, f"packs/{pname}.pack")
            if mtime is not None and started - mtime < grace_s:
                result.packs_recent += 1
                continue
            indexes[pname] = entries
        if _after_snapshot is not None:  # tests: act as a concurrent pusher at the worst moment
            _after_snapshot()
        ptrs = kept_pointers(repo, scope, result.warnings)
        result.kept_artifacts = len(ptrs)
        reader = _RemoteObjects(repo.store, backend, all_indexes)
        live = live_objects(reader, ptrs, result.warnings, strict=True)
        result.live_objects = len(live)
        keeps = {}
        for pname, entries in indexes.items():
            p, keep = _plan(pname, entries, live)
            if p.dead_objects:
                result.plans.append(p)
                keeps[pname] = keep
                result.objects_removed += p.dead_objects
                result.bytes_removed += p.dead_bytes
                result.raw_bytes_removed += p.dead_raw_bytes
        if dry_run or not result.plans:
            return result
        rewritten = {p.name for p in result.plans}
        in_kept = {(e.type, e.oid) for pname, entries in all_indexes.items() if pname not in rewritten
                   for e in entries}
        work = Path(tempfile.mkdtemp(prefix="mlvc-gc-"))
        fds: list[int] = []
        try:
            readers = []
            for p in result.plans:
                if p.delete_whole:
                    continue
                local = work / f"{p.name}.pack"
                backend.get_file(f"packs/{p.name}.pack", local)
                lock.refresh()
                fd = os.open(local, os.O_RDONLY)
                fds.append(fd)
                readers.append((lambda e, fd=fd: os.pread(fd, e.stored, e.offset), keeps[p.name]))
            out_dir = work / "out"
            out_dir.mkdir()
            new_names = _copy_live(readers, work, out_dir, True, repo.store.pack_size, in_kept)
            for new in new_names:  # pack first, then its index: an index never names a missing pack
                backend.put_file(out_dir / f"{new}.pack", f"packs/{new}.pack")
                backend.put_file(out_dir / f"{new}.idx", f"packs/{new}.idx")
                lock.refresh()
            result.packs_written = len(new_names)
            for p in result.plans:
                if p.name in new_names:
                    continue
                backend.delete(f"packs/{p.name}.idx")
                backend.delete(f"packs/{p.name}.pack")
                if p.delete_whole:
                    result.packs_deleted += 1
                else:
                    result.packs_rewritten += 1
        finally:
            for fd in fds:
                os.close(fd)
            shutil.rmtree(work, ignore_errors=True)
    return result


def _check_pushers(backend, dry_run: bool, warnings: list[str]) -> None:
    """Stop (LockedError) if a push holds its shared lock on the remote.

    Runs after the gc lock is ours and after the pack listing: a push that
    created its lock before this check is seen here; one that creates it later
    sees our gc lock, and then either relies on nothing already on the remote
    (everything it uploads is newer than our listing, so we never touch it) or
    gives up before uploading.  Expired push locks (killed pushers) are ignored
    and removed.
    """
    from ..errors import LockedError
    from ..remote.lock import PUSH_LOCK_PREFIX, active_locks, describe_locks, remove_expired_locks

    now = time.time()
    pushers = active_locks(backend, PUSH_LOCK_PREFIX, now=now)
    if pushers and dry_run:
        warnings.append(f"a push is running ({describe_locks(pushers)}); a real gc would wait for it")
        return
    if pushers:  # the caller's `with lock:` releases the gc lock on the way out
        raise LockedError(
            f"remote {backend.describe()} has {len(pushers)} push(es) in progress: "
            f"{describe_locks(pushers)}; nothing was deleted",
            hint="run gc again when the push has finished (a crashed pusher's lock stops "
                 "counting once it expires)")
    if not dry_run:
        remove_expired_locks(backend, PUSH_LOCK_PREFIX, now=now)


def gc(repo, scope: str = "workspace", remote: str | None = None, dry_run: bool = False,
       grace: float | None = None) -> GcResult:
    if scope not in SCOPES:
        raise MlvcError(f"gc scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if remote is not None:
        return gc_remote(repo, scope, remote or None, dry_run=dry_run, grace=grace)
    return gc_local(repo, scope, dry_run=dry_run, grace=grace)


__all__ = ["gc", "gc_local", "gc_remote", "GcResult", "SCOPES", "CHUNK", "TREE_MANIFEST"]
