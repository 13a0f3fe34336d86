"""Merging two branches that both changed a dataset directory: mlvc's merge driver beside DVC's.

Each tool gets its own fresh git repository with N small files tracked as one directory, its
merge driver installed (`mlvc install-hooks`; DVC's `git-hook merge-driver` set up as its docs
say), and two branches made from the base:

* adds:  each branch adds its own 100 files;
* edits: feat-a edits 1% of the files, adds 100 and deletes 100; feat-b edits another 1% and
  adds 100 (the case of issue 22).

Timed: `git merge feat-b` on feat-a (the driver only: mlvc's post-merge restore is skipped with
MLVC_SKIP_HOOKS=1, and DVC has none), and whether the result has every change of both sides.

    .venv/bin/python benchmarks/bench_merge.py [--files 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import DvcRepo, MlvcRepo, dvc_bin, log, run, scratch, tool_env


def content(i: int, tag: str) -> bytes:
    return f"sample {i} {tag}\n".encode() * 20


def make_branches(repo, tool: str, n: int, scenario: str) -> None:
    data = repo.path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"s{i:06d}").write_bytes(content(i, "base"))
    repo.add("data")
    repo.git_commit("base")
    repo.sh("git", "branch", "-M", "main")
    step = max(1, n // 100)
    repo.sh("git", "switch", "-q", "-c", "feat-a")
    if scenario == "edits":
        for i in range(0, n, step):
            (data / f"s{i:06d}").write_bytes(content(i, "a"))
        for i in range(1, n, step):
            (data / f"s{i:06d}").unlink()
    for i in range(100):
        (data / f"a{i:04d}").write_bytes(content(i, "a-new"))
    repo.add("data")
    repo.git_commit("feat-a")
    repo.sh("git", "switch", "-q", "-c", "feat-b", "main")
    checkout(repo, tool)
    if scenario == "edits":
        for i in range(2, n, step):
            (data / f"s{i:06d}").write_bytes(content(i, "b"))
    for i in range(100):
        (data / f"b{i:04d}").write_bytes(content(i, "b-new"))
    repo.add("data")
    repo.git_commit("feat-b")
    repo.sh("git", "switch", "-q", "feat-a")
    checkout(repo, tool)


def checkout(repo, tool: str) -> None:
    if tool == "mlvc":
        repo.checkout()
    else:
        repo.sh(*repo.cmd("checkout", "-q", "--force"))


def expected(n: int, scenario: str) -> dict[str, bytes]:
    step = max(1, n // 100)
    files = {f"s{i:06d}": content(i, "base") for i in range(n)}
    if scenario == "edits":
        files.update({f"s{i:06d}": content(i, "a") for i in range(0, n, step)})
        files.update({f"s{i:06d}": content(i, "b") for i in range(2, n, step)})
        for i in range(1, n, step):
            del files[f"s{i:06d}"]
    files.update({f"a{i:04d}": content(i, "a-new") for i in range(100)})
    files.update({f"b{i:04d}": content(i, "b-new") for i in range(100)})
    return files


def install_driver(repo, tool: str) -> None:
    if tool == "mlvc":
        repo.sh(*repo.cmd("install-hooks", "-q"))
    else:
        repo.sh("git", "config", "merge.dvc.name", "DVC merge driver")
        repo.sh("git", "config", "merge.dvc.driver",
                f"{dvc_bin()} git-hook merge-driver --ancestor %O --our %A --their %B")
        (repo.path / ".gitattributes").write_text("*.dvc merge=dvc\n")
    repo.git_commit("merge driver")


def one_merge(repo, tool: str, n: int, scenario: str) -> dict:
    head = repo.sh("git", "rev-parse", "HEAD").stdout.strip()
    r = run(["git", "merge", "--no-edit", "feat-b"], repo.path, env=tool_env({"MLVC_SKIP_HOOKS": "1"}),
            check=False)
    outcome = {"seconds": r.wall, "clean": r.rc == 0}
    if r.rc == 0:
        checkout(repo, tool)
        data = repo.path / "data"
        got = {p.name: p.read_bytes() for p in data.iterdir()}
        outcome["complete"] = got == expected(n, scenario)
    else:
        outcome["message"] = (r.stdout + r.stderr).strip().splitlines()[-3:]
        repo.sh("git", "merge", "--abort", check=False)
    repo.sh("git", "reset", "-q", "--hard", head)
    checkout(repo, tool)
    return outcome


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tools = ["mlvc"] + (["dvc"] if dvc_bin() else [])
    results: dict = {}
    for scenario in ("adds", "edits"):
        for tool in tools:
            with scratch(f"merge-{tool}-{scenario}") as path:
                repo = (MlvcRepo if tool == "mlvc" else DvcRepo)(path).init()
                install_driver(repo, tool)
                log(f"{tool} {scenario}: {args.files} files, branches")
                make_branches(repo, tool, args.files, scenario)
                runs = [one_merge(repo, tool, args.files, scenario) for _ in range(args.repeat)]
                results[(scenario, tool)] = runs
                log(f"{tool} {scenario}: {runs[0]}")
    print(f"{'scenario':<8} {'tool':<5} {'best s':>8}  result")
    for (scenario, tool), runs in results.items():
        best = min(r["seconds"] for r in runs)
        last = runs[-1]
        what = ("clean, every change of both sides" if last.get("complete") else "clean but WRONG") \
            if last["clean"] else "conflict: " + " | ".join(last.get("message", []))
        print(f"{scenario:<8} {tool:<5} {best:8.3f}  {what}")
    for scenario in ("adds", "edits"):
        m, d = results.get((scenario, "mlvc")), results.get((scenario, "dvc"))
        if m and d and d[-1]["clean"]:
            ratio = min(r["seconds"] for r in m) / min(r["seconds"] for r in d)
            print(f"{scenario}: mlvc / dvc merge time = {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({f"{s}/{t}": v for (s, t), v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
