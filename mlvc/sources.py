"""Other repositories as sources: which repository a `repo=` argument names, and a local
mirror of each repository given by URL.

`open_repo(repo, rev)` is the one resolver every reader uses (`mlvc.open/read`, the `mlvc`
fsspec filesystem, `mlvc.torch.load_tensor`):

* None: the repository holding the current directory (searched upwards);
* a `Repo`: itself;
* a local path: exactly the repository whose top directory it is.  A mistyped path, or a
  directory that is not a repository's top, never falls back to the project that happens
  to enclose it;
* a git URL (anything git accepts: `https://`, `ssh://`, `git://`, `file://`, `user@host:path`)
  or a bare repository's directory: that repository at `rev` (None: its HEAD), read through
  a mirror (`open_source`).

A source is mirrored once per URL in the user's cache (`$MLVC_CACHE_HOME`, else
`$XDG_CACHE_HOME/mlvc`, else `~/.cache/mlvc`): `sources/<key>/.git`, a bare repository the
system git fetches into with the user's own credentials; shallow (one commit) when the
revision is a name or a full id, the whole history when it is a relative one (`main~2`) or
an abbreviated id.  Every use fetches again (a full commit id already present excepted), under
an flock per mirror, so concurrent processes never fetch into one mirror at once; a new
mirror is initialised in a temp directory and renamed into place.

The source's remote, where its artifacts' objects are, comes from its `.mlvc/config`
committed at that commit.  Secrets in it are ignored: credentials come from this user's
environment (`MLVC_REMOTE_<NAME>_*`, the AWS chain).  A remote that is a relative directory
resolves against the source's directory when the source is on this machine, and is refused
otherwise.  Objects fetched for reading are kept in `<cache home>/objects`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .atomic import TempNames, sweep, temp_path
from .config import Config
from .errors import RemoteNotFoundError, RevisionError, SourceError
from .git import GitRepo, is_git_url
from .gitcli import GitTransportError, run_git_dir
from .hashing import digest
from .repo import MLVC_DIR, Repo, RepoArg

if TYPE_CHECKING:
    from .remote.config import RemoteDef
    from .store.packstore import PackStore

CACHE_ENV = "MLVC_CACHE_HOME"
HEAD_REF = "refs/mlvc/head"  # the source's HEAD; the mirror's own HEAD points at it
WANT_REF = "refs/mlvc/want"  # the commit a shallow fetch brought
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
_FULL_MARK = "mlvc-full-history"


def cache_home() -> Path:
    """The user's mlvc cache directory (mirrors, objects read from sources)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(os.path.expanduser(env)).absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mlvc"


@dataclass(frozen=True)
class SourceURL:
    """A source repository's location."""

    url: str  # as the user gave it
    fetch_url: str  # what git is given (a local path made absolute)
    local_dir: Path | None  # the source's directory when it is on this machine

    @property
    def key(self) -> str:
        return digest(self.fetch_url.encode("utf-8", "surrogateescape")).hex()[:24]


def parse_source(url: str | os.PathLike[str], base: Path | None = None) -> SourceURL:
    """A source location from a git URL or a local path (relative to `base`, default the cwd)."""
    text = os.fspath(url)
    if not text or text.startswith("-") or "\0" in text or "\n" in text:
        raise SourceError(repr(text), "is not a git URL or a directory path")
    if not isinstance(url, os.PathLike) and is_git_url(text):
        parts = urlsplit(text)
        local = Path(unquote(parts.path)) if parts.scheme == "file" else None
        return SourceURL(text, text, local)
    path = Path(os.path.expanduser(text))
    path = Path(os.path.abspath(path if path.is_absolute() else (base or Path.cwd()) / path))
    # a work tree's `.git`: its remotes are relative to the work tree, as committed
    return SourceURL(text, str(path), path.parent if path.name == ".git" else path)


