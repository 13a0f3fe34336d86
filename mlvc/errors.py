"""Error types raised below the CLI.

Every error carries a user-facing message and an exit code.  Only the CLI edge
(`mlvc.cli`) turns them into printed messages and process exit statuses; code
below it raises and never prints.  The exit codes are a documented contract
(docs/commands/exit-codes.md) — add new codes there too.
"""

from __future__ import annotations

import enum
from typing import TypeVar

# Exit codes (contract, see docs/commands/exit-codes.md)
EXIT_OK = 0
EXIT_ERROR = 1  # generic / unexpected failure
EXIT_USAGE = 2  # bad command line (typer/click uses 2 too)
EXIT_NOT_A_REPO = 3  # not inside an mlvc / git repository
EXIT_BAD_PATH = 4  # path outside repo, missing, forbidden (.git/.mlvc), symlink
EXIT_BAD_POINTER = 5  # pointer file invalid / unsupported version / unsafe path
EXIT_CORRUPT = 6  # object failed its hash check or cache damaged
EXIT_MISSING_OBJECT = 7  # object not in cache / on remote
EXIT_CONFLICT = 8  # would overwrite unsaved work; use --force
EXIT_REMOTE = 9  # remote unreachable, auth failure, missing bucket
EXIT_DISK = 10  # disk full / permission denied / other OS write failure
EXIT_CHANGED = 11  # file changed while being read
EXIT_PARTIAL = 12  # bulk operation finished with some items failed
EXIT_LOCKED = 13  # a lock is held by someone else
EXIT_INTERRUPTED = 130  # Ctrl-C


class Remedy(enum.Enum):
    """What would fix an error, said without a command line: the CLI words it with its commands
    (`mlvc.cli.error_table.REMEDIES`), so that code below the CLI never names one and API users
    are not told to type one."""

    FETCH = "fetch"  # a remote has what is missing: fetch it into the cache
    REPAIR_OR_FETCH = "repair-or-fetch"  # a repair of the store may restore it, else a remote has it
    PUSH_FROM_ELSEWHERE = "push"  # no store asked has it: only a machine that has it can push it
    UNLOCK = "unlock"  # the remote's lock may be removed by hand
    REMOTE_URL = "remote-url"  # the remote's URL may be wrong
    REMOTE_CREDENTIALS = "remote-credentials"  # the remote's credentials are missing or wrong
    FORCE_UNLOCK = "force-unlock"  # the lock can be removed by force, if no mlvc operation holds it
    FETCH_OR_PUSH = "fetch-or-push"  # a remote may have it; else only a machine that has it can push it
    VERIFY_AND_FETCH = "verify-and-fetch"  # check the store, and fetch a good copy again


_E = TypeVar("_E", bound="MlvcError")


