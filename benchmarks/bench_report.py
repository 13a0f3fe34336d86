"""Benchmark: `mlvc report` over 1,000 commits, beside `mlvc log` on the same repository.

Two repositories:

* **pointers**: `bench_history.build` (git fast-import; 1,000 commits x 20 pointers, two rewritten
  per commit, params.yaml every tenth). Their ids name no stored object, so this is the walk and
  the pointer work alone, plus one failed cache look-up per model version.
* **checkpoints**: 1,000 commits of a real multimodal checkpoint (image branch, text branch,
  fusion; one module trained per commit) saved with `mlvc.torch.save` (params, metrics, data)
  and stored with `mlvc.add`, so the report reads every birth certificate and compares every
  pair of neighbouring checkpoints tensor by tensor from the cache. Building it takes a minute
  or so (a real save and add per commit); the commits themselves go in with one git fast-import.

The real CLI is timed as a subprocess, start-up included, best of 3:

    python benchmarks/bench_report.py [--commits 1000] [--only pointers checkpoints] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_history import build as build_pointers


def build_checkpoints(root: Path, commits: int) -> None:
    import warnings

    import torch
    from torch import nn

    import mlvc
    import mlvc.torch as mt
    from mlvc.repo import Repo

    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    Repo.init(root).close()
    os.chdir(root)
    warnings.simplefilter("ignore", mt.ProvenanceWarning)
    torch.manual_seed(0)
    model = nn.ModuleDict({"image_branch": nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3)),
                           "text_branch": nn.Sequential(nn.Embedding(500, 32), nn.Linear(32, 32)),
                           "fusion": nn.Linear(64, 10)})
    data = root / "data" / "processed"
    data.mkdir(parents=True)
    (data / "train.bin").write_bytes(os.urandom(64 * 1024))
    mlvc.add("data/processed", role="data", seed=1)
    lines: list[bytes] = []

    def blob(path: str, data: bytes) -> None:
        lines.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")

    names = list(model)
    t0 = 1_700_000_000
    for i in range(commits):
        with torch.no_grad():
            for p in model[names[i % 3]].parameters():
                p.add_(torch.randn_like(p) * 0.01)
        lr = 0.001 * (1 + (i // 50) % 5)
        mt.save(model, "model.pt", params={"lr": lr, "step": i}, metrics={"val_acc": 0.5 + i / (4 * commits)},
                data=["data/processed"])
        mlvc.add("model.pt", role="model")
        msg = f"train step {i}".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"author Bench <bench@example.com> {t0 + i * 600} +0000\n".encode())
        lines.append(f"committer Bench <bench@example.com> {t0 + i * 600} +0000\n".encode())
        lines.append(f"data {len(msg)}\n".encode() + msg + b"\n")
        if i == 0:
            for rel in (".mlvc/config", ".mlvc/.gitignore", ".gitignore", "data/.gitignore", "data/processed.mlvc"):
                blob(rel, (root / rel).read_bytes())
        blob("model.pt.mlvc", (root / "model.pt.mlvc").read_bytes())
        blob("params.yaml", f"train:\n  lr: {lr}\n".encode())
        blob("metrics.json", json.dumps({"val_loss": 1.0 - i / (2 * commits)}).encode())
        lines.append(b"\n")
    proc = subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(lines))
    if proc.returncode != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "reset", "-q", "main"], cwd=root, check=True)


def timed(root: Path, *args: str) -> tuple[float, int]:
    cmd = [sys.executable, "-c", "from mlvc.cli.main import main; main()", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, MLVC_NO_PROGRESS="1"))
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"mlvc {' '.join(args)} failed: {proc.stderr.decode()}")
    return elapsed, len(proc.stdout)


CASES = [
    ("mlvc log", ("log",)),
    ("mlvc log --format md", ("log", "--format", "md")),
    ("mlvc report -o report.html", ("report", "-o", "report.html")),
    ("mlvc report --format md", ("report", "--format", "md")),
    ("mlvc report --no-contents -o report.html", ("report", "--no-contents", "-o", "report.html")),
]


def run_cases(label: str, root: Path) -> None:
    print(f"\n[{label}]")
    for name, args in CASES:
        best = min(timed(root, *args)[0] for _ in range(3))
        extra = ""
        if args[0] == "report" and "-o" in args:
            extra = f"  ({(root / 'report.html').stat().st_size / 1024:.0f} KiB page)"
        print(f"{name:45s} {best:6.2f} s{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--only", nargs="*", choices=("pointers", "checkpoints"), default=["pointers", "checkpoints"])
    ap.add_argument("--keep", type=Path, help="build the repositories under this directory and keep them")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="mlvc-bench-report-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        if "pointers" in args.only:
            root = base / "pointers"
            t = time.perf_counter()
            build_pointers(root, args.commits, 20)
            print(f"built {args.commits} commits x 20 pointers in {time.perf_counter() - t:.1f} s")
            run_cases(f"pointers: {args.commits} commits x 20 pointers", root)
        if "checkpoints" in args.only:
            root = base / "checkpoints"
            t = time.perf_counter()
            build_checkpoints(root, args.commits)
            print(f"built {args.commits} commits of a stored checkpoint in {time.perf_counter() - t:.1f} s")
            run_cases(f"checkpoints: {args.commits} commits, each a new checkpoint in the cache", root)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
