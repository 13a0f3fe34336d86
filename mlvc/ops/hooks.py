"""`mlvc install-hooks` / `uninstall-hooks`, and what each installed hook does.

Each hook file gets one marked block (`# >>> mlvc >>>` ... `# <<< mlvc <<<`,
written by `mlvc.hooks.install_hook`) that calls `mlvc hook-run NAME ARGS`; the
rest of an existing hook keeps running after it.  Installing twice replaces
the block; uninstalling removes only the block.

* post-checkout: after `git checkout` / `git switch` moved HEAD to another
  commit, restore the artifacts (quietly; objects missing from the cache are
  fetched from the default remote when one is configured).
* post-merge: after `git merge` / `git pull`, the same.
* pre-push: push the artifacts of every commit `git push` sends (the commits not yet on that
  git remote, as git-lfs does) to the default remote, when one is configured; a failed
  push stops `git push`, so commits never reach the git remote without their
  artifacts.
* pre-commit: refuse the commit when a staged pointer's artifact changed in the
  workspace and was not re-added (the commit would record stale pointers).

The merge driver: `git config merge.mlvc.driver` (this clone) runs `mlvc hook-run merge-driver`
for the files `.gitattributes` (committed, so every clone uses it) marks `merge=mlvc`: pointers
of directory artifacts changed on both sides merge file by file (`mlvc.ops.merge`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import shlex
import sys

from .. import hooks as hook_files
from ..errors import GitError, MlvcError, describe

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..progress import Progress
    from ..repo import Repo

Warn = Callable[[str], None]  # takes one message for stderr

HOOKS = ("post-checkout", "post-merge", "pre-push", "pre-commit")
SKIP_ENV = "MLVC_SKIP_HOOKS"


MERGE_DRIVER = "mlvc"
ATTRIBUTES_LINE = f"*.mlvc merge={MERGE_DRIVER}"
_CALL = "from mlvc.cli.main import main; main()"


def _driver_command() -> str:
    """The shell command git runs to merge a pointer (git substitutes the quoted %O %A %B %P)."""
    py = shlex.quote(sys.executable)
    args = "hook-run merge-driver %O %A %B %P"
    return (f"if [ -x {py} ]; then {py} -c {shlex.quote(_CALL)} {args}; "
            f"elif command -v mlvc >/dev/null 2>&1; then mlvc {args}; "
            'else echo "mlvc: not found; cannot merge %P" >&2; exit 1; fi')


def _body(name: str) -> str:
    py = shlex.quote(sys.executable)
    call = _CALL
    func = (f'mlvc_hook() {{ if [ -x {py} ]; then {py} -c {shlex.quote(call)} hook-run "$@"; '
            'elif command -v mlvc >/dev/null 2>&1; then mlvc hook-run "$@"; '
            'else echo "mlvc: not found; skipping the mlvc $1 hook" >&2; fi; }')
    if name in ("post-checkout", "post-merge"):
        run = f'[ -n "${SKIP_ENV}" ] || mlvc_hook {name} "$@" </dev/null || true'
    elif name == "pre-push":
        # git names the refs it pushes on stdin: hand them to mlvc, then give the same lines to
        # the rest of the hook (a chained git-lfs pre-push reads them too)
        run = (f'if [ -z "${SKIP_ENV}" ]; then\n'
               'mlvc_updates=$(cat)\n'
               f'printf \'%s\\n\' "$mlvc_updates" | mlvc_hook {name} "$@" || exit $?\n'
               'exec <<MLVC_PRE_PUSH_EOF\n'
               '$mlvc_updates\n'
               'MLVC_PRE_PUSH_EOF\n'
               'fi')
    else:
        run = f'[ -n "${SKIP_ENV}" ] || mlvc_hook {name} "$@" </dev/null || exit $?'
    return f"{func}\n{run}\n"


def install_hooks(repo: Repo, names: Iterable[str] = HOOKS, *, merge_driver: bool = True) -> list[str]:
    """Install the hooks `names` and (`merge_driver`) the merge driver; what was installed."""
    git = _git(repo)
    try:
        done = [str(hook_files.install_hook(git.hooks_dir(), n, _body(n))) for n in names]
        if merge_driver:
            git.run_git("config", f"merge.{MERGE_DRIVER}.name", "mlvc: three-way merge of directory artifacts")
            git.run_git("config", f"merge.{MERGE_DRIVER}.driver", _driver_command())
            _ensure_attributes(repo.root / ".gitattributes")
            done.append(f"merge driver (git config merge.{MERGE_DRIVER}.driver; "
                        f".gitattributes: {ATTRIBUTES_LINE}, commit it so every clone uses it)")
        return done
    finally:
        git.close()


def uninstall_hooks(repo: Repo, names: Iterable[str] = HOOKS) -> list[str]:
    git = _git(repo)
    try:
        removed = [n for n in names if hook_files.uninstall_hook(git.hooks_dir(), n)]
        try:
            git.run_git("config", "--remove-section", f"merge.{MERGE_DRIVER}")
            removed.append("merge driver")
        except GitError:
            pass  # no such section: the driver was not installed
        _drop_attributes(repo.root / ".gitattributes")
        return removed
    finally:
        git.close()


def _attribute_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _ensure_attributes(path: Path) -> None:
    lines = _attribute_lines(path)
    if ATTRIBUTES_LINE in (line.strip() for line in lines):
        return
    _write_text(path, "\n".join([*lines, ATTRIBUTES_LINE]) + "\n")


def _drop_attributes(path: Path) -> None:
    lines = _attribute_lines(path)
    kept = [line for line in lines if line.strip() != ATTRIBUTES_LINE]
    if kept == lines:
        return
    if any(line.strip() for line in kept):
        _write_text(path, "\n".join(kept) + "\n")
    else:
        path.unlink()


def _write_text(path: Path, text: str) -> None:
    from ..atomic import write_text

    write_text(path, text)


def _git(repo: Repo) -> GitRepo:
    from ..git import GitRepo

    if not repo.has_git:
        raise MlvcError("git hooks need a git repository (this one was set up with --no-scm)")
    return GitRepo(repo.root)


# ------------------------------------------------------------------ hook bodies


def run_hook(repo: Repo, name: str, args: list[str], progress: Progress | None = None, updates: str = "",
             describe: Callable[[MlvcError], str] = describe) -> tuple[int, list[str]]:
    """(exit status git sees, messages for stderr) of hook `name`; `progress` receives the
    pre-push hook's transfer progress, `updates` is what git wrote on its stdin (the refs it pushes),
    `describe` words an artifact's failure (the CLI adds its commands to the hint)."""
    messages: list[str] = []
    warn = messages.append
    if name == "post-checkout":
        prev, new, flag = (list(args) + ["", "", ""])[:3]
        if flag != "1" or prev == new:
            return 0, messages  # a file checkout, or HEAD did not move
        code = _restore(repo, warn, describe)
        _left_behind(repo, prev, warn)
        return code, messages
    if name == "post-merge":
        return _restore(repo, warn, describe), messages
    if name == "pre-push":
        return _pre_push(repo, warn, progress or _null(), args, updates, describe), messages
    if name == "pre-commit":
        return _pre_commit(repo, warn), messages
    if name == "merge-driver":
        if len(args) != 4:
            raise MlvcError("the merge driver takes 4 arguments: %O %A %B %P")
        from .merge import merge_driver

        return merge_driver(repo, *args)
    raise MlvcError(f"unknown hook {name!r}")


