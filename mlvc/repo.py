"""Find the repository and hand out its parts (config, cache, hash cache)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Union

from .chunking import ChunkerParams
from .config import Config
from .gitcli import find_git_root, git_common_dir, main_worktree_root
from .errors import NotARepoError, PathError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .remote.config import RemoteDef
    from .store.hashcache import HashCache
    from .store.packstore import PackStore
    from .store.state import StateDB

RepoArg = Union["Repo", str, "os.PathLike[str]", None]
"""Which repository an API call means: a `Repo`, a path in one, or None (the one around the
working directory)."""

MLVC_DIR = ".mlvc"
GITIGNORE = """\
# mlvc: local cache, temp files and state are never committed
/cache
/tmp
/state
/config.local
"""


class Repo:
    # A repository read as another project's source (`mlvc.sources.SourceRepo`) is opened at one
    # commit: `pinned_rev` is that commit and `origin` its URL; None for a local work tree.
    pinned_rev: str | None = None
    origin: str | None = None

    def __init__(self, root: Path):
        self.root = root
        self.dot = root / MLVC_DIR

    @classmethod
    def find(cls, start: str | os.PathLike[str] | None = None) -> "Repo":
        start = Path(start or os.getcwd()).absolute()
        for d in (start, *start.parents):
            if (d / MLVC_DIR / "config").is_file():
                return cls(d)
        raise NotARepoError(f"not an mlvc repository (no {MLVC_DIR}/config in {start} or its parents)",
                            hint="run `mlvc init` at the top of your git repository")

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> "Repo":
        """The repository whose top directory is exactly `path` (an explicit `repo=`).

        Unlike `find`, nothing is searched upwards: a URL, a mistyped path or a directory inside
        some other project is refused, never taken as the project that happens to enclose it."""
        from .git import is_git_url

        text = os.fspath(path)
        if not isinstance(path, os.PathLike) and is_git_url(text):
            raise NotARepoError(f"{text}: a URL, not a local repository",
                                hint="read another repository with `mlvc get`/`mlvc ls`, or "
                                     "`mlvc.open(path, repo=URL)`")
        root = Path(os.path.expanduser(text)).absolute()
        if (root / MLVC_DIR / "config").is_file():
            return cls(root)
        if not root.exists():
            reason = "does not exist"
        elif not root.is_dir():
            reason = "is not a directory"
        else:
            reason = f"is not the top of an mlvc repository (no {MLVC_DIR}/config in it)"
        raise NotARepoError(f"repo {text}: {reason}",
                            hint="repo= names a repository's top directory (or a git URL, for reads)")

    @classmethod
    def init(cls, path: Path | str | None = None, *, no_scm: bool = False, force: bool = False) -> "Repo":
        root = Path(path or os.getcwd()).absolute()
        if not root.is_dir():
            raise PathError(root, "not a directory")
        if not no_scm:
            git_root = find_git_root(root)
            if git_root is None:
                raise NotARepoError(f"{root} is not inside a git work tree",
                                    hint="run `git init` first, or `mlvc init --no-scm` to use mlvc without git")
            root = git_root
        dot = root / MLVC_DIR
        if (dot / "config").exists() and not force:
            return cls(root)
        dot.mkdir(exist_ok=True)
        (dot / ".gitignore").write_text(GITIGNORE)
        config = dot / "config"
        if not config.exists():
            Config.write(config, {"core": {"compression_level": 3}, "remotes": {}})
        repo = cls(root)
        repo.cache_dir.mkdir(parents=True, exist_ok=True)
        return repo

    # ---------------------------------------------------------------- parts
    @cached_property
    def config(self) -> Config:
        main = main_worktree_root(self.root) if self.has_git else self.root
        return Config(self.dot / "config", self.dot / "config.local",
                      main / MLVC_DIR / "config.local" if main != self.root else None)

    @property
    def has_git(self) -> bool:
        return (self.root / ".git").exists()

    @cached_property
    def exclude_file(self) -> Path | None:
        """This clone's own ignore file, `info/exclude` of the git directory its worktrees share
        (`mlvc.ignore.keep_excluded`); None without git."""
        common = git_common_dir(self.root) if self.has_git else None
        return common / "info" / "exclude" if common is not None else None

    def keep_out_of_git(self, targets: Iterable[Path]) -> None:
        """Keep these artifact paths (absolute) ignored in this clone at every commit."""
        if self.exclude_file is not None:
            from .ignore import keep_excluded

            keep_excluded(self.exclude_file, [self.rel(Path(t)) for t in targets])

    @cached_property
    def cache_dir(self) -> Path:
        # A linked worktree shares its main work tree's cache: same repository, same objects
        # (the cache dir its main work tree's config.local sets, relative to that work tree).
        main = main_worktree_root(self.root) if self.has_git else self.root
        if (self.dot / "config").exists():
            for configured, base in ((self.config.own("cache", "dir"), self.root),
                                     (self.config.settings.cache_dir, main)):
                if configured:
                    p = Path(os.path.expanduser(configured))
                    return p if p.is_absolute() else (base / p)
        return main / MLVC_DIR / "cache"

    @property
    def state_dir(self) -> Path:
        return self.dot / "state"

    @cached_property
    def store(self) -> PackStore:
        """The local cache: a `PackStore` on the cache directory."""
        from .store.local import LocalBackend
        from .store.packstore import PackStore, Role
        from .store.shared_cache import register_user

        settings = self.config.settings
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # reported by the first write, with the cache's name
        store = PackStore(LocalBackend(self.cache_dir), role=Role.CACHE, scratch=self.cache_dir / "tmp",
                          marks=self.cache_dir / "complete.sqlite", merged_dir=self.cache_dir / "merged",
                          fsync=settings.fsync, level=settings.compression_level, pack_size=settings.pack_size)
        # Every repository that uses a cache says so inside it, so a gc run from any of them
        # keeps what all of them need (worktrees count as their main repository).
        register_user(store.backend, main_worktree_root(self.root))
        return store

    def remote_store(self, name: str | None = None, *, jobs: int | None = None,
                     create: bool = False) -> tuple[RemoteDef, PackStore]:
        """(definition, `PackStore`) of a configured remote (default: the default remote).

        Its downloaded indexes live in the cache (`remotes/<url key>/`), its scratch packs in
        the cache's tmp dir, so a killed transfer leaves nothing elsewhere."""
        from .hashing import digest
        from .store.packstore import PackStore, Role

        rdef = self.remote_def(name)
        backend = rdef.backend()
        if create:
            backend.ensure_base()
        settings = self.config.settings
        store = PackStore(backend, role=Role.REMOTE, scratch=self.cache_dir / "tmp", name=f"remote {rdef.name}",
                          index_cache=self.cache_dir / "remotes" / digest(rdef.resolved_url.encode()).hex()[:20],
                          level=settings.compression_level, pack_size=settings.remote_pack_size,
                          jobs=jobs or rdef.default_jobs())
        return rdef, store

    def remote_def(self, name: str | None = None) -> RemoteDef:
        """The definition of a configured remote (default: the default remote), secrets merged."""
        from .remote.config import load_remote

        return load_remote(self, name)

    @cached_property
    def hash_cache(self) -> HashCache:
        from .store.hashcache import HashCache

        return HashCache(self.state_dir / "hashes.sqlite")

    @cached_property
    def state(self) -> StateDB:
        """Workspace state (directory stat signatures); what the cache holds is the store's own."""
        from .store.state import StateDB

        return StateDB(self.state_dir / "state.sqlite")

    @property
    def chunker(self) -> ChunkerParams:
        return self.config.settings.chunker

    def close(self) -> None:
        for name in ("store", "hash_cache", "state"):
            part = self.__dict__.pop(name, None)
            if part is not None:
                part.close()

    # ---------------------------------------------------------------- paths
    def rel(self, path: Path) -> str:
        """Repo-relative POSIX path of an absolute path inside the repo."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def resolve_user_path(self, path: str | os.PathLike[str]) -> Path:
        """Absolute, normalised path of a user-given path, which must stay inside the repo.

        The final component is not resolved (so a symlink is seen as a symlink);
        its parent is, so `link/../..` tricks cannot leave the repository.
        """
        raw = Path(path)
        ab = Path(os.path.abspath(raw if raw.is_absolute() else Path(os.getcwd()) / raw))
        parent_real = Path(os.path.realpath(ab.parent))
        root_real = Path(os.path.realpath(self.root))
        candidate = parent_real / ab.name if ab != ab.parent else parent_real
        try:
            candidate.relative_to(root_real)
        except ValueError:
            raise PathError(path, f"is outside the repository {self.root}") from None
        rel = candidate.relative_to(root_real)
        if rel == Path("."):
            raise PathError(path, "is the repository root; add its subdirectories instead")
        first = rel.parts[0]
        if first in (".git", MLVC_DIR):
            raise PathError(path, f"is inside {first}/, which mlvc never tracks")
        return self.root / rel
