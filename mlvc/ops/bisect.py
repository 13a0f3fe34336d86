"""`mlvc bisect run CMD...`: `git bisect run` with each step's artifacts restored.

git checks out each candidate commit; before running CMD, a small wrapper
(`python -c "from mlvc.ops.bisect import step_main; step_main()" CMD...`)
restores that commit's artifacts.  When they cannot be restored (objects
missing, corrupt pointer), the step exits 125 so git skips the commit instead
of blaming it.  Exit codes follow `git bisect run`: 0 good, 125 skip, 1-127
bad, 128+ aborts.

The session is ended with `git bisect reset` when the run finishes (unless
asked to keep it), on errors and on Ctrl-C, and the artifacts of the commit
git returns to are restored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import gitcli as git_cli
from ..errors import ConflictError, GitError, MlvcError, describe

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..progress import Progress
    from ..repo import Repo

SKIP = 125
ABORT = 128
STEP_CALL = "from mlvc.ops.bisect import step_main; step_main()"
_FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit$")
# git's own end-of-run chatter, said better by the caller's summary ("first bad commit: SHA subject")
_GIT_CHATTER = ("bisect found first bad commit", "bisect run success")


@dataclass
class BisectResult:
    exit_code: int  # git bisect run's status
    first_bad: str | None  # sha of the first bad commit, when found
    first_bad_message: str | None
    reset: bool  # whether the session was ended

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _git_path(git: GitRepo, name: str) -> Path:
    rel = git.run_git("rev-parse", "--git-path", name).strip()
    p = Path(rel)
    return p if p.is_absolute() else git.root / p


def in_progress(git: GitRepo) -> bool:
    return _git_path(git, "BISECT_START").exists()


def _env() -> dict[str, str]:
    from .revcheckout import HOOK_SKIP_ENV

    env = dict(os.environ)
    env[HOOK_SKIP_ENV] = "1"  # the step wrapper restores artifacts itself
    return env


def _git_cli(git: GitRepo, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = git_cli.run(git.root, *args, env=_env(), capture=capture)
    if check and proc.returncode != 0:
        reason = git_reason((proc.stderr or proc.stdout or b"").decode("utf-8", "replace"))
        hint = ("commit or stash them (`git stash`), then run it again" if "would be overwritten" in reason
                else None)
        raise GitError(f"git {args[0]}{' ' + args[1] if len(args) > 1 else ''} failed: "
                       + (reason or f"status {proc.returncode}"), hint=hint)
    return proc


def git_reason(text: str) -> str:
    """git's error report on one line: its messages without their `error:`/`fatal:` prefixes and
    the closing "Aborting", the files it lists joined with commas ("Your local changes to the
    following files would be overwritten by checkout: train.py, eval.py. Please commit ...")."""
    parts: list[str] = []
    files: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        for prefix in ("error: ", "fatal: ", "hint: "):
            line = line.removeprefix(prefix)
        if not line or line == "Aborting":
            continue
        if raw.startswith("\t"):  # git indents the paths it lists with a tab
            files.append(line)
            continue
        if files:
            parts[-1] += " " + ", ".join(files) + "."
            files = []
        parts.append(line)
    if files and parts:
        parts[-1] += " " + ", ".join(files) + "."
    return " ".join(parts)


def _restore_after(repo: Repo) -> None:
    from .checkout import checkout

    repo.store.refresh()
    checkout(repo, None, force=True)


def bisect_reset(repo: Repo, git: GitRepo) -> None:
    _git_cli(git, "bisect", "reset", check=False)
    _restore_after(repo)


class StepReport:
    """git bisect run's report, cleaned for the user: the wrapper mlvc runs in their command's
    place is shown as their command, and the verdict (git's first-bad block, whose last line has
    no newline) is kept for the caller's summary instead of echoed."""

    def __init__(self, cmd: list[str], say: Callable[[str], None]) -> None:
        import shlex

        self.say = say
        self.shown = shlex.join(cmd)
        self.first_bad: str | None = None

    def line(self, raw: str) -> None:
        text = raw.rstrip("\n")
        m = _FIRST_BAD.match(text.strip())
        if m:
            self.first_bad = m.group(1)
        if self.first_bad is not None:
            return  # the commit block git prints after the verdict, and its end-of-run lines
        if text.startswith("running ") and STEP_CALL in text:
            text = f"running {self.shown}"
        if text.strip() and not text.strip().startswith(_GIT_CHATTER):
            self.say(text)


def bisect_run(repo: Repo, cmd: list[str], *, good: list[str] | None = None, bad: str | None = None,
               reset: bool = True, force: bool = False,
               say: Callable[[str], None] | None = None) -> BisectResult:
    """`git bisect run` with each step's artifacts restored.  `say(line)` receives git's report
    of each step as it comes (cleaned by `StepReport`)."""
    from ..git import GitRepo

    if not cmd:
        raise MlvcError("nothing to run: give the command that tells good from bad (`mlvc bisect run CMD...`)")
    if not repo.has_git:
        raise MlvcError("bisect needs a git repository")
    git = GitRepo(repo.root)
    started_here = False
    try:
        if not git.has_commits():
            raise MlvcError("the repository has no commits to bisect")
        if not force:
            from .revcheckout import unsaved_artifacts

            unsaved = unsaved_artifacts(repo)
            if unsaved:
                raise ConflictError(f"{', '.join(unsaved[:3])}: modified in the workspace and never added; "
                                    "bisecting would overwrite it",
                                    hint=f"run `mlvc add {unsaved[0]}` first, or use --force")
        if not in_progress(git):
            if not bad or not good:
                raise MlvcError("no bisect session in progress",
                                hint="start one with `git bisect start BAD GOOD`, or pass --bad and --good")
            for rev in [bad, *good]:
                git.resolve(rev)
            _git_cli(git, "bisect", "start", bad, *good)
            started_here = True
        elif bad or good:
            if bad:
                _git_cli(git, "bisect", "bad", bad)
            for rev in good or []:
                _git_cli(git, "bisect", "good", rev)
        wrapper = [sys.executable, "-c", STEP_CALL, *cmd]
        msg = None
        proc = None
        report = StepReport(cmd, say or (lambda _line: None))
        try:
            # git's report is passed on as it comes; we read it to learn the verdict.
            proc = git_cli.start(git.root, "bisect", "run", *wrapper, env=_env())
            for line in proc.stdout or ():
                report.line(line)
            proc.wait()
            first_bad = report.first_bad
        except BaseException:
            # Ctrl-C (the child got it too) or any failure: never leave a half-finished session behind.
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.wait(timeout=30)
            bisect_reset(repo, git)
            raise
        if proc.returncode != 0:
            first_bad = None
        if first_bad:
            msg = git.commit_info(first_bad).message
        if reset or proc.returncode != 0:
            bisect_reset(repo, git)
            ended = True
        else:
            ended = False
        return BisectResult(proc.returncode, first_bad, msg, ended)
    except BaseException:
        if started_here and in_progress(git):
            bisect_reset(repo, git)
        raise
    finally:
        git.close()


def step(cmd: list[str]) -> int:
    """One bisect step: restore the artifacts of HEAD, then run `cmd`.  Returns the exit status."""
    from ..repo import Repo
    from .checkout import checkout
    from .revcheckout import explain_missing, prefetch, select_safe

    try:
        repo = Repo.find()
        try:
            fetch_error = prefetch(repo, None, select_safe(repo, None), _null())
            result = checkout(repo, None, force=True)
            explain_missing(repo, result, fetch_error)
        finally:
            repo.close()
    except MlvcError as exc:
        sys.stderr.write(f"mlvc bisect: cannot restore artifacts ({exc}); skipping this commit\n")
        return SKIP
    if result.failed:
        for name, err in result.failed.items():
            sys.stderr.write(f"mlvc bisect: {name} not restored: {describe(err)}\n")
        sys.stderr.write("mlvc bisect: skipping this commit (exit 125)\n")
        return SKIP
    try:
        rc = subprocess.call(cmd)
    except FileNotFoundError:
        sys.stderr.write(f"mlvc bisect: command not found: {cmd[0]}\n")
        return ABORT
    except PermissionError:
        sys.stderr.write(f"mlvc bisect: cannot execute {cmd[0]}\n")
        return ABORT
    if rc < 0:  # killed by a signal: abort like a shell would (128 + signal)
        return min(255, ABORT - rc)
    return rc


def _null() -> Progress:
    from ..progress import NULL

    return NULL


def step_main() -> None:
    try:
        sys.exit(step(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(ABORT + 2)
