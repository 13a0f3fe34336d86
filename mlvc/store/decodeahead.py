"""A restore's decode-ahead: chunk records read in order, decoded on helper threads.

`decode_ahead` takes the records `PackStore.iter_stored` reads (payloads as stored, not decoded)
and yields each chunk's bytes in the order given.  Compressed chunks (byte planes, zstd, deltas),
and with `check_ids` every chunk, are decoded and checked on `DECODE_THREADS` helper threads in
batches of consecutive records (`DECODE_BATCH_BYTES`, `DECODE_BATCH_RECORDS`; a task per 64 KiB
chunk left the reader waking on a future per chunk), at most `DECODE_AHEAD_BYTES` of decoded bytes
ahead of the chunk yielded (zstd, numpy and xxhash release the GIL): a restore of float
checkpoints or of many small files decodes and hashes on every core while the caller writes.
Raw chunks left to the caller's check are yielded as they lie (views of the mapped pack), in
order among the decoded ones.

Byte planes (and deltas over them) are decoded into buffers recycled within one call (`_Slabs`):
a fresh array per chunk, held until the writer has written it and then freed, made the allocator
give its pages back to the kernel and fault them in again for the next batch (a page fault per
4 KiB decoded, ~40% of a planes decode's CPU).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, NoReturn, Union

from .. import codec
from ..errors import CorruptObjectError, MlvcError
from .packs import CHUNK
from .records import BaseRead, decode_verify
from .types import Key, StoredItem

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DECODE_BATCH_BYTES = 1 << 20
DECODE_BATCH_RECORDS = 64  # and at most this many records a batch (small chunks of many files)
DECODE_AHEAD_BYTES = 8 << 20
# One core is the reader's (lookups, hashing every byte) and the writer's (the kernel's copy into the
# file): decode threads beyond the other cores only contend with them (on 2 cores, a second decode
# thread made a planes restore 5-20% slower and its decode ~30% dearer in CPU)
DECODE_THREADS = max(1, min(4, (os.cpu_count() or 1) - 1))
_DECODE_POOL: ThreadPoolExecutor | None = None
_DECODE_POOL_LOCK = threading.Lock()
MAX_SLABS = 48  # decode buffers one call keeps for reuse (what is in flight: ahead, and the writer's batches)
SLAB_ROUND = 64 << 10

Record = tuple[Key, int, Union[bytes, memoryview], int]  # (key, codec, stored payload, raw length)
Decoded = list[tuple[Key, Union[bytes, memoryview, CorruptObjectError]]]
# A record yielded as it lies, with the error that came with it
AsStored = tuple[Key, int, Union[bytes, memoryview], int, Union[MlvcError, None]]
# The queue, in order: (future of a decoded batch, None, its bytes) or (None, a record as stored, its bytes)
Queued = tuple[Union["Future[Decoded]", None], Union[AsStored, None], int]
# A chunk's plaintext, checked against its id, from elsewhere than its record (or None)
Plain = Callable[[bytes, bool], Union[bytes, None]]  # (id, may derive it) -> plaintext or None
# Reads a damaged chunk again the plain way and raises the error that names its pack
Reraise = Callable[[Key, CorruptObjectError], NoReturn]


def _decode_pool() -> ThreadPoolExecutor:
    """The process's decode threads (made on the first compressed chunk a restore reads)."""
    global _DECODE_POOL
    with _DECODE_POOL_LOCK:
        if _DECODE_POOL is None:
            _DECODE_POOL = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="mlvc-decode")
        return _DECODE_POOL


