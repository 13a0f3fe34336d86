"""Scale benchmark (issue 12): many small files, many checkpoint versions, many pushers at once.

    .venv/bin/python benchmarks/bench_scale.py                          # 1,000,000 files (long: see README)
    .venv/bin/python benchmarks/bench_scale.py --files 20000,200000     # two sizes + per-file cost ratios
    .venv/bin/python benchmarks/bench_scale.py --versions 100 --checkpoint-mib 1024
    .venv/bin/python benchmarks/bench_scale.py --s3-clients 8
    .venv/bin/python benchmarks/bench_scale.py --files 200000 --heap-profile pull-dir --no-dvc

Parts:
    files      N files of ~1 KiB (random bytes, 512-1536 B, seeded per folder) in ImageNet-like
               folders: part-PP/class-CCCCC/NNNNNNN.bin, 1,000 files a class, 100 classes a part.
               For each tool, in a fresh git repo: `add`, no-op `status`, `push` to a directory
               remote and to S3 on SeaweedFS (`weed mini`), then 1% of the files rewritten, added,
               committed and pushed; `pull` of that commit into a fresh `git clone` (from each
               remote, bytes compared with `diff -r`), and `checkout` of the first commit (1% of
               the files change; bytes compared).  Every command: wall time, time per file, and
               peak RSS (GNU `time -v`).  The limits beside them, on the same disk and files:
               `cp -r` + `sync` (into the mlvc repo) and `tar x` of a tarball of the files.
               DVC runs the same steps up to --dvc-max-files (default 200,000: at 1M files DVC
               takes hours).  Given two sizes or more, the per-file time of each command at
               every size is divided by its per-file time at the smallest (target <= 1.5x).
    versions   (--versions K) K fine-tune versions of a torch checkpoint (--checkpoint-mib,
               default 1024; the W1 architecture of workloads.py), each with ~10% of the tensor
               bytes changed (half re-randomised, half perturbed), `mlvc add` + `git commit` one
               by one.  Store bytes vs (first version + every changed tensor byte), target
               <= 1.15x; `mlvc log` and `mlvc diff` across them; then history is rewritten to
               keep the last 10% of the versions and `mlvc gc --all-commits --grace 0` removes
               the rest: its wall time, peak RSS and the store after it.
    clients    (--s3-clients C) C clones of one repo, each with its own commit (--client-files
               files of ~1 KiB + a --client-mib MiB float32 file), push to one SeaweedFS bucket
               at the same time: total time, throughput, each client's peak RSS; then C fresh
               clones pull back at the same time, compared byte for byte.

--heap-profile CMD re-runs one mlvc command of the files part (at the first size) under
tracemalloc, snapshotting the heap near its peak, and prints the allocation sites that
dominate: where the memory goes (HEAP_FRAMES=6 also groups by traceback; much slower).

Results: RESULT lines on stderr as measured, a table on stdout (or the JSON document with
--json), and benchmarks/.work/results-scale-<parts>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as H  # noqa: E402
import workloads as W  # noqa: E402
from bench_remote import Remote  # noqa: E402
from bench_restore import seaweedfs_server  # noqa: E402

MiB, GiB = H.MiB, H.GiB
RSS_TARGET = 300 * MiB
SCALE_TARGET = 1.5
STORE_TARGET = 1.15

SEED_FILES = 20261201
SEED_CHANGE = 20261202
SEED_VERSIONS = 20261203
SEED_CLIENTS = 20261204
FILES_PER_CLASS = 1000
CLASSES_PER_PART = 100
CHANGED_EVERY = 100  # 1% of the files change in the second revision

HEAP_COMMANDS = ("add", "status", "push-dir", "pull-dir", "pull-s3", "checkout")

rss_target = H.mlvc_at_most(RSS_TARGET, "mlvc <= 300 MiB")


# --------------------------------------------------------------------------- the file set
def file_relpath(i: int) -> str:
    cls = i // FILES_PER_CLASS
    return f"part-{cls // CLASSES_PER_PART:02d}/class-{cls:05d}/{i:07d}.bin"


def _class_contents(seed: int, cls: int, count: int) -> list[bytes]:
    """The contents of the first `count` files of one class folder (512-1536 random bytes each)."""
    import numpy as np

    rng = np.random.default_rng([seed, cls])
    sizes = rng.integers(512, 1537, FILES_PER_CLASS)
    blob = rng.bytes(int(sizes.sum()))
    out, at = [], 0
    for s in sizes[:count]:
        out.append(blob[at:at + int(s)])
        at += int(s)
    return out


def _write_class(root: Path, seed: int, cls: int, n: int, only=None) -> int:
    first = cls * FILES_PER_CLASS
    count = min(FILES_PER_CLASS, n - first)
    written = 0
    for k, body in enumerate(_class_contents(seed, cls, count)):
        i = first + k
        if only is not None and not only(i):
            continue
        path = root / file_relpath(i)
        if k == 0 and only is None:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
        written += 1
    return written


def make_files(n: int) -> Path:
    """benchmarks/.work/data/files-<n>/data: the n-file set, generated once (fixed seeds)."""
    import shutil

    base = W.WORK / "data" / f"files-{n}"
    root = base / "data"
    recipe = {"v": 1, "files": n, "seed": SEED_FILES, "per_class": FILES_PER_CLASS}
    meta = base / "recipe.json"
    if root.is_dir() and meta.exists() and json.loads(meta.read_text()).get("recipe") == recipe:
        return root
    shutil.rmtree(base, ignore_errors=True)
    tmp = base / "data.tmp"
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    classes = (n + FILES_PER_CLASS - 1) // FILES_PER_CLASS
    for cls in range(classes):
        _write_class(tmp, SEED_FILES, cls, n)
        if cls % 100 == 99:
            H.log(f"generating {n} files: {min(n, (cls + 1) * FILES_PER_CLASS)} written")
    os.replace(tmp, root)
    meta.write_text(json.dumps({"recipe": recipe, "bytes": H.tree_bytes(root)}))
    H.log(f"generated {n} files, {H.human(H.tree_bytes(root))} in {time.perf_counter() - t0:.1f}s")
    return root


def change_one_percent(root: Path, n: int) -> int:
    """Rewrite every 100th file (1%) with new random content; returns how many changed."""
    changed = 0
    for cls in range((n + FILES_PER_CLASS - 1) // FILES_PER_CLASS):
        changed += _write_class(root, SEED_CHANGE, cls, n, only=lambda i: i % CHANGED_EVERY == 37)
    return changed


def same_tree(a: Path, b: Path) -> None:
    r = H.run(["diff", "-rq", "--no-dereference", str(a), str(b)], a.parent, check=False)
    if r.rc != 0:
        raise RuntimeError(f"{b} differs from {a}:\n{(r.stdout + r.stderr)[:2000]}")


# --------------------------------------------------------------------------- measuring
def measure(repo, args, *, ok_codes=(0,)) -> dict:
    """Run `args` of the repo's tool under GNU time: wall seconds and peak RSS bytes."""
    r, rss = H.peak_rss(repo.cmd(*args), repo.path, env=repo.env, check=False)
    if r.rc not in ok_codes:
        raise RuntimeError(failure(r))
    return {"wall": r.wall, "rss": rss, "rc": r.rc, "stdout": r.stdout[-2000:]}


