"""Which artifacts a transfer covers: the one `Selection` that push, fetch, pull and verify take
(the CLI and the API build it from their options), and what it resolves to (`Selected`).

The workspace's pointers, optionally narrowed by paths; or, with `revs` / `all_commits` /
`all_branches`, the pointers stored in those commits, read from git's object database without
checking anything out (the workspace's too with `workspace=True`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from .. import pointer as pointers
from ..errors import MlvcError, PathError
from ..store.types import Artifact, TransferResult
from .common import Tracked, path_selected, select, wanted_paths

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..repo import Repo


@dataclass(frozen=True)
class Selection:
    """The artifacts an operation covers (all defaults: every artifact of the workspace)."""

    paths: tuple[str | os.PathLike[str], ...] = ()  # artifacts, or paths inside directory artifacts
    revs: tuple[str, ...] = ()  # commits whose pointers are selected (as committed)
    all_commits: bool = False  # every commit reachable from any ref
    all_branches: bool = False  # every branch head
    workspace: bool | None = None  # the workspace's pointers too (None: only without revisions)

    @classmethod
    def of(cls, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None, *,
           revs: Iterable[str] | None = (), all_commits: bool = False, all_branches: bool = False,
           workspace: bool | None = None) -> Selection:
        """From the API's and the CLI's arguments: one path, several, or None for all."""
        if paths is None:
            chosen: tuple[str | os.PathLike[str], ...] = ()
        elif isinstance(paths, (str, os.PathLike)):
            chosen = (paths,)
        else:
            chosen = tuple(paths)
        return cls(chosen, tuple(revs or ()), bool(all_commits), bool(all_branches), workspace)

    @property
    def uses_revisions(self) -> bool:
        return bool(self.revs) or self.all_commits or self.all_branches

    @property
    def includes_workspace(self) -> bool:
        return self.workspace if self.workspace is not None else not self.uses_revisions


class Selected(NamedTuple):
    """What a selection resolved to: the artifacts, the pointers that could not be read (by
    name), and for fetch's files of a directory artifact the path each was selected by."""

    artifacts: list[Artifact]
    errors: dict[str, MlvcError]
    within: dict[str, str]


def revision_shas(repo: Repo, selection: Selection) -> tuple[list[str], GitRepo]:
    """The commits the selection names (each once, in order) and the open GitRepo (the caller closes it)."""
    from ..git import GitRepo

    if not repo.has_git:
        raise MlvcError("--rev, --all-commits and --all-branches need a git repository")
    git = GitRepo(repo.root)
    try:
        shas: list[str] = [git.resolve(r) for r in selection.revs]
        if selection.all_branches:
            shas.extend(git.branch_heads().values())
        if selection.all_commits:
            shas.extend(c.sha for c in git.all_commits())
        return list(dict.fromkeys(shas)), git
    except BaseException:
        git.close()
        raise


def select_artifacts(repo: Repo, selection: Selection, *,
                     narrow: Callable[[Tracked], list[Artifact]] | None = None) -> Selected:
    """The artifacts to transfer and the pointers that could not be read.

    Artifacts with the same content (same root id) are transferred once.  A workspace path
    inside a directory artifact selects that artifact; `narrow(tracked)`, when given, turns
    it into the artifacts to transfer instead (fetch: just that file's objects).
    """
    paths = list(selection.paths)
    use_revs = selection.uses_revisions
    workspace = selection.includes_workspace
    arts: list[Artifact] = []
    errors: dict[str, MlvcError] = {}
    seen: set[tuple[int, bytes]] = set()
    names: set[str] = set()

    def add(art: Artifact) -> None:
        key = art.root
        if key in seen and (art.pointer_path is None or art.name in names):
            return  # the same content at another commit (or named twice): transferred once
        seen.add(key)
        names.add(art.name)
        arts.append(art)

    wanted = wanted_paths(repo, paths)  # the rule every command that takes artifact paths uses
    if workspace:
        tracked = select(repo, paths, within=True) if (paths and not use_revs) else select(repo)
        for t in tracked:
            if use_revs and not path_selected(t.display, wanted):
                continue
            if t.ptr is None:
                errors[t.display] = t.parse_error
                continue
            if t.inner and narrow is not None:
                try:
                    for art in narrow(t):
                        add(art)
                except MlvcError as exc:
                    errors[t.shown] = exc
                continue
            add(Artifact(t.display, t.ptr, t.pointer_path))
    if use_revs:
        shas, git = revision_shas(repo, selection)
        found_any = False
        try:
            for sha in shas:
                for p in pointers.pointers_at(git, sha, label=sha[:8]):
                    if p.ptr is None:
                        if path_selected(p.path, wanted):
                            errors[f"{p.rel_pointer}@{sha[:8]}"] = p.parse_error
                        continue
                    if not path_selected(p.path, wanted):
                        continue
                    found_any = True
                    name = p.path if p.path not in names else f"{p.path}@{sha[:8]}"
                    add(Artifact(name, p.ptr, None))
        finally:
            git.close()
        if wanted and not found_any and not arts:
            raise PathError(", ".join(str(p) for p in paths), "is not tracked by mlvc in the selected commits")
    return Selected(arts, errors, {})


def add_errors(result: TransferResult, errors: dict[str, MlvcError]) -> None:
    for name, exc in errors.items():
        result.fail(name, exc)
