"""Remote benchmark (issue 3): `mlvc push/pull` beside `dvc push/pull` on the same data, same run.

    .venv/bin/python benchmarks/bench_remote.py                  # full scale, both remote kinds
    .venv/bin/python benchmarks/bench_remote.py --scale 0.1      # smoke test
    .venv/bin/python benchmarks/bench_remote.py --kinds s3 --only w3
    .venv/bin/python benchmarks/bench_remote.py --with-100k      # + the 100,000-file scale run

Remote kinds:
    dir   a plain directory (as a shared disk / NFS mount would be)
    s3    moto's ThreadedMotoServer on 127.0.0.1, started here; mlvc via
          `mlvc remote add origin s3://B/p --endpoint-url URL`, DVC via dvc-s3 with `endpointurl`.
          Every HTTP request the server answers is counted (by method).

Workloads (from workloads.py):
    w1    push W1 from a repo, then `pull` in a fresh `git clone` (bytes compared);
          then W2 is added in the first repo and pushed: bytes uploaded as % of W2.
          Peak RSS of each push/pull (GNU time -v).  On S3, a raw s3fs put/get of
          the W1 file is the baseline (a subprocess, like the CLIs).
    w3    push W3 (20,000 files) and pull it into a fresh clone; request counts.
    100k  (--with-100k) push/pull of W3-100k, per-file time vs W3 (mlvc; DVC with --dvc-100k).

When an mlvc remote command fails (not implemented yet, or a bug), its row reads n/a
with the error, and the rest still runs.  Results: the table on stdout and
benchmarks/.work/results-remote*.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402

KINDS = ("dir", "s3")
PARTS = ("w1", "w3")


# --------------------------------------------------------------------------- remotes
class Remote:
    """One remote location for one (tool, workload) pair, with byte / object / request accounting."""

    def __init__(self, kind: str, name: str, base: Path, s3=None):
        self.kind = kind
        self.name = name
        if kind == "dir":
            self.path = base / f"remote-{name}"
            self.path.mkdir(parents=True)
            self.url = str(self.path)
            self.endpoint = None
            self.counter = None
        else:
            self.endpoint, self.counter = s3
            self.bucket = f"bench-{name}".lower().replace("_", "-")[:63]
            self.client().create_bucket(Bucket=self.bucket)
            self.url = f"s3://{self.bucket}/store"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=H.S3_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=H.S3_ENV["AWS_SECRET_ACCESS_KEY"])

    def usage(self) -> tuple[int, int]:
        """(bytes, objects) stored on the remote now."""
        if self.kind == "dir":
            return H.tree_bytes(self.path), H.count_files(self.path)
        total = n = 0
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for o in page.get("Contents", []):
                total += o["Size"]
                n += 1
        return total, n

    def requests(self) -> dict:
        return self.counter.snapshot() if self.counter else {}


def env_for(remote: Remote | None = None) -> dict:
    return H.tool_env(H.S3_ENV)


def setup_remote(repo, remote: Remote) -> None:
    if repo.tool == "mlvc":
        argv = ["remote", "add", "origin", remote.url]
        if remote.endpoint:
            argv += ["--endpoint-url", remote.endpoint]
        repo.sh(*repo.cmd(*argv))
        repo.sh(*repo.cmd("remote", "default", "origin"))
    else:
        repo.sh(*repo.cmd("remote", "add", "-d", "origin", remote.url))
        if remote.endpoint:
            repo.sh(*repo.cmd("remote", "modify", "origin", "endpointurl", remote.endpoint))
    repo.git_commit("remote")


def transfer(repo, verb: str, remote: Remote) -> dict:
    """Run push/pull under GNU time: wall, peak RSS, requests and remote growth."""
    argv = repo.cmd(verb, "--quiet") if repo.tool == "mlvc" else repo.cmd(verb, "-q")
    b0, o0 = remote.usage()
    q0 = remote.requests()
    r, rss = H.peak_rss(argv, repo.path, env=repo.env)
    q1 = remote.requests()
    b1, o1 = remote.usage()
    return {"wall": r.wall, "rss": rss, "requests": H.RequestCounter.delta(q0, q1) if remote.counter else None,
            "bytes_added": b1 - b0, "objects_added": o1 - o0}


def clone(repo, dest: Path, tool: str):
    H.run(["git", "clone", "-q", str(repo.path), str(dest)], repo.path.parent, env=repo.env)
    cls = H.MlvcRepo if tool == "mlvc" else H.DvcRepo
    return cls(dest, env=repo.env)


# --------------------------------------------------------------------------- scenarios
def scenario_model(tool: str, kind: str, data: dict, s3) -> dict:
    out: dict = {}
    cls = H.MlvcRepo if tool == "mlvc" else H.DvcRepo
    with H.scratch(f"{tool}-{kind}-w1") as base:
        remote = Remote(kind, f"{tool}-w1", base, s3)
        repo = cls(base / "src", env=env_for(remote)).init()
        setup_remote(repo, remote)
        H.place(data["w1"], repo.path / "model.pt")
        repo.add("model.pt")
        repo.git_commit("w1")
        H.log(f"{tool}/{kind}: push W1")
        out["push_w1"] = transfer(repo, "push", remote)
        fresh = clone(repo, base / "clone", tool)
        H.log(f"{tool}/{kind}: pull W1 into a fresh clone")
        out["pull_w1"] = transfer(fresh, "pull", remote)
        if not H.same_bytes(data["w1"], fresh.path / "model.pt"):
            raise RuntimeError(f"{tool} pull did not restore W1's bytes")
        H.place(data["w2"], repo.path / "model.pt")
        repo.add("model.pt")
        repo.git_commit("w2")
        H.log(f"{tool}/{kind}: push W2 after W1")
        out["push_w2"] = transfer(repo, "push", remote)
    return out


def scenario_tree(tool: str, kind: str, tree: Path, s3) -> dict:
    out: dict = {}
    cls = H.MlvcRepo if tool == "mlvc" else H.DvcRepo
    with H.scratch(f"{tool}-{kind}-{tree.name}") as base:
        remote = Remote(kind, f"{tool}-{tree.name}", base, s3)
        repo = cls(base / "src", env=env_for(remote)).init()
        setup_remote(repo, remote)
        H.place(tree, repo.path / "data")
        out["files"] = H.count_files(repo.path / "data")
        repo.add("data")
        repo.git_commit("data")
        H.log(f"{tool}/{kind}: push {tree.name} ({out['files']} files)")
        out["push"] = transfer(repo, "push", remote)
        fresh = clone(repo, base / "clone", tool)
        H.log(f"{tool}/{kind}: pull {tree.name} into a fresh clone")
        out["pull"] = transfer(fresh, "pull", remote)
        diff = H.run(["diff", "-rq", str(tree), str(fresh.path / "data")], base, check=False)
        if diff.rc != 0:
            raise RuntimeError(f"{tool} pull of {tree.name} differs:\n{diff.stdout[:2000]}")
    return out


_RAW_PUT = """
import sys, s3fs
fs = s3fs.S3FileSystem(endpoint_url=sys.argv[1])
fs.put(sys.argv[2], sys.argv[3])
"""
_RAW_GET = """
import sys, s3fs
fs = s3fs.S3FileSystem(endpoint_url=sys.argv[1])
fs.get(sys.argv[2], sys.argv[3])
"""


def raw_s3fs(data: dict, s3) -> dict:
    """A single s3fs put and get of the W1 file: the floor for any tool on this server."""
    with H.scratch("raw-s3") as base:
        remote = Remote("s3", "raw-w1", base, s3)
        key = f"{remote.bucket}/raw/w1.pt"
        env = env_for(remote)
        q0 = remote.requests()
        put, put_rss = H.peak_rss([sys.executable, "-c", _RAW_PUT, remote.endpoint, data["w1"], key], base, env=env)
        q1 = remote.requests()
        get, get_rss = H.peak_rss([sys.executable, "-c", _RAW_GET, remote.endpoint, key, base / "w1.pt"], base,
                                  env=env)
        q2 = remote.requests()
        if not H.same_bytes(data["w1"], base / "w1.pt"):
            raise RuntimeError("raw s3fs get returned different bytes")
    return {"put": put.wall, "get": get.wall, "put_rss": put_rss, "get_rss": get_rss,
            "put_requests": H.RequestCounter.delta(q0, q1), "get_requests": H.RequestCounter.delta(q1, q2)}


def raw_dir(data: dict) -> dict:
    with H.scratch("raw-dir") as base:
        put = H.run(["cp", data["w1"], base / "w1.pt"], base)
        H.run(["sync"], base)
        get = H.run(["cp", base / "w1.pt", base / "w1-back.pt"], base)
    return {"put": put.wall, "get": get.wall}


# --------------------------------------------------------------------------- report
def _req(d: dict | None) -> str:
    if not d:
        return "n/a"
    parts = [f"{k} {v}" for k, v in sorted(d.items()) if k != "total"]
    return f"{d.get('total', 0)} ({', '.join(parts)})"


def _try(label: str, fn, *a):
    try:
        return fn(*a), None
    except H.CommandFailed as exc:
        first = (exc.run.stderr or exc.run.stdout).strip().splitlines()
        why = f"`{' '.join(exc.run.argv[1:3])}` exit {exc.run.rc}: {(first[-1] if first else '')[:160]}"
        H.log(f"{label}: {why}")
        return None, why
    except Exception as exc:  # noqa: BLE001 - becomes an n/a row
        traceback.print_exc()
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def report_model(rep: H.Report, kind: str, res: dict, raw: dict | None, size1: int, size2: int) -> None:
    m, mwhy = res.get("mlvc", (None, "not run"))
    d, dwhy = res.get("dvc", (None, "not run"))
    wl = f"W1 ({H.human(size1)}) -> {kind}"
    rss_t = H.mlvc_at_most(300e6, "mlvc < 300 MB")
    for verb, key in (("push", "push_w1"), ("pull", "pull_w1")):
        mv, dv = (m or {}).get(key), (d or {}).get(key)
        tgt = H.INFO
        note = "; ".join(x for x in (
            f"mlvc n/a: {mwhy}" if mv is None else f"mlvc {size1 / H.MiB / mv['wall']:.0f} MiB/s, "
                                                  f"requests {_req(mv['requests'])}" if kind == 's3' else "",
            f"DVC n/a: {dwhy}" if dv is None and dwhy else (f"DVC requests {_req(dv['requests'])}"
                                                           if dv and kind == "s3" else "")) if x)
        rep.add(H.Row(wl, f"{verb} time", mv and mv["wall"], dv and dv["wall"], "s", tgt, note=note,
                      detail={"mlvc": mv, "dvc": dv}))
        if raw:
            base = raw["put" if verb == "push" else "get"]
            what = "s3fs put" if verb == "push" and kind == "s3" else "s3fs get" if kind == "s3" else "cp"
            target = (H.mlvc_at_most(1.1, "mlvc <= 1.1x raw") if kind == "s3" else H.INFO)
            rep.add(H.Row(wl, f"{verb} time / raw {what} ({base:.2f}s)", mv and mv["wall"] / base,
                          dv and dv["wall"] / base, "x", target, detail={"raw": raw}))
        rep.add(H.Row(wl, f"{verb} peak RSS", mv and mv["rss"], dv and dv["rss"], "B", rss_t))
    mv, dv = (m or {}).get("push_w2"), (d or {}).get("push_w2")
    rep.add(H.Row(f"W2 after W1 -> {kind}", "push: bytes uploaded, % of W2",
                  mv and 100 * mv["bytes_added"] / size2, dv and 100 * dv["bytes_added"] / size2, "%",
                  H.mlvc_at_most(12.0, "mlvc <= 12% of W2"),
                  note=(f"mlvc +{H.human(mv['bytes_added'])} in {mv['objects_added']} objects, {mv['wall']:.2f}s"
                        if mv else f"mlvc n/a: {mwhy}")
                  + (f"; DVC +{H.human(dv['bytes_added'])} in {dv['objects_added']} objects, {dv['wall']:.2f}s"
                     if dv else ""),
                  detail={"mlvc": mv, "dvc": dv}))


def report_tree(rep: H.Report, kind: str, label: str, res: dict, *, target_ratio: float | None) -> None:
    m, mwhy = res.get("mlvc", (None, "not run"))
    d, dwhy = res.get("dvc", (None, "not run"))
    files = (m or d or {}).get("files", "?")
    wl = f"{label} ({files} files) -> {kind}"
    for verb in ("push", "pull"):
        mv, dv = (m or {}).get(verb), (d or {}).get(verb)
        tgt = (H.ratio_at_most(target_ratio, f"ratio <= {target_ratio:g} ({1 / target_ratio:g}x faster)")
               if target_ratio and kind == "s3" else H.INFO)
        note = "; ".join(x for x in (
            (f"mlvc requests {_req(mv['requests'])}, {mv['objects_added']} objects" if kind == "s3" else
             f"mlvc {mv['objects_added']} files written") if mv and verb == "push" else
            (f"mlvc requests {_req(mv['requests'])}" if mv and kind == "s3" else ""),
            f"mlvc n/a: {mwhy}" if mv is None else "",
            (f"DVC requests {_req(dv['requests'])}, {dv['objects_added']} objects" if kind == "s3" else
             f"DVC {dv['objects_added']} files written") if dv and verb == "push" else
            (f"DVC requests {_req(dv['requests'])}" if dv and kind == "s3" else ""),
            f"DVC n/a: {dwhy}" if dv is None and dwhy else "") if x)
        rep.add(H.Row(wl, f"{verb} time", mv and mv["wall"], dv and dv["wall"], "s", tgt, note=note,
                      detail={"mlvc": mv, "dvc": dv}))
        if kind == "s3":
            rep.add(H.Row(wl, f"{verb} HTTP requests", mv and mv["requests"]["total"],
                          dv and dv["requests"]["total"], "req"))
        rep.add(H.Row(wl, f"{verb} peak RSS", mv and mv["rss"], dv and dv["rss"], "B",
                      H.mlvc_at_most(300e6, "mlvc < 300 MB")))


def report_scale(rep: H.Report, kind: str, small: dict, big: dict) -> None:
    ms, _ = small.get("mlvc", (None, None))
    mb, mwhy = big.get("mlvc", (None, "not run"))
    ds, _ = small.get("dvc", (None, None))
    db, _ = big.get("dvc", (None, None))
    for verb in ("push", "pull"):
        def per(s, b, verb=verb):
            if not s or not b:
                return None
            return (b[verb]["wall"] / b["files"]) / (s[verb]["wall"] / s["files"])
        rep.add(H.Row(f"scale W3 -> W3-100k, {kind}", f"{verb}: per-file time ratio", per(ms, mb), per(ds, db), "x",
                      H.mlvc_at_most(1.2, "mlvc <= 1.2x (~linear)"),
                      note="" if mb else f"mlvc n/a: {mwhy}",
                      detail={"mlvc_100k": mb and mb[verb], "dvc_100k": db and db[verb]}))


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale())
    ap.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS))
    ap.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--with-100k", action="store_true", help="also push/pull W3-100k (mlvc; slow)")
    ap.add_argument("--dvc-100k", action="store_true", help="with --with-100k, run DVC on it too (very slow on S3)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    tools = ["mlvc"] + ([] if args.no_dvc or H.dvc_bin() is None else ["dvc"])
    if "dvc" not in tools and not args.no_dvc:
        H.log("DVC not found: run `bash benchmarks/setup_dvc.sh` (DVC columns will read n/a)")
    rep = H.Report(f"mlvc vs DVC - remotes (issue 3), scale {args.scale:g}")
    rep.meta = {"scale": args.scale, "versions": H.versions(), "kinds": args.kinds,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    need = (["w1"] if "w1" in args.only else []) + (["w3"] if "w3" in args.only else []) \
        + (["w3-100k"] if args.with_100k else [])
    data = W.ensure(args.scale, tuple(need))
    H.warm_up(with_dvc="dvc" in tools)
    import contextlib

    with (H.moto_server() if "s3" in args.kinds else contextlib.nullcontext((None, None))) as s3:
        for kind in args.kinds:
            H.log(f"=== remote kind {kind}")
            if "w1" in args.only:
                res = {t: _try(f"{t}/{kind}/w1", scenario_model, t, kind, data, s3) for t in tools}
                raw, _ = _try(f"raw/{kind}", raw_s3fs if kind == "s3" else raw_dir, data, *([s3] if kind == "s3"
                                                                                            else []))
                report_model(rep, kind, res, raw, data["w1"].stat().st_size, data["w2"].stat().st_size)
            small = {}
            if "w3" in args.only:
                small = {t: _try(f"{t}/{kind}/w3", scenario_tree, t, kind, data["w3"], s3) for t in tools}
                report_tree(rep, kind, "W3", small, target_ratio=0.1)
            if args.with_100k:
                big_tools = tools if args.dvc_100k else ["mlvc"]
                big = {t: _try(f"{t}/{kind}/100k", scenario_tree, t, kind, data["w3-100k"], s3) for t in big_tools}
                report_tree(rep, kind, "W3-100k", big, target_ratio=None)
                if small:
                    report_scale(rep, kind, small, big)
    rep.meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print()
    print(rep.table())
    out = args.json or (H.WORK / ("results-remote.json" if args.scale == 1
                                  else f"results-remote-scale{args.scale:g}.json"))
    rep.write_json(out)
    print(f"\nresults written to {out} ({rep.meta['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