def failure(r: H.Run) -> str:
    """A failed command's own output (GNU time's report cut off)."""
    own = (r.stderr.split("\tCommand being timed:")[0].strip() or r.stdout.strip()).splitlines()[-15:]
    return f"`{' '.join(map(str, r.argv))}` exited {r.rc} in {r.cwd}:\n    " + "\n    ".join(own)


def timed_shell(argv, cwd) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(a) for a in argv], cwd=str(cwd), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


HEAP_WRAPPER = r"""
import json, os, sys, threading, time, tracemalloc
frames = int(os.environ.get("HEAP_FRAMES", "1"))
tracemalloc.start(frames)
state = {"best": 0, "snap": None, "at": 0.0}
stop = threading.Event()
t0 = time.perf_counter()
def sample():
    while not stop.wait(0.25):
        cur, _peak = tracemalloc.get_traced_memory()
        if cur > max(8 << 20, state["best"] * 1.2):
            state["snap"] = tracemalloc.take_snapshot()
            state["best"] = tracemalloc.get_traced_memory()[0]
            state["at"] = time.perf_counter() - t0
th = threading.Thread(target=sample, daemon=True)
th.start()
sys.argv = ["mlvc", *sys.argv[1:]]
rc = 0
try:
    from mlvc.cli.main import main
    main()
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
stop.set(); th.join()
peak = tracemalloc.get_traced_memory()[1]
snap = state["snap"] or tracemalloc.take_snapshot()
snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
def short(name):
    return "mlvc/" + name.rsplit("/mlvc/", 1)[1] if "/mlvc/" in name else name.split("site-packages/")[-1]
def site(stat):
    return [f"{short(f.filename)}:{f.lineno}" for f in stat.traceback]
out = {"peak_traced": peak, "snapshot_traced": state["best"], "snapshot_at_s": state["at"],
       "by_line": [{"bytes": s.size, "blocks": s.count, "where": site(s)[0]}
                   for s in snap.statistics("lineno")[:25]],
       "by_traceback": [{"bytes": s.size, "blocks": s.count, "where": site(s)}
                        for s in snap.statistics("traceback")[:10]] if frames > 1 else []}
with open(os.environ["HEAP_OUT"], "w") as f:
    json.dump(out, f, indent=1)
sys.exit(rc)
"""


def heap_profile(repo, args, out: Path) -> dict:
    """One mlvc command under tracemalloc (snapshot near the peak); returns the summary."""
    py = Path(H.mlvc_bin()).with_name("python")
    env = dict(repo.env, HEAP_OUT=str(out))
    H.log(f"heap profile: mlvc {' '.join(map(str, args))} (tracemalloc, slow)")
    r, rss = H.peak_rss([py, "-c", HEAP_WRAPPER, *args], repo.path, env=env, check=False)
    if r.rc != 0:
        raise RuntimeError(failure(r))
    doc = json.loads(out.read_text())
    doc["rss_under_tracemalloc"] = rss
    doc["command"] = "mlvc " + " ".join(map(str, args))
    return doc


