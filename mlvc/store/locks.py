"""A lease-style lock stored as one small object on a remote.

Garbage collection deletes packs that concurrent pushes may still reference,
so at most one gc may run against a remote.  The lock is an object (by default
``locks/gc.lock``) holding JSON ``{owner, host, pid, created, expires, token}``.

Atomicity comes from the backend's conditional operations, never from
read-then-write:

* acquire = create-if-absent (directory: temp file + ``link()``; S3: PUT with
  ``If-None-Match: *``, which AWS S3, MinIO and moto 5 honour);
* an expired lock is taken over by replace-if-unchanged (S3: PUT with
  ``If-Match: <etag>``), so of several processes breaking the same expired lock
  exactly one wins;
* release and refresh only touch the object if it is still the version we
  wrote (S3: DELETE/PUT with ``If-Match``), so a holder that outlived its lease
  never removes its successor's lock.

A holder's lease is judged by the reader's clock; keep `ttl_s` far above any
plausible clock skew between machines.

A lock also records which machine and process wrote it (`machine`: hostname, boot id and pid
namespace; `started`: the pid's start time).  A lock whose writer ran on *this* machine and is no
longer running (its pid is gone, or now belongs to a process started later) is abandoned: it is
broken at once, by the same conditional replace/delete, instead of blocking gc and push until it
expires.  A lock from another machine cannot be judged so; it expires as above, or a person
removes it with `mlvc remote unlock NAME` (`break_locks`).  Long operations call `refresh()`
periodically; it raises LockedError if the lock was lost.

Shared locks (`SharedLock`): each holder creates its *own* object under a common
prefix (pushers: ``locks/push-<host>-<pid>-<uuid>.lock``, same JSON), and the
exclusive holder (gc) lists that prefix with `list_locks`.  Both sides create
their own lock first and look for the other's second, so of two racing
operations at least one sees the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TypeVar

from ..errors import LockedError, ObjectNotFoundError, Remedy
from ..atomic import pid_alive
from .backend import Backend

DEFAULT_LOCK_NAME = "locks/gc.lock"
PUSH_LOCK_PREFIX = "locks/push-"
LOCK_SUFFIX = ".lock"
DEFAULT_TTL_S = 3600.0
ACQUIRE_ATTEMPTS = 5  # each lost race means someone else made progress; give up after a few


def _format_time(timestamp: float) -> str:
    if math.isnan(timestamp):
        return "unknown"
    if math.isinf(timestamp):
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


format_time = _format_time


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_id() -> str:
    """Who can judge our pids: same hostname, same running kernel (boot id) and same pid namespace.
    Two containers with one hostname, or one machine after a reboot, give different ids."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    boot = _read_text("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}|{boot}|{pid_ns}"


def process_start(pid: int) -> str:
    """The start time of `pid` (clock ticks since boot, from /proc), or "" where unknown.
    With the boot id in `machine_id`, (pid, start) names one process: a reused pid differs."""
    stat = _read_text(f"/proc/{pid}/stat")
    if not stat:
        return ""
    try:
        return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in (...) may hold spaces
    except IndexError:
        return ""


@dataclass(frozen=True)
class LockInfo:
    """What a lock object says about its holder.  Times are Unix seconds."""

    owner: str
    host: str
    pid: int
    created: float
    expires: float
    token: str  # unique per acquisition: tells our own lock apart from a successor's
    machine: str = ""  # `machine_id()` of the writer ("" in locks of older versions)
    started: str = ""  # `process_start(pid)` of the writer

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    def is_abandoned(self) -> bool:
        """True when the writer ran on this machine and is certainly not running any more."""
        if not self.machine or self.machine != machine_id():
            return False
        if not pid_alive(self.pid):
            return True
        now_started = process_start(self.pid)
        return bool(self.started and now_started and now_started != self.started)

    def is_stale(self, now: float | None = None) -> bool:
        """Expired, or abandoned by a dead process of this machine: safe to break."""
        return self.is_expired(now) or self.is_abandoned()

    def describe(self) -> str:
        return (f"{self.owner} (host {self.host}, pid {self.pid}) since {_format_time(self.created)}, "
                f"expires {_format_time(self.expires)}")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockInfo | None:
        """None when the content is not a lock we understand."""
        try:
            fields = json.loads(data)
            return cls(owner=str(fields["owner"]), host=str(fields["host"]), pid=int(fields["pid"]),
                       created=float(fields["created"]), expires=float(fields["expires"]),
                       token=str(fields.get("token", "")), machine=str(fields.get("machine", "")),
                       started=str(fields.get("started", "")))
        except (ValueError, TypeError, KeyError):
            return None