def _restore(repo: Repo, warn: Warn, describe: Callable[[MlvcError], str]) -> int:
    from .checkout import checkout
    from .revcheckout import explain_missing, prefetch, select_safe

    fetch_error = prefetch(repo, None, select_safe(repo, None), progress=_null())
    result = checkout(repo, None, force=False)
    explain_missing(repo, result, fetch_error)
    for artifact, exc in result.failed.items():
        warn(f"mlvc: {artifact} not restored: {describe(exc)}")
    return 0  # post-checkout/post-merge cannot undo the git operation; report only


def _left_behind(repo: Repo, prev: str, warn: Warn) -> None:
    """Name the artifacts of the previous commit that the new one does not track: their bytes
    stay on disk, kept out of git (so `git add -A` cannot commit a dataset)."""
    from .. import pointer as pointers
    from ..git import GitRepo
    from .revcheckout import left_behind

    git = GitRepo(repo.root)
    try:
        before = [p.path for p in pointers.pointers_at(git, prev) if p.ptr is not None]
    except MlvcError:
        return  # an unknown previous commit (a fresh clone's null sha): nothing was left
    finally:
        git.close()
    for path in left_behind(repo, before):
        warn(f"mlvc: {path} is not tracked at this commit; left on disk and kept out of git "
             "(.git/info/exclude)")


