"""W4, a training run: what each tool stores, beside the entropy limit of each kind of tensor.

    .venv/bin/python benchmarks/bench_w4.py                    # W4 at scale 1 (6 checkpoints)
    DVC_BIN=/path/to/dvc .venv/bin/python benchmarks/bench_w4.py --scale 0.1

For each series of W4 (`fp32`: `torch.save({'model', 'optimizer'})`, `bf16`: the weights as
safetensors), every checkpoint in step order is copied over one path (`checkpoints/last.pt`,
as a run that overwrites its last checkpoint would), added and committed; mlvc then pushes to
a directory remote.  Figures: bytes in mlvc's cache and on its remote, in DVC's cache, and in
a local Xet store (`hf_xet.upload_files`, one upload per checkpoint, when hf-xet is
installed), each as % of the raw bytes of all the checkpoints; and the last checkpoint restored
by `mlvc checkout` from its stored (compressed) records beside `cp` of the same file, alternated
three times.

Per kind (weights, exp_avg, exp_avg_sq of the fp32 checkpoints; the bf16 weights), over all
checkpoints: the order-0 entropy of each byte plane (the limit of any codec that codes the
planes of a chunk independently and without context), and what mlvc's planes codec stores
for the kind's bytes cut in 64 KiB pieces, with its decode throughput on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402

PIECE = 64 * 1024


def plane_entropy_bits(planes) -> list[float]:
    """Order-0 entropy in bits per byte of each row of a (width, n) uint8 array."""
    import numpy as np

    out = []
    for plane in planes:
        counts = np.bincount(plane, minlength=256).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        out.append(float(-(p * np.log2(p)).sum()))
    return out


def kinds(w4: Path) -> dict[str, list]:
    """The raw bytes of each kind of tensor, per checkpoint, as numpy uint8 arrays of (n, width)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    cps = W.w4_checkpoints(w4)
    out: dict[str, list] = {"weights": [], "exp_avg": [], "exp_avg_sq": [], "bf16": []}

    def as_bytes(t, width):
        return t.detach().contiguous().view(torch.uint8).numpy().reshape(-1, width)

    for path in cps["fp32"]:
        ck = torch.load(path, weights_only=True)
        out["weights"].append(np.concatenate([as_bytes(t, 4) for t in ck["model"].values()]))
        for k in ("exp_avg", "exp_avg_sq"):
            out[k].append(np.concatenate([as_bytes(s[k], 4) for s in ck["optimizer"]["state"].values()]))
    for path in cps["bf16"]:
        out["bf16"].append(np.concatenate([as_bytes(t, 2) for t in load_file(str(path)).values()]))
    return out


def codec_figures(arrays: list) -> dict:
    """Entropy limit and mlvc's planes codec on one kind's bytes; and the XOR delta with the
    previous checkpoint's same bytes (then the planes codec), kept per 64 KiB piece only where
    smaller: with every checkpoint a delta (`delta_stored`), and with chains of at most
    MAX_DELTA_DEPTH deltas as `add` writes them (`delta_chained`)."""
    import numpy as np

    from mlvc import codec

    width = arrays[0].shape[1]
    raw = sum(a.size for a in arrays)
    bits = np.zeros(width)
    for a in arrays:
        bits += np.array(plane_entropy_bits(np.ascontiguousarray(a.T))) * a.shape[0]
    limit = float(bits.sum() / (raw * 8))
    stored, encoded = 0, []
    for a in arrays:
        flat = a.reshape(-1).tobytes()
        for start in range(0, len(flat), PIECE):
            piece = flat[start:start + PIECE]
            c, payload = codec.encode_planes(piece, width, 0, codec.PLANES_LEVEL)
            stored += len(payload)
            encoded.append((c, bytes(payload), len(piece)))
    t = time.thread_time()
    for c, payload, n in encoded:
        codec.decode(c, payload, n)
    dt = time.thread_time() - t
    flat = [a.reshape(-1).tobytes() for a in arrays]
    every, chained, deltas = 0, 0, []
    enc = codec.ChunkEncoder(codec.PLANES_LEVEL)
    for i, cur in enumerate(flat):
        for start in range(0, len(cur), PIECE):
            piece = cur[start:start + PIECE]
            own = len(codec.encode_planes(piece, width, 0, codec.PLANES_LEVEL)[1])
            if i == 0 or len(flat[i - 1]) != len(cur):
                every += own
                chained += own
                continue
            base = flat[i - 1][start:start + PIECE]
            d = codec.encode_delta(piece, base, b"\0" * 16, enc, width, 0)
            every += min(own, len(d))
            chained += own if i % (codec.MAX_DELTA_DEPTH + 1) == 0 else min(own, len(d))
            if len(d) < own:
                deltas.append((d, base, len(piece)))
    t = time.thread_time()
    for d, base, n in deltas:
        codec.decode_delta(d, n, base)
    ddt = time.thread_time() - t
    delta_raw = sum(n for _d, _b, n in deltas)
    return {"raw": raw, "entropy_limit": limit, "plane_bits": [round(b / (raw / width), 3) for b in bits],
            "planes_stored": stored / raw, "decode_mb_s": raw / dt / 1e6,
            "delta_stored": every / raw, "delta_chained": chained / raw,
            "delta_decode_mb_s": delta_raw / ddt / 1e6 if deltas and ddt > 0 else None}


