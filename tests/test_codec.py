"""The chunk codecs: byte planes of floats (pack format 2) round trip every dtype byte-exactly,
and a damaged or hostile planes record is refused without allocating what it claims."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from mlvc import codec
from mlvc.codec import PLANES, RAW, ZSTD, ChunkEncoder, decode, decode_pieces, encode_planes

# dtype -> (numpy dtype of its bits, width); bf16 and fp8 have no numpy float type: their bits
DTYPES = {"float32": (np.float32, 4), "float16": (np.float16, 2), "bfloat16": (np.uint16, 2),
          "float64": (np.float64, 8), "float8": (np.uint8, 1), "int64": (np.int64, 8), "int32": (np.int32, 4),
          "int8": (np.int8, 1)}
SPECIALS = {4: [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-40, 3.4e38],  # denormals, extremes
            2: [0x7FC0, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x807F, 0x7F7F],  # bf16 bits: NaN, Inf...
            8: [np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7e308]}


def trained_like(dtype: str, n: int, seed: int, specials: list[int]) -> bytes:
    """Bytes of `n` values as a trained tensor has them (a narrow range of exponents), with
    special values (NaN, Inf, -0, denormals) at the given positions."""
    rng = np.random.default_rng(seed)
    bits, _width = DTYPES[dtype]
    values = rng.standard_normal(n) * 0.02
    if dtype == "bfloat16":
        a = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        for i, s in enumerate(specials):
            a[s % n] = SPECIALS[2][i % len(SPECIALS[2])]
    elif dtype == "float8":
        a = rng.integers(0x30, 0x48, n, dtype=np.uint8)
    elif dtype.startswith("int"):
        a = (values * 1000).astype(bits)
    else:
        a = values.astype(bits)
        table = SPECIALS[8 if dtype == "float64" else 4]
        with np.errstate(over="ignore"):  # 3.4e38 is Inf in fp16: one more special value
            for i, s in enumerate(specials):
                a[s % n] = table[i % len(table)]
    return a.tobytes()


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(sorted(DTYPES)), n=st.integers(1, 40_000), seed=st.integers(0, 2**32 - 1),
       start=st.integers(0, 15), cut=st.integers(0, 15), specials=st.lists(st.integers(0, 2**31), max_size=20),
       hinted_skip=st.integers(0, 7))
def test_planes_round_trip_every_dtype_odd_lengths_and_phases(dtype, n, seed, start, cut, specials, hinted_skip):
    """A chunk cut anywhere in a tensor (odd lengths, any phase) decodes to its exact bytes,
    whatever width and skip it was encoded with (a wrong hint costs size, never bytes)."""
    data = trained_like(dtype, n, seed, specials)
    data = data[start:max(start, len(data) - cut)]
    width = DTYPES[dtype][1]
    for w, skip in ((width, (-start) % width), (4, hinted_skip % 4), (2, hinted_skip % 2), (8, hinted_skip)):
        c, payload = encode_planes(data, w, skip)
        assert bytes(decode(c, payload, len(data))) == data
        assert b"".join(decode_pieces(c, payload, len(data), piece=4096)) == data
        if c == PLANES:
            assert len(payload) < len(data)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_floats_are_stored_as_planes_smaller_than_zstd(dtype):
    data = trained_like(dtype, 64 * 1024 // DTYPES[dtype][1], 7, [3, 99, 1000])
    width = DTYPES[dtype][1]
    c, payload = encode_planes(data, width, 0)
    assert c == PLANES
    assert len(payload) < len(zstandard.ZstdCompressor(level=3).compress(data))
    assert bytes(decode(c, payload, len(data))) == data


def test_chunk_encoder_uses_the_hint_and_falls_back_for_other_bytes():
    enc = ChunkEncoder(level=3)
    floats = trained_like("float32", 16 * 1024, 1, [])
    assert enc.encode(floats, 4, 0)[0] == PLANES
    assert enc.encode(floats)[0] == RAW  # no hint: today's rule (floats do not pay for zstd)
    text = b"loss=0.125 step=10\n" * 4000
    assert enc.encode(text, 4, 0)[0] in (PLANES, ZSTD)
    assert ChunkEncoder(level=0).encode(floats, 4, 0)[0] == RAW  # compression off: off for planes too
    noise = np.random.default_rng(3).bytes(64 * 1024)
    c, payload = enc.encode(noise, 4, 1)
    assert c == RAW and payload == noise  # nothing shrinks: stored as it is


def _unsized(n: int) -> bytes:
    """A zstd frame of `n` zero bytes that does not declare its size (written as a stream)."""
    obj = zstandard.ZstdCompressor().compressobj()
    piece = bytes(1 << 20)
    return b"".join(obj.compress(piece) for _ in range(n >> 20)) + obj.flush()


def _planes_record(width: int, skip: int, edges: bytes, planes: list[tuple[int, bytes]]) -> bytes:
    head = struct.pack("<BB", width, skip) + b"".join(struct.pack("<BI", c, len(p)) for c, p in planes)
    return head + edges + b"".join(p for _c, p in planes)


def test_a_valid_hand_written_record_decodes():
    k = 100
    planes = [(RAW, bytes(range(100))), (ZSTD, zstandard.ZstdCompressor().compress(b"\x3c" * k))]
    payload = _planes_record(2, 1, b"\x07" + b"\x09", planes)
    out = bytes(decode(PLANES, payload, 1 + 2 * k + 1))
    assert out[0] == 7 and out[-1] == 9 and out[1:-1:2] == bytes(range(100)) and set(out[2:-1:2]) == {0x3C}


@pytest.mark.parametrize("case", [
    "width 3", "skip past width", "truncated header", "planes short of the record", "bytes past the planes",
    "raw plane of the wrong size", "unknown plane codec", "zstd plane declaring more", "zstd plane bomb",
    "zstd plane without a size decoding past it", "garbage zstd"])
def test_hostile_planes_records_are_refused_with_bounded_memory(case):
    """Each a ValueError (the store turns it into CorruptObjectError, exit 6) before anything of
    the size the payload claims is allocated."""
    k, raw_len = 1000, 4000
    z = zstandard.ZstdCompressor()
    ok = [(RAW, bytes(k))] * 3 + [(ZSTD, z.compress(b"\x3f" * k))]

    def last_plane(frame: bytes) -> bytes:
        return _planes_record(4, 0, b"", [*ok[:3], (ZSTD, frame)])

    payloads = {
        "width 3": lambda: _planes_record(3, 0, b"", ok[:3]),
        "skip past width": lambda: _planes_record(4, 4, b"", ok),
        "truncated header": lambda: b"\x04\x00\x00",
        "planes short of the record": lambda: _planes_record(4, 0, b"", ok)[:-10],
        "bytes past the planes": lambda: _planes_record(4, 0, b"", ok) + b"x",
        "raw plane of the wrong size": lambda: _planes_record(4, 0, b"", [(RAW, bytes(k - 1)), *ok[1:]]),
        "unknown plane codec": lambda: _planes_record(4, 0, b"", [(9, bytes(k)), *ok[1:]]),
        "zstd plane declaring more": lambda: last_plane(z.compress(b"\x3f" * (k + 1))),
        "zstd plane bomb": lambda: last_plane(z.compress(bytes(64 << 20))),
        "zstd plane without a size decoding past it": lambda: last_plane(_unsized(64 << 20)),
        "garbage zstd": lambda: last_plane(b"\x28\xb5\x2f\xfd" + b"\xff" * 20),
    }
    payload = payloads[case]()
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises((ValueError, zstandard.ZstdError)):
        decode(PLANES, payload, raw_len)
    with pytest.raises((ValueError, zstandard.ZstdError)):
        list(decode_pieces(PLANES, payload, raw_len))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 * 1024  # KiB: far below the 64 MiB claimed


def test_the_sample_keeps_random_mantissa_planes_raw():
    data = trained_like("float32", 64 * 1024, 5, [])
    c, payload = encode_planes(data, 4, 0)
    heads = [struct.unpack_from("<BI", payload, 2 + 5 * j) for j in range(4)]
    assert c == PLANES and [h[0] for h in heads] == [RAW, RAW, RAW, ZSTD]
    assert codec.CODEC_NAMES[c] == "planes"


def test_a_manifest_record_in_byte_planes_is_refused_before_decoding():
    """Only chunks are ever stored as planes: a manifest record claiming them (up to 128 MiB
    raw for a tree) is corrupt before anything is allocated for it."""
    from mlvc.errors import CorruptObjectError
    from mlvc.store.packs import CHUNK, TREE_MANIFEST
    from mlvc.store.records import decode_verify

    body = trained_like("float32", 4096, 1, [])
    c, payload = encode_planes(body, 4, 0)
    from mlvc.hashing import digest

    assert bytes(decode_verify(CHUNK, digest(body), c, payload, len(body), "here")) == body
    with pytest.raises(CorruptObjectError, match="byte planes"):
        decode_verify(TREE_MANIFEST, digest(body), c, payload, len(body), "here")


def _moved(data: bytes, dtype: str, seed: int, flips: int) -> bytes:
    """`data` one training step later: a few low bits of some elements changed (or, for ints and
    fp8, a few whole elements), so the XOR with the previous bytes is mostly zeros."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    width = DTYPES[dtype][1]
    for _ in range(flips):
        if not out:
            break
        at = int(rng.integers(0, len(out)))
        out[at - at % width] ^= int(rng.integers(1, 256))  # the element's lowest byte (little-endian)
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(sorted(DTYPES)), n=st.integers(1, 40_000), seed=st.integers(0, 2**32 - 1),
       start=st.integers(0, 15), cut=st.integers(0, 15), specials=st.lists(st.integers(0, 2**31), max_size=20),
       flips=st.integers(0, 2000), unrelated=st.booleans())
