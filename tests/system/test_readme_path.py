"""The README's "From nothing to a restored checkpoint", command for command, then the same
project in a second clone: pull, and `git checkout HEAD~1 && mlvc checkout` restores v1."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import GIT_ENV, mlvc_cli

README = Path(__file__).resolve().parents[2] / "README.md"


def sh(cwd: Path, *args: str) -> str:
    proc = subprocess.run(list(args), cwd=cwd, env=dict(os.environ, **GIT_ENV), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def mlvc(cwd: Path, *args: str) -> str:
    out = mlvc_cli(cwd, *args)
    assert out.code == 0, f"mlvc {' '.join(args)}: {out.out}{out.err}"
    return out.out + out.err


def train(root: Path, version: str) -> dict[str, bytes]:
    """What train.py / finetune.py write: a checkpoint and processed data."""
    files = {"checkpoints/model.pt": os.urandom(300_000) + version.encode(),
             "data/processed/train.csv": f"x,y\n1,{version}\n".encode() * 1000,
             "data/processed/test.csv": b"x,y\n2,3\n" * 100}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def assert_workspace(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data, rel


def readme_commands() -> list[str]:
    block = README.read_text().split("## From nothing to a restored checkpoint", 1)[1].split("```bash", 1)[1]
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.split("```", 1)[0].splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_lists_the_sequence_this_test_runs():
    commands = readme_commands()
    for expected in ("git init demo && cd demo && mlvc init",
                     "mlvc remote add shared /mnt/nfs/proj --default",
                     "mlvc install-hooks",
                     "mlvc add checkpoints data/processed",
                     "git add -A && git commit -m v1",
                     "mlvc add checkpoints data/processed && git commit -am v2",
                     "git remote add origin git@host:team/demo.git && git push -u origin main",
                     "git clone git@host:team/demo.git demo2 && cd demo2",
                     "mlvc install-hooks && mlvc pull",
                     "git checkout HEAD~1 && mlvc checkout"):
        assert expected in commands, (expected, commands)


def bare_origin_and_project(tmp_path, shared_dir):
    """A bare git origin and a new mlvc project whose default remote is the shared directory."""
    origin = tmp_path / "origin.git"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    demo = tmp_path / "demo"
    sh(tmp_path, "git", "init", "-q", "-b", "main", "demo")
    mlvc(demo, "init")
    mlvc(demo, "remote", "add", "shared", str(shared_dir), "--default")
    return origin, demo


@pytest.mark.parametrize("hooks_in_clone", [True, False])
def test_readme_path_in_a_second_clone(tmp_path, hooks_in_clone):
    origin, demo = bare_origin_and_project(tmp_path, tmp_path / "nfs-proj")
    mlvc(demo, "install-hooks")
    v1 = train(demo, "v1")
    mlvc(demo, "add", "checkpoints", "data/processed")
    sh(demo, "git", "add", "-A")
    sh(demo, "git", "commit", "-q", "-m", "v1")
    v2 = train(demo, "v2")
    mlvc(demo, "status")
    mlvc(demo, "add", "checkpoints", "data/processed")
    sh(demo, "git", "commit", "-q", "-am", "v2")
    sh(demo, "git", "remote", "add", "origin", str(origin))
    sh(demo, "git", "push", "-q", "-u", "origin", "main")  # the pre-push hook uploads v1's and v2's artifacts
    sh(demo, "git", "checkout", "-q", "HEAD~1")
    mlvc(demo, "checkout")
    assert_workspace(demo, v1)

    clone = tmp_path / "demo2"
    sh(tmp_path, "git", "clone", "-q", str(origin), "demo2")
    if hooks_in_clone:
        mlvc(clone, "install-hooks")
    mlvc(clone, "pull")
    assert_workspace(clone, v2)
    sh(clone, "git", "checkout", "-q", "HEAD~1")
    mlvc(clone, "checkout")
    assert_workspace(clone, v1)
    status = mlvc_cli(clone, "status", "--exit-code")
    assert status.code == 0, status.out + status.err


def test_git_push_pushes_the_artifacts_of_every_pushed_commit_only(tmp_path):
    """Commits the git remote already has are not pushed again; a push of another branch pushes
    that branch's new commits' artifacts, and nothing of the checked-out workspace."""
    origin, demo = bare_origin_and_project(tmp_path, tmp_path / "nfs")
    user_hook = demo / ".git/hooks/pre-push"  # e.g. git-lfs's: it reads the same ref lines after ours
    user_hook.write_text('#!/bin/sh\ncat > "$(git rev-parse --git-dir)/refs-seen"\n')
    user_hook.chmod(0o755)
    mlvc(demo, "install-hooks", "-q")
    sh(demo, "git", "remote", "add", "origin", str(origin))
    train(demo, "v1")
    mlvc(demo, "add", "checkpoints", "data/processed")
    sh(demo, "git", "add", "-A")
    sh(demo, "git", "commit", "-q", "-m", "v1")
    sh(demo, "git", "switch", "-q", "-c", "exp")
    train(demo, "exp")
    mlvc(demo, "add", "checkpoints", "data/processed")
    sh(demo, "git", "commit", "-q", "-am", "exp")
    sh(demo, "git", "switch", "-q", "main")
    out = sh(demo, "git", "push", "origin", "exp")  # main's workspace is v1; exp's commits are pushed
    assert "error" not in out, out
    assert " refs/heads/exp " in (demo / ".git/refs-seen").read_text()
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", "-b", "exp", str(origin), "clone")
    mlvc(clone, "pull")
    assert (clone / "data/processed/train.csv").read_bytes() == b"x,y\n1,exp\n" * 1000


def test_getting_started_share_and_restore_in_a_second_clone(tmp_path):
    """docs/getting-started.md: v1 and v2 committed before the remote exists, then the remote
    and hooks committed and pushed; a clone restores v1 (whose config names no remote)."""
    origin, nfs = tmp_path / "origin.git", tmp_path / "nfs-proj"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    demo = tmp_path / "demo"
    sh(tmp_path, "git", "init", "-q", "-b", "main", "demo")
    mlvc(demo, "init")
    v1 = train(demo, "v1")
    mlvc(demo, "add", "data/processed", "--role", "data")
    mlvc(demo, "add", "checkpoints", "--role", "model")
    sh(demo, "git", "add", "-A")
    sh(demo, "git", "commit", "-q", "-m", "v1: lr 1e-3")
    v2 = train(demo, "v2")
    mlvc(demo, "add", "checkpoints", "data/processed")
    sh(demo, "git", "commit", "-q", "-am", "v2: fine-tune")
    mlvc(demo, "remote", "add", "shared", str(nfs), "--default")
    mlvc(demo, "install-hooks")
    sh(demo, "git", "add", "-A")
    sh(demo, "git", "commit", "-q", "-m", "remote + hooks")
    sh(demo, "git", "remote", "add", "origin", str(origin))
    sh(demo, "git", "push", "-q", "-u", "origin", "main")
    clone = tmp_path / "elsewhere"
    sh(tmp_path, "git", "clone", "-q", str(origin), "elsewhere")
    mlvc(clone, "install-hooks")
    mlvc(clone, "pull")
    assert_workspace(clone, v2)
    sh(clone, "git", "checkout", "-q", "HEAD~2")
    mlvc(clone, "checkout")
    assert_workspace(clone, v1)
    assert "git checkout HEAD~2 && mlvc checkout" in (README.parent / "docs/getting-started.md").read_text()
