"""Reading a store's packs: mapped when they are local, ranged reads when not.

A local pack is memory-mapped once and read as views of the mapping (restores write straight
from the page cache: no copy through Python); a remote pack is read with ranged requests.
Packs are immutable, so a mapping never sees its file change under it.  The pages of mapped
packs count in the process's RSS once read, so they are dropped from the process as reads go on
(`MAP_RELEASE_BYTES`, all but the last `MAP_KEEP_BYTES`), which keeps peak RSS flat however
much is restored.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Union

from ..errors import CorruptObjectError, ObjectNotFoundError
from .backend import Backend
from .packindex import PACKS, PackIndex

MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux 5.14+; Python 3.11 lacks the name
POPULATE_MIN = 1 << 20
# Pages of mapped packs count in the process's RSS once read, though they are the kernel's page
# cache: a restore of 1M files would show the whole cache as resident.  After this many bytes
# read, the mappings' pages are dropped from the process (MADV_DONTNEED on a read-only shared
# file mapping only unmaps them; the next read faults them back in from the page cache), which
# keeps peak RSS flat however much is restored.
MAP_RELEASE_BYTES = 16 << 20
# ... all but the most recently read MAP_KEEP_BYTES: a restore's writer thread copies from views
# of them up to ~56 MiB behind the reads (its queued batches, the decode-ahead queue), and pages
# dropped before it got there were faulted in a second time (~0.25 s of CPU per GiB restored)
MAP_KEEP_BYTES = 64 << 20
FAULT_AROUND_BYTES = 64 << 10  # Linux's default fault_around_bytes

PackRead = Callable[[int, int], Union[bytes, memoryview]]  # (offset, length) -> bytes of one pack


def _drop_pages(mapped: mmap.mmap, start: int, end: int) -> None:
    """MADV_DONTNEED the pages of bytes start..end of a read-only mapping (the pages at either
    end too: a neighbour's next touch faults them back in from the page cache)."""
    start -= start % mmap.PAGESIZE
    try:
        mapped.madvise(mmap.MADV_DONTNEED, start, min(end, len(mapped)) - start)
    except (OSError, ValueError):
        pass  # closed meanwhile, or a platform without it: only RSS stays higher


class PackReads(PackIndex):
    """The visible packs of a backend (`PackIndex`), read: `_reader(pack number)` gives the
    read(offset, length) of one pack; `read_stored` a visible pack's raw bytes."""

    def __init__(self, backend: Backend, *, name: str, index_cache: Path | None = None,
                 merged_dir: Path | None = None, jobs: int = 1) -> None:
        super().__init__(backend, name=name, index_cache=index_cache, merged_dir=merged_dir, jobs=jobs)
        self.reads = 0  # reads of pack data (one per run of records, or per whole pack)
        self._readers: dict[int, PackRead] = {}
        self._fds: list[int] = []
        self._maps: list[mmap.mmap] = []
        self._mapped_read = 0  # bytes read through the mappings since their pages were dropped
        # the ranges read through the mappings whose pages were not dropped yet, oldest first:
        # (mapping, start, end, bytes counted)
        self._mapped_ranges: deque[tuple[mmap.mmap, int, int, int]] = deque()
        self._mapped_kept = 0
        self._release_lock = threading.Lock()

    def _packs_removed(self) -> None:
        self._close_readers()
        self._mapped_read = 0

    # ---------------------------------------------------------------- read
    def _reader(self, no: int) -> PackRead:
        """read(offset, length) of one pack: a view of the memory-mapped file when it is local
        (restores write straight from the page cache: no copy through Python), else a ranged
        read.  Packs are immutable, so a mapping never sees its file change under it."""
        cached = self._readers.get(no)
        if cached is not None:
            return cached
        key = f"{PACKS}{self._pack_names[no]}.pack"
        path = self.backend.local_path(key) if self.backend.capabilities.local_files else None
        reader: PackRead
        if path is not None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise CorruptObjectError(self._pack_names[no], self.name, "a pack file", "only its index") from None
            self._fds.append(fd)
            try:
                mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED)
            except (ValueError, OSError):
                mapped = None  # an empty file, or a filesystem that cannot map: plain reads
            if mapped is not None:
                self._maps.append(mapped)
                view = memoryview(mapped)

                def read_mapped(offset: int, length: int, view: memoryview = view,
                                mapped: mmap.mmap = mapped) -> memoryview:
                    self.reads += 1
                    # a fault maps in the pages around it too (the kernel's fault-around): a
                    # 1 KiB read costs up to 64 KiB of RSS, so small reads count as that much
                    counted = max(length, FAULT_AROUND_BYTES)
                    self._mapped_read += counted
                    self._mapped_ranges.append((mapped, offset, offset + length, counted))
                    self._mapped_kept += counted
                    if self._mapped_read >= MAP_RELEASE_BYTES:
                        self._release_mapped_pages(keep=MAP_KEEP_BYTES)
                    if length >= POPULATE_MIN:  # one call maps the run in, instead of a fault per page
                        start = offset - offset % mmap.PAGESIZE
                        try:
                            mapped.madvise(MADV_POPULATE_READ, start, min(offset + length, len(mapped)) - start)
                        except (OSError, ValueError):
                            pass  # kernels before 5.14: pages fault in one by one
                    return view[offset:offset + length]
                reader = read_mapped
            else:
                def read_file(offset: int, length: int, fd: int = fd) -> bytes:
                    self.reads += 1
                    return os.pread(fd, length, offset)
                reader = read_file
        else:
            def read_remote(offset: int, length: int, key: str = key, pack: str = self._pack_names[no]) -> bytes:
                with self._lock:
                    self.reads += 1
                try:
                    return self.backend.get_range(key, offset, length)
                except ObjectNotFoundError:
                    raise CorruptObjectError(pack, self.name, "a pack file", "only its index") from None
            reader = read_remote
        self._readers[no] = reader
        return reader

    def _release_mapped_pages(self, keep: int = 0) -> None:
        """Drop the mapped packs' pages from this process (see MAP_RELEASE_BYTES), but those of
        the last `keep` bytes read.  Safe while views of them are in use: the pages come back
        from the page cache when touched."""
        with self._release_lock:
            self._mapped_read = 0
            if not keep:
                self._mapped_ranges.clear()
                self._mapped_kept = 0
                for mapped in list(self._maps):
                    _drop_pages(mapped, 0, len(mapped))
                return
            while self._mapped_kept > keep and self._mapped_ranges:
                mapped, start, end, counted = self._mapped_ranges.popleft()
                self._mapped_kept -= counted
                _drop_pages(mapped, start, end)

    def read_stored(self, pack: str, offset: int, length: int) -> bytes | memoryview:
        """Raw bytes of a visible pack (stored records, for copying without recompression).
        CorruptObjectError for a pack that is not visible (an index whose pack file is gone)."""
        self._ensure_loaded()
        no = self._pack_no.get(pack)
        if no is None:
            raise CorruptObjectError(pack, self.name, "a pack file", "only its index")
        return self._reader(no)(offset, length)

    def _close_readers(self) -> None:
        self._readers = {}
        with self._release_lock:
            self._mapped_ranges.clear()
            self._mapped_kept = 0
        for mapped in self._maps:
            try:
                mapped.close()
            except BufferError:
                pass  # a caller still holds a view of it: unmapped when that goes
        self._maps = []
        for fd in self._fds:
            os.close(fd)
        self._fds = []


__all__ = ["PackReads", "PackRead", "MAP_RELEASE_BYTES", "MAP_KEEP_BYTES"]
