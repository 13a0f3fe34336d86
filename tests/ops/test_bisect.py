"""`mlvc bisect run`: each step sees its commit's artifacts; 125 skips; the session always ends."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_proc, commit, default_sigint, git, mlvc, mlvc_cli


# The "evaluation": the model is bad once its bytes say so.  It reads the artifact, so a
# bisect that did not restore artifacts at each step would blame the wrong commit.
EVAL = "import sys; sys.exit(1 if open('model.bin','rb').read().startswith(b'bad') else 0)"


def make_history(repo_dir: Path, broken_at: int | None = None) -> list[str]:
    """8 commits; the model turns bad at commit 5; code files change at every commit."""
    shas = []
    for i in range(8):
        (repo_dir / "model.bin").write_bytes((b"bad" if i >= 5 else b"good") + str(i).encode() * 100)
        (repo_dir / "code.py").write_text(f"# step {i}\n")
        assert mlvc("add", "--quiet", "model.bin") == 0
        if i == broken_at:
            (repo_dir / "model.bin.mlvc").write_text("mlvc: 1\nkind: nonsense\n")
        shas.append(commit(repo_dir, f"step {i}"))
    return shas


@pytest.fixture
def history(repo_dir):
    return repo_dir, make_history(repo_dir)


def bisect_active(repo: Path) -> bool:
    return (repo / ".git/BISECT_START").exists()


def test_bisect_finds_the_commit_that_broke_the_model(history):
    repo, shas = history
    res = mlvc_cli(repo, "bisect", "run", "--bad", "HEAD", "--good", shas[0], "--", sys.executable, "-c", EVAL)
    assert res.code == 0, res
    assert f"first bad commit: {shas[5]}" in res.out
    assert not bisect_active(repo)
    assert git(repo, "branch", "--show-current").strip() == "main"
    assert (repo / "model.bin").read_bytes().startswith(b"bad7")  # HEAD's artifacts are back


def test_bisect_in_a_session_started_with_git(history):
    repo, shas = history
    git(repo, "bisect", "start", shas[7], shas[2])
    res = mlvc_cli(repo, "bisect", "run", "--keep", "--", sys.executable, "-c", EVAL)
    assert res.code == 0, res
    assert shas[5] in res.out
    assert bisect_active(repo)  # --keep leaves the session for the user
    git(repo, "bisect", "reset")


def test_unrestorable_commit_is_skipped(repo_dir):
    # commit 5's pointer is corrupt: its step exits 125 (skip), so git can only narrow the
    # culprit down to commit 5 or 6 — and never blames a commit because its artifact was stale.
    shas = make_history(repo_dir, broken_at=5)
    res = mlvc_cli(repo_dir, "bisect", "run", "--bad", "HEAD", "--good", shas[0], "--", sys.executable, "-c", EVAL)
    assert "skipping this commit (exit 125)" in res.err, res
    assert shas[5] in res.out and shas[6] in res.out, res
    assert "first bad commit: " not in res.out  # mlvc names none: git could not decide
    assert not bisect_active(repo_dir)
    assert (repo_dir / "model.bin").read_bytes().startswith(b"bad7")


def test_no_session_and_no_command(history):
    repo, _ = history
    res = mlvc_cli(repo, "bisect", "run", "--", sys.executable, "-c", EVAL)
    assert res.code != 0 and "no bisect session" in res.err
    assert mlvc_cli(repo, "bisect", "run").code != 0


def test_ctrl_c_ends_the_session(history):
    repo, shas = history
    marker = repo.parent / "step-started"
    slow = f"import time; open({str(marker)!r}, 'w').close(); time.sleep(60)"
    proc = cli_proc(repo, "bisect", "run", "--bad", "HEAD", "--good", shas[0], "--", sys.executable, "-c", slow,
                    text=False, start_new_session=True, preexec_fn=default_sigint)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert not bisect_active(repo)
    assert git(repo, "branch", "--show-current").strip() == "main"
    assert (repo / "model.bin").read_bytes().startswith(b"bad7")


def test_bisect_output_is_clean(history):
    """No wrapper command echoed, no "first bad commitfirst bad commit:" run-on, no commit dump."""
    import shlex

    repo, shas = history
    cmd = [sys.executable, "-c", EVAL]
    res = mlvc_cli(repo, "bisect", "run", "--bad", "HEAD", "--good", shas[0], "--", *cmd)
    assert res.code == 0, res
    lines = res.out.splitlines()
    assert lines[-2:] == [f"first bad commit: {shas[5]} step 5",
                          "bisect session ended (git bisect reset); artifacts restored"], res.out
    steps = [line for line in lines if line.startswith("running ")]
    assert steps and all(line == f"running {shlex.join(cmd)}" for line in steps), res.out
    assert "step_main" not in res.out and "Author:" not in res.out and res.out.count("first bad commit") == 1
    assert any(line.startswith("Bisecting: ") for line in lines)
    assert any(line.startswith("[") and "] step " in line for line in lines)  # which commit is tested


def test_a_modified_tracked_file_shows_gits_reason_not_just_aborting(history):
    from helpers import one_error

    repo, shas = history
    (repo / "code.py").write_text("# edited, not committed\n")
    res = mlvc_cli(repo, "bisect", "run", "--bad", "HEAD", "--good", shas[0], "--", sys.executable, "-c", EVAL)
    assert res.code != 0, res
    line = one_error(res.err)
    assert "would be overwritten by checkout: code.py." in line and "Aborting" not in line, res.err
    assert "hint: commit or stash them" in res.err
    assert not bisect_active(repo)  # the session it started is ended
    assert (repo / "code.py").read_text() == "# edited, not committed\n"
