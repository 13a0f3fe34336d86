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
from array import array
from dataclasses import dataclass
from pathlib import Path

from .errors import FileChangedError, LinksRefusedError, PathError
from .hashing import hasher
from .packed import PackedPaths
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


class ScannedFiles(PackedPaths):
    """An artifact's regular files, sorted by relative path and kept packed (~50 bytes a file
    instead of ~250 as objects): paths in one UTF-8 blob with offsets, stat fields in arrays.
    Indexing and iterating build `FileStat` objects on the fly, so a scan of a million files
    costs tens of MB, and its order is the order of a tree manifest's entries (merge-joins)."""

    __slots__ = ("_base", "_sizes", "_mtimes", "_inos", "_exec")

    def __init__(self, base) -> None:
        super().__init__(bytearray(), array("Q"))
        self._base = os.fspath(base)
        self._sizes = array("Q")
        self._mtimes = array("q")
        self._inos = array("Q")
        self._exec = bytearray()

    def _append(self, rel: str, st: os.stat_result) -> None:
        self._paths += rel.encode("utf-8", "surrogateescape")
        self._ends.append(len(self._paths))
        self._sizes.append(st.st_size)
        self._mtimes.append(st.st_mtime_ns)
        self._inos.append(st.st_ino)
        self._exec.append(1 if st.st_mode & 0o111 else 0)

    def _row(self, i: int, rel: str) -> FileStat:
        fspath = f"{self._base}{os.sep}{rel}" if rel else self._base
        return FileStat(rel, fspath, self._sizes[i], self._mtimes[i], self._inos[i], bool(self._exec[i]))

    def total_size(self) -> int:
        return sum(self._sizes)

    def columns(self) -> tuple[bytes | bytearray, array, array, bytearray]:
        """(path blob, path ends, sizes, executable bits): for a tree built over them, unshared
        afterwards only if the scan is (a scan is never appended to once returned)."""
        return self._paths, self._ends, self._sizes, self._exec

    def stat_signature(self, racy_from_ns: int) -> bytes | None:
        """xxh3-128 over every file's (path, size, mtime, inode, exec); None if a file's mtime
        is at or after `racy_from_ns` (its content may change within the timestamp tick)."""
        if self._mtimes and max(self._mtimes) >= racy_from_ns:
            return None
        h = hasher()
        lines = []
        start = 0
        for i, end in enumerate(self._ends):
            lines.append(b"%s\0%d\0%d\0%d\0%d\n" % (self._paths[start:end], self._sizes[i], self._mtimes[i],
                                                       self._inos[i], self._exec[i]))
            start = end
            if len(lines) >= 4096:
                h.update(b"".join(lines))
                lines = []
        h.update(b"".join(lines))
        return h.digest()


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


def _inside(root_real: str, path: str | os.PathLike[str]) -> str | None:
    """The real path of `path` when it resolves to an existing file or directory inside the
    repository (not inside .git or .mlvc), else None."""
    real = os.path.realpath(path)
    rel = os.path.relpath(real, root_real)
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or rel.split(os.sep, 1)[0] in (".git", ".mlvc"):
        return None
    return real if os.path.exists(real) else None


def scan(target: Path, display: str, leftovers: list[Path] | None = None,
         follow_within: Path | None = None) -> ScannedFiles:
    """List the regular files of an artifact (a file or a directory), sorted by relative path.

    Temp files a killed restore left inside the directory (`.NAME.mlvc-tmp-PID-*`) are not the
    user's files: they are skipped (so `add` never records them and `status` never counts them)
    and, when `leftovers` is given, appended to it for the caller to remove.

    Symlinks are refused, all of them named in one error (`LinksRefusedError`), unless
    `follow_within` (the repository root) is given: then a link that resolves to a file or
    directory inside it is read as what it points to, and only links pointing elsewhere are
    refused.

    The walk visits each directory's entries sorted (a directory as its name + "/"), which is
    exactly the order of the files' relative paths: the result is built sorted, never sorted
    afterwards, and memory beyond the packed result is one directory's listing at a time."""
    return _scan(Path(target), "", display, leftovers, follow_within)


def scan_within(target: Path, display: str, inner: str, leftovers: list[Path] | None = None,
                follow_within: Path | None = None) -> ScannedFiles:
    """The files at or below `inner` (a path inside the directory artifact at `target`), their
    `rel` relative to the artifact root as `scan` gives them; none when nothing is there.  The
    caller has refused symlinked directories on the way (`safepath.refuse_links_above`)."""
    if not os.path.lexists(target / inner):
        return ScannedFiles(target)
    return _scan(Path(target), inner, f"{display}/{inner}", leftovers, follow_within)


def _scan(root: Path, inner: str, display: str, leftovers: list[Path] | None,
          follow_within: Path | None) -> ScannedFiles:
    start = root / inner if inner else root
    out = ScannedFiles(root)
    root_real = os.path.realpath(follow_within) if follow_within is not None else None
    try:
        st = os.lstat(start)
    except FileNotFoundError:
        raise PathError(display, "does not exist") from None
    except PermissionError:
        raise PathError(display, "permission denied") from None
    if statmod.S_ISLNK(st.st_mode):
        dest = os.readlink(start)
        if root_real is None or _inside(root_real, start) is None:
            raise _links_refused(display, [("", dest)], root_real is not None)
        st = os.stat(start)
    if statmod.S_ISREG(st.st_mode):
        out._append(inner, st)
        return out
    if not statmod.S_ISDIR(st.st_mode):
        raise PathError(display, "is not a regular file or directory")
    walk = _Walk(display, root_real, leftovers)
    if root_real is not None:
        walk.seen_dirs.add(os.path.realpath(start))
    base = os.fspath(start)
    prefix = inner + "/" if inner else ""
    stack = [(base, prefix, iter(walk.listing(base, prefix)))]
    while stack:
        d, prefix, names = stack[-1]
        key = next(names, None)
        if key is None:
            stack.pop()
        elif key.endswith("/"):
            path = f"{d}{os.sep}{key[:-1]}"
            stack.append((path, prefix + key, iter(walk.listing(path, prefix + key))))
        else:
            walk.add_file(out, f"{d}{os.sep}{key}", prefix + key)
    if walk.refused:
        walk.refused.sort()
        raise _links_refused(display, walk.refused, root_real is not None)
    return out


