"""One way mlvc replaces a file: a process-unique temp name beside it, written (and fsynced
when asked), then renamed over it; on any failure the temp file is removed.  Readers see the
old file or the new one, never a torn one, whatever dies when.

- `temp_path(path)`: ``.NAME.tmp-PID-RAND`` beside `path` (hidden, named by its writer, unique
  between processes and threads).
- `replacing(path)`: a context manager yielding that temp path to whatever writes it (torch,
  a database, a directory); on a clean exit the temp replaces `path`.
- `write_bytes` / `write_text`: the same for bytes in memory.
- `fsync_dir`: makes a rename durable; `pid_alive`: whether a temp file's writer still runs.
- `sweep` / `remove_stale`: the one sweep of what killed writers left behind.  A `TempNames`
  says which names are ours (and their writer's pid); `stale` says which are left behind (the
  writer no longer runs, or the file is older than `STALE_TEMP_S`: its pid may have been reused).

The store's own objects have schemes of their own, for reasons of their own: the backends'
``KEY.tmp-HOST-PID-RAND`` (`mlvc.store.backend.temp_sibling`: several machines write one remote,
so their temps are judged by age alone), scratch packs (`mlvc.store.shared_cache`), a restore's
numbered temp files (`mlvc.safepath`: one integer per file, a million files) and `mlvc get`'s
output (`mlvc.ops.get`).  Each names its `TempNames` beside the code that makes the names; all
are swept here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"
STALE_TEMP_S = 24 * 3600
"""A temp file whose writer's pid runs is kept unless older than this (the pid may be reused)."""


def temp_path(path: Path) -> Path:
    """A temp name beside `path` that no other process or thread uses: ``.NAME.tmp-PID-RAND``."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in directory `path` durable.  Some filesystems refuse to open or fsync a
    directory: that is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a temp file's writer, a lock's holder)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TempNames:
    """One family of temp names.  `pattern` (matched against a whole name) says which names are
    ours; its group ``pid``, where it has one and it matched, names the writer on this machine.
    A temp without one (another machine's, on a shared disk) is judged by its age alone."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.DOTALL)

    def writer(self, name: str) -> int | None | bool:
        """False if `name` is not ours; else its writer's pid, or None when it names none."""
        m = self.pattern.fullmatch(name)
        if m is None:
            return False
        pid = m.groupdict().get("pid")
        return int(pid) if pid is not None else None

    @classmethod
    def of(cls, path: Path) -> TempNames:
        """The names `temp_path` gives temps of `path` (``.NAME.tmp-PID-RAND``)."""
        return cls(rf"\.{re.escape(path.name)}{re.escape(TEMP_MARK)}(?P<pid>\d+)(?:-.*)?")


def stale(pid: int | None, mtime: float, *, now: float | None = None, max_age: float = STALE_TEMP_S) -> bool:
    """Whether a temp file written by `pid` (None: by a process this machine cannot see), last
    written at `mtime`, is left behind: its writer no longer runs, or it is older than `max_age`.
    This process's own temps are never stale."""
    if pid == os.getpid():
        return False
    if (time.time() if now is None else now) - mtime > max_age:
        return True
    return pid is not None and not pid_alive(pid)


def remove_stale(directory: str | Path | int, name: str, names: TempNames, *, dirs: bool = True,
                 max_age: float = STALE_TEMP_S, now: float | None = None) -> bool:
    """Remove entry `name` of `directory` (a path, or a directory fd) if `names` calls it ours and
    it is `stale`; a directory (only with `dirs`) goes with what it holds, never following a link
    inside.  Returns whether it was removed."""
    pid = names.writer(name)
    if pid is False:
        return False
    fd = directory if isinstance(directory, int) else None
    path = name if isinstance(directory, int) else os.path.join(directory, name)
    try:
        st = os.lstat(path, dir_fd=fd)
        if not stale(pid if isinstance(pid, int) else None, st.st_mtime, now=now, max_age=max_age):
            return False
        if stat.S_ISDIR(st.st_mode):
            if not dirs:
                return False
            shutil.rmtree(path, dir_fd=fd)
        else:
            os.unlink(path, dir_fd=fd)
    except FileNotFoundError:
        return False  # its writer finished, or another sweep got there first
    return True


def sweep(directory: str | Path | int, names: TempNames, *, dirs: bool = True,
          max_age: float = STALE_TEMP_S, now: float | None = None, only: Iterable[str] | None = None) -> int:
    """Remove the stale temps of `names` in `directory` (a path, or a directory fd; see
    `remove_stale`), or of the names `only` there; returns how many."""
    if only is None:
        try:
            only = os.listdir(directory)
        except FileNotFoundError:
            return 0
    now = time.time() if now is None else now
    return sum(remove_stale(directory, name, names, dirs=dirs, max_age=max_age, now=now) for name in only)


@contextmanager
def replacing(path: Path, *, fsync: bool = False, mode: int | None = None,
              temp: Callable[[Path], Path] = temp_path) -> Iterator[Path]:
    """Yield a temp path beside `path` (named by `temp`) for the caller to write; on a clean
    exit it replaces `path` (fsynced first with `fsync`; given `mode` first with `mode`), on an
    error it is removed."""
    tmp = temp(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_bytes(path: Path, data: bytes, *, fsync: bool = False, mode: int | None = None,
                temp: Callable[[Path], Path] = temp_path) -> None:
    """Replace `path` with `data`, atomically (see `replacing`)."""
    with replacing(path, mode=mode, temp=temp) as tmp, open(tmp, "xb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_text(path: Path, text: str, *, fsync: bool = False, mode: int | None = None,
               errors: str | None = None, newline: str | None = None) -> None:
    """Replace `path` with `text` in UTF-8, atomically (see `replacing`)."""
    with replacing(path, mode=mode) as tmp, open(tmp, "x", encoding="utf-8", errors=errors, newline=newline) as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


__all__ = ["temp_path", "replacing", "write_bytes", "write_text", "fsync_dir", "pid_alive", "TEMP_MARK",
           "TempNames", "stale", "remove_stale", "sweep", "STALE_TEMP_S"]
