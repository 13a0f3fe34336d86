"""Where a git work tree and its git directory are: file reads only (no git process, no dulwich),
the one implementation `mlvc.repo` (every command) and `mlvc.git` both use."""

from __future__ import annotations

import os
from pathlib import Path


def find_git_root(start: Path) -> Path | None:
    """The top of the git work tree holding `start` (the nearest directory with a `.git`), or None."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def git_common_dir(root: Path) -> Path | None:
    """The git directory shared by all worktrees of the repository whose work tree is `root`.

    A linked worktree (`git worktree add`) has a `.git` *file* naming its private git dir,
    which holds a `commondir` file naming the shared one.  Read from those files: no git
    process per command."""
    dotgit = root / ".git"
    if dotgit.is_dir():
        return dotgit
    try:
        text = dotgit.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    private = Path(text[len("gitdir:"):].strip())
    private = private if private.is_absolute() else (root / private)
    try:
        common = (private / "commondir").read_text().strip()
    except OSError:
        return private
    common_path = Path(common)
    return Path(os.path.normpath(common_path if common_path.is_absolute() else private / common_path))


def main_worktree_root(root: Path) -> Path:
    """The main work tree of the repository `root` belongs to (`root` itself unless it is a
    linked worktree)."""
    common = git_common_dir(root)
    if common is None or common == root / ".git" or common.name != ".git":
        return root
    return common.parent


def linked_worktrees(main_root: Path) -> list[Path]:
    """Work trees added with `git worktree add` to the repository whose main work tree is `main_root`."""
    out: list[Path] = []
    try:
        names = sorted(os.listdir(main_root / ".git" / "worktrees"))
    except OSError:
        return out
    for name in names:
        try:
            gitfile = Path((main_root / ".git" / "worktrees" / name / "gitdir").read_text().strip())
        except OSError:
            continue
        if gitfile.name == ".git" and gitfile.parent.is_dir():
            out.append(gitfile.parent)
    return out
