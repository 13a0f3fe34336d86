"""The one table at the CLI edge: what each exit code means (the `--help` list is built from it,
docs/commands/exit-codes.md says it at length) and how an exception that escaped a command becomes
one `error:` line, an optional `hint:` and an exit code.  Code below the CLI raises typed errors
(`mlvc.errors`) and never prints."""

from __future__ import annotations

import errno

from .. import errors

# (exit code, its meaning in a few words), in the order `--help` lists them
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (errors.EXIT_OK, "ok"),
    (errors.EXIT_ERROR, "error"),
    (errors.EXIT_USAGE, "usage"),
    (errors.EXIT_NOT_A_REPO, "not a repo"),
    (errors.EXIT_BAD_PATH, "bad path"),
    (errors.EXIT_BAD_POINTER, "bad pointer"),
    (errors.EXIT_CORRUPT, "corrupt object"),
    (errors.EXIT_MISSING_OBJECT, "missing object"),
    (errors.EXIT_CONFLICT, "conflict (use --force)"),
    (errors.EXIT_REMOTE, "remote error"),
    (errors.EXIT_DISK, "disk error"),
    (errors.EXIT_CHANGED, "file changed while read"),
    (errors.EXIT_PARTIAL, "partial failure"),
    (errors.EXIT_LOCKED, "locked"),
    (errors.EXIT_INTERRUPTED, "interrupted"),
)


def exit_codes_help() -> str:
    """The exit-code sentence of `mlvc --help`."""
    return "Exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES) + "."


# How the CLI words each `errors.Remedy`: the commands that apply it (the store and the operations
# below name none).
REMEDIES: dict[errors.Remedy, str] = {
    errors.Remedy.FETCH: "run `mlvc pull` to fetch it from a remote",
    errors.Remedy.REPAIR_OR_FETCH: "run `mlvc verify --repair` or `mlvc pull` to fetch it",
    errors.Remedy.PUSH_FROM_ELSEWHERE: "run `mlvc push` on a machine that has it",
    errors.Remedy.UNLOCK: "or remove it now with `mlvc remote unlock REMOTE`",
    errors.Remedy.REMOTE_URL: "run `mlvc remote list` to check the URL",
    errors.Remedy.REMOTE_CREDENTIALS: "`mlvc remote modify NAME access_key_id ...` sets them",
    errors.Remedy.FORCE_UNLOCK: "or add --force if you are sure it is not an mlvc operation",
    errors.Remedy.FETCH_OR_PUSH: "run `mlvc pull` (or `mlvc push` on a machine that has it)",
    errors.Remedy.VERIFY_AND_FETCH: "run `mlvc verify` and re-fetch it with `mlvc fetch`",
}


def hint(err: errors.MlvcError) -> str | None:
    """The hint the CLI shows for `err`: its own, then its remedy in commands."""
    parts = [p for p in (err.hint, REMEDIES.get(err.remedy) if err.remedy is not None else None) if p]
    return "; ".join(parts) or None


def message(err: errors.MlvcError) -> str:
    """One line for a failure in a list (`error: NAME: ...`): the message, the hint in parentheses."""
    shown = hint(err)
    return f"{err}" + (f" ({shown})" if shown else "")


def lines(err: errors.MlvcError) -> list[str]:
    """What the user reads on stderr for `err`: its one line, then its hint if it has one."""
    shown = hint(err)
    return [f"error: {err}"] + ([f"hint: {shown}"] if shown else [])


def as_error(exc: Exception) -> errors.MlvcError | None:
    """The typed error an exception that escaped a command stands for; None for a bug (an
    internal error).  OS failures are the machine's: a full disk, a permission, an I/O error."""
    if isinstance(exc, errors.MlvcError):
        return exc
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return errors.DiskError("disk full; nothing was recorded, the cache is intact")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return errors.DiskError(f"permission denied: {exc.filename or exc}")
        return errors.DiskError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    return _sqlite_disk_error(exc) or _transport_error(exc)


def _sqlite_disk_error(exc: Exception) -> errors.DiskError | None:
    """A full disk or an I/O failure under the local state databases is the machine's, not a bug.
    (Judged by the class's module, so that the CLI does not import sqlite3 on every start.)"""
    if type(exc).__module__ != "sqlite3" or type(exc).__name__ != "OperationalError":
        return None
    text = str(exc).lower()
    if any(word in text for word in ("full", "disk i/o", "readonly", "unable to open")):
        return errors.DiskError(f"cannot write mlvc's state under .mlvc/state: {exc}",
                                hint="free some space (or fix permissions) and run the command again")
    return None


def _transport_error(exc: Exception) -> errors.RemoteError | None:
    """A connection cut or timeout that escaped the remote layer (aiohttp's ClientPayloadError
    mid-download, botocore's connection errors) is a remote error: exit 9, and a re-run resumes."""
    module = type(exc).__module__ or ""
    if not module.startswith(("aiohttp", "botocore", "urllib3")):
        return None
    return errors.RemoteError(f"connection to the remote failed: {type(exc).__name__}: {exc}",
                              hint="check the network and run the command again (it resumes where it stopped)")
