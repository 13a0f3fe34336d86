"""One way mlvc replaces a file: a process-unique temp name beside it, written (and fsynced
when asked), then renamed over it; on any failure the temp file is removed.  Readers see the
old file or the new one, never a torn one, whatever dies when.

- `temp_path(path)`: ``.NAME.tmp-PID-RAND`` beside `path` (hidden, named by its writer, unique
  between processes and threads).
- `replacing(path)`: a context manager yielding that temp path to whatever writes it (torch,
  a database, a directory); on a clean exit the temp replaces `path`.
- `write_bytes` / `write_text`: the same for bytes in memory.
- `fsync_dir`: makes a rename durable; `pid_alive`: whether a temp file's writer still runs.

The store's own objects have schemes of their own, for reasons of their own: the backends'
``KEY.tmp-HOST-PID-RAND`` (`mlvc.store.backend.temp_key`: several machines write one remote),
scratch packs (`mlvc.store.shared_cache`), and a restore's numbered temp files
(`mlvc.safepath`: one integer per file, a million files).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"


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


__all__ = ["temp_path", "replacing", "write_bytes", "write_text", "fsync_dir", "pid_alive", "TEMP_MARK"]
