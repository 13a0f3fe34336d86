"""Remote commands: `mlvc remote add/list/remove/modify/default`, `mlvc push`, `mlvc pull`, `mlvc fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, TYPE_CHECKING

import typer

from .options import JSON, QUIET
from .. import errors
from . import error_table
from .main import app
from .output import (RemoteWatch, echo, emit_json, find_repo, human_size, open_repo, progress_for,
                     remote_label)

if TYPE_CHECKING:
    from ..ops.selection import Selection
    from ..progress import Progress
    from ..repo import Repo
    from ..store.types import TransferResult

REMOTE = typer.Option(None, "--remote", "-r", help="Remote to use: a name, or a URL or directory path of a "
                      "remote configured nowhere (default: the default remote; at an old commit whose "
                      "config names none, the branch's).")
JOBS = typer.Option(None, "--jobs", "-j", min=1, max=64,
                    help="Parallel transfers (default: 4 for object stores, 2 for directories).")
REV = typer.Option([], "--rev", help="Use the pointers of this git revision (repeatable); "
                   "read from git, nothing is checked out.")
ALL_COMMITS = typer.Option(False, "--all-commits", help="Use the pointers of every commit.")
ALL_BRANCHES = typer.Option(False, "--all-branches", help="Use the pointers of every local branch head.")
PATHS = typer.Argument(None, help="Artifacts (or their .mlvc pointers) to transfer (default: all); for fetch "
                       "and pull, a file inside a directory artifact moves just that file.")
WAIT_LOCK = typer.Option(0.0, "--wait-lock", min=0, metavar="SECONDS",
                         help="If a `gc --remote` holds the remote's lock, wait up to SECONDS for it "
                         "(and print one message) instead of failing at once with exit 13.")


def wait_message(quiet: bool) -> Callable[[str], None] | None:
    """The `on_wait` callback of --wait-lock: one line on stderr (nothing with --quiet)."""
    if quiet:
        return None
    return lambda message: echo(f"waiting: {message} (--wait-lock)", err=True)

remote_app = typer.Typer(help="Manage remotes: shared directories or object stores (s3://...)."
                         "\n\nExample: mlvc remote add shared /mnt/nfs/proj --default",
                         no_args_is_help=True)
app.add_typer(remote_app, name="remote")



# ---------------------------------------------------------------- remote group
@remote_app.command("add")
def remote_add(
    name: str = typer.Argument(..., help="Name of the remote, e.g. origin."),
    url: str = typer.Argument(..., help="s3://bucket/prefix, another fsspec URL, or a directory path "
                              "(relative paths are relative to the repository root)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="S3 endpoint (MinIO, moto, ...)."),
    region: Optional[str] = typer.Option(None, "--region", help="S3 region."),
    profile: Optional[str] = typer.Option(None, "--profile", help="AWS profile for credentials."),
    default: bool = typer.Option(False, "--default", "-d", help="Make it the default remote."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace a remote of the same name."),
    local: bool = typer.Option(False, "--local", help="Keep it in the git-ignored .mlvc/config.local: this "
                               "machine's only, and used at every commit (even one from before the remote "
                               "was added)."),
    quiet: bool = QUIET,
) -> None:
    """Add a remote to the committed .mlvc/config (secrets go to .mlvc/config.local: see `modify`).
    Commit .mlvc/config afterwards, so that every clone finds the remote.

    Examples:

    \b
      mlvc remote add shared /mnt/nfs/proj --default && git commit -m "remote" .mlvc/config
      mlvc remote add s3 s3://bucket/proj --endpoint-url http://127.0.0.1:9000
      mlvc remote add --local scratch /data/scratch/proj
    """
    from ..remote.config import add_remote

    repo = find_repo()
    rdef = add_remote(repo, name, url, {"endpoint_url": endpoint_url, "region": region, "profile": profile},
                      make_default=default, force=force, local=local)
    if not quiet:
        echo(f"added remote {rdef.name}: {rdef.url}" + (" (default)" if rdef.is_default else "")
             + (" in .mlvc/config.local" if local else ""))


@remote_app.command("list")
def remote_list(json_out: bool = JSON) -> None:
    """List remotes (secret values are never shown).

    Examples:

    \b
      mlvc remote list --json
    """
    from ..remote.config import list_remotes

    rows = [r.public() for r in list_remotes(find_repo())]
    if json_out:
        emit_json(rows)
        return
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in r["options"].items())
        echo(f"{r['name']}\t{r['url']}" + ("\t(default)" if r["default"] else "") + ("\t(local)" if r["local"] else "")
             + (f"\t{opts}" if opts else ""))


@remote_app.command("remove")
def remote_remove(name: str = typer.Argument(...), quiet: bool = QUIET) -> None:
    """Remove a remote from the configuration (nothing on the remote is deleted).

    Examples:

    \b
      mlvc remote remove old-nfs
    """
    from ..remote.config import remove_remote

    remove_remote(find_repo(), name)
    if not quiet:
        echo(f"removed remote {name}")


@remote_app.command("modify")
def remote_modify(
    name: str = typer.Argument(...),
    key: str = typer.Argument(..., help="url, endpoint_url, region, profile, jobs, access_key_id, "
                              "secret_access_key, ..."),
    value: Optional[str] = typer.Argument(None, help="New value (omit with --unset)."),
    local: bool = typer.Option(False, "--local", help="Write to the git-ignored .mlvc/config.local "
                               "(always the case for secrets)."),
    unset: bool = typer.Option(False, "--unset", help="Remove the option."),
    quiet: bool = QUIET,
) -> None:
    """Set one option of a remote.  Secret keys are always written to .mlvc/config.local.

    Examples:

    \b
      mlvc remote modify s3 region eu-west-1
      mlvc remote modify s3 secret_access_key KEY
    """
    from ..remote.config import is_secret, modify_remote

    if value is None and not unset:
        raise errors.MlvcError("give a VALUE, or --unset to remove the option")
    where = modify_remote(find_repo(), name, key, None if unset else value, local=local)
    if not quiet:
        shown = "***" if is_secret(key) else value
        echo(f"{name}.{key} {'unset' if unset else '= ' + str(shown)} in {where}")


@remote_app.command("default")
def remote_default(name: Optional[str] = typer.Argument(None, help="Remote to make the default."),
                   unset: bool = typer.Option(False, "--unset", help="Have no default remote."),
                   quiet: bool = QUIET) -> None:
    """Show or set the default remote.

    Examples:

    \b
      mlvc remote default shared
      mlvc remote default --unset
    """
    from ..remote.config import default_name, set_default

    repo = find_repo()
    if name is None and not unset:
        current = default_name(repo.config)
        if current is None:
            raise errors.RemoteNotFoundError("no default remote", hint="run `mlvc remote default NAME`")
        echo(current)
        return
    set_default(repo, None if unset else name)
    if not quiet:
        echo(f"default remote: {name}" if not unset else "no default remote")


@remote_app.command("unlock")
def remote_unlock(name: Optional[str] = typer.Argument(None, help="Remote (default: the default remote)."),
                  force: bool = typer.Option(False, "--force", help="Also remove a lock held by a process "
                                             "still running on this machine."),
                  quiet: bool = QUIET) -> None:
    """Remove the gc and push locks of a remote, left by a process that crashed on another machine.

    Locks of dead processes of this machine are broken automatically; run this only when no
    `mlvc gc --remote` or `mlvc push` is running against the remote anywhere.

    Examples:

    \b
      mlvc remote unlock shared
      mlvc remote unlock origin --force
    """
    from ..store.locks import break_locks

    with open_repo() as repo:
        _rdef, rstore = repo.remote_store(name)
        try:
            removed = break_locks(rstore.backend, force=force)
        finally:
            rstore.close()
    if not quiet:
        for lock in removed:
            echo(f"removed {lock.key}: {lock.info.describe()}")
        if not removed:
            echo("no locks")


# ---------------------------------------------------------------- transfers
def _exit_code(failed_codes: dict[str, int], done: list[str]) -> int:
    codes = set(failed_codes.values())
    if len(codes) == 1 and not done:
        return codes.pop()
    return errors.EXIT_PARTIAL


def _paths(paths: list[Path] | None) -> list[str] | None:
    return [str(p) for p in paths] if paths else None


def _report(result: TransferResult, verb: str, quiet: bool, data: int | None = None) -> None:
    """Per artifact, then one line; `data`: the artifact bytes the progress bar counted (sent, or
    already there), the basis an interrupted transfer's summary gives too."""
    if quiet:
        return
    moved = [n for n in result.done if n not in result.up_to_date]
    for name in moved:
        echo(f"{verb} {name}")
    covered = f"{human_size(data)} of artifact data done; " if data is not None else ""
    echo(f"{covered}{result.objects} objects ({human_size(result.bytes)} as stored) in {result.packs} packs, "
         f"{result.requests} requests; {len(result.done)} artifacts complete, "
         f"{len(result.up_to_date)} already up to date")


