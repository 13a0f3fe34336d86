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
plausible clock skew between machines.  Long operations call `refresh()`
periodically; it raises LockedError if the lock was lost.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType

from mlvc.errors import LockedError, ObjectNotFoundError
from mlvc.remote.backend import RemoteBackend

DEFAULT_LOCK_NAME = "locks/gc.lock"
DEFAULT_TTL_S = 3600.0
ACQUIRE_ATTEMPTS = 5  # each lost race means someone else made progress; give up after a few


def _format_time(timestamp: float) -> str:
    if math.isnan(timestamp):
        return "unknown"
    if math.isinf(timestamp):
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class LockInfo:
    """What a lock object says about its holder.  Times are Unix seconds."""

    owner: str
    host: str
    pid: int
    created: float
    expires: float
    token: str  # unique per acquisition: tells our own lock apart from a successor's

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

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
                       token=str(fields.get("token", "")))
        except (ValueError, TypeError, KeyError):
            return None


def _unreadable_lock() -> LockInfo:
    """Stands in for lock content we cannot parse.  It never expires: only a person may remove it,
    since guessing wrong would let two garbage collections run at once."""
    return LockInfo(owner="unknown (unreadable lock object)", host="unknown", pid=0,
                    created=math.nan, expires=math.inf, token="")


class RemoteLock:
    """Exclusive lease on a remote.  Use as a context manager or call acquire()/release()."""

    def __init__(self, backend: RemoteBackend, name: str = DEFAULT_LOCK_NAME,
                 owner: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.backend = backend
        self.name = name
        self.owner = owner or default_owner()
        self.ttl_s = float(ttl_s)
        self._held: tuple[LockInfo, str] | None = None  # what we wrote and its version tag

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lock (it may have expired since)."""
        return self._held is not None

    def _new_info(self) -> LockInfo:
        now = time.time()
        return LockInfo(owner=self.owner, host=socket.gethostname(), pid=os.getpid(),
                        created=now, expires=now + self.ttl_s, token=uuid.uuid4().hex)

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
            if not holder.is_expired():
                raise self._locked_error(holder)
            tag = self.backend.replace_if_unchanged(self.name, info.to_json(), current_tag)
            if tag is not None:
                self._held = (info, tag)
                return info
            # another process broke or released it first; look again
        holder = self.held_by()
        if holder is not None:
            raise self._locked_error(holder)
        raise LockedError(f"{self.name} on remote {self.backend.describe()} is contended; could not acquire it",
                          hint="retry in a moment")

    def _locked_error(self, holder: LockInfo) -> LockedError:
        if math.isinf(holder.expires):
            hint = (f"if no mlvc operation is running against this remote, delete {self.name} from it "
                    "and run the command again")
        else:
            hint = (f"wait for that operation to finish; if it crashed, the lock can be taken over "
                    f"after {_format_time(holder.expires)}")
        return LockedError(
            f"{self.name} on remote {self.backend.describe()} is held by {holder.describe()}", hint=hint)

    def refresh(self) -> LockInfo:
        """Extend our lease by ttl_s from now.  LockedError if the lock is no longer ours."""
        if self._held is None:
            raise LockedError(f"{self.name} on remote {self.backend.describe()} is not held by this process")
        info, tag = self._held
        renewed = LockInfo(owner=info.owner, host=info.host, pid=info.pid, created=info.created,
                           expires=time.time() + self.ttl_s, token=info.token)
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
