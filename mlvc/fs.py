"""An fsspec filesystem over one revision of an mlvc repository (protocol `mlvc`).

    import fsspec
    fs = fsspec.filesystem("mlvc", repo=".", rev="v1")
    fs.ls("data")                       # git's files and the tracked artifacts' files, with sizes
    fs.find("data", detail=True)
    with fs.open("checkpoints/model.pt") as f:
        state = torch.load(f)
    pandas.read_csv("mlvc://data/table.csv", storage_options={"repo": ".", "rev": "HEAD~3"})

Paths are relative to the repository root.  `rev` is any git revision; None
means the workspace's pointers and files.  Files of artifacts are read from the
cache, and what it lacks is fetched from `remote` (default: the default
remote), only the chunks a read touches.  The filesystem is read-only.

Listings come from git's tree plus one tree manifest per directory artifact
(whose entries carry sizes): listing a 100,000-file dataset reads one object,
not 100,000 file manifests.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any, NoReturn

from fsspec.spec import AbstractFileSystem

from .errors import MlvcError, PathError
from .ops.read import ARTIFACT, FileEntry, RevisionView
from .repo import Repo, RepoArg
from .sources import open_repo

Info = dict[str, Any]  # what fsspec says of a path: name, size, type, and mlvc's own fields


class _File(io.BufferedReader):
    """A buffered file over one version; closing it publishes fetched objects into the cache."""

    def __init__(self, raw: io.RawIOBase | io.BytesIO, fs: "MlvcFileSystem", path: str, size: int) -> None:
        super().__init__(raw, buffer_size=1 << 20)
        self._fs = fs
        self.path = path
        self.size = size

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            self._fs._flush()


class MlvcFileSystem(AbstractFileSystem):
    """Read-only view of revision `rev` of the mlvc repository `repo` (a `Repo`, or the path of a
    repository's top directory: never a repository found above it)."""

    protocol = "mlvc"
    root_marker = ""
    cachable = False  # a branch or HEAD moves: a new filesystem object sees the new commit

    def __init__(self, repo: RepoArg = None, rev: str | None = None, remote: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._owns_repo = not isinstance(repo, Repo)
        self.repo = open_repo(repo, rev)
        self.rev = rev
        self.view = RevisionView(self.repo, rev, remote)
        self._lock = threading.RLock()
        self._children: dict[str, dict[str, FileEntry | None]] | None = None

    # ------------------------------------------------------------------ paths
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:  # a path (str) or a list of them, as fsspec passes
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path)
        if path.startswith("mlvc://"):
            path = path[len("mlvc://"):]
        return path.replace("\\", "/").strip("/").removeprefix("./")

    def _parent(self, path: str) -> str:
        path = self._strip_protocol(path)
        return path.rsplit("/", 1)[0] if "/" in path else ""

    # ------------------------------------------------------------------ metadata
    def _file_info(self, e: FileEntry) -> Info:
        info: Info = {"name": e.path, "size": self.view.size(e), "type": "file", "source": e.source}
        if e.source == ARTIFACT:
            info["id"] = e.ref
            info["artifact"] = e.artifact
        elif e.ref and e.source == "git":
            info["sha"] = e.ref
        if e.executable:
            info["executable"] = True
        return info

    @staticmethod
    def _dir_info(path: str) -> Info:
        return {"name": path, "size": 0, "type": "directory"}

    def _index(self) -> dict[str, dict[str, FileEntry | None]]:
        """{directory: {child name: info}} over the whole revision (built once)."""
        with self._lock:
            if self._children is None:
                children: dict[str, dict[str, FileEntry | None]] = {d: {} for d in self.view.directories()}
                for path, e in self.view.listing().items():
                    parent, _, _name = path.rpartition("/")
                    children[parent][path] = e
                for d in children:
                    if d:
                        parent = d.rpartition("/")[0]
                        children[parent][d] = None
                self._children = children
            return self._children

    def info(self, path: str, **kwargs: Any) -> Info:
        rel = self._strip_protocol(path)
        with self._lock:
            try:
                return self._file_info(self.view.entry(rel))
            except PathError:
                if self.view.is_dir(rel):
                    return self._dir_info(rel)
                raise FileNotFoundError(path) from None

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Info] | list[str]:
        rel = self._strip_protocol(path)
        index = self._index()
        if rel not in index:
            info = self.info(rel)  # a file lists as itself; FileNotFoundError otherwise
            return [info] if detail else [info["name"]]
        with self._lock:
            out = [self._dir_info(name) if e is None else self._file_info(e)
                   for name, e in sorted(index[rel].items())]
        return out if detail else [i["name"] for i in out]

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> dict[str, Info] | list[str]:
        rel = self._strip_protocol(path)
        index = self._index()
        if rel not in index:
            try:
                info = self.info(rel)
            except FileNotFoundError:
                return {} if detail else []
            return {rel: info} if detail else [rel]
        prefix = rel + "/" if rel else ""
        base_depth = rel.count("/") + 1 if rel else 0
        found: dict[str, Info] = {}
        with self._lock:
            for p, e in self.view.listing().items():
                if not p.startswith(prefix):
                    continue
                if maxdepth is not None and p.count("/") - base_depth + 1 > maxdepth:
                    continue
                found[p] = self._file_info(e) if detail else {"name": p, "type": "file"}
            if withdirs:
                for d in index:
                    if d.startswith(prefix) and d != rel and (
                            maxdepth is None or d.count("/") - base_depth + 1 <= maxdepth):
                        found[d] = self._dir_info(d)
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    # ------------------------------------------------------------------ reading
    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> _File:
        if mode != "rb":
            raise PermissionError(f"{path}: the mlvc filesystem is read-only (mode {mode!r})")
        rel = self._strip_protocol(path)
        with self._lock:
            try:
                e = self.view.entry(rel)
            except PathError as exc:
                if self.view.is_dir(rel):
                    raise IsADirectoryError(path) from None
                raise FileNotFoundError(f"{path}: {exc.reason}") from None
            raw = self.view.open_raw(e)
            return _File(raw, self, rel, self.view.size(e))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        with self._open(path) as f:
            size = f.size
            start = 0 if start is None else (start if start >= 0 else max(0, size + start))
            end = size if end is None else (end if end >= 0 else max(0, size + end))
            f.seek(start)
            return f.read(max(0, end - start))

    def _flush(self) -> None:
        with self._lock:
            try:
                self.view.source.flush()
            except MlvcError:
                pass  # caching what was fetched is an optimisation; the read itself succeeded

    def close(self) -> None:
        """Publish fetched objects and release the repository."""
        with self._lock:
            self.view.close()
            if self._owns_repo:
                self.repo.close()

    # ------------------------------------------------------------------ read-only
    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionError("the mlvc filesystem is read-only: change files in the workspace and `mlvc add`")

    mkdir = makedirs = rm = rm_file = rmdir = mv = cp_file = put_file = pipe_file = touch = _readonly


__all__ = ["MlvcFileSystem"]
