"""Read benchmark (issue 9): one tensor of W1 from S3 (moto) beside downloading the whole file.

    .venv/bin/python benchmarks/bench_read.py                 # W1 ~1 GiB
    .venv/bin/python benchmarks/bench_read.py --scale 0.1     # smoke test (~100 MiB)

W1 is added and pushed to a moto S3 server on 127.0.0.1; then, each in a fresh
`git clone` with nothing pulled and in its own process:
    tensor    `mlvc.torch.load_tensor("w1.pt", NAME, rev="HEAD")` for the largest
              tensor and for a median-sized one (ranged GETs of the remote packs)
    mlvc.read `mlvc.read("w1.pt", rev="HEAD")`: the whole file through the read API
    pull      `mlvc pull` of the file (whole packs)
Requests are counted by the server (by method); bytes where they arrive (the remote
backend's read methods, wrapped in the measured process).
Results: the table on stdout and benchmarks/.work/results-read*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402


class Traffic:
    """Requests the moto server answers, by method."""

    def __init__(self):
        import collections
        import threading

        self.lock = threading.Lock()
        self.requests = collections.Counter()

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.requests)

    def since(self, req0) -> dict:
        req1 = self.snapshot()
        out = {"requests": {k: v - req0.get(k, 0) for k, v in req1.items() if v - req0.get(k, 0)}}
        out["requests_total"] = sum(out["requests"].values())
        return out


@contextlib.contextmanager
def counted_moto():
    from moto.moto_server import werkzeug_app
    from moto.server import ThreadedMotoServer

    traffic = Traffic()
    handler = werkzeug_app.MotoRequestHandler
    orig = handler.log_request

    def log_request(self, code="-", size="-"):
        with traffic.lock:
            traffic.requests[getattr(self, "command", "?")] += 1

    handler.log_request = log_request
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in H.S3_ENV.items():
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", traffic
    finally:
        server.stop()
        handler.log_request = orig


# Bytes are counted where they arrive: the S3 backend's read methods, wrapped in the measured process
# (moto's request log gives no response sizes).  Requests are counted by the server.
COUNT_BYTES = """
import atexit, json, os, sys, time
from mlvc.store.s3 import S3Backend as RemoteBackend
moved = [0]
def counted(name):
    real = getattr(RemoteBackend, name)
    def wrapper(self, key, *args, **kw):
        out = real(self, key, *args, **kw)
        if name == "get_file":
            moved[0] += os.path.getsize(args[0])
        else:
            moved[0] += len(out)
        return out
    setattr(RemoteBackend, name, wrapper)
for n in ("get_range", "get_bytes", "get_file"):
    counted(n)
"""
LOAD_TENSOR = COUNT_BYTES + """
import mlvc.torch as mt
t0 = time.perf_counter()
t = mt.load_tensor("w1.pt", sys.argv[1], rev="HEAD")
print(time.perf_counter() - t0, moved[0])
"""
READ_ALL = COUNT_BYTES + """
import mlvc
t0 = time.perf_counter()
n = len(mlvc.read("w1.pt", rev="HEAD"))
print(time.perf_counter() - t0, moved[0])
"""
PULL = COUNT_BYTES + """
import mlvc
t0 = time.perf_counter()
res = mlvc.pull()
assert not res.failed, res.failed
print(time.perf_counter() - t0, moved[0])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale())
    args = ap.parse_args()
    import boto3

    w1 = W.make_models(args.scale)["w1"]
    size = w1.stat().st_size
    from mlvc import checkpoint as ckpt

    with open(w1, "rb") as f:
        layout = ckpt.read_layout(f)
    tensors = sorted(layout.tensors, key=lambda t: t.nbytes)
    picks = {"largest": tensors[-1], "median": tensors[len(tensors) // 2]}
    env = H.tool_env(H.S3_ENV)
    py = str(Path(H.mlvc_bin()).parent / "python")
    rows = []
    with counted_moto() as (endpoint, traffic), H.scratch("read") as base:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench-read")
        src = base / "src"
        src.mkdir()
        repo = H.MlvcRepo(src, env)
        repo.git_init()
        repo.sh(H.mlvc_bin(), "init", "-q")
        repo.sh(H.mlvc_bin(), "remote", "add", "origin", "s3://bench-read/store", "--default",
                "--endpoint-url", endpoint, "--region", "us-east-1", "-q")
        H.place(w1, src / "w1.pt")
        H.log(f"add + push W1 ({size / H.MiB:.0f} MiB)")
        repo.sh(H.mlvc_bin(), "add", "-q", "w1.pt")
        repo.git_commit("w1")
        repo.sh(H.mlvc_bin(), "push", "-q")

        def fresh(label: str) -> H.MlvcRepo:
            dst = base / label
            H.run(["git", "clone", "-q", str(src), str(dst)], base, env=env)
            return H.MlvcRepo(dst, env)

        def measure(label: str, what: str, script: str, *argv: str) -> None:
            clone = fresh(label)
            snap = traffic.snapshot()
            r = clone.sh(py, "-c", script, *argv)
            secs, nbytes = r.stdout.split()
            rows.append({"what": what, "seconds": round(float(secs), 3), **traffic.since(snap),
                         "bytes": int(nbytes)})
            H.log(f"{what}: {rows[-1]}")

        for label, info in picks.items():
            measure(f"tensor-{label}", f"load_tensor ({label}: {info.name}, {info.nbytes / H.MiB:.2f} MiB)",
                    LOAD_TENSOR, info.name)
        measure("read", "mlvc.read (whole file)", READ_ALL)
        measure("pull", "mlvc pull (whole file)", PULL)
    print(f"W1: {size / H.MiB:.0f} MiB, {len(layout.tensors)} tensors (scale {args.scale})")
    print(f"{'what':64} {'requests':>8} {'MiB moved':>10} {'% of file':>9} {'seconds':>8}  by method")
    for row in rows:
        print(f"{row['what']:64} {row['requests_total']:8d} {row['bytes'] / H.MiB:10.2f} "
              f"{100 * row['bytes'] / size:8.2f}% {row['seconds']:8.2f}  {row['requests']}")
    suffix = "" if args.scale == 1 else f"-scale{args.scale:g}"
    out = H.WORK / f"results-read{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"file_bytes": size, "scale": args.scale, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
