"""Content-defined chunking (FastCDC 2020, compiled `pyfastcdc`).

Boundaries depend on content, so an insertion early in a file (a tensor added
to a checkpoint) shifts offsets without changing the chunks after it.  The
parameters are recorded in every file manifest so they can change later
without ambiguity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

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


BLOCK = 16 * 1024 * 1024


def _fastcdc(params: ChunkerParams):
    from pyfastcdc import FastCDC

    # pyfastcdc's "avg" excludes the skipped min region (its doc: real average is avg + min).
    return FastCDC(avg_size=params.avg_size - params.min_size if params.avg_size > params.min_size
                   else params.avg_size,
                   min_size=params.min_size, max_size=params.max_size)


def _read_full(f: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def iter_chunks(f: BinaryIO, params: ChunkerParams = DEFAULT_PARAMS, block: int = BLOCK,
                boundaries=None, size_hint: int | None = None) -> Iterator[memoryview]:
    """Yield chunk views of a binary stream, reading it in blocks (bounded memory).

    Each block is a fresh buffer, so a yielded view stays valid for as long as
    the caller holds it (the pack writer keeps views until they are written).
    A chunk is only emitted once at least `max_size` bytes follow its start (or
    the region ended), so boundaries are exactly those of cutting the whole
    stream at once; the tail is carried into the next block.

    `boundaries` (sorted absolute offsets) force cuts there, e.g. where tensor
    storages begin and end in a checkpoint; FastCDC cuts inside each region.
    `size_hint` (the expected length) sizes buffers for small files: zeroing a
    16 MiB buffer per 4 KiB file would dominate adding many small files.
    """
    cdc = _fastcdc(params)
    if size_hint is not None:
        block = max(1, min(block, size_hint + 1))
    if not boundaries:
        yield from _iter_region(f, cdc, params, block, None)
        return
    pos = 0
    for b in [*sorted(set(boundaries)), None]:
        if b is not None and b <= pos:
            continue
        yield from _iter_region(f, cdc, params, block, None if b is None else b - pos)
        if b is None:
            return
        pos = b


def _iter_region(f: BinaryIO, cdc, params: ChunkerParams, block: int, limit: int | None):
    carry = b""
    left = limit
    while True:
        want = block if left is None else min(block, left)
        buf = bytearray(len(carry) + want)
        buf[:len(carry)] = carry
        mv = memoryview(buf)
        got = _read_full(f, mv[len(carry):])
        if left is not None:
            left -= got
        n = len(carry) + got
        eof = got < want or left == 0
        if n == 0:
            return
        if n < len(buf) // 2:
            # A small file (or a short last block): keep only what was read, since the pack
            # writer holds chunk views (and so their whole buffer) until they are written.
            mv = memoryview(bytes(mv[:n]))
        else:
            mv = mv[:n]
        carry = b""
        for chunk in cdc.cut_buf(mv):
            if not eof and chunk.offset + params.max_size > n:
                carry = bytes(mv[chunk.offset:])
                break
            yield chunk.data
        if eof:
            return
