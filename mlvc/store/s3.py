"""S3 (AWS, MinIO, SeaweedFS, moto, Ceph...) as a `Backend`, through s3fs.

Beyond plain fsspec: S3's error codes are translated here, large objects go in
multipart uploads of bounded parts, and the lock protocol's conditional
operations map to conditional requests (``If-None-Match: *`` to create,
``If-Match: <etag>`` to replace or delete).  A dead endpoint fails within
seconds: short connect timeouts, few retries (bulk callers retry whole objects).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    MlvcError,
    ObjectNotFoundError,
    Remedy,
    RemoteAuthError,
    RemoteError,
    RemoteNotFoundError,
)
from .backend import Capabilities, ProgressCallback, validate_key
from .fsspec_ import FsspecBackend, exception_chain

if TYPE_CHECKING:
    import asyncio

_T = TypeVar("_T")

TRANSFER_PART_BYTES = 8 << 20  # multipart part / parallel download range size
TRANSFER_CONCURRENCY = 2  # parts in flight per transfer: ~16 MiB each, so `--jobs 4` stays well under 300 MB
MAX_UPLOAD_PARTS = 9_000  # S3 allows 10,000; keep a margin
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 20  # no byte for this long: a stalled server (dead hosts hit the connect timeout)
UPLOAD_BASE_S = 30  # an upload may take this long plus its size at the floor rate below
UPLOAD_FLOOR_BYTES_PER_S = 512 * 1024  # slower than this (4 Mbit/s) is taken for a stalled server
BOTO_ATTEMPTS = 2  # one more try on connection errors, timeouts, throttling, 5xx; more would stretch "server down"
S3FS_RETRIES = 1  # s3fs retries on top of botocore would multiply the wait on a dead host

AUTH_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AccountProblem", "AllAccessDisabled",
    "RequestTimeTooSkewed", "NotSignedUp", "InvalidSecurity",
})
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404"})
CONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})


def s3_error_code(exc: BaseException) -> str | None:
    for item in exception_chain(exc):
        response = getattr(item, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status:
                return str(status)
    return None




def upload_timeout(size: int) -> float:
    """Seconds an upload of `size` bytes may take before the server counts as stalled."""
    return UPLOAD_BASE_S + size / UPLOAD_FLOOR_BYTES_PER_S

def _quiet_about_dropped_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiohttp leaves a background write task behind when the server drops the connection; the
    request itself fails and is reported as unreachable (exit 9), so asyncio's "Task exception was
    never retrieved" on stderr is noise.  Anything else goes to asyncio's default handler."""
    exc = context.get("exception")
    if isinstance(exc, (ConnectionError, OSError)) or type(exc).__module__.startswith("aiohttp"):
        return
    loop.default_exception_handler(context)

class ConditionalRequestsUnsupported(RemoteError):
    """The S3 service answered a conditional request with NotImplemented."""


def _missing_credentials(exc: BaseException) -> bool:
    """botocore found no (or half a) key pair.  botocore is optional: judged only when it is loaded."""
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return False
    kinds = (botocore.NoCredentialsError, botocore.PartialCredentialsError)
    return any(isinstance(e, kinds) for e in exception_chain(exc))


