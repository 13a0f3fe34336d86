"""The git CLI and the git work tree, without dulwich: the one place mlvc starts `git` (`run`,
`start`, `ls_files`, `ignored`, `run_git_dir`), and where a work tree and its git directory are
(file reads only, no process).  Cheap to import: every command's `Repo` uses it; `mlvc.git` adds
dulwich's object reads on top."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .errors import GitError


def find_git_root(start: Path) -> Path | None:
    """The top of the git work tree holding `start` (the nearest directory with a `.git`), or None."""
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def git_common_dir(root: Path) -> Path | None:
    """The git directory shared by all worktrees of the repository whose work tree is `root`.

    A linked worktree (`git worktree add`) has a `.git` *file* naming its private git dir,
    which holds a `commondir` file naming the shared one.  Read from those files: no git
    process per command."""
    dotgit = root / ".git"
    if dotgit.is_dir():
        return dotgit
    try:
        text = dotgit.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    private = Path(text[len("gitdir:"):].strip())
    private = private if private.is_absolute() else (root / private)
    try:
        common = (private / "commondir").read_text().strip()
    except OSError:
        return private
    common_path = Path(common)
    return Path(os.path.normpath(common_path if common_path.is_absolute() else private / common_path))


def main_worktree_root(root: Path) -> Path:
    """The main work tree of the repository `root` belongs to (`root` itself unless it is a
    linked worktree)."""
    common = git_common_dir(root)
    if common is None or common == root / ".git" or common.name != ".git":
        return root
    return common.parent


def linked_worktrees(main_root: Path) -> list[Path]:
    """Work trees added with `git worktree add` to the repository whose main work tree is `main_root`."""
    out: list[Path] = []
    try:
        names = sorted(os.listdir(main_root / ".git" / "worktrees"))
    except OSError:
        return out
    for name in names:
        try:
            gitfile = Path((main_root / ".git" / "worktrees" / name / "gitdir").read_text().strip())
        except OSError:
            continue
        if gitfile.name == ".git" and gitfile.parent.is_dir():
            out.append(gitfile.parent)
    return out


# ------------------------------------------------------------------ the git CLI


def run(cwd: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None,
        capture: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run `git <args>` in the work tree `cwd`: the one place mlvc starts the git CLI (besides
    `start` and `run_git_dir` beside it).  Returns the finished process
    whatever its status, since callers read git's own codes (`check-ignore` exits 1 for "none
    ignored"); GitError when git is not installed.  `capture=False` lets git write to the terminal."""
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], input=input, env=env,
                              capture_output=capture, check=False)
    except FileNotFoundError as err:
        raise GitError("the `git` command was not found", hint="install git") from err


def start(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `git <args>` in `cwd` with its stdout as a text pipe, read as it comes (`git bisect run`)."""
    try:
        return subprocess.Popen(["git", "-C", str(cwd), *args], env=env, stdout=subprocess.PIPE,
                                text=True, errors="replace")
    except FileNotFoundError as err:
        raise GitError("the `git` command was not found", hint="install git") from err


def ls_files(root: Path, *args: str) -> list[str] | None:
    """The paths `git ls-files -z <args>` lists in the work tree `root`, or None where git
    cannot say (not a work tree)."""
    proc = run(root, "ls-files", "-z", *args)
    if proc.returncode != 0:
        return None
    return [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]


def ignored(root: Path, rel_paths: list[str]) -> set[str] | None:
    """Those repo-relative paths git ignores (one `git check-ignore --stdin` for all), or None
    where git cannot say."""
    proc = run(root, "check-ignore", "--stdin", "-z", "--no-index",
               input="\0".join(rel_paths).encode("utf-8", "surrogateescape") + b"\0")
    if proc.returncode not in (0, 1):  # 1: none of them is ignored
        return None
    return {n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n}



def run_git_dir(git_dir: Path, *args: str, timeout: float | None = None) -> str:
    """Run `git --git-dir=<git_dir> <args>` and return its stdout (a source mirror's fetches).

    Transport is the system git with the user's own configuration and credential helpers;
    nothing is taken from the other repository.  Without a terminal git never prompts (a
    missing credential fails instead of hanging)."""
    env = dict(os.environ)
    if not (hasattr(os, "isatty") and os.isatty(0)):
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
    try:
        proc = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=False,
                              env=env, stdin=subprocess.DEVNULL, timeout=timeout)
    except FileNotFoundError as err:
        raise GitError("the `git` command was not found", hint="install git") from err
    except subprocess.TimeoutExpired as err:
        raise GitTransportError(f"git {args[0]} did not finish in {timeout:.0f} s", "") from err
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        raise GitTransportError(first_error_line(proc.stderr) or
                                f"git {args[0]} failed with status {proc.returncode}", stderr)
    return proc.stdout.decode("utf-8", "replace")


class GitTransportError(GitError):
    """A git command that talks to another repository failed; `stderr` is git's own account."""

    def __init__(self, message: str, stderr: str):
        super().__init__(message)
        self.stderr = stderr


def first_error_line(stderr: bytes) -> str:
    """git's most telling stderr line: the first error/fatal line, else the first line."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("error:", "fatal:")):
            return line
    return lines[0] if lines else ""
