"""Artifacts stay out of git: the committed `.gitignore` line, and the clone's own
`.git/info/exclude` block that keeps them ignored at commits without their pointer (issue 9)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import GIT_ENV, commit, git, mlvc_cli, write

from mlvc.ignore import BEGIN, END, excluded, keep_excluded, pattern


def ignored(repo: Path, rel: str) -> bool:
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=repo, env=GIT_ENV)
    return proc.returncode == 0


@pytest.mark.parametrize("name", ["plain", "with space", "trailing space ", "star*", "q?", "[ab]", "#hash",
                                  "!bang", "back\\slash"])
def test_a_pattern_matches_exactly_its_path(repo_dir: Path, name: str) -> None:
    write(repo_dir / "d" / name, b"x")
    write(repo_dir / "d" / "other", b"y")
    keep_excluded(repo_dir / ".git" / "info" / "exclude", [f"d/{name}"])
    assert ignored(repo_dir, f"d/{name}")
    assert not ignored(repo_dir, "d/other")
    assert pattern("a/b") == "/a/b"


def test_the_exclude_block_is_added_once_and_keeps_the_users_lines(tmp_path: Path) -> None:
    exclude = tmp_path / "info" / "exclude"
    exclude.parent.mkdir()
    exclude.write_text("# user's own\n*.log\n")
    assert keep_excluded(exclude, ["data", "models/m.pt"]) == 2
    assert keep_excluded(exclude, ["data"]) == 0
    assert keep_excluded(exclude, ["more", "data"]) == 1
    lines = exclude.read_text().splitlines()
    assert lines[:2] == ["# user's own", "*.log"] and lines.count(BEGIN) == 1 and lines[-1] == END
    assert excluded(exclude) == ["/data", "/models/m.pt", "/more"]
    exclude.write_text(exclude.read_text() + "/after\n")  # lines after the block stay after it
    keep_excluded(exclude, ["last"])
    assert exclude.read_text().splitlines()[-2:] == [END, "/after"]


def test_git_checkout_of_a_commit_without_the_pointer_never_lets_git_add_the_data(repo_dir: Path) -> None:
    write(repo_dir / "train.py", "print('train')\n")
    commit(repo_dir, "code only")
    write(repo_dir / "data" / "table.csv", "a,b\n1,2\n")
    assert mlvc_cli(repo_dir, "add", "-q", "data").code == 0
    commit(repo_dir, "data v1")
    git(repo_dir, "checkout", "-q", "HEAD~1")  # plain git, no hooks: data.mlvc and .gitignore go away
    assert not (repo_dir / "data.mlvc").exists() and not (repo_dir / ".gitignore").exists()
    assert (repo_dir / "data" / "table.csv").exists()
    git(repo_dir, "add", "-A")
    assert git(repo_dir, "status", "--porcelain") == ""  # nothing of data/ staged
    git(repo_dir, "checkout", "-q", "main")
    assert mlvc_cli(repo_dir, "status", "--exit-code").code == 0


def test_a_clone_that_pulled_the_data_keeps_it_ignored_at_old_commits(repo_dir: Path, tmp_path: Path) -> None:
    write(repo_dir / "train.py", "print('train')\n")
    commit(repo_dir, "code only")
    write(repo_dir / "data" / "table.csv", "a,b\n1,2\n")
    assert mlvc_cli(repo_dir, "add", "-q", "data").code == 0
    assert mlvc_cli(repo_dir, "remote", "add", "origin", str(tmp_path / "remote"), "--default", "-q").code == 0
    commit(repo_dir, "data v1")
    assert mlvc_cli(repo_dir, "push", "-q").code == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True, env=GIT_ENV)
    assert mlvc_cli(clone, "pull", "-q").code == 0
    assert excluded(clone / ".git" / "info" / "exclude") == ["/data"]
    # mlvc checkout REV says what it left, and git sees nothing to add
    r = mlvc_cli(clone, "checkout", "HEAD~1")
    assert r.code == 0, r
    assert r.err == ("note: data: not tracked at this commit; left on disk and kept out of git "
                     "(.git/info/exclude)\n")
    git(clone, "add", "-A")
    assert git(clone, "status", "--porcelain") == ""


def test_drop_ignored_and_drop_excluded_remove_only_their_lines(tmp_path) -> None:
    from mlvc.ignore import drop_excluded, drop_ignored, ensure_ignored, excluded, keep_excluded

    (tmp_path / ".gitignore").write_text("*.log\n")
    ensure_ignored(tmp_path / "data")
    assert drop_ignored(tmp_path / "data") and (tmp_path / ".gitignore").read_text() == "*.log\n"
    assert not drop_ignored(tmp_path / "data")
    (tmp_path / "sub").mkdir()
    ensure_ignored(tmp_path / "sub" / "x")
    assert drop_ignored(tmp_path / "sub" / "x") and not (tmp_path / "sub" / ".gitignore").exists()
    exclude = tmp_path / "info" / "exclude"
    exclude.parent.mkdir()
    exclude.write_text("# mine\n/keep\n")
    keep_excluded(exclude, ["a/b", "c"])
    assert drop_excluded(exclude, ["a/b"]) == 1
    assert excluded(exclude) == ["/c"] and exclude.read_text().startswith("# mine\n/keep\n")