def print_heap(doc: dict) -> None:
    print(f"\nheap profile of `{doc['command']}`: traced peak {H.human(doc['peak_traced'])}, snapshot of "
          f"{H.human(doc['snapshot_traced'])} taken at {doc['snapshot_at_s']:.1f}s "
          f"(RSS under tracemalloc {H.human(doc['rss_under_tracemalloc'])})")
    print("  top allocation sites (live at the snapshot):")
    for s in doc["by_line"][:15]:
        print(f"    {H.human(s['bytes']):>10}  {s['blocks']:>9} blocks  {s['where']}")
    if doc["by_traceback"]:
        print("  top tracebacks (innermost frame last):")
    for s in doc["by_traceback"][:6]:
        print(f"    {H.human(s['bytes']):>10}  {s['blocks']:>9} blocks")
        for w in s["where"]:
            print(f"        {w}")


# --------------------------------------------------------------------------- files part
class Ctx:
    def __init__(self, args):
        self.args = args
        self.report = H.Report("mlvc scale benchmark (issue 12)")
        self.results: dict = {}
        self.heap: dict | None = None


def _remote_add(repo, name: str, remote: Remote, default: bool) -> None:
    if repo.tool == "mlvc":
        argv = ["remote", "add", name, remote.url, "--quiet"]
        if remote.endpoint:
            argv += ["--endpoint-url", remote.endpoint]
        if default:
            argv.append("--default")
        repo.sh(*repo.cmd(*argv))
    else:
        repo.sh(*repo.cmd("remote", "add", *(["-d"] if default else []), name, remote.url))
        if remote.endpoint:
            repo.sh(*repo.cmd("remote", "modify", name, "endpointurl", remote.endpoint))


def _quiet(tool: str) -> str:
    return "--quiet" if tool == "mlvc" else "-q"


def files_flow(c: Ctx, tool: str, n: int, data: Path, s3, heap_cmd: str | None) -> dict:
    """Every step of the files part for one tool at one size: {step: {wall, rss, ...}}."""
    cls = H.MlvcRepo if tool == "mlvc" else H.DvcRepo
    kinds = [k for k in c.args.kinds if tool == "mlvc" or k in c.args.dvc_kinds]
    out: dict = {}
    with H.scratch(f"scale-{tool}-{n}") as base:
        remotes = {}
        if "dir" in kinds:
            remotes["dir"] = Remote("dir", f"{tool}-{n}", base)
        if "s3" in kinds:
            remotes["s3"] = Remote("s3", f"{tool}-{n}-{os.getpid()}-{time.time_ns() % 10 ** 6}", base, s3)
        repo = cls(base / "src", env=H.tool_env(H.S3_ENV)).init()
        for i, (name, remote) in enumerate(remotes.items()):
            _remote_add(repo, name, remote, default=i == 0)
        repo.git_commit("remotes")

        H.log(f"{tool} {n}: cp -r + sync into the repo")
        t_cp = timed_shell(["cp", "-r", data, repo.path / "data"], base)
        t_sync = timed_shell(["sync"], base)
        out["cp"] = {"wall": t_cp, "sync": t_sync}

        H.log(f"{tool} {n}: add")
        out["add"] = measure(repo, ["add", _quiet(tool), "data"])
        if heap_cmd == "add":
            with H.scratch(f"heap-add-{n}") as hp:
                hrepo = H.MlvcRepo(hp / "r", env=repo.env).init()
                timed_shell(["cp", "-r", data, hrepo.path / "data"], hp)
                c.heap = heap_profile(hrepo, ["add", "--quiet", "data"], hp / "heap.json")
        repo.git_commit("v1")
        repo.sh("git", "tag", "v1")

        H.log(f"{tool} {n}: no-op status")
        if tool == "mlvc":
            out["status"] = measure(repo, ["status", "--exit-code", "--quiet"])
            if heap_cmd == "status":
                c.heap = heap_profile(repo, ["status", "--quiet"], base / "heap.json")
        else:
            out["status"] = measure(repo, ["status"])
            if "up to date" not in out["status"]["stdout"]:
                raise RuntimeError(f"dvc status is not clean: {out['status']['stdout'][:500]}")

        for kind in remotes:
            H.log(f"{tool} {n}: push to {kind}")
            out[f"push-{kind}"] = measure(repo, ["push", _quiet(tool), "-r", kind])
            out[f"push-{kind}"]["remote_bytes"], out[f"push-{kind}"]["remote_objects"] = remotes[kind].usage()
        if heap_cmd == "push-dir":
            extra = Remote("dir", f"heap-{n}", base)
            _remote_add(repo, "heap", extra, default=False)
            c.heap = heap_profile(repo, ["push", "--quiet", "-r", "heap"], base / "heap.json")

        H.log(f"{tool} {n}: 1% of the files rewritten, add, commit, push")
        out["changed_files"] = change_one_percent(repo.path / "data", n)
        os.sync()
        out["add-1pct"] = measure(repo, ["add", _quiet(tool), "data"])
        repo.git_commit("v2")
        repo.sh("git", "tag", "v2")
        for kind in remotes:
            out[f"push-1pct-{kind}"] = measure(repo, ["push", _quiet(tool), "-r", kind])

        for kind in remotes:
            dest = base / f"clone-{kind}"
            H.run(["git", "clone", "-q", str(repo.path), str(dest)], base, env=repo.env)
            fresh = cls(dest, env=repo.env)
            os.sync()
            H.log(f"{tool} {n}: pull from {kind} into a fresh clone")
            out[f"pull-{kind}"] = measure(fresh, ["pull", _quiet(tool), "-r", kind])
            same_tree(repo.path / "data", dest / "data")
            if heap_cmd == f"pull-{kind}":
                dest2 = base / "clone-heap"
                H.run(["git", "clone", "-q", str(repo.path), str(dest2)], base, env=repo.env)
                c.heap = heap_profile(H.MlvcRepo(dest2, env=repo.env), ["pull", "--quiet", "-r", kind],
                                      base / "heap.json")
                H.rmtree(dest2)
            H.rmtree(dest)

        H.log(f"{tool} {n}: checkout of v1 (1% of the files differ)")
        os.sync()
        if tool == "mlvc":
            out["checkout"] = measure(repo, ["checkout", "--quiet", "v1"])
        else:
            repo.sh("git", "checkout", "-q", "v1")
            out["checkout"] = measure(repo, ["checkout", "-q"])
        same_tree(data, repo.path / "data")
        if heap_cmd == "checkout":
            repo.sh(*repo.cmd("checkout", "--quiet", "v2"))
            c.heap = heap_profile(repo, ["checkout", "--quiet", "v1"], base / "heap.json")
    return out