def watched(repo: Repo, remote: str | None, command: str, quiet: bool) -> RemoteWatch:
    """The progress of a transfer, with a message when the remote stops answering (none with -q)
    and a summary on Ctrl-C."""
    notify = None if quiet else (lambda message: echo(message, err=True))
    return RemoteWatch(progress_for(quiet), remote_label(repo, remote), command, notify)


def _transfer(op: Callable[[Repo, Selection, Progress], TransferResult], verb: str, paths: list[Path] | None,
              rev: list[str] | None, all_commits: bool, all_branches: bool, remote: str | None, quiet: bool,
              json_out: bool) -> None:
    """Run push or fetch (`op`, given the repository, the selection and the progress), report per
    artifact, exit with the documented code on failures."""
    command = {"pushed": "mlvc push", "fetched": "mlvc fetch"}[verb]
    from ..ops.selection import Selection

    with open_repo() as repo, watched(repo, remote, command, quiet or json_out) as progress:
        result = op(repo, Selection.of(_paths(paths), revs=rev, all_commits=all_commits, all_branches=all_branches),
                    progress)
    if json_out:
        emit_json(result.as_dict(describe=error_table.message))
    else:
        _report(result, verb, quiet, progress.moved_all)
    for name, exc in result.failed.items():
        echo(f"error: {name}: {error_table.message(exc)}", err=True)
    if verb == "fetched":
        _absent_hint(repo, remote, result)
    if result.failed:
        raise typer.Exit(_exit_code(result.failed_codes, result.done))


