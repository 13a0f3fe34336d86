"""Shared fixtures: real git repositories in temp dirs, an mlvc CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import GIT_ENV, CliResult, git, mlvc_cli


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def repo_dir(tmp_path, monkeypatch) -> Path:
    """A fresh git repository with `mlvc init` done; the cwd is set to it."""
    d = tmp_path / "repo"
    d.mkdir()
    git(d, "init", "-q", "-b", "main")
    monkeypatch.chdir(d)
    from mlvc.repo import Repo

    Repo.init(d)
    return d


@pytest.fixture
def cli(repo_dir):
    def run(*args: str, **kw) -> CliResult:
        return mlvc_cli(repo_dir, *args, **kw)

    return run
