"""mlvc/cli/error_table.py: one table of exit codes (the `--help` list and the documented table agree
with it) and one way an escaped exception becomes a typed error."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from mlvc import errors
from mlvc.cli.error_table import EXIT_CODES, REMEDIES, as_error, exit_codes_help, lines, message

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands" / "exit-codes.md"


def test_the_table_names_every_exit_code_of_errors_py_once():
    constants = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    codes = [code for code, _ in EXIT_CODES]
    assert sorted(codes) == sorted(constants) and len(codes) == len(set(codes))


def test_help_and_the_documented_table_follow_it(cli):
    r = cli("--help")
    assert r.code == 0
    assert exit_codes_help() in " ".join(r.out.replace("│", " ").split())
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", DOC.read_text(), re.M)]
    assert documented == [code for code, _ in EXIT_CODES]


def test_escaped_exceptions_become_typed_errors():
    full = as_error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, errors.DiskError) and full.exit_code == errors.EXIT_DISK
    denied = as_error(PermissionError(errno.EACCES, "Permission denied", "/x"))
    assert denied.exit_code == errors.EXIT_DISK and "permission denied: /x" in str(denied)
    mine = errors.ConflictError("would overwrite", hint="use --force")
    assert as_error(mine) is mine and lines(mine) == ["error: would overwrite", "hint: use --force"]
    assert as_error(KeyError("bug")) is None


def test_a_remedy_is_worded_with_its_commands_at_the_cli_only():
    """Code below the CLI says what would fix an error (`remedy`) and a hint in plain words; the
    table adds the command line, so an API user's message names no command."""
    locked = errors.LockedError("lock held", hint="wait for it to finish", remedy=errors.Remedy.UNLOCK)
    assert "mlvc" not in str(locked) and "mlvc" not in (locked.hint or "")
    assert lines(locked) == ["error: lock held",
                             "hint: wait for it to finish; or remove it now with `mlvc remote unlock REMOTE`"]
    missing = errors.ObjectNotFoundError("xxh128:" + "0" * 32, where="remote r", hint="the cache lacks it too",
                                         remedy=errors.Remedy.PUSH_FROM_ELSEWHERE)
    assert message(missing).endswith("(the cache lacks it too; run `mlvc push` on a machine that has it)")
    assert errors.describe(missing).endswith("(the cache lacks it too)")
    assert set(REMEDIES) == set(errors.Remedy)


def test_the_default_hints_of_missing_and_corrupt_objects_are_remedies_worded_at_the_cli():
    """An object missing or corrupt says what would fix it as a remedy: API users read no command
    line, the CLI shows the same hint as before."""
    missing = errors.ObjectNotFoundError("xxh128:" + "0" * 32)
    corrupt = errors.CorruptObjectError("xxh128:" + "0" * 32, "the cache", "its id", "other bytes")
    for err in (missing, corrupt):
        assert "mlvc" not in errors.describe(err) and err.remedy is not None
    assert lines(missing)[1] == "hint: run `mlvc pull` (or `mlvc push` on a machine that has it)"
    assert lines(corrupt)[1] == "hint: run `mlvc verify` and re-fetch it with `mlvc fetch`"
    given = errors.ObjectNotFoundError("xxh128:" + "0" * 32, hint="")  # a caller's own words: no remedy added
    assert lines(given) == [f"error: {given}"]
    worded = missing.worded("object gone: run `mlvc pull` once the remote is back")
    assert lines(worded) == ["error: object gone: run `mlvc pull` once the remote is back"]
    assert type(worded) is errors.ObjectNotFoundError and worded.oid == missing.oid
