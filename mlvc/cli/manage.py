"""`mlvc mv` and `mlvc rm`: move or untrack an artifact."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import JSON, QUIET
from .main import app
from .output import echo, emit_json, open_repo


@app.command()
def mv(
    src: Path = typer.Argument(..., help="A tracked artifact."),
    dst: Path = typer.Argument(..., help="Its new path (or a directory to move it into)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Move an artifact: its data, its pointer and their ignore entries (the objects stay as they are,
    so every commit's history stays readable).

    Examples:

    \b
      mlvc mv data/raw data/images
      mlvc mv model.pt checkpoints/     # into a directory
      git add -A data && git commit -m "rename dataset"
    """
    from ..ops.move import move

    with open_repo() as repo:
        r = move(repo, src, dst)
    if json_out:
        emit_json(r.__dict__)
    elif not quiet:
        echo(f"moved {r.src} -> {r.dst} (pointer {r.pointer}{'' if r.moved_data else '; no data to move'})")


@app.command()
def rm(
    path: Path = typer.Argument(..., help="A tracked artifact."),
    keep_data: bool = typer.Option(False, "--keep-data", help="Keep the files (untracked; git sees them again)."),
    force: bool = typer.Option(False, "--force", "-f", help="Delete the files even if they differ from the pointer."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Stop tracking an artifact: its pointer and ignore entries are removed, and its files unless
    --keep-data (files with unsaved changes are kept unless --force). The cache keeps the objects
    until `mlvc gc`.

    Examples:

    \b
      mlvc rm data/old
      mlvc rm data/images --keep-data
      git add -A data && git commit -m "untrack old data"
    """
    from ..ops.move import remove

    with open_repo() as repo:
        r = remove(repo, path, keep_data=keep_data, force=force)
    if json_out:
        emit_json(r.__dict__)
    elif not quiet:
        echo(f"untracked {r.path} (removed {r.pointer}{', deleted its files' if r.deleted_data else ''})")
