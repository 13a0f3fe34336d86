"""Backends that misbehave on purpose, wrapped around a real one: faults for tests.

Each wrapper forwards every `Backend` method to the backend it wraps and
breaks one thing in a scripted way, so tests inject failures by wrapping a
store's backend instead of patching internals:

* `FlakyBackend(inner, failures=n, methods=...)`: the first n calls of those
  methods fail as a dropped connection (`RemoteUnreachableError`);
* `CorruptOnceBackend(inner, match=...)`: the first read of a key containing
  `match` returns its bytes with one bit flipped;
* `FailAfter(inner, n)`: every write after the first n fails as a full disk.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Any

from ..errors import DiskError, RemoteUnreachableError
from .backend import Backend, ProgressCallback

LocalPath = str | os.PathLike[str]

READS = ("get_bytes", "get_range", "get_file")
WRITES = ("put_file", "put_bytes", "create_bytes", "replace_if_unchanged", "rename")


class WrappedBackend(Backend):
    """Forwards everything to `inner`; subclasses override what they break."""

    def __init__(self, inner: Backend) -> None:
        super().__init__()
        self.inner = inner
        self.capabilities = inner.capabilities

    def describe(self) -> str:
        return self.inner.describe()

    @property
    def requests(self) -> int:
        return self.inner.requests

    def ensure_base(self) -> None:
        return self.inner.ensure_base()

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def mtime(self, key: str) -> float | None:
        return self.inner.mtime(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def local_path(self, key: str) -> str | None:
        return self.inner.local_path(key)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def get_file(self, key: str, local_path: LocalPath, callback: ProgressCallback | None = None) -> None:
        return self.inner.get_file(key, local_path, callback)

    def put_file(self, local_path: LocalPath, key: str, callback: ProgressCallback | None = None, *,
                 move: bool = False) -> bool:
        return self.inner.put_file(local_path, key, callback, move=move)

    def put_bytes(self, key: str, data: bytes) -> None:
        return self.inner.put_bytes(key, data)

    def delete(self, key: str) -> None:
        return self.inner.delete(key)

    def rename(self, key: str, new_key: str) -> None:
        return self.inner.rename(key, new_key)

    def cleanup(self, older_than_s: float) -> int:
        return self.inner.cleanup(older_than_s)

    def create_bytes(self, key: str, data: bytes) -> str | None:
        return self.inner.create_bytes(key, data)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        return self.inner.get_tagged(key)

    def replace_if_unchanged(self, key: str, data: bytes, tag: str) -> str | None:
        return self.inner.replace_if_unchanged(key, data, tag)

    def delete_if_unchanged(self, key: str, tag: str) -> bool:
        return self.inner.delete_if_unchanged(key, tag)


class FlakyBackend(WrappedBackend):
    """The first `failures` calls of `methods` fail as a dropped connection."""

    def __init__(self, inner: Backend, failures: int = 1, methods: tuple[str, ...] = READS) -> None:
        super().__init__(inner)
        self.failures_left = failures
        self.methods = methods
        self._lock = threading.Lock()
        for name in methods:
            setattr(self, name, self._flaky(getattr(inner, name)))

    def _flaky(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                fail = self.failures_left > 0
                if fail:
                    self.failures_left -= 1
            if fail:
                raise RemoteUnreachableError(f"{self.describe()} dropped the connection (injected)")
            return method(*args, **kwargs)

        return call


def _flip(data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


class CorruptOnceBackend(WrappedBackend):
    """The first read of a key containing `match` returns one flipped bit; later reads are intact."""

    def __init__(self, inner: Backend, match: str = ".pack") -> None:
        super().__init__(inner)
        self.match = match
        self.corrupted: list[str] = []
        self._lock = threading.Lock()

    def _first(self, key: str) -> bool:
        with self._lock:
            if self.match in key and not self.corrupted:
                self.corrupted.append(key)
                return True
        return False

    def get_bytes(self, key: str) -> bytes:
        data = self.inner.get_bytes(key)
        return _flip(data) if self._first(key) else data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        return _flip(data) if self._first(key) else data

    def get_file(self, key: str, local_path: LocalPath, callback: ProgressCallback | None = None) -> None:
        self.inner.get_file(key, local_path, callback)
        if self._first(key):
            with open(local_path, "r+b") as f:
                size = os.fstat(f.fileno()).st_size
                if size:
                    f.seek(size // 2)
                    byte = f.read(1)
                    f.seek(size // 2)
                    f.write(bytes([byte[0] ^ 0x01]))


class FailAfter(WrappedBackend):
    """Every write after the first `n` fails as a full disk."""

    def __init__(self, inner: Backend, n: int) -> None:
        super().__init__(inner)
        self.left = n
        self._lock = threading.Lock()
        for name in WRITES:
            setattr(self, name, self._limited(getattr(inner, name)))

    def _limited(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                allowed = self.left > 0
                self.left -= 1
            if not allowed:
                raise DiskError(f"cannot write {self.describe()}: {os.strerror(errno.ENOSPC)} (injected)")
            return method(*args, **kwargs)

        return call


__all__ = ["WrappedBackend", "FlakyBackend", "CorruptOnceBackend", "FailAfter"]