def _unreadable_lock() -> LockInfo:
    """Stands in for lock content we cannot parse.  It never expires: only a person may remove it,
    since guessing wrong would let two garbage collections run at once."""
    return LockInfo(owner="unknown (unreadable lock object)", host="unknown", pid=0,
                    created=math.nan, expires=math.inf, token="")


class RemoteLock:
    """Exclusive lease on a remote.  Use as a context manager or call acquire()/release()."""

    def __init__(self, backend: Backend, name: str = DEFAULT_LOCK_NAME,
                 owner: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.backend = backend
        self.name = name
        self.owner = owner or default_owner()
        self.ttl_s = float(ttl_s)
        self._held: tuple[LockInfo, str] | None = None  # what we wrote and its version tag
        self.broken: LockInfo | None = None  # the abandoned or expired lock `acquire` took over

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lock (it may have expired since)."""
        return self._held is not None

    def _new_info(self) -> LockInfo:
        now = time.time()
        return LockInfo(owner=self.owner, host=socket.gethostname(), pid=os.getpid(),
                        created=now, expires=now + self.ttl_s, token=uuid.uuid4().hex,
                        machine=machine_id(), started=process_start(os.getpid()))

    def _read(self) -> tuple[LockInfo, str] | None:
        """The current lock and its version tag, or None if there is none."""
        try:
            data, tag = self.backend.get_tagged(self.name)
        except ObjectNotFoundError:
            return None
        return LockInfo.from_json(data) or _unreadable_lock(), tag

    def held_by(self) -> LockInfo | None:
        """The current holder (possibly expired), or None when the lock is free."""
        current = self._read()
        return current[0] if current else None

    def acquire(self) -> LockInfo:
        """Take the lock, breaking it if its holder's lease ran out; LockedError if someone holds it."""
        if self._held is not None:
            raise LockedError(f"{self.name} on remote {self.backend.describe()} is already held by this process")
        for _attempt in range(ACQUIRE_ATTEMPTS):
            info = self._new_info()
            tag = self.backend.create_bytes(self.name, info.to_json())
            if tag is not None:
                self._held = (info, tag)
                return info
            current = self._read()
            if current is None:
                continue  # released between our create and our read: try again
            holder, current_tag = current
            if holder.token and holder.token == info.token:
                # a retried PUT may report "exists" for our own write
                self._held = (holder, current_tag)
                return holder
            if not holder.is_stale():
                raise self._locked_error(holder)
            # Conditional on the version we read: of several processes breaking it, one wins.
            tag = self.backend.replace_if_unchanged(self.name, info.to_json(), current_tag)
            if tag is not None:
                self._held = (info, tag)
                self.broken = holder
                return info
            # another process broke or released it first; look again
        last = self.held_by()
        if last is not None:
            raise self._locked_error(last)
        raise LockedError(f"{self.name} on remote {self.backend.describe()} is contended; could not acquire it",
                          hint="retry in a moment")

    def _locked_error(self, holder: LockInfo) -> LockedError:
        remedy = None
        if math.isinf(holder.expires):
            hint = (f"if no mlvc operation is running against this remote, delete {self.name} from it "
                    "and run the command again")
        else:
            hint = (f"wait for that operation to finish; if it crashed on another machine, the lock can "
                    f"be taken over after {_format_time(holder.expires)}")
            remedy = Remedy.UNLOCK
        return LockedError(
            f"{self.name} on remote {self.backend.describe()} is held by {holder.describe()}", hint=hint,
            remedy=remedy)

    def refresh(self) -> LockInfo:
        """Extend our lease by ttl_s from now.  LockedError if the lock is no longer ours."""
        if self._held is None:
            raise LockedError(f"{self.name} on remote {self.backend.describe()} is not held by this process")
        info, tag = self._held
        renewed = dataclasses.replace(info, expires=time.time() + self.ttl_s)
        new_tag = self.backend.replace_if_unchanged(self.name, renewed.to_json(), tag)
        if new_tag is None:
            self._held = None
            holder = self.held_by()
            detail = f"; it is now held by {holder.describe()}" if holder else ""
            raise LockedError(f"lost {self.name} on remote {self.backend.describe()} (lease ran out){detail}")
        self._held = (renewed, new_tag)
        return renewed

    def release(self) -> bool:
        """Drop the lock.  False if it was no longer ours (expired and taken over), which leaves
        the successor's lock in place."""
        if self._held is None:
            return False
        _info, tag = self._held
        self._held = None
        return self.backend.delete_if_unchanged(self.name, tag)

    def __enter__(self) -> RemoteLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is None:
            self.release()
            return
        # the body already failed: report that failure, not a remote error during cleanup
        with contextlib.suppress(Exception):
            self.release()


# ---------------------------------------------------------------------- shared locks


@dataclass(frozen=True)
class ListedLock:
    """One lock object found under a prefix: its key, what it says, and its version tag."""

    key: str
    info: LockInfo
    tag: str


def list_locks(backend: Backend, prefix: str = PUSH_LOCK_PREFIX) -> list[ListedLock]:
    """Every lock object whose key starts with `prefix` (expired ones included).  Content we cannot
    parse is reported as a lock that never expires (see `_unreadable_lock`)."""
    found: list[ListedLock] = []
    for key in backend.list(prefix):
        if not key.endswith(LOCK_SUFFIX):
            continue
        try:
            data, tag = backend.get_tagged(key)
        except ObjectNotFoundError:
            continue  # released between the listing and the read
        found.append(ListedLock(key, LockInfo.from_json(data) or _unreadable_lock(), tag))
    return found


def active_locks(backend: Backend, prefix: str = PUSH_LOCK_PREFIX,
                 now: float | None = None) -> list[ListedLock]:
    """The locks under `prefix` that still count: unexpired, and not abandoned by a dead process."""
    now = time.time() if now is None else now
    return [lock for lock in list_locks(backend, prefix) if not lock.info.is_stale(now)]


def remove_expired_locks(backend: Backend, prefix: str = PUSH_LOCK_PREFIX,
                         now: float | None = None) -> int:
    """Delete the expired or abandoned locks under `prefix` (left by killed processes); how many
    went.  Conditional on their version, so a lock refreshed meanwhile stays."""
    now = time.time() if now is None else now
    removed = 0
    for lock in list_locks(backend, prefix):
        if lock.info.is_stale(now) and backend.delete_if_unchanged(lock.key, lock.tag):
            removed += 1
    return removed


def break_locks(backend: Backend, force: bool = False) -> list[ListedLock]:
    """`mlvc remote unlock`: delete the gc lock and every push lock; return what was removed.

    For a lock left by a process that crashed on another machine, which nothing here can judge.
    A lock held by a process still running on this machine is not removed (LockedError) unless
    `force`.  Each delete is conditional on the version read, so a lock taken meanwhile stays."""
    found = list_locks(backend, "locks/")
    live = [lock for lock in found if not lock.info.is_stale() and lock.info.machine == machine_id()]
    if live and not force:
        raise LockedError(f"remote {backend.describe()} is locked by a running process of this machine: "
                          f"{describe_locks(live)}", hint="wait for it to finish", remedy=Remedy.FORCE_UNLOCK)
    return [lock for lock in found if backend.delete_if_unchanged(lock.key, lock.tag)]


def describe_locks(locks: list[ListedLock], limit: int = 3) -> str:
    shown = "; ".join(f"{lock.info.describe()} [{lock.key}]" for lock in locks[:limit])
    return shown + (f"; and {len(locks) - limit} more" if len(locks) > limit else "")


def _name_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40].strip(".") or "host"


