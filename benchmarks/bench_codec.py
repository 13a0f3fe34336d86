"""Every path of mlvc's float codec, encode and decode on one core, beside a peer (issue 23).

    .venv/bin/python benchmarks/bench_codec.py                       # 64 MiB per dtype, peer 0e6eb3b
    .venv/bin/python benchmarks/bench_codec.py --mib 16 --peer main  # another peer: any git revision
    .venv/bin/python benchmarks/bench_codec.py --blosc2              # and blosc2 (if importable) beside

The data is unique, as real weights are: N(0, 0.02) values drawn as fp32, bf16 (fp32's top 16
bits), fp16 and fp64, and a second version of each (one optimizer step: + N(0, 0.0002)) for the
XOR deltas.  Cut in 64 KiB chunks (the tensor-aligned blocks `add` stores), each chunk goes
through the path as `add` and a restore run it:

    planes        a chunk of floats as byte planes (`ChunkEncoder.encode(data, width)`, which
                  learns which planes never pay), decoded by `codec.decode`
    xor planes    the XOR of two versions' same bytes as byte planes (the inner payload of a delta)
    delta         `encode_delta` (XOR with the base, then planes) and `decode_delta` given the
                  base's bytes (the planes, then the XOR with the base): what a restore pays per
                  delta record, beside the base's own decode

The peer is `mlvc/codec.py` at another git revision (default: the code before issue 23's
speed work), loaded as a module of its own; the two alternate round by round (`--rounds`) and
each figure is the best round's CPU time of this thread (`time.thread_time`: other processes on
a shared machine inflate wall clock more than CPU time).  Printed: stored % of raw, encode and
decode GB/s of raw bytes, each beside the peer's as a ratio (new / peer throughput: above 1 is
faster), and issue 23's target of >= 1.5 GB/s decode per core.  Every decode is checked byte-exact.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
CHUNK = 64 * 1024
PEER = "0e6eb3b"  # main before issue 23's codec speed work (2026-12-08)
TARGET_GBS = 1.5


def load_peer(rev: str):
    """`mlvc/codec.py` at git revision `rev`, imported as a module of its own."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:mlvc/codec.py"], check=True,
                         capture_output=True).stdout
    with tempfile.TemporaryDirectory(prefix="mlvc-peer-codec-") as tmp:
        path = Path(tmp) / "peer_codec.py"
        path.write_bytes(src)
        spec = importlib.util.spec_from_file_location("peer_codec", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


def datasets(mib: int) -> dict[str, tuple[int, bytes, bytes]]:
    """{dtype: (width, this version's bytes, the next version's bytes)}."""
    import numpy as np

    rng = np.random.default_rng(23)
    n32 = mib * MiB // 4
    w = (rng.standard_normal(n32) * 0.02).astype(np.float32)
    w2 = w + (rng.standard_normal(n32) * 0.0002).astype(np.float32)
    top = (w.view(np.uint32) >> 16).astype(np.uint16)
    top2 = (w2.view(np.uint32) >> 16).astype(np.uint16)
    n64 = mib * MiB // 8
    d = rng.standard_normal(n64) * 0.02
    d2 = d + rng.standard_normal(n64) * 0.0002
    n16 = mib * MiB // 2
    h = (rng.standard_normal(n16) * 0.02).astype(np.float16)
    h2 = (h.astype(np.float32) + rng.standard_normal(n16).astype(np.float32) * 0.0002).astype(np.float16)
    return {"fp32": (4, w.tobytes(), w2.tobytes()), "bf16": (2, top.tobytes(), top2.tobytes()),
            "fp16": (2, h.tobytes(), h2.tobytes()), "fp64": (8, d.tobytes(), d2.tobytes())}


def chunks(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


class Path_:
    """One codec path over a list of chunks: encode(mod) -> payloads, decode(mod, payloads)."""

    def __init__(self, name: str, raw: int, encode: Callable, decode: Callable, check: Callable):
        self.name, self.raw, self.encode, self.decode, self.check = name, raw, encode, decode, check


def paths(data: dict[str, tuple[int, bytes, bytes]]) -> list[Path_]:
    import numpy as np

    out = []
    for dtype, (width, now, nxt) in data.items():
        own, bases = chunks(now), chunks(nxt)
        xors = [(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()
                for a, b in zip(own, bases, strict=True)]

        def planes_enc(mod, items=own, width=width):
            enc = mod.ChunkEncoder(3)
            return [enc.encode(c, width, 0) for c in items]

        def planes_dec(mod, payloads, items=own):
            return [mod.decode(c, p, len(x)) for (c, p), x in zip(payloads, items, strict=True)]

        def planes_check(decoded, items=own):
            return all(bytes(d) == x for d, x in zip(decoded, items, strict=True))

        out.append(Path_(f"{dtype} planes", len(now), planes_enc, planes_dec, planes_check))
        if dtype in ("fp32", "bf16", "fp64"):
            out.append(Path_(f"{dtype} xor planes", len(now),
                             lambda mod, items=xors, width=width: planes_enc(mod, items, width),
                             lambda mod, payloads, items=xors: planes_dec(mod, payloads, items),
                             lambda decoded, items=xors: planes_check(decoded, items)))

            def delta_enc(mod, items=own, bases=bases, width=width):
                enc = mod.ChunkEncoder(3)
                return [(mod.DELTA, mod.encode_delta(c, b, b"\x07" * 16, enc, width))
                        for c, b in zip(items, bases, strict=True)]

            def delta_dec(mod, payloads, items=own, bases=bases):
                return [mod.decode_delta(p, len(x), b) for (_c, p), x, b in zip(payloads, items, bases, strict=True)]

            out.append(Path_(f"{dtype} delta", len(now), delta_enc, delta_dec, planes_check))
    return out


def timed(fn: Callable, *args):
    t = time.thread_time()
    result = fn(*args)
    return time.thread_time() - t, result


def blosc2_figures(data: dict[str, tuple[int, bytes, bytes]]) -> dict[str, tuple[float, float, float]]:
    """{path: (stored %, encode GB/s, decode GB/s)} of blosc2's shuffle + zstd-1 on the same chunks."""
    import blosc2
    import numpy as np

    blosc2.set_nthreads(1)
    out = {}
    for dtype, (width, now, nxt) in data.items():
        own = chunks(now)
        xors = [(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()
                for a, b in zip(own, chunks(nxt), strict=True)]
        for name, items in ((f"{dtype} planes", own), (f"{dtype} xor planes", xors)):
            params = {"codec": blosc2.Codec.ZSTD, "clevel": 1, "typesize": width, "nthreads": 1,
                      "filters": [blosc2.Filter.SHUFFLE]}
            te, enc = timed(lambda params=params, items=items: [blosc2.compress2(c, **params) for c in items])
            td, dec = timed(lambda enc=enc: [blosc2.decompress2(e) for e in enc])
            assert all(bytes(d) == c for d, c in zip(dec, items, strict=True))
            out[name] = (100 * sum(map(len, enc)) / len(now), len(now) / te / 1e9, len(now) / td / 1e9)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64, help="MiB of values per dtype (default 64)")
    ap.add_argument("--peer", default=PEER, help=f"git revision of the peer codec (default {PEER})")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blosc2", action="store_true", help="blosc2's shuffle + zstd-1 beside (not a dependency)")
    args = ap.parse_args(argv)
    from mlvc import codec

    peer = load_peer(args.peer)
    data = datasets(args.mib)
    cases = paths(data)
    best: dict[tuple[str, str], list[float]] = {}
    stored: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for case in cases:
            for tag, mod in (("peer", peer), ("new", codec)):
                te, payloads = timed(case.encode, mod)
                td, decoded = timed(case.decode, mod, payloads)
                if not case.check(decoded):
                    raise SystemExit(f"{case.name} ({tag}): round trip failed")
                del decoded
                stored[case.name, tag] = 100 * sum(len(p) for _c, p in payloads) / case.raw
                prev = best.get((case.name, tag), [float("inf"), float("inf")])
                best[case.name, tag] = [min(prev[0], te), min(prev[1], td)]
    ref = blosc2_figures(data) if args.blosc2 else {}
    print(f"{args.mib} MiB per dtype in 64 KiB chunks, one core (CPU time, best of {args.rounds} rounds "
          f"alternated with the peer {args.peer})")
    print(f"{'path':16s} {'stored':>7s} {'peer':>6s} | {'encode':>6s} {'peer':>6s} {'ratio':>6s} | "
          f"{'decode':>6s} {'peer':>6s} {'ratio':>6s} | decode >= {TARGET_GBS} GB/s"
          + ("  | blosc2 sh+zstd-1: stored enc dec" if ref else ""))
    for case in cases:
        (te, td), (pe, pd) = best[case.name, "new"], best[case.name, "peer"]
        enc, dec = case.raw / te / 1e9, case.raw / td / 1e9
        penc, pdec = case.raw / pe / 1e9, case.raw / pd / 1e9
        line = (f"{case.name:16s} {stored[case.name, 'new']:6.1f}% {stored[case.name, 'peer']:5.1f}% | "
                f"{enc:6.2f} {penc:6.2f} {enc / penc:5.2f}x | {dec:6.2f} {pdec:6.2f} {dec / pdec:5.2f}x | "
                f"{'PASS' if dec >= TARGET_GBS else 'FAIL'}")
        if case.name in ref:
            s, e, d = ref[case.name]
            line += f"  | {s:5.1f}% {e:5.2f} {d:5.2f}"
        print(line)
    print("GB/s of raw bytes per core; ratio = new / peer throughput (above 1: faster than the peer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
