"""kill -9 of checkout, checkout REV and pull: the plain re-run completes, nothing torn is recorded.

Restores write their temp files under `.mlvc/tmp/`, so a killed restore leaves nothing in the
workspace for `status` or `add` to mistake for a user file.  Temp files older mlvc versions (or a
cross-file-system restore) left beside workspace files are skipped by `status`/`add` and removed
by the next checkout once their process is dead.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlvc.pointer import load

from helpers import cli_proc, commit, git, mlvc_cli, write


def _versions(repo: Path) -> dict[str, dict[str, bytes]]:
    """Commit v1 and v2 of a file artifact and a directory artifact; return each version's bytes."""
    rng = random.Random(11)
    out = {}
    for tag in ("v1", "v2"):
        files = {"model.bin": rng.randbytes(24 << 20)}
        files.update({f"ds/part{i % 4}/{i}.bin": rng.randbytes(60_000) for i in range(160)})
        for rel, data in files.items():
            write(repo / rel, data)
        assert mlvc_cli(repo, "add", "model.bin", "ds").code == 0
        commit(repo, tag, tag)
        out[tag] = files
    return out


def _workspace(repo: Path) -> dict[str, bytes]:
    files = {"model.bin": (repo / "model.bin").read_bytes()} if (repo / "model.bin").exists() else {}
    for p in sorted((repo / "ds").rglob("*")) if (repo / "ds").exists() else []:
        if p.is_file():
            files[p.relative_to(repo).as_posix()] = p.read_bytes()
    return files


def _stray_temp_files(repo: Path) -> list[str]:
    return [p.relative_to(repo).as_posix() for p in repo.rglob("*mlvc-tmp*") if ".git" not in p.parts]


def _run_and_kill(repo: Path, args: list[str], when: str, delay: float) -> None:
    """Start `mlvc ARGS` and SIGKILL it: after `delay` s, or once it has a restore temp file."""
    proc = cli_proc(repo, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = repo / ".mlvc" / "tmp"
    deadline = time.monotonic() + 30
    if when == "writing":
        while proc.poll() is None and time.monotonic() < deadline:
            if tmp.is_dir() and any(n.startswith("restore-") for n in os.listdir(tmp)):
                time.sleep(delay)
                break
            time.sleep(0.002)
    else:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


KILL_POINTS = [("writing", 0.0), ("writing", 0.05), ("writing", 0.2), ("time", 0.6)]


@pytest.mark.crash
@pytest.mark.parametrize("when,delay", KILL_POINTS)
def test_killed_checkout_then_plain_rerun_completes(repo_dir, when, delay):
    versions = _versions(repo_dir)
    git(repo_dir, "checkout", "-q", "v1", "--", "model.bin.mlvc", "ds.mlvc")
    _run_and_kill(repo_dir, ["checkout"], when, delay)
    assert _stray_temp_files(repo_dir) == []  # nothing in the workspace `git add -A` could commit
    r = mlvc_cli(repo_dir, "checkout")  # plain: no --force
    assert r.code == 0, r
    assert _workspace(repo_dir) == versions["v1"]
    assert mlvc_cli(repo_dir, "status", "--exit-code").code == 0
    assert os.listdir(repo_dir / ".mlvc" / "tmp") == []


@pytest.mark.crash
@pytest.mark.parametrize("when,delay", KILL_POINTS[:2])
def test_killed_checkout_rev_then_plain_rerun_completes(repo_dir, when, delay):
    versions = _versions(repo_dir)
    _run_and_kill(repo_dir, ["checkout", "v1"], when, delay)
    assert _stray_temp_files(repo_dir) == []
    r = mlvc_cli(repo_dir, "checkout", "v1")
    assert r.code == 0, r
    assert _workspace(repo_dir) == versions["v1"]
    assert mlvc_cli(repo_dir, "status", "--exit-code").code == 0


@pytest.mark.crash
@pytest.mark.parametrize("when,delay", KILL_POINTS[:2])
def test_killed_pull_then_plain_rerun_completes(repo_dir, tmp_path, when, delay):
    versions = _versions(repo_dir)
    assert mlvc_cli(repo_dir, "remote", "add", "origin", str(tmp_path / "remote"), "--default").code == 0
    commit(repo_dir, "remote")
    assert mlvc_cli(repo_dir, "push").code == 0
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo_dir), str(clone))
    _run_and_kill(clone, ["pull"], when, delay)
    assert _stray_temp_files(clone) == []
    restored = {k: v for k, v in _workspace(clone).items() if k.startswith("ds/")}
    assert restored in ({}, {k: v for k, v in versions["v2"].items() if k.startswith("ds/")})  # whole or absent
    r = mlvc_cli(clone, "pull")
    assert r.code == 0, r
    assert _workspace(clone) == versions["v2"]
    assert mlvc_cli(clone, "status", "--exit-code").code == 0
    assert mlvc_cli(clone, "verify").code == 0
    assert os.listdir(clone / ".mlvc" / "tmp") == []  # the killed pull's staging directory is swept


