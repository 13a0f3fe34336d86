"""Any fsspec URL (gcs://, az://, sftp://, memory://, ...) as a `Backend`; the base of `S3Backend`.

fsspec is imported lazily because importing it (and s3fs/botocore) costs more
than the whole CLI start-up budget, and most commands never touch a remote.
A filesystem object does not survive fork (its event loop thread stays behind),
so a child process builds its own on first use.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..atomic import replacing
from ..errors import (
    DiskError,
    MlvcError,
    ObjectNotFoundError,
    RemoteAuthError,
    RemoteError,
    RemoteNotFoundError,
    RemoteTimeoutError,
    RemoteUnreachableError,
)
from .backend import Backend, Capabilities, ProgressCallback, temp_beside, validate_key, validate_prefix
from .local import DISK_ERRNOS

_UNREACHABLE_ERRNOS = frozenset({
    errno.ESTALE, errno.ENOTCONN, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ETIMEDOUT,
    errno.ENETUNREACH, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
})
S3_OPTION_NAMES = ("endpoint_url", "region", "profile", "access_key_id", "secret_access_key")
# After a request timed out with nothing answering meanwhile, later requests fail at once for this
# long (unless one in flight answers): each would otherwise wait out its own timeouts and retries,
# and a push has several queued (packs, indexes, the lock release), so minutes would add up.
STALL_HOLD_S = 60.0


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and its causes: s3fs re-raises botocore errors as OSError subclasses with the original as cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable_reason(exc: BaseException) -> str | None:
    """A short, secret-free reason if `exc` means "could not talk to the server", else None."""
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    aiohttp = sys.modules.get("aiohttp")
    for item in exception_chain(exc):
        if botocore_exceptions is not None and isinstance(item, (
            botocore_exceptions.EndpointConnectionError,
            botocore_exceptions.ConnectTimeoutError,
            botocore_exceptions.ReadTimeoutError,
            botocore_exceptions.ConnectionClosedError,
            botocore_exceptions.HTTPClientError,
        )):
            return type(item).__name__
        if aiohttp is not None and isinstance(item, aiohttp.ClientConnectionError):
            return type(item).__name__
        if isinstance(item, (ConnectionError, TimeoutError, socket.gaierror)):
            return type(item).__name__
        if isinstance(item, OSError) and item.errno in _UNREACHABLE_ERRNOS:
            return os.strerror(item.errno)
    return None


def timed_out(exc: BaseException) -> bool:
    """Does `exc` mean "the server did not answer in time" (rather than refused or dropped)?"""
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    aiohttp = sys.modules.get("aiohttp")
    for item in exception_chain(exc):
        if botocore_exceptions is not None and isinstance(item, (
            botocore_exceptions.ReadTimeoutError, botocore_exceptions.ConnectTimeoutError,
        )):
            return True
        if aiohttp is not None and isinstance(item, aiohttp.ServerTimeoutError):
            return True
        # asyncio's and fsspec's timeouts (FSTimeoutError from `sync(timeout=)`), socket.timeout
        if isinstance(item, TimeoutError) or (isinstance(item, OSError) and item.errno == errno.ETIMEDOUT):
            return True
    return False


class FsspecBackend(Backend):
    capabilities = Capabilities(ranged_read=True)

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.url = url
        self.options: dict[str, Any] = dict(options or {})
        parts = urlsplit(url)
        self._base = (parts.netloc.rpartition("@")[2] + parts.path).rstrip("/")
        if not self._base:
            raise RemoteNotFoundError(f"{self.describe()}: the URL names no bucket or base path")
        self._fs: Any = None
        self._fs_pid = 0
        # the circuit breaker of `_translated`: (the timeout error, when) while the remote counts as
        # stalled, and when a request last completed
        self._stall: tuple[RemoteTimeoutError, float] | None = None
        self._answered_at = float("-inf")

    def describe(self) -> str:
        """The base URL with credentials, query and fragment removed (safe to print or log)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

    def _where(self) -> str:
        return self.describe()

    # -- errors: the one place where this kind's failures become mlvc errors
    def _scrub(self, text: str) -> str:
        for name in ("secret_access_key", "access_key_id", "password", "token", "key", "secret"):
            value = self.options.get(name)
            if value:
                text = text.replace(str(value), "***")
        return text

    def _translate_service(self, exc: BaseException, key: str | None) -> MlvcError | None:
        """Errors a kind's service reports in its own terms (S3 error codes); none for plain fsspec."""
        return None

    def _translate(self, exc: Exception, key: str | None, local_path: str | None,
                   waited_s: float = 0.0) -> MlvcError | None:
        mapped = self._translate_service(exc, key)
        if mapped is not None:
            return mapped
        where = self._where()
        if timed_out(exc):
            return RemoteTimeoutError(f"remote {where} did not answer for {waited_s:.0f} s (timed out)",
                                      hint="check the network, the endpoint and that the server is up, then run "
                                           "the command again (it resumes where it stopped)")
        reason = unreachable_reason(exc)
        if reason is not None:
            return RemoteUnreachableError(f"remote {where} is unreachable ({reason})",
                                          hint="check the network, the endpoint and that the server is up, then retry")
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return DiskError(f"cannot write {exc.filename or local_path or where}: {os.strerror(exc.errno)}")
        if isinstance(exc, FileNotFoundError):
            filename = str(exc.filename) if exc.filename else ""
            if local_path is not None and filename.startswith(local_path):
                return None  # the caller's local file or directory is missing: not a remote problem
            if key is not None:
                return ObjectNotFoundError(key, where=f"remote {self.describe()}")
        if isinstance(exc, PermissionError):
            return RemoteAuthError(f"remote {where} denied access",
                                   hint="check the credentials and permissions for this remote")
        if isinstance(exc, OSError):
            return RemoteError(f"remote {where} failed: {self._scrub(str(exc))}")
        return None

    @contextlib.contextmanager
    def _translated(self, key: str | None = None, local_path: str | None = None) -> Iterator[None]:
        """Every request runs in here: errors become mlvc errors, and a remote that stopped answering
        fails the requests after the first timeout at once (see `STALL_HOLD_S`)."""
        self._fail_if_stalled()
        started = time.monotonic()
        try:
            yield
        except MlvcError:
            raise
        except Exception as exc:
            mapped = self._translate(exc, key, local_path, time.monotonic() - started)
            if mapped is None:
                raise
            if isinstance(mapped, RemoteTimeoutError) and self._answered_at < started:
                self._stall = (mapped, time.monotonic())  # nothing answered during the whole wait
            elif not isinstance(mapped, (RemoteUnreachableError, DiskError)):
                self._answered_at = time.monotonic()  # the server answered, if with an error
            if isinstance(mapped, RemoteAuthError):
                # client errors may echo request details; never chain them under an auth error
                raise mapped from None
            raise mapped from exc
        self._answered_at = time.monotonic()

    def _fail_if_stalled(self) -> None:
        stall = self._stall
        if stall is None:
            return
        error, since = stall
        if self._answered_at < since and time.monotonic() - since < STALL_HOLD_S:
            raise RemoteTimeoutError(str(error), hint=error.hint)
        if self._stall is stall:  # not a newer stall another thread just recorded
            self._stall = None  # something answered since, or long enough ago to try again

    # -- plumbing
    def _make_filesystem(self) -> Any:
        import fsspec

        storage_options = {k: v for k, v in self.options.items() if v is not None and k not in S3_OPTION_NAMES}
        if urlsplit(self.url).scheme == "local":
            # keys are paths below the base: a directory tree makes its directories as it is written
            storage_options.setdefault("auto_mkdir", True)
        fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self._base = str(root).rstrip("/")  # the protocol's own spelling of paths
        return fs

    def _filesystem(self) -> Any:
        if self._fs is None or self._fs_pid != os.getpid():
            self._fs = self._make_filesystem()
            self._fs_pid = os.getpid()
        return self._fs

    def _remote_path(self, key: str) -> str:
        self._filesystem()  # settles self._base
        return f"{self._base}/{validate_key(key)}"

    @staticmethod
    def _fsspec_callback(callback: ProgressCallback | None) -> Any:
        from fsspec.callbacks import DEFAULT_CALLBACK, Callback

        if callback is None:
            return DEFAULT_CALLBACK
        report: ProgressCallback = callback

        class ProgressBridge(Callback):  # type: ignore[misc]  # (fsspec has no type information)
            """Turns fsspec's cumulative progress into the deltas our callers add up."""

            reported = 0

            def call(self, *args: Any, **kwargs: Any) -> None:
                delta = self.value - self.reported
                if delta > 0:
                    self.reported = self.value
                    report(delta)

        return ProgressBridge()

    # -- base
    def ensure_base(self) -> None:
        with self._translated():
            self._count()
            self._filesystem().makedirs(self._base, exist_ok=True)

    # -- queries
    def _stat_size(self, key: str) -> int:
        info = self._filesystem().info(self._remote_path(key))
        if info.get("type") != "file":
            raise FileNotFoundError(errno.ENOENT, "not a file", key)
        return int(info["size"])

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._translated(key):
            self._count()
            try:
                self._stat_size(key)
                return True
            except FileNotFoundError:
                return False

    def size(self, key: str) -> int:
        with self._translated(key):
            self._count()
            return self._stat_size(key)

    def mtime(self, key: str) -> float | None:
        with self._translated(key):
            self._count()
            info = self._filesystem().info(self._remote_path(key))
        for k in ("LastModified", "mtime", "last_modified", "updated", "created"):
            v = info.get(k)
            if v is None:
                continue
            if hasattr(v, "timestamp"):
                return float(v.timestamp())
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
        return None

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        directory = prefix.rpartition("/")[0]
        with self._translated():
            self._count()
            fs = self._filesystem()
            start = self._remote_path(directory) if directory else self._base
            try:
                found = fs.find(start)
            except FileNotFoundError as exc:
                return self._empty_listing(exc)
            keys = []
            for path in found:
                relative = path[len(self._base) + 1:] if path.startswith(self._base + "/") else None
                if relative and relative.startswith(prefix) and ".tmp-" not in relative.rpartition("/")[2]:
                    keys.append(relative)
            return sorted(keys)

    def _empty_listing(self, exc: FileNotFoundError) -> builtins.list[str]:
        """A listing of an absent prefix is empty (S3: unless the bucket itself is missing)."""
        return []

    # -- reads
    def get_bytes(self, key: str) -> bytes:
        with self._translated(key):
            self._count()
            return bytes(self._filesystem().cat_file(self._remote_path(key)))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"invalid range start={start} length={length}")
        with self._translated(key):
            self._count()
            if length == 0:
                self._stat_size(key)  # still report a missing key
                return b""
            return self._range(key, start, length)

    def _range(self, key: str, start: int, length: int) -> bytes:
        return bytes(self._filesystem().cat_file(self._remote_path(key), start=start, end=start + length))

    def _download_options(self) -> dict[str, Any]:
        return {}

    def get_file(self, key: str, local_path: str | os.PathLike[str], callback: ProgressCallback | None = None) -> None:
        target = os.fspath(local_path)
        with self._translated(key, target), replacing(Path(target), fsync=True, temp=temp_beside) as temp:
            self._count()
            bridge = self._fsspec_callback(callback)
            self._filesystem().get_file(self._remote_path(key), str(temp), callback=bridge, **self._download_options())
            self._report_rest(callback, bridge, os.path.getsize(temp))

    # -- writes
    def _upload(self, source: str, key: str, callback: ProgressCallback | None) -> None:
        bridge = self._fsspec_callback(callback)
        self._filesystem().put_file(source, self._remote_path(key), callback=bridge)
        self._report_rest(callback, bridge, os.path.getsize(source))

    @staticmethod
    def _report_rest(callback: ProgressCallback | None, bridge: Any, size: int) -> None:
        """Filesystems that copy without reporting progress (fsspec's local one): what fsspec did
        not report, once the copy ended (callers add progress up to the file's size)."""
        if callback is not None and size > bridge.reported:
            callback(size - bridge.reported)

    def put_file(self, local_path: str | os.PathLike[str], key: str, callback: ProgressCallback | None = None, *,
                 move: bool = False) -> bool:
        source = os.fspath(local_path)
        validate_key(key)
        with self._translated(key, source):
            if self.exists(key):
                return False
            self._count()
            self._upload(source, key, callback)
        return True

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._translated(key):
            self._count()
            self._filesystem().pipe_file(self._remote_path(key), bytes(data))

    def delete(self, key: str) -> None:
        with self._translated(key):
            self._count()
            with contextlib.suppress(FileNotFoundError):
                self._filesystem().rm_file(self._remote_path(key))
