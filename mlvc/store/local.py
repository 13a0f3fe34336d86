"""A directory on this machine (also an NFS/SMB share mounted here) as a `Backend`.

Writes go to a sibling temp file (``<key>.tmp-<host>-<pid>-<rand>``), are
fsynced and published with ``link()`` (fails atomically when the target exists,
also on NFS) or ``rename()``; the directory is fsynced after.  The local cache
and a shared-disk remote are both this class.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from pathlib import Path
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import (DiskError, LockedError, MlvcError, ObjectNotFoundError, Remedy, RemoteNotFoundError,
                      RemoteUnreachableError)
from ..atomic import fsync_dir, pid_alive, replacing, sweep, write_bytes
from .backend import (
    BACKEND_TEMPS,
    TEMP_MARKER,
    Backend,
    Capabilities,
    ProgressCallback,
    host_tag,
    temp_beside,
    temp_sibling,
    validate_key,
    validate_prefix,
)

def _guard_holder_gone(guard: str) -> bool:
    """Was the guard taken by a process of this machine that no longer runs?  (It holds
    "<host> <pid>"; an empty one, or another machine's, is judged by its age only.)"""
    try:
        with open(guard, "rb") as f:
            host, _sep, pid = f.read(200).decode("ascii", "replace").partition(" ")
    except OSError:
        return False
    return host == host_tag() and pid.isdigit() and not pid_alive(int(pid))


COPY_BLOCK_BYTES = 1 << 20
COPY_RANGE_BYTES = 16 << 20
GUARD_STALE_S = 30.0  # guarded sections take milliseconds; an older guard belongs to a dead process
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG})
_UNREACHABLE_ERRNOS = frozenset({
    errno.ESTALE, errno.ENOTCONN, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ETIMEDOUT,
    errno.ENETUNREACH, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
})
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK,
                                 errno.EXDEV})


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def content_tag(data: bytes) -> str:
    """Version tag of a directory object (S3 uses the ETag instead)."""
    return hashlib.sha256(data).hexdigest()


def _copy_stream(src: BinaryIO, dst: BinaryIO, callback: ProgressCallback | None) -> None:
    """Copy file to file: in the kernel (`copy_file_range`) where it can, else through a buffer."""
    try:
        while True:
            n = os.copy_file_range(src.fileno(), dst.fileno(), COPY_RANGE_BYTES)
            if not n:
                return
            if callback is not None:
                callback(n)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
            raise
    while True:
        block = src.read(COPY_BLOCK_BYTES)
        if not block:
            return
        dst.write(block)
        if callback is not None:
            callback(len(block))


