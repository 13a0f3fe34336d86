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


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 16 * 1024
    avg_size: int = 64 * 1024
    max_size: int = 256 * 1024

    def as_dict(self) -> dict:
        return {"algo": ALGORITHM, "min": self.min_size, "avg": self.avg_size, "max": self.max_size}

    @classmethod
    def from_dict(cls, d: dict) -> "ChunkerParams":
        if d.get("algo", ALGORITHM) != ALGORITHM:
            raise ValueError(f"unknown chunker {d.get('algo')!r}")
        return cls(int(d["min"]), int(d["avg"]), int(d["max"]))


DEFAULT_PARAMS = ChunkerParams()


class _CountingReader:
    """Feeds the chunker in large reads (bounded memory) and counts bytes read."""

    def __init__(self, f: BinaryIO):
        self._f = f

    def readinto(self, b) -> int:
        return self._f.readinto(b)


def _fastcdc(params: ChunkerParams):
    from pyfastcdc import FastCDC

    # pyfastcdc's "avg" excludes the skipped min region (its doc: real average is avg + min).
    return FastCDC(avg_size=params.avg_size - params.min_size if params.avg_size > params.min_size
                   else params.avg_size,
                   min_size=params.min_size, max_size=params.max_size)


def iter_chunks(f: BinaryIO, params: ChunkerParams = DEFAULT_PARAMS) -> Iterator[memoryview]:
    """Yield chunk views of a binary stream.  Each view is valid only until the next is produced."""
    for chunk in _fastcdc(params).cut_stream(_CountingReader(f)):
        yield chunk.data


def iter_chunks_buf(buf, params: ChunkerParams = DEFAULT_PARAMS) -> Iterator[memoryview]:
    for chunk in _fastcdc(params).cut_buf(buf):
        yield chunk.data
