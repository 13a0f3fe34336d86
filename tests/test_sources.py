"""Other repositories as sources: `repo=` names exactly one repository, never the enclosing one."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from helpers import commit, mlvc, write

import mlvc as api
from mlvc.errors import NotARepoError
from mlvc.git import is_git_url
from mlvc.repo import Repo
from mlvc.sources import open_repo


@pytest.fixture
def project(repo_dir: Path) -> Path:
    """A project whose own artifact has the path a registry's would have."""
    write(repo_dir / "datasets" / "images" / "img000.png", b"this project's bytes")
    assert mlvc("add", "-q", "datasets/images") == 0
    commit(repo_dir, "v1", tag="v1")
    return repo_dir


NOT_REPOSITORIES = ["https://example.com/org/registry.git", "file:///nonexistent/registry",
                    "git@example.com:org/registry.git", "../registy", "datasets"]


@pytest.mark.parametrize("repo", NOT_REPOSITORIES)
def test_a_repo_that_is_not_a_repository_never_reads_the_enclosing_project(project: Path, repo: str) -> None:
    with pytest.raises(NotARepoError):
        api.read("datasets/images/img000.png", repo=repo)
    with pytest.raises(NotARepoError):
        api.open("datasets/images/img000.png", rev="v1", repo=repo)
    with pytest.raises(NotARepoError):
        fsspec.filesystem("mlvc", repo=repo, rev="v1")
    with pytest.raises(NotARepoError):
        api.status(repo=repo)
    with pytest.raises(NotARepoError):
        api.manifest("v1", repo=repo)


def test_an_explicit_path_names_the_repository_top(project: Path, tmp_path: Path) -> None:
    assert api.read("datasets/images/img000.png", repo=str(project)) == b"this project's bytes"
    assert api.read("datasets/images/img000.png", repo=project, rev="v1") == b"this project's bytes"
    assert fsspec.filesystem("mlvc", repo=str(project), rev="v1").cat("datasets/images/img000.png") == \
        b"this project's bytes"
    with pytest.raises(NotARepoError, match="no .mlvc/config"):
        Repo.at(project / "datasets")
    with pytest.raises(NotARepoError, match="does not exist"):
        Repo.at(tmp_path / "nowhere")
    r = open_repo(None)
    assert r.root == project  # no repo=: the repository holding the cwd
    r.close()


def test_git_url_syntax_follows_git() -> None:
    assert all(is_git_url(u) for u in ["https://h/r.git", "git://127.0.0.1:9418/r", "file:///srv/r",
                                       "ssh://u@h/r", "u@host:org/r.git", "host:r"])
    assert not any(is_git_url(u) for u in ["../r", "/srv/r", "r", "./a:b", "C:\\r", "dir/a:b"])