def _write_durably(path: str, data: bytes) -> None:
    with open(path, "xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _publish_no_overwrite(temp: str, final: str) -> bool:
    """Move a finished temp file to `final` unless `final` exists; True if this call published it.

    On filesystems without hard links (SMB, some FUSE mounts) fall back to
    check-then-rename: that window can only replace an object with identical
    bytes, because names are derived from content.
    """
    try:
        os.link(temp, final)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARDLINK_ERRNOS:
            raise
    if os.path.exists(final):
        return False
    os.replace(temp, final)
    return True


def _copy_in(source: str, final: str, callback: ProgressCallback | None) -> bool:
    """Copy `source` to a temp sibling of `final`, fsync it, publish it unless `final` exists."""
    temp = temp_sibling(final)
    try:
        with open(source, "rb") as src, open(temp, "xb") as dst:
            _copy_stream(src, dst, callback)
            dst.flush()
            os.fsync(dst.fileno())
        return _publish_no_overwrite(temp, final)
    finally:
        unlink_quietly(temp)


class LocalBackend(Backend):
    capabilities = Capabilities(atomic_create=True, conditional=True, ranged_read=True, local_files=True)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = os.path.abspath(os.path.expanduser(os.fspath(path)))

    def describe(self) -> str:
        return self.root

    # -- errors: the one place where OS errors of this kind become mlvc errors
    def _translate(self, exc: OSError, key: str | None, local_path: str | None) -> MlvcError | None:
        if exc.errno in _UNREACHABLE_ERRNOS:
            return RemoteUnreachableError(f"{self.root} is unreachable ({os.strerror(exc.errno)})",
                                          hint="is the share mounted and its server up? then retry")
        if exc.errno in DISK_ERRNOS:
            # a link or rename names its destination second: the file in this store, not the source
            return DiskError(f"cannot write {exc.filename2 or exc.filename or local_path or self.root}: "
                             f"{os.strerror(exc.errno)}")
        if isinstance(exc, FileNotFoundError):
            filename = str(exc.filename) if exc.filename else ""
            if local_path is not None and filename.startswith(local_path):
                return None  # the caller's own local file is missing: not a store problem
            if not os.path.isdir(self.root):
                return RemoteNotFoundError(f"directory {self.root} does not exist",
                                           hint="is the share mounted?", remedy=Remedy.REMOTE_URL)
            if key is not None:
                return ObjectNotFoundError(key, where=self.root)
        return None

    @contextlib.contextmanager
    def _translated(self, key: str | None = None, local_path: str | None = None) -> Iterator[None]:
        try:
            yield
        except MlvcError:
            raise
        except OSError as exc:
            mapped = self._translate(exc, key, local_path)
            if mapped is None:
                raise
            raise mapped from exc

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *validate_key(key).split("/"))

    def local_path(self, key: str) -> str:
        return self._path(key)

    def _require_base(self) -> None:
        if not os.path.isdir(self.root):
            raise FileNotFoundError(errno.ENOENT, "the store's directory is missing", self.root)

    # -- base
    def ensure_base(self) -> None:
        """Create the last component only, so an unmounted share errors instead of filling the local disk."""
        with self._translated():
            parent = os.path.dirname(self.root)
            if not os.path.isdir(parent):
                raise RemoteNotFoundError(
                    f"directory {self.root} cannot be created: {parent} does not exist",
                    hint="is the share mounted? create the parent directory or fix the remote URL")
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.root)
            if not os.path.isdir(self.root):
                raise RemoteNotFoundError(f"{self.root} exists but is not a directory")

    # -- queries
    def exists(self, key: str) -> bool:
        path = self._path(key)
        self._count()
        try:
            return stat.S_ISREG(os.stat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def size(self, key: str) -> int:
        with self._translated(key):
            self._count()
            return os.stat(self._path(key)).st_size

    def mtime(self, key: str) -> float | None:
        with self._translated(key):
            self._count()
            return os.stat(self._path(key)).st_mtime

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        directory = prefix.rpartition("/")[0]
        with self._translated():
            self._count()
            start = self._path(directory) if directory else self.root
            if not os.path.isdir(start):
                self._require_base()
                return []
            keys = []
            for dirpath, _dirnames, filenames in os.walk(start):
                for name in filenames:
                    if TEMP_MARKER in name:
                        continue
                    relative = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                    if relative.startswith(prefix):
                        keys.append(relative)
            return sorted(keys)

    # -- reads
    def get_bytes(self, key: str) -> bytes:
        with self._translated(key):
            self._count()
            with open(self._path(key), "rb") as src:
                return src.read()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"invalid range start={start} length={length}")
        with self._translated(key):
            self._count()
            fd = os.open(self._path(key), os.O_RDONLY)
            try:
                return os.pread(fd, length, start)
            finally:
                os.close(fd)

    def get_file(self, key: str, local_path: str | os.PathLike[str], callback: ProgressCallback | None = None) -> None:
        target = os.fspath(local_path)
        with self._translated(key, target), replacing(Path(target), temp=temp_beside) as temp:
            self._count()
            with open(self._path(key), "rb") as src, open(temp, "xb") as dst:
                _copy_stream(src, dst, callback)
                dst.flush()
                os.fsync(dst.fileno())

    # -- writes
    def put_file(self, local_path: str | os.PathLike[str], key: str, callback: ProgressCallback | None = None, *,
                 move: bool = False) -> bool:
        source = os.fspath(local_path)
        final = self._path(key)
        with self._translated(key, source):
            self._count()
            if os.path.exists(final):
                if move:
                    unlink_quietly(source)
                return False
            self._require_base()
            os.makedirs(os.path.dirname(final), exist_ok=True)
            if move:
                # The caller's file is complete (and fsynced where it matters): publish it as is,
                # unless it is on another filesystem (a cache on a local disk, this directory on
                # a share): neither a link nor a rename crosses that, so it is copied.
                try:
                    published = _publish_no_overwrite(source, final)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    published = _copy_in(source, final, callback)
                else:
                    if callback is not None:
                        callback(os.path.getsize(final))
                unlink_quietly(source)
            else:
                published = _copy_in(source, final, callback)
        if published:
            fsync_dir(os.path.dirname(final))
        return published

    def put_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        with self._translated(key):
            self._count()
            self._require_base()
            os.makedirs(os.path.dirname(final), exist_ok=True)
            write_bytes(Path(final), data, fsync=True, temp=temp_beside)
            fsync_dir(os.path.dirname(final))

    def delete(self, key: str) -> None:
        with self._translated(key):
            self._count()
            unlink_quietly(self._path(key))

    def rename(self, key: str, new_key: str) -> None:
        source, target = self._path(key), self._path(new_key)
        with self._translated(key):
            self._count()
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
            fsync_dir(os.path.dirname(target))

    def cleanup(self, older_than_s: float) -> int:
        """Remove ``*.tmp-*`` files of writers that died more than `older_than_s` ago."""
        removed = 0
        now = time.time()
        with self._translated():
            if not os.path.isdir(self.root):
                return 0
            for dirpath, _dirnames, filenames in os.walk(self.root):
                removed += sweep(dirpath, BACKEND_TEMPS, dirs=False, max_age=older_than_s, now=now,
                                 only=filenames)
        return removed

    # -- conditional operations
    def create_bytes(self, key: str, data: bytes) -> str | None:
        final = self._path(key)
        with self._translated(key):
            self._count()
            self._require_base()
            os.makedirs(os.path.dirname(final), exist_ok=True)
            temp = temp_sibling(final)
            try:
                _write_durably(temp, data)
                try:
                    os.link(temp, final)
                except FileExistsError:
                    return None
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise
                    # no hard links here: O_EXCL is still atomic, but readers may briefly see it empty
                    try:
                        with open(final, "xb") as out:
                            out.write(data)
                            out.flush()
                            os.fsync(out.fileno())
                    except FileExistsError:
                        return None
            finally:
                unlink_quietly(temp)
            fsync_dir(os.path.dirname(final))
            return content_tag(data)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self.get_bytes(key)
        return data, content_tag(data)

    def replace_if_unchanged(self, key: str, data: bytes, tag: str) -> str | None:
        """Under the guard, check the tag and rename the new content over the old: readers see the
        old or the new object, never none (a lock being refreshed must never look free)."""
        final = self._path(key)
        with self._translated(key), self._guard(key):
            self._count()
            try:
                with open(final, "rb") as src:
                    current = src.read()
            except FileNotFoundError:
                return None
            if content_tag(current) != tag:
                return None
            write_bytes(Path(final), data, fsync=True, temp=temp_beside)
            fsync_dir(os.path.dirname(final))
            return content_tag(data)

    def delete_if_unchanged(self, key: str, tag: str) -> bool:
        with self._translated(key), self._guard(key):
            return self._remove_if(key, tag)

    def _remove_if(self, key: str, tag: str) -> bool:
        """Unlink an object if its content still matches `tag`.  Caller holds the guard."""
        final = self._path(key)
        self._count()
        try:
            with open(final, "rb") as src:
                current = src.read()
        except FileNotFoundError:
            return False
        if content_tag(current) != tag:
            return False
        os.unlink(final)
        fsync_dir(os.path.dirname(final))
        return True

    @contextlib.contextmanager
    def _guard(self, key: str) -> Iterator[None]:
        """Serialise check-then-delete, which a directory cannot do as one compare-and-swap.

        Creating an object is atomic on its own (link), so only removals take the
        guard: under it, the checked object cannot be swapped for another before
        it is unlinked, because that would need a removal too.
        """
        guard = self._path(key) + TEMP_MARKER + "guard"
        os.makedirs(os.path.dirname(guard), exist_ok=True)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    age = time.time() - os.stat(guard).st_mtime
                except FileNotFoundError:
                    continue
                # its holder killed on this machine (Ctrl-C, kill -9): a re-run must not wait it out
                if age > GUARD_STALE_S or _guard_holder_gone(guard):
                    unlink_quietly(guard)
                    continue
                if time.monotonic() > deadline:
                    raise LockedError(f"{guard} is held by another process",
                                      hint=f"if no mlvc process is running, delete {guard}") from None
                time.sleep(0.01)
            else:
                try:
                    os.write(fd, f"{host_tag()} {os.getpid()}".encode())
                except OSError:
                    pass  # a full disk: the guard is held all the same, judged by its age only
                finally:
                    os.close(fd)
                break
        try:
            yield
        finally:
            unlink_quietly(guard)
