"""Lineage commands: manifest."""

from __future__ import annotations

from typing import Optional

import typer

from .options import JSON
from .main import app
from .output import echo, emit_json, human_size


@app.command()
def manifest(
    rev: Optional[str] = typer.Argument(None, help="A git revision (default: the workspace)."),
    json_out: bool = JSON,
) -> None:
    """The version manifest: commit, branch, dirty and every artifact's role, id, size,
    data config hash + seed, per-module model ids and params.

    Examples:

    \b
      mlvc manifest
      mlvc manifest v1 --json
    """
    from ..lineage import manifest as manifest_op
    from ..repo import Repo

    repo = Repo.find()
    try:
        doc = manifest_op(repo, rev)
    finally:
        repo.close()
    if json_out:
        emit_json(doc)
        return
    echo(f"commit: {doc.get('commit') or '(none: ' + str(doc.get('commit_reason', 'unknown')) + ')'}")
    echo(f"branch: {doc.get('branch') or '(detached)'}")
    if doc.get("rev") is None:
        dirty = doc.get("dirty")
        echo(f"dirty:  {'yes' if dirty else 'no' if dirty is False else 'unknown'}")
    for a in doc["artifacts"]:
        echo(f"{a['path']}\t{a.get('role') or '-'}\t{a['id']}\t{human_size(a['size'])}")
        for key in ("config", "config_hash", "seed"):
            if key in a:
                echo(f"    {key}: {a[key]}")
        if "source" in a:
            src = a["source"]
            echo(f"    source: {src['url']} {src['path']} at {src['commit']}")
        modules = a.get("modules") or {}
        for name, value in modules.items():
            if isinstance(value, dict):
                for sub, mid in value.items():
                    echo(f"    module {name}:{sub}: {mid}")
            else:
                echo(f"    module {name}: {value}")
        for key, value in (a.get("params") or {}).items():
            echo(f"    {key}: {value}")
    for pointer, msg in (doc.get("errors") or {}).items():
        echo(f"{pointer}\tINVALID: {msg}")
    if not doc["artifacts"] and not doc.get("errors"):
        echo("no tracked artifacts")