def shared_lock_name(prefix: str = PUSH_LOCK_PREFIX) -> str:
    """A fresh, unique key ``<prefix><host>-<pid>-<uuid>.lock``."""
    return f"{prefix}{_name_part(socket.gethostname())}-{os.getpid()}-{uuid.uuid4().hex}{LOCK_SUFFIX}"


class SharedLock(RemoteLock):
    """One holder's share of a shared lock: its own uniquely named lock object.

    Unlike `RemoteLock`, a lease that has already run out is never renewed:
    an exclusive holder may have ignored it meanwhile, so the holder must treat
    it as lost (`check()` raises LockedError).  `keep_alive()` refreshes the
    lease from a background thread while the body runs.
    """

    def __init__(self, backend: Backend, prefix: str = PUSH_LOCK_PREFIX, owner: str | None = None,
                 ttl_s: float = DEFAULT_TTL_S) -> None:
        super().__init__(backend, shared_lock_name(prefix), owner=owner, ttl_s=ttl_s)
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()  # refresh (background) vs check/release (caller)

    def refresh(self) -> LockInfo:
        with self._mutex:
            held = self._held
            if held is not None and held[0].is_expired():
                self._held = None
                self._lost = f"the lease of {self.name} on remote {self.backend.describe()} ran out"
                raise LockedError(self._lost)
            try:
                return super().refresh()
            except LockedError as exc:
                self._lost = str(exc)
                raise

    def check(self, margin_s: float = 0.0) -> None:
        """LockedError unless we still hold an unexpired lease (judged by our clock, with `margin_s` to spare)."""
        with self._mutex:
            held = self._held
            if self._lost is None and held is not None and held[0].is_expired(time.time() + margin_s):
                self._lost = f"the lease of {self.name} on remote {self.backend.describe()} ran out"
            if self._lost is not None or held is None:
                raise LockedError(self._lost or f"{self.name} on remote {self.backend.describe()} is not held",
                                  hint="run the command again")

    def _refresher(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.refresh()
            except LockedError:
                return  # check() reports it
            except Exception:  # noqa: BLE001 - a transient failure: the next round retries
                continue

    def keep_alive(self, interval_s: float | None = None) -> None:
        """Refresh the lease every `interval_s` (default a quarter of the ttl) until release()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresher, args=(interval_s or self.ttl_s / 4,),
                                        name="mlvc-lock-refresh", daemon=True)
        self._thread.start()

    def release(self) -> bool:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._mutex:
            return super().release()


# ---------------------------------------------------------------------- the push / gc protocol
# Pushes hold shared locks, gc the exclusive one; each side creates its own lock first and
# looks for the other's second, so of two racing operations at least one sees the other.


def take_push_lock(backend: Backend, ttl_s: float) -> SharedLock | None:
    """Create a push's shared lock, or None where the store cannot hold locks at all (no atomic
    create, or an S3 service without conditional requests): there `mlvc gc --remote` cannot
    take its lock either, so no gc can run against the push."""
    from .s3 import ConditionalRequestsUnsupported

    if not backend.capabilities.atomic_create:
        return None
    lock = SharedLock(backend, owner=f"mlvc push ({default_owner()})", ttl_s=ttl_s)
    try:
        lock.acquire()
    except ConditionalRequestsUnsupported:
        return None
    return lock


def gc_guard(backend: Backend, lock: SharedLock) -> Callable[[int, int], None] | None:
    """Look for a running gc (after the push's own lock exists); returns the check for the push
    plan, or None when no gc runs.

    No gc running: any gc that starts later sees the push lock and stops before it
    deletes anything, so the plan may rely on whatever the store has.  A gc
    running: it may delete any pack it listed, so the push may go ahead only if
    it relies on nothing already there.  gc lists the packs before it looks for
    push locks, so either it sees our lock (and stops), or its listing is older
    than anything we upload (and it never touches those packs).  Otherwise:
    LockedError (exit 13) before the first upload that would rely on them (the
    transfer checks before each batch it copies).
    """
    holder = RemoteLock(backend).held_by()
    if holder is None or holder.is_stale():  # expired, or left by a gc killed on this machine
        return None
    if math.isinf(holder.expires):
        hint = (f"if no gc is running against this remote, delete {DEFAULT_LOCK_NAME} "
                "from it and push again")
    else:
        hint = (f"push again when that gc has finished (if it crashed, its lock stops counting at "
                f"{_format_time(holder.expires)})")

    def check_plan(reused: int, copied: int) -> None:
        if reused:
            lock.release()
            done = ("nothing was uploaded" if not copied else
                    f"it stopped after uploading {copied} object(s), which a re-run reuses")
            raise LockedError(
                f"remote {backend.describe()} is being garbage-collected by {holder.describe()} "
                f"[{DEFAULT_LOCK_NAME}], and this push relies on {reused} object(s) already there that "
                f"it may delete; {done}", hint=hint)

    return check_plan


def check_pushers(backend: Backend, dry_run: bool, warnings: list[str]) -> None:
    """Stop (LockedError) if a push holds its shared lock.

    gc runs this after its own lock is taken and after its pack listing: a push that
    created its lock before this check is seen here; one that creates it later sees the
    gc lock, and then either relies on nothing already on the store (everything it
    uploads is newer than the listing, so gc never touches it) or gives up before
    uploading.  Expired push locks (killed pushers) are ignored and removed.
    """
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


# ---------------------------------------------------------------------- --wait-lock

WAIT_POLL_S = 0.25  # how often a waiting command looks at the other side's locks again
_T = TypeVar("_T")


def wait_for_lock(attempt: Callable[[], _T], wait_s: float, *, free: Callable[[], bool] | None = None,
                  on_wait: Callable[[str], None] | None = None, poll_s: float = WAIT_POLL_S) -> _T:
    """Run `attempt()`; while it raises LockedError and `wait_s` seconds have not passed, wait
    and run it again (`--wait-lock`).  The last LockedError is raised once the time is up.

    `free()` (optional) is polled between attempts without taking any lock of our own and
    says whether the other side seems done; only then is `attempt` run again, so a waiting
    command never makes the holder give up by planting its own lock meanwhile.
    `on_wait(message)` is called once, when the first wait starts (operations report, the
    CLI prints)."""
    deadline = time.monotonic() + max(0.0, wait_s)
    told = False
    while True:
        try:
            return attempt()
        except LockedError as exc:
            if time.monotonic() >= deadline:
                raise
            if not told and on_wait is not None:
                on_wait(f"{exc}; waiting up to {wait_s:g} s for it")
                told = True
        while True:
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
            if time.monotonic() >= deadline or free is None:
                break
            try:
                if free():
                    break
            except LockedError:
                continue


def gc_lock_free(backend: Backend) -> bool:
    """No gc holds the remote's gc lock (or only an expired or abandoned one)."""
    holder = RemoteLock(backend).held_by()
    return holder is None or holder.is_stale()


def remote_unlocked(backend: Backend) -> bool:
    """Neither a gc nor a push holds a lock that counts: what a waiting gc waits for."""
    return gc_lock_free(backend) and not active_locks(backend, PUSH_LOCK_PREFIX)
