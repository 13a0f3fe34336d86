"""`mlvc install-hooks`: plain git checkout/switch/pull restore artifacts, push pushes, stale commits refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import commit, default_sigint, git, GIT_ENV, mlvc

from mlvc.hooks import HOOK_BLOCK_BEGIN
from mlvc.repo import Repo


def git_rc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **GIT_ENV), capture_output=True, text=True)


@pytest.fixture
def hooked(repo_dir):
    r = repo_dir
    hooks = r / ".git/hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "post-checkout").write_text("#!/bin/sh\necho user-hook-ran >> \"$(git rev-parse --git-dir)/ran\"\n")
    (hooks / "post-checkout").chmod(0o755)
    (hooks / "post-merge").write_text("#!/usr/bin/env python3\nimport sys\nopen('.git/py-ran', 'w').write('y')\n")
    (hooks / "post-merge").chmod(0o755)
    (r / "model.bin").write_bytes(b"v1" * 1000)
    assert mlvc("add", "model.bin") == 0
    commit(r, "v1", "v1")
    (r / "model.bin").write_bytes(b"v2" * 1000)
    assert mlvc("add", "model.bin") == 0
    commit(r, "v2", "v2")
    assert mlvc("install-hooks", "--quiet") == 0
    assert mlvc("install-hooks", "--quiet") == 0  # idempotent
    return r


def test_install_is_idempotent_and_chains(hooked):
    hooks = hooked / ".git/hooks"
    for name in ("post-checkout", "post-merge", "pre-push", "pre-commit"):
        text = (hooks / name).read_text()
        assert text.count(HOOK_BLOCK_BEGIN) == 1, name
        assert os.access(hooks / name, os.X_OK)
    assert "user-hook-ran" in (hooks / "post-checkout").read_text()  # shell hook: block inserted, rest kept
    assert (hooks / "post-merge.mlvc-chained").exists()  # python hook moved aside and chained


def test_git_checkout_and_switch_restore_artifacts(hooked):
    r = hooked
    res = git_rc(r, "checkout", "-q", "v1")  # detached HEAD
    assert res.returncode == 0, res.stderr
    assert (r / "model.bin").read_bytes() == b"v1" * 1000
    assert (r / ".git/ran").read_text().count("user-hook-ran") == 1  # the existing hook still runs
    res = git_rc(r, "switch", "-q", "main")
    assert res.returncode == 0, res.stderr
    assert (r / "model.bin").read_bytes() == b"v2" * 1000
    git(r, "switch", "-q", "-c", "exp", "v1")
    assert (r / "model.bin").read_bytes() == b"v1" * 1000
    # mlvc checkout REV does not restore twice (the hook is skipped) and still works
    assert mlvc("checkout", "v2") == 0
    assert (r / "model.bin").read_bytes() == b"v2" * 1000


def test_pre_commit_refuses_stale_pointer(hooked):
    r = hooked
    (r / "model.bin").write_bytes(b"v3" * 1000)
    assert mlvc("add", "model.bin") == 0
    (r / "model.bin").write_bytes(b"v4 edited after add")
    git(r, "add", "model.bin.mlvc")
    res = git_rc(r, "commit", "-q", "-m", "stale")
    assert res.returncode != 0
    assert "model.bin" in res.stderr and "mlvc add" in res.stderr
    assert mlvc("add", "model.bin") == 0
    git(r, "add", "model.bin.mlvc")
    res = git_rc(r, "commit", "-q", "-m", "fresh")
    assert res.returncode == 0, res.stderr


def test_pull_restores_and_push_pushes(hooked, tmp_path):
    r = hooked
    remote = tmp_path / "artifacts"
    remote.mkdir()
    repo = Repo.find(r)
    repo.config.update_shared(lambda d: d.update(remotes={"origin": {"url": str(remote)}},
                                                 default_remote="origin"))
    repo.close()
    commit(r, "remote")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(r, "remote", "add", "origin", str(bare))
    res = git_rc(r, "push", "-q", "origin", "main")  # pre-push: `mlvc push` first
    assert res.returncode == 0, res.stderr
    assert any((remote / "packs").glob("*.idx"))
    # a clone with hooks: git pull restores the new version
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    os.chdir(clone)
    assert mlvc("pull", "--quiet") == 0
    assert mlvc("install-hooks", "--quiet") == 0
    os.chdir(r)
    (r / "model.bin").write_bytes(b"v9" * 1000)
    assert mlvc("add", "model.bin") == 0
    commit(r, "v9")
    assert git_rc(r, "push", "-q", "origin", "main").returncode == 0
    res = git_rc(clone, "pull", "-q", "--no-rebase", "origin", "main")  # post-merge (fast-forward)
    assert res.returncode == 0, res.stderr
    assert (clone / "model.bin").read_bytes() == b"v9" * 1000


def test_push_is_stopped_when_artifacts_cannot_be_pushed(hooked, tmp_path):
    r = hooked
    repo = Repo.find(r)
    repo.config.update_shared(lambda d: d.update(remotes={"origin": {"url": str(tmp_path / "missing/dir")}},
                                                 default_remote="origin"))
    repo.close()
    commit(r, "bad remote")
    (tmp_path / "missing").write_text("a file where the remote directory should be")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(r, "remote", "add", "origin", str(bare))
    res = git_rc(r, "push", "-q", "origin", "main")
    assert res.returncode != 0
    assert "git push" in res.stderr and "mlvc" in res.stderr
    assert git_rc(r, "push", "-q", "--no-verify", "origin", "main").returncode == 0


def test_uninstall_removes_only_mlvc(hooked):
    hooks = hooked / ".git/hooks"
    assert mlvc("uninstall-hooks", "--quiet") == 0
    assert (hooks / "post-checkout").read_text() == ("#!/bin/sh\necho user-hook-ran >> "
                                                     "\"$(git rev-parse --git-dir)/ran\"\n")
    assert (hooks / "post-merge").read_text().startswith("#!/usr/bin/env python3")
    assert not (hooks / "post-merge.mlvc-chained").exists()
    assert not (hooks / "pre-push").exists() and not (hooks / "pre-commit").exists()
    assert mlvc("uninstall-hooks") == 0  # nothing left: still fine
    git(hooked, "checkout", "-q", "v1")
    assert (hooked / "model.bin").read_bytes() == b"v2" * 1000  # no longer restored


def test_post_checkout_names_an_artifact_the_new_commit_does_not_track(hooked):
    r = hooked
    (r / "data").mkdir()
    (r / "data" / "t.csv").write_text("x\n")
    assert mlvc("add", "data") == 0
    commit(r, "v3 adds data")
    res = git_rc(r, "checkout", "-q", "v2")
    assert res.returncode == 0, res.stderr
    assert "mlvc: data is not tracked at this commit; left on disk and kept out of git" in res.stderr
    assert (r / "data" / "t.csv").exists()
    git(r, "add", "-A")
    assert git(r, "status", "--porcelain") == ""


def test_git_push_says_when_the_remote_does_not_answer_and_ctrl_c_stops_it(hooked, tmp_path):
    import selectors
    import signal
    import socket
    import time

    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never answers
    try:
        r = hooked
        assert mlvc("remote", "add", "origin", "s3://bucket/proj", "--endpoint-url",
                    f"http://127.0.0.1:{silent.getsockname()[1]}", "--region", "us-east-1", "--default", "-q") == 0
        git(tmp_path, "init", "-q", "--bare", "upstream.git")
        git(r, "remote", "add", "up", str(tmp_path / "upstream.git"))
        proc = subprocess.Popen(["git", "push", "-q", "up", "main"], cwd=r, env=dict(os.environ, **GIT_ENV),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=default_sigint)
        try:
            sel = selectors.DefaultSelector()
            sel.register(proc.stderr, selectors.EVENT_READ)
            err, deadline = b"", time.monotonic() + 60
            while b"mlvc: waiting: nothing from remote 'origin'" not in err and time.monotonic() < deadline:
                if sel.select(timeout=0.2):
                    err += os.read(proc.stderr.fileno(), 65536)
            assert b"Ctrl-C stops; `git push` again resumes" in err, err
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            _, rest = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err = (err + rest).decode()
        assert proc.returncode != 0
        assert "interrupted; nothing was transferred yet" in err, err
        assert git(tmp_path / "upstream.git", "branch") == ""  # the commit did not reach git without its artifacts
    finally:
        silent.close()
