"""Float-aware compression of checkpoint chunks (issue 12, item B): what would it save, what would it cost?

    .venv/bin/python benchmarks/bench_codec.py                # W1 at scale 1 (~1 GiB)
    .venv/bin/python benchmarks/bench_codec.py --scale 0.1 --limit 256   # first 256 MiB of unique chunks

W1 is chunked exactly as `mlvc add` chunks it (tensor-aware cuts + FastCDC), duplicates are dropped
(W1 repeats many tensors), and every unique chunk is encoded and decoded by each candidate codec:

    today         mlvc's `codec.ChunkEncoder` (zstd only where a sample shows it pays: floats stay raw)
    zstd1         zstd level 1 on every chunk, kept when it shrinks below 97%
    planes-all    byte-grouping: the chunk split into 4 byte planes (every 4th byte), each plane
                  zstd-1 compressed and kept compressed when it shrinks below 90%
    planes-exp    byte-grouping, only the plane with the fewest distinct bytes in a 4 KiB sample
                  (the float32 exponent bytes, whatever the chunk's phase) compressed

Figures: stored bytes as % of the unique bytes and of W1, encode and decode CPU throughput
(`time.thread_time`, one thread: the machine's other load inflates wall clock, less so CPU time),
and what they would add to `mlvc add` W1 (encode every unique byte) and `mlvc checkout` W1
(decode every byte of the file) on one core.  Nothing here is wired into mlvc: it measures
whether a new codec would pay before one is made part of the pack format.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as W  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB


def unique_chunks(path: Path, limit: int | None) -> tuple[list[bytes], int, int]:
    """W1's unique chunks as `mlvc add` cuts them; (chunks, file size, bytes of all chunks)."""
    from mlvc.chunking import DEFAULT_PARAMS, iter_chunks
    from mlvc.hashing import digest
    from mlvc.ops.modules import checkpoint_layout, layout_cuts

    size = path.stat().st_size
    cuts = layout_cuts(checkpoint_layout(path), size)
    seen: set[bytes] = set()
    out: list[bytes] = []
    got = 0
    with open(path, "rb", buffering=0) as f:
        for data in iter_chunks(f, DEFAULT_PARAMS, boundaries=cuts, size_hint=size):
            oid = digest(data)
            if oid not in seen:
                seen.add(oid)
                out.append(bytes(data))
                got += len(data)
                if limit and got >= limit:
                    break
    return out, size, got


def _planes(data: bytes, stride: int = 4) -> list[bytes]:
    return [data[j::stride] for j in range(stride)]


def _interleave(planes: list[bytes], n: int) -> bytes:
    out = bytearray(n)
    stride = len(planes)
    for j, p in enumerate(planes):
        out[j::stride] = p
    return bytes(out)


class Candidate:
    name = ""

    def encode(self, data: bytes):  # -> opaque payload, stored length
        raise NotImplementedError

    def decode(self, payload, n: int) -> bytes:
        raise NotImplementedError


class Today(Candidate):
    name = "today"

    def __init__(self):
        from mlvc.codec import ChunkEncoder

        self.enc = ChunkEncoder(3)

    def encode(self, data):
        c, p = self.enc.encode(data)
        return (c, p), len(p)

    def decode(self, payload, n):
        from mlvc.codec import decode

        c, p = payload
        return decode(c, p, n)


class Zstd1(Candidate):
    name = "zstd1"

    def __init__(self):
        import zstandard

        self.c = zstandard.ZstdCompressor(level=1)
        self.d = zstandard.ZstdDecompressor()

    def encode(self, data):
        z = self.c.compress(data)
        if len(z) < 0.97 * len(data):
            return (z, True), len(z)
        return (data, False), len(data)

    def decode(self, payload, n):
        p, packed = payload
        return self.d.decompress(p, max_output_size=n) if packed else p


class PlanesAll(Candidate):
    name = "planes-all"
    keep = 0.90

    def __init__(self):
        import zstandard

        self.c = zstandard.ZstdCompressor(level=1)
        self.d = zstandard.ZstdDecompressor()

    def _pick(self, planes):
        return range(len(planes))

    def encode(self, data):
        planes = _planes(data)
        stored, size = [], 5 * len(planes) + 1  # stride byte + per plane (mode, u32 length)
        chosen = set(self._pick(planes))
        for j, p in enumerate(planes):
            z = self.c.compress(p) if j in chosen else None
            if z is not None and len(z) < self.keep * len(p):
                stored.append((z, True))
                size += len(z)
            else:
                stored.append((p, False))
                size += len(p)
        return stored, size

    def decode(self, payload, n):
        planes = [self.d.decompress(p, max_output_size=n) if packed else p for p, packed in payload]
        return _interleave(planes, n)


class PlanesExp(PlanesAll):
    name = "planes-exp"

    def _pick(self, planes):
        return [min(range(len(planes)), key=lambda j: len(set(planes[j][:1024])))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale())
    ap.add_argument("--limit", type=int, default=0, help="MiB of unique chunks to use (0: all)")
    args = ap.parse_args(argv)
    w1 = W.ensure(args.scale, ("w1",))["w1"]
    chunks, size, unique = unique_chunks(w1, args.limit * MiB if args.limit else None)
    print(f"W1 {size / MiB:.0f} MiB; unique chunks used: {len(chunks)}, {unique / MiB:.0f} MiB "
          f"({100 * unique / size:.1f}% of W1)")
    whole = not args.limit
    print(f"{'codec':12s} {'stored/unique':>13s} {'encode':>12s} {'decode':>12s} "
          + (f"{'+add W1':>9s} {'+checkout W1':>13s}" if whole else f"{'+s/GiB add':>11s} {'+s/GiB checkout':>16s}")
          + "   (one core, CPU time)")
    for cand in (Today(), Zstd1(), PlanesAll(), PlanesExp()):
        t = time.thread_time()
        enc = [cand.encode(c) for c in chunks]
        te = time.thread_time() - t
        stored = sum(s for _p, s in enc)
        t = time.thread_time()
        for (p, _s), c in zip(enc, chunks, strict=True):
            if cand.decode(p, len(c)) != c:
                raise SystemExit(f"{cand.name}: round trip failed")
        td = time.thread_time() - t
        enc_rate, dec_rate = unique / te, unique / td
        # add encodes each new (unique) byte once; checkout decodes every byte of the file
        add_s, co_s = (unique / enc_rate, size / dec_rate) if whole else (GiB / enc_rate, GiB / dec_rate)
        print(f"{cand.name:12s} {100 * stored / unique:12.1f}% {enc_rate / 1e9:7.2f} GB/s {dec_rate / 1e9:7.2f} GB/s "
              f"{add_s:8.2f}s {co_s:12.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