def test_xor_deltas_round_trip_every_dtype_odd_lengths_and_specials(dtype, n, seed, start, cut, specials, flips,
                                                                    unrelated):
    """A delta against the previous version's bytes (or against unrelated bytes of the same
    length) decodes, with that base, to the exact chunk: fp32, fp16, bf16, fp8, ints, odd
    lengths and phases, NaN/Inf/-0/denormals; with another base of that length it decodes to
    other bytes (which the store's id check refuses), never to an error-free wrong length."""
    base = trained_like(dtype, n, seed, specials)[start:]
    base = base[:max(0, len(base) - cut)]
    data = trained_like(dtype, n, seed + 1, specials)[start:][:len(base)] if unrelated \
        else _moved(base, dtype, seed, flips)
    width = DTYPES[dtype][1]
    payload = codec.encode_delta(data, base, b"\x07" * 16, ChunkEncoder(), width if width > 1 else 0,
                                 (-start) % width if width > 1 else 0)
    assert codec.delta_base(payload) == b"\x07" * 16
    assert bytes(codec.decode_delta(payload, len(data), base)) == data
    if not unrelated and flips < n // 20 and len(data) > 4096:
        assert len(payload) < 0.5 * len(data)  # mostly zeros: the delta pays


def test_hostile_delta_records_are_refused_with_bounded_memory():
    base = bytes(2300)
    z = zstandard.ZstdCompressor()
    stream = z.compressobj()
    past = b"".join(stream.compress(bytes(1 << 20)) for _ in range(16)) + stream.flush()
    for payload, base_bytes in [
        (b"\x01" * 10, base),  # too short to name a base
        (b"\x01" * 16 + bytes((codec.DELTA,)) + b"x", base),  # a delta inside a delta
        (b"\x01" * 16 + bytes((9,)) + b"x", base),  # an unknown inner codec
        (b"\x01" * 16 + bytes((RAW,)) + bytes(2300), bytes(22)),  # a base of another size
        (b"\x01" * 16 + bytes((RAW,)) + bytes(2299), base),  # a raw XOR one byte short
        (b"\x01" * 16 + bytes((ZSTD,)) + past, base),  # a zstd XOR decoding past the record
        (b"\x01" * 16 + bytes((ZSTD,)) + z.compress(bytes(16 << 20)), base),  # a bomb declaring its size
    ]:
        with pytest.raises((ValueError, zstandard.ZstdError)):
            codec.decode_delta(payload, 2300, base_bytes)
    with pytest.raises(ValueError):
        codec.decode(codec.DELTA, b"\x01" * 17, 0)  # never without its base


