"""The hostile corpus: every case in tests/corpus/ given to every command that reads it.

A case is a directory (see tests/corpus/build.py and cases.toml): `repo/` is copied into a fresh
repository and committed, `cache/` into its cache.  Then each command of the case runs, in one
child process per case, which reports each command's exit code, stderr, seconds and the
process's peak resident memory.  Each command must answer with its documented code (a failure:
exactly one `error:` line naming the problem, no traceback), within seconds, under 300 MiB;
and nothing outside the repository may change (its siblings, a file a symlink points at, the
absolute paths a case names), nor anything inside `.git`.

To grow the corpus: add a directory and a `[case]` table to cases.toml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import GIT_ENV, commit, git

CORPUS = Path(__file__).parents[1] / "corpus"
CASES = tomllib.loads((CORPUS / "cases.toml").read_text())
MAX_RSS_MIB = 300
MAX_SECONDS = 20  # each command answers in well under a second; slack for loaded CI machines
OUTSIDE_FILE = b"# the victim's own shell setup\n"

# The commands that read each kind of input; a case may name its own.
READERS = {
    "pointer": [["status"], ["checkout"], ["diff", "HEAD"], ["manifest"], ["show", "{name}"], ["log", "{name}"],
                ["params", "diff", "HEAD"], ["gc", "--workspace", "--dry-run"], ["verify"]],
    "pack": [["status"], ["checkout"], ["show", "{name}"], ["diff", "HEAD"], ["gc", "--workspace", "--dry-run"],
             ["verify"]],
    "checkpoint": [["add", "{name}"], ["show", "{name}"], ["diff", "HEAD"], ["status"]],
}
REPORTS = ("status", "verify")  # these print what they found on stdout, and exit with its code

_CHILD = """
import contextlib, io, json, sys, time
from mlvc.cli.main import run

def peak_mib():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024

results = []
for args in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(args)
    results.append({"args": args, "code": code, "err": err.getvalue()[-4000:], "out": out.getvalue()[-4000:],
                    "seconds": time.monotonic() - started, "peak_mib": peak_mib()})
    with open(sys.argv[1], "w") as out:
        json.dump(results, out)
"""


def tree_state(root: Path, skip: Path) -> dict[str, bytes | str]:
    """Every entry under `root` except under `skip`: file bytes, link targets, directories."""
    state: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            p = here / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                state[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                state[rel] = p.read_bytes()
            elif p != skip:
                state[rel] = "dir"
    return state


def git_state(repo: Path) -> dict[str, bytes | str]:
    """What a write into .git would change: hooks and config (objects and refs are git's own)."""
    dot = repo / ".git"
    state = tree_state(dot / "hooks", dot / "nothing")
    state["config"] = (dot / "config").read_bytes()
    return state


def prepare(case: str, spec: dict, root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (root / "outside").mkdir()
    (root / "outside" / ".bashrc").write_bytes(OUTSIDE_FILE)
    git(repo, "init", "-q", "-b", "main")
    from mlvc.repo import Repo

    Repo.init(repo)
    commit(repo, "mlvc init")
    shutil.copytree(CORPUS / case / "repo", repo, symlinks=True, dirs_exist_ok=True)
    if (CORPUS / case / "cache").is_dir():
        shutil.copytree(CORPUS / case / "cache", repo / ".mlvc" / "cache", dirs_exist_ok=True)
    if spec.get("commit", True):
        commit(repo, "a commit someone else wrote")
    return repo


def run_case(repo: Path, commands: list[list[str]]) -> list[dict]:
    report = repo.parent / "report.json"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(report), json.dumps(commands)], cwd=repo,
                          env=dict(os.environ, **GIT_ENV), capture_output=True, text=True, timeout=300)
    results = json.loads(report.read_text()) if report.exists() else []
    assert proc.returncode == 0 and len(results) == len(commands), (
        f"the child died after {len(results)} of {len(commands)} commands (exit {proc.returncode}): "
        f"{proc.stderr[-3000:]}")
    return results


def expected_codes(spec: dict, args: list[str]) -> list[int]:
    codes = spec.get("codes", {})
    return codes.get(args[0], codes.get(" ".join(args[:2]), codes["*"]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_case(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    root = tmp_path / case
    repo = prepare(case, spec, root)
    commands = [[arg.format(name=spec.get("name", "model.bin")) for arg in args]
                for args in spec.get("commands", READERS[spec["reads"]])]
    absolute = [Path(p) for p in spec.get("absolute", [])]
    outside_before, git_before = tree_state(root, repo), git_state(repo)

    results = run_case(repo, commands)

    worst = max(results, key=lambda r: r["peak_mib"])
    for r in results:
        what = f"{case}: mlvc {' '.join(r['args'])}"
        assert r["code"] in expected_codes(spec, r["args"]), f"{what} exit {r['code']}: {r['err']}"
        assert "Traceback" not in r["err"] and "internal error" not in r["err"], f"{what}: {r['err']}"
        if r["code"] != 0:
            if r["args"][0] in REPORTS and "error:" not in r["err"]:
                said = r["out"]
            else:
                lines = [line for line in r["err"].splitlines() if line.startswith("error:")]
                assert len(lines) == spec.get("errors", 1), f"{what}: {r['err']}"
                said = "\n".join(lines)
            words = spec.get("words", "")
            assert any(w.lower() in said.lower() for w in words.split("|")), f"{what}: {said!r} lacks {words!r}"
        assert r["seconds"] < MAX_SECONDS, f"{what} took {r['seconds']:.1f} s"
        assert r["peak_mib"] < MAX_RSS_MIB, f"{what} peaked at {r['peak_mib']:.0f} MiB"
    outside_after = tree_state(root, repo)
    outside_after.pop("report.json", None)
    outside_before.pop("report.json", None)
    assert outside_after == outside_before, f"{case}: something outside the repository changed"
    assert git_state(repo) == git_before, f"{case}: something inside .git changed"
    for p in absolute:
        assert not p.exists(), f"{case}: {p} was written"
    slowest = max(results, key=lambda r: r["seconds"])
    print(f"{case}: {len(results)} commands; peak {worst['peak_mib']:.0f} MiB, slowest "
          f"{' '.join(slowest['args'])} {slowest['seconds']:.2f} s")