def tar_limit(n: int, data: Path) -> dict:
    """`tar x` of the n files into a fresh folder on the same disk (+ the sync after it)."""
    with H.scratch(f"tar-{n}") as base:
        tarball = base / "files.tar"
        subprocess.run(["tar", "cf", str(tarball), "-C", str(data.parent), data.name], check=True)
        dest = base / "x"
        dest.mkdir()
        os.sync()
        H.log(f"limit {n}: tar x")
        t_x = timed_shell(["tar", "xf", tarball, "-C", dest], base)
        t_sync = timed_shell(["sync"], base)
        same_tree(data, dest / data.name)
        return {"wall": t_x, "sync": t_sync}


STEPS = (("add", "add"), ("status", "status (no-op)"), ("push-dir", "push to a directory remote"),
         ("push-s3", "push to S3 (SeaweedFS)"), ("add-1pct", "add after 1% changed"),
         ("push-1pct-dir", "push after 1% changed (dir)"), ("push-1pct-s3", "push after 1% changed (S3)"),
         ("pull-dir", "pull into a fresh clone (dir)"), ("pull-s3", "pull into a fresh clone (S3)"),
         ("checkout", "checkout of v1 (1% differ)"))


def part_files(c: Ctx, sizes: list[int]) -> None:
    need_s3 = "s3" in c.args.kinds
    cm = seaweedfs_server() if need_s3 else _null()
    with cm as s3:
        for n in sizes:
            data = make_files(n)
            nbytes = H.tree_bytes(data)
            tools = ["mlvc"]
            if not c.args.no_dvc and H.dvc_bin() and n <= c.args.dvc_max_files:
                tools.append("dvc")
            res = {"files": n, "bytes": nbytes, "tar": tar_limit(n, data)}
            for tool in tools:
                try:
                    res[tool] = files_flow(c, tool, n, data, s3, c.args.heap_profile if
                                           (tool == "mlvc" and n == sizes[0]) else None)
                except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
                    H.log(f"{tool} {n}: FAILED: {exc}")
                    res[tool] = {"error": f"{type(exc).__name__}: {str(exc)[:1500]}"}
            c.results[f"files-{n}"] = res
            _rows_for_size(c, n, res, tools)
    for path in c.args.baseline or ():
        doc = json.loads(Path(path).read_text())
        for key, res in doc.get("results", {}).items():
            if key.startswith("files-") and key not in c.results:
                c.results[key] = dict(res, baseline=f"{path} ({doc['meta'].get('started')}, "
                                                    f"mlvc {doc['meta'].get('mlvc_commit')})")
    every = sorted(int(k.split("-")[1]) for k in c.results if k.startswith("files-"))
    if len(every) > 1:
        _scale_rows(c, every)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _get(res: dict, tool: str, step: str, key: str = "wall"):
    return (res.get(tool) or {}).get(step, {}).get(key)


