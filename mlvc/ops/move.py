"""`mlvc mv SRC DST` and `mlvc rm PATH`: move or untrack an artifact.

`mv` writes the new pointer first (same id, size, role, meta and source: the objects do not
change, so every commit's history stays readable), then renames the workspace data, git-ignores
the new path, and only then removes the old pointer and its ignore entries: a crash in between
leaves two pointers naming the same objects, never a lost artifact.

`rm` removes the pointer and the ignore entries; the workspace data is deleted too unless
`keep_data` (then git sees it as untracked).  Data that differs from its pointer is never
deleted without `force`.  The cache keeps the objects (`mlvc gc` collects them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import shutil
from dataclasses import dataclass

from .. import pointer as pointers
from ..errors import ConflictError, PathError
from ..ignore import drop_excluded, drop_ignored, ensure_ignored
from .common import PathArg, Tracked, select

if TYPE_CHECKING:
    from ..repo import Repo


@dataclass
class MoveResult:
    src: str
    dst: str
    pointer: str  # the new pointer, repository-relative
    moved_data: bool  # False: the data was not in the workspace (only the pointer moved)


@dataclass
class RemoveResult:
    path: str
    pointer: str
    deleted_data: bool


def _one(repo: Repo, path: PathArg) -> Tracked:
    tracked = select(repo, [path])
    t = tracked[0]
    if t.ptr is None:
        raise t.parse_error
    return t


def _unsaved(repo: Repo, t: Tracked) -> str | None:
    from .status import MISSING, UNCHANGED, status

    for st in status(repo, [t.pointer_path], check_cache=False):
        if st.state not in (UNCHANGED, MISSING):
            return st.state
    return None


def move(repo: Repo, src: PathArg, dst: PathArg) -> MoveResult:
    """Move the artifact `src` (and its pointer) to `dst` (into it, when it is a directory)."""
    t = _one(repo, src)
    source = t.target
    target = repo.resolve_user_path(dst)
    if target.is_dir() and not pointers.pointer_path_for(target).exists():
        target = repo.resolve_user_path(target / source.name)
    new_pointer = pointers.pointer_path_for(target)
    if target == source:
        raise PathError(dst, "is where the artifact already is")
    if os.path.lexists(target) or new_pointer.exists():
        raise ConflictError(f"{repo.rel(target)}: already exists", hint="remove it, or choose another destination")
    if source in target.parents:
        raise PathError(dst, f"is inside the artifact {t.display}")
    if not target.parent.is_dir():
        raise PathError(dst, f"{repo.rel(target.parent)} is not a directory")
    ptr = t.pointer
    moved = pointers.PointerFile(target.name, ptr.kind, ptr.oid, ptr.size, ptr.files, ptr.chunker, ptr.role,
                                 dict(ptr.meta), ptr.source)
    fsync = repo.config.settings.fsync
    pointers.write(new_pointer, moved, fsync=fsync)
    has_data = os.path.lexists(source)
    try:
        if has_data:
            os.rename(source, target)
    except OSError:
        new_pointer.unlink()
        raise
    ensure_ignored(target)
    repo.keep_out_of_git([target])
    t.pointer_path.unlink()
    drop_ignored(source)
    if repo.exclude_file is not None:
        drop_excluded(repo.exclude_file, [repo.rel(source)])
    return MoveResult(t.display, repo.rel(target), repo.rel(new_pointer), has_data)


def remove(repo: Repo, path: PathArg, *, keep_data: bool = False, force: bool = False) -> RemoveResult:
    """Untrack the artifact `path`: its pointer and ignore entries go; its data too unless
    `keep_data` (refused when the data differs from the pointer, unless `force`)."""
    t = _one(repo, path)
    target = t.target
    has_data = os.path.lexists(target)
    if has_data and not keep_data and not force:
        state = _unsaved(repo, t)
        if state is not None:
            raise ConflictError(f"{t.display}: {state} in the workspace; rm would delete unsaved work",
                                hint=f"`mlvc add {t.display}` to save it, `mlvc rm --keep-data {t.display}` to "
                                     "keep the files, or --force")
    t.pointer_path.unlink()
    if has_data and not keep_data:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    drop_ignored(target)
    if repo.exclude_file is not None:
        drop_excluded(repo.exclude_file, [repo.rel(target)])
    return RemoveResult(t.display, t.rel_pointer, has_data and not keep_data)


__all__ = ["move", "remove", "MoveResult", "RemoveResult"]
