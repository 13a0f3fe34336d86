"""Byte transport to one remote: a local or NFS directory, S3, or any fsspec URL.

A remote is a flat namespace of keys (relative POSIX paths such as
``packs/<32hex>.pack``) under a base URL.  `RemoteBackend` only moves bytes; it
knows nothing about packs, indexes or hashes.  What it guarantees:

* Readers never see a partially written object.  On a directory remote every
  write goes to a sibling temp file (``<key>.tmp-<host>-<pid>-<rand>``), is
  fsynced and then published with ``link()``/``rename()``; on S3 a single PUT or
  a completed multipart upload is already all-or-nothing.
* `put_file` never overwrites: objects are content-named, so an existing key
  already holds the same bytes and the upload is skipped.
* Every failure leaves this module as an `mlvc.errors` type, translated in one
  place (`RemoteBackend._translate`), and no message ever contains a secret.
* A dead endpoint fails within seconds: short connect timeouts, few retries.

fsspec/s3fs/botocore are imported lazily because importing them costs more
than the whole CLI start-up budget, and most commands never touch a remote.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

from mlvc.errors import (
    DiskError,
    LockedError,
    MlvcError,
    ObjectNotFoundError,
    PathError,
    RemoteAuthError,
    RemoteError,
    RemoteNotFoundError,
    RemoteUnreachableError,
)

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes moved since the previous call (a delta), possibly
from a background thread."""

TEMP_MARKER = ".tmp-"
"""Names containing this are in-progress writes: hidden from `list`, removed by `cleanup_temp`."""

COPY_BLOCK_BYTES = 1 << 20
TRANSFER_PART_BYTES = 8 << 20  # S3 multipart part / parallel download range size
TRANSFER_CONCURRENCY = 2  # parts in flight per transfer: ~16 MiB each, so `--jobs 4` stays well under 300 MB
MAX_UPLOAD_PARTS = 9_000  # S3 allows 10,000; keep a margin
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 60  # a stalled transfer, not a dead host; dead hosts hit the connect timeout
BOTO_ATTEMPTS = 2  # botocore "standard" retry: one more try on connection errors, throttling, 5xx;
# more would stretch "server down" past ~10 s (3 s connect timeout per try plus backoff).
# Bulk callers (push/pull) retry whole objects themselves.
S3FS_RETRIES = 1  # s3fs retries on top of botocore would multiply the wait on a dead host
GUARD_STALE_S = 30.0  # guarded sections take milliseconds; an older guard belongs to a dead process

S3_SCHEMES = ("s3", "s3a")
_AUTH_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AccountProblem", "AllAccessDisabled",
    "RequestTimeTooSkewed", "NotSignedUp", "InvalidSecurity",
})
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404"})
_CONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG})
_UNREACHABLE_ERRNOS = frozenset({
    errno.ESTALE, errno.ENOTCONN, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ETIMEDOUT,
    errno.ENETUNREACH, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
})
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV})
_S3_OPTION_NAMES = ("endpoint_url", "region", "profile", "access_key_id", "secret_access_key")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative POSIX path, else raise PathError.

    Keys may come from remote listings or manifests written elsewhere, so a key
    must never be able to escape the base (``..``, absolute paths, backslashes)
    or collide with in-progress temp files.
    """
    if not isinstance(key, str) or not key:
        raise PathError(repr(key), "a remote key must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise PathError(key, "a remote key must be a relative POSIX path")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PathError(key, "a remote key must not contain empty, '.' or '..' components")
    if TEMP_MARKER in parts[-1]:
        raise PathError(key, f"names containing {TEMP_MARKER!r} are reserved for in-progress writes")
    return key


def _validate_prefix(prefix: str) -> str:
    """A listing prefix is a key, a key's leading part ("packs/ab"), a directory ("packs/") or ""."""
    if prefix == "":
        return prefix
    trimmed = prefix[:-1] if prefix.endswith("/") else prefix
    validate_key(trimmed)
    return prefix


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"


