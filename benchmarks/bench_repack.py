"""`mlvc gc --repack` on W4: a training run added with the float codec OFF, then repacked.

    .venv/bin/python benchmarks/bench_repack.py               # W4 at scale 1 (6 checkpoints per series)
    .venv/bin/python benchmarks/bench_repack.py --scale 0.1

For each series of W4 (`fp32`: `torch.save({'model', 'optimizer'})`, `bf16`: the weights as
safetensors) and each way a run is kept (`dir`: the run's checkpoints under their own names,
added by one `mlvc add checkpoints`; `last`: one `checkpoints/last.*` overwritten, added and
committed after each save), the figures are the bytes in mlvc's cache as % of the raw bytes of
all the checkpoints: added with the codec off, then after `mlvc gc --all-commits --repack
--grace 0`, beside the same run added with the codec on (`core.float_planes: true`).  Times,
three rounds, alternating the two things compared round by round: the repack of a fresh copy
of the codec-off repository (a whole CLI command) and the codec-on add of the same
checkpoints; the repack's time also per GiB of the run's raw bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
from bench_w4 import add_run  # noqa: E402
import workloads as W  # noqa: E402

ROUNDS = 3


def series(name: str, files: list[Path], layout: str, base: Path) -> dict:
    raw = sum(f.stat().st_size for f in files)
    off, off_add_s = add_run(base / f"off-{name}-{layout}", files, layout, codec_on=False)
    out: dict = {"series": f"{name}, {layout}", "checkpoints": len(files), "raw": raw,
                 "cache_codec_off": off.cache_bytes() / raw, "add_codec_off_s": off_add_s,
                 "repack_s": [], "add_codec_on_s": []}
    for r in range(ROUNDS):
        copy = base / f"repack-{name}-{layout}-{r}"
        shutil.copytree(off.path, copy, symlinks=True)
        t0 = time.perf_counter()
        run = H.run([off.bin, "gc", "--all-commits", "--repack", "--grace", "0", "--json"], copy)
        out["repack_s"].append(time.perf_counter() - t0)
        res = json.loads(run.stdout)
        out["cache_repacked"] = H.tree_bytes(copy / ".mlvc" / "cache") / raw
        out["chunks_recoded"], out["recoded_as_deltas"] = res["chunks_recoded"], res["recoded_as_deltas"]
        shutil.rmtree(copy)
        on, on_s = add_run(base / f"on-{name}-{layout}-{r}", files, layout, codec_on=True)
        out["add_codec_on_s"].append(on_s)
        out["cache_codec_on"] = on.cache_bytes() / raw
        shutil.rmtree(on.path)
    out["repack_s_per_gib"] = [s / (raw / H.GiB) for s in out["repack_s"]]
    shutil.rmtree(off.path)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale())
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    w4 = W.make_w4(args.scale)
    figures: dict = {"workload": json.loads((w4.with_name("w4.json")).read_text()), "series": []}
    with H.scratch("repack") as base:
        for name, files in W.w4_checkpoints(w4).items():
            for layout in ("dir", "last"):
                s = series(name, files, layout, base)
                figures["series"].append(s)
                H.log(f"{s['series']}: raw {s['raw'] / H.MiB:.0f} MiB; cache: codec off "
                      f"{100 * s['cache_codec_off']:.1f}%, repacked {100 * s['cache_repacked']:.1f}% "
                      f"({s['chunks_recoded']} chunks re-encoded, "
                      f"{s['recoded_as_deltas']} as deltas), codec on at add {100 * s['cache_codec_on']:.1f}%; "
                      f"repack {', '.join(f'{t:.2f}' for t in s['repack_s'])} s "
                      f"({', '.join(f'{t:.1f}' for t in s['repack_s_per_gib'])} s/GiB), codec-on add "
                      f"{', '.join(f'{t:.2f}' for t in s['add_codec_on_s'])} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