def test_a_fresh_restore_is_staged_whole_and_a_dead_staging_directory_is_swept(repo_dir):
    """An absent directory artifact is built under .mlvc/tmp/ and renamed into place at once: the
    workspace never holds part of it.  A killed one's staging directory goes on the next run."""
    files = {f"ds/p{i % 3}/{i}.bin": bytes([i]) * (100 + i) for i in range(30)}
    files["ds/empty.bin"] = b""
    for rel, data in files.items():
        write(repo_dir / rel, data)
    (repo_dir / "hollow").mkdir()
    assert mlvc_cli(repo_dir, "add", "ds", "hollow").code == 0
    commit(repo_dir, "v1")
    import shutil

    shutil.rmtree(repo_dir / "ds")
    (repo_dir / "hollow").rmdir()
    dead = repo_dir / ".mlvc" / "tmp" / f"restore-{_dead_pid()}-1f.d"
    write(dead / "p0" / "0.bin", b"torn")
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 0, r
    assert {k: v for k, v in _workspace(repo_dir).items()} == files
    assert (repo_dir / "hollow").is_dir() and not any((repo_dir / "hollow").iterdir())
    assert os.listdir(repo_dir / ".mlvc" / "tmp") == []
    assert mlvc_cli(repo_dir, "status", "--exit-code").code == 0


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temp_files_left_beside_workspace_files_are_ignored_and_swept(repo_dir):
    """What an older mlvc (or a restore onto another file system) leaves when killed."""
    write(repo_dir / "model.bin", b"weights")
    write(repo_dir / "ds" / "a.txt", b"a")
    assert mlvc_cli(repo_dir, "add", "model.bin", "ds").code == 0
    pid = _dead_pid()
    torn_file = write_and_return(repo_dir / f".model.bin.mlvc-tmp-{pid}-0123abcd", b"torn")
    torn_in_dir = write_and_return(repo_dir / "ds" / f".a.txt.mlvc-tmp-{pid}-89abcdef", b"torn")
    live = write_and_return(repo_dir / "ds" / f".b.txt.mlvc-tmp-{os.getppid()}-00000000", b"a live writer's")
    r = mlvc_cli(repo_dir, "status", "--exit-code")
    assert r.code == 0, r  # not counted as a change
    before = load(repo_dir / "ds.mlvc").oid
    r = mlvc_cli(repo_dir, "add", "ds")
    assert r.code == 0, r
    assert load(repo_dir / "ds.mlvc").oid == before and load(repo_dir / "ds.mlvc").files == 1  # not recorded
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 0, r
    assert not torn_file.exists() and not torn_in_dir.exists()
    assert live.exists()  # its process is alive: not ours to remove
    assert sorted(p.name for p in (repo_dir / "ds").iterdir()) == [live.name, "a.txt"]


def write_and_return(p: Path, data: bytes) -> Path:
    write(p, data)
    return p