def _temp_sibling(path: str) -> str:
    """A unique temp name in the same directory, so publishing it is a same-filesystem rename."""
    return f"{path}{TEMP_MARKER}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(path: str) -> None:
    """Make a rename durable.  Some filesystems refuse to open/fsync directories; that is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_stream(src: BinaryIO, dst: BinaryIO, callback: ProgressCallback | None) -> None:
    while True:
        block = src.read(COPY_BLOCK_BYTES)
        if not block:
            return
        dst.write(block)
        if callback is not None:
            callback(len(block))


def _write_durably(path: str, data: bytes) -> None:
    """Create `path` exclusively with `data`, fsynced.  Used for temp files only."""
    with open(path, "xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _publish_no_overwrite(temp: str, final: str) -> bool:
    """Move a finished temp file to `final` unless `final` exists; True if this call published it.

    ``link()`` fails atomically when the target exists (also on NFS), which
    ``rename()`` cannot do.  On filesystems without hard links (SMB, some FUSE
    mounts) fall back to check-then-rename: that window can only replace an
    object with identical bytes, because names are derived from content.
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


def content_tag(data: bytes) -> str:
    """Version tag of a directory-remote object (S3 uses the ETag instead)."""
    return hashlib.sha256(data).hexdigest()


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and its causes: s3fs re-raises botocore errors as OSError subclasses with the original as cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _s3_error_code(exc: BaseException) -> str | None:
    for item in _exception_chain(exc):
        response = getattr(item, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status:
                return str(status)
    return None


def _unreachable_reason(exc: BaseException) -> str | None:
    """A short, secret-free reason if `exc` means "could not talk to the server", else None."""
    botocore_exceptions = sys.modules.get("botocore.exceptions")
    aiohttp = sys.modules.get("aiohttp")
    for item in _exception_chain(exc):
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


class RemoteBackend:
    """Transport to one remote base URL.  Keys are relative POSIX paths under it.

    `options` (all optional, used for S3): ``endpoint_url``, ``region``,
    ``profile``, ``access_key_id``, ``secret_access_key``.  For other fsspec
    protocols, any other entries are passed to fsspec as storage options.

    One instance may be shared by threads; after fork a child builds its own
    connection on first use.
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options: dict[str, Any] = dict(options or {})
        parts = urlsplit(url)
        self._fs: Any = None
        self._fs_pid = 0
        if parts.scheme in ("", "file"):
            if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
                raise RemoteNotFoundError(f"{self.describe()}: file:// URLs must name a local path")
            path = unquote(parts.path) if parts.scheme == "file" else url
            self.kind = "local"
            self._root = os.path.abspath(os.path.expanduser(path))
        else:
            self.kind = "s3" if parts.scheme in S3_SCHEMES else "fsspec"
            self._root = (parts.netloc.rpartition("@")[2] + parts.path).rstrip("/")
            if not self._root:
                raise RemoteNotFoundError(f"{self.describe()}: the URL names no bucket or base path")

    def __repr__(self) -> str:
        return f"RemoteBackend({self.describe()!r})"

    # -- description and error translation -------------------------------------------------

    def describe(self) -> str:
        """The base URL with credentials, query and fragment removed (safe to print or log)."""
        parts = urlsplit(self.url)
        if parts.scheme in ("", "file"):
            return self.url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def _where(self) -> str:
        endpoint = self.options.get("endpoint_url")
        if self.kind == "s3" and endpoint:
            endpoint_parts = urlsplit(str(endpoint))
            safe_endpoint = urlunsplit((endpoint_parts.scheme, endpoint_parts.netloc.rpartition("@")[2],
                                        endpoint_parts.path, "", ""))
            return f"{self.describe()} (endpoint {safe_endpoint})"
        return self.describe()

    def _scrub(self, text: str) -> str:
        for name in ("secret_access_key", "access_key_id"):
            value = self.options.get(name)
            if value:
                text = text.replace(str(value), "***")
        return text

    def _bucket(self) -> str:
        return self._root.split("/", 1)[0]

    def _translate(self, exc: Exception, key: str | None, local_path: str | None) -> MlvcError | None:
        """The one place where transport failures become mlvc errors.  None: re-raise unchanged."""
        where = self._where()
        code = _s3_error_code(exc)
        if code in _AUTH_CODES:
            return RemoteAuthError(
                f"remote {where} refused the credentials ({code})",
                hint="check access_key_id/secret_access_key/profile (or the AWS_* environment) for this remote")
        if code == "NoSuchBucket":
            return RemoteNotFoundError(f"bucket {self._bucket()!r} of remote {where} does not exist",
                                       hint="create the bucket, or fix the remote URL")
        if code in _MISSING_KEY_CODES and key is not None:
            return ObjectNotFoundError(key, where=f"remote {self.describe()}")
        reason = _unreachable_reason(exc)
        if reason is not None:
            return RemoteUnreachableError(f"remote {where} is unreachable ({reason})",
                                          hint="check the network, the endpoint and that the server is up, then retry")
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            target = exc.filename or local_path or where
            return DiskError(f"cannot write {target}: {os.strerror(exc.errno)}")
        if isinstance(exc, FileNotFoundError):
            filename = str(exc.filename) if exc.filename else ""
            if local_path is not None and filename.startswith(local_path):
                return None  # the caller's local file or directory is missing: not a remote problem
            if self.kind == "local" and not os.path.isdir(self._root):
                return RemoteNotFoundError(f"remote directory {self._root} does not exist",
                                           hint="is the share mounted? run `mlvc remote` to check the URL")
            if key is not None:
                return ObjectNotFoundError(key, where=f"remote {self.describe()}")
        if self.kind == "local":
            return None
        if isinstance(exc, PermissionError):
            return RemoteAuthError(f"remote {where} denied access",
                                   hint="check the credentials and permissions for this remote")
        if code is not None or isinstance(exc, OSError):
            return RemoteError(f"remote {where} failed: {self._scrub(str(exc))}")
        return None

    @contextlib.contextmanager
    def _translated(self, key: str | None = None, local_path: str | None = None) -> Iterator[None]:
        try:
            yield
        except MlvcError:
            raise
        except Exception as exc:
            mapped = self._translate(exc, key, local_path)
            if mapped is None:
                raise
            if isinstance(mapped, RemoteAuthError):
                # botocore errors may echo request details; never chain them under an auth error
                raise mapped from None
            raise mapped from exc

    # -- fsspec plumbing ------------------------------------------------------------------

    def _filesystem(self) -> Any:
        # a filesystem object does not survive fork (its event loop thread stays behind): rebuild it
        if self._fs is None or self._fs_pid != os.getpid():
            if self.kind == "s3":
                self._fs = self._make_s3_filesystem()
            else:
                import fsspec

                storage_options = {k: v for k, v in self.options.items()
                                   if v is not None and k not in _S3_OPTION_NAMES}
                self._fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
                self._root = str(root).rstrip("/")  # the protocol's own spelling of paths
            self._fs_pid = os.getpid()
        return self._fs

    def _make_s3_filesystem(self) -> Any:
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if self.options.get("endpoint_url"):
            client_kwargs["endpoint_url"] = self.options["endpoint_url"]
        if self.options.get("region"):
            client_kwargs["region_name"] = self.options["region"]
        fs = s3fs.S3FileSystem(
            key=self.options.get("access_key_id") or None,
            secret=self.options.get("secret_access_key") or None,
            profile=self.options.get("profile") or None,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": CONNECT_TIMEOUT_S,
                "read_timeout": READ_TIMEOUT_S,
                "retries": {"max_attempts": BOTO_ATTEMPTS, "mode": "standard"},
            },
            max_concurrency=TRANSFER_CONCURRENCY,
            # our own instance: no cross-talk with other users of s3fs in the process
            skip_instance_cache=True,
            # other machines write to the remote: never answer from a stale listing
            use_listings_cache=False,
        )
        fs.retries = S3FS_RETRIES
        return fs

    def _remote_path(self, key: str) -> str:
        if self.kind == "fsspec":
            self._filesystem()  # settles self._root
        return f"{self._root}/{key}"

    def _local_path(self, key: str) -> str:
        return os.path.join(self._root, *key.split("/"))

    def _s3_location(self, key: str) -> tuple[str, str]:
        bucket, _, object_key = self._remote_path(key).partition("/")
        return bucket, object_key

    def _run_async(self, coroutine_function: Callable[..., Any], *args: Any) -> Any:
        from fsspec.asyn import sync

        fs = self._filesystem()
        return sync(fs.loop, coroutine_function, *args)

    @staticmethod
    def _fsspec_callback(callback: ProgressCallback | None) -> Any:
        from fsspec.callbacks import DEFAULT_CALLBACK, Callback

        if callback is None:
            return DEFAULT_CALLBACK

        class ProgressBridge(Callback):
            """Turns fsspec's cumulative progress into the deltas our callers add up."""

            reported = 0

            def call(self, *args: Any, **kwargs: Any) -> None:
                delta = self.value - self.reported
                if delta > 0:
                    self.reported = self.value
                    callback(delta)

        return ProgressBridge()

    # -- base ---------------------------------------------------------------------------------

    def ensure_base(self) -> None:
        """Make sure the base exists.  Directory: create its last component (only that, so an
        unmounted share errors instead of filling the local disk).  S3: the bucket must exist;
        buckets are never created implicitly."""
        with self._translated():
            if self.kind == "local":
                parent = os.path.dirname(self._root)
                if not os.path.isdir(parent):
                    raise RemoteNotFoundError(
                        f"remote directory {self._root} cannot be created: {parent} does not exist",
                        hint="is the share mounted? create the parent directory or fix the remote URL")
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self._root)
                if not os.path.isdir(self._root):
                    raise RemoteNotFoundError(f"remote {self._root} exists but is not a directory")
            elif self.kind == "s3":
                fs = self._filesystem()
                try:
                    fs.call_s3("head_bucket", Bucket=self._bucket())
                except FileNotFoundError as exc:
                    if _s3_error_code(exc) not in (None, "404", "NoSuchBucket"):
                        raise
                    raise RemoteNotFoundError(
                        f"bucket {self._bucket()!r} of remote {self._where()} does not exist",
                        hint="create the bucket (mlvc never creates buckets), or fix the remote URL") from None
            else:
                self._filesystem().makedirs(self._root, exist_ok=True)

    # -- queries ------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                try:
                    return stat.S_ISREG(os.stat(self._local_path(key)).st_mode)
                except (FileNotFoundError, NotADirectoryError):
                    return False
            try:
                self._stat_size(key)
                return True
            except FileNotFoundError:
                return False

    def mtime(self, key: str) -> float | None:
        """Best-effort modification time (Unix seconds) of an object; None when the store cannot tell."""
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                return os.stat(self._local_path(key)).st_mtime
            info = self._filesystem().info(self._remote_path(key))
        for k in ("LastModified", "mtime", "last_modified", "updated"):
            v = info.get(k)
            if v is None:
                continue
            if hasattr(v, "timestamp"):
                return v.timestamp()
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
        return None

    def size(self, key: str) -> int:
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                return os.stat(self._local_path(key)).st_size
            return self._stat_size(key)

    def _stat_size(self, key: str) -> int:
        """Size of a remote (non-directory) object; FileNotFoundError if absent."""
        fs = self._filesystem()
        if self.kind == "s3":
            bucket, object_key = self._s3_location(key)
            return int(fs.call_s3("head_object", Bucket=bucket, Key=object_key)["ContentLength"])
        info = fs.info(self._remote_path(key))
        if info.get("type") != "file":
            raise FileNotFoundError(errno.ENOENT, "not a file", key)
        return int(info["size"])

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with `prefix` (recursive).  An absent prefix lists as []."""
        _validate_prefix(prefix)
        directory = prefix.rpartition("/")[0]
        with self._translated():
            if self.kind == "local":
                return self._local_list(directory, prefix)
            fs = self._filesystem()
            start = self._remote_path(directory) if directory else self._root
            try:
                found = fs.find(start)
            except FileNotFoundError as exc:
                if _s3_error_code(exc) == "NoSuchBucket":
                    raise
                return []
            keys = []
            for path in found:
                relative = path[len(self._root) + 1:] if path.startswith(self._root + "/") else None
                if relative and relative.startswith(prefix):
                    keys.append(relative)
            return sorted(keys)

    def _local_list(self, directory: str, prefix: str) -> list[str]:
        start = self._local_path(directory) if directory else self._root
        if not os.path.isdir(start):
            if not os.path.isdir(self._root):
                raise FileNotFoundError(errno.ENOENT, "remote base is missing", self._root)
            return []
        keys = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                if TEMP_MARKER in name:
                    continue
                relative = os.path.relpath(os.path.join(dirpath, name), self._root).replace(os.sep, "/")
                if relative.startswith(prefix):
                    keys.append(relative)
        return sorted(keys)

    # -- writes ---------------------------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike[str], key: str,
                 callback: ProgressCallback | None = None) -> bool:
        """Upload a local file, streamed.  Never overwrites: returns False (and moves no bytes)
        when the key already exists, True when this call published it."""
        validate_key(key)
        source = os.fspath(local_path)
        with self._translated(key, source):
            if self.kind == "local":
                return self._local_put_file(source, key, callback)
            if self.exists(key):
                return False
            fs = self._filesystem()
            if self.kind == "s3":
                file_size = os.path.getsize(source)
                part = max(TRANSFER_PART_BYTES, -(-file_size // MAX_UPLOAD_PARTS))
                fs.put_file(source, self._remote_path(key), callback=self._fsspec_callback(callback),
                            chunksize=part, max_concurrency=TRANSFER_CONCURRENCY)
            else:
                fs.put_file(source, self._remote_path(key), callback=self._fsspec_callback(callback))
            return True

    def _local_put_file(self, source: str, key: str, callback: ProgressCallback | None) -> bool:
        final = self._local_path(key)
        if os.path.exists(final):
            return False
        with open(source, "rb") as src:
            if not os.path.isdir(self._root):
                raise FileNotFoundError(errno.ENOENT, "remote base is missing", self._root)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            temp = _temp_sibling(final)
            try:
                with open(temp, "xb") as dst:
                    _copy_stream(src, dst, callback)
                    dst.flush()
                    os.fsync(dst.fileno())
                published = _publish_no_overwrite(temp, final)
            finally:
                _unlink_quietly(temp)
        if published:
            _fsync_dir(os.path.dirname(final))
        return published

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically.  Unlike `put_file` this replaces an existing key."""
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                final = self._local_path(key)
                if not os.path.isdir(self._root):
                    raise FileNotFoundError(errno.ENOENT, "remote base is missing", self._root)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                temp = _temp_sibling(final)
                try:
                    _write_durably(temp, data)
                    os.replace(temp, final)
                finally:
                    _unlink_quietly(temp)
                _fsync_dir(os.path.dirname(final))
            else:
                self._filesystem().pipe_file(self._remote_path(key), bytes(data))

    def delete(self, key: str) -> None:
        """Remove a key; removing an absent key is not an error (S3 behaves the same)."""
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._local_path(key))
                return
            with contextlib.suppress(FileNotFoundError):
                self._filesystem().rm_file(self._remote_path(key))

    def cleanup_temp(self, older_than_s: float) -> int:
        """Remove ``*.tmp-*`` files of writers that died more than `older_than_s` ago; returns how many.

        Directory remotes only (0 elsewhere).  The S3 counterpart, incomplete
        multipart uploads, is `abort_stale_uploads`.
        """
        removed = 0
        cutoff = time.time() - older_than_s
        if self.kind != "local":
            return 0
        with self._translated():
            if not os.path.isdir(self._root):
                return 0
            for dirpath, _dirnames, filenames in os.walk(self._root):
                for name in filenames:
                    if TEMP_MARKER not in name:
                        continue
                    path = os.path.join(dirpath, name)
                    try:
                        if os.lstat(path).st_mtime < cutoff:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        continue  # its writer finished or another cleaner got there first
        return removed

    def abort_stale_uploads(self, older_than_s: float) -> int:
        """S3: abort incomplete multipart uploads under the base started more than `older_than_s`
        ago (a killed uploader leaves them invisible but stored and billed); returns how many.
        0 on other kinds.  Kept apart from `cleanup_temp` because a live upload of a huge file
        can be old, and because moto reports every upload as started in 2010.
        """
        if self.kind != "s3":
            return 0
        with self._translated():
            return self._abort_uploads_before(time.time() - older_than_s)

    def _abort_uploads_before(self, cutoff: float) -> int:
        fs = self._filesystem()
        bucket, _, base = self._root.partition("/")
        prefix = f"{base}/" if base else ""
        aborted = 0
        page_marker: dict[str, str] = {}
        while True:
            page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **page_marker)
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() >= cutoff:
                    continue
                with contextlib.suppress(FileNotFoundError):  # finished or aborted meanwhile
                    fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"],
                               UploadId=upload["UploadId"])
                    aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            page_marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    # -- reads ----------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                with open(self._local_path(key), "rb") as src:
                    return src.read()
            if self.kind == "s3":
                # one GET; s3fs would otherwise HEAD first to consider a parallel download
                return bytes(self._filesystem().cat_file(self._remote_path(key), max_concurrency=1))
            return bytes(self._filesystem().cat_file(self._remote_path(key)))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes [start, start+length) of an object; shorter (possibly empty) past its end."""
        validate_key(key)
        if start < 0 or length < 0:
            raise ValueError(f"invalid range start={start} length={length}")
        with self._translated(key):
            if self.kind == "local":
                with open(self._local_path(key), "rb") as src:
                    src.seek(start)
                    return src.read(length)
            if length == 0:
                self._stat_size(key)  # still report a missing key
                return b""
            try:
                return bytes(self._filesystem().cat_file(self._remote_path(key), start=start, end=start + length))
            except OSError as exc:
                if _s3_error_code(exc) in ("InvalidRange", "416"):
                    return b""  # start is at or past the end of the object
                raise

    def get_file(self, key: str, local_path: str | os.PathLike[str],
                 callback: ProgressCallback | None = None) -> None:
        """Download to `local_path` (replacing it) via a temp file beside it, streamed."""
        validate_key(key)
        target = os.fspath(local_path)
        temp = _temp_sibling(target)
        try:
            with self._translated(key, target):
                if self.kind == "local":
                    with open(self._local_path(key), "rb") as src, open(temp, "xb") as dst:
                        _copy_stream(src, dst, callback)
                        dst.flush()
                        os.fsync(dst.fileno())
                else:
                    fs = self._filesystem()
                    extra = ({"chunksize": TRANSFER_PART_BYTES, "max_concurrency": TRANSFER_CONCURRENCY}
                             if self.kind == "s3" else {})
                    fs.get_file(self._remote_path(key), temp, callback=self._fsspec_callback(callback), **extra)
                    with open(temp, "rb+") as written:
                        os.fsync(written.fileno())
                os.replace(temp, target)
        finally:
            _unlink_quietly(temp)

    # -- conditional operations (used by RemoteLock) --------------------------------------------

    def create_bytes(self, key: str, data: bytes) -> str | None:
        """Create `key` with `data` only if it does not exist, atomically.

        Returns the new object's version tag, or None when the key already
        existed.  Directory: temp file + ``link()``.  S3: conditional PUT with
        ``If-None-Match: *`` (AWS since 2024, MinIO, moto >= 5).
        """
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                return self._local_create(key, data)
            if self.kind != "s3":
                raise RemoteError(f"remote {self.describe()} does not support atomic create")
            bucket, object_key = self._s3_location(key)
            try:
                response = self._filesystem().call_s3(
                    "put_object", Bucket=bucket, Key=object_key, Body=bytes(data), IfNoneMatch="*")
            except (FileExistsError, OSError) as exc:
                if isinstance(exc, FileExistsError) or _s3_error_code(exc) in _CONDITION_FAILED_CODES:
                    return None
                self._raise_if_unsupported(exc)
                raise
            return str(response["ETag"])

    def _local_create(self, key: str, data: bytes) -> str | None:
        final = self._local_path(key)
        if not os.path.isdir(self._root):
            raise FileNotFoundError(errno.ENOENT, "remote base is missing", self._root)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        temp = _temp_sibling(final)
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
            _unlink_quietly(temp)
        _fsync_dir(os.path.dirname(final))
        return content_tag(data)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """An object's bytes with its version tag (for `replace_if_unchanged`/`delete_if_unchanged`)."""
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                with open(self._local_path(key), "rb") as src:
                    data = src.read()
                return data, content_tag(data)
            if self.kind != "s3":
                raise RemoteError(f"remote {self.describe()} does not support versioned reads")
            bucket, object_key = self._s3_location(key)
            fs = self._filesystem()

            async def read_with_etag() -> tuple[bytes, str]:
                response = await fs._call_s3("get_object", Bucket=bucket, Key=object_key)
                try:
                    body = await response["Body"].read()
                finally:
                    response["Body"].close()
                return bytes(body), str(response["ETag"])

            return self._run_async(read_with_etag)

    def replace_if_unchanged(self, key: str, data: bytes, tag: str) -> str | None:
        """Overwrite `key` only if it still has version `tag`; the new tag, or None if it changed
        or vanished in the meantime.  S3: conditional PUT with ``If-Match``."""
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                with self._local_guard(key):
                    if not self._local_remove_if(key, tag):
                        return None
                    return self._local_create(key, data)
            if self.kind != "s3":
                raise RemoteError(f"remote {self.describe()} does not support conditional writes")
            bucket, object_key = self._s3_location(key)
            try:
                response = self._filesystem().call_s3(
                    "put_object", Bucket=bucket, Key=object_key, Body=bytes(data), IfMatch=tag)
            except OSError as exc:
                if _s3_error_code(exc) in _CONDITION_FAILED_CODES | _MISSING_KEY_CODES:
                    return None
                self._raise_if_unsupported(exc)
                raise
            return str(response["ETag"])

    def delete_if_unchanged(self, key: str, tag: str) -> bool:
        """Delete `key` only if it still has version `tag`.  S3: conditional DELETE with ``If-Match``."""
        validate_key(key)
        with self._translated(key):
            if self.kind == "local":
                with self._local_guard(key):
                    return self._local_remove_if(key, tag)
            if self.kind != "s3":
                raise RemoteError(f"remote {self.describe()} does not support conditional deletes")
            bucket, object_key = self._s3_location(key)
            try:
                self._filesystem().call_s3("delete_object", Bucket=bucket, Key=object_key, IfMatch=tag)
            except OSError as exc:
                if _s3_error_code(exc) in _CONDITION_FAILED_CODES | _MISSING_KEY_CODES:
                    return False
                self._raise_if_unsupported(exc)
                raise
            return True

    def _raise_if_unsupported(self, exc: Exception) -> None:
        if _s3_error_code(exc) in _UNSUPPORTED_CODES:
            raise RemoteError(
                f"remote {self._where()} does not support S3 conditional requests (If-Match/If-None-Match)",
                hint="locking needs an S3 service with conditional writes (AWS S3, MinIO, recent Ceph)") from exc

    def _local_remove_if(self, key: str, tag: str) -> bool:
        """Unlink a directory-remote object if its content still matches `tag`.  Caller holds the guard."""
        final = self._local_path(key)
        try:
            with open(final, "rb") as src:
                current = src.read()
        except FileNotFoundError:
            return False
        if content_tag(current) != tag:
            return False
        os.unlink(final)
        _fsync_dir(os.path.dirname(final))
        return True

    @contextlib.contextmanager
    def _local_guard(self, key: str) -> Iterator[None]:
        """Serialise check-then-delete on a directory remote, which has no compare-and-swap.

        Creating an object is atomic on its own (link), so only removals take the
        guard: under it, the checked object cannot be swapped for another before
        it is unlinked, because that would need a removal too.
        """
        guard = self._local_path(key) + TEMP_MARKER + "guard"
        os.makedirs(os.path.dirname(guard), exist_ok=True)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                break
            except FileExistsError:
                try:
                    age = time.time() - os.stat(guard).st_mtime
                except FileNotFoundError:
                    continue
                if age > GUARD_STALE_S:
                    _unlink_quietly(guard)
                    continue
                if time.monotonic() > deadline:
                    raise LockedError(f"{guard} is held by another process",
                                      hint=f"if no mlvc process is running, delete {guard}") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            _unlink_quietly(guard)
