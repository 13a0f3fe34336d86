"""Entry point: the typer app, command registration, and the error-to-exit-code edge."""

from __future__ import annotations

import errno
import os
import sys
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


def _import_typer_without_rich() -> ModuleType:
    """Import typer while hiding rich: typer would otherwise load rich's markdown stack
    (~80 ms) on every command just to colour `--help`.  Plain help costs nothing; rich
    stays importable afterwards for progress bars."""
    import sys

    if "typer" in sys.modules or os.environ.get("MLVC_RICH_HELP"):
        import typer
        return typer
    saved = sys.modules.get("rich")
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` raise ImportError in typer
    try:
        import typer
    finally:
        if saved is None:
            del sys.modules["rich"]
        else:
            sys.modules["rich"] = saved
    return typer


if TYPE_CHECKING:
    import typer
else:
    typer = _import_typer_without_rich()

from .. import errors  # noqa: E402
from .allocator import tune_allocator  # noqa: E402
from .error_table import as_error, exit_codes_help, lines  # noqa: E402
from .output import echo  # noqa: E402

app = typer.Typer(
    name="mlvc",
    help="Version control for ML artifacts: weights, data and the code that made them.\n\n" + exit_codes_help(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command groups register themselves on `app` when imported.
_COMMAND_MODULES = ("core", "remote", "history", "lineage", "import_dvc", "report", "merge", "sources", "manage")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        echo(f"mlvc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print mlvc's version and exit."),
) -> None:
    pass


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise


def _fail(err: errors.MlvcError) -> int:
    for line in lines(err):
        echo(line, err=True)
    return err.exit_code


Callback = Callable[["click.Context", "click.Parameter", object], object]  # a click parameter's callback
_ENFORCED: weakref.WeakSet[click.Parameter] = weakref.WeakSet()  # parameters `_enforce_required` has wrapped


def _enforce_required(command: click.Command) -> None:
    """Make every required argument and option really required.  Some typer/click pairs hand a
    command `None` for a missing required argument (`mlvc params diff` would crash later with an
    AttributeError); a parameter callback, part of click's public API, refuses it at parse time."""
    try:
        from typer._click.exceptions import MissingParameter
    except ImportError:  # pragma: no cover - typer on real click
        from click.exceptions import MissingParameter

    for param in command.params:
        if param.required and param not in _ENFORCED:
            original = param.callback

            def check(ctx: click.Context, p: click.Parameter, value: object,
                      _original: Callback | None = original) -> object:
                if value is None or (value == () and (p.multiple or p.nargs != 1)):
                    raise MissingParameter(ctx=ctx, param=p)
                return _original(ctx, p, value) if _original is not None else value

            param.callback = check
            _ENFORCED.add(param)
    for sub in getattr(command, "commands", {}).values():
        _enforce_required(sub)


def _usage(exc: click.ClickException) -> int:
    """A command line click refused: one `error:` line (and the help to read), exit 2."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as before
        exc.show()
        return errors.EXIT_USAGE
    echo(f"error: {exc.format_message()}", err=True)
    if ctx is not None:
        echo(f"hint: run `{ctx.command_path} --help`", err=True)
    return errors.EXIT_USAGE


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (used by tests and by `main`)."""
    # typer >= 0.2x vendors click; its exception types are re-exported by typer itself.
    from typer import Abort, Exit

    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover - older typer on real click
        from click.exceptions import ClickException

        NoArgsIsHelpError = ()

    _register()
    try:
        command = typer.main.get_command(app)
        _enforce_required(command)
        rv = command.main(args=argv, standalone_mode=False, prog_name="mlvc")
        return rv if isinstance(rv, int) else 0
    except Exit as exc:
        return exc.exit_code
    except Abort:
        echo("interrupted", err=True)
        return errors.EXIT_INTERRUPTED
    except NoArgsIsHelpError as exc:
        exc.show()
        return 0
    except ClickException as exc:
        return _usage(exc)
    except KeyboardInterrupt:
        echo("interrupted; the cache is consistent, run the command again to finish", err=True)
        return errors.EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a message, not a traceback
        known = as_error(exc)
        # MLVC_DEBUG shows the traceback of what may be a bug: any error but ours, a full disk or a permission
        debug_os = (isinstance(exc, OSError) and not isinstance(exc, errors.MlvcError)
                    and exc.errno not in (errno.ENOSPC, errno.EACCES, errno.EPERM))
        if known is not None and not (debug_os and os.environ.get("MLVC_DEBUG")):
            return _fail(known)
        if os.environ.get("MLVC_DEBUG"):
            raise
        echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        echo("hint: set MLVC_DEBUG=1 for a traceback and report it", err=True)
        return errors.EXIT_ERROR


def main() -> None:
    tune_allocator()  # before any thread starts: arenas are made per thread as they first allocate
    sys.exit(run())