def _rows_for_size(c: Ctx, n: int, res: dict, tools: list[str]) -> None:
    rep = c.report
    wl = f"{n:,} files ({H.human(res['bytes'])})"
    if "dvc" in tools:
        dvc_note = ""
    elif c.args.no_dvc:
        dvc_note = "DVC not run (--no-dvc)"
    elif H.dvc_bin() is None:
        dvc_note = "DVC not found (benchmarks/setup_dvc.sh, or DVC_BIN=path/to/dvc)"
    else:
        dvc_note = (f"DVC not run at {n:,} files (> --dvc-max-files {c.args.dvc_max_files:,}: "
                    "at 1M files DVC takes hours)")
    for tool in tools:
        if "error" in res[tool]:
            rep.na(wl, f"{tool}: every step", "s", why=res[tool]["error"])
    for step, label in STEPS:
        m, d = _get(res, "mlvc", step), _get(res, "dvc", step)
        if m is None and d is None:
            continue
        rep.add(H.Row(wl, f"{label}: wall", m, d, "s", note=dvc_note if step == "add" else "",
                      detail={"mlvc": (res.get("mlvc") or {}).get(step), "dvc": (res.get("dvc") or {}).get(step)}))
        rep.add(H.Row(wl, f"{label}: per file", m and m / n * 1e6, d and d / n * 1e6, "us"))
        rep.add(H.Row(wl, f"{label}: peak RSS", _get(res, "mlvc", step, "rss"), _get(res, "dvc", step, "rss"), "B",
                      rss_target))
    copies = [(res.get(t) or {}).get("cp") for t in tools]
    copies = [x for x in copies if x]
    tar, cp = res["tar"], min(copies, key=lambda x: x["wall"] + x["sync"]) if copies else None
    rep.add(H.Row(wl, "limit: tar x of the files", tar["wall"], None, "s",
                  note=f"not a tool: the file-creation limit of this disk; sync after it {tar['sync']:.2f}s"))
    if cp:
        rep.add(H.Row(wl, "limit: cp -r + sync of the files", cp["wall"] + cp["sync"], None, "s",
                      note=f"cp -r {cp['wall']:.2f}s + sync {cp['sync']:.2f}s (the faster of the copies "
                           f"into each tool's repo: {', '.join('%.2fs' % (x['wall'] + x['sync']) for x in copies)})"))
    for step in ("pull-dir", "pull-s3", "checkout"):
        m, d = _get(res, "mlvc", step), _get(res, "dvc", step)
        if m is None:
            continue
        note = "checkout writes 1% of the files; tar x writes them all" if step == "checkout" else ""
        rep.add(H.Row(wl, f"{step} / tar x", m / tar["wall"], d and d / tar["wall"], "x", note=note))
    m, d = _get(res, "mlvc", "add"), _get(res, "dvc", "add")
    if m is not None and cp:
        lim = cp["wall"] + cp["sync"]
        rep.add(H.Row(wl, "add / (cp -r + sync)", m / lim, d and d / lim, "x"))


def _per_file_ratio(small: dict, big: dict, tool: str, step: str, n_small: int, n_big: int) -> float | None:
    a, b = _get(small, tool, step), _get(big, tool, step)
    return None if a is None or b is None else (b / n_big) / (a / n_small)


def _scale_rows(c: Ctx, sizes: list[int]) -> None:
    small = c.results[f"files-{sizes[0]}"]
    for n in sizes[1:]:
        big = c.results[f"files-{n}"]
        wl = f"{sizes[0]:,} -> {n:,} files"
        for step, label in STEPS:
            m, d = (_per_file_ratio(small, big, tool, step, sizes[0], n) for tool in ("mlvc", "dvc"))
            if m is None:
                continue
            rep_note = "" if d is not None else "DVC: not run at both sizes"
            if small.get("baseline"):
                rep_note = f"{sizes[0]:,} files from {small['baseline']}; " + rep_note
            c.report.add(H.Row(wl, f"{label}: per-file time ratio", m, d, "x",
                               H.mlvc_at_most(SCALE_TARGET, "mlvc <= 1.5x"), note=rep_note))
            a, b = _get(small, "mlvc", step, "rss"), _get(big, "mlvc", step, "rss")
            if a and b:
                c.report.add(H.Row(wl, f"{label}: peak RSS growth, bytes per added file", (b - a) / (n - sizes[0]),
                                   None, "B/file"))


# --------------------------------------------------------------------------- versions part
def _pick_changes(rng, specs, fraction: float) -> list:
    """Tensors adding up to about `fraction` of the bytes (not the vocabulary matrices)."""
    total = sum(s.nbytes for s in specs)
    budget, used, chosen = fraction * total, 0, []
    for i in rng.permutation(len(specs)):
        s = specs[int(i)]
        if s.name in ("embed.weight", "head.out.weight"):
            continue
        if used + s.nbytes <= budget:
            chosen.append(s)
            used += s.nbytes
    return chosen


