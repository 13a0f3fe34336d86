"""Many small chunk records read in order, their zstd frames decoded a batch at a time.

A restore of many small files (each file one chunk) spent most of its time per record: one
general decode (`decode_verify`) per 4 KiB file, and the zstd decode itself on the same thread
as the writes.  `decode_batch` decodes the zstd frames of up to `BATCH_RECORDS` records
(`BATCH_BYTES` decoded) with one call to python-zstandard's `multi_decompress_to_buffer`, which
releases the GIL for the whole batch: run on a helper thread, the next batch decodes while the
caller writes this one's files (a thread per record, or a batch decoded record by record in
Python, had left the two threads waiting on each other for the GIL).

Nothing here decides that bytes are right: a record it leaves undecoded (None: another codec, a
frame declaring another size than the record, a batch the library refused) and every record it
decodes is checked by the caller (`ObjectReads.iter_small_chunks`: the size and the id), and
anything in doubt goes the general way, which names what is wrong.  Output is bounded by the
records' declared sizes, which the reader has checked against `MAX_RAW_SIZE` before reading.
"""

from __future__ import annotations

import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Union

from .. import codec

BATCH_RECORDS = 256
BATCH_BYTES = 4 << 20  # decoded bytes a batch holds at most (a record larger than that is a batch alone)

Record = tuple[int, Union[bytes, memoryview], int]  # (codec, stored payload, raw length)

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The process's one thread that decodes batches of small records (made on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlvc-small")
        return _POOL


def decode_batch(records: list[Record]) -> list[bytes | memoryview | None]:
    """Each record's bytes: a raw record's payload, a zstd record's frame decoded (all of the
    batch's frames in one call), or None where this cannot say (see the module's doc)."""
    import zstandard

    out: list[bytes | memoryview | None] = [None] * len(records)
    frames: list[bytes | bytearray | memoryview] = []
    where: list[int] = []
    sizes: list[int] = []
    for i, (c, payload, raw) in enumerate(records):
        if c == codec.RAW:
            out[i] = payload
        elif c == codec.ZSTD and raw > 0:
            try:
                declared = zstandard.frame_content_size(payload)
            except Exception:  # noqa: BLE001 - not a frame: the general way says what it is
                continue
            if declared in (raw, -1):
                frames.append(payload)
                where.append(i)
                sizes.append(raw)
    if frames:
        try:
            decoded = zstandard.ZstdDecompressor().multi_decompress_to_buffer(
                frames, decompressed_sizes=struct.pack(f"={len(sizes)}Q", *sizes))
        except Exception:  # noqa: BLE001 - one bad frame fails the batch: its records go the general way
            return out
        for k, i in enumerate(where):
            out[i] = decoded[k].tobytes()
    return out
