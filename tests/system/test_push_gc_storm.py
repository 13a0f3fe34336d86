"""Many machines push different commits to one remote while a gc loops on it; nothing is lost.

N real `mlvc push` processes (separate clones, each with its own cache: separate machines) push
the commits of their own branch, one `--rev` at a time, to one remote while another process
loops `mlvc gc --remote --all-commits --grace 0` on the machine every branch was pushed to.
That gc knows every pushed commit (so nothing they reference may go) and has real garbage to
collect each round: before each gc it pushes an artifact of a commit no branch has, whose new
bytes share packs with objects the pushers rely on, so gc deletes and rewrites packs under them.

Afterwards every commit of every branch is pulled by a fresh clone and compared byte by byte,
and `mlvc verify --remote` reads every object back.  The default run has a small variant on a
directory remote; `-m slow` has 8 pushers + the gc loop on a directory remote, moto and SeaweedFS.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from mlvc.errors import EXIT_LOCKED
from mlvc.store.backend import open_backend
from mlvc.store.locks import DEFAULT_LOCK_NAME, list_locks

from helpers import commit, git, ok, write
from remote.helpers import add_remote, clone, make_repo, rand_bytes, set_core, snapshot

GC_ARGS = ["gc", "--remote", "origin", "--all-commits", "--grace", "0", "-q"]
COMMON = rand_bytes(300_000, 1)  # identical on every machine: pushed concurrently by all of them


def version(pusher: int, k: int) -> dict[str, bytes]:
    """The files of commit `k` of a pusher's branch: a shared directory, and a model whose
    later versions keep most of the earlier one's bytes (shared chunks across commits)."""
    model = rand_bytes(200_000, 1000 + pusher)
    for step in range(1, k + 1):
        model = model[:150_000] + rand_bytes(120_000, 2000 + 10 * pusher + step)
    return {"shared/common.bin": COMMON, f"shared/own{pusher}.bin": rand_bytes(100_000, 100 + pusher),
            "model.bin": model}


