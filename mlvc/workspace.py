"""The workspace side of an artifact: scanning files and knowing their ids cheaply.

Symlink policy (docs/concepts/workspace.md): mlvc stores bytes, not links.  A
symlink given to `add`, or found inside an added directory, is refused with a
clear error rather than silently followed (it may point outside the repo) or
silently dropped.  Other special files (fifos, sockets, devices) likewise.
"""

from __future__ import annotations

import os
import stat as statmod
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import FileChangedError, LinksRefusedError, PathError
from .hashing import hasher
from .safepath import is_restore_temp

READ_BLOCK = 4 * 1024 * 1024
RACY_NS = 20_000_000  # same rule as the hash cache


@dataclass(frozen=True, slots=True)
class FileStat:
    rel: str  # POSIX path relative to the artifact root ("" for a single-file artifact)
    fspath: str  # absolute path as text: building 100,000 Path objects would dominate `status`
    size: int
    mtime_ns: int
    ino: int
    executable: bool

    @property
    def path(self) -> Path:
        return Path(self.fspath)

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.size, self.mtime_ns, self.ino)


def _file_stat(rel: str, path, st: os.stat_result) -> FileStat:
    return FileStat(rel, os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino, bool(st.st_mode & 0o111))


MAX_LINKS_NAMED = 5  # a refusal names this many links, then counts the rest


def _links_refused(display: str, links: list[tuple[str, str]], following: bool) -> LinksRefusedError:
    shown = ", ".join(f"{rel or display} -> {dest}" for rel, dest in links[:MAX_LINKS_NAMED])
    more = f" and {len(links) - MAX_LINKS_NAMED} more" if len(links) > MAX_LINKS_NAMED else ""
    n = f"{len(links)} symlink{'s' if len(links) != 1 else ''}"
    if following:
        verb = "points" if len(links) == 1 else "point"
        return LinksRefusedError(display, f"{n} {verb} outside the repository (or nowhere, or into .git/.mlvc): "
                                 f"{shown}{more}; mlvc never reads outside the repository",
                                 links=[r for r, _ in links], hint="replace them by copies of what they point to")
    what = f"is a symlink (-> {links[0][1]})" if links[0][0] == "" else f"holds {n} ({shown}{more})"
    return LinksRefusedError(display, f"{what}; mlvc tracks file contents, not links",
                             links=[r for r, _ in links],
                             hint=f"`mlvc add --follow-links {display}` stores what links inside the repository "
                                  "point to (a Hugging Face cache snapshot, say); or replace them by copies")


def _inside(root_real: str, path: str) -> str | None:
    """The real path of `path` when it resolves to an existing file or directory inside the
    repository (not inside .git or .mlvc), else None."""
    real = os.path.realpath(path)
    rel = os.path.relpath(real, root_real)
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or rel.split(os.sep, 1)[0] in (".git", ".mlvc"):
        return None
    return real if os.path.exists(real) else None


def scan(target: Path, display: str, leftovers: list[Path] | None = None,
         follow_within: Path | None = None) -> list[FileStat]:
    """List the regular files of an artifact (a file or a directory), sorted by relative path.

    Temp files a killed restore left inside the directory (`.NAME.mlvc-tmp-PID-*`) are not the
    user's files: they are skipped (so `add` never records them and `status` never counts them)
    and, when `leftovers` is given, appended to it for the caller to remove.

    Symlinks are refused, all of them named in one error (`LinksRefusedError`), unless
    `follow_within` (the repository root) is given: then a link that resolves to a file or
    directory inside it is read as what it points to, and only links pointing elsewhere are
    refused."""
    root_real = os.path.realpath(follow_within) if follow_within is not None else None
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise PathError(display, "does not exist") from None
    except PermissionError:
        raise PathError(display, "permission denied") from None
    if statmod.S_ISLNK(st.st_mode):
        dest = os.readlink(target)
        if root_real is None or _inside(root_real, target) is None:
            raise _links_refused(display, [("", dest)], root_real is not None)
        st = os.stat(target)
    if statmod.S_ISREG(st.st_mode):
        return [_file_stat("", target, st)]
    if not statmod.S_ISDIR(st.st_mode):
        raise PathError(display, "is not a regular file or directory")
    out: list[FileStat] = []
    refused: list[tuple[str, str]] = []
    seen_dirs = {os.path.realpath(target)} if root_real is not None else set()
    stack = [(target, "")]
    while stack:
        d, prefix = stack.pop()
        try:
            it = os.scandir(d)
        except PermissionError:
            raise PathError(f"{display}/{prefix}".rstrip("/"), "permission denied") from None
        with it:
            for e in it:
                rel = prefix + e.name
                if is_restore_temp(e.name) and e.is_file(follow_symlinks=False):
                    if leftovers is not None:
                        leftovers.append(Path(e.path))
                    continue
                if e.is_symlink():
                    real = _inside(root_real, e.path) if root_real is not None else None
                    if real is None:
                        refused.append((f"{display}/{rel}", os.readlink(e.path)))
                    elif os.path.isdir(real):
                        if real not in seen_dirs:  # a link back up the tree would loop
                            seen_dirs.add(real)
                            stack.append((e.path, rel + "/"))
                    elif os.path.isfile(real):
                        out.append(_file_stat(rel, e.path, os.stat(e.path)))
                    else:
                        refused.append((f"{display}/{rel}", os.readlink(e.path)))
                elif e.is_dir(follow_symlinks=False):
                    stack.append((e.path, rel + "/"))
                elif e.is_file(follow_symlinks=False):
                    out.append(_file_stat(rel, e.path, e.stat(follow_symlinks=False)))
                else:
                    raise PathError(f"{display}/{rel}", "is not a regular file (fifo, socket or device)")
    if refused:
        refused.sort()
        raise _links_refused(display, refused, root_real is not None)
    out.sort(key=lambda f: f.rel)
    return out


