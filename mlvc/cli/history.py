"""History commands: diff, log, params diff, gc, install-hooks, uninstall-hooks, bisect run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, TYPE_CHECKING

import typer

from . import error_table
from .options import JSON, QUIET
from .. import errors
from .main import app
from .output import find_repo, open_repo, echo, emit_json, human_size, progress_for

if TYPE_CHECKING:
    from ..store.gc import GcResult
    from ..repo import Repo




def _fmt(v: object) -> str:
    """A measured number (a relative L2 change), to 4 significant digits."""
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return "-" if v is None else str(v)


def _value(v: object) -> str:
    """A recorded value (a parameter, a meta entry) as written: 2.0 stays 2.0, 1e-05 stays 1e-05."""
    if isinstance(v, float):
        return repr(v)
    return "-" if v is None else str(v)


# ------------------------------------------------------------------ diff


@app.command()
def diff(
    revs: Optional[List[str]] = typer.Argument(None, help="[REV_A [REV_B] | A..B] [PATH...]: compare two "
                                               "commits (REV_B defaults to the workspace pointers; no revision: "
                                               "the workspace against HEAD, as `git diff`)."),
    json_out: bool = JSON,
    no_contents: bool = typer.Option(False, "--no-contents", help="Compare pointers only (no file or tensor "
                                     "level detail)."),
) -> None:
    """Per artifact: added / removed / modified, files changed with sizes, and for checkpoints
    which tensors changed, grouped by module, with their relative L2 change.

    Examples:

    \b
      mlvc diff                     # the workspace pointers against HEAD
      mlvc diff HEAD~3 HEAD
      mlvc diff v1..v2 checkpoints
      mlvc diff v1 checkpoints/model.pt --json
    """
    from ..ops.diff import diff as diff_op

    with open_repo() as repo:
        rev_a, rev_b, paths = _diff_args(repo, list(revs or []))
        result = diff_op(repo, rev_a, rev_b, paths or None, contents=not no_contents)
    if json_out:
        emit_json(result.as_dict())
        return
    label_b = result.rev_b or "workspace"
    if not result.artifacts and not result.params:
        echo(f"no artifact or parameter changes between {result.rev_a} and {label_b}")
        return
    for a in result.artifacts:
        if a.change == "invalid":
            echo(f"invalid   {a.path}: {a.error}")
            continue
        sizes = ""
        if a.change == "modified":
            sizes = f"  {human_size(a.old_size or 0)} -> {human_size(a.new_size or 0)}"
        elif a.change == "added":
            sizes = f"  {human_size(a.new_size or 0)}"
        elif a.change == "removed":
            sizes = f"  {human_size(a.old_size or 0)}"
        echo(f"{a.change:9} {a.path}{sizes}")
        for f in a.files:
            if f.change == "modified":
                echo(f"    modified: {f.path} ({human_size(f.old_size or 0)} -> {human_size(f.new_size or 0)})")
            else:
                size = f.new_size if f.change == "added" else f.old_size
                echo(f"    {f.change}: {f.path} ({human_size(size or 0)})")
        for c in a.checkpoints:
            where = f" {c.path}" if c.path else ""
            if c.error:
                echo(f"    checkpoint{where}: {c.error}")
                continue
            n_changed = sum(len(v) for v in c.modules.values())
            echo(f"    checkpoint{where} ({c.format}): {n_changed} tensors changed in {len(c.modules)} module(s); "
                 f"{len(c.unchanged_modules)} module(s) unchanged")
            for module, changes in c.modules.items():
                blocks = [b[len(module) + 1:] for b in c.changed_blocks.get(module, [])]
                echo(f"      {module}" + (f" (blocks changed: {', '.join(blocks)})" if blocks else "") + ":")
                for t in changes:
                    if t.change == "modified":
                        shape = "" if t.old_shape == t.new_shape else f" shape {t.old_shape} -> {t.new_shape}"
                        echo(f"        modified {t.name} ({t.dtype}){shape} rel_l2={_fmt(t.rel_l2)}")
                    else:
                        echo(f"        {t.change} {t.name} ({t.dtype} {t.new_shape or t.old_shape})")
        for rel, moved in a.id_changes.items():
            where = f" in {rel}" if rel else ""
            modules = moved.get("modules", [])
            blocks = moved.get("blocks", [])
            shown = ", ".join(_with_blocks(m, blocks) for m in modules)
            rest = [b for b in blocks if not any(b.startswith(m + ".") for m in modules)]
            echo(f"    module ids changed{where}: " + ", ".join(filter(None, [shown, ", ".join(rest)])))
        for k, v in a.meta.items():
            echo(f"    meta {k}: {_value(v['old'])} -> {_value(v['new'])}")
        if a.role:
            echo(f"    role: {a.role['old']} -> {a.role['new']}")
        if a.error:
            echo(f"    note: {a.error}")
    if result.params:
        echo("params:")
        for p in result.params:
            echo(f"    {p.source}: {p.key}: {_value(p.old)} -> {_value(p.new)}")


def _with_blocks(module: str, blocks: list[str]) -> str:
    """"model.layers (blocks 2, 5)": a module and which of its blocks' ids changed."""
    mine = [b[len(module) + 1:] for b in blocks if b.startswith(module + ".")]
    return f"{module} (blocks {', '.join(mine)})" if mine else module


