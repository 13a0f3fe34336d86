"""Content-defined chunking (FastCDC 2020, compiled `pyfastcdc`).

Boundaries depend on content, so an insertion early in a file (a tensor added
to a checkpoint) shifts offsets without changing the chunks after it.  The
parameters are recorded in every file manifest so they can change later
without ambiguity.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Protocol

ALGORITHM = "fastcdc2020"
# No chunker setting may exceed this (config refuses it), so a stored chunk longer than it is
# corrupt or hostile: refused before anything of its declared size is allocated.
MAX_CHUNK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 16 * 1024
    avg_size: int = 64 * 1024
    max_size: int = 256 * 1024

    def as_dict(self) -> dict:
        return {"algo": ALGORITHM, "min": self.min_size, "avg": self.avg_size, "max": self.max_size}

    def is_sane(self) -> bool:
        return 0 < self.min_size <= self.avg_size <= self.max_size <= MAX_CHUNK_SIZE

    @classmethod
    def from_dict(cls, d: dict) -> "ChunkerParams":
        if d.get("algo", ALGORITHM) != ALGORITHM:
            raise ValueError(f"unknown chunker {d.get('algo')!r}")
        params = cls(int(d["min"]), int(d["avg"]), int(d["max"]))
        if not params.is_sane():
            raise ValueError(f"chunker sizes must satisfy 0 < min <= avg <= max <= {MAX_CHUNK_SIZE}")
        return params


DEFAULT_PARAMS = ChunkerParams()


BLOCK = 8 * 1024 * 1024
_RING = 3  # buffers of the prefetching reader: one being cut, one read ahead, one being filled


def _fastcdc(params: ChunkerParams):
    from pyfastcdc import FastCDC

    # pyfastcdc's "avg" excludes the skipped min region (its doc: real average is avg + min).
    return FastCDC(avg_size=params.avg_size - params.min_size if params.avg_size > params.min_size
                   else params.avg_size,
                   min_size=params.min_size, max_size=params.max_size)


class ReadsInto(Protocol):
    """What the chunker reads from: a binary file, or anything with its `readinto`."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _read_full(f: ReadsInto, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


class _InlineBlocks:
    """Blocks read on the caller's thread into one reused buffer (small files: no thread)."""

    head = 0  # no room for a carried tail: a small file is read whole at once

    def __init__(self, f: ReadsInto, block: int):
        self._f = f
        self._block = block
        self._buf: bytearray | None = None

    def next(self) -> tuple[bytearray, int, bool]:
        if self._buf is None:
            self._buf = bytearray(self._block)
        n = _read_full(self._f, memoryview(self._buf))
        return self._buf, n, n < self._block

    def release(self, buf: bytearray) -> None:
        pass

    def close(self) -> None:
        self._buf = None


