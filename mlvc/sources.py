"""Other repositories as sources: which repository a `repo=` argument names.

`open_repo(repo, rev)` is the one resolver every reader uses (`mlvc.open/read`, the `mlvc`
fsspec filesystem, `mlvc.torch.load_tensor`):

* None: the repository holding the current directory (searched upwards);
* a `Repo`: itself;
* a local path: exactly the repository whose top directory it is.  A mistyped path, a
  directory that is not a repository's top, or a URL taken as a path never falls back to
  the project that happens to enclose it.
"""

from __future__ import annotations

import os

from .errors import NotARepoError
from .git import is_git_url
from .repo import Repo


def open_repo(repo=None, rev: str | None = None) -> Repo:
    """The repository `repo` names (see the module doc), for reading revision `rev`.

    The caller closes what it did not pass in (`repo` not a `Repo`)."""
    if isinstance(repo, Repo):
        return repo
    if repo is None:
        return Repo.find()
    text = os.fspath(repo)
    if not isinstance(repo, os.PathLike) and is_git_url(text):
        raise NotARepoError(f"{text}: reading another repository by URL is not supported yet",
                            hint="clone it and pass its directory as repo=")
    return Repo.at(repo)


__all__ = ["open_repo"]
