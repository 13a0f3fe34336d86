"""Tensor-aware chunking and float byte-grouping: do they beat plain FastCDC + zstd?

    .venv/bin/python benchmarks/bench_lineage.py [--layers 8] [--dim 384] [--seed 0]

1. Dedup of a fine-tuned checkpoint.  A transformer-shaped state dict (fp32 and
   bf16) is saved twice, the second time with 10% of its tensors changed, as a
   torch.save zip and as safetensors.  For each file pair, "new bytes" is what
   the second version adds to a store already holding the first:
   * plain: mlvc's FastCDC over the whole file (`mlvc.chunking.iter_chunks`)
   * tensor-aware: forced cuts where each tensor storage starts (and after the last one),
     FastCDC inside each region (`iter_chunks(..., boundaries=)`).
   Two fine-tunes: a random 10% of tensors (spread through the file) and the last 10%
   (head + top block, the usual fine-tune).
2. Byte-grouping of floats before zstd: each 64 KiB chunk of weights stored with
   mlvc's codec (`mlvc.codec.encode`, zstd level 3 when it pays) vs the same chunk
   with its bytes split by position within each float (all byte-0s, then all
   byte-1s, ...) and then zstd.  Reports stored bytes and throughput.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import zstandard

from mlvc import checkpoint as ckpt
from mlvc import codec
from mlvc.chunking import DEFAULT_PARAMS, iter_chunks
from mlvc.hashing import digest


def make_state_dict(layers: int, dim: int, vocab: int, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Transformer-shaped weights with trained-looking magnitudes (not all-zero biases)."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape, scale=0.02):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    sd = {"embed.weight": w(vocab, dim)}
    for i in range(layers):
        p = f"blocks.{i}."
        sd[p + "ln1.weight"] = (1 + w(dim, scale=0.1)).to(dtype)
        sd[p + "ln1.bias"] = w(dim)
        sd[p + "attn.qkv.weight"] = w(3 * dim, dim)
        sd[p + "attn.qkv.bias"] = w(3 * dim)
        sd[p + "attn.proj.weight"] = w(dim, dim)
        sd[p + "attn.proj.bias"] = w(dim)
        sd[p + "ln2.weight"] = (1 + w(dim, scale=0.1)).to(dtype)
        sd[p + "ln2.bias"] = w(dim)
        sd[p + "mlp.fc1.weight"] = w(4 * dim, dim)
        sd[p + "mlp.fc1.bias"] = w(4 * dim)
        sd[p + "mlp.fc2.weight"] = w(dim, 4 * dim)
        sd[p + "mlp.fc2.bias"] = w(dim)
    sd["ln_f.weight"] = (1 + w(dim, scale=0.1)).to(dtype)
    sd["ln_f.bias"] = w(dim)
    sd["head.weight"] = w(vocab, dim)
    return sd


def fine_tune(sd: dict[str, torch.Tensor], names: list[str], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    out = dict(sd)
    for n in names:
        t = sd[n]
        out[n] = (t.float() + torch.randn(t.shape, generator=g) * 1e-3).to(t.dtype)
    return out


def serialise(sd: dict[str, torch.Tensor], fmt: str) -> bytes:
    if fmt == "safetensors":
        return safetensors.torch.save(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def chunks_plain(data: bytes) -> list[bytes]:
    return [bytes(c) for c in iter_chunks(io.BytesIO(data), DEFAULT_PARAMS)]


def tensor_cuts(data: bytes) -> list[int]:
    """Cut where each tensor storage starts (and after the last one).  torch's zip writer puts each
    entry's CRC in a data descriptor *after* its data, so the few bytes between two storages go
    with the storage before them and change only when it does; no tiny chunks are made."""
    layout = ckpt.read_layout(io.BytesIO(data))
    regions = layout.storages or layout.tensors
    cuts = {r.offset for r in regions}
    if regions:
        cuts.add(max(r.offset + r.nbytes for r in regions))
    return sorted({0, len(data), *(b for b in cuts if 0 < b < len(data))})


def chunks_tensor_aware(data: bytes) -> list[bytes]:
    """mlvc's own code path: `iter_chunks(..., boundaries=)` as `store_file` calls it."""
    return [bytes(c) for c in iter_chunks(io.BytesIO(data), DEFAULT_PARAMS, boundaries=tensor_cuts(data))]


