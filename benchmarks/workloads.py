"""Deterministic benchmark workloads (fixed seeds), cached under benchmarks/.work/data/.

    W1        a ~1 GiB `torch.save` state_dict of float32 tensors (conv stem, residual
              conv stages, an LSTM, transformer blocks, embedding + head); every tensor is
              its own random stream (seeded by a hash of its whole name), so W1 is unique
              data as real weights are.  `--legacy-seeds` (MLVC_BENCH_LEGACY_SEEDS=1) makes
              the generator of recipe 1, which seeded each tensor from the first 32 bytes of
              its name: tensors sharing that prefix held identical values and only ~40% of
              W1 was unique (kept only to compare figures measured with it)
    W2        W1 with ~10% of the tensors (by bytes) changed: about half re-randomised,
              half perturbed (w + small noise, as a fine-tune step would)
    W2-shift  W2 with one new tensor inserted at the FRONT of the state_dict, so every
              byte offset after it moves
    W3        a directory of 20,000 files of ~4 KiB (text: CSV / JSON / log lines;
              binary-ish: headers + float records + random bytes)
    W3-100k   the same generator with 100,000 files (scale test)
    BIG       a 4 GiB file of float32 noise (peak-RSS test)
    W4        a training run: a small byte-level transformer trained on CPU with AdamW
              (warmup + cosine) for `W4_STEPS` steps, a checkpoint every `W4_EVERY` steps as
              `w4/fp32/step_NNNNNN.pt` (`torch.save({'model', 'optimizer'})`: weights, exp_avg,
              exp_avg_sq) and `w4/bf16/step_NNNNNN.safetensors` (the weights in bfloat16);
              made once and cached (a few minutes of one core at scale 1)

Every size scales with `--scale` / MLVC_BENCH_SCALE (0.1 gives a ~100 MiB W1,
2,000 / 10,000 files and a 400 MiB BIG file).  Outputs are regenerated only when
missing or when their recipe (version, scale) changed.

    .venv/bin/python benchmarks/workloads.py --scale 0.1        # generate all
    .venv/bin/python benchmarks/workloads.py --only w1 w3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("MLVC_BENCH_WORK", HERE / ".work"))
RECIPE_VERSION = 2  # 2: every W1 tensor its own stream (1: seeded by a 32-byte name prefix)
OTHER_RECIPE = 1  # W3, BIG: unchanged since recipe 1
LEGACY_SEEDS = os.environ.get("MLVC_BENCH_LEGACY_SEEDS", "") not in ("", "0")

GiB = 1024 ** 3
MiB = 1024 ** 2
KiB = 1024

SEED_W1 = 20240501
SEED_W2 = 20240502
SEED_SHIFT = 20240503
SEED_W3 = 20240504
SEED_BIG = 20240505


def default_scale() -> float:
    return float(os.environ.get("MLVC_BENCH_SCALE", "1"))


def data_dir(scale: float) -> Path:
    return WORK / "data" / (f"scale-{scale:g}" + ("-legacy" if LEGACY_SEEDS else ""))


def _log(msg: str) -> None:
    print(f"[workloads] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- W1 / W2 / W2-shift
@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    kind: str  # weight | bias | norm_w | norm_b | running_mean | running_var

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * 4


def model_spec(target_bytes: int) -> list[TensorSpec]:
    """A realistic-looking architecture whose float32 state_dict is about `target_bytes`."""
    # Width shrinks with the target so a scaled-down run still has dozens of tensors.
    d = 1024 if target_bytes >= 512 * MiB else 512 if target_bytes >= 64 * MiB else 256
    specs: list[TensorSpec] = []

    def conv(prefix, cout, cin, k, bn=True):
        specs.append(TensorSpec(f"{prefix}.weight", (cout, cin, k, k), "weight"))
        if bn:
            b = prefix.replace("conv", "bn")
            specs.extend([TensorSpec(f"{b}.weight", (cout,), "norm_w"), TensorSpec(f"{b}.bias", (cout,), "norm_b"),
                          TensorSpec(f"{b}.running_mean", (cout,), "running_mean"),
                          TensorSpec(f"{b}.running_var", (cout,), "running_var")])

    def linear(prefix, out, inp, bias=True):
        specs.append(TensorSpec(f"{prefix}.weight", (out, inp), "weight"))
        if bias:
            specs.append(TensorSpec(f"{prefix}.bias", (out,), "bias"))

    def norm(prefix, n):
        specs.extend([TensorSpec(f"{prefix}.weight", (n,), "norm_w"), TensorSpec(f"{prefix}.bias", (n,), "norm_b")])

    # Convolutional encoder (ResNet-like).
    conv("encoder.conv1", 64, 3, 7)
    chans = [64, 128, 256, 512]
    cin = 64
    for si, c in enumerate(chans):
        for bi in range(2):
            p = f"encoder.layer{si + 1}.{bi}"
            conv(f"{p}.conv1", c, cin, 3)
            conv(f"{p}.conv2", c, c, 3)
            if bi == 0 and cin != c:
                conv(f"{p}.downsample.conv", c, cin, 1)
            cin = c
    linear("encoder.proj", d, 512)
    # Recurrent block (LSTM-like, two layers).
    h = d // 2
    for layer in range(2):
        inp = d if layer == 0 else h
        specs.append(TensorSpec(f"rnn.weight_ih_l{layer}", (4 * h, inp), "weight"))
        specs.append(TensorSpec(f"rnn.weight_hh_l{layer}", (4 * h, h), "weight"))
        specs.append(TensorSpec(f"rnn.bias_ih_l{layer}", (4 * h,), "bias"))
        specs.append(TensorSpec(f"rnn.bias_hh_l{layer}", (4 * h,), "bias"))
    linear("rnn.proj", d, h)
    # Token embedding, then transformer blocks until the target size is reached, then the head.
    vocab = 8192
    specs.insert(0, TensorSpec("embed.weight", (vocab, d), "weight"))
    head = [TensorSpec("head.norm.weight", (d,), "norm_w"), TensorSpec("head.norm.bias", (d,), "norm_b"),
            TensorSpec("head.out.weight", (vocab, d), "weight")]
    block_bytes = 4 * (12 * d * d + 9 * d + 4 * d)
    used = sum(s.nbytes for s in specs) + sum(s.nbytes for s in head)
    nblocks = max(1, round((target_bytes - used) / block_bytes))
    for i in range(nblocks):
        p = f"blocks.{i}"
        norm(f"{p}.ln1", d)
        linear(f"{p}.attn.in_proj", 3 * d, d)
        linear(f"{p}.attn.out_proj", d, d)
        norm(f"{p}.ln2", d)
        linear(f"{p}.mlp.fc1", 4 * d, d)
        linear(f"{p}.mlp.fc2", d, 4 * d)
    specs.extend(head)
    return specs


def _fan_in(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape[1:]:
        n *= s
    return max(1, n)


def _values(rng, spec: TensorSpec):
    import numpy as np

    n = spec.shape
    if spec.kind == "weight":
        std = (2.0 / _fan_in(spec.shape)) ** 0.5 * float(rng.uniform(0.5, 1.5))
        return rng.standard_normal(n, dtype=np.float32) * np.float32(std)
    if spec.kind == "bias":
        return rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
    if spec.kind == "norm_w":
        return np.float32(1.0) + rng.standard_normal(n, dtype=np.float32) * np.float32(0.05)
    if spec.kind == "norm_b":
        return rng.standard_normal(n, dtype=np.float32) * np.float32(0.01)
    if spec.kind == "running_mean":
        return rng.standard_normal(n, dtype=np.float32) * np.float32(0.1)
    if spec.kind == "running_var":
        return (np.float32(0.5) + rng.random(n, dtype=np.float32)).astype(np.float32)
    raise ValueError(spec.kind)


def _seed_for(base: int, name: str) -> list[int]:
    """A per-tensor stream, stable even if the tensor list changes around it: seeded by a hash
    of the whole name.  The legacy generator used the first 32 bytes of the name, so
    `blocks.0.attn.in_proj.weight` and `blocks.0.attn.in_proj.bias`... shared a prefix (and
    their values) with other tensors: only ~40% of W1 was unique."""
    if LEGACY_SEEDS:
        return [base, int.from_bytes(name.encode()[:32].ljust(32, b"\0"), "little") % (2 ** 63)]
    import hashlib

    return [base, int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")]


def _w1_arrays(specs: list[TensorSpec]) -> dict:
    import numpy as np

    out = {}
    for s in specs:
        out[s.name] = _values(np.random.default_rng(_seed_for(SEED_W1, s.name)), s)
    return out


def _changed_set(specs: list[TensorSpec], fraction: float) -> list[str]:
    """Tensors making up ~`fraction` of the bytes (never above it by more than one small tensor)."""
    import numpy as np

    rng = np.random.default_rng(SEED_W2)
    total = sum(s.nbytes for s in specs)
    budget = fraction * total
    order = rng.permutation(len(specs))
    chosen, used = [], 0
    for i in order:
        s = specs[int(i)]
        if s.name in ("embed.weight", "head.out.weight"):
            continue  # a fine-tune rarely rewrites the vocabulary matrices
        if used + s.nbytes <= budget:
            chosen.append(s.name)
            used += s.nbytes
    return chosen


def _save(arrays: dict, path: Path) -> None:
    import torch

    sd = {k: torch.from_numpy(v) for k, v in arrays.items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)


def _meta_ok(path: Path, recipe: dict) -> bool:
    meta = path.with_name(path.name + ".json")
    if not path.exists() or not meta.exists():
        return False
    try:
        return json.loads(meta.read_text()).get("recipe") == recipe
    except ValueError:
        return False


def _write_meta(path: Path, recipe: dict, **info) -> None:
    info = {"recipe": recipe, "bytes": _size(path), **info}
    path.with_name(path.name + ".json").write_text(json.dumps(info, indent=1))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def read_meta(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def make_models(scale: float) -> dict[str, Path]:
    """W1, W2 and W2-shift state_dict files (generated together: they share W1's arrays)."""
    import numpy as np

    d = data_dir(scale)
    d.mkdir(parents=True, exist_ok=True)
    target = int(GiB * scale)
    paths = {"w1": d / "w1.pt", "w2": d / "w2.pt", "w2shift": d / "w2shift.pt"}
    recipe = {"v": 1 if LEGACY_SEEDS else RECIPE_VERSION, "target": target}
    if all(_meta_ok(p, recipe) for p in paths.values()):
        return paths
    t0 = time.perf_counter()
    specs = model_spec(target)
    arrays = _w1_arrays(specs)
    _save(arrays, paths["w1"])
    _write_meta(paths["w1"], recipe, tensors=len(specs))
    _log(f"W1: {len(specs)} tensors, {_size(paths['w1']) / MiB:.0f} MiB ({time.perf_counter() - t0:.1f}s)")

    changed = _changed_set(specs, 0.10)
    rng = np.random.default_rng(SEED_W2 + 1)
    by_name = {s.name: s for s in specs}
    for i, name in enumerate(changed):
        if i % 2 == 0:  # re-randomised (new init / replaced layer)
            arrays[name] = _values(rng, by_name[name])
        else:  # perturbed (a fine-tune step): every float changes, slightly
            a = arrays[name]
            arrays[name] = (a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(1e-3) * a.std()
                            ).astype(np.float32)
    changed_bytes = sum(by_name[n].nbytes for n in changed)
    total = sum(s.nbytes for s in specs)
    _save(arrays, paths["w2"])
    _write_meta(paths["w2"], recipe, tensors=len(specs), changed_tensors=len(changed),
                changed_tensor_bytes=changed_bytes, changed_fraction=changed_bytes / total)
    _log(f"W2: {len(changed)} tensors changed = {100 * changed_bytes / total:.1f}% of tensor bytes")

    # W2-shift: a new tensor FIRST, so every later byte moves (a 1000x37 adapter: odd size).
    srng = np.random.default_rng(SEED_SHIFT)
    extra = TensorSpec("input_adapter.weight", (1000, 37), "weight")
    shifted = {extra.name: _values(srng, extra)}
    shifted.update(arrays)
    _save(shifted, paths["w2shift"])
    _write_meta(paths["w2shift"], recipe, tensors=len(shifted), inserted=extra.name,
                inserted_bytes=extra.nbytes)
    _log(f"W2-shift: +{extra.name} {extra.shape} at the front ({time.perf_counter() - t0:.1f}s total)")
    return paths


# --------------------------------------------------------------------------- W3
_WORDS = ("loss acc epoch step lr grad norm batch train val test sample image label token mask attn "
          "layer head dim seq warmup decay adam sgd momentum beta eps clip shard split fold seed "
          "weight bias mean std min max sum count ok fail retry cache hit miss read write").split()


def _file_bytes(rng, i: int) -> tuple[str, bytes]:
    """One ~4 KiB file (2-6 KiB); the kind and extension depend on i."""
    import numpy as np

    size = int(rng.integers(2 * KiB, 6 * KiB + 1))
    kind = i % 5
    if kind == 0:  # CSV of metrics
        rows = max(1, size // 48)
        vals = rng.standard_normal((rows, 4))
        steps = np.arange(i * 1000, i * 1000 + rows)
        lines = ["step,loss,acc,lr,grad_norm"]
        lines += [f"{s},{a:.6f},{abs(b):.6f},{abs(c) * 1e-3:.3e},{abs(d):.4f}"
                  for s, (a, b, c, d) in zip(steps, vals, strict=True)]
        body = ("\n".join(lines) + "\n").encode()
        return ".csv", body[:size]
    if kind == 1:  # JSON annotation
        n = max(1, size // 80)
        boxes = rng.integers(0, 1024, size=(n, 4))
        labels = rng.integers(0, len(_WORDS), size=n)
        anns = [{"bbox": [int(x) for x in b], "label": _WORDS[int(l)], "score": round(float(s), 4)}
                for b, l, s in zip(boxes, labels, rng.random(n), strict=True)]
        return ".json", json.dumps({"id": i, "annotations": anns}, separators=(",", ":")).encode()
    if kind == 2:  # log text
        n = max(1, size // 40)
        w = rng.integers(0, len(_WORDS), size=(n, 4))
        v = rng.random(n)
        body = "".join(f"[{i}:{j:05d}] {_WORDS[a]} {_WORDS[b]}={x:.5f} {_WORDS[c]} {_WORDS[d]}\n"
                       for j, ((a, b, c, d), x) in enumerate(zip(w, v, strict=True)))
        return ".log", body.encode()
    if kind == 3:  # binary float records (an .npy-like feature file)
        n = size // 4
        header = b"\x93NUMPY\x01\x00" + f"{{'descr': '<f4', 'shape': ({n},)}}".encode().ljust(118) + b"\n"
        return ".npy", header + rng.standard_normal(n, dtype=np.float32).tobytes()
    # random bytes behind a small fixed header (an encoded image, say)
    return ".bin", b"\x89BIN\r\n\x1a\n" + int(i).to_bytes(4, "little") + rng.bytes(size - 12)


def make_tree(scale: float, nfiles_full: int, name: str) -> Path:
    """A directory of `nfiles_full * scale` files of ~4 KiB in shards of 500 per folder."""
    import numpy as np

    n = max(10, int(round(nfiles_full * scale)))
    root = data_dir(scale) / name
    recipe = {"v": OTHER_RECIPE, "files": n}
    if _meta_ok(root, recipe):
        return root
    t0 = time.perf_counter()
    tmp = root.with_name(name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    for i in range(n):
        rng = np.random.default_rng([SEED_W3, i])
        ext, body = _file_bytes(rng, i)
        shard = tmp / f"shard-{i // 500:04d}"
        if i % 500 == 0:
            shard.mkdir(parents=True)
        (shard / f"item-{i:06d}{ext}").write_bytes(body)
    os.replace(tmp, root)
    _write_meta(root, recipe, files=n)
    _log(f"{name}: {n} files, {_size(root) / MiB:.0f} MiB ({time.perf_counter() - t0:.1f}s)")
    return root


def make_w3(scale: float) -> Path:
    return make_tree(scale, 20_000, "w3")


def make_w3_100k(scale: float) -> Path:
    return make_tree(scale, 100_000, "w3-100k")


# --------------------------------------------------------------------------- BIG
def make_big(scale: float) -> Path:
    """A 4 GiB (x scale) file of float32 noise, written in 64 MiB blocks (bounded memory)."""
    import numpy as np

    path = data_dir(scale) / "big.bin"
    total = int(4 * GiB * scale) // 4 * 4
    recipe = {"v": OTHER_RECIPE, "bytes": total}
    if _meta_ok(path, recipe):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED_BIG)
    tmp = path.with_name(path.name + ".tmp")
    block = 64 * MiB
    with open(tmp, "wb") as f:
        left = total
        while left:
            n = min(block, left)
            f.write(rng.standard_normal(n // 4, dtype=np.float32).tobytes())
            left -= n
    os.replace(tmp, path)
    _write_meta(path, recipe)
    _log(f"BIG: {total / MiB:.0f} MiB ({time.perf_counter() - t0:.1f}s)")
    return path


# --------------------------------------------------------------------------- W4
W4_STEPS = 240
W4_EVERY = 40
SEED_W4 = 20240506


def _w4_corpus(limit: int = 4 * MiB) -> bytes:
    """Training text: the standard library's own sources (fixed for a Python version)."""
    src = Path(os.__file__).parent
    out, n = [], 0
    for f in sorted(src.glob("*.py")):
        b = f.read_bytes()
        out.append(b)
        n += len(b)
        if n >= limit:
            break
    return b"".join(out)


def make_w4(scale: float) -> Path:
    """A training run's checkpoints (see the module docstring); the directory holds `fp32/` and `bf16/`."""
    root = data_dir(scale) / "w4"
    width = 256 if scale >= 0.5 else 128
    layers = 4 if scale >= 0.5 else 2
    steps = max(W4_EVERY * 2, int(W4_STEPS * min(1.0, scale) // W4_EVERY * W4_EVERY))
    recipe = {"v": 1, "width": width, "layers": layers, "steps": steps, "every": W4_EVERY}
    if _meta_ok(root, recipe):
        return root
    import math

    import torch
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one core, as the other workloads use
    torch.manual_seed(SEED_W4)
    tmp = root.with_name("w4.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    (tmp / "fp32").mkdir(parents=True)
    (tmp / "bf16").mkdir(parents=True)
    seq, batch = 128, 8

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = torch.nn.LayerNorm(width)
            self.attn = torch.nn.MultiheadAttention(width, 4, batch_first=True)
            self.ln2 = torch.nn.LayerNorm(width)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(),
                                           torch.nn.Linear(4 * width, width))

        def forward(self, x, mask):
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(256, width)
            self.pos = torch.nn.Parameter(torch.randn(seq, width) * 0.02)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(layers))
            self.ln = torch.nn.LayerNorm(width)
            self.head = torch.nn.Linear(width, 256)

        def forward(self, idx):
            mask = torch.triu(torch.full((idx.shape[1], idx.shape[1]), float("-inf")), diagonal=1)
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            for b in self.blocks:
                x = b(x, mask)
            return self.head(self.ln(x))

    data = torch.frombuffer(bytearray(_w4_corpus()), dtype=torch.uint8).long()
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    warmup = steps // 10

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(SEED_W4)
    losses = []
    try:
        for step in range(1, steps + 1):
            starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
            x = torch.stack([data[i:i + seq] for i in starts])
            y = torch.stack([data[i + 1:i + seq + 1] for i in starts])
            loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % W4_EVERY == 0:
                losses.append(round(loss.item(), 4))
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()},
                           tmp / "fp32" / f"step_{step:06d}.pt")
                save_file({k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
                          str(tmp / "bf16" / f"step_{step:06d}.safetensors"))
    finally:
        torch.set_num_threads(threads)
    os.replace(tmp, root)
    params = sum(p.numel() for p in model.parameters())
    _write_meta(root, recipe, params=params, losses=losses)
    _log(f"W4: {params / 1e6:.1f}M parameters, {steps} steps, {len(losses)} checkpoints, "
         f"{_size(root) / MiB:.0f} MiB, loss {losses[0]} -> {losses[-1]} ({time.perf_counter() - t0:.1f}s)")
    return root


def w4_checkpoints(root: Path) -> dict[str, list[Path]]:
    """W4's checkpoints by series (`fp32`, `bf16`), in step order."""
    return {k: sorted((root / k).iterdir()) for k in ("fp32", "bf16")}


MAKERS = {"w1": make_models, "w2": make_models, "w2shift": make_models, "w3": make_w3,
          "w3-100k": make_w3_100k, "big": make_big, "w4": make_w4}


def ensure(scale: float, which=("w1", "w3", "w3-100k", "big")) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for key in which:
        if key in ("w1", "w2", "w2shift"):
            if "w1" not in out:
                out.update(make_models(scale))
        else:
            out[key] = MAKERS[key](scale)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=default_scale())
    ap.add_argument("--only", nargs="*", choices=sorted(MAKERS), help="generate only these")
    args = ap.parse_args(argv)
    paths = ensure(args.scale, tuple(args.only) if args.only else ("w1", "w3", "w3-100k", "big"))
    for k, p in paths.items():
        print(f"{k}\t{_size(p)}\t{p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
