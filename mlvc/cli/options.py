"""Options every command spells the same way, declared once."""

from __future__ import annotations

import typer

QUIET = typer.Option(False, "--quiet", "-q", help="Print nothing on success.")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON.")