def new_bytes(old_chunks: list[bytes], new_chunks: list[bytes]) -> int:
    have = {digest(c) for c in old_chunks}
    added = 0
    for c in new_chunks:
        oid = digest(c)
        if oid not in have:
            have.add(oid)
            added += len(c)
    return added


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def bench_dedup(args) -> list[tuple]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        base = make_state_dict(args.layers, args.dim, args.vocab, dtype, args.seed)
        names = list(base)
        k = max(1, round(0.10 * len(names)))
        rng = random.Random(args.seed)
        scenarios = {"random 10% of tensors": rng.sample(names, k), "last 10% of tensors": names[-k:]}
        for scenario, changed in scenarios.items():
            tuned = fine_tune(base, changed, args.seed)
            changed_bytes = sum(base[n].numel() * base[n].element_size() for n in changed)
            for fmt in ("torch-zip", "safetensors"):
                v1, v2 = serialise(base, fmt), serialise(tuned, fmt)
                for method, fn in (("plain FastCDC", chunks_plain), ("tensor-aware", chunks_tensor_aware)):
                    c1, _ = timed(fn, v1)
                    c2, secs = timed(fn, v2)
                    added = new_bytes(c1, c2)
                    rows.append((str(dtype).removeprefix("torch."), scenario, fmt, method, len(v2),
                                 100.0 * changed_bytes / len(v2), 100.0 * added / len(v2), len(c2),
                                 len(v2) / secs / 1e6))
    return rows


def group_bytes(data: bytes, itemsize: int) -> bytes:
    arr = np.frombuffer(data, dtype=np.uint8)
    usable = len(arr) - len(arr) % itemsize
    planes = arr[:usable].reshape(-1, itemsize).T.tobytes()
    return planes + arr[usable:].tobytes()


def bench_grouping(args) -> list[tuple]:
    rows = []
    cz = zstandard.ZstdCompressor(level=3)
    for dtype, itemsize in ((torch.float32, 4), (torch.bfloat16, 2)):
        sd = make_state_dict(args.layers, args.dim, args.vocab, dtype, args.seed)
        raw = b"".join(t.contiguous().view(torch.uint8).numpy().tobytes() for t in sd.values())
        step = DEFAULT_PARAMS.avg_size
        chunks = [raw[i:i + step] for i in range(0, len(raw), step)]
        t0 = time.perf_counter()
        stored_codec = sum(len(codec.encode(c, 3)[1]) for c in chunks)
        t_codec = time.perf_counter() - t0
        t0 = time.perf_counter()
        stored_zstd = sum(min(len(c), len(cz.compress(c))) for c in chunks)
        t_zstd = time.perf_counter() - t0
        t0 = time.perf_counter()
        stored_grouped = sum(min(len(c), len(cz.compress(group_bytes(c, itemsize)))) for c in chunks)
        t_grouped = time.perf_counter() - t0
        mb = len(raw) / 1e6
        name = str(dtype).removeprefix("torch.")
        rows.append((name, "mlvc codec (sampled zstd-3)", len(raw), stored_codec, mb / t_codec))
        rows.append((name, "zstd-3 every chunk", len(raw), stored_zstd, mb / t_zstd))
        rows.append((name, "byte-grouped + zstd-3", len(raw), stored_grouped, mb / t_grouped))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory():
        print(f"model: {args.layers} blocks, dim {args.dim}, vocab {args.vocab}; chunker {DEFAULT_PARAMS}")
        print("\n1. new bytes stored for a fine-tuned checkpoint (10% of tensors changed)")
        print(f"{'dtype':9} {'fine-tune':22} {'format':12} {'method':14} {'size MB':>8} "
              f"{'changed%':>8} {'new%':>7} {'chunks':>7} {'MB/s':>7}")
        rows = bench_dedup(args)
        for r in rows:
            print(f"{r[0]:9} {r[1]:22} {r[2]:12} {r[3]:14} {r[4] / 1e6:8.1f} {r[5]:8.2f} {r[6]:7.2f} "
                  f"{r[7]:7d} {r[8]:7.0f}")
        gains = [(a[0], a[1], a[2], a[6] - b[6]) for a, b in zip(rows[::2], rows[1::2], strict=True)]
        best = max(g[3] for g in gains)
        print(f"largest gain of tensor-aware over plain: {best:.2f} percentage points of new bytes")
        print("\n2. byte-grouping of float weights before zstd (64 KiB chunks)")
        print(f"{'dtype':9} {'method':30} {'raw MB':>8} {'stored MB':>10} {'ratio':>7} {'MB/s':>7}")
        for name, method, raw, stored, speed in bench_grouping(args):
            print(f"{name:9} {method:30} {raw / 1e6:8.1f} {stored / 1e6:10.2f} {stored / raw:7.3f} {speed:7.0f}")
    print(f"\n(sizes in MB = 10^6 bytes; files in {Path(tempfile.gettempdir())} are not kept)")


if __name__ == "__main__":
    main()
