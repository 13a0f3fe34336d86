"""State kept beside the objects it describes.

`CompleteRoots` (inside the store: `<cache>/complete.sqlite`): which artifact
roots are known to have every object in the store.  Checking that every chunk
of a 100,000-file tree is present costs a manifest read per file; `status`
needs the answer in milliseconds.  Once an operation has verified (or written)
every object under a root id, it records the root here.  Because the table
lives in the store directory, removing the store removes the marks with it,
and anything that deletes objects (gc, from any repository sharing the cache;
quarantine by `verify --repair`) clears it through the store.

`StateDB` (per work tree: `.mlvc/state/state.sqlite`): directory stat
signatures, which describe the workspace, not the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .sqlite import LazyDB, retry


class CompleteRoots(LazyDB):
    SCHEMA = ("CREATE TABLE IF NOT EXISTS complete (oid TEXT PRIMARY KEY)",)

    def __contains__(self, oid: str) -> bool:
        if not self.db_path.exists():
            self.close()  # the store was removed under us: whatever we knew is gone with it
            return False
        try:
            return retry(lambda: self._conn().execute("SELECT 1 FROM complete WHERE oid = ?",
                                                      (oid,)).fetchone()) is not None
        except sqlite3.OperationalError:
            self.close()  # cannot be opened (a full disk: WAL files): unknown, so checked the slow way
            return False

    def add(self, oids: Iterable[str]) -> None:
        """Advisory: a mark that cannot be written (a full disk) only costs a slower check later."""
        rows = [(o,) for o in oids]
        if not self.db_path.parent.is_dir():
            return  # no store directory: nothing is complete, nothing to record
        try:
            retry(lambda: self._conn().executemany("INSERT OR IGNORE INTO complete VALUES (?)", rows))
        except sqlite3.OperationalError:
            self.close()

    def clear(self) -> None:
        if self.db_path.exists():
            retry(lambda: self._conn().execute("DELETE FROM complete"))


class StateDB(LazyDB):
    SCHEMA = ("CREATE TABLE IF NOT EXISTS dirsig (path TEXT PRIMARY KEY, sig BLOB, oid TEXT)",)

    # A directory's stat signature (every path, size, mtime, inode, exec bit) -> its tree id.
    # Lets `status` on an unchanged 100k-file tree skip per-file lookups and the tree encoding.
    def tree_for_signature(self, path: str, sig: bytes) -> str | None:
        if not self.db_path.exists():
            return None
        try:
            row = retry(lambda: self._conn().execute("SELECT sig, oid FROM dirsig WHERE path = ?",
                                                     (path,)).fetchone())
        except sqlite3.OperationalError:
            self.close()  # unreadable (a full disk): the tree is compared file by file instead
            return None
        return row[1] if row and row[0] == sig else None

    def remember_signature(self, path: str, sig: bytes, oid: str) -> None:
        """Advisory, like the completeness marks: not remembered costs a slower `status` later."""
        try:
            retry(lambda: self._conn().execute("INSERT OR REPLACE INTO dirsig VALUES (?, ?, ?)", (path, sig, oid)))
        except sqlite3.OperationalError:
            self.close()