class S3Backend(FsspecBackend):
    capabilities = Capabilities(atomic_create=True, conditional=True, ranged_read=True)

    def _where(self) -> str:
        endpoint = self.options.get("endpoint_url")
        if endpoint:
            p = urlsplit(str(endpoint))
            return f"{self.describe()} (endpoint {urlunsplit((p.scheme, p.netloc.rpartition('@')[2], p.path, '', ''))})"
        return self.describe()

    def _bucket(self) -> str:
        return self._base.split("/", 1)[0]

    def _location(self, key: str) -> tuple[str, str]:
        bucket, _, object_key = self._remote_path(key).partition("/")
        return bucket, object_key

    def _translate_service(self, exc: BaseException, key: str | None) -> MlvcError | None:
        if _missing_credentials(exc):
            return RemoteAuthError(
                f"remote {self._where()}: no S3 credentials found",
                hint="set access_key_id/secret_access_key/profile for this remote, or the "
                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment", remedy=Remedy.REMOTE_CREDENTIALS)
        code = s3_error_code(exc)
        if code in AUTH_CODES:
            return RemoteAuthError(
                f"remote {self._where()} refused the credentials ({code})",
                hint="check access_key_id/secret_access_key/profile (or the AWS_* environment) for this remote")
        if code == "NoSuchBucket":
            return RemoteNotFoundError(f"bucket {self._bucket()!r} of remote {self._where()} does not exist",
                                       hint="create the bucket, or fix the remote URL")
        if code in MISSING_KEY_CODES and key is not None:
            return ObjectNotFoundError(key, where=f"remote {self.describe()}")
        if code is not None and code in UNSUPPORTED_CODES:
            return ConditionalRequestsUnsupported(
                f"remote {self._where()} does not support S3 conditional requests (If-Match/If-None-Match)",
                hint="locking needs an S3 service with conditional writes (AWS S3, MinIO, SeaweedFS, recent Ceph)")
        return None

    def _make_filesystem(self) -> Any:
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
                # botocore's `max_attempts` here counts retries (one more attempt than its name says):
                # `total_max_attempts` is the number of attempts, the first one included
                "retries": {"total_max_attempts": BOTO_ATTEMPTS, "mode": "standard"},
            },
            max_concurrency=TRANSFER_CONCURRENCY,
            skip_instance_cache=True,  # our own instance: no cross-talk with other users of s3fs
            use_listings_cache=False,  # other machines write to the remote: never a stale listing
        )
        fs.retries = S3FS_RETRIES
        fs.loop.call_soon_threadsafe(fs.loop.set_exception_handler, _quiet_about_dropped_connections)
        return fs

    def _remote_path(self, key: str) -> str:
        return f"{self._base}/{validate_key(key)}"

    def _call(self, method: str, **kwargs: Any) -> Any:
        self._count()
        return self._filesystem().call_s3(method, **kwargs)

    def _run_async(self, coroutine_function: Callable[..., Coroutine[Any, Any, _T]], *args: Any) -> _T:
        from fsspec.asyn import sync

        fs = self._filesystem()
        result: _T = sync(fs.loop, coroutine_function, *args)  # fsspec is untyped: what the coroutine returns
        return result

    # -- base and queries
    def ensure_base(self) -> None:
        """The bucket must exist: buckets are never created implicitly."""
        with self._translated():
            try:
                self._call("head_bucket", Bucket=self._bucket())
            except FileNotFoundError as exc:
                if s3_error_code(exc) not in (None, "404", "NoSuchBucket"):
                    raise
                raise RemoteNotFoundError(
                    f"bucket {self._bucket()!r} of remote {self._where()} does not exist",
                    hint="create the bucket (mlvc never creates buckets), or fix the remote URL") from None

    def _stat_size(self, key: str) -> int:
        bucket, object_key = self._location(key)
        return int(self._filesystem().call_s3("head_object", Bucket=bucket, Key=object_key)["ContentLength"])

    def _empty_listing(self, exc: FileNotFoundError) -> list[str]:
        if s3_error_code(exc) == "NoSuchBucket":
            raise exc
        return []

    # -- reads
    def get_bytes(self, key: str) -> bytes:
        with self._translated(key):
            self._count()
            # one GET; s3fs would otherwise HEAD first to consider a parallel download
            return bytes(self._filesystem().cat_file(self._remote_path(key), max_concurrency=1))

    def _range(self, key: str, start: int, length: int) -> bytes:
        try:
            return super()._range(key, start, length)
        except OSError as exc:
            if s3_error_code(exc) in ("InvalidRange", "416"):
                return b""  # start is at or past the end of the object
            raise

    def _download_options(self) -> dict[str, Any]:
        return {"chunksize": TRANSFER_PART_BYTES, "max_concurrency": TRANSFER_CONCURRENCY}

    # -- writes
    def _upload(self, source: str, key: str, callback: ProgressCallback | None) -> None:
        from fsspec.asyn import sync

        size = os.path.getsize(source)
        part = max(TRANSFER_PART_BYTES, -(-size // MAX_UPLOAD_PARTS))
        fs = self._filesystem()
        # The read timeout never fires while the client is still sending (a server that stops
        # reading blocks the upload in its write): bound the whole upload by its size at a slow
        # link's rate instead, so a silent server fails the push (exit 9) instead of hanging it.
        sync(fs.loop, fs._put_file, source, self._remote_path(key), callback=self._fsspec_callback(callback),
             chunksize=part, max_concurrency=TRANSFER_CONCURRENCY,
             timeout=upload_timeout(size))

    def put_bytes(self, key: str, data: bytes) -> None:
        from fsspec.asyn import sync

        with self._translated(key):
            self._count()
            fs = self._filesystem()
            # bounded as uploads are (above): a small PUT to a server that went silent was seen to
            # hang for minutes past its read timeouts
            sync(fs.loop, fs._pipe_file, self._remote_path(key), bytes(data),
                 timeout=upload_timeout(len(data)))

    def cleanup(self, older_than_s: float) -> int:
        """Abort incomplete multipart uploads started more than `older_than_s` ago (a killed
        uploader leaves them invisible but stored and billed)."""
        cutoff = time.time() - older_than_s
        with self._translated():
            bucket, _, base = self._base.partition("/")
            prefix = f"{base}/" if base else ""
            aborted = 0
            page_marker: dict[str, str] = {}
            while True:
                page = self._call("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **page_marker)
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() >= cutoff:
                        continue
                    with contextlib.suppress(FileNotFoundError):  # finished or aborted meanwhile
                        self._call("abort_multipart_upload", Bucket=bucket, Key=upload["Key"],
                                   UploadId=upload["UploadId"])
                        aborted += 1
                if not page.get("IsTruncated"):
                    return aborted
                page_marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    # -- conditional operations
    def create_bytes(self, key: str, data: bytes) -> str | None:
        bucket, object_key = self._location(key)
        with self._translated(key):
            try:
                response = self._call("put_object", Bucket=bucket, Key=object_key, Body=bytes(data), IfNoneMatch="*")
            except (FileExistsError, OSError) as exc:
                if isinstance(exc, FileExistsError) or s3_error_code(exc) in CONDITION_FAILED_CODES:
                    return None
                raise
            return str(response["ETag"])

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        bucket, object_key = self._location(key)
        fs = self._filesystem()

        async def read_with_etag() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=object_key)
            try:
                body = await response["Body"].read()
            finally:
                response["Body"].close()
            return bytes(body), str(response["ETag"])

        with self._translated(key):
            self._count()
            return self._run_async(read_with_etag)

    def replace_if_unchanged(self, key: str, data: bytes, tag: str) -> str | None:
        bucket, object_key = self._location(key)
        with self._translated(key):
            try:
                response = self._call("put_object", Bucket=bucket, Key=object_key, Body=bytes(data), IfMatch=tag)
            except OSError as exc:
                if s3_error_code(exc) in CONDITION_FAILED_CODES | MISSING_KEY_CODES:
                    return None
                raise
            return str(response["ETag"])

    def delete_if_unchanged(self, key: str, tag: str) -> bool:
        bucket, object_key = self._location(key)
        with self._translated(key):
            try:
                self._call("delete_object", Bucket=bucket, Key=object_key, IfMatch=tag)
            except OSError as exc:
                if s3_error_code(exc) in CONDITION_FAILED_CODES | MISSING_KEY_CODES:
                    return False
                raise
            return True