def du(path: Path) -> int:
    return H.tree_bytes(path)


def _restore_in_process(repo_path: Path, target: Path, source: Path, base: Path) -> tuple[list, list]:
    """The last checkpoint restored by `mlvc.ops.checkout` in this process (no CLI start-up: at
    these sizes that is most of a command's time) beside `cp` of it, alternated three times."""
    from mlvc.ops.checkout import checkout
    from mlvc.repo import Repo

    co, cp = [], []
    for _ in range(3):
        target.unlink()
        repo = Repo.find(repo_path)
        t0 = time.perf_counter()
        result = checkout(repo)
        co.append(time.perf_counter() - t0)
        repo.close()
        assert not result.failed and target.read_bytes() == source.read_bytes()
        t0 = time.perf_counter()
        H.run(["cp", str(source), str(base / "cp.tmp")], base)
        cp.append(time.perf_counter() - t0)
        (base / "cp.tmp").unlink()
    return co, cp


def _restore_dir_in_process(repo_path: Path, files: list[Path], base: Path) -> tuple[list, list]:
    """The run's directory deleted and checked out again by `mlvc.ops.checkout` in this process
    (each checkpoint's deltas read their bases from the one written just before it), beside
    `cp -r` of the same checkpoints, alternated three times."""
    import shutil

    from mlvc.ops.checkout import checkout
    from mlvc.repo import Repo

    co, cp = [], []
    for _ in range(3):
        shutil.rmtree(repo_path / "checkpoints")
        repo = Repo.find(repo_path)
        t0 = time.perf_counter()
        result = checkout(repo)
        co.append(time.perf_counter() - t0)
        repo.close()
        assert not result.failed and all((repo_path / "checkpoints" / f.name).read_bytes() == f.read_bytes()
                                         for f in files)
        t0 = time.perf_counter()
        H.run(["cp", "-r", str(files[0].parent), str(base / "cp.tmp")], base)
        cp.append(time.perf_counter() - t0)
        shutil.rmtree(base / "cp.tmp")
    return co, cp


def _restore_next_in_process(repo_path: Path, target: Path, files: list[Path], base: Path,
                             depth: int) -> tuple[list, list]:
    """`last.pt` at the version before `depth` in the workspace, version `depth` checked out by
    `mlvc.ops.checkout` in this process (its deltas read their bases from the file it replaces),
    beside `cp` of the file, alternated three times."""
    from mlvc.ops.checkout import checkout
    from mlvc.repo import Repo

    back = len(files) - 1 - depth
    co, cp = [], []
    for _ in range(3):
        H.run(["git", "checkout", "-q", f"HEAD~{back + 1}"], repo_path)
        repo = Repo.find(repo_path)
        assert not checkout(repo, force=True).failed
        repo.close()
        H.run(["git", "checkout", "-q", "-"], repo_path)
        H.run(["git", "checkout", "-q", f"HEAD~{back}"], repo_path)
        repo = Repo.find(repo_path)
        t0 = time.perf_counter()
        result = checkout(repo, force=True)
        co.append(time.perf_counter() - t0)
        repo.close()
        H.run(["git", "checkout", "-q", "-"], repo_path)
        assert not result.failed and target.read_bytes() == files[depth].read_bytes()
        t0 = time.perf_counter()
        H.run(["cp", str(files[depth]), str(base / "cp.tmp")], base)
        cp.append(time.perf_counter() - t0)
        (base / "cp.tmp").unlink()
    return co, cp


