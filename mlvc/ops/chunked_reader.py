"""A read-only, seekable file object over a file stored in the cache.

Reads fetch only the chunks that overlap the requested range (verified against
their ids by the store), with a small LRU of decoded chunks, so a checkpoint's
layout and single tensors can be read without materialising the whole file.
"""

from __future__ import annotations

import bisect
import io
from collections import OrderedDict

from ..store.cache import CHUNK
from .common import file_manifest


class ChunkedFile(io.RawIOBase):
    def __init__(self, store, file_id: bytes, name: str = "", cache_chunks: int = 16):
        super().__init__()
        self._store = store
        manifest = file_manifest(store, file_id)
        self._chunks = [oid for oid, _ in manifest.chunks]
        self._starts: list[int] = []
        pos = 0
        for _, length in manifest.chunks:
            self._starts.append(pos)
            pos += length
        self._size = pos
        self._pos = 0
        self._lru: OrderedDict[int, bytes] = OrderedDict()
        self._lru_max = cache_chunks
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    @property
    def size(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def _chunk(self, i: int) -> bytes:
        data = self._lru.get(i)
        if data is not None:
            self._lru.move_to_end(i)
            return data
        data = self._store.get(CHUNK, self._chunks[i])
        self._lru[i] = data
        if len(self._lru) > self._lru_max:
            self._lru.popitem(last=False)
        return data

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        parts = []
        pos = self._pos
        i = bisect.bisect_right(self._starts, pos) - 1
        while pos < end:
            data = self._chunk(i)
            start = self._starts[i]
            lo, hi = pos - start, min(len(data), end - start)
            parts.append(data[lo:hi])
            pos = start + hi
            i += 1
        self._pos = end
        return b"".join(parts)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)