class _Walk:
    """The state of one scan: links refused so far, directories followed, leftovers found."""

    def __init__(self, display: str, root_real: str | None, leftovers: list[Path] | None) -> None:
        self.display = display
        self.root_real = root_real
        self.leftovers = leftovers
        self.refused: list[tuple[str, str]] = []
        self.seen_dirs: set[str] = set()

    def listing(self, d: str, prefix: str) -> list[str]:
        """The names in `d` to visit, sorted, directories (and followed links to them) as
        name + "/"."""
        keys: list[str] = []
        try:
            it = os.scandir(d)
        except PermissionError:
            raise PathError(f"{self.display}/{prefix}".rstrip("/"), "permission denied") from None
        with it:
            for e in it:
                name = e.name
                if is_restore_temp(name) and e.is_file(follow_symlinks=False):
                    if self.leftovers is not None:
                        self.leftovers.append(Path(e.path))
                elif e.is_symlink():
                    real = _inside(self.root_real, e.path) if self.root_real is not None else None
                    if real is not None and os.path.isdir(real):
                        if real not in self.seen_dirs:  # a link back up the tree would loop
                            self.seen_dirs.add(real)
                            keys.append(name + "/")
                    elif real is not None and os.path.isfile(real):
                        keys.append(name)
                    else:
                        self.refused.append((f"{self.display}/{prefix}{name}", os.readlink(e.path)))
                elif e.is_dir(follow_symlinks=False):
                    keys.append(name + "/")
                elif e.is_file(follow_symlinks=False):
                    keys.append(name)
                else:
                    raise PathError(f"{self.display}/{prefix}{name}",
                                    "is not a regular file (fifo, socket or device)")
        keys.sort()
        return keys

    def add_file(self, out: ScannedFiles, path: str, rel: str) -> None:
        try:
            st = os.lstat(path)
            if statmod.S_ISLNK(st.st_mode):  # judged inside the repository when listed
                if self.root_real is None:
                    self.refused.append((f"{self.display}/{rel}", os.readlink(path)))
                    return
                st = os.stat(path)
        except FileNotFoundError:
            return  # removed since it was listed: not a file of the artifact any more
        except PermissionError:
            raise PathError(f"{self.display}/{rel}", "permission denied") from None
        if not statmod.S_ISREG(st.st_mode):
            raise PathError(f"{self.display}/{rel}", "is not a regular file (fifo, socket or device)")
        out._append(rel, st)


def stat_signature(files: ScannedFiles) -> bytes | None:
    """xxh3-128 over every file's (path, size, mtime, inode, exec); None if any mtime is racy."""
    return files.stat_signature(time.time_ns() - RACY_NS)


def same_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) == (b.st_size, b.st_mtime_ns, b.st_ino)


def hash_file(fs: FileStat, display: str, progress=None) -> bytes:
    """xxh3-128 of a file's content, failing if the file changes while being read."""
    h = hasher()
    try:
        with open(fs.path, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            buf = bytearray(min(READ_BLOCK, fs.size + 1))  # a 1 KiB file needs no 4 MiB buffer
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
    """File ids of workspace files: from the hash cache when the stat matches, else by hashing.

    Files are asked for in the order `scan` gives them (sorted), so the hash cache's rows are
    read alongside in that order, a batch at a time, instead of all loaded at once; a file asked
    for out of order is looked up on its own.  New rows are written every `FLUSH_ROWS`."""

    FLUSH_ROWS = 50_000

    def __init__(self, hash_cache, repo_rel_prefix: str):
        self.prefix = repo_rel_prefix
        self.hash_cache = hash_cache
        self.new_rows: list[tuple] = []
        self.started_ns = time.time_ns()
        self._rows: list[tuple] = []  # a batch of (path, size, mtime_ns, ino, fid), sorted
        self._pos = 0
        self._last_asked: str | None = None
        self._done = False

    def key(self, fs: FileStat) -> str:
        return f"{self.prefix}/{fs.rel}" if fs.rel else self.prefix

    def _row(self, key: str) -> tuple | None:
        if self._last_asked is not None and key < self._last_asked:
            return self.hash_cache.get(key)
        self._last_asked = key
        rows = self._rows
        while True:
            while self._pos < len(rows) and rows[self._pos][0] < key:
                self._pos += 1
            if self._pos < len(rows):
                return rows[self._pos] if rows[self._pos][0] == key else None
            if self._done:
                return None
            after = rows[-1][0] if rows else None
            self._rows = rows = self.hash_cache.rows_after(self.prefix, after)
            self._pos = 0
            self._done = len(rows) < self.hash_cache.BATCH_ROWS

    def cached_id(self, fs: FileStat) -> bytes | None:
        hit = self._row(self.key(fs))
        if hit is not None and hit[1:4] == fs.key:
            return hit[4]
        return None

    def remember(self, fs: FileStat, fid: bytes) -> None:
        self.new_rows.append((self.key(fs), fs.size, fs.mtime_ns, fs.ino, fid))
        if len(self.new_rows) >= self.FLUSH_ROWS:
            self.flush()

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
