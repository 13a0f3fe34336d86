"""A read-only, seekable file object over a file stored in the cache.

Reads fetch only the chunks that overlap the requested range (verified against
their ids by the store), so a checkpoint's layout and single tensors can be
read without materialising the whole file.
"""

from __future__ import annotations

import bisect
import io
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..store.types import ObjectReader
from .common import file_manifest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

class ChunkedFile(io.RawIOBase):
    """A read-only, seekable file over a file manifest's chunks, fetched lazily from the store.

    Only the chunks a read touches are fetched (runs of them through
    `store.iter_chunks`, which coalesces adjacent pack reads); a few recent
    chunks are kept.  `chunks_read` / `bytes_read` count what came from the store.
    """

    def __init__(self, store: ObjectReader, chunks: Iterable[tuple[bytes, int]], name: str = "",
                 keep: int = 8) -> None:
        super().__init__()

        self._store = store
        self._chunks = list(chunks)
        self._starts = []
        pos = 0
        for _, length in self._chunks:
            self._starts.append(pos)
            pos += length
        self._size = pos
        self._pos = 0
        self._keep = keep
        self._lru: OrderedDict[int, bytes] = OrderedDict()
        self.name = name
        self.chunks_read = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1, /) -> bytes:
        got = super().read(size)
        return b"" if got is None else got  # None only for a non-blocking file, which this is not

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
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def _fetch(self, first: int, last: int) -> None:
        """Make chunks first..last (inclusive) available, fetching the missing ones in runs."""
        i = first
        while i <= last:
            if i in self._lru:
                self._lru.move_to_end(i)
                i += 1
                continue
            j = i
            while j + 1 <= last and j + 1 not in self._lru:
                j += 1
            for k, data in zip(range(i, j + 1), self._store.iter_chunks(self._chunks[i:j + 1]), strict=True):
                self._lru[k] = bytes(data)
                self.chunks_read += 1
                self.bytes_read += len(data)
            i = j + 1
        while len(self._lru) > max(self._keep, last - first + 1):
            self._lru.popitem(last=False)

    def readinto(self, b: WriteableBuffer) -> int:
        n = min(memoryview(b).nbytes, self._size - self._pos)
        if n <= 0:
            return 0
        first = bisect.bisect_right(self._starts, self._pos) - 1
        last = bisect.bisect_right(self._starts, self._pos + n - 1) - 1
        self._fetch(first, last)
        out = memoryview(b)
        done = 0
        for i in range(first, last + 1):
            data = self._lru[i]
            lo = self._pos + done - self._starts[i]
            take = min(len(data) - lo, n - done)
            out[done:done + take] = data[lo:lo + take]
            done += take
        self._pos += done
        return done

    @classmethod
    def for_file(cls, store: ObjectReader, file_id: bytes, name: str = "") -> "ChunkedFile":
        return cls(store, file_manifest(store, file_id).chunks, name=name)
