"""The chunker's block pipeline: reused buffers, read-ahead thread, forced cuts, carried tails.

Whatever the block size, read-ahead or not, and wherever the forced cuts fall, the chunks must be
exactly those of cutting each region between forced cuts whole with FastCDC: stored chunk ids
(and so deduplication against what earlier versions stored) depend on it.
"""

from __future__ import annotations

import io
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlvc.chunking import ChunkerParams, _fastcdc, iter_chunks

SMALL = ChunkerParams(64, 512, 2048)
PROFILE = settings(deadline=None, database=None, max_examples=60,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def reference(data: bytes, params: ChunkerParams, boundaries) -> list[bytes]:
    """Each region between forced cuts cut at once, in one buffer."""
    cdc = _fastcdc(params)
    cuts = sorted({b for b in boundaries or () if 0 < b < len(data)})
    out, start = [], 0
    for end in [*cuts, len(data)]:
        if end > start:
            out.extend(bytes(c.data) for c in cdc.cut_buf(data[start:end]))
        start = end
    return out


def chunks(data: bytes, params: ChunkerParams, **kw) -> list[bytes]:
    # bytes() at once: a yielded view is only valid until the iterator advances
    return [bytes(c) for c in iter_chunks(io.BytesIO(data), params, **kw)]


@PROFILE
@given(seed=st.integers(0, 2**32), size=st.integers(0, 60_000), block=st.sampled_from([1, 700, 2048, 5000, 1 << 16]),
       ncuts=st.integers(0, 12), hint=st.sampled_from(["none", "exact", "short", "long"]))
def test_chunks_equal_cutting_each_region_whole(seed, size, block, ncuts, hint):
    rng = random.Random(seed)
    data = rng.randbytes(size)
    cuts = sorted(rng.randrange(0, size + 100) for _ in range(ncuts))
    size_hint = {"none": None, "exact": size, "short": size // 3, "long": size * 2 + 1}[hint]
    got = chunks(data, SMALL, block=block, boundaries=cuts, size_hint=size_hint)
    assert got == reference(data, SMALL, cuts)
    assert all(0 < len(c) <= SMALL.max_size for c in got)


def test_default_parameters_across_many_read_ahead_blocks():
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 12345)
    cuts = [100_000, 100_001, 1_048_576, 2_000_000]
    params = ChunkerParams()
    assert chunks(data, params, block=256 * 1024, boundaries=cuts, size_hint=len(data)) == \
        reference(data, params, cuts)


class FailingStream(io.RawIOBase):
    """A file whose reads fail with EIO after `ok` bytes (a bad sector, a vanished NFS server)."""

    def __init__(self, data: bytes, ok: int):
        self._data, self._ok, self._pos = data, ok, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._pos >= self._ok:
            raise OSError(5, "Input/output error")
        n = min(len(b), self._ok - self._pos, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def _reader_threads() -> int:
    return sum(t.name == "mlvc-read" for t in threading.enumerate())


def test_a_read_error_on_the_read_ahead_thread_is_raised_to_the_caller():
    data = random.Random(3).randbytes(200_000)
    before = _reader_threads()
    with pytest.raises(OSError, match="Input/output error"):
        for _ in iter_chunks(FailingStream(data, 50_000), SMALL, block=4096, size_hint=len(data)):
            pass
    assert _reader_threads() == before


def test_stopping_early_stops_the_read_ahead_thread():
    data = random.Random(4).randbytes(500_000)
    before = _reader_threads()
    it = iter_chunks(io.BytesIO(data), SMALL, block=4096, size_hint=len(data))
    first = bytes(next(it))
    assert _reader_threads() == before + 1
    it.close()
    assert _reader_threads() == before
    assert data.startswith(first)
