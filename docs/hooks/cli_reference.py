"""mkdocs hook: `commands/reference.md`, generated from the typer app at build time so it cannot drift.

Every command, sub-command and option the CLI registers appears with the help
text `mlvc CMD --help` prints; hidden commands (git hook entry points) are left out.
"""

from __future__ import annotations

import click
from mkdocs.structure.files import File

REFERENCE = "commands/reference.md"


def root_command() -> click.Command:
    import importlib
    import pkgutil
    import warnings

    import mlvc.cli

    # typer 0.16 (pinned below 0.17 for start-up time) imports two helpers click 8.5 deprecates:
    # harmless, and not about this site, so the build does not print them as tracebacks.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"'click\.utils\.get_(binary|text)_stream' is deprecated",
                                category=DeprecationWarning)
        from mlvc.cli import main  # first: it imports typer without rich, so help is the plain text users see

        import typer.main

    for module in pkgutil.iter_modules(mlvc.cli.__path__):  # each command module registers itself on `app`
        importlib.import_module(f"mlvc.cli.{module.name}")
    return typer.main.get_command(main.app)


def walk_commands(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if not sub.hidden:
                yield from walk_commands(sub, path + [name])


def help_text(cmd: click.Command, path: list[str]) -> str:
    ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=100, max_content_width=100)
    return cmd.get_help(ctx).rstrip()


def reference_markdown() -> str:
    """The whole reference page: one section per command, in the order `mlvc --help` lists them."""
    root = root_command()
    commands = list(walk_commands(root, ["mlvc"]))
    lines = ["# Command reference", "",
             "Generated from the CLI itself at build time (`docs/hooks/cli_reference.py`): this is exactly what "
             "`mlvc COMMAND --help` prints. Exit codes are listed in [Exit codes](exit-codes.md).", ""]
    for path, _ in commands[1:]:
        lines.append(f"- [`{' '.join(path)}`](#{'-'.join(path)})")
    lines.append("")
    for path, cmd in commands:
        anchor = "-".join(path)
        lines += [f"## {' '.join(path)} {{ #{anchor} }}", "", "```text", help_text(cmd, path), "```", ""]
    return "\n".join(lines)


def on_files(files, config):
    files.append(File.generated(config, REFERENCE, content=reference_markdown()))
    return files
