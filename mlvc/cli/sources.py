"""Other repositories as sources: `mlvc get URL PATH`, and `mlvc ls URL [PATH]` (registered by
`core.ls`, which lists this workspace's artifacts without a URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import JSON, QUIET
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
                                       "last component, in the current directory; an existing directory "
                                       "gets it inside)."),
    rev: Optional[str] = typer.Option(None, "--rev", help=REV_HELP),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists (once the copy is "
                               "complete)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
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
        at = f" at {result.rev[:12]}" if result.rev else ""
        echo(f"got {result.path} ({files}{human_size(result.bytes)}) from {url}{at} -> {result.out}")


@app.command("import")
def import_(
    url: str = typer.Argument(..., help="The source repository: any git URL or a directory path."),
    path: str = typer.Argument(..., help="The artifact (or one file of a directory artifact) to track."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to put it in this project (default: "
                                       "PATH's last component, in the current directory; an existing "
                                       "untracked directory gets it inside)."),
    rev: Optional[str] = typer.Option(None, "--rev", help=REV_HELP + " `mlvc update` follows it."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT and its pointer if they exist."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Track another repository's artifact in this project: OUT.mlvc records the source (URL, path,
    revision and commit) beside the artifact's id.

    The objects are fetched from the source's remote into this project's cache, then the pointer
    is written and OUT restored and git-ignored. `mlvc push` copies them to this project's remote;
    `mlvc pull` in a clone fetches them from there, else from the source. `mlvc update` moves it
    to the source's newer revision.

    Examples:

    \b
      mlvc import https://github.com/org/registry datasets/images -o data/images --rev v1
      git add data/images.mlvc data/.gitignore && git commit -m "images v1 from the registry"
      mlvc update data/images --rev v2
    """
    from ..ops.imports import import_artifact
    from .output import open_repo

    with open_repo() as repo:
        result = import_artifact(repo, url, path, out, rev=rev, force=force)
    if json_out:
        emit_json(result.as_dict())
    elif not quiet:
        files = f"{result.files} files, " if result.kind == "dir" else ""
        echo(f"imported {result.path} ({files}{human_size(result.size)}) from {url} {path} at "
             f"{result.source.commit[:12]} -> {result.pointer}")


@app.command()
def update(
    paths: Optional[list[str]] = typer.Argument(None, help="Imported artifacts (default: every one)."),
    rev: Optional[str] = typer.Option(None, "--rev", help="Move to this revision of the source (default: the "
                                      "one imported, e.g. its branch, or its HEAD)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite unsaved changes to the artifacts' files."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Move imported artifacts to their source's newer revision (pointer and workspace files).

    Examples:

    \b
      mlvc update                       # every imported artifact, to its source's revision now
      mlvc update data/images --rev v2
    """
    from ..ops.imports import update as update_op
    from .output import open_repo

    with open_repo() as repo:
        results = update_op(repo, paths or None, rev=rev, force=force)
    if json_out:
        emit_json([r.as_dict() for r in results])
        return
    if quiet:
        return
    for r in results:
        if r.changed:
            echo(f"updated {r.path}: {(r.previous or '')[:12]} -> {r.source.commit[:12]} ({r.oid})")
        elif r.previous != r.source.commit:
            echo(f"{r.path}: source moved to {r.source.commit[:12]}, the artifact did not change")
        else:
            echo(f"{r.path}: up to date ({r.source.commit[:12]})")
