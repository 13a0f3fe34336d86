"""Git trees, read through dulwich for the history walk: repository paths split into tree
names, watched paths as a trie, tree objects cached by id, and whether two trees differ
under the watched paths (`GitRepo.walk(paths=...)`: the cost follows the watched paths,
not the trees' sizes).  With `mlvc.git`, the only modules that import dulwich.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from dulwich.object_store import BaseObjectStore
from dulwich.objects import ObjectID, Tree

from .errors import PathError

_TREE_CACHE_LIMIT = 4096


def split_repo_path(relpath: str | os.PathLike[str]) -> list[bytes]:
    text = os.fspath(relpath).replace("\\", "/")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts == (".",):
        raise PathError(relpath, "not a repository-relative file path")
    return [part.encode("utf-8", "surrogateescape") for part in path.parts if part != "."]


@dataclass
class PathTrie:
    """Watched paths as a tree of name components; `terminal` marks a watched path."""

    terminal: bool = False
    children: dict[bytes, PathTrie] = field(default_factory=dict)

    @classmethod
    def build(cls, paths: Iterable[str]) -> PathTrie:
        root = cls()
        for path in paths:
            node = root
            for part in split_repo_path(path):
                node = node.children.setdefault(part, cls())
            node.terminal = True
        return root


class TreeCache:
    """Tree objects by sha; consecutive commits share most subtrees."""

    def __init__(self, store: BaseObjectStore):
        self._store = store
        self._trees: dict[bytes, Tree | None] = {}

    def get(self, sha: bytes | None) -> Tree | None:
        if sha is None:
            return None
        if sha not in self._trees:
            if len(self._trees) >= _TREE_CACHE_LIMIT:
                self._trees.clear()
            try:
                obj = self._store[ObjectID(sha)]
            except KeyError:
                obj = None
            self._trees[sha] = obj if isinstance(obj, Tree) else None
        return self._trees[sha]


def trees_differ(trees: TreeCache, new_sha: bytes | None, old_sha: bytes | None,
                  node: PathTrie) -> bool:
    """Whether any watched path below `node` differs between two trees.

    Only the watched names are looked up and equal subtree ids are skipped, so
    the cost is proportional to the watched paths, not to the tree sizes.
    """
    if new_sha == old_sha:
        return False
    new_tree, old_tree = trees.get(new_sha), trees.get(old_sha)
    for name, child in node.children.items():
        new_entry, old_entry = _entry(new_tree, name), _entry(old_tree, name)
        if new_entry == old_entry:
            continue
        if child.terminal:
            return True
        if trees_differ(trees, _subtree(new_entry), _subtree(old_entry), child):
            return True
    return False


def _entry(tree: Tree | None, name: bytes) -> tuple[int, bytes] | None:
    if tree is None:
        return None
    try:
        mode, sha = tree[name]
    except KeyError:
        return None
    return mode, sha


def _subtree(entry: tuple[int, bytes] | None) -> bytes | None:
    return entry[1] if entry is not None and stat.S_ISDIR(entry[0]) else None


__all__ = ["PathTrie", "TreeCache", "trees_differ", "split_repo_path"]
