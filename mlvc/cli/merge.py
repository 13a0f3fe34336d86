"""`mlvc merge PATH`: finish a git merge of a directory artifact's pointer, file by file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import JSON, QUIET
from .. import errors
from .main import app
from .output import echo, emit_json, open_repo


@app.command()
def merge(
    path: Path = typer.Argument(..., help="The conflicted artifact (or its .mlvc pointer)."),
    ours: bool = typer.Option(False, "--ours", help="Files changed on both sides keep our version."),
    theirs: bool = typer.Option(False, "--theirs", help="Files changed on both sides take their version."),
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Where to read tree manifests the "
                                         "cache lacks (default: the default remote)."),
    json_out: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Three-way merge of a directory artifact that `git merge` left conflicted: files added,
    edited or deleted on one side combine (from the tree manifests; no file is read), and the
    merged pointer is written and staged.  A file changed on both sides is a conflict (exit 8)
    naming it and both ids, until --ours or --theirs picks a side for such files.

    `mlvc install-hooks` makes git run this merge itself (a merge driver for `*.mlvc`).

    Examples:

    \b
      git merge feat-b            # CONFLICT (content): Merge conflict in data.mlvc
      mlvc merge data             # merged and staged, or the files changed on both sides
      mlvc merge data --theirs    # ... resolved to feat-b's versions
      mlvc checkout data && git commit
    """
    from ..ops.merge import OURS, THEIRS
    from ..ops.merge import merge as merge_op

    if ours and theirs:
        raise errors.UsageError("give --ours or --theirs, not both")
    prefer = OURS if ours else THEIRS if theirs else None
    with open_repo() as repo:
        result = merge_op(repo, path, prefer=prefer, remote=remote)
    if json_out:
        emit_json(result.as_dict())
        return
    if quiet:
        return
    for c in result.conflicts:
        echo(f"conflict {c.path}: kept {prefer} ({(c.ours if prefer == OURS else c.theirs) or 'deleted'})")
    for key in result.dropped_meta:
        echo(f"meta {key} differs on both sides: dropped")
    merged = result.merged
    if merged is not None:
        echo(f"merged {result.artifact} ({merged.files} files, {result.taken_from_theirs} from theirs) "
             f"-> {merged.oid}; staged {result.pointer}")
    echo(f"hint: run `mlvc checkout {result.artifact}` to restore it, then `git commit`")