def add_run(path: Path, files: list[Path], layout: str, codec_on: bool) -> tuple[H.MlvcRepo, float]:
    """A repository holding the run as `layout` keeps it (`dir`: the checkpoints under their own names
    in one directory, added by ONE `mlvc add`, then committed; `last`: one path overwritten, added and
    committed per checkpoint); the adds' total time."""
    repo = H.MlvcRepo(path).init(config={"float_planes": True} if codec_on else None)
    took = 0.0
    if layout == "dir":
        (repo.path / "checkpoints").mkdir()
        for f in files:
            H.place(f, repo.path / "checkpoints" / f.name, sync=False)
        t0 = time.perf_counter()
        repo.add("checkpoints")
        took = time.perf_counter() - t0
        repo.git_commit("run")
        return repo, took
    target = "checkpoints/last" + files[0].suffix
    for f in files:
        H.place(f, repo.path / target, sync=False)
        t0 = time.perf_counter()
        repo.add(target)
        took += time.perf_counter() - t0
        repo.git_commit(f.name)
    return repo, took


def run_directory(name: str, files: list[Path], base: Path) -> dict:
    """The run's checkpoints under their own names in one directory, added by ONE `mlvc add`
    (each stored against the previous one in natural order), then pushed."""
    raw = sum(f.stat().st_size for f in files)
    mlvc, add_s = add_run(base / f"mlvc-dir-{name}", files, "dir", codec_on=True)
    remote = base / f"remote-dir-{name}"
    out: dict = {"series": f"{name}, one add of the run's directory", "checkpoints": len(files), "raw": raw,
                 "mlvc_add_s": add_s}
    mlvc.sh(*mlvc.cmd("remote", "add", "origin", remote, "--default"))
    mlvc.sh(*mlvc.cmd("push", "-q"))
    out["mlvc_cache"] = du(mlvc.cache_dir) / raw
    out["mlvc_remote"] = du(remote) / raw
    out["restore_dir_s"], out["restore_dir_cp_s"] = _restore_dir_in_process(mlvc.path, files, base)
    plain, out["mlvc_add_plain_s"] = add_run(base / f"mlvc-plain-{name}", files, "dir", codec_on=False)
    out["mlvc_cache_plain"] = du(plain.cache_dir) / raw
    return out