def _absent_hint(repo: Repo, remote: str | None, result: TransferResult) -> None:
    """One hint under the errors of a fetch whose objects are on no remote: pulling again
    cannot help, pushing from the machine that has them can."""
    from ..ops.fetch import absent_from_remote, push_hint
    from ..remote.config import known_remotes

    if absent_from_remote(result):
        name = remote or known_remotes(repo)[1] or "the remote"
        echo(f"hint: {push_hint(name)}", err=True)


@app.command()
def push(
    paths: List[Path] = PATHS,
    rev: List[str] = REV,
    all_commits: bool = ALL_COMMITS,
    all_branches: bool = ALL_BRANCHES,
    remote: Optional[str] = REMOTE,
    jobs: Optional[int] = JOBS,
    wait_lock: float = WAIT_LOCK,
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Upload the objects of the artifacts that the remote lacks, in large packs, in parallel.

    Safe to interrupt and re-run (it resumes), and safe with many pushers at once.

    Examples:

    \b
      mlvc push
      mlvc push -r shared --jobs 8
      mlvc push --wait-lock 600   # wait out a running `mlvc gc --remote`
    """
    from ..ops.push import push as push_op

    def run(repo: Repo, selection: Selection, progress: Progress) -> TransferResult:
        return push_op(repo, selection, remote=remote, jobs=jobs, progress=progress, wait_lock=wait_lock,
                       on_wait=wait_message(quiet))

    _transfer(run, "pushed", paths, rev, all_commits, all_branches, remote, quiet, json_out)


@app.command()
def fetch(
    paths: List[Path] = PATHS,
    rev: List[str] = REV,
    all_commits: bool = ALL_COMMITS,
    all_branches: bool = ALL_BRANCHES,
    remote: Optional[str] = REMOTE,
    jobs: Optional[int] = JOBS,
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Download the objects of the artifacts into the cache, verifying each; the workspace is not touched.

    Examples:

    \b
      mlvc fetch --rev v1
      mlvc fetch --all-branches -r shared
    """
    from ..ops.fetch import fetch as fetch_op

    def run(repo: Repo, selection: Selection, progress: Progress) -> TransferResult:
        return fetch_op(repo, selection, remote=remote, jobs=jobs, progress=progress)

    _transfer(run, "fetched", paths, rev, all_commits, all_branches, remote, quiet, json_out)


@app.command()
def pull(
    paths: List[Path] = PATHS,
    rev: List[str] = REV,
    all_commits: bool = ALL_COMMITS,
    all_branches: bool = ALL_BRANCHES,
    remote: Optional[str] = REMOTE,
    jobs: Optional[int] = JOBS,
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite or remove unsaved workspace changes."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Fetch, then check out the workspace's artifacts.  --rev/--all-commits/--all-branches also
    fetch those commits' artifacts (for a later `mlvc checkout REV` without a network).

    Examples:

    \b
      git clone URL proj && cd proj && mlvc pull
      mlvc pull --rev v1   # also fetch v1's artifacts
    """
    from ..ops.fetch import pull as pull_op
    from ..ops.selection import Selection

    with open_repo() as repo, watched(repo, remote, "mlvc pull", quiet or json_out) as progress:
        result = pull_op(repo, Selection.of(_paths(paths), revs=rev, all_commits=all_commits,
                                            all_branches=all_branches), remote=remote, jobs=jobs, force=force,
                         progress=progress)
    if json_out:
        emit_json(result.as_dict(describe=error_table.message))
    elif not quiet:
        _report(result.fetch, "fetched", False)
        for name in result.checkout.restored:
            echo(f"restored {name}")
        co = result.checkout
        if co.written_files or co.removed_files:
            echo(f"{co.written_files} files written ({human_size(co.written_bytes)}), {co.removed_files} removed")
    for name, exc in result.failed.items():
        echo(f"error: {name}: {error_table.message(exc)}", err=True)
    _absent_hint(repo, remote, result.fetch)
    if result.failed:
        done = result.checkout.restored + result.checkout.unchanged
        raise typer.Exit(_exit_code(result.failed_codes, done))