def _null() -> Progress:
    from ..progress import NULL

    return NULL


ZERO_SHA = "0" * 40


def pushed_commits(repo: Repo, git_remote: str, updates: str) -> list[str] | None:
    """The commits a `git push` sends, from the lines git writes to pre-push's stdin
    (`<local ref> <local sha> <remote ref> <remote sha>`): each pushed sha and its ancestors
    not on that git remote yet.  None when git gave no lines (a hook installed by an older mlvc)."""
    from ..git import GitRepo

    lines = [line.split() for line in updates.splitlines() if line.strip()]
    if not lines:
        return None
    git = GitRepo(repo.root)
    try:
        commits: dict[str, None] = {}
        for fields in lines:
            if len(fields) != 4 or set(fields[1]) == {"0"}:
                continue  # a deleted ref sends nothing
            local, theirs = fields[1], fields[3]
            exclude = [f"--remotes={git_remote}"]
            if set(theirs) != {"0"}:
                exclude.insert(0, theirs)
            try:
                out = git.run_git("rev-list", local, "--not", *exclude)
            except GitError:  # their sha is not known here (pushing over someone else's work)
                out = git.run_git("rev-list", local, "--not", f"--remotes={git_remote}")
            commits.update(dict.fromkeys(out.split()))
        return list(commits)
    finally:
        git.close()


def _pre_push(repo: Repo, warn: Warn, progress: Progress, args: list[str] | None = None, updates: str = "",
              describe: Callable[[MlvcError], str] = describe) -> int:
    from .revcheckout import default_remote

    remote = default_remote(repo)
    if remote is None:
        return 0
    revs = pushed_commits(repo, (args or ["origin"])[0], updates)
    if revs == []:
        return 0  # only deletions, or commits the git remote has
    import importlib.util

    if importlib.util.find_spec("mlvc.ops.push") is None:
        warn("mlvc: this installation cannot push artifacts; skipping `mlvc push`")
        return 0
    from .push import push
    from .selection import Selection

    try:
        result = push(repo, Selection.of(revs=revs), progress=progress)
        code = 1 if result.failed else 0
        for name, exc in result.failed.items():
            warn(f"mlvc: {name}: {describe(exc)}")
    except MlvcError as exc:
        warn(f"mlvc: {exc}")
        code = exc.exit_code
    if code != 0:
        warn(f"mlvc: pushing artifacts to {remote!r} failed; `git push` stopped so that no commit reaches the "
             "git remote without its artifacts (run `mlvc push`, or `git push --no-verify` to skip)")
    return code


def _pre_commit(repo: Repo, warn: Warn) -> int:
    from ..git import GitRepo
    from .status import MODIFIED, status

    git = GitRepo(repo.root)
    try:
        out = git.run_git("diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z")
    finally:
        git.close()
    staged = [n for n in out.split("\0") if n.endswith(".mlvc") and not n.startswith(".mlvc/")]
    if not staged:
        return 0
    stale: list[str] = []
    for rel in staged:
        if not (repo.root / rel).is_file():
            continue
        try:
            results = status(repo, [str(repo.root / rel)], check_cache=False)
        except MlvcError as exc:
            warn(f"mlvc: {rel}: {exc}")
            continue
        stale.extend(r.path for r in results if r.state == MODIFIED)
    if not stale:
        return 0
    for path in stale:
        warn(f"mlvc: {path} changed in the workspace but was not re-added; its staged pointer is stale")
    warn(f"hint: run `mlvc add {' '.join(stale)}` and `git add` the pointers, or commit with --no-verify")
    return 1
