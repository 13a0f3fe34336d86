"""Keep tracked artifacts out of git: one `/name` line in the sibling `.gitignore`."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def ensure_ignored(target: Path) -> bool:
    """Add `/<name>` to `<target's dir>/.gitignore` if absent.  Returns True when it wrote."""
    gi = target.parent / ".gitignore"
    line = "/" + target.name
    # Two `mlvc add` runs in one directory must not lose each other's line:
    # serialise the read-modify-write with an flock on the directory itself.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        return _append_line(gi, line)
    finally:
        os.close(dir_fd)


def _append_line(gi: Path, line: str) -> bool:
    try:
        text = gi.read_text()
    except FileNotFoundError:
        text = ""
    if line in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    tmp = gi.with_name(f".gitignore.tmp-{os.getpid()}")
    tmp.write_text(text + line + "\n")
    os.replace(tmp, gi)
    return True