def part_versions(c: Ctx, k: int, ckpt_mib: float) -> None:
    import numpy as np

    rep = c.report
    specs = W.model_spec(int(ckpt_mib * MiB))
    wl = f"{k} versions of a {H.human(sum(s.nbytes for s in specs))} checkpoint"
    res: dict = {"versions": k, "tensors": len(specs)}
    with H.scratch(f"versions-{k}") as base:
        repo = H.MlvcRepo(base / "r").init()
        arrays = W._w1_arrays(specs)  # the W1 generator's per-tensor values (fixed seeds)
        target = repo.path / "model.pt"
        changed_bytes, adds = 0, []
        first_size = None
        for v in range(k):
            if v:
                rng = np.random.default_rng([SEED_VERSIONS, v])
                for j, s in enumerate(_pick_changes(rng, specs, 0.10)):
                    a = arrays[s.name]
                    if j % 2 == 0:
                        arrays[s.name] = W._values(rng, s)
                    else:
                        arrays[s.name] = (a + rng.standard_normal(a.shape, dtype=np.float32)
                                          * np.float32(1e-3) * a.std()).astype(np.float32)
                    changed_bytes += s.nbytes
            W._save(arrays, target)
            if first_size is None:
                first_size = target.stat().st_size
            os.sync()
            adds.append(measure(repo, ["add", "--quiet", "model.pt"]))
            repo.git_commit(f"fine-tune step {v}")
            repo.sh("git", "tag", f"v{v:03d}")
            if v % 10 == 0 or v == k - 1:
                H.log(f"versions: {v + 1}/{k} added (last add {adds[-1]['wall']:.2f}s, "
                      f"store {H.human(repo.cache_bytes())})")
        del arrays
        store = repo.cache_bytes()
        expected = first_size + changed_bytes
        res.update(first_bytes=first_size, changed_bytes=changed_bytes, store_bytes=store,
                   add_walls=[a["wall"] for a in adds], add_rss=max(a["rss"] for a in adds))
        rep.add(H.Row(wl, "store bytes / (first version + changed tensor bytes)", store / expected, None, "x",
                      H.mlvc_at_most(STORE_TARGET, "mlvc <= 1.15x"),
                      note=f"store {H.human(store)}; first {H.human(first_size)} + changed {H.human(changed_bytes)}; "
                           f"DVC not run (it keeps each version whole: {k} x {H.human(first_size)})"))
        walls = sorted(a["wall"] for a in adds)
        rep.add(H.Row(wl, "add of one version: median wall", walls[len(walls) // 2], None, "s",
                      note=f"first {adds[0]['wall']:.2f}s, max {walls[-1]:.2f}s"))
        rep.add(H.Row(wl, "add of one version: peak RSS (max)", res["add_rss"], None, "B", rss_target))

        for key, args in (("log", ["log", "model.pt"]),
                          ("log-json", ["log", "model.pt", "--format", "json"]),
                          ("diff-first-last", ["diff", "v000", f"v{k - 1:03d}"]),
                          ("diff-last-step", ["diff", f"v{k - 2:03d}", f"v{k - 1:03d}"])):
            H.log(f"versions: mlvc {' '.join(args)}")
            res[key] = measure(repo, args)
            rep.add(H.Row(wl, f"mlvc {' '.join(args)}: wall", res[key]["wall"], None, "s",
                          H.mlvc_at_most(10.0, "mlvc < 10 s")))
            rep.add(H.Row(wl, f"mlvc {' '.join(args)}: peak RSS", res[key]["rss"], None, "B", rss_target))

        keep = max(1, k - round(0.9 * k))
        kept = [f"v{v:03d}" for v in range(k - keep, k)]
        H.log(f"versions: history rewritten to keep {kept[0]}..{kept[-1]}; gc removes the other {k - keep}")
        prev = None
        for tag in kept:
            tree = repo.sh("git", "rev-parse", f"{tag}^{{tree}}").stdout.strip()
            argv = ["git", "commit-tree", tree, "-m", f"kept {tag}"] + (["-p", prev] if prev else [])
            prev = repo.sh(*argv).stdout.strip()
        branch = repo.sh("git", "symbolic-ref", "--short", "HEAD").stdout.strip()
        repo.sh("git", "update-ref", f"refs/heads/{branch}", prev)
        repo.sh("git", "tag", "-d", *[f"v{v:03d}" for v in range(k)])
        repo.sh("git", "reflog", "expire", "--expire=now", "--all")
        repo.sh("git", "gc", "-q", "--prune=now")
        res["gc"] = measure(repo, ["gc", "--all-commits", "--grace", "0", "--quiet"])
        after = repo.cache_bytes()
        kept_expected = first_size + changed_bytes * (keep - 1) / max(1, k - 1)
        res["gc"].update(store_before=store, store_after=after, kept=keep)
        rep.add(H.Row(wl, f"gc removing {k - keep} versions: wall", res["gc"]["wall"], None, "s",
                      note=f"store {H.human(store)} -> {H.human(after)}"))
        rep.add(H.Row(wl, f"gc removing {k - keep} versions: peak RSS", res["gc"]["rss"], None, "B", rss_target))
        rep.add(H.Row(wl, f"store after gc / (one version + changes of the {keep} kept)", after / kept_expected,
                      None, "x", H.mlvc_at_most(STORE_TARGET, "mlvc <= 1.15x"),
                      note=f"expected about {H.human(kept_expected)} (changes estimated as the mean per version)"))
        st = measure(repo, ["status", "--exit-code", "--quiet"])
        vf = measure(repo, ["verify", "--quiet"])
        res["after_gc"] = {"status": st, "verify": vf}
    c.results["versions"] = res


# --------------------------------------------------------------------------- clients part
def _client_data(root: Path, i: int, nfiles: int, mib: float) -> int:
    import numpy as np

    rng = np.random.default_rng([SEED_CLIENTS, i])
    sizes = rng.integers(512, 1537, nfiles)
    blob = rng.bytes(int(sizes.sum()))
    at = 0
    for j, s in enumerate(sizes):
        p = root / "data" / f"client-{i:02d}" / f"shard-{j // 1000:03d}" / f"{j:06d}.bin"
        if j % 1000 == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob[at:at + int(s)])
        at += int(s)
    n = int(mib * MiB) // 4
    (root / "model.bin").write_bytes(rng.standard_normal(n, dtype=np.float32).tobytes())
    return at + n * 4