def scan_within(target: Path, display: str, inner: str, leftovers: list[Path] | None = None,
                follow_within: Path | None = None) -> list[FileStat]:
    """The files at or below `inner` (a path inside the directory artifact at `target`), their
    `rel` relative to the artifact root as `scan` gives them; [] when nothing is there.  The
    caller has refused symlinked directories on the way (`safepath.refuse_links_above`)."""
    path = target / inner
    if not os.path.lexists(path):
        return []
    return [FileStat(f"{inner}/{f.rel}" if f.rel else inner, f.fspath, f.size, f.mtime_ns, f.ino, f.executable)
            for f in scan(path, f"{display}/{inner}", leftovers, follow_within)]


def stat_signature(files: list[FileStat]) -> bytes | None:
    """xxh3-128 over every file's (path, size, mtime, inode, exec); None if any mtime is racy."""
    limit = time.time_ns() - RACY_NS
    if any(f.mtime_ns >= limit for f in files):
        return None
    text = "".join(f"{f.rel}\0{f.size}\0{f.mtime_ns}\0{f.ino}\0{int(f.executable)}\n" for f in files)
    h = hasher()
    h.update(text.encode("utf-8", "surrogateescape"))
    return h.digest()


def same_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) == (b.st_size, b.st_mtime_ns, b.st_ino)


def hash_file(fs: FileStat, display: str, progress=None) -> bytes:
    """xxh3-128 of a file's content, failing if the file changes while being read."""
    h = hasher()
    try:
        with open(fs.path, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            buf = bytearray(READ_BLOCK)
            mv = memoryview(buf)
            while n := f.readinto(buf):
                h.update(mv[:n])
                if progress:
                    progress.advance(n)
            after = os.stat(fs.path)
    except FileNotFoundError:
        raise FileChangedError(display) from None
    except PermissionError:
        raise PathError(display, "permission denied") from None
    if not same_stat(before, after) or before.st_size != fs.size:
        raise FileChangedError(display)
    return h.digest()


class IdLookup:
    """File ids of workspace files: from the hash cache when the stat matches, else by hashing."""

    def __init__(self, hash_cache, repo_rel_prefix: str):
        self.prefix = repo_rel_prefix
        self.hash_cache = hash_cache
        self.cached = hash_cache.load_prefix(repo_rel_prefix)
        self.new_rows: list[tuple] = []
        self.started_ns = time.time_ns()

    def key(self, fs: FileStat) -> str:
        return f"{self.prefix}/{fs.rel}" if fs.rel else self.prefix

    def cached_id(self, fs: FileStat) -> bytes | None:
        hit = self.cached.get(self.key(fs))
        if hit is not None and hit[:3] == fs.key:
            return hit[3]
        return None

    def remember(self, fs: FileStat, fid: bytes) -> None:
        self.new_rows.append((self.key(fs), fs.size, fs.mtime_ns, fs.ino, fid))

    def id_of(self, fs: FileStat, display: str, progress=None) -> bytes:
        fid = self.cached_id(fs)
        if fid is None:
            fid = hash_file(fs, display, progress)
            self.remember(fs, fid)
        return fid

    def flush(self) -> None:
        if self.new_rows:
            self.hash_cache.store(self.new_rows, self.started_ns)
            self.new_rows = []
