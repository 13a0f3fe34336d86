"""Core store benchmark (issue 2): mlvc beside DVC on the same data, in the same run.

    .venv/bin/python benchmarks/bench_core.py                 # full scale (~1 GiB W1, 20k/100k files, 4 GiB)
    .venv/bin/python benchmarks/bench_core.py --scale 0.1     # smoke test, about a minute
    .venv/bin/python benchmarks/bench_core.py --only add status
    .venv/bin/python benchmarks/bench_core.py --only add --w1-only --heavy-repeat 3   # just `add` W1 + cp/sync

Sections (each in fresh git repos, one per tool; CLI commands timed as subprocesses):
    add       1. `add` W1 cold (mlvc default = fsync on; mlvc with core.fsync false; `dvc add`),
                 each also as a multiple of `cp` + `sync` of the same file (the disk's own speed)
              2. new bytes stored for W2 after W1 and for W2-shift after W1
              4. `checkout` of W1 after deleting the workspace file
    status    3. no-op `status` on W3 + W1;  7. scale: add + status at 20k vs 100k files
    rss       5. peak RSS of `add` on a 4 GiB file
    small     6. `status` in a small clean repo (start-up cost)

Prints one line per figure as it is measured, then a table (workload, metric, mlvc,
DVC, mlvc/DVC, target, result), and writes it as JSON to
benchmarks/.work/results-core.json (results-core-scale<S>.json for other scales).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402

SECTIONS = ("add", "status", "rss", "small")


class Ctx:
    def __init__(self, args):
        self.args = args
        self.scale = args.scale
        self.cheap = args.repeat
        self.heavy = args.heavy_repeat
        self.dvc = H.dvc_bin() is not None and not args.no_dvc
        self.report = H.Report(f"mlvc vs DVC - core store (issue 2), scale {args.scale:g}")
        self.data: dict[str, Path] = {}

    def need(self, *keys) -> dict[str, Path]:
        missing = [k for k in keys if k not in self.data]
        if missing:
            self.data.update(W.ensure(self.scale, tuple(missing)))
        return self.data


def _pct(n: int, of: int) -> float:
    return 100.0 * n / of if of else float("nan")


def _mbps(nbytes: int, secs: float | None) -> str:
    return f"{nbytes / H.MiB / secs:.0f} MiB/s" if secs else "n/a"


# --------------------------------------------------------------------------- 1, 2, 4
def section_add(c: Ctx) -> None:
    d = c.need("w1", "w2", "w2shift")
    w1, w2, w2s = d["w1"], d["w2"], d["w2shift"]
    size1, size2, size2s = w1.stat().st_size, w2.stat().st_size, w2s.stat().st_size
    wl = f"W1 ({H.human(size1)})"
    nrepos = max(2, c.heavy)  # repo 0 continues with checkout + W2, repo 1 with W2-shift
    res: dict = {}

    errors: dict[str, str] = {}

    def attempt(label, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - the figure reads n/a; the others still run
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''}"
            if isinstance(exc, H.CommandFailed):
                why = str(exc).strip().splitlines()[-2 if len(str(exc).splitlines()) > 1 else -1].strip()[:200]
            H.log(f"{label} failed: {why}")
            errors.setdefault(label.split(":")[0], why)
            return None

    w1_only = c.args.w1_only
    if w1_only:
        nrepos = c.heavy

    # the baseline: the same bytes copied and made durable by the plainest tools
    cps = H.Timing()
    with H.scratch("cp-sync") as path:
        def drop(path=path):
            (path / "model.pt").unlink(missing_ok=True)
            os.sync()
        H.log(f"cp + sync of W1 ({c.heavy}x)")
        cps = H.time_cmd(["sh", "-c", f'cp "{w1}" model.pt && sync'], path, repeat=c.heavy, setup=drop)
    res["cp_sync"] = cps

    def one_repo(tool, i, adds, checkouts, growth):
        with H.scratch(f"{tool}-w1") as path:
            repo = (H.MlvcRepo if tool == "mlvc" else H.DvcRepo)(path).init()
            target = path / "model.pt"
            H.place(w1, target)
            H.log(f"{tool}: add W1 cold (repo {i + 1}/{nrepos})")
            adds.append(repo.add("model.pt").wall)
            if w1_only:
                return
            if i == 0:
                # 4. checkout from the cache after deleting the workspace file
                def drop(target=target):
                    target.unlink()
                    os.sync()
                argv = repo.cmd("checkout", "-q") if tool == "dvc" else repo.cmd("checkout", "--quiet")
                t = H.time_cmd(argv, path, repeat=c.heavy, setup=drop, env=repo.env)
                if not H.same_bytes(w1, target):
                    raise RuntimeError(f"{tool} checkout did not restore W1's bytes")
                checkouts.samples.extend(t.samples)
            if i in (0, 1):
                # 2. new bytes stored for W2 (repo 0) / W2-shift (repo 1) after W1
                src, key = (w2, "w2") if i == 0 else (w2s, "w2shift")
                before = repo.cache_bytes()
                H.place(src, target)
                H.log(f"{tool}: add {key} after W1")
                r2 = repo.add("model.pt")
                g = {"cache_growth": repo.cache_bytes() - before, "wall": r2.wall}
                if tool == "mlvc":
                    doc = r2.json()[0]
                    g.update(new_bytes=doc["new_bytes"], stored_bytes=doc["stored_bytes"], changed=doc["changed"])
                growth[key] = g

    for tool in (["mlvc", "dvc"] if c.dvc else ["mlvc"]):
        adds, co, growth = [], H.Timing(), {}
        for i in range(nrepos):
            attempt(f"{tool}: repo {i + 1}", lambda tool=tool, i=i, adds=adds, co=co, growth=growth:
                    one_repo(tool, i, adds, co, growth))
        res[tool] = {"add": H.Timing(adds), "checkout": co, "growth": growth}

    # mlvc with core.fsync: false
    nofs: list[float] = []

    def nofsync_once(i):
        with H.scratch("mlvc-nofsync") as path:
            repo = H.MlvcRepo(path).init(fsync=False)
            H.place(w1, path / "model.pt")
            H.log(f"mlvc (fsync off): add W1 cold ({i + 1}/{c.heavy})")
            nofs.append(repo.add("model.pt").wall)
    for i in range(c.heavy):
        attempt("mlvc-nofsync", lambda i=i: nofsync_once(i))
    res["mlvc_nofsync"] = {"add": H.Timing(nofs)}
    res["errors"] = errors

    m, dv = res["mlvc"], res.get("dvc")
    target3 = H.ratio_at_most(1 / 3, "ratio <= 0.33 (3x faster)")
    rep = c.report
    dvc_add = dv["add"] if dv else H.Timing()
    rep.add(H.Row(wl, "add cold, s (mlvc fsync on = default)", m["add"].best, dvc_add.best, "s", target3,
                  note=f"mlvc {m['add']}, {_mbps(size1, m['add'].best)}; DVC {dvc_add}, "
                       f"{_mbps(size1, dvc_add.best)}"
                       + "".join(f"; {k} error: {v}" for k, v in errors.items() if k in ("mlvc", "dvc")),
                  detail={"mlvc": m["add"].as_dict(), "dvc": dvc_add.as_dict()}))
    nf = res["mlvc_nofsync"]["add"]
    rep.add(H.Row(wl, "add cold, s (mlvc core.fsync: false)", nf.best, dvc_add.best, "s", target3,
                  note=f"mlvc {nf}, {_mbps(size1, nf.best)}; DVC never fsyncs"
                       + (f"; mlvc error: {errors['mlvc-nofsync']}" if "mlvc-nofsync" in errors else ""),
                  detail={"mlvc": nf.as_dict(), "dvc": dvc_add.as_dict()}))

    def over_cp(t: H.Timing) -> float | None:
        return t.best / cps.best if t.best and cps.best else None

    rep.add(H.Row(wl, "add cold / (cp + sync), x (mlvc fsync on)", over_cp(m["add"]), over_cp(dvc_add), "x",
                  H.mlvc_at_most(1.5, "mlvc <= 1.5x cp+sync (goal 1.2x)"),
                  note=f"cp + sync {cps}; mlvc add {m['add']}; DVC add {dvc_add}",
                  detail={"cp_sync": cps.as_dict(), "mlvc": m["add"].as_dict(), "dvc": dvc_add.as_dict()}))
    if w1_only:
        return

    target12 = H.mlvc_at_most(12.0, "mlvc <= 12% of W2")
    for key, label, sz in (("w2", "W2 after W1", size2), ("w2shift", "W2-shift after W1", size2s)):
        mg = m["growth"].get(key)
        dg = dv["growth"].get(key) if dv else None
        note = (f"mlvc cache +{H.human(mg['cache_growth'])} (new chunks raw {H.human(mg['new_bytes'])} = "
                f"{_pct(mg['new_bytes'], sz):.1f}%, stored {H.human(mg['stored_bytes'])}); add took {mg['wall']:.2f}s"
                if mg else f"mlvc n/a: {errors.get('mlvc', '?')}")
        note += (f"; DVC cache +{H.human(dg['cache_growth'])}, add took {dg['wall']:.2f}s" if dg else
                 f"; DVC n/a: {errors.get('dvc', '?')}" if c.dvc else "")
        rep.add(H.Row(f"{label} ({H.human(sz)})", "new bytes stored, % of W2 (cache growth)",
                      mg and _pct(mg["cache_growth"], sz), dg and _pct(dg["cache_growth"], sz), "%", target12,
                      note=note, detail={"mlvc": mg, "dvc": dg}))

    dco = dv["checkout"] if dv else H.Timing()
    rep.add(H.Row(wl, "checkout after rm (DVC default link type)", m["checkout"].best, dco.best, "s",
                  H.ratio_at_most(1 / 1.5, "ratio <= 0.67 (1.5x faster)"),
                  note=f"mlvc {m['checkout']}; DVC {dco} (cache.type unset = reflink,copy -> copy on "
                       f"{H.fs_type(H.WORK)})",
                  detail={"mlvc": m["checkout"].as_dict(), "dvc": dco.as_dict()}))


# --------------------------------------------------------------------------- 3, 7
def _status_clean(repo, r: H.Run) -> None:
    if r.rc != 0 or (repo.tool == "dvc" and "up to date" not in r.stdout):
        raise RuntimeError(f"{repo.tool} status is not clean:\n{r.stdout}{r.stderr}")


def _tree_add_status(c: Ctx, tool: str, tree: Path, with_w1: Path | None) -> dict:
    out: dict = {}
    with H.scratch(f"{tool}-{tree.name}") as path:
        repo = (H.MlvcRepo if tool == "mlvc" else H.DvcRepo)(path).init()
        H.place(tree, path / "data")
        nfiles = H.count_files(path / "data")
        H.log(f"{tool}: add {tree.name} ({nfiles} files)")
        out["add"] = repo.add("data").wall
        last: list = []
        st = H.time_cmd(repo.cmd("status"), path, repeat=c.cheap, env=repo.env, last=last)
        _status_clean(repo, last[0])
        out["status"] = st
        if with_w1 is not None:
            H.place(with_w1, path / "model.pt")
            H.log(f"{tool}: add W1 beside {tree.name}")
            repo.add("model.pt")
            last = []
            st2 = H.time_cmd(repo.cmd("status"), path, repeat=c.cheap, env=repo.env, last=last)
            _status_clean(repo, last[0])
            out["status_w1"] = st2
        out["files"] = nfiles
    return out


def section_status(c: Ctx) -> None:
    d = c.need("w1", "w3", "w3-100k")
    tools = ["mlvc", "dvc"] if c.dvc else ["mlvc"]
    small, big, why = {}, {}, {}
    for t in tools:
        try:
            small[t] = _tree_add_status(c, t, d["w3"], d["w1"])
        except Exception as exc:  # noqa: BLE001 - reported as n/a, the rest still runs
            why[t] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            H.log(f"{t}: W3 run failed: {why[t]}")
    for t in (tools if not c.args.no_dvc_100k else ["mlvc"]):
        try:
            big[t] = _tree_add_status(c, t, d["w3-100k"], None)
        except Exception as exc:  # noqa: BLE001 - reported as n/a, the rest still runs
            why.setdefault(t, f"{type(exc).__name__}: {str(exc).strip()[:200]}")
            H.log(f"{t}: 100k scale run failed: {exc}")
    rep = c.report
    n20 = max(1, int(round(20_000 * c.scale)))
    n20 = small.get("mlvc", small.get("dvc", {})).get("files", n20)
    n100 = big.get("mlvc", big.get("dvc", {})).get("files", max(1, int(round(100_000 * c.scale))))
    get = lambda res, t, k: res.get(t, {}).get(k)  # noqa: E731

    m, dv = small.get("mlvc", {}), small.get("dvc", {})
    ms, ds = m.get("status_w1", H.Timing()), dv.get("status_w1", H.Timing())
    rep.add(H.Row(f"W3 + W1 ({n20} files + {H.human(d['w1'].stat().st_size)})", "status, nothing changed",
                  ms.best, ds.best, "s", H.ratio_at_most(0.25, "ratio <= 0.25 (4x faster)"),
                  note=f"mlvc {ms}; DVC {ds}" + "".join(f"; {t} error: {w}" for t, w in why.items()),
                  detail={"mlvc": ms.as_dict(), "dvc": ds.as_dict()}))

    def tm(x):
        return x.best if isinstance(x, H.Timing) else x

    for label, key in (("add", "add"), ("status (no-op)", "status")):
        a20m, a20d = tm(get(small, "mlvc", key)), tm(get(small, "dvc", key))
        a100m, a100d = tm(get(big, "mlvc", key)), tm(get(big, "dvc", key))
        rep.add(H.Row(f"W3 {n20} files", label, a20m, a20d, "s",
                      detail={"mlvc": str(get(small, "mlvc", key)), "dvc": str(get(small, "dvc", key))}))
        rep.add(H.Row(f"W3-100k {n100} files", label, a100m, a100d, "s",
                      note="" if a100d is not None or not c.dvc else "DVC 100k run skipped or failed",
                      detail={"mlvc": str(get(big, "mlvc", key)), "dvc": str(get(big, "dvc", key))}))
        per = lambda a100, a20: (a100 / n100) / (a20 / n20) if a100 and a20 and n100 else None  # noqa: E731
        pm, pd = per(a100m, a20m), per(a100d, a20d)
        rep.add(H.Row(f"scale {n20} -> {n100} files", f"{label}: per-file time ratio", pm, pd, "x",
                      H.mlvc_at_most(1.2, "mlvc <= 1.2x (~linear)"),
                      note=(f"mlvc {1e6 * a20m / n20:.0f} -> {1e6 * a100m / n100:.0f} us/file"
                            if pm else "") + (f"; DVC {1e6 * a20d / n20:.0f} -> {1e6 * a100d / n100:.0f} us/file"
                                              if pd else "")))


# --------------------------------------------------------------------------- 5
def section_rss(c: Ctx) -> None:
    big = c.need("big")["big"]
    size = big.stat().st_size
    res = {}
    for tool in (["mlvc", "dvc"] if c.dvc else ["mlvc"]):
        with H.scratch(f"{tool}-big") as path:
            repo = (H.MlvcRepo if tool == "mlvc" else H.DvcRepo)(path).init()
            H.place(big, path / "big.bin")
            H.log(f"{tool}: add {H.human(size)} file under /usr/bin/time -v")
            argv = repo.cmd("add", "--json", "big.bin") if tool == "mlvc" else repo.cmd("add", "-q", "big.bin")
            r, rss = H.peak_rss(argv, path, env=repo.env)
            res[tool] = (rss, r.wall)
    m, dv = res["mlvc"], res.get("dvc")
    limit = 300 * 1000 * 1000
    c.report.add(H.Row(f"BIG ({H.human(size)})", "add: peak RSS", m[0], dv[0] if dv else None, "B",
                       H.mlvc_at_most(limit, "mlvc < 300 MB"),
                       note=f"wall: mlvc {m[1]:.2f}s ({_mbps(size, m[1])})"
                            + (f", DVC {dv[1]:.2f}s ({_mbps(size, dv[1])})" if dv else "")))


# --------------------------------------------------------------------------- 6
def section_small(c: Ctx) -> None:
    res = {}
    n = max(c.cheap, 10)
    for tool in (["mlvc", "dvc"] if c.dvc else ["mlvc"]):
        with H.scratch(f"{tool}-small") as path:
            repo = (H.MlvcRepo if tool == "mlvc" else H.DvcRepo)(path).init()
            (path / "params.txt").write_text("lr: 0.001\nbatch: 64\n")
            repo.add("params.txt")
            last: list = []
            res[tool] = H.time_cmd(repo.cmd("status"), path, repeat=n, env=repo.env, last=last)
            _status_clean(repo, last[0])
    m, dv = res["mlvc"], res.get("dvc", H.Timing())
    c.report.add(H.Row("small repo (1 tiny file)", "status wall (start-up)", m.best, dv.best, "s",
                       H.mlvc_below_and_faster(0.3, "mlvc < 0.3 s and < DVC"),
                       note=f"mlvc {m}; DVC {dv}", detail={"mlvc": m.as_dict(), "dvc": dv.as_dict()}))


RUNNERS = {"add": section_add, "status": section_status, "rss": section_rss, "small": section_small}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=W.default_scale(),
                    help="workload size factor (default $MLVC_BENCH_SCALE or 1)")
    ap.add_argument("--repeat", type=int, default=5, help="samples of cheap commands (status); best is reported")
    ap.add_argument("--heavy-repeat", type=int, default=2,
                    help="samples of expensive commands (add/checkout of W1); best is reported")
    ap.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--no-dvc", action="store_true", help="mlvc only")
    ap.add_argument("--w1-only", action="store_true",
                    help="section add: only the cold adds of W1 and cp + sync (no checkout, no W2)")
    ap.add_argument("--no-dvc-100k", action="store_true", help="skip DVC on the 100k-file scale run (slow)")
    ap.add_argument("--json", type=Path, help="results file (default benchmarks/.work/results-core*.json)")
    args = ap.parse_args(argv)
    c = Ctx(args)
    if not c.dvc and not args.no_dvc:
        H.log("DVC not found: run `bash benchmarks/setup_dvc.sh` (DVC columns will read n/a)")
    c.report.meta = {"scale": args.scale, "versions": H.versions(), "fs": H.fs_type(H.WORK),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "repeat": args.repeat,
                     "heavy_repeat": args.heavy_repeat,
                     "env": {k: v for k, v in H.tool_env().items() if k.startswith(("PYTHON", "DVC_"))}}
    H.log(f"versions: {c.report.meta['versions']}")
    H.warm_up(with_dvc=c.dvc)
    t0 = time.perf_counter()
    H.log("preparing workloads (cached under benchmarks/.work/data)")
    c.need(*{"add": ("w1",), "status": ("w1", "w3", "w3-100k"), "rss": ("big",), "small": ()}.get(
        (args.only or ["add"])[0], ()))
    for name in args.only or SECTIONS:
        H.log(f"=== section {name}")
        try:
            RUNNERS[name](c)
        except Exception as exc:  # noqa: BLE001 - a failed section is reported, the others still run
            traceback.print_exc()
            c.report.na(name, "section failed", "s", why=f"{type(exc).__name__}: {str(exc)[:300]}")
    c.report.meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print()
    print(c.report.table())
    name = "results-core.json" if args.scale == 1 else f"results-core-scale{args.scale:g}.json"
    out = args.json or (H.WORK / name)
    c.report.write_json(out)
    print(f"\nresults written to {out} ({c.report.meta['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