def _diff_args(repo: Repo, args: list[str]) -> tuple[str, str | None, list[str]]:
    """(REV_A, REV_B or None for the workspace, paths) of `mlvc diff`'s arguments: none is HEAD
    against the workspace; `A..B` a range (an empty side is HEAD, as in git); else the first
    argument is a revision unless it is a path (as for `checkout`), and so is a second one that
    git knows and that is not a path."""
    from ..git import GitRepo
    from .core import split_rev

    if not args:
        return "HEAD", None, []
    first = args[0]
    if ".." in first and not Path(first).exists() and not Path(first + ".mlvc").exists():
        a, _, b = first.partition("..")
        if b.startswith("."):
            raise errors.UsageError(f"symmetric ranges are not supported: {first!r}", hint="use A..B")
        return a or "HEAD", b or "HEAD", args[1:]
    rev_a, rest = split_rev(repo, args)
    if rev_a is None:
        return "HEAD", None, rest
    if rest and not Path(rest[0]).exists() and not Path(rest[0] + ".mlvc").exists():
        try:
            GitRepo(repo.root).resolve(rest[0])
            return rev_a, rest[0], rest[1:]
        except errors.MlvcError:
            pass
    return rev_a, None, rest


# ------------------------------------------------------------------ log


@app.command()
def log(
    path: Optional[str] = typer.Argument(None, help="An artifact (or its pointer, or a directory of them)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only commits newer than this (7.days, 2.weeks, "
                                        "yesterday, 2024-05-01)."),
    fmt: str = typer.Option("text", "--format", help="text, md (a 'what changed' report) or json."),
    max_count: Optional[int] = typer.Option(None, "-n", "--max-count", help="At most N commits."),
    rev: str = typer.Option("HEAD", "--rev", help="Walk history from this revision."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON (as --format json)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Past an `mlvc mv` of PATH, go on with its "
                                "history under the old path (as `git log --follow`; text and JSON)."),
) -> None:
    """An artifact's history (commit, date, author, message, id, size, role, meta), read from git's
    object database without any checkout. PATH's history goes on past an `mlvc mv` under its old path.

    Examples:

    \b
      mlvc log checkpoints/model.pt
      mlvc log checkpoints/model.pt --json
      mlvc log --since 7.days --format md
    """
    from ..ops import log as log_ops

    if fmt not in ("text", "md", "json"):
        raise errors.UsageError(f"--format must be text, md or json, not {fmt!r}")
    if json_out:
        if fmt == "md":
            raise errors.UsageError("--json and --format md exclude each other")
        fmt = "json"
    try:
        log_ops.parse_since(since)
    except errors.MlvcError as exc:
        raise errors.UsageError(str(exc), hint=exc.hint) from None
    with open_repo() as repo:
        if fmt == "md":
            reports = log_ops.report(repo, path, since, max_count, rev)
            import sys

            sys.stdout.write(log_ops.render_markdown(reports, since))
            return
        entries = log_ops.log(repo, path, since, max_count, rev, follow=follow)
        if path and not entries:
            where = repo.resolve_user_path(path)
            if not (where.exists() or (where.parent / (where.name + ".mlvc")).exists()):
                raise errors.PathError(path, "does not exist, and no commit changed an artifact there",
                                       hint="run `mlvc ls` to list the tracked artifacts")
    if fmt == "json":
        emit_json([e.as_dict() for e in entries])
    elif entries:
        echo(log_ops.render_text(entries))
    else:
        echo("no artifact changes" + (f" since {since}" if since else "") + (f" for {path}" if path else ""))


# ------------------------------------------------------------------ params

params_app = typer.Typer(help="Hyper-parameters from params files (YAML/JSON) and pointer meta."
                         "\n\nExample: mlvc params diff v1 v2",
                         no_args_is_help=True)