def _sparse_bytes(n: int, width: int, seed: int, density: float, edges: bool) -> bytes:
    """`n` bytes that are mostly zeros (the XOR of two close versions), a fraction `density`
    of them non-zero, with the first and last byte set when `edges`."""
    rng = np.random.default_rng(seed)
    a = np.where(rng.random(n) < density, rng.integers(1, 256, n), 0).astype(np.uint8)
    if edges and n:
        a[0], a[-1] = 0x81, 0x7F
    return a.tobytes()


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(sorted(DTYPES)), n=st.integers(1, 40_000), seed=st.integers(0, 2**32 - 1),
       density=st.sampled_from([0.0, 0.001, 0.02, 0.1, 0.2]), edges=st.booleans(), skip=st.integers(0, 7))
def test_sparse_planes_round_trip_every_dtype_density_and_edge(dtype, n, seed, density, edges, skip):
    """Planes with at most 1/8 of their bytes non-zero are stored SPARSE (positions and bytes) and
    decode to the exact chunk whatever the width, phase and length, non-zero bytes at the very
    first and last position included."""
    width = DTYPES[dtype][1]
    data = _sparse_bytes(n, width, seed, density, edges)
    for w in {width, 2, 4, 8} - {1}:
        c, payload = encode_planes(data, w, skip % w)
        assert bytes(decode(c, payload, len(data))) == data
        assert b"".join(decode_pieces(c, payload, len(data), piece=4096)) == data
        if c == PLANES and density <= 0.02 and n >= 4 * w:
            heads = [struct.unpack_from("<BI", payload, 2 + 5 * j)[0] for j in range(w)]
            assert codec.SPARSE in heads, heads


