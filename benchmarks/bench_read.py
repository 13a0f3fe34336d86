"""Read benchmark (issue 9): one tensor of W1 from S3 (moto) beside downloading the whole file.

    .venv/bin/python benchmarks/bench_read.py                 # W1 ~1 GiB
    .venv/bin/python benchmarks/bench_read.py --scale 0.1     # smoke test (~100 MiB)

W1 is added and pushed to a moto S3 server on 127.0.0.1; then, each in a fresh
`git clone` with nothing pulled and in its own process:
    tensor    `mlvc.torch.load_tensor("w1.pt", NAME, rev="HEAD")` for the largest
              tensor and for a median-sized one (ranged GETs of the remote packs)
    mlvc.read `mlvc.read("w1.pt", rev="HEAD")`: the whole file through the read API
    pull      `mlvc pull` of the file (whole packs)
Requests are counted by the server (by method), bytes are the response bodies it sent.
Results: the table on stdout and benchmarks/.work/results-read*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402


class Traffic:
    """Requests and response bytes the moto server answers, by method."""

    def __init__(self):
        import collections
        import threading

        self.lock = threading.Lock()
        self.requests = collections.Counter()
        self.bytes = collections.Counter()

    def snapshot(self) -> tuple[dict, dict]:
        with self.lock:
            return dict(self.requests), dict(self.bytes)

    def since(self, snap) -> dict:
        req0, b0 = snap
        req1, b1 = self.snapshot()
        out = {"requests": {k: v - req0.get(k, 0) for k, v in req1.items() if v - req0.get(k, 0)}}
        out["requests_total"] = sum(out["requests"].values())
        out["bytes"] = sum(b1.values()) - sum(b0.values())
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
            traffic.bytes[getattr(self, "command", "?")] += int(size) if str(size).isdigit() else 0

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


LOAD_TENSOR = """
import sys, time, mlvc.torch as mt
t0 = time.perf_counter()
t = mt.load_tensor("w1.pt", sys.argv[1], rev="HEAD")
print(time.perf_counter() - t0, t.numel() * t.element_size())
"""
READ_ALL = """
import time, mlvc
t0 = time.perf_counter()
n = len(mlvc.read("w1.pt", rev="HEAD"))
print(time.perf_counter() - t0, n)
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

        for label, info in picks.items():
            clone = fresh(f"tensor-{label}")
            snap = traffic.snapshot()
            r = clone.sh(py, "-c", LOAD_TENSOR, info.name)
            secs, nbytes = r.stdout.split()
            t = traffic.since(snap)
            rows.append({"what": f"load_tensor ({label}: {info.name}, {int(nbytes) / H.MiB:.1f} MiB)",
                         "seconds": round(float(secs), 3), **t})
        clone = fresh("read")
        snap = traffic.snapshot()
        r = clone.sh(py, "-c", READ_ALL)
        secs, _n = r.stdout.split()
        rows.append({"what": "mlvc.read (whole file)", "seconds": round(float(secs), 3), **traffic.since(snap)})
        clone = fresh("pull")
        snap = traffic.snapshot()
        t0 = time.perf_counter()
        clone.sh(H.mlvc_bin(), "pull", "-q")
        rows.append({"what": "mlvc pull (whole file)", "seconds": round(time.perf_counter() - t0, 3),
                     **traffic.since(snap)})
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