def write_version(repo: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(repo / "shared", ignore_errors=True)
    for rel, body in files.items():
        write(repo / rel, body)


STORM = """
import random
import mlvc.cli.main, mlvc.ops.gc, mlvc.ops.push, mlvc.ops.add  # imports before the start signal
if SPEC["s3"]:
    import s3fs, mlvc.store.s3
random.seed(SPEC["seed"])

def pushers_done():
    return count_signals("pushed-") >= SPEC["pushers"]

wait_for_start()
runs = []
if SPEC["role"] == "push":
    for k, rev in enumerate(SPEC["revs"]):
        # commit k waits for k gc runs that went ahead: gc deletes and rewrites packs between the
        # pushes of every machine, whatever the machine's speed
        deadline = time.monotonic() + 60
        while count_signals("gc-ok-") < k and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.uniform(0, 1.5))  # some start while the gc loop pushes garbage, some meet its gc
        for _attempt in range(30):
            runs.append(timed_cli(SPEC["cwd"], ["push", "-q", "--rev", rev, "--wait-lock", "20"]))
            if runs[-1]["code"] == 0:
                break
    open(os.path.join(SPEC["sync_dir"], f"pushed-{os.getpid()}"), "w").close()
else:
    junk = SPEC["junk"]
    for loop in range(SPEC["max_loops"]):
        if pushers_done():
            break
        if not runs or runs[-1]["code"] == 0:
            # new garbage once the last gc collected the old: bytes of a commit no branch has, in
            # packs beside the common file's bytes
            with open(os.path.join(junk, "junk", "new.bin"), "wb") as f:
                f.write(random.Random(f"junk-{loop}").randbytes(150_000))
            runs.append(timed_cli(junk, ["add", "-q", "junk"]))
            runs.append(timed_cli(junk, ["push", "-q", "junk", "--wait-lock", "20"]))
        runs.append(timed_cli(SPEC["cwd"], SPEC["gc_args"]))
        if runs[-1]["code"] == 0:
            open(os.path.join(SPEC["sync_dir"], f"gc-ok-{loop}"), "w").close()
print(json.dumps(runs))
"""


def storm(tmp_path: Path, spec, spawn_workers, pushers: int, commits: int) -> None:
    started = time.monotonic()
    origin = make_repo(tmp_path / "origin")
    add_remote(origin, spec)
    set_core(origin, "remote_pack_size", 512 * 1024)  # two packs for a first push, so uploads interleave
    write(origin / "README", b"project\n")
    commit(origin, "init")
    # Every branch is made on origin (so its cache holds every manifest gc must read), then
    # cloned by its own machine, which gets a copy of the objects, as if it had made them.
    expected: dict[str, dict[str, bytes]] = {}
    for i in range(pushers):
        git(origin, "checkout", "-q", "-b", f"p{i}", "main")
        for k in range(1, commits + 1):
            files = version(i, k)
            write_version(origin, files)
            ok(origin, "add", "-q", "shared", "model.bin")
            commit(origin, f"pusher {i} commit {k}")
            expected[git(origin, "rev-parse", "HEAD").strip()] = files
    git(origin, "checkout", "-q", "main")
    machines = []
    for i in range(pushers):
        machine = tmp_path / f"machine{i}"
        git(tmp_path, "clone", "-q", "-b", f"p{i}", str(origin), str(machine))
        shutil.copytree(origin / ".mlvc" / "cache" / "packs", machine / ".mlvc" / "cache" / "packs")
        revs = git(machine, "rev-list", "--reverse", "origin/main..HEAD").split()
        assert len(revs) == commits
        machines.append((machine, revs))
    junk = clone(origin, tmp_path / "junk-machine")
    write(junk / "junk" / "common.bin", COMMON)
    backend = open_backend(*spec)

    workers = [{"role": "push", "cwd": str(m), "revs": revs, "seed": n} for n, (m, revs) in enumerate(machines)]
    workers.append({"role": "gc", "cwd": str(origin), "junk": str(junk), "gc_args": GC_ARGS, "max_loops": 60,
                    "seed": 99})
    for w in workers:
        w["pushers"], w["s3"] = pushers, spec[0].startswith("s3://")
    storm_started = time.monotonic()
    outputs = spawn_workers(STORM, workers, timeout_s=240)
    storm_s = time.monotonic() - storm_started
    results = [json.loads(out.splitlines()[-1]) for out in outputs]
    push_runs = [run for runs in results[:-1] for run in runs]
    storm_runs = results[-1]
    gc_runs = [run for run in storm_runs if run["args"][0] == "gc"]

    for run in push_runs + storm_runs:
        assert run["code"] in (0, EXIT_LOCKED), run
        assert "Traceback" not in run["err"] and "internal error" not in run["err"], run
    for (machine, revs), runs in zip(machines, results[:-1], strict=True):
        assert sum(run["code"] == 0 for run in runs) == len(revs), (machine, runs)
    last_push = max(run["end"] for run in push_runs)
    during = [run for run in gc_runs if run["code"] == 0 and run["start"] < last_push]
    assert during, f"no gc went ahead while the pushes ran: {gc_runs}"
    assert list_locks(backend) == [] and not backend.exists(DEFAULT_LOCK_NAME)

    # gc once more, knowing everything; then every commit comes back byte-exact from the remote
    ok(origin, *GC_ARGS)
    ok(origin, "verify", "--remote", "origin", "--read-data", "-q")
    fresh = clone(origin, tmp_path / "fresh")  # knows no object: all come from the remote
    for sha, files in expected.items():
        dest = tmp_path / f"restored-{sha[:8]}"
        ok(fresh, "checkout", sha, "--to", str(dest), "-q")
        assert snapshot(dest, "shared") | snapshot(dest, "model.bin") == files, sha
    ok(fresh, "verify", "-q")
    refused = sum(run["code"] == EXIT_LOCKED for run in push_runs + storm_runs)
    print(f"{pushers} pushers + 1 gc loop on {spec[0]}: {len(push_runs)} push runs, {len(gc_runs)} gc runs "
          f"({len(during)} went ahead during the pushes), {refused} clean refusals; {len(expected)} commits "
          f"restored byte-exact; storm {storm_s:.1f} s of {time.monotonic() - started:.1f} s; "
          f"push runs {[round(r['end'] - r['start'], 1) for r in push_runs]}, "
          f"gc loop {[(r['args'][0], round(r['end'] - r['start'], 1)) for r in storm_runs]}")


def test_pushers_and_a_gc_loop_on_one_remote(tmp_path: Path, local_url, spawn_workers) -> None:
    storm(tmp_path, local_url, spawn_workers, pushers=2, commits=2)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3),
                                  pytest.param("seaweed", marks=pytest.mark.s3)])
def test_eight_pushers_and_a_gc_loop_on_every_remote_kind(tmp_path: Path, kind, request, spawn_workers) -> None:
    # S3 pushes are slower (moto is a Python server): 2 commits each keeps the suite's time in bounds
    storm(tmp_path, request.getfixturevalue(f"{kind}_url"), spawn_workers, pushers=8,
          commits=3 if kind == "local" else 2)
