"""`mlvc add` processes racing `mlvc gc` on one cache: in one repository, and in two repositories
sharing a cache (`cache.dir`) with the gc in one of them.

Real processes (one per adder, one looping gc with `--grace 0`); each adder's later versions
wait for a gc that went ahead, so gc always runs between and beside the adds.  Afterwards every
version that a pointer or a commit keeps is restored from the cache byte-exact, `mlvc verify`
reads every object back, and the `.gitignore` lists every artifact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from helpers import cli, commit, ok
from remote.helpers import make_repo, snapshot, write  # isort: skip

WORKER = """
import random, subprocess
import mlvc.cli.main, mlvc.ops.add, mlvc.ops.gc  # imports before the start signal
random.seed(SPEC["seed"])

wait_for_start()
runs = []
if SPEC["role"] == "add":
    for k, files in enumerate(SPEC["versions"]):
        deadline = time.monotonic() + 60
        while count_signals("gc-ok-") < k and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.uniform(0, 0.2))
        root = os.path.join(SPEC["cwd"], SPEC["name"])
        if os.path.isdir(root):
            import shutil
            shutil.rmtree(root)
        for rel, seed, size in files:
            path = os.path.join(SPEC["cwd"], rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(random.Random(seed).randbytes(size))
        runs.append(timed_cli(SPEC["cwd"], ["add", "-q", SPEC["name"]]))
        if SPEC["commit"]:
            for git_args in (["add", "-A", SPEC["name"] + ".mlvc", ".gitignore"],
                             ["commit", "-q", "-m", f"{SPEC['name']} v{k}"]):
                subprocess.run(["git", *git_args], cwd=SPEC["cwd"], check=True, capture_output=True)
            runs[-1]["sha"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SPEC["cwd"], check=True,
                                             capture_output=True, text=True).stdout.strip()
    open(os.path.join(SPEC["sync_dir"], f"added-{os.getpid()}"), "w").close()
else:
    for loop in range(SPEC["max_loops"]):
        if count_signals("added-") >= SPEC["adders"]:
            break
        runs.append(timed_cli(SPEC["cwd"], SPEC["gc_args"]))
        if runs[-1]["code"] == 0:
            open(os.path.join(SPEC["sync_dir"], f"gc-ok-{loop}"), "w").close()
print(json.dumps(runs))
"""


def versions(name: str, count: int, files: int) -> list[list[tuple[str, str, int]]]:
    """(path, seed, size) of each file of each version: later versions keep most earlier files."""
    rng = random.Random(name)
    out, current = [], {f"{name}/f{j}.bin": (f"{name}-0-{j}", rng.randrange(1, 120_000)) for j in range(files)}
    for k in range(count):
        if k:
            for rel in rng.sample(sorted(current), max(1, files // 3)):
                current[rel] = (f"{name}-{k}-{rel}", rng.randrange(0, 120_000))
            current[f"{name}/new{k}.bin"] = (f"{name}-{k}-new", 50_000)
        out.append([(rel, seed, size) for rel, (seed, size) in sorted(current.items())])
    return out


def expected_files(version: list[tuple[str, str, int]]) -> dict[str, bytes]:
    return {rel: random.Random(seed).randbytes(size) for rel, seed, size in version}


def check_runs(results: list[list[dict]], adders: int) -> int:
    """Every command exited 0; how many gc runs went ahead while adds were still running."""
    for runs in results:
        for run in runs:
            assert run["code"] == 0, run
    last_add = max(run["end"] for runs in results[:adders] for run in runs)
    during = sum(run["start"] < last_add for run in results[adders])
    assert during, f"no gc ran while the adds did: {results[adders]}"
    return during


def restore_and_compare(repo: Path, names: list[str], expected: dict[str, dict[str, bytes]]) -> None:
    for name in names:
        shutil.rmtree(repo / name)
    ok(repo, "checkout", "-q")
    for name in names:
        assert snapshot(repo, name) == expected[name], name


@pytest.mark.parametrize("n_versions, n_files", [(2, 6), pytest.param(4, 30, marks=pytest.mark.slow)])
def test_four_adds_in_one_repository_while_gc_workspace_runs(tmp_path: Path, spawn_workers, n_versions,
                                                             n_files) -> None:
    repo = make_repo(tmp_path / "repo")
    names = [f"art{i}" for i in range(4)]
    plans = {name: versions(name, n_versions, n_files) for name in names}
    workers = [{"role": "add", "cwd": str(repo), "name": name, "versions": plans[name], "commit": False, "seed": i}
               for i, name in enumerate(names)]
    workers.append({"role": "gc", "cwd": str(repo), "max_loops": 200, "seed": 9,
                    "gc_args": ["gc", "--workspace", "--grace", "0", "-q"]})
    for w in workers:
        w["adders"] = len(names)
    results = [json.loads(out.splitlines()[-1]) for out in spawn_workers(WORKER, workers, timeout_s=240)]
    during = check_runs(results, len(names))

    ignored = set((repo / ".gitignore").read_text().split())
    assert {f"/{name}" for name in names} <= ignored  # no add lost another's entry
    ok(repo, "gc", "--workspace", "--grace", "0", "-q")
    ok(repo, "verify", "-q")
    restore_and_compare(repo, names, {name: expected_files(plans[name][-1]) for name in names})
    assert cli(repo, "status", "--exit-code", "-q")[0] == 0
    print(f"4 adders x {n_versions} versions + gc --workspace: {len(results[-1])} gc runs, {during} during the adds")


@pytest.mark.parametrize("n_versions, n_files", [(2, 4), pytest.param(4, 20, marks=pytest.mark.slow)])
def test_two_repositories_on_one_shared_cache_with_gc_in_one(tmp_path: Path, spawn_workers, n_versions,
                                                             n_files) -> None:
    cache = tmp_path / "shared-cache"
    repos = {}
    for side in ("a", "b"):
        repo = make_repo(tmp_path / side)
        config = repo / ".mlvc" / "config"
        config.write_text(config.read_text() + f"cache:\n  dir: {cache}\n")
        write(repo / "README", side.encode())
        commit(repo, "init")
        repos[side] = repo
    names = {"a": ["a0"], "b": ["b0"]}  # one committing adder per repository (git allows one commit at a time)
    plans = {name: versions(name, n_versions, n_files) for side in names for name in names[side]}
    workers = [{"role": "add", "cwd": str(repos[side]), "name": name, "versions": plans[name], "commit": True,
                "seed": i}
               for i, (side, name) in enumerate((s, n) for s in names for n in names[s])]
    # gc in a: its scope is a's every commit; b (registered in the cache) keeps its every commit
    workers.append({"role": "gc", "cwd": str(repos["a"]), "max_loops": 200, "seed": 9,
                    "gc_args": ["gc", "--all-commits", "--grace", "0", "-q"]})
    for w in workers:
        w["adders"] = len(workers) - 1
    results = [json.loads(out.splitlines()[-1]) for out in spawn_workers(WORKER, workers, timeout_s=240)]
    during = check_runs(results, len(workers) - 1)

    ok(repos["a"], "gc", "--all-commits", "--grace", "0", "-q")
    ok(repos["b"], "verify", "-q")
    restored = 0
    for (side, name), runs in zip([(s, n) for s in names for n in names[s]], results[:-1], strict=True):
        repo = repos[side]
        for k, run in enumerate(runs):
            # that commit's pointer of `name`, restored from the shared cache into a scratch tree
            dest = tmp_path / f"restore-{name}-{k}"
            ok(repo, "checkout", run["sha"], name, "--to", str(dest), "-q")
            assert snapshot(dest, name) == expected_files(plans[name][k]), (name, k)
            restored += 1
    for side in names:
        restore_and_compare(repos[side], names[side], {n: expected_files(plans[n][-1]) for n in names[side]})
    print(f"2 repositories, an adder in each x {n_versions} commits + gc in one: {len(results[-1])} gc runs, "
          f"{during} during the adds; {restored} committed versions restored byte-exact")
