"""Benchmark: `mlvc log` over a synthetic history of 1,000 commits x 20 pointers (target < 2 s).

The repository is built in about a second with `git fast-import`: 20 pointer
files under models/ and data/, every commit rewrites two of them (new id,
size and meta) and every tenth commit changes params.yaml.  Then the real CLI
is timed as a subprocess (start-up included):

    python benchmarks/bench_history.py [--commits 1000] [--pointers 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlvc.pointer import PointerFile



def build(root: Path, commits: int, pointers: int) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / ".mlvc").mkdir()
    rng = random.Random(0)
    names = [f"models/m{j:02d}.pt" if j % 2 == 0 else f"data/d{j:02d}.bin" for j in range(pointers)]
    lines: list[bytes] = []

    def blob(path: str, text: str) -> None:
        data = text.encode()
        lines.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")

    t0 = 1_700_000_000
    for i in range(commits):
        msg = f"train step {i}".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"author Bench <bench@example.com> {t0 + i * 600} +0000\n".encode())
        lines.append(f"committer Bench <bench@example.com> {t0 + i * 600} +0000\n".encode())
        lines.append(f"data {len(msg)}\n".encode() + msg + b"\n")
        if i == 0:
            blob(".mlvc/config", "core:\n  compression_level: 3\nremotes: {}\n")
            blob(".mlvc/.gitignore", "/cache\n/tmp\n/state\n/config.local\n")
            changed = range(pointers)
        else:
            changed = rng.sample(range(pointers), 2)
        for j in changed:
            name = names[j]
            ptr = PointerFile(name.rsplit("/", 1)[1], "file", f"xxh128:{rng.getrandbits(128):032x}",
                              rng.randrange(1, 1 << 30), 1, role="model" if j % 2 == 0 else "data",
                              meta={"step": i, "acc": round(rng.random(), 4)})
            blob(name + ".mlvc", ptr.to_yaml())  # exactly what `mlvc add` writes
        if i % 10 == 0:
            blob("params.yaml", f"train:\n  lr: {0.001 * (1 + i % 7)}\n  batch: 32\n")
        lines.append(b"\n")
    proc = subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(lines))
    if proc.returncode != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=root, check=True)


def timed(root: Path, *args: str) -> tuple[float, int]:
    cmd = [sys.executable, "-c", "from mlvc.cli.main import main; main()", "log", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, MLVC_NO_PROGRESS="1"))
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"mlvc log {' '.join(args)} failed: {proc.stderr.decode()}")
    return elapsed, len(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--pointers", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="build the repository here and keep it")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mlvc-bench-history-"))
    try:
        t = time.perf_counter()
        build(root, args.commits, args.pointers)
        print(f"built {args.commits} commits x {args.pointers} pointers with git fast-import "
              f"in {time.perf_counter() - t:.2f} s")
        cases = [
            ("mlvc log (all artifacts, text)", ()),
            ("mlvc log --format json", ("--format", "json")),
            ("mlvc log models/m00.pt", ("models/m00.pt",)),
            ("mlvc log --format md (params + metrics report)", ("--format", "md")),
            ("mlvc log --since 7.days (nothing recent)", ("--since", "7.days")),
        ]
        worst = 0.0
        for label, extra in cases:
            best = min(timed(root, *extra)[0] for _ in range(3))
            worst = max(worst, best)
            print(f"{label:50s} {best:6.2f} s (best of 3, process start included)")
        print(f"target < 2 s: {'OK' if worst < 2.0 else 'MISSED'} (slowest {worst:.2f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
