"""Other repositories as sources: `mlvc get URL PATH`, and `mlvc ls URL [PATH]` (registered by
`core.ls`, which lists this workspace's artifacts without a URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .main import app
from .output import echo, emit_json, human_size, progress_for

REV_HELP = "A branch, tag or commit of the source (default: its HEAD)."


def ls_url(url: str, path: str | None, rev: str | None, recursive: bool, json_out: bool) -> None:
    """`mlvc ls URL [PATH]`: print the entries of the source at `rev` under `path`."""
    from ..ops.ls import ls
    from ..ops.read import RevisionView
    from ..sources import open_source

    repo = open_source(url, rev)
    try:
        with RevisionView(repo) as view:
            entries = ls(view, path or "", recursive=recursive)
    finally:
        repo.close()
    if json_out:
        emit_json({"url": url, "rev": repo.pinned_rev, "path": path or "",
                   "entries": [e.to_json() for e in entries]})
        return
    base = (path or "").strip("/")
    for e in entries:
        shown = e.path[len(base) + 1:] if base and e.path.startswith(base + "/") else e.path
        shown = shown + ("/" if e.type == "dir" else "")
        size = human_size(e.size) if e.size is not None else "-"
        extra = f"\t{e.files} files" if e.files is not None else ""
        echo(f"{shown}\t{size}\t{e.source or '-'}{extra}\t{e.id or ''}".rstrip("\t"))


@app.command()
def get(
    url: str = typer.Argument(..., help="The source repository: any git URL or a directory path."),
    path: str = typer.Argument(..., help="The file or directory to copy, relative to the source's top."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write it (default: PATH's "
                                       "last component, in the current directory)."),
    rev: Optional[str] = typer.Option(None, "--rev", help=REV_HELP),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists (once the copy is "
                               "complete)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
):
    """Copy a file or directory of another repository out as plain, untracked files.

    Tracked artifacts come from the source's remote (as its committed .mlvc/config names it),
    only the chunks PATH needs, every one checked against its id; other files come from git.
    Nothing is written outside OUT until it is complete, and a failed get leaves nothing.
    The source is mirrored in the user's cache (MLVC_CACHE_HOME, default ~/.cache/mlvc).

    Examples:

    \b
      mlvc get https://github.com/org/registry datasets/images
      mlvc get git@github.com:org/registry.git models/base.pt -o base.pt --rev v1.2
      mlvc get ../registry datasets/images/img000.png
    """
    from ..ops.get import get as get_op
    from ..sources import open_source

    repo = open_source(url, rev)
    try:
        result = get_op(repo, path, out, force=force, progress=progress_for(quiet or json_out))
    finally:
        repo.close()
    if json_out:
        emit_json({"url": url, "rev": result.rev, "path": result.path, "out": str(result.out),
                   "kind": result.kind, "files": result.files, "bytes": result.bytes,
                   "requests": result.fetched.requests, "bytes_downloaded": result.fetched.bytes_downloaded})
    elif not quiet:
        files = f"{result.files} files, " if result.kind == "dir" else ""
        echo(f"got {result.path} ({files}{human_size(result.bytes)}) from {url} at {result.rev[:12]} "
             f"-> {result.out}")
