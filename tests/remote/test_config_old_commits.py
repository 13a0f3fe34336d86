"""Remotes for every revision: a commit made before `mlvc remote add` is restorable (the
branch's committed config, or a `--local` remote), and `-r` takes a URL or a path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import commit, git, mlvc_cli, one_error

from mlvc.config import Config


@pytest.fixture
def history(repo_dir, tmp_path):
    """v1 committed before any remote exists; then a remote added, committed, and every
    commit's artifacts pushed; then a clone of it."""
    r = repo_dir
    (r / "model.bin").write_bytes(b"v1" * 5000)
    assert mlvc_cli(r, "add", "model.bin").code == 0
    commit(r, "v1", "v1")
    remote = tmp_path / "nfs"
    assert mlvc_cli(r, "remote", "add", "shared", str(remote), "--default").code == 0
    (r / "model.bin").write_bytes(b"v2" * 5000)
    assert mlvc_cli(r, "add", "model.bin").code == 0
    commit(r, "v2 and the remote", "v2")
    out = mlvc_cli(r, "push", "--all-commits")
    assert out.code == 0, out.err
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(r), str(clone))
    return r, clone, remote


def test_a_commit_from_before_the_remote_uses_the_branchs_remotes(history):
    _r, clone, _remote = history
    assert mlvc_cli(clone, "pull").code == 0
    git(clone, "checkout", "-q", "v1")  # its .mlvc/config names no remote
    out = mlvc_cli(clone, "checkout")
    assert out.code == 0, out.err
    assert (clone / "model.bin").read_bytes() == b"v1" * 5000
    out = mlvc_cli(clone, "pull", "-r", "shared")
    assert out.code == 0, out.err


def test_a_local_remote_is_kept_out_of_the_committed_config_and_serves_old_commits(history, tmp_path):
    r, _clone, _remote = history
    scratch = tmp_path / "scratch"
    out = mlvc_cli(r, "remote", "add", "--local", "scratch", str(scratch))
    assert out.code == 0 and "config.local" in out.out, out.err
    assert "scratch" not in (r / ".mlvc/config").read_text()
    assert Config(r / ".mlvc/config", r / ".mlvc/config.local").local["remotes"]["scratch"]["url"] == str(scratch)
    rows = {row["name"]: row for row in json.loads(mlvc_cli(r, "remote", "list", "--json").out)}
    assert rows["scratch"]["local"] and not rows["shared"]["local"]
    git(r, "checkout", "-q", "v1")
    assert mlvc_cli(r, "checkout").code == 0
    out = mlvc_cli(r, "push", "-r", "scratch")
    assert out.code == 0, out.err
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(r), str(second))
    git(second, "checkout", "-q", "v1")
    out = mlvc_cli(second, "pull", "-r", str(scratch))  # a path: a remote configured nowhere here
    assert out.code == 0, out.err
    assert (second / "model.bin").read_bytes() == b"v1" * 5000
    assert mlvc_cli(r, "remote", "remove", "scratch").code == 0
    assert "scratch" not in mlvc_cli(r, "remote", "list").out


def test_no_remote_anywhere_says_how_to_add_one(repo_dir):
    r = repo_dir
    (r / "m.bin").write_bytes(b"x" * 100)
    assert mlvc_cli(r, "add", "m.bin").code == 0
    out = mlvc_cli(r, "push")
    assert one_error(out.err) == "error: no remote is configured"
    assert "--local" in out.err
    out = mlvc_cli(r, "push", "-r", "nosuch")
    assert "no remote named 'nosuch'" in one_error(out.err)


def test_push_to_a_url_remote(repo_dir, tmp_path):
    r = repo_dir
    (r / "m.bin").write_bytes(b"y" * 1000)
    assert mlvc_cli(r, "add", "m.bin").code == 0
    target = Path(tmp_path / "adhoc")
    out = mlvc_cli(r, "push", "-r", f"file://{target}")
    assert out.code == 0, out.err
    assert any(target.rglob("*")), "nothing was pushed"
