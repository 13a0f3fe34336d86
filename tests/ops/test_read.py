"""mlvc.open / mlvc.read: any file of any revision, from the cache or git, without a checkout."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import commit, mlvc, write

import mlvc as api
from mlvc.errors import MlvcError, PathError


@pytest.fixture
def project(repo_dir: Path) -> Path:
    """v1 and v2 of a directory artifact, a single-file artifact and a git-tracked config."""
    write(repo_dir / "data" / "table.csv", "a,b\n1,2\n")
    write(repo_dir / "data" / "sub" / "notes.txt", "héllo v1\n")
    write(repo_dir / "model.bin", b"\x00\x01" * 50_000)
    write(repo_dir / "config.yaml", "lr: 0.1\n")
    assert mlvc("add", "-q", "data", "model.bin") == 0
    commit(repo_dir, "v1", tag="v1")
    write(repo_dir / "data" / "table.csv", "a,b\n1,2\n3,4\n")
    write(repo_dir / "model.bin", b"\x02\x03" * 60_000)
    write(repo_dir / "config.yaml", "lr: 0.01\n")
    assert mlvc("add", "-q", "data", "model.bin") == 0
    commit(repo_dir, "v2", tag="v2")
    return repo_dir


def test_reads_each_revision_of_artifact_files(project: Path) -> None:
    assert api.read("data/table.csv", rev="v1") == b"a,b\n1,2\n"
    assert api.read("data/table.csv", rev="v2", mode="r") == "a,b\n1,2\n3,4\n"
    assert api.read("model.bin", rev="v1") == b"\x00\x01" * 50_000
    assert api.read("data/sub/notes.txt", rev="HEAD~1", mode="r", encoding="utf-8") == "héllo v1\n"
    assert api.read("data/table.csv") == b"a,b\n1,2\n3,4\n"  # rev=None: the workspace's pointers


def test_git_tracked_files_come_from_git(project: Path) -> None:
    write(project / "config.yaml", "lr: 5\n")  # uncommitted: only rev=None sees it
    assert api.read("config.yaml", rev="v1", mode="r") == "lr: 0.1\n"
    assert api.read("config.yaml", rev="v2", mode="r") == "lr: 0.01\n"
    assert api.read("config.yaml", mode="r") == "lr: 5\n"
    assert b"kind: dir" in api.read("data.mlvc", rev="v1")


def test_open_is_a_seekable_context_manager_and_never_touches_the_workspace(project: Path) -> None:
    before = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if ".git/" not in str(p))
    with api.open("model.bin", rev="v1") as f:
        assert f.seekable() and f.readable()
        f.seek(99_998)
        assert f.read() == b"\x00\x01"
        f.seek(-4, io.SEEK_END)
        assert f.tell() == 99_996
        f.seek(2)
        assert f.read(4) == b"\x00\x01\x00\x01"
    assert f.closed
    with api.open("data/table.csv", rev="v2", mode="r") as t:
        assert [line.strip() for line in t] == ["a,b", "1,2", "3,4"]
    (project / "model.bin").unlink()
    assert api.read("model.bin", rev="v2") == b"\x02\x03" * 60_000  # the workspace copy is not needed
    assert not (project / "model.bin").exists()
    after = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if ".git/" not in str(p))
    assert set(after) <= set(before)


def test_paths_are_relative_to_cwd_or_to_the_given_repo(project: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(project / "data")
    assert api.read("table.csv", rev="v1") == b"a,b\n1,2\n"
    monkeypatch.chdir(tmp_path)
    assert api.read("data/table.csv", rev="v1", repo=project) == b"a,b\n1,2\n"
    assert api.read(project / "data" / "table.csv", rev="v1", repo=str(project)) == b"a,b\n1,2\n"


def test_clear_errors(project: Path) -> None:
    with pytest.raises(PathError, match="does not exist at v1"):
        api.read("data/nope.csv", rev="v1")
    with pytest.raises(PathError, match="is a directory"):
        api.read("data/sub", rev="v1")
    with pytest.raises(PathError, match="does not exist at v1"):
        api.read("missing.txt", rev="v1")
    with pytest.raises(MlvcError, match="unknown revision"):
        api.read("data/table.csv", rev="no-such-tag")
    with pytest.raises(MlvcError, match="read-only"):
        api.open("model.bin", mode="wb")
    with pytest.raises(PathError, match="outside the repository"):
        api.read("../../etc/passwd")


def test_missing_object_without_remote_says_what_to_do(project: Path) -> None:
    import shutil

    shutil.rmtree(project / ".mlvc" / "cache")
    with pytest.raises(MlvcError, match="is missing from the cache") as info:
        api.read("data/table.csv", rev="v1")
    assert "no remote is configured" in info.value.hint and "mlvc remote add" in info.value.hint


def test_module_level_lazy_exports() -> None:
    for name in ("open", "read", "push", "pull", "fetch", "diff", "log", "manifest", "gc"):
        assert callable(getattr(api, name)) and getattr(api, name).__doc__