class Mirror:
    """The bare mirror of one source URL in the user's cache."""

    def __init__(self, source: SourceURL, home: Path | None = None):
        self.source = source
        base = (home or cache_home()) / "sources"
        self.dir = base / source.key
        self.git_dir = self.dir / ".git"
        self._lock_path = base / f"{source.key}.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure(self) -> None:
        if self.git_dir.is_dir():
            return
        sweep(self.dir.parent, TempNames.of(self.dir))  # a killed process's half-made mirror
        tmp = temp_path(self.dir)
        try:
            (tmp / ".git").mkdir(parents=True)
            run_git_dir(tmp / ".git", "init", "--quiet", "--bare")
            run_git_dir(tmp / ".git", "symbolic-ref", "HEAD", HEAD_REF)
            run_git_dir(tmp / ".git", "config", "mlvc.url", self.source.fetch_url)
            if self.dir.exists():  # a mirror left half-made by a process killed mid-rename
                shutil.rmtree(self.dir)
            os.rename(tmp, self.dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _fetch(self, *refspecs: str, shallow: bool) -> None:
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--force"]
        if shallow and not (self.git_dir / _FULL_MARK).exists():
            args.append("--depth=1")
        elif not shallow and (self.git_dir / "shallow").exists():
            args.append("--unshallow")
        # A URL may come from a committed pointer: git's `ext::` transport (a shell command) stays off.
        run_git_dir(self.git_dir, "-c", "protocol.ext.allow=never", *args, "--", self.source.fetch_url, *refspecs)

    def _fetch_all(self) -> None:
        self._fetch("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", shallow=False)
        (self.git_dir / _FULL_MARK).touch()
        try:
            self._fetch(f"+HEAD:{HEAD_REF}", shallow=False)
        except GitTransportError:
            pass  # a source whose HEAD names no branch: its refs are all there is

    def _commit_of(self, ref: str) -> str | None:
        try:
            out = run_git_dir(self.git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options",
                              f"{ref}^{{commit}}")
        except GitTransportError:
            return None
        return out.strip() or None

    def resolve(self, rev: str | None = None) -> str:
        """Fetch what `rev` (None: the source's HEAD) needs; return the full id of its commit."""
        url = self.source.url
        with self._locked():
            self._ensure()
            if rev is not None and _FULL_SHA.fullmatch(rev):
                known = self._commit_of(rev.lower())
                if known is not None:
                    return known  # a commit never changes: no fetch
            plain = rev is None or not re.search(r"[~^:]", rev) and not rev.startswith("-")
            if plain and not (rev is not None and 4 <= len(rev) < 40 and re.fullmatch(r"[0-9a-fA-F]+", rev)):
                refspec = f"+HEAD:{HEAD_REF}" if rev in (None, "HEAD") else f"+{rev}:{WANT_REF}"
                try:
                    self._fetch(refspec, shallow=True)
                except GitTransportError:
                    pass  # a name the source lacks, or a server refusing ids: fetch everything
                else:
                    sha = self._commit_of(HEAD_REF if rev in (None, "HEAD") else WANT_REF)
                    if sha is not None:
                        return sha
            try:
                self._fetch_all()
            except GitTransportError as exc:
                raise SourceError(url, f"cannot be fetched: {exc}",
                                  hint="check the URL and that `git ls-remote URL` works with your "
                                       "credentials") from None
            with GitRepo(self.dir) as g:
                try:
                    return g.resolve(rev or "HEAD")
                except RevisionError:
                    raise RevisionError(f"unknown revision '{rev or 'HEAD'}' in {url}",
                                        hint=f"run `git ls-remote {url}` to see its branches and tags") from None


class SourceRepo(Repo):
    """Another repository at one commit, read through its mirror; objects come from its remote
    (as its committed config names it) and are kept in `cache_dir`."""

    pinned_rev: str
    origin: str

    def __init__(self, source: SourceURL, mirror: Mirror, sha: str, cache_dir: Path,
                 store: PackStore | None = None) -> None:
        super().__init__(mirror.dir)
        self.source = source
        self.mirror = mirror
        self.origin = source.url
        self.pinned_rev = sha
        self._cache_dir = cache_dir
        self._borrowed = store  # a project's cache (import, update, pull): used, never closed here
        if store is not None:
            self.__dict__["store"] = store

    @cached_property
    def cache_dir(self) -> Path:
        return self._cache_dir

    def close(self) -> None:
        if self._borrowed is not None:
            self.__dict__.pop("store", None)
        super().close()

    @cached_property
    def config(self) -> Config:
        with GitRepo(self.root) as g:
            blob = g.read_blob(self.pinned_rev, f"{MLVC_DIR}/config")
        return Config.committed(blob, f"{self.origin}: {MLVC_DIR}/config at {self.pinned_rev[:12]}")

    def remote_def(self, name: str | None = None) -> RemoteDef:
        from .remote.config import is_local_url

        try:
            rdef = super().remote_def(name)
        except RemoteNotFoundError as exc:
            raise SourceError(self.origin, f"names no remote to fetch its artifacts from ({exc})",
                              hint="push the source's artifacts to a remote and commit its .mlvc/config "
                                   "there") from None
        url = os.path.expanduser(rdef.url)
        if is_local_url(rdef.url) and not rdef.url.startswith("file:") and not os.path.isabs(url):
            if self.source.local_dir is None:
                raise SourceError(self.origin, f"its remote {rdef.name!r} is the relative directory "
                                               f"{rdef.url!r}, reachable only beside the source",
                                  hint="give the source an absolute or network remote")
            rdef.resolved_url = os.path.normpath(self.source.local_dir / url)
        return rdef


def open_source(url: str | os.PathLike[str], rev: str | None = None, *, base: Path | None = None,
                into: Repo | None = None) -> SourceRepo:
    """The repository at `url` (a git URL or a directory, relative to `base`) at `rev` (None: its
    HEAD), mirrored and fetched now.  Objects read from it are kept in the user's cache, or in
    the project `into`'s cache (imports)."""
    source = parse_source(url, base)
    if source.local_dir is not None and not source.local_dir.exists():
        raise SourceError(source.url, "no such directory")
    mirror = Mirror(source)
    sha = mirror.resolve(rev)
    if into is not None:
        return SourceRepo(source, mirror, sha, into.cache_dir, store=into.store)
    return SourceRepo(source, mirror, sha, cache_home() / "objects")


def recorded_url(url: str, project_root: Path) -> str:
    """How a pointer records a source URL: git URLs as given, a local path relative to the
    project's top (so clones beside the same registry agree), resolved against it again by
    `open_source(url, base=project_root)`."""
    if is_git_url(url):
        return url
    absolute = Path(os.path.abspath(os.path.expanduser(url)))
    return Path(os.path.relpath(absolute, project_root)).as_posix()


def _is_bare_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def open_repo(repo: RepoArg = None, rev: str | None = None) -> Repo:
    """The repository `repo` names (see the module doc), for reading revision `rev`.

    The caller closes what it did not pass in (`repo` not a `Repo`)."""
    if isinstance(repo, Repo):
        return repo
    if repo is None:
        return Repo.find()
    text = os.fspath(repo)
    if not isinstance(repo, os.PathLike) and is_git_url(text):
        return open_source(text, rev)
    path = Path(os.path.expanduser(text))
    if not (path / MLVC_DIR / "config").is_file() and _is_bare_git_dir(path):
        return open_source(repo, rev)
    return Repo.at(repo)


__all__ = ["open_repo", "open_source", "SourceRepo", "Mirror", "parse_source", "cache_home", "recorded_url"]
