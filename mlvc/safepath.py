"""Workspace writes that cannot leave their directory tree, and restore temp files out of the way.

Why: a cloned repository may commit a symlink `home -> ../victim_home` next to a pointer with
`path: home/.bashrc`.  Joining the path as text and opening it would follow the link and write the
attacker's bytes into the victim's home.  `ContainedTree` therefore opens every directory
component below its root with `O_NOFOLLOW` (openat-style, one component at a time, through
directory file descriptors) and refuses a path whose directories include a symlink.  The last
component is replaced by `rename`, which replaces a link itself and never writes through it.

Restores write their temp files under `.mlvc/tmp/` (on the workspace's file system, so the final
`rename` is atomic) rather than beside the destination: a killed checkout then leaves nothing in
the workspace that `status` or `add` could mistake for a user file.  Where the destination is on
another file system (a mount point inside the repository), the temp file goes beside it with a
name `is_restore_temp` recognises; both kinds are swept once their process is dead.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import stat as statmod
from collections.abc import Iterable
from typing import Literal, overload
from pathlib import Path

from .atomic import TempNames, remove_stale, sweep
from .errors import PathError, SymlinkInPathError

TMP_PREFIX = "restore-"
RESTORE_TEMPS = TempNames(rf"{TMP_PREFIX}(?P<pid>\d+)-[0-9a-f]+(?:\.d)?")
"""In the temp directory: a restore's temp files and staging directories (``.d``)."""
RESTORE_BESIDE = TempNames(r"\..*\.mlvc-tmp-(?P<pid>\d+)-[0-9a-f]{8}")
"""Beside a workspace file: a restore's temp file (`beside_temp_name`)."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_MAX_OPEN_DIRS = 256
# read and write: a restore reads a file it wrote back for the bases of deltas (store.filebases)
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def new_file(dir_fd: int, name: str, mode: int = 0o600) -> int:
    """Create file `name` in directory `dir_fd` (never one that exists, never through a link):
    an fd open for writing (and reading) that the caller closes.  `mode`: its permission bits, less the umask."""
    return os.open(name, _NEW_FILE_FLAGS, mode, dir_fd=dir_fd)


def umask() -> int | None:
    """The process's umask, read without changing it (Linux's /proc/self/status; None elsewhere:
    os.umask can only be read by setting it, which would race with other threads' file creation)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


# Temp files are numbered within the process: a restore of a million files keeps one integer per
# file ready to place, and the name follows from it (and the pid), never a string per file.
_serials = itertools.count(1)


def beside_temp_name(name: str, serial: int) -> str:
    """The name of temp file `serial` written beside `name` (cross-file-system fallback)."""
    return f".{name[:100]}.mlvc-tmp-{os.getpid()}-{serial & 0xFFFFFFFF:08x}"


def is_restore_temp(name: str) -> bool:
    return RESTORE_BESIDE.pattern.fullmatch(name) is not None