def run_series(name: str, files: list[Path], base: Path) -> dict:
    raw = sum(f.stat().st_size for f in files)
    target = "checkpoints/last" + files[0].suffix
    out: dict = {"series": name, "checkpoints": len(files), "raw": raw}
    mlvc, t = add_run(base / f"mlvc-{name}", files, "last", codec_on=True)  # the codec is opt-in
    remote = base / f"remote-{name}"
    mlvc.sh(*mlvc.cmd("remote", "add", "origin", remote, "--default"))
    mlvc.sh(*mlvc.cmd("push", "--all-commits", "-q"))
    out["mlvc_cache"] = du(mlvc.cache_dir) / raw
    out["mlvc_remote"] = du(remote) / raw
    out["mlvc_add_s"] = t
    # restore the last checkpoint from its stored records, beside `cp` of it (alternated)
    last = mlvc.path / target
    co, cp = [], []
    for _ in range(3):
        last.unlink()
        t0 = time.perf_counter()
        mlvc.checkout()
        co.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        H.run(["cp", str(files[-1]), str(base / "cp.tmp")], base)
        cp.append(time.perf_counter() - t0)
        (base / "cp.tmp").unlink()
    out["checkout_s"], out["cp_s"] = co, cp
    out["restore_s"], out["restore_cp_s"] = _restore_in_process(mlvc.path, last, files[-1], base)
    # the versions at the end of a chain (the most records read per chunk) and one delta deep
    from mlvc.codec import MAX_DELTA_DEPTH

    for depth in sorted({min(MAX_DELTA_DEPTH, len(files) - 1), 1}):
        H.run(["git", "checkout", "-q", f"HEAD~{len(files) - 1 - depth}"], mlvc.path)
        out[f"restore_depth{depth}_s"], out[f"restore_depth{depth}_cp_s"] = _restore_in_process(
            mlvc.path, last, files[depth], base)
        H.run(["git", "checkout", "-q", "-"], mlvc.path)
    # the same version, its previous one in the workspace (`git checkout` to the next commit)
    deepest = min(MAX_DELTA_DEPTH, len(files) - 1)
    out[f"restore_next{deepest}_s"], out[f"restore_next{deepest}_cp_s"] = _restore_next_in_process(
        mlvc.path, last, files, base, deepest)
    if H.dvc_bin():
        dvc = H.DvcRepo(base / f"dvc-{name}").init()
        for f in files:
            H.place(f, dvc.path / target, sync=False)
            dvc.add(target)
            dvc.git_commit(f.name)
        out["dvc_cache"] = du(dvc.cache_dir) / raw
    try:
        import hf_xet
    except ImportError:
        hf_xet = None
    if hf_xet is not None:
        store = base / f"xet-{name}"
        store.mkdir()
        for f in files:
            hf_xet.upload_files([str(f)], f"local://{store}", None, None, None, "model")
        out["xet_store"] = du(store) / raw
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale())
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    w4 = W.make_w4(args.scale)
    figures: dict = {"workload": json.loads((w4.with_name("w4.json")).read_text()), "kinds": {}, "series": []}
    for kind, arrays in kinds(w4).items():
        f = figures["kinds"][kind] = codec_figures(arrays)
        H.log(f"{kind:10s} raw {f['raw'] / H.MiB:7.1f} MiB  entropy limit {100 * f['entropy_limit']:5.1f}%  "
              f"planes codec {100 * f['planes_stored']:5.1f}%  decode {f['decode_mb_s']:6.0f} MB/s/core  "
              f"XOR delta {100 * f['delta_stored']:5.1f}% (chains of 4: {100 * f['delta_chained']:5.1f}%, "
              f"decode {f['delta_decode_mb_s'] or 0:6.0f} MB/s/core)  bits/plane {f['plane_bits']}")
    cps = W.w4_checkpoints(w4)
    with H.scratch("w4") as base:
        for name, files in cps.items():
            s = run_series(name, files, base)
            figures["series"].append(s)
            H.log(f"{name}: " + "  ".join(f"{k} {100 * v:.1f}%" for k, v in s.items()
                                          if k.endswith(("_cache", "_remote", "_store"))) +
                  f"  (raw {s['raw'] / H.MiB:.0f} MiB, mlvc add {s['mlvc_add_s']:.2f} s; checkout of the last "
                  f"{' '.join(f'{x:.3f}' for x in s['checkout_s'])} s, cp {' '.join(f'{x:.3f}' for x in s['cp_s'])} s; "
                  f"in-process {' '.join(f'{x:.3f}' for x in s['restore_s'])} s, "
                  f"cp {' '.join(f'{x:.3f}' for x in s['restore_cp_s'])} s)")
            for k in sorted(k for k in s if k.startswith(("restore_depth", "restore_next"))
                            and not k.endswith("_cp_s")):
                H.log(f"  {k[len('restore_'):-2]}: in-process {' '.join(f'{x:.3f}' for x in s[k])} s, "
                      f"cp {' '.join(f'{x:.3f}' for x in s[k[:-2] + '_cp_s'])} s")
            d = run_directory(name, files, base)
            figures["series"].append(d)
            H.log(f"{d['series']}: mlvc_cache {100 * d['mlvc_cache']:.1f}%  mlvc_remote {100 * d['mlvc_remote']:.1f}%"
                  f"  (mlvc add {d['mlvc_add_s']:.2f} s; without the float codec {d['mlvc_add_plain_s']:.2f} s, "
                  f"{100 * d['mlvc_cache_plain']:.1f}%; the directory checked out in-process "
                  f"{' '.join(f'{x:.3f}' for x in d['restore_dir_s'])} s, "
                  f"cp -r {' '.join(f'{x:.3f}' for x in d['restore_dir_cp_s'])} s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