def _concurrently(jobs: list[tuple[list, Path, dict]]) -> tuple[float, list[dict]]:
    """Start every (argv, cwd, env) under GNU time at once; (total wall, per-job wall/rss/rc)."""
    import re

    t0 = time.perf_counter()
    procs = [subprocess.Popen(["/usr/bin/time", "-v", *map(str, argv)], cwd=str(cwd), env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, cwd, env in jobs]
    out = []
    for p in procs:
        so, se = p.communicate()
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", se)
        e = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", se)
        wall = None
        if e:
            parts = [float(x) for x in e.group(1).split(":")]
            wall = sum(v * 60 ** (len(parts) - 1 - i) for i, v in enumerate(parts))
        out.append({"rc": p.returncode, "rss": int(m.group(1)) * 1024 if m else None, "wall": wall,
                    "stderr": se[-1500:] if p.returncode else ""})
    return time.perf_counter() - t0, out


def _all_of(n: int) -> H.Target:
    return H.Target(f"{n} of {n}", lambda row: None if row.mlvc is None else row.mlvc == n)


def part_clients(c: Ctx, nclients: int) -> None:
    rep = c.report
    a = c.args
    wl = f"{nclients} clients -> SeaweedFS ({a.client_files:,} files + {a.client_mib:g} MiB each)"
    res: dict = {"clients": nclients}
    with seaweedfs_server() as s3, H.scratch(f"clients-{nclients}") as base:
        remote = Remote("s3", f"clients-{os.getpid()}-{time.time_ns() % 10 ** 6}", base, s3)
        env = H.tool_env(H.S3_ENV)
        origin = H.MlvcRepo(base / "origin", env=env).init()
        _remote_add(origin, "s3", remote, default=True)
        origin.git_commit("remote")
        repos, logical = [], 0
        for i in range(nclients):
            dest = base / f"client-{i}"
            H.run(["git", "clone", "-q", str(origin.path), str(dest)], base, env=env)
            r = H.MlvcRepo(dest, env=env)
            logical += _client_data(dest, i, a.client_files, a.client_mib)
            r.sh(*r.cmd("add", "--quiet", "data", "model.bin"))
            r.git_commit(f"client {i}")
            repos.append(r)
        os.sync()
        b0, o0 = remote.usage()
        H.log(f"clients: {nclients} pushes at once")
        total, per = _concurrently([(r.cmd("push", "--quiet"), r.path, env) for r in repos])
        b1, o1 = remote.usage()
        failed = [i for i, p in enumerate(per) if p["rc"] != 0]
        rep.add(H.Row(wl, "push at once: clients that succeeded", nclients - len(failed), None, f"of {nclients}",
                      _all_of(nclients), note=per[failed[0]]["stderr"] if failed else ""))
        res["push"] = {"wall": total, "per_client": per, "bytes": b1 - b0, "objects": o1 - o0,
                       "logical_bytes": logical}
        rep.add(H.Row(wl, "push at once: total wall", total, None, "s",
                      note=f"slowest client {max(p['wall'] or 0 for p in per):.2f}s"))
        rep.add(H.Row(wl, "push at once: throughput (data added / total wall)", logical / total, None, "B/s",
                      note=f"{H.human(logical)} of data, {H.human(b1 - b0)} stored in {o1 - o0} objects "
                           f"({H.human((b1 - b0) / total)}/s stored)"))
        rep.add(H.Row(wl, "push at once: peak RSS (max over clients)", max(p["rss"] or 0 for p in per), None, "B",
                      rss_target))
        clones = []
        for i, r in enumerate(repos):
            dest = base / f"back-{i}"
            H.run(["git", "clone", "-q", str(r.path), str(dest)], base, env=env)
            clones.append(H.MlvcRepo(dest, env=env))
        os.sync()
        H.log(f"clients: {nclients} pulls at once into fresh clones")
        total, per = _concurrently([(cl.cmd("pull", "--quiet"), cl.path, env) for cl in clones])
        exact = 0
        for r, cl, p in zip(repos, clones, per, strict=True):
            if p["rc"] == 0:
                try:
                    same_tree(r.path / "data", cl.path / "data")
                    if H.same_bytes(r.path / "model.bin", cl.path / "model.bin"):
                        exact += 1
                except RuntimeError as exc:
                    H.log(str(exc))
        res["pull"] = {"wall": total, "per_client": per, "byte_exact": exact}
        rep.add(H.Row(wl, "pull back at once: total wall", total, None, "s",
                      note=f"slowest client {max(p['wall'] or 0 for p in per):.2f}s"))
        rep.add(H.Row(wl, "pull back at once: throughput", logical / total, None, "B/s"))
        rep.add(H.Row(wl, "pull back at once: peak RSS (max over clients)", max(p["rss"] or 0 for p in per), None,
                      "B", rss_target))
        rep.add(H.Row(wl, "pull back: clones byte-exact", exact, None, f"of {nclients}",
                      _all_of(nclients)))
    c.results["clients"] = res


# --------------------------------------------------------------------------- main
def _fmt_extra(value, unit):
    if value is None:
        return "n/a"
    if unit == "B/s":
        return f"{H.human(value)}/s"
    if unit == "B/file":
        return f"{value:,.0f} B/file"
    return H.fmt(value, unit)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default=None,
                    help="file counts, comma-separated (default 1000000 when no other part is chosen)")
    ap.add_argument("--kinds", nargs="*", choices=("dir", "s3"), default=["dir", "s3"],
                    help="remotes of the files part (default: both)")
    ap.add_argument("--dvc-max-files", type=int, default=200_000,
                    help="run DVC only at sizes up to this (default 200000: DVC takes hours at 1M)")
    ap.add_argument("--dvc-kinds", nargs="*", choices=("dir", "s3"), default=["dir", "s3"],
                    help="remotes DVC runs against (DVC pushes one object per file: S3 at 200k is slow)")
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--baseline", nargs="*", metavar="JSON",
                    help="results of an earlier run (e.g. at 20000 files) to compute per-file ratios against")
    ap.add_argument("--heap-profile", choices=HEAP_COMMANDS, default=None,
                    help="also run this mlvc command under tracemalloc at the first size")
    ap.add_argument("--versions", type=int, default=0, help="the versions part with K versions (e.g. 100)")
    ap.add_argument("--checkpoint-mib", type=float, default=1024, help="checkpoint size of --versions")
    ap.add_argument("--s3-clients", type=int, default=0, help="the clients part with C concurrent clients")
    ap.add_argument("--client-files", type=int, default=10_000)
    ap.add_argument("--client-mib", type=float, default=64)
    ap.add_argument("--json", action="store_true", help="print the JSON results on stdout instead of the table")
    args = ap.parse_args(argv)
    if args.files is None and not args.versions and not args.s3_clients:
        args.files = "1000000"
    sizes = sorted({int(x.replace("_", "")) for x in args.files.split(",")}) if args.files else []
    if any(n < FILES_PER_CLASS for n in sizes):
        ap.error(f"--files: at least {FILES_PER_CLASS}")

    c = Ctx(args)
    rep = c.report
    commit = H.run(["git", "rev-parse", "--short", "HEAD"], H.ROOT, check=False).stdout.strip()
    rep.meta = {"argv": sys.argv[1:], "versions": H.versions(), "mlvc_commit": commit, "fs": H.fs_type(H.WORK),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rss_tool": "GNU time -v (max RSS of the process)"}
    t0 = time.perf_counter()
    H.warm_up(with_dvc=not args.no_dvc)
    if sizes:
        part_files(c, sizes)
    if args.versions:
        part_versions(c, args.versions, args.checkpoint_mib)
    if args.s3_clients:
        part_clients(c, args.s3_clients)
    rep.meta["elapsed_s"] = round(time.perf_counter() - t0, 1)

    parts = "-".join(([f"files{'+'.join(map(str, sizes))}"] if sizes else [])
                     + ([f"versions{args.versions}"] if args.versions else [])
                     + ([f"clients{args.s3_clients}"] if args.s3_clients else []))
    out = H.WORK / f"results-scale-{parts}.json"
    doc = {"title": rep.title, "meta": rep.meta, "rows": [r.as_dict() for r in rep.rows], "results": c.results,
           "heap_profile": c.heap}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
    else:
        print()
        print(table(rep))
        if c.heap:
            print_heap(c.heap)
        print(f"\nresults written to {out} ({rep.meta['elapsed_s']}s, mlvc at {commit})")
    return 0 if all(r.passed is not False for r in rep.rows) else 1


def table(rep: H.Report) -> str:
    """Report.table, with the units this benchmark adds (B/s, B/file, counts) formatted."""
    head = ["workload", "metric", "mlvc", "DVC", "mlvc/DVC", "target", "result"]
    body = [[r.workload, r.metric, _fmt_extra(r.mlvc, r.unit), _fmt_extra(r.dvc, r.unit),
             f"{r.ratio:.3f}" if r.ratio is not None else "n/a" if r.dvc is not None else "",
             r.target.text, {True: "PASS", False: "FAIL", None: "-"}[r.passed]] for r in rep.rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells):
        return "| " + " | ".join(str(x).ljust(w) for x, w in zip(cells, widths, strict=True)) + " |"

    out = [rep.title, line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)]
    notes = [f"  [{i + 1}] {r.workload} / {r.metric}: {r.note}" for i, r in enumerate(rep.rows) if r.note]
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


if __name__ == "__main__":
    sys.exit(main())