class _PrefetchBlocks:
    """Blocks read ahead by a helper thread into `_RING` reused buffers.

    `readinto` releases the GIL, so reading (and whatever the stream's `readinto`
    does besides, such as hashing the whole file) overlaps with cutting and
    hashing chunks on the caller's thread.  Each block is read `head` bytes into
    its buffer, leaving room in front for the tail the previous block left uncut.
    A read error is raised from `next`.
    """

    _STOP = object()

    def __init__(self, f: ReadsInto, block: int, head: int):
        self._f = f
        self._block = block
        self.head = head
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._full: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        for _ in range(_RING):
            self._free.put(bytearray(head + block))
        self._thread = threading.Thread(target=self._run, name="mlvc-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                buf = self._free.get()
                if buf is self._STOP or self._stopping:
                    return
                n = _read_full(self._f, memoryview(buf)[self.head:])
                eof = n < self._block
                self._full.put((buf, n, eof))
                if eof:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._full.put(exc)

    def next(self) -> tuple[bytearray, int, bool]:
        item = self._full.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def release(self, buf: bytearray) -> None:
        self._free.put(buf)

    def close(self) -> None:
        self._stopping = True
        self._free.put(self._STOP)
        self._thread.join()


ALIGN = 64 * 1024  # fixed blocks of a float tensor (`aligned_cuts`): the default average chunk


def aligned_cuts(spans, max_size: int, align: int = ALIGN) -> tuple[list[int], set[int]]:
    """(cuts, starts of fixed blocks) for float tensors lying at `spans` ((start, end) in the
    file): each is cut into blocks of `align` bytes (at most `max_size`) from its own start, so
    a block sits at the same offset inside its tensor in every version of a checkpoint (what a
    delta against the previous version lines up with, `codec.DELTA`).  Overlapping spans (views
    of one storage) keep the first."""
    align = max(1, min(align, max_size))
    cuts: list[int] = []
    fixed: set[int] = set()
    last_end = -1
    for start, end in sorted(spans):
        if start < last_end or end <= start:
            continue
        last_end = end
        cuts.append(start)
        for at in range(start, end, align):
            fixed.add(at)
            cuts.append(min(at + align, end))
    return cuts, fixed


def iter_chunks(f: ReadsInto, params: ChunkerParams = DEFAULT_PARAMS, block: int = BLOCK,
                boundaries=None, size_hint: int | None = None, fixed=frozenset()) -> Iterator[memoryview]:
    """Yield chunk views of a binary stream, reading it in blocks (bounded memory).

    A yielded view is valid only until the iterator is advanced: blocks are read
    into a few reused buffers (files larger than one block are read ahead by a
    helper thread), so a caller that keeps a chunk's bytes copies them
    (`codec.ChunkEncoder` does).  A chunk is only emitted once at least
    `max_size` bytes follow its start (or the region ended), so boundaries are
    exactly those of cutting the whole stream at once; the tail is carried into
    the next block.

    `boundaries` (sorted absolute offsets) force cuts there, e.g. where tensor
    storages begin and end in a checkpoint; FastCDC cuts inside each region.
    `size_hint` (the expected length) sizes the buffer for small files: zeroing a
    large buffer per 4 KiB file would dominate adding many small files.
    `fixed`: boundaries that start a fixed block, emitted whole up to the next boundary (no
    content-defined cut inside; at most `max_size` bytes: `aligned_cuts`).
    """
    cdc = _fastcdc(params)
    if size_hint is not None:
        block = max(1, min(block, size_hint + 1))
    cuts = sorted({b for b in boundaries or () if b > 0})
    ahead = size_hint is None or size_hint >= block
    blocks = _PrefetchBlocks(f, block, params.max_size) if ahead else _InlineBlocks(f, block)
    try:
        yield from _cut_blocks(cdc, params.max_size, blocks, cuts, fixed)
    finally:
        blocks.close()


def _cut_blocks(cdc, max_size: int, blocks, cuts: list[int], fixed=frozenset()) -> Iterator[memoryview]:
    pos = 0  # absolute offset of the first byte not yet emitted
    carry = b""  # the bytes from `pos` that the previous block left uncut
    ci = 0  # the next forced cut
    while True:
        buf, n, eof = blocks.next()
        head = blocks.head
        if len(carry) <= head:
            work = memoryview(buf)[head - len(carry):head + n]
            work[:len(carry)] = carry
        else:  # a tail longer than the room for it (a small file that grew): one copy
            work = memoryview(bytearray(len(carry) + n))
            work[:len(carry)] = carry
            work[len(carry):] = memoryview(buf)[head:head + n]
            blocks.release(buf)
            buf = None
        end = pos + len(work)
        i = 0
        while True:
            while ci < len(cuts) and cuts[ci] <= pos + i:
                ci += 1
            forced = ci < len(cuts) and cuts[ci] <= end
            stop = cuts[ci] - pos if forced else len(work)
            if pos + i in fixed:  # a fixed block: whole, once its end is here
                if forced or eof:
                    if stop > i:
                        yield work[i:stop]
                    i = stop
                if not forced:
                    break
                continue
            i += yield from _cut_region(cdc, work[i:stop], max_size, final=forced or eof)
            if not forced or i < stop:
                break
        carry = bytes(work[i:])
        pos += i
        if buf is not None:
            blocks.release(buf)
        if eof:
            return


def _cut_region(cdc, mv: memoryview, max_size: int, final: bool):
    """Yield the chunks of `mv`; returns how many bytes were emitted.  Unless `final`, the
    chunks that start less than `max_size` before the end are left for the next block."""
    n = len(mv)
    if not n:
        return 0
    for chunk in cdc.cut_buf(mv):
        if not final and chunk.offset + max_size > n:
            return chunk.offset
        yield chunk.data
    return n
