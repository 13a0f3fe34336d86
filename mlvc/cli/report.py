"""`mlvc report`: how the model got here, as one self-contained HTML page or a Markdown summary."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from .. import errors
from .main import app
from .output import echo, open_repo


@app.command()
def report(
    paths: Optional[List[str]] = typer.Argument(None, help="Only these artifacts (or directories of them)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only commits newer than this (7.days, 2.weeks, "
                                        "yesterday, 2024-05-01)."),
    rev: str = typer.Option("HEAD", "--rev", help="A revision to walk back from, or a range A..B "
                            "(commits in B and not in A)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write here (default: report.html for "
                                         "html, standard output for md; '-' for standard output)."),
    fmt: str = typer.Option("html", "--format", help="html (one self-contained page) or md (a summary for a "
                            "review or a PR comment)."),
    max_count: Optional[int] = typer.Option(None, "-n", "--max-count", help="At most the N newest commits."),
    no_contents: bool = typer.Option(False, "--no-contents", help="Pointers only: no birth certificates "
                                     "(metrics, params, environment) and no L2 changes from the cache."),
) -> None:
    """Metrics over commits, parameter changes and their effect, the module-change map, data -> model
    lineage, environment changes and the commit timeline, read from git without any checkout.

    Examples:

    \b
      mlvc report --since 7.days -o week.html
      mlvc report --rev v1..HEAD --format md > review.md
    """
    from ..ops import report as report_ops
    from ..ops import report_render

    if fmt not in ("html", "md"):
        raise errors.UsageError(f"--format must be html or md, not {fmt!r}")
    from ..ops.log import parse_since

    try:
        parse_since(since)
    except errors.MlvcError as exc:
        raise errors.UsageError(str(exc), hint=exc.hint) from None
    with open_repo() as repo:
        result = report_ops.collect(repo, list(paths or []) or None, since=since, rev=rev, max_count=max_count,
                                    contents=not no_contents)
    text = report_render.render_html(result) if fmt == "html" else report_render.render_markdown(result)
    target = output if output is not None else ("report.html" if fmt == "html" else "-")
    if target == "-":
        sys.stdout.write(text)
        return
    report_ops.write_report(target, text)
    echo(f"wrote {target}: {len(result.commits)} commits, {len(result.metric_names)} metrics "
         f"({len(text.encode()) // 1024 or 1} KiB)")
