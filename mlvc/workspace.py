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

from .errors import FileChangedError, PathError
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


def scan(target: Path, display: str, leftovers: list[Path] | None = None) -> list[FileStat]:
    """List the regular files of an artifact (a file or a directory), sorted by relative path.

    Temp files a killed restore left inside the directory (`.NAME.mlvc-tmp-PID-*`) are not the
    user's files: they are skipped (so `add` never records them and `status` never counts them)
    and, when `leftovers` is given, appended to it for the caller to remove."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise PathError(display, "does not exist") from None
    except PermissionError:
        raise PathError(display, "permission denied") from None
    if statmod.S_ISLNK(st.st_mode):
        raise PathError(display, "is a symlink; mlvc tracks file contents, not links (add the link's target)")
    if statmod.S_ISREG(st.st_mode):
        return [_file_stat("", target, st)]
    if not statmod.S_ISDIR(st.st_mode):
        raise PathError(display, "is not a regular file or directory")
    out: list[FileStat] = []
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
                    raise PathError(f"{display}/{rel}", "is a symlink inside the directory; mlvc tracks "
                                    "file contents, not links (replace it by a copy or remove it)")
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, rel + "/"))
                elif e.is_file(follow_symlinks=False):
                    out.append(_file_stat(rel, e.path, e.stat(follow_symlinks=False)))
                else:
                    raise PathError(f"{display}/{rel}", "is not a regular file (fifo, socket or device)")
    out.sort(key=lambda f: f.rel)
    return out


def scan_within(target: Path, display: str, inner: str, leftovers: list[Path] | None = None) -> list[FileStat]:
    """The files at or below `inner` (a path inside the directory artifact at `target`), their
    `rel` relative to the artifact root as `scan` gives them; [] when nothing is there.  The
    caller has refused symlinked directories on the way (`safepath.refuse_links_above`)."""
    path = target / inner
    if not os.path.lexists(path):
        return []
    return [FileStat(f"{inner}/{f.rel}" if f.rel else inner, f.fspath, f.size, f.mtime_ns, f.ino, f.executable)
            for f in scan(path, f"{display}/{inner}", leftovers)]


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
