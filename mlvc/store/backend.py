"""The byte-level interface under every store: the `Backend` protocol and what all kinds share.

A backend is a flat namespace of keys (relative POSIX paths such as
``packs/<32hex>.pack``) under a base.  It only moves bytes; it knows nothing of
packs, indexes or hashes.  One module per kind implements it: `local`
(a directory, also an NFS share), `s3`, `fsspec_` (any other fsspec URL),
`memory` (tests).  What every kind guarantees:

* Readers never see a partially written object (temp + rename on a
  directory; a single PUT or completed multipart upload on S3).
* `put_file` never overwrites: objects are content-named, so an existing key
  already holds the same bytes and the upload is skipped.
* Every failure leaves the backend as an `mlvc.errors` type, translated in
  one place per kind, and no message ever contains a secret.

Optional abilities are declared in `capabilities`, never discovered by
trying: callers (the store, the lock protocol) branch on these flags only.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from typing import Any

from ..atomic import TempNames
from ..errors import PathError, RemoteNotFoundError

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes moved since the previous call (a delta), possibly
from a background thread."""

TEMP_MARKER = ".tmp-"
"""Names containing this are in-progress writes: hidden from `list`, removed by `cleanup`."""


@dataclass(frozen=True)
class Capabilities:
    atomic_create: bool = False  # create_bytes: create-if-absent, atomically
    conditional: bool = False  # get_tagged / replace_if_unchanged / delete_if_unchanged
    ranged_read: bool = True  # get_range costs about what the range holds
    local_files: bool = False  # local_path(key) names a file on this machine (pread, rename)


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative POSIX path, else raise PathError.

    Keys may come from listings or manifests written elsewhere, so a key must
    never be able to escape the base (``..``, absolute paths, backslashes) or
    collide with in-progress temp files.
    """
    if not isinstance(key, str) or not key:
        raise PathError(repr(key), "a store key must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise PathError(key, "a store key must be a relative POSIX path")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PathError(key, "a store key must not contain empty, '.' or '..' components")
    if TEMP_MARKER in parts[-1]:
        raise PathError(key, f"names containing {TEMP_MARKER!r} are reserved for in-progress writes")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix is a key, a key's leading part ("packs/ab"), a directory ("packs/") or ""."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"


def temp_sibling(path: str) -> str:
    """A unique temp name beside `path`, so publishing it is a same-filesystem rename."""
    return f"{path}{TEMP_MARKER}{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def temp_beside(path: Path) -> Path:
    """`temp_sibling` as a Path: the temp name `mlvc.atomic.replacing` writes a backend's files
    under (it names the host: a shared directory is written from several machines)."""
    return Path(temp_sibling(str(path)))


BACKEND_TEMPS = TempNames(f".*{re.escape(TEMP_MARKER)}.*")
"""The names of `temp_sibling`: a shared directory is written from several machines, so these
temps are judged by their age alone (`mlvc.atomic.sweep`)."""


class Backend:
    """The protocol every kind implements (the methods below raise NotImplementedError here).

    `requests` counts the operations sent to the storage (for results and benchmarks).
    """

    capabilities = Capabilities()

    def __init__(self) -> None:
        self._requests = 0
        self._count_lock = threading.Lock()

    # -- bookkeeping shared by every kind
    @property
    def requests(self) -> int:
        return self._requests

    def _count(self, n: int = 1) -> None:
        with self._count_lock:
            self._requests += n

    def describe(self) -> str:
        """The base, safe to print (no credentials)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    # -- base
    def ensure_base(self) -> None:
        """Make sure the base exists (never creates an S3 bucket or a missing share)."""
        raise NotImplementedError

    # -- queries
    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def size(self, key: str) -> int:
        raise NotImplementedError

    def mtime(self, key: str) -> float | None:
        """Modification time (Unix seconds), None when the store cannot tell."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with `prefix` (recursive); temp files never appear."""
        raise NotImplementedError

    def local_path(self, key: str) -> str | None:
        """The file holding `key` on this machine, for kinds with `capabilities.local_files`."""
        return None

    # -- reads
    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes [start, start+length); shorter (possibly empty) past the end."""
        raise NotImplementedError

    def get_file(self, key: str, local_path: str | os.PathLike[str], callback: ProgressCallback | None = None) -> None:
        """Download to `local_path` (replacing it) through a temp file beside it."""
        raise NotImplementedError

    # -- writes
    def put_file(self, local_path: str | os.PathLike[str], key: str, callback: ProgressCallback | None = None,
                 *, move: bool = False) -> bool:
        """Upload a local file unless `key` exists; True if this call published it.  With `move`,
        the local file may be consumed (a rename where the kind stores local files)."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically, replacing an existing one."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove a key; an absent key is not an error."""
        raise NotImplementedError

    def rename(self, key: str, new_key: str) -> None:
        """Move an object to another key (quarantine).  Not atomic on object stores (copy, delete)."""
        self.put_bytes(new_key, self.get_bytes(key))
        self.delete(key)

    def cleanup(self, older_than_s: float) -> int:
        """Remove what writers that died more than `older_than_s` ago left behind; returns how many."""
        return 0

    # -- conditional operations (lock protocol), where `capabilities` says so
    def create_bytes(self, key: str, data: bytes) -> str | None:
        """Create `key` only if absent; its version tag, or None when it existed."""
        raise NotImplementedError

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        raise NotImplementedError

    def replace_if_unchanged(self, key: str, data: bytes, tag: str) -> str | None:
        raise NotImplementedError

    def delete_if_unchanged(self, key: str, tag: str) -> bool:
        raise NotImplementedError


S3_SCHEMES = ("s3", "s3a")


def open_backend(url: str, options: dict[str, Any] | None = None) -> Backend:
    """The backend for a URL: a directory path or file:// URL, s3://, or any other fsspec URL."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise RemoteNotFoundError(f"{url}: file:// URLs must name a local path")
        from .local import LocalBackend

        return LocalBackend(unquote(parts.path) if parts.scheme == "file" else url)
    if parts.scheme in S3_SCHEMES:
        from .s3 import S3Backend

        return S3Backend(url, options)
    from .fsspec_ import FsspecBackend

    return FsspecBackend(url, options)
