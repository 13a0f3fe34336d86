"""No silent inconsistency: overlapping pointers are an error, an empty directory restores."""

from __future__ import annotations

import shutil

from mlvc.errors import EXIT_BAD_PATH, EXIT_BAD_POINTER

from helpers import commit, git, mlvc_cli, write


def _dir_artifact(repo_dir):
    write(repo_dir / "data" / "a.txt", b"a")
    write(repo_dir / "data" / "b.txt", b"b")
    assert mlvc_cli(repo_dir, "add", "data").code == 0
    commit(repo_dir, "v1")


def test_add_refuses_a_file_inside_a_directory_artifact_whatever_its_pointer_is_called(repo_dir):
    _dir_artifact(repo_dir)
    (repo_dir / "data.mlvc").rename(repo_dir / "dataset.mlvc")  # pointers need not be named after the path
    r = mlvc_cli(repo_dir, "add", "data/a.txt")
    assert r.code == EXIT_BAD_PATH and "inside the tracked artifact data" in r.err, r
    assert not (repo_dir / "data" / "a.txt.mlvc").exists()
    write(repo_dir / "outer" / "inner" / "x", b"x")
    assert mlvc_cli(repo_dir, "add", "outer/inner").code == 0
    r = mlvc_cli(repo_dir, "add", "outer")
    assert r.code == EXIT_BAD_PATH and "contains the tracked artifact outer/inner" in r.err, r


def test_a_committed_second_pointer_inside_an_artifact_is_reported_not_restored(repo_dir):
    _dir_artifact(repo_dir)
    # what a merge or a hand-made commit can bring: a pointer over data/a.txt with other content
    write(repo_dir / "elsewhere.txt", b"other bytes")
    assert mlvc_cli(repo_dir, "add", "elsewhere.txt").code == 0
    text = (repo_dir / "elsewhere.txt.mlvc").read_text().replace("path: elsewhere.txt", "path: data/a.txt")
    (repo_dir / "elsewhere.txt.mlvc").write_text(text)
    git(repo_dir, "add", "-f", "elsewhere.txt.mlvc")
    commit(repo_dir, "overlap")
    for args in (["checkout"], ["checkout", "data"]):
        r = mlvc_cli(repo_dir, *args)
        assert r.code in (EXIT_BAD_POINTER, 12), r
        assert "lies inside the artifact data" in r.err or "contains the artifact data/a.txt" in r.err, r
    assert (repo_dir / "data" / "a.txt").read_bytes() == b"a"
    r = mlvc_cli(repo_dir, "status")
    assert r.code != 0 and "data/a.txt" in r.out + r.err, r


def test_empty_directory_artifact_restores_and_is_unchanged(repo_dir):
    (repo_dir / "empty").mkdir()
    r = mlvc_cli(repo_dir, "add", "empty")
    assert r.code == 0, r
    commit(repo_dir, "empty dir")
    assert mlvc_cli(repo_dir, "status", "--exit-code").code == 0
    shutil.rmtree(repo_dir / "empty")
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 0, r
    assert (repo_dir / "empty").is_dir() and list((repo_dir / "empty").iterdir()) == []
    r = mlvc_cli(repo_dir, "status", "--exit-code")
    assert r.code == 0, r


def test_a_file_named_backslash_is_named_as_the_problem(repo_dir):
    write(repo_dir / "data" / "ok.txt", b"ok")
    write(repo_dir / "data" / "\\", b"a file named backslash")
    r = mlvc_cli(repo_dir, "add", "data")
    assert r.code == EXIT_BAD_PATH, r
    assert "data/\\" in r.err and "rename it" in r.err and "pointer" not in r.err, r

