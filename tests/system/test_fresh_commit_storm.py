"""Pushers commit while a gc clone loops `git fetch` + `mlvc gc --grace 0`: no fresh commit is lost.

Unlike `test_push_gc_storm.py`, where every commit exists in the gc's repository before the storm
starts, here each machine makes its commits during the storm and publishes them the way a team
does: `git push` of its branch, then `mlvc push` (retried on exit 13).  The gc clone learns of a
commit only at its next `git fetch`, so its refs are often older than a pack a pusher has just
published: a gc must keep that pack all the same (the push journal, docs/concepts/storage-format.md).
Afterwards a fresh clone restores every commit from the remote, byte-exact.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from mlvc.errors import EXIT_LOCKED
from mlvc.hashing import from_oid
from mlvc.store.backend import open_backend
from mlvc.store.packs import TREE_MANIFEST
from mlvc.store.packstore import PackStore, Role

from helpers import cli, commit, git, ok, write
from remote.helpers import add_remote, clone, make_repo, rand_bytes, set_core, snapshot

GC_ARGS = ["gc", "--remote", "origin", "--all-commits", "--grace", "0", "-q"]


def version(pusher: int, k: int) -> dict[str, bytes]:
    """Commit `k` of a pusher: a model whose versions share most bytes, and a file of its own."""
    model = rand_bytes(150_000, 1000 + pusher)
    for step in range(1, k + 1):
        model = model[:100_000] + rand_bytes(80_000, 2000 + 10 * pusher + step)
    return {"model.bin": model, "data/own.bin": rand_bytes(60_000, 100 * pusher + k)}


STORM = """
import random, shutil, subprocess
import mlvc.cli.main, mlvc.ops.gc, mlvc.ops.push, mlvc.ops.add  # imports before the start signal
if SPEC["s3"]:
    import s3fs, mlvc.store.s3
random.seed(SPEC["seed"])

