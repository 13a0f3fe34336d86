"""An in-memory `Backend`: the reference implementation the contract suite checks first,
and a fast store for tests of the layers above."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from ..atomic import write_bytes
from ..errors import ObjectNotFoundError
from .backend import Backend, Capabilities, ProgressCallback, validate_key, validate_prefix


class MemoryBackend(Backend):
    capabilities = Capabilities(atomic_create=True, conditional=True, ranged_read=True)

    def __init__(self, name: str = "memory") -> None:
        super().__init__()
        self.name = name
        self.objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"memory:{self.name}"

    def _get(self, key: str) -> bytes:
        validate_key(key)
        self._count()
        try:
            return self.objects[key][0]
        except KeyError:
            raise ObjectNotFoundError(key, where=self.describe()) from None

    def ensure_base(self) -> None:
        pass

    def exists(self, key: str) -> bool:
        validate_key(key)
        self._count()
        return key in self.objects

    def size(self, key: str) -> int:
        return len(self._get(key))

    def mtime(self, key: str) -> float | None:
        self._get(key)
        return self.objects[key][1]

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        self._count()
        return sorted(k for k in list(self.objects) if k.startswith(prefix))

    def get_bytes(self, key: str) -> bytes:
        return self._get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"invalid range start={start} length={length}")
        return self._get(key)[start:start + length]

    def get_file(self, key: str, local_path: str | os.PathLike[str], callback: ProgressCallback | None = None) -> None:
        data = self._get(key)
        target = os.fspath(local_path)
        write_bytes(Path(target), data)
        if callback is not None:
            callback(len(data))

    def put_file(self, local_path: str | os.PathLike[str], key: str, callback: ProgressCallback | None = None, *,
                 move: bool = False) -> bool:
        validate_key(key)
        with open(local_path, "rb") as f:
            data = f.read()
        self._count()
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = (data, time.time())
        if move:
            os.unlink(local_path)
        if callback is not None:
            callback(len(data))
        return True

    def put_bytes(self, key: str, data: bytes) -> None:
        validate_key(key)
        self._count()
        with self._lock:
            self.objects[key] = (bytes(data), time.time())

    def delete(self, key: str) -> None:
        validate_key(key)
        self._count()
        with self._lock:
            self.objects.pop(key, None)

    def create_bytes(self, key: str, data: bytes) -> str | None:
        validate_key(key)
        self._count()
        with self._lock:
            if key in self.objects:
                return None
            self.objects[key] = (bytes(data), time.time())
        return hashlib.sha256(data).hexdigest()

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        data = self._get(key)
        return data, hashlib.sha256(data).hexdigest()

    def replace_if_unchanged(self, key: str, data: bytes, tag: str) -> str | None:
        validate_key(key)
        self._count()
        with self._lock:
            cur = self.objects.get(key)
            if cur is None or hashlib.sha256(cur[0]).hexdigest() != tag:
                return None
            self.objects[key] = (bytes(data), time.time())
        return hashlib.sha256(data).hexdigest()

    def delete_if_unchanged(self, key: str, tag: str) -> bool:
        validate_key(key)
        self._count()
        with self._lock:
            cur = self.objects.get(key)
            if cur is None or hashlib.sha256(cur[0]).hexdigest() != tag:
                return False
            del self.objects[key]
        return True
