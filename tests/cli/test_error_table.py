"""mlvc/cli/error_table.py: one table of exit codes (the `--help` list and the documented table agree
with it) and one way an escaped exception becomes a typed error."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from mlvc import errors
from mlvc.cli.error_table import EXIT_CODES, as_error, exit_codes_help, lines

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
