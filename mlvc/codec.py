"""Chunk compression: byte planes for floats, zstd when it pays, raw when it does not.

Float weights compress ~1.08x with zstd on their bytes as they lie, so for bytes of
unknown kind a small sample from the middle of each chunk is compressed first; only
chunks whose sample shrinks enough are compressed whole.

When the checkpoint layout says a chunk holds floats of `width` bytes (fp16, bf16,
fp32, fp64, complex), the chunk is stored as **byte planes** (codec `PLANES`, pack
format 2): plane j holds byte j of every element, so the plane of the sign and
exponent bits (highly skewed: a trained tensor uses a few dozen exponents) is
entropy-coded by zstd, while the mantissa planes, close to random, stay raw unless
they shrink.  The split and the merge are numpy transpositions (no per-byte Python);
numpy is imported only when a chunk is stored or read as planes.

A `PLANES` payload (all integers little-endian)::

    u8 width | u8 skip | width x (u8 plane codec | u32 plane stored length)
    | the chunk's first `skip` bytes and its last (raw_len - skip) % width bytes, raw
    | plane 0 | plane 1 | ... (each RAW, ZSTD or SPARSE, each decoding to k = (raw_len - skip) // width bytes)

A `SPARSE` plane (pack format 4) is one that is mostly zeros, as the sign and exponent planes of
the XOR of two versions of a tensor are (1-15% of their bytes differ)::

    u32 m, the plane's non-zero bytes | zstd frame of: m positions (u16 when k <= 65,536, else
    u32; each the distance from the previous one, the first from 0) | their m bytes

zstd codes such a plane 10-20% larger than this and decodes it ~4x slower (a sequence every few
dozen bytes), where the positions are scattered back by numpy in a few microseconds.

`skip` puts the element boundaries where the tensor has them (a chunk may begin inside
an element or in the zip bytes before a storage).  The choice of codec never affects
the bytes restored: any split is lossless, and every decoded chunk is checked against
its id (the xxh3-128 of these bytes) by the store.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # imported lazily at run time: only a chunk stored or read so needs them
    import numpy as np
    import numpy.typing as npt
    import zstandard

# What a chunk's bytes may be given as (a file's bytes, a view of a read buffer or a mapped pack)
Buffer = Union[bytes, bytearray, memoryview]
# What a stored payload, and an object's decoded bytes, are: bytes, or a view (of a mapped pack,
# of a decoded array) that a caller copies only if it keeps it
Bytes = Union[bytes, memoryview]

# The `codec` byte of a stored record (RAW and ZSTD: pack format 1; PLANES: format 2; DELTA: 3).
RAW = 0
ZSTD = 1
PLANES = 2
DELTA = 3
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", PLANES: "planes", DELTA: "delta"}
# A delta's base may itself be a delta: restoring a chunk reads at most MAX_DELTA_DEPTH + 1
# records (the writer starts a chain again, an independent record, past it; a reader refuses more).
MAX_DELTA_DEPTH = 4
DELTA_HEAD = 17  # 16-byte base id | u8 inner codec

# Element widths the planes codec takes (a float dtype's bytes per element, complex: per part).
PLANE_WIDTHS = (2, 4, 8)
FLOAT_WIDTHS = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
                "complex32": 2, "complex64": 4, "complex128": 8}
_PLANES_HEAD = struct.Struct("<BB")
_PLANE = struct.Struct("<BI")
SPARSE = 2  # a plane's codec inside a PLANES payload (RAW and ZSTD as for records; SPARSE: format 4)
SPARSE_DENSITY = 8  # a plane with at most 1/8 of its bytes non-zero is stored SPARSE (smaller than zstd)
_COUNT = struct.Struct("<I")
PLANES_LEVEL = 1  # the planes' zstd parameters start from level 1 (`_plane_compressor`)
PLANE_SAMPLE_RATIO = 0.95  # a plane is compressed whole only if its sample shrinks below this

SAMPLE = 4096
SAMPLE_RATIO = 0.90  # compress the whole chunk only if the sample shrinks below this
KEEP_RATIO = 0.97  # and keep the result only if the whole chunk does too

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None or _local.level != level:
        import zstandard

        c = zstandard.ZstdCompressor(level=level)
        _local.c, _local.level = c, level
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        import zstandard

        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(data: Buffer, level: int = 3) -> tuple[int, Buffer]:
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


def _plane_compressor() -> zstandard.ZstdCompressor:
    """zstd tuned to entropy-code a plane: the fastest strategy, the longest minimum match and
    a tiny hash table leave almost only Huffman-coded literals, which is what exponent bytes
    need (on normally distributed fp32 values: 34% of the plane, decoded at ~2 GB/s of
    plane, where level 1 keeps 40% and decodes at ~0.8 GB/s)."""
    c = getattr(_local, "planes", None)
    if c is None:
        import zstandard

        params = zstandard.ZstdCompressionParameters.from_level(
            PLANES_LEVEL, strategy=zstandard.STRATEGY_FAST, min_match=7, search_log=1, hash_log=6)
        c = _local.planes = zstandard.ZstdCompressor(compression_params=params)
    return c


def encode_planes(data: Buffer, width: int, skip: int = 0, level: int = PLANES_LEVEL,
                  attempt: tuple[bool, ...] | None = None) -> tuple[int, Buffer]:
    """(codec, payload) for a chunk of `width`-byte floats whose first element boundary is
    `skip` bytes in: `PLANES` when the planes shrink the chunk, else what `encode(data, level)`
    gives (`level` <= 0: never compressed; the planes themselves use `_plane_compressor`).
    `attempt[j]` False stores plane j raw without trying (`ChunkEncoder` learns which planes
    never pay); otherwise a 4 KiB sample of a plane decides whether the whole plane is compressed.

    The planes are cut as integers (plane j = element >> 8j, narrowed to a byte) straight into
    the payload: two vectorised passes per plane, no strided byte copies, no joining copy."""
    n = len(data)
    if width not in PLANE_WIDTHS or level <= 0 or n < 2 * width or not 0 <= skip < width:
        return encode(data, level)
    import numpy as np

    k = (n - skip) // width
    tail = n - skip - k * width
    elements = np.frombuffer(data, f"<u{width}", count=k, offset=skip)
    c = _plane_compressor()
    packed: list[bytes | None] = []
    scratch = None
    codecs = [RAW] * width
    for j in range(width):
        frame = None
        if attempt is None or attempt[j]:
            plane = (elements >> (8 * j)).astype(np.uint8) if j else elements.astype(np.uint8)
            if np.count_nonzero(plane) * SPARSE_DENSITY <= k:
                frame, codecs[j] = _sparse_plane(plane, np.flatnonzero(plane != 0), k, c), SPARSE
            elif k <= 4 * SAMPLE or len(c.compress(plane[k // 2 - SAMPLE // 2:k // 2 + SAMPLE // 2].data)) < \
                    PLANE_SAMPLE_RATIO * SAMPLE:
                frame, codecs[j] = c.compress(plane.data), ZSTD
            if frame is not None and len(frame) >= KEEP_RATIO * k:
                frame, codecs[j] = None, RAW
        packed.append(frame)
    head = _PLANES_HEAD.size + _PLANE.size * width
    size = head + skip + tail + sum(k if f is None else len(f) for f in packed)
    if size > KEEP_RATIO * n:
        return RAW, data
    out = np.empty(size, np.uint8)
    view = out.data
    _PLANES_HEAD.pack_into(view, 0, width, skip)
    pos = head + skip + tail
    src = np.frombuffer(data, np.uint8)
    out[head:head + skip] = src[:skip]
    out[head + skip:pos] = src[n - tail:]
    for j, frame in enumerate(packed):
        if frame is None:
            _PLANE.pack_into(view, _PLANES_HEAD.size + _PLANE.size * j, RAW, k)
            if j == 0:
                out[pos:pos + k] = elements  # narrowed: the low byte
            else:
                if scratch is None:
                    scratch = np.empty(k, elements.dtype)
                np.right_shift(elements, 8 * j, out=scratch)
                out[pos:pos + k] = scratch
            pos += k
        else:
            _PLANE.pack_into(view, _PLANES_HEAD.size + _PLANE.size * j, codecs[j], len(frame))
            view[pos:pos + len(frame)] = frame
            pos += len(frame)
    return PLANES, view


def _sparse_plane(plane: npt.NDArray[np.uint8], nonzero: npt.NDArray[np.intp], k: int,
                  c: zstandard.ZstdCompressor) -> bytes:
    """A `SPARSE` plane: the count of its non-zero bytes, then one zstd frame of their positions
    (as distances) and their bytes."""
    import numpy as np

    if not len(nonzero):
        return _COUNT.pack(0)
    gaps = np.empty(len(nonzero), "<u2" if k <= 1 << 16 else "<u4")
    gaps[0] = nonzero[0]
    np.subtract(nonzero[1:], nonzero[:-1], out=gaps[1:], casting="unsafe")
    return _COUNT.pack(len(nonzero)) + c.compress(gaps.tobytes() + plane[nonzero].tobytes())


def _plane_heads(width: int) -> struct.Struct:
    """The `width` (u8 codec | u32 length) entries of a planes record, read with one call."""
    heads = _HEADS.get(width)
    if heads is None:
        heads = _HEADS[width] = struct.Struct("<" + "BI" * width)
    return heads


_HEADS: dict[int, struct.Struct] = {}


def _merge_scratch(k: int, dtype: str) -> npt.NDArray[np.unsignedinteger]:
    """A per-thread array of `k` elements of `dtype` that the merge widens each plane into (reused:
    a fresh one per chunk would fault its pages in every time)."""
    import numpy as np

    cache: dict[str, npt.NDArray[np.unsignedinteger]] | None = getattr(_local, "merge", None)
    if cache is None:
        cache = _local.merge = {}
    wide = cache.get(dtype)
    if wide is None or len(wide) < k:
        wide = cache[dtype] = np.empty(max(k, 1 << 15), dtype)
    return wide[:k]


def _decode_planes(payload: Buffer, raw_len: int, into: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.uint8]:
    """The bytes of a `PLANES` payload (a numpy uint8 array of `raw_len` bytes); ValueError on
    any inconsistency, before more than `raw_len` bytes are allocated.  `into`: where to decode
    (`out_room(raw_len)` bytes of a uint8 array starting 8-byte aligned; the result is a view of
    it), instead of a new array.

    The planes of 2- and 4-byte floats are merged as integers (element |= plane_j << 8j over an
    aligned view of the output, each plane widened into a reused per-thread array): contiguous,
    vectorised passes, 2-3x faster than strided byte copies.  Those of 8-byte floats are copied
    into every 8th byte (seven integer passes over 8-byte elements cost more than that)."""
    import numpy as np

    mv = memoryview(payload)
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    size = len(mv)
    if size < _PLANES_HEAD.size:
        raise ValueError("a planes record without its header")
    width, skip = mv[0], mv[1]
    if width not in PLANE_WIDTHS or skip >= width or skip > raw_len:
        raise ValueError(f"a planes record of width {width}, skip {skip}")
    k = (raw_len - skip) // width
    tail = raw_len - skip - k * width
    heads = _plane_heads(width)
    pos = _PLANES_HEAD.size + heads.size
    if size < pos + skip + tail:
        raise ValueError("a truncated planes record")
    codecs_lengths = heads.unpack_from(mv, _PLANES_HEAD.size)
    if pos + skip + tail + sum(codecs_lengths[1::2]) != size:
        raise ValueError("planes that do not add up to the record")
    # 8-byte words, so that the elements after `skip` lie aligned for the integer view
    at = -skip % width
    if into is None:
        into = np.empty((raw_len + at + 7) >> 3, np.uint64).view(np.uint8)
    elif len(into) < out_room(raw_len) or into.ctypes.data % 8:
        raise ValueError("an output buffer too small or not 8-byte aligned")
    out = into[at:at + raw_len]
    src = np.frombuffer(mv, np.uint8)
    if skip:
        out[:skip] = src[pos:pos + skip]
    if tail:
        out[raw_len - tail:] = src[pos + skip:pos + skip + tail]
    pos += skip + tail
    body = out[skip:skip + k * width]
    elements = body.view(f"<u{width}")
    wide = None
    for j in range(width):
        codec, length = codecs_lengths[2 * j], codecs_lengths[2 * j + 1]
        start, pos = pos, pos + length
        if codec == RAW:
            if length != k:
                raise ValueError(f"a raw plane of {length} bytes, the record's planes {k}")
            plane = src[start:pos]
        elif codec == ZSTD:
            seg = mv[start:pos]
            _check_declared_size(seg, k)
            plane = np.frombuffer(_decompressor().decompress(seg, max_output_size=k), np.uint8)
            if len(plane) != k:
                raise ValueError(f"a plane of {len(plane)} bytes, the record's planes {k}")
        elif codec == SPARSE:
            spots, values = _sparse_positions(mv[start:pos], k)
            if j and width != 8:  # scattered straight into the elements: no plane, no widening pass
                elements[spots] |= values.astype(elements.dtype) << (8 * j)
                continue
            plane = np.zeros(k, np.uint8)
            plane[spots] = values
        else:
            raise ValueError(f"unknown plane codec {codec}")
        if width == 8:
            body[j::8] = plane
        elif j == 0:
            elements[...] = plane
        else:
            if wide is None:
                wide = _merge_scratch(k, elements.dtype.str)
            np.copyto(wide, plane)
            wide <<= 8 * j
            elements |= wide
    return out


def out_room(raw_len: int) -> int:
    """The bytes `decode(..., into=)` needs for a chunk of `raw_len` bytes (room to align it)."""
    return raw_len + 8


def _sparse_positions(seg: memoryview, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """(positions, bytes) of a `SPARSE` plane of `k` bytes; ValueError unless the positions are
    increasing and inside the plane (memory bounded by 5k bytes, whatever the frame claims)."""
    import numpy as np

    if len(seg) < _COUNT.size:
        raise ValueError("a sparse plane without its count")
    (m,) = _COUNT.unpack_from(seg, 0)
    if m > k:
        raise ValueError(f"a sparse plane of {m} non-zero bytes, the record's planes {k}")
    gw = 2 if k <= 1 << 16 else 4
    if not m:
        if len(seg) != _COUNT.size:
            raise ValueError("an empty sparse plane with a body")
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    frame = seg[_COUNT.size:]
    _check_declared_size(frame, m * (gw + 1))
    body = _decompressor().decompress(frame, max_output_size=m * (gw + 1))
    if len(body) != m * (gw + 1):
        raise ValueError(f"a sparse plane of {len(body)} bytes, its count {m}")
    gaps = np.frombuffer(body, f"<u{gw}", m)
    at = np.cumsum(gaps, dtype=np.int64)
    if at[-1] >= k or (m > 1 and not gaps[1:].all()):
        raise ValueError("a sparse plane whose positions are out of order or past its end")
    return at, np.frombuffer(body, np.uint8, m, m * gw)


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

    def __init__(self, level: int = 3) -> None:
        self.level = level
        self._raw_streak = 0
        self._n = 0
        self._plane_streaks: dict[int, list[int]] = {}  # per width: chunks each plane stayed raw
        self._plane_n = 0

    def encode(self, data: Buffer, width: int = 0, skip: int = 0) -> tuple[int, Buffer]:
        """`width`, `skip`: the chunk holds floats of `width` bytes from `skip` on (0: unknown)."""
        if width:
            return self._planes(data, width, skip)
        self._n += 1
        if self._raw_streak >= self._SETTLE and self._n % self._PROBE:
            return RAW, _owned(data)
        c, payload = encode(data, self.level)
        self._raw_streak = self._raw_streak + 1 if c == RAW else 0
        return c, _owned(payload)


    def _planes(self, data: Buffer, width: int, skip: int) -> tuple[int, Buffer]:
        """Byte planes; a plane raw in `_SETTLE` chunks in a row (a mantissa plane) is then only
        tried in every `_PROBE`-th chunk, and tried again in every chunk once it pays."""
        streaks = self._plane_streaks.setdefault(width, [0] * width)
        self._plane_n += 1
        probe = self._plane_n % self._PROBE == 0
        attempt = tuple(probe or s < self._SETTLE for s in streaks)
        c, payload = encode_planes(data, width, skip, self.level, attempt)
        if c == PLANES:
            for j in range(width):
                codec = payload[_PLANES_HEAD.size + _PLANE.size * j]
                if codec == RAW and attempt[j]:
                    streaks[j] += 1
                elif codec != RAW:
                    streaks[j] = 0
            return c, payload  # a buffer of its own, never the caller's
        return c, _owned(payload)


class StreamEncoder:
    """Compress an object given in pieces (a million-file tree is ~75 MB of JSON: it is never
    joined).  Always zstd (structured text pays); the frame carries no content size, which
    `decode` bounds by the record's raw length instead."""

    def __init__(self, level: int = 3) -> None:
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


