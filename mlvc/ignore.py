"""Keep tracked artifacts out of git, in two places.

1. `/name` in the `.gitignore` beside the artifact: committed with the pointer, so every clone
   ignores the artifact at every commit that tracks it.
2. `/path/from/root` in this clone's own `.git/info/exclude` (a marked block; shared by the
   clone's worktrees, never committed), for every artifact `add` or `checkout` put in the work
   tree.  After `git checkout` of a commit from before the artifact was added, the committed
   `.gitignore` line is gone with the pointer, but the bytes are still on disk: this line keeps
   `git add -A` from committing a dataset into git.  Delete the line by hand if you mean to
   commit that path to git after all.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from .atomic import write_text

BEGIN = "# >>> mlvc: artifacts this clone has held; kept out of git at every commit >>>"
END = "# <<< mlvc <<<"


def pattern(rel: str) -> str:
    """The gitignore pattern that matches exactly the repo-relative POSIX path `rel` (anchored;
    glob characters, a leading `#`/`!` and trailing spaces escaped)."""
    out = "".join("\\" + c if c in "*?[\\" else c for c in rel)
    stripped = out.rstrip(" ")
    out = stripped + "\\ " * (len(out) - len(stripped))
    return "/" + out


def ensure_ignored(target: Path) -> bool:
    """Add `/<name>` to `<target's dir>/.gitignore` if absent.  Returns True when it wrote."""
    gi = target.parent / ".gitignore"
    line = pattern(target.name)
    # Two `mlvc add` runs in one directory must not lose each other's line:
    # serialise the read-modify-write with an flock on the directory itself.
    with _dir_locked(target.parent):
        return _append_line(gi, line)


def not_ignored(root: Path, rel_paths: list[str]) -> list[str]:
    """Those repo-relative paths git does not ignore (one `git check-ignore --stdin` for all)."""
    from . import gitcli as git

    if not rel_paths:
        return []
    ignored = git.ignored(root, rel_paths)
    if ignored is None:
        return []  # no git to ask: nothing to say
    return [r for r in rel_paths if r not in ignored]


def keep_excluded(exclude: Path, rel_paths: Iterable[str]) -> int:
    """Make sure each repo-relative path is in the mlvc block of the clone's `exclude` file
    (`.git/info/exclude`).  Returns how many lines it added; writes nothing when none."""
    wanted = list(dict.fromkeys(pattern(r) for r in rel_paths))
    if not wanted:
        return 0
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with _dir_locked(exclude.parent):
        try:
            text = exclude.read_text()
        except FileNotFoundError:
            text = ""
        lines = text.splitlines()
        if BEGIN in lines and END in lines[lines.index(BEGIN):]:
            start = lines.index(BEGIN)
            end = lines.index(END, start)
        else:
            if lines and lines[-1].strip():
                lines.append("")
            lines += [BEGIN, END]
            start, end = len(lines) - 2, len(lines) - 1
        have = set(lines[start + 1:end])
        new = [w for w in wanted if w not in have]
        if not new:
            return 0
        lines[end:end] = new
        _write(exclude, "\n".join(lines) + "\n")
        return len(new)


def excluded(exclude: Path) -> list[str]:
    """The patterns of the mlvc block of an exclude file."""
    try:
        lines = exclude.read_text().splitlines()
    except FileNotFoundError:
        return []
    if BEGIN not in lines:
        return []
    start = lines.index(BEGIN)
    end = lines.index(END, start) if END in lines[start:] else len(lines)
    return lines[start + 1:end]


class _dir_locked:
    def __init__(self, directory: Path):
        self.directory = directory

    def __enter__(self) -> _dir_locked:
        self.fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _write(path: Path, text: str) -> None:
    write_text(path, text)


def _append_line(gi: Path, line: str) -> bool:
    try:
        text = gi.read_text()
    except FileNotFoundError:
        text = ""
    if line in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    _write(gi, text + line + "\n")
    return True


def drop_ignored(target: Path) -> bool:
    """Remove `/<name>` from `<target's dir>/.gitignore` (the file too, when nothing else is left in
    it).  Returns True when it wrote."""
    gi = target.parent / ".gitignore"
    line = pattern(target.name)
    if not target.parent.is_dir():
        return False
    with _dir_locked(target.parent):
        try:
            lines = gi.read_text().splitlines()
        except FileNotFoundError:
            return False
        kept = [x for x in lines if x != line]
        if len(kept) == len(lines):
            return False
        if any(x.strip() for x in kept):
            _write(gi, "\n".join(kept) + "\n")
        else:
            gi.unlink()
        return True


def drop_excluded(exclude: Path, rel_paths: Iterable[str]) -> int:
    """Remove these repo-relative paths from the mlvc block of the clone's `exclude` file (an
    artifact untracked or moved: git sees that path again).  Returns how many lines it removed."""
    unwanted = {pattern(r) for r in rel_paths}
    if not unwanted or not exclude.is_file():
        return 0
    with _dir_locked(exclude.parent):
        lines = exclude.read_text().splitlines()
        if BEGIN not in lines:
            return 0
        start = lines.index(BEGIN)
        end = lines.index(END, start) if END in lines[start:] else len(lines)
        kept = lines[:start + 1] + [x for x in lines[start + 1:end] if x not in unwanted] + lines[end:]
        if len(kept) == len(lines):
            return 0
        _write(exclude, "\n".join(kept) + "\n")
        return len(lines) - len(kept)