def git(*args):
    proc = subprocess.run(["git", *args], cwd=SPEC["cwd"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout

wait_for_start()
runs, made = [], []
if SPEC["role"] == "push":
    for k in range(1, SPEC["commits"] + 1):
        for rel in SPEC["paths"]:
            if os.path.isdir(os.path.join(SPEC["cwd"], rel)):
                shutil.rmtree(os.path.join(SPEC["cwd"], rel))
        pre = os.path.join(SPEC["versions"], f"{k}-pre")
        if os.path.isdir(pre):  # added, never committed: what the next add stores against
            shutil.copytree(pre, SPEC["cwd"], dirs_exist_ok=True)
            runs.append(timed_cli(SPEC["cwd"], ["add", "-q", *SPEC["paths"]]))
        shutil.copytree(os.path.join(SPEC["versions"], str(k)), SPEC["cwd"], dirs_exist_ok=True)
        runs.append(timed_cli(SPEC["cwd"], ["add", "-q", *SPEC["paths"]]))
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {k}")
        sha = git("rev-parse", "HEAD").strip()
        git("push", "-q", "origin", SPEC["branch"])  # the team sees the commit ...
        for _attempt in range(100):  # ... then its objects: what a gc clone may not have fetched yet
            runs.append(timed_cli(SPEC["cwd"], ["push", "-q"]))
            if runs[-1]["code"] != 13:
                break
            time.sleep(random.uniform(0.05, 0.3))
        made.append([sha, k])
        time.sleep(random.uniform(0, 0.3))
    open(os.path.join(SPEC["sync_dir"], f"pushed-{os.getpid()}"), "w").close()
else:
    loop = 0
    while count_signals("pushed-") < SPEC["pushers"]:
        # garbage for this gc to collect: an artifact pushed from no commit (its pointer stays
        # uncommitted), from a machine whose git knows its HEAD: the journal must not keep it
        loop += 1
        with open(os.path.join(SPEC["junk"], "junk", "new.bin"), "wb") as f:
            f.write(random.Random(f"junk-{loop}").randbytes(100_000))
        runs.append(timed_cli(SPEC["junk"], ["add", "-q", "junk"]))
        runs.append(timed_cli(SPEC["junk"], ["push", "-q", "junk", "--wait-lock", "20"]))
        import mlvc.pointer
        made.append(mlvc.pointer.load(os.path.join(SPEC["junk"], "junk.mlvc")).oid)
        git("fetch", "-q", "origin")
        time.sleep(random.uniform(0, SPEC["fetch_gap_s"]))  # a gc starts a moment after its fetch
        runs.append(timed_cli(SPEC["cwd"], SPEC["gc_args"]))
print(json.dumps({"runs": runs, "made": made}))
"""


def storm(tmp_path: Path, spec, spawn_workers, pushers: int, commits: int, version=version,
          paths: tuple[str, ...] = ("model.bin", "data"), core: dict | None = None, pre_version=None) -> None:
    """`version(pusher, k)`: the files (under `paths`) of a pusher's commit k; `pre_version(pusher,
    k)`: files added just before them and never committed; `core`: settings of `.mlvc/config`'s
    core committed before the machines clone (`float_planes`)."""
    started = time.monotonic()
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(hub))
    seed = make_repo(tmp_path / "seed")
    add_remote(seed, spec)
    for key, value in (core or {}).items():
        set_core(seed, key, value)
    (seed / "README").write_bytes(b"project\n")
    commit(seed, "init")
    git(seed, "remote", "add", "origin", str(hub))
    git(seed, "push", "-q", "origin", "main")
    workers = []
    for i in range(pushers):
        machine = clone(hub, tmp_path / f"machine{i}")
        git(machine, "checkout", "-q", "-b", f"p{i}")
        for k in range(1, commits + 1):  # what the machine's commit k holds, copied in by the worker
            for rel, body in version(i, k).items():
                write(tmp_path / "versions" / str(i) / str(k) / rel, body)
            for rel, body in (pre_version(i, k) if pre_version is not None else {}).items():
                write(tmp_path / "versions" / str(i) / f"{k}-pre" / rel, body)
        workers.append({"role": "push", "cwd": str(machine), "branch": f"p{i}", "commits": commits, "seed": i,
                        "versions": str(tmp_path / "versions" / str(i))})
    gc_machine = clone(hub, tmp_path / "gc-machine")
    junk = clone(hub, tmp_path / "junk-machine")
    write(junk / "junk" / "new.bin", b"")
    workers.append({"role": "gc", "cwd": str(gc_machine), "junk": str(junk), "gc_args": GC_ARGS, "seed": 99,
                    "fetch_gap_s": 0.3})
    for w in workers:
        w["pushers"], w["s3"], w["paths"] = pushers, spec[0].startswith("s3://"), list(paths)
    storm_started = time.monotonic()
    outputs = [json.loads(out.splitlines()[-1]) for out in spawn_workers(STORM, workers, timeout_s=300)]
    storm_s = time.monotonic() - storm_started
    push_runs = [run for out in outputs[:-1] for run in out["runs"]]
    gc_runs = outputs[-1]["runs"]
    for run in push_runs + gc_runs:
        assert "Traceback" not in run["err"] and "internal error" not in run["err"], run
    for run in push_runs + [run for run in outputs[-1]["runs"] if run["args"][0] != "gc"]:
        assert run["code"] in (0, EXIT_LOCKED), run
    gc_runs = [run for run in gc_runs if run["args"][0] == "gc"]
    went_ahead = [run for run in gc_runs if run["code"] == 0]
    assert went_ahead, f"no gc went ahead during the pushes: {gc_runs}"

    # every commit of every branch restores from the remote alone (a fresh clone's empty cache)
    fresh = clone(hub, tmp_path / "fresh")
    lost = []
    for i, out in enumerate(outputs[:-1]):
        assert len(out["made"]) == commits, out
        for sha, k in out["made"]:
            dest = tmp_path / f"restored-{sha[:8]}"
            code, _out, err = cli(fresh, "checkout", sha, "--to", str(dest), "-q")
            got: dict[str, bytes] = {}
            for rel in paths:
                got |= snapshot(dest, rel) if code == 0 else {}
            if code != 0 or got != version(i, k):
                lost.append(f"pusher {i} commit {k} ({sha[:8]}): exit {code} {err.strip()}")
    assert not lost, f"{len(lost)} of {pushers * commits} commits lost: {lost}"
    # and a gc that knows everything finds nothing missing, then verify reads every object back
    ok(fresh, *GC_ARGS)
    ok(fresh, "verify", "--remote", "origin", "--read-data", "-q")
    # and the garbage went: every junk version (the journal keeps none of them: their commit is known)
    with tempfile.TemporaryDirectory() as scratch, \
            PackStore(open_backend(*spec), role=Role.REMOTE, scratch=Path(scratch)) as remote:
        left = [oid for oid in outputs[-1]["made"] if remote.has_any(TREE_MANIFEST, from_oid(oid))]
    assert not left, f"{len(left)} of {len(outputs[-1]['made'])} junk versions are still on the remote"
    refused = sum(run["code"] == EXIT_LOCKED for run in push_runs + gc_runs)
    print(f"{pushers} pushers + 1 fetch-and-gc loop on {spec[0]}: {len(push_runs)} add/push runs, "
          f"{len(gc_runs)} gc runs ({len(went_ahead)} went ahead), {refused} refusals (exit 13); "
          f"{pushers * commits} commits restored; storm {storm_s:.1f} s of {time.monotonic() - started:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3),
                                  pytest.param("seaweed", marks=pytest.mark.s3)])
def test_pushers_committing_beside_a_fetch_and_gc_loop_lose_nothing(tmp_path: Path, kind, request,
                                                                      spawn_workers) -> None:
    storm(tmp_path, request.getfixturevalue(f"{kind}_url"), spawn_workers, pushers=6, commits=8)