def _owned(payload: Buffer) -> bytes:
    return payload if isinstance(payload, bytes) else bytes(payload)


def _check_declared_size(payload: Buffer, raw_len: int) -> None:
    """Refuse a zstd frame whose header declares another size than the record (before anything
    is allocated for it)."""
    import zstandard

    declared = zstandard.frame_content_size(payload)
    if declared >= 0 and declared != raw_len:
        raise ValueError(f"zstd frame declares {declared} bytes, the record {raw_len}")


def decode(codec: int, payload: Bytes, raw_len: int, into: npt.NDArray[np.uint8] | None = None) -> Bytes:
    """The raw bytes of a stored payload; ValueError if it does not decode to exactly `raw_len`.
    `into` (`out_room(raw_len)` bytes, 8-byte aligned): where byte planes are decoded, a view of
    it returned (a caller recycling its buffers spares the page faults of a fresh array per chunk).

    Memory is bounded by `raw_len`, never by what the payload claims: python-zstandard sizes its
    output by the frame header's content size when there is one and ignores `max_output_size`,
    so a 6 KiB frame declaring 1 GiB would be allocated in full.  A frame whose declared content
    size differs from `raw_len` is refused before anything is allocated."""
    if codec == RAW:
        return payload
    if codec == ZSTD:
        _check_declared_size(payload, raw_len)
        return _decompressor().decompress(payload, max_output_size=raw_len)
    if codec == PLANES:
        return _decode_planes(payload, raw_len, into).data
    raise ValueError(f"unknown codec {codec}")