def test_a_plane_past_64_kib_stores_its_positions_as_u32():
    """k > 65,536 bytes per plane (a chunk longer than 128 KiB of bf16): positions are 4 bytes."""
    data = _sparse_bytes(300_000, 2, 9, 0.01, True)
    c, payload = encode_planes(data, 2, 0)
    assert c == PLANES and codec.SPARSE in [struct.unpack_from("<BI", payload, 2 + 5 * j)[0] for j in range(2)]
    assert bytes(decode(c, payload, len(data))) == data


def test_the_xor_of_two_training_steps_is_stored_with_sparse_top_planes_smaller_than_zstd():
    rng = np.random.default_rng(4)
    w = (rng.standard_normal(16384) * 0.02).astype(np.float32)
    w2 = w + (rng.standard_normal(16384) * 0.0002).astype(np.float32)
    xor = (w.view(np.uint32) ^ w2.view(np.uint32)).tobytes()
    c, payload = encode_planes(xor, 4, 0)
    heads = [struct.unpack_from("<BI", payload, 2 + 5 * j) for j in range(4)]
    assert c == PLANES and heads[3][0] == codec.SPARSE
    top = (np.frombuffer(xor, np.uint32) >> 24).astype(np.uint8)
    assert heads[3][1] < len(codec._plane_compressor().compress(top.data))
    assert bytes(decode(c, payload, len(xor))) == xor


def _sparse_plane_payload(m: int, gaps: list[int], values: bytes, frame: bytes | None = None) -> bytes:
    body = np.array(gaps, "<u2").tobytes() + values
    return struct.pack("<I", m) + (zstandard.ZstdCompressor().compress(body) if frame is None else frame)


@pytest.mark.parametrize("case", [
    "count past the plane", "position past the end", "a position twice", "frame of another size",
    "empty plane with a body", "no count", "bomb", "garbage frame"])
def test_hostile_sparse_planes_are_refused_with_bounded_memory(case):
    k, raw_len = 1000, 4000
    z = zstandard.ZstdCompressor()
    ok = [(RAW, bytes(k))] * 3
    sparse = {
        "count past the plane": lambda: _sparse_plane_payload(k + 1, [0] * (k + 1), bytes(k + 1)),
        "position past the end": lambda: _sparse_plane_payload(2, [10, 990], b"\x01\x02"),
        "a position twice": lambda: _sparse_plane_payload(3, [5, 1, 0], b"\x01\x02\x03"),
        "frame of another size": lambda: _sparse_plane_payload(2, [5, 1, 7], b"\x01\x02\x03"),
        "empty plane with a body": lambda: struct.pack("<I", 0) + b"x",
        "no count": lambda: b"\x01\x00",
        "bomb": lambda: struct.pack("<I", 1000) + z.compress(bytes(64 << 20)),
        "garbage frame": lambda: struct.pack("<I", 2) + b"\x28\xb5\x2f\xfd" + b"\xff" * 20,
    }[case]()
    payload = _planes_record(4, 0, b"", [*ok, (codec.SPARSE, sparse)])
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises((ValueError, zstandard.ZstdError)):
        decode(PLANES, payload, raw_len)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 * 1024