class MlvcError(Exception):
    """Base class: `str(err)` is the one-line message shown to the user; `hint` what to do about
    it, in words any user of mlvc (CLI or Python) can follow; `remedy` the step the CLI names
    by its command."""

    exit_code = EXIT_ERROR
    hint: str | None = None
    remedy: Remedy | None = None

    def __init__(self, message: str, *, hint: str | None = None, remedy: Remedy | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if remedy is not None:
            self.remedy = remedy

    def reworded(self: _E, message: str, *, hint: str | None = None) -> _E:
        """The same error (its type, fields, exit code and remedy) with another message (context
        added on its way up) and, if given, another hint."""
        err = type(self).__new__(type(self))
        err.__dict__.update(self.__dict__)
        err.args = (message,)
        if hint is not None:
            err.hint = hint
        return err

    def worded(self: _E, message: str) -> _E:
        """The same error (type, fields, exit code) as `message` alone: a message that already
        says what to do, shown without a hint or remedy."""
        err = self.reworded(message)
        err.hint = None
        err.remedy = None
        return err


def describe(err: MlvcError) -> str:
    """One line for a failure in a result: the message, then the hint in parentheses."""
    return str(err) + (f" ({err.hint})" if err.hint else "")


class UsageError(MlvcError, ValueError):
    """A command line that parses but asks for something impossible (a bad option value)."""

    exit_code = EXIT_USAGE


class NotARepoError(MlvcError):
    exit_code = EXIT_NOT_A_REPO


class ConfigError(MlvcError, ValueError):
    exit_code = EXIT_ERROR


class PathError(MlvcError, ValueError):
    """A path the user named is unusable (outside repo, missing, forbidden)."""

    exit_code = EXIT_BAD_PATH

    def __init__(self, path: object, reason: str, *, hint: str | None = None):
        super().__init__(f"{path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class SymlinkInPathError(PathError):
    """A path mlvc would read or write leads through a symlink (or a file) where a directory
    should be: refused, since following it could write outside the repository."""


class LinksRefusedError(PathError):
    """Symlinks where mlvc reads files: every one is listed in `links` (the message names the
    first few and counts the rest)."""

    def __init__(self, path: object, reason: str, *, links: list[str], hint: str | None = None):
        super().__init__(path, reason, hint=hint)
        self.links = links


class PointerError(MlvcError, ValueError):
    """A pointer file (`*.mlvc`) that cannot be trusted."""

    exit_code = EXIT_BAD_POINTER

    def __init__(self, pointer: object, reason: str):
        super().__init__(f"invalid pointer file {pointer}: {reason}")
        self.pointer = pointer
        self.reason = reason


class PointerConflictError(PointerError):
    """A pointer with unresolved git merge conflict markers: both sides' ids are named, and the hint
    says how to keep one (`ours`/`theirs` are git's words; `*_label` the names on the markers)."""

    def __init__(self, pointer: object, ours: str | None, theirs: str | None, *, ours_label: str = "",
                 theirs_label: str = "", file: str | None = None):
        def side(name: str, label: str, oid: str | None) -> str:
            return f"{name}{f' ({label})' if label else ''} {oid or 'with no readable id'}"

        super().__init__(pointer, "unresolved git merge conflict: " + side("ours", ours_label, ours) + ", "
                         + side("theirs", theirs_label, theirs))
        self.ours, self.theirs = ours, theirs
        self.ours_label, self.theirs_label = ours_label, theirs_label
        self.file = file or str(pointer)
        artifact = self.file[: -len(".mlvc")] if self.file.endswith(".mlvc") else self.file
        self.hint = (f"keep one side: `git checkout --ours {self.file}` or `git checkout --theirs {self.file}`, "
                     f"then `git add {self.file}` and `mlvc checkout {artifact}`; a directory merges file by "
                     f"file with `mlvc merge {self.file}`")


class UnsafePathError(PointerError):
    """A manifest or pointer names a path that would escape its artifact."""


class OverlappingPointersError(PointerError):
    """Two pointers name the same path, or one names a path inside the other's artifact: every
    checkout would write both, and status could never agree with either."""


class CorruptObjectError(MlvcError, ValueError):
    exit_code = EXIT_CORRUPT

    def __init__(self, oid: str, where: str, expected: str | None = None, got: str | None = None):
        detail = f" (expected {expected}, got {got})" if expected and got else ""
        super().__init__(f"object {oid} is corrupt in {where}{detail}", remedy=Remedy.VERIFY_AND_FETCH)
        self.oid = oid
        self.where = where
        self.expected = expected
        self.got = got


class CorruptJournalError(MlvcError, ValueError):
    """A push journal record on a remote that gc cannot read: what it protects is unknown."""

    exit_code = EXIT_CORRUPT

    def __init__(self, key: str, remote: str, reason: str):
        super().__init__(f"push journal record {key} on remote {remote} is unreadable ({reason}); "
                         "nothing was deleted",
                         hint="if no push of a newer mlvc wrote it, delete that record and run gc again")
        self.key = key
        self.remote = remote
        self.reason = reason


class ObjectNotFoundError(MlvcError, KeyError):
    exit_code = EXIT_MISSING_OBJECT

    def __init__(self, oid: str, where: str = "the cache", hint: str | None = None, *,
                 remedy: Remedy | None = None):
        super().__init__(f"object {oid} is missing from {where}", hint=hint,
                         remedy=remedy if hint is not None or remedy is not None else Remedy.FETCH_OR_PUSH)
        self.oid = oid
        self.where = where

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ConflictError(MlvcError):
    """The operation would overwrite work that mlvc has never saved."""

    exit_code = EXIT_CONFLICT


class MergeConflictError(ConflictError):
    """Files of a directory artifact changed differently on both sides of a merge: `conflicts`
    holds (file, ours id, theirs id), an id None where that side deleted the file."""

    def __init__(self, artifact: str, conflicts: list[tuple[str, str | None, str | None]], *, pointer: str):
        shown = "; ".join(f"{path} (ours {o or 'deleted'}, theirs {t or 'deleted'})" for path, o, t in conflicts[:3])
        more = f"; and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
        n = len(conflicts)
        super().__init__(f"{artifact}: {n} file{'s' if n != 1 else ''} changed on both sides: {shown}{more}",
                         hint=f"keep one side of these files (the other changes stay merged): "
                              f"`mlvc merge {pointer} --ours` or `mlvc merge {pointer} --theirs`")
        self.artifact, self.conflicts, self.pointer = artifact, conflicts, pointer


class FileChangedError(MlvcError):
    exit_code = EXIT_CHANGED

    def __init__(self, path: object):
        super().__init__(f"{path}: file changed while it was being read; nothing was recorded for it",
                         hint="wait for the writer to finish, then run the command again")
        self.path = path


class DiskError(MlvcError, OSError):
    """Disk full, permission denied or another OS failure while writing."""

    exit_code = EXIT_DISK


class RemoteError(MlvcError):
    exit_code = EXIT_REMOTE


class RemoteUnreachableError(RemoteError):
    pass


class RemoteTimeoutError(RemoteUnreachableError):
    """The remote accepted the request (or the connection) and then did not answer in time."""


class RemoteAuthError(RemoteError):
    pass


class RemoteNotFoundError(RemoteError):
    """The remote's bucket / base directory does not exist, or no such remote is configured."""


class SourceError(RemoteError):
    """Another repository, used as a source (`mlvc get/ls/import URL`, `repo=URL`), cannot be
    read: unreachable, or it names no way to its objects (no remote, a relative remote beyond
    reach)."""

    def __init__(self, url: str, reason: str, *, hint: str | None = None):
        super().__init__(f"source {url}: {reason}", hint=hint)
        self.url = url
        self.reason = reason


class LockedError(MlvcError):
    exit_code = EXIT_LOCKED


class GitError(MlvcError):
    exit_code = EXIT_ERROR


class RevisionError(GitError):
    """Unknown git revision: the command line named something git does not know (usage, 2)."""

    exit_code = EXIT_USAGE


class UnsafeCheckpointError(MlvcError, ValueError):
    """A checkpoint whose loading would execute code (pickle globals)."""

    exit_code = EXIT_CORRUPT
