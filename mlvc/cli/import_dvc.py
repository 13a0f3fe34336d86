"""`mlvc import-dvc`: migrate a DVC project's tracked outputs to mlvc pointers."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .options import JSON
from .. import errors
from .main import app
from .output import echo, emit_json, human_size, open_repo, progress_for


@app.command("import-dvc")
def import_dvc(
    paths: List[Path] = typer.Argument(None, help=".dvc files, dvc.lock files, outputs or directories "
                                       "(default: every one in the repository)."),
    json_out: bool = JSON,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """Turn DVC outputs (.dvc files and dvc.lock stage outs) into mlvc pointers, from DVC's cache.

    Every byte is checked against DVC's md5 on the way in.  DVC's files are left in place:
    the summary says what to `git rm` and `git add` next.

    Examples:

    \b
      mlvc import-dvc                       # every .dvc file and dvc.lock of the repository
      mlvc import-dvc data/images.dvc model.bin
    """
    from ..ops.import_dvc import import_dvc as import_op

    with open_repo() as repo:
        result = import_op(repo, [str(p) for p in paths] if paths else None,
                           progress=progress_for(quiet or json_out))
    if json_out:
        emit_json(result.as_dict())
    elif not quiet:
        for o in result.imported:
            what = f"{o.files} files, " if o.kind == "dir" else ""
            echo(f"imported {o.path} ({what}{human_size(o.size)}) from {o.source}: "
                 f"{human_size(o.verified_bytes)} verified against DVC's md5 -> {o.pointer}")
        if result.git_rm or result.git_add:
            echo("next:")
            if result.git_rm:
                echo(f"  git rm -q {' '.join(result.git_rm)}")
            if result.git_add:
                echo(f"  git add {' '.join(result.git_add)}")
            echo("  git commit -m 'track data with mlvc instead of DVC'   # then `mlvc push` to a remote")
        for note in result.notes:
            echo(f"note: {note}")
    for name, msg in result.failed.items():
        echo(f"error: {name}: {msg}", err=True)
    if result.failed:
        codes = set(result.failed_codes.values())
        raise typer.Exit(codes.pop() if len(codes) == 1 and not result.imported else errors.EXIT_PARTIAL)
