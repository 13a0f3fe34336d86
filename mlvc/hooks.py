"""Hook files: the marked mlvc block in a git hook, installed beside whatever the hook already runs.

Each hook file gets one block (`# >>> mlvc >>>` ... `# <<< mlvc <<<`) right after the shebang, so
an existing hook ending in `exit`/`exec` cannot skip it; a hook in another language is moved to
`<name>.mlvc-chained` and called from the block.  Installing twice replaces the block; uninstalling
removes only the block (and moves a chained hook back).  Where the hooks live (`core.hooksPath`)
is git's to say: `mlvc.git.GitRepo.hooks_dir()`.  What each hook runs is `mlvc.ops.hooks`'.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .atomic import write_text
from .errors import DiskError, GitError

HOOK_BLOCK_BEGIN = "# >>> mlvc >>>"
HOOK_BLOCK_END = "# <<< mlvc <<<"
# A non-shell hook cannot host a shell block, so it is moved aside under this
# suffix (git never runs hook files with extra suffixes) and called from ours.
CHAINED_HOOK_SUFFIX = ".mlvc-chained"

_SHELLS = {"sh", "bash", "dash", "ash", "ksh", "zsh", "busybox"}


def has_hook(hooks_dir: Path, name: str) -> bool:
    """True when hook `name` in `hooks_dir` contains an mlvc block."""
    path = hooks_dir / _check_hook_name(name)
    return path.is_file() and _find_block(_read_text(path)) is not None

def install_hook(hooks_dir: Path, name: str, body: str) -> Path:
    """Add (or replace) the mlvc block in hook `name` of `hooks_dir`; keeps other hook content running.

    The block goes right after the shebang so that an existing hook ending in
    `exit`/`exec` cannot skip it.  A hook written in another language is
    moved to `<name>.mlvc-chained` and run after the block.  A block body
    that reads stdin (pre-push) consumes it for the rest of the hook.
    """
    path = hooks_dir / _check_hook_name(name)
    chained = path.with_name(path.name + CHAINED_HOOK_SUFFIX)
    existing = _read_text(path) if path.exists() else None
    if existing is not None and not existing.strip():
        existing = None  # an empty hook file: start a fresh script, shebang included
    if existing is not None and not _is_shell_script(existing):
        if chained.exists():
            raise GitError(f"cannot install hook {path}: {chained.name} already exists")
        _move(path, chained)
        existing = None
    block = _render_block(body, chained if chained.exists() else None)
    text = "#!/bin/sh\n" + block if existing is None else _place_block(existing, block)
    if text != existing:
        _write_executable(path, text)
    return path

def uninstall_hook(hooks_dir: Path, name: str) -> bool:
    """Remove the mlvc block from hook `name`; returns False if there was none."""
    path = hooks_dir / _check_hook_name(name)
    chained = path.with_name(path.name + CHAINED_HOOK_SUFFIX)
    if not path.is_file():
        return False
    text = _read_text(path)
    span = _find_block(text)
    if span is None:
        return False
    lines = text.splitlines(keepends=True)
    rest = "".join(lines[:span[0]] + lines[span[1] + 1:])
    if _only_shebang(rest):
        _unlink(path)
        if chained.exists():
            _move(chained, path)
    else:
        _write_executable(path, rest)
    return True


def _check_hook_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise GitError(f"invalid hook name '{name}'")
    return name


def _render_block(body: str, chained: Path | None) -> str:
    lines = [HOOK_BLOCK_BEGIN, body.rstrip("\n")]
    if chained is not None:
        lines.append(f'"$(dirname "$0")/{chained.name}" "$@" || exit $?')
    lines.append(HOOK_BLOCK_END)
    return "\n".join(line for line in lines if line) + "\n"


def _find_block(text: str) -> tuple[int, int] | None:
    """Line indexes of the block's begin and end markers, or None."""
    lines = [line.rstrip("\r\n") for line in text.splitlines()]
    if HOOK_BLOCK_BEGIN not in lines:
        return None
    begin = lines.index(HOOK_BLOCK_BEGIN)
    try:
        end = lines.index(HOOK_BLOCK_END, begin + 1)
    except ValueError:
        raise GitError(f"hook has an unterminated '{HOOK_BLOCK_BEGIN}' block",
                       hint="remove the broken block from the hook by hand") from None
    return begin, end


def _place_block(text: str, block: str) -> str:
    """Replace an existing mlvc block, or insert one right after the shebang."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    span = _find_block(text)
    if span is not None:
        return "".join(lines[:span[0]]) + block + "".join(lines[span[1] + 1:])
    at = 1 if lines and lines[0].startswith("#!") else 0
    return "".join(lines[:at]) + block + "".join(lines[at:])


def _is_shell_script(text: str) -> bool:
    first = text.splitlines()[0] if text else ""
    if not first.startswith("#!"):
        return True  # git runs shebang-less hooks with sh
    words = first[2:].split()
    if not words:
        return True
    interpreter = os.path.basename(words[0])
    if interpreter == "env":
        args = [w for w in words[1:] if not w.startswith("-")]
        interpreter = os.path.basename(args[0]) if args else ""
    return interpreter in _SHELLS


def _only_shebang(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return not lines or (len(lines) == 1 and lines[0].startswith("#!"))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        raise DiskError(f"cannot read hook {path}: {err.strerror}") from err


def _write_executable(path: Path, text: str) -> None:
    """Atomically replace `path`, keeping its permissions and adding the exec bits."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        mode |= (mode & 0o444) >> 2  # executable wherever readable
        write_text(path, text, mode=mode, errors="surrogateescape", newline="")
    except OSError as err:
        raise DiskError(f"cannot write hook {path}: {err.strerror}") from err


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as err:
        raise DiskError(f"cannot move hook {src} to {dst}: {err.strerror}") from err


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError as err:
        raise DiskError(f"cannot remove hook {path}: {err.strerror}") from err
