"""Chunk compression: zstd when it pays, raw when it does not.

Float weights compress ~1.08x at ~0.6 GB/s, so compressing every chunk would
put zstd alone on the hot path for the main workload.  A small sample from the
middle of each chunk is compressed first; only chunks whose sample shrinks
enough are compressed whole.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

# The `codec` byte of a stored record (pack format 1).
RAW = 0
ZSTD = 1

SAMPLE = 4096
SAMPLE_RATIO = 0.90  # compress the whole chunk only if the sample shrinks below this
KEEP_RATIO = 0.97  # and keep the result only if the whole chunk does too

_local = threading.local()


def _compressor(level: int):
    c = getattr(_local, "c", None)
    if c is None or _local.level != level:
        import zstandard

        c = zstandard.ZstdCompressor(level=level)
        _local.c, _local.level = c, level
    return c


def _decompressor():
    d = getattr(_local, "d", None)
    if d is None:
        import zstandard

        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(data, level: int = 3) -> tuple[int, bytes | memoryview]:
    """Return (codec, payload) for a chunk's raw bytes."""
    n = len(data)
    if n == 0 or level <= 0:
        return RAW, data
    c = _compressor(level)
    if n > 4 * SAMPLE:
        mid = n // 2
        sample = data[mid - SAMPLE // 2: mid + SAMPLE // 2]
        if len(c.compress(sample)) > SAMPLE_RATIO * len(sample):
            return RAW, data
    packed = c.compress(data)
    if len(packed) > KEEP_RATIO * n:
        return RAW, data
    return ZSTD, packed


class ChunkEncoder:
    """`encode` for the chunks of one file, skipping most samples once they stop paying.

    Weights are incompressible chunk after chunk; after `_SETTLE` raw chunks in a
    row only every `_PROBE`-th chunk is sampled, and any chunk that compresses
    resets to sampling every chunk.

    The payload never aliases the caller's buffer (a raw view is copied): the
    chunker reuses its read buffers, and the pack writer holds payloads until
    they are written.
    """

    _SETTLE = 8
    _PROBE = 16

    def __init__(self, level: int = 3):
        self.level = level
        self._raw_streak = 0
        self._n = 0

    def encode(self, data) -> tuple[int, bytes | memoryview]:
        self._n += 1
        if self._raw_streak >= self._SETTLE and self._n % self._PROBE:
            return RAW, _owned(data)
        c, payload = encode(data, self.level)
        self._raw_streak = self._raw_streak + 1 if c == RAW else 0
        return c, _owned(payload)


class StreamEncoder:
    """Compress an object given in pieces (a million-file tree is ~75 MB of JSON: it is never
    joined).  Always zstd (structured text pays); the frame carries no content size, which
    `decode` bounds by the record's raw length instead."""

    def __init__(self, level: int = 3):
        import zstandard

        self._z = zstandard.ZstdCompressor(level=max(level, 1)).compressobj() if level > 0 else None
        self._out: list[bytes] = []
        self.raw_len = 0

    def update(self, piece: bytes) -> None:
        self.raw_len += len(piece)
        self._out.append(self._z.compress(piece) if self._z is not None else bytes(piece))

    def finish(self) -> tuple[int, bytes]:
        """(codec, payload)."""
        if self._z is None:
            return RAW, b"".join(self._out)
        self._out.append(self._z.flush())
        return ZSTD, b"".join(self._out)


def _owned(payload) -> bytes:
    return payload if isinstance(payload, bytes) else bytes(payload)


def _check_declared_size(payload, raw_len: int) -> None:
    """Refuse a zstd frame whose header declares another size than the record (before anything
    is allocated for it)."""
    import zstandard

    declared = zstandard.frame_content_size(payload)
    if declared >= 0 and declared != raw_len:
        raise ValueError(f"zstd frame declares {declared} bytes, the record {raw_len}")


def decode(codec: int, payload: bytes, raw_len: int) -> bytes:
    """The raw bytes of a stored payload; ValueError if it does not decode to exactly `raw_len`.

    Memory is bounded by `raw_len`, never by what the payload claims: python-zstandard sizes its
    output by the frame header's content size when there is one and ignores `max_output_size`,
    so a 6 KiB frame declaring 1 GiB would be allocated in full.  A frame whose declared content
    size differs from `raw_len` is refused before anything is allocated."""
    if codec == RAW:
        return payload
    if codec == ZSTD:
        _check_declared_size(payload, raw_len)
        return _decompressor().decompress(payload, max_output_size=raw_len)
    raise ValueError(f"unknown codec {codec}")


def decode_pieces(codec: int, payload, raw_len: int, piece: int = 1 << 20) -> Iterator[bytes]:
    """`decode` in pieces of at most `piece` bytes, as they are decompressed (a 75 MB tree is
    never one string); the same checks, ValueError on a payload that is not `raw_len` bytes."""
    if codec == RAW:
        if len(payload) != raw_len:
            raise ValueError(f"{len(payload)} stored bytes, the record {raw_len}")
        for start in range(0, raw_len, piece):
            yield bytes(payload[start:start + piece])
        return
    if codec != ZSTD:
        raise ValueError(f"unknown codec {codec}")
    import zstandard

    _check_declared_size(payload, raw_len)
    total = 0
    # its own context: a thread's shared one may be in use by another stream it reads meanwhile
    with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
        while part := reader.read(piece):
            total += len(part)
            if total > raw_len:
                raise ValueError(f"a zstd frame of more than {raw_len} bytes")
            yield part
    if total != raw_len:
        raise ValueError(f"a zstd frame of {total} bytes, the record {raw_len}")