class _Slabs:
    """Buffers that one decode-ahead decodes byte planes into, each reused once nothing refers to
    it any more: every view of a slab (a decoded chunk, numpy's or a memoryview's) holds a
    reference to it, so a slab whose only reference is this list is free.  Used by the thread
    that submits batches only; at most MAX_SLABS are kept (others are made and left to the
    collector)."""

    def __init__(self) -> None:
        self._slabs: list[npt.NDArray[np.uint64]] = []

    def take(self, n: int) -> npt.NDArray[np.uint64]:
        """A free buffer of at least `n` bytes: 8-byte words, so that it is aligned, and the array
        that owns its memory (numpy makes every view of it refer to it, not to a view between)."""
        import numpy as np

        smaller = None
        for i in range(len(self._slabs)):
            if sys.getrefcount(self._slabs[i]) == 2:  # this list's and the call's: no view of it lives
                if self._slabs[i].nbytes >= n:
                    return self._slabs[i]
                smaller = i
        slab = np.empty(-(-n // SLAB_ROUND) * SLAB_ROUND // 8, np.uint64)
        if smaller is not None:
            self._slabs[smaller] = slab
        elif len(self._slabs) < MAX_SLABS:
            self._slabs.append(slab)
        return slab


def _room(raw: int) -> int:
    """The bytes of a slab a chunk of `raw` bytes takes (8-byte aligned)."""
    return (codec.out_room(raw) + 7) & ~7


def _decode_batch(records: list[Record], where: str, check_ids: bool, base: BaseRead | None = None,
                  plain: Plain | None = None, slab: npt.NDArray[np.uint64] | None = None) -> Decoded:
    """Decode consecutive chunk records on a helper thread: (key, bytes or its error) each
    (a delta's missing base is raised: the object is missing, not damaged).  `plain(id)`: a
    compressed chunk's checked plaintext from elsewhere (`FileBases.read`), tried first.
    `slab`: `_room(raw)` bytes for each record in turn, where byte planes are decoded."""
    out: Decoded = []
    at = 0
    room = None if slab is None else slab.view("u1")
    for key, c, payload, raw in records:
        into = None
        if room is not None:
            into, at = room[at:at + _room(raw)], at + _room(raw)
        # a delta's own chain costs more decodes than the one a derived plaintext needs; a whole
        # record costs about as much, so only a copy in a file is worth it then
        if plain is not None and c != codec.RAW and (known := plain(key[1], c == codec.DELTA)) is not None \
                and len(known) == raw:
            out.append((key, known))
            continue
        try:
            out.append((key, decode_verify(CHUNK, key[1], c, payload, raw, where, check_ids, base, into)))
        except CorruptObjectError as exc:
            out.append((key, exc))
    return out


def decode_ahead(stored: Iterable[StoredItem], where: str, check_ids: bool, base: BaseRead,
                 reraise: Reraise, plain: Plain | None = None) -> Iterator[bytes | memoryview]:
    """The bytes of the chunks `stored` reads (read with ``decode=False``), in its order, each
    checked against its id unless `check_ids` is False (the caller checks the whole file's).
    `base` reads a delta's base; `reraise(key, error)` raises the error of a damaged chunk;
    `plain(id)` gives a compressed chunk's plaintext, checked against its id, from elsewhere
    (local files: `FileBases.read`) instead of decoding its record, or None."""
    ahead: deque[Queued] = deque()
    ahead_bytes = 0
    batch: list[Record] = []
    batch_bytes = 0
    batch_room = 0  # of a slab, for every record of the batch
    batch_planes = False  # whether the batch holds byte planes or deltas (decoded into a slab)
    pool = None
    slabs = _Slabs()

    def submit() -> None:
        nonlocal batch, batch_bytes, batch_room, batch_planes, pool, ahead_bytes
        if pool is None:
            pool = _decode_pool()
        slab = slabs.take(batch_room) if batch_planes else None
        ahead.append((pool.submit(_decode_batch, batch, where, check_ids, base, plain, slab), None, batch_bytes))
        ahead_bytes += batch_bytes
        batch, batch_bytes, batch_room, batch_planes = [], 0, 0, False

    def settled(queued: Queued) -> Iterator[bytes | memoryview]:
        future, as_stored, _n = queued
        if future is not None:
            for key, data in future.result():
                if isinstance(data, CorruptObjectError):
                    reraise(key, data)
                yield data
            return
        assert as_stored is not None
        key, c, payload, raw, error = as_stored
        if error is not None:
            raise error
        try:
            done = decode_verify(CHUNK, key[1], c, payload, raw, where, check_ids, base=base)
        except CorruptObjectError as exc:
            reraise(key, exc)
        yield done

    try:
        for key, c, payload, raw, _data, error in stored:
            # a batch takes compressed records, and raw ones that need their hash checked or
            # that come while one is open (a raw run with nothing to check is never queued)
            if error is None and (c != codec.RAW or check_ids or batch):
                batch_room += _room(raw)
                batch_planes = batch_planes or c in (codec.PLANES, codec.DELTA)
                batch.append((key, c, payload, raw))
                batch_bytes += raw
                if batch_bytes >= DECODE_BATCH_BYTES or len(batch) >= DECODE_BATCH_RECORDS:
                    submit()
            else:
                if batch:
                    submit()
                ahead.append((None, (key, c, payload, raw, error), raw))
                ahead_bytes += raw  # (pages of the mapped pack, held until yielded)
            # yield what is ready, in order: a raw chunk at once, a batch once decoded or
            # when the queue holds too much (a raw chunk behind a batch waits for it)
            while ahead and ((first := ahead[0][0]) is None or first.done() or ahead_bytes > DECODE_AHEAD_BYTES):
                queued = ahead.popleft()
                ahead_bytes -= queued[2]
                yield from settled(queued)
        if batch:
            submit()
        while ahead:
            queued = ahead.popleft()
            ahead_bytes -= queued[2]
            yield from settled(queued)
    finally:
        for future, _as_stored, _n in ahead:
            if future is not None:
                future.cancel()