app.add_typer(params_app, name="params")


@params_app.command("diff")
def params_diff_cmd(
    rev_a: str = typer.Argument(..., help="Old revision."),
    rev_b: Optional[str] = typer.Argument(None, help="New revision (default: the workspace)."),
    json_out: bool = JSON,
) -> None:
    """Parameters added, removed or changed between two commits.

    Examples:

    \b
      mlvc params diff v1 v2
      mlvc params diff HEAD~1   # against the workspace
    """
    from ..ops.params import params_diff

    with open_repo() as repo:
        changes = params_diff(repo, rev_a, rev_b)
    if json_out:
        emit_json([c.as_dict() for c in changes])
        return
    if not changes:
        echo(f"no parameter changes between {rev_a} and {rev_b or 'workspace'}")
    for c in changes:
        echo(f"{c.change:8} {c.source}: {c.key}: {_value(c.old)} -> {_value(c.new)}")


# ------------------------------------------------------------------ gc


@app.command()
def gc(
    workspace: bool = typer.Option(False, "--workspace", "-w", help="Keep only what the workspace pointers use."),
    all_branches: bool = typer.Option(False, "--all-branches", "-a", help="Also keep what every branch head uses."),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="Also keep what any commit on any ref uses."),
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Collect garbage on this remote instead of "
                                         "the local cache (takes the remote's gc lock)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Print what would be removed, remove nothing."),
    grace: Optional[float] = typer.Option(None, "--grace", help="Never touch packs younger than this many seconds "
                                          "(default 3600, or gc.grace_seconds / $MLVC_GC_GRACE)."),
    wait_lock: float = typer.Option(0.0, "--wait-lock", min=0, metavar="SECONDS",
                                    help="With --remote: if another gc or a push holds the remote's locks, "
                                    "wait up to SECONDS (printing one message) instead of failing with exit 13."),
    repack: bool = typer.Option(False, "--repack", help="Also store the kept checkpoints' float tensors "
                                "smaller (byte planes, or deltas against their previous version where that "
                                "is in the cache) and merge small packs. The cache only."),
    json_out: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Remove objects that no kept pointer reaches (choose exactly one scope).

    With --repack (as `git gc` repacks), the cache's float chunks that the float codec would
    store smaller (added with `core.float_planes` off, or whose base arrived later) are stored
    again as byte planes or XOR deltas, small packs are merged, and the old packs go only after
    the new ones are published. Ids and restored bytes never change.

    Examples:

    \b
      mlvc gc --all-commits --dry-run
      mlvc gc --all-branches --remote shared
      mlvc gc --all-commits --remote shared --wait-lock 600
      mlvc gc --all-commits --repack
      mlvc gc --workspace --repack --dry-run --json
    """
    from ..ops.gc import gc as gc_op
    from .remote import wait_message

    chosen = [s for s, on in (("workspace", workspace), ("all-branches", all_branches),
                              ("all-commits", all_commits)) if on]
    if len(chosen) != 1:
        raise errors.UsageError("choose what to keep: exactly one of --workspace, --all-branches, --all-commits")
    if grace is not None and not 0 <= grace < math.inf:
        raise errors.UsageError(f"--grace must be a number of seconds, 0 or more, not {grace:g}",
                                hint="--grace 0 collects every unreachable pack at once")
    with open_repo() as repo:
        result = gc_op(repo, chosen[0], remote=remote, dry_run=dry_run, grace=grace, wait_lock=wait_lock,
                       on_wait=wait_message(quiet or json_out), repack=repack,
                       progress=progress_for(quiet or json_out))
    if json_out:
        emit_json(result.as_dict())
        return
    if quiet:
        return
    for w in result.warnings:
        echo(f"warning: {w}", err=True)
    where = f"remote {result.remote}" if result.remote else "the cache"
    if dry_run:
        for p in result.plans:
            what = "delete" if p.delete_whole else "rewrite"
            echo(f"would {what} pack {p.name}: {p.dead_objects} of {p.objects} objects unreferenced "
                 f"({human_size(p.dead_bytes)})")
        echo(f"would remove {result.objects_removed} objects, {human_size(result.bytes_removed)} "
             f"({human_size(result.raw_bytes_removed)} uncompressed) from {where}; kept "
             f"{result.kept_artifacts} artifact versions ({result.live_objects} objects)")
    else:
        echo(f"removed {result.objects_removed} objects, {human_size(result.bytes_removed)} from {where} "
             f"({result.packs_rewritten} packs rewritten, {result.packs_deleted} deleted); kept "
             f"{result.kept_artifacts} artifact versions")
    if result.repacked:
        _repack_summary(result)
    elif result.packs_recent:
        echo(f"{result.packs_recent} recent pack(s) left untouched (younger than the grace period)")


def _repack_summary(result: GcResult) -> None:
    would = "would re-encode" if result.dry_run else "re-encoded"
    echo(f"{would} {result.chunks_recoded} chunks ({result.recoded_as_deltas} as deltas): "
         f"{human_size(result.recoded_bytes_before)} -> {human_size(result.recoded_bytes_after)}; "
         f"{result.packs_merged} small pack(s) merged; the cache's packs "
         f"{human_size(result.stored_bytes_before)} -> {human_size(result.stored_bytes_after)}")


# ------------------------------------------------------------------ hooks


@app.command("install-hooks")
def install_hooks(quiet: bool = QUIET) -> None:
    """Install git hooks: checkout/switch/pull restore artifacts, push pushes them, and a commit
    of a changed but not re-added artifact is refused.  Existing hooks keep running.  Also the
    merge driver for `*.mlvc` (git config + .gitattributes): branches that both changed a
    directory artifact merge file by file (see `mlvc merge`).

    Examples:

    \b
      mlvc install-hooks
    """
    from ..ops.hooks import install_hooks as op

    with open_repo() as repo:
        paths = op(repo)
    if not quiet:
        for p in paths:
            echo(f"installed {p}")


@app.command("uninstall-hooks")
def uninstall_hooks(quiet: bool = QUIET) -> None:
    """Remove mlvc's blocks from the git hooks (other hook content stays).

    Examples:

    \b
      mlvc uninstall-hooks
    """
    from ..ops.hooks import uninstall_hooks as op

    with open_repo() as repo:
        names = op(repo)
    if not quiet:
        echo(f"removed mlvc from {', '.join(names)}" if names else "no mlvc hooks were installed")


@app.command("hook-run", hidden=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def hook_run(name: str = typer.Argument(...), args: List[str] = typer.Argument(None)) -> None:
    """Run the mlvc part of a git hook (called by the installed hooks)."""
    from ..ops.hooks import run_hook

    try:
        repo = find_repo()
    except errors.NotARepoError:
        return  # the hook of a repo where mlvc was removed: nothing to do
    try:
        if name == "pre-push":  # git push waits on it: say so when the remote does not answer
            from ..progress import NULL
            from .output import RemoteWatch, remote_label

            import sys

            updates = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
            with RemoteWatch(NULL, remote_label(repo, None), "git push",
                             lambda message: echo(f"mlvc: {message}", err=True)) as progress:
                code, messages = run_hook(repo, name, list(args or []), progress, updates=updates,
                                          describe=error_table.message)
        else:
            code, messages = run_hook(repo, name, list(args or []), describe=error_table.message)
    finally:
        repo.close()
    for m in messages:
        echo(m, err=True)
    if code:
        raise typer.Exit(code)


# ------------------------------------------------------------------ bisect

bisect_app = typer.Typer(help="git bisect with the matching artifacts restored at every step."
                         "\n\nExample: mlvc bisect run --bad HEAD --good v1 python eval.py",
                         no_args_is_help=True)
app.add_typer(bisect_app, name="bisect")


@bisect_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bisect_run_cmd(
    cmd: List[str] = typer.Argument(..., help="The command that tells good (0) from bad (1-127, not 125)."),
    bad: Optional[str] = typer.Option(None, "--bad", help="Start a session: this revision is bad."),
    good: List[str] = typer.Option([], "--good", help="Start a session: this revision is good (repeatable)."),
    keep: bool = typer.Option(False, "--keep", help="Do not `git bisect reset` when the run finishes."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite workspace artifacts never added."),
) -> None:
    """`git bisect run CMD...`, restoring each step's artifacts first (125 = skip when they cannot be).

    Examples:

    \b
      mlvc bisect run --bad HEAD --good v1 python eval.py --min-acc 0.8
    """
    from ..ops.bisect import bisect_run

    with open_repo() as repo:
        result = bisect_run(repo, list(cmd), good=list(good) or None, bad=bad, reset=not keep, force=force,
                            say=lambda line: echo(line, flush=True))
    if result.first_bad:
        echo(f"first bad commit: {result.first_bad} {result.first_bad_message or ''}".rstrip())
    if result.reset:
        echo("bisect session ended (git bisect reset); artifacts restored")
    if result.exit_code:
        raise typer.Exit(result.exit_code)