def xor_bytes(data: Buffer, base: Buffer) -> npt.NDArray[np.uint8]:
    """data XOR base (equal lengths), as a numpy uint8 array (vectorised, no per-byte Python)."""
    import numpy as np

    return np.bitwise_xor(np.frombuffer(data, np.uint8), np.frombuffer(base, np.uint8))


def encode_delta(data: Buffer, base: Buffer, base_oid: bytes, encoder: ChunkEncoder, width: int = 0,
                 skip: int = 0) -> bytes:
    """A `DELTA` payload for a chunk against `base` (the plaintext of chunk `base_oid`, of the
    same length): the XOR of the two, encoded by `encoder`'s rule (planes, zstd or raw)::

        16-byte base id | u8 inner codec (RAW, ZSTD or PLANES) | the XOR's payload in that codec

    The XOR of two versions of a float tensor zeroes the sign, the exponent and the high
    mantissa bits that did not change, which the planes' entropy coding then squeezes."""
    if len(base) != len(data) or len(base_oid) != 16:
        raise ValueError("a delta needs a base of the chunk's length")
    inner, payload = encoder.encode(xor_bytes(data, base).data, width, skip)
    return base_oid + bytes((inner,)) + bytes(payload)


def delta_base(payload: Buffer) -> bytes:
    """The base id a `DELTA` payload names (ValueError if it is too short to name one)."""
    if len(payload) < DELTA_HEAD:
        raise ValueError("a delta record without its base id")
    return bytes(payload[:16])