def parts_below(root: Path, path: Path) -> tuple[str, ...]:
    """The components of `path` below `root` (both absolute, normalised); PathError if outside."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        raise PathError(path, f"is outside {root}") from None
    parts = rel.parts
    if any(p in ("", ".", "..") for p in parts):
        raise PathError(path, f"is outside {root}")
    return parts


class ContainedTree:
    """Directory fds below `root`, each opened without following links; writes go only there.

    `tmp` (optional) is a directory, itself reached without following links, where temp files
    are written before being renamed into place; it must be on the same file system as the tree
    for that rename to be atomic, which `temp_file` checks per destination.
    """

    def __init__(self, root: Path, display_root: str | None = None, tmp: tuple[str, ...] | None = None):
        self.root = Path(root)
        self.display_root = display_root
        self._fds: dict[tuple[str, ...], int] = {}
        self._fds[()] = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        self._tmp_parts = tmp
        self._tmp_dev: int | None = None
        self._devs: dict[tuple[str, ...], int] = {}  # directory -> its file system, for temp_file

    # ------------------------------------------------------------ directories
    def _display(self, parts: tuple[str, ...]) -> str:
        text = "/".join(parts)
        return f"{self.display_root}/{text}" if self.display_root else (text or str(self.root))

    def _refuse(self, parts: tuple[str, ...], fd: int, name: str) -> SymlinkInPathError:
        shown = self._display(parts)
        try:
            st = os.lstat(name, dir_fd=fd)
        except OSError:
            st = None
        if st is not None and statmod.S_ISLNK(st.st_mode):
            try:
                link = os.readlink(name, dir_fd=fd)
            except OSError:
                link = "?"
            return SymlinkInPathError(shown, f"is a symlink (-> {link}); mlvc never writes through links, so "
                                             "nothing was written", hint="replace the link by a real directory, "
                                             "or remove it, then run the command again")
        return SymlinkInPathError(shown, "is not a directory, but a tracked path lies below it; nothing was written")

    def dir_fd(self, parts: tuple[str, ...], create: bool = False) -> int | None:
        """An fd of the directory `parts` below the root; None if it does not exist (and not `create`).
        Valid until the next call of a public method (fds are cached, and the cache is bounded).

        SymlinkInPathError when any component is a symlink or a non-directory."""
        if len(self._fds) >= _MAX_OPEN_DIRS:
            self._close_all_but_root()
        return self._dir(parts, create)

    @overload
    def _dir(self, parts: tuple[str, ...], create: Literal[True]) -> int: ...
    @overload
    def _dir(self, parts: tuple[str, ...], create: bool) -> int | None: ...

    def _dir(self, parts: tuple[str, ...], create: bool) -> int | None:
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        parent = self._dir(parts[:-1], create)
        if parent is None:
            return None
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass  # a concurrent writer made it: open it (still without following links)
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise self._refuse(parts, parent, name) from None
                raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._refuse(parts, parent, name) from None
            raise
        self._fds[parts] = fd
        return fd

    def check(self, parts: tuple[str, ...]) -> None:
        """Refuse (SymlinkInPathError) if an existing directory component of `parts` is a link or a
        file; components that do not exist yet are fine (they will be created without links)."""
        self.dir_fd(parts, create=False)

    def forget(self, prefix: tuple[str, ...]) -> None:
        """Drop cached fds at or below `prefix` (after that directory was removed or replaced)."""
        for key in [k for k in self._fds if k and k[:len(prefix)] == prefix]:
            os.close(self._fds.pop(key))
        for key in [k for k in self._devs if k[:len(prefix)] == prefix]:
            del self._devs[key]

    def lstat(self, parts: tuple[str, ...]) -> os.stat_result | None:
        """lstat of `parts` (None if absent), its directories reached without following links."""
        parent = self.dir_fd(parts[:-1])
        if parent is None:
            return None
        try:
            return os.lstat(parts[-1], dir_fd=parent)
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------ files
    def _nearest_dev(self, parts: tuple[str, ...]) -> int:
        """The file system of the closest existing real directory at or above `parts` (a link
        there is replaced later, with --force, or refused when the file is placed)."""
        dev = self._devs.get(parts)  # every file of a directory asks: one fstat per directory
        if dev is not None:
            return dev
        asked = parts
        while True:
            try:
                fd = self._dir(parts, False)
            except SymlinkInPathError:
                fd = None
            if fd is not None:
                dev = os.fstat(fd).st_dev
                # a directory still to be created will be made on this one's file system
                self._devs[asked] = dev
                return dev
            parts = parts[:-1]

    def temp_file(self, parts: tuple[str, ...]) -> tuple[int, int]:
        """Create a temp file for the destination `parts`: (its number, an fd open for writing
        that the caller closes).  The number and `parts` name it for `place` and `discard`."""
        self.dir_fd(())  # bound the fd cache once, before the fds below are used
        serial = next(_serials)
        if self._tmp_parts is not None:
            if self._tmp_dev is None:
                self._tmp_dev = os.fstat(self._dir(self._tmp_parts, True)).st_dev
            if self._nearest_dev(parts[:-1]) != self._tmp_dev:
                serial = -serial
        else:
            serial = -serial
        tmp_dir, name = self._temp_location(serial, parts)
        return serial, new_file(self._dir(tmp_dir, True), name)

    def _temp_location(self, serial: int, parts: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
        """(directory, name) of temp file `serial`: in the temp directory when positive, else
        beside the destination (no temp directory, or another file system: the rename must stay
        within one)."""
        if serial > 0:
            return self._staging_parts(), f"{TMP_PREFIX}{os.getpid()}-{serial:x}"
        return parts[:-1], beside_temp_name(parts[-1], -serial)

    def room(self, parts: tuple[str, ...]) -> tuple[int, int]:
        """(free bytes, free inodes) where temp files for the destination `parts` would go."""
        self.dir_fd(())
        if self._tmp_parts is not None:
            fd = self._dir(self._tmp_parts, True)
        else:
            fd = self._fds[()]
            probe = parts[:-1]
            while probe:
                try:
                    got = self._dir(probe, False)
                except SymlinkInPathError:
                    got = None
                if got is not None:
                    fd = got
                    break
                probe = probe[:-1]
        st = os.statvfs(fd)
        return st.f_bavail * st.f_frsize, st.f_favail

    def discard(self, serial: int, parts: tuple[str, ...]) -> None:
        """Remove temp file `serial` made for `parts` (best effort: the next run sweeps it)."""
        tmp_dir, name = self._temp_location(serial, parts)
        try:
            fd = self.dir_fd(tmp_dir)
            if fd is not None:
                os.unlink(name, dir_fd=fd)
        except OSError:
            pass

    def place(self, serial: int, parts: tuple[str, ...]) -> os.stat_result:
        """Rename temp file `serial` onto `parts` (replacing a file or link there, never
        following it)."""
        self.dir_fd(())  # bound the fd cache once, before the fds below are used
        tmp_dir, name = self._temp_location(serial, parts)
        parent = self._dir(parts[:-1], True)
        os.replace(name, parts[-1], src_dir_fd=self._dir(tmp_dir, True), dst_dir_fd=parent)
        return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)

    def _staging_parts(self) -> tuple[str, ...]:
        """The temp directory's parts; only called where a temp directory was given."""
        if self._tmp_parts is None:
            raise RuntimeError("this ContainedTree has no temp directory")
        return self._tmp_parts

    def staging_dir(self, parts: tuple[str, ...]) -> str | None:
        """Create an empty directory in the temp directory, to be renamed onto the destination
        directory `parts` (which does not exist yet) once every file in it is written: its name,
        or None where that rename could not be atomic (no temp directory, or another file system).

        A fresh restore builds the artifact there in its own shape (small directories, created
        as the path-ordered entries reach them) instead of a flat temp directory of a million
        files, and publishes it with one rename."""
        if self._tmp_parts is None:
            return None
        self.dir_fd(())  # bound the fd cache once, before the fds below are used
        tmp_fd = self._dir(self._tmp_parts, True)
        if self._nearest_dev(parts[:-1]) != os.fstat(tmp_fd).st_dev:
            return None
        name = f"{TMP_PREFIX}{os.getpid()}-{next(_serials):x}.d"
        os.mkdir(name, 0o777, dir_fd=tmp_fd)
        return name

    def staged_dir(self, staging: str, parts: tuple[str, ...]) -> int:
        """The fd of directory `parts` (relative to the destination) inside staging directory
        `staging`, made if needed; valid until the next call of a public method.  Files are
        created in it with `new_file` (a restore opens it once per directory, not per file)."""
        self.dir_fd(())
        return self._dir(self._staging_parts() + (staging,) + parts, True)

    def place_staging(self, staging: str, parts: tuple[str, ...]) -> None:
        """Rename staging directory `staging` onto `parts` (a destination that does not exist)."""
        self.dir_fd(())
        self.forget(self._staging_parts() + (staging,))
        parent = self._dir(parts[:-1], True)
        if self.lstat(parts) is not None:  # appeared meanwhile: never merge into or replace it
            raise FileExistsError(errno.EEXIST, "appeared during the restore", "/".join(parts))
        os.rename(staging, parts[-1], src_dir_fd=self._dir(self._staging_parts(), True), dst_dir_fd=parent)

    def discard_staging(self, staging: str) -> None:
        """Remove staging directory `staging` and what was written in it (best effort)."""
        self.forget(self._staging_parts() + (staging,))
        try:
            shutil.rmtree(staging, dir_fd=self._dir(self._staging_parts(), True))
        except OSError:
            pass  # the next run sweeps it

    def sweep_tmp(self) -> int:
        """Remove restore temp files and staging directories of dead processes from the temp
        directory."""
        if self._tmp_parts is None:
            return 0
        fd = self.dir_fd(self._tmp_parts)
        if fd is None:
            return 0
        return sweep(fd, RESTORE_TEMPS)

    # ------------------------------------------------------------ lifetime
    def _close_all_but_root(self) -> None:
        for key in [k for k in self._fds if k]:
            os.close(self._fds.pop(key))
        self._tmp_dev = None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "ContainedTree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale_beside(paths: Iterable[Path]) -> int:
    """Unlink restore temp files (as `Path`s) left beside workspace files by dead processes."""
    return sum(remove_stale(p.parent, p.name, RESTORE_BESIDE, dirs=False) for p in paths)


def refuse_links_above(root: Path, path: Path, display: str) -> None:
    """Read-side check: SymlinkInPathError if a directory between `root` and `path` is a symlink
    (or a file), so that status and checkout never read, hash or write through one."""
    cur = Path(root)
    for part in parts_below(root, path)[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        if statmod.S_ISLNK(st.st_mode):
            raise SymlinkInPathError(display, f"lies below the symlink {cur.relative_to(root).as_posix()} "
                                              f"(-> {os.readlink(cur)}); mlvc never reads or writes through "
                                              "links, so nothing was written",
                                     hint="replace the link by a real directory, or remove it")
        if not statmod.S_ISDIR(st.st_mode):
            raise SymlinkInPathError(display, f"lies below {cur.relative_to(root).as_posix()}, which is "
                                              "not a directory")