def decode_delta(payload: Bytes, raw_len: int, base: Buffer, into: npt.NDArray[np.uint8] | None = None) -> memoryview:
    """The bytes of a `DELTA` payload, given its base's plaintext; ValueError on any
    inconsistency (a base of another size, a nested delta, an inner payload that does not decode
    to `raw_len`), with memory bounded by `raw_len`.  `into`: as for `decode` (byte planes only)."""
    if len(payload) < DELTA_HEAD:
        raise ValueError("a delta record without its base id")
    if len(base) != raw_len:
        raise ValueError(f"a base of {len(base)} bytes for a delta of {raw_len}")
    inner = payload[16]
    if inner not in (RAW, ZSTD, PLANES):
        raise ValueError(f"a delta whose inner codec is {inner}")
    body = memoryview(payload)[DELTA_HEAD:]
    if inner == PLANES:  # merged into an array of its own: XORed in place, no second output
        import numpy as np

        out = _decode_planes(body, raw_len, into)
        np.bitwise_xor(out, np.frombuffer(base, np.uint8), out=out)
        return out.data
    xor = decode(inner, body, raw_len)
    if len(xor) != raw_len:
        raise ValueError(f"a delta of {len(xor)} bytes, the record {raw_len}")
    return xor_bytes(xor, base).data


def decode_pieces(codec: int, payload: Buffer, raw_len: int, piece: int = 1 << 20) -> Iterator[bytes]:
    """`decode` in pieces of at most `piece` bytes, as they are decompressed (a 75 MB tree is
    never one string); the same checks, ValueError on a payload that is not `raw_len` bytes."""
    if codec == RAW:
        if len(payload) != raw_len:
            raise ValueError(f"{len(payload)} stored bytes, the record {raw_len}")
        for start in range(0, raw_len, piece):
            yield bytes(payload[start:start + piece])
        return
    if codec == PLANES:  # a chunk (at most MAX_CHUNK_SIZE): decoded whole
        data = _decode_planes(payload, raw_len).data
        for start in range(0, raw_len, piece):
            yield bytes(data[start:start + piece])
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
