"""Local state: which artifact roots are known to be complete in the cache.

Checking that every chunk of a 100,000-file tree is present costs a manifest
read per file; `status` needs the answer in milliseconds.  Once an operation has
verified (or written) every object under a root id, it records the root here.
Anything that deletes objects from the cache (gc) clears the table.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .sqlite import connect, retry


class StateDB:
    def __init__(self, db_path: Path):
        self.db_path = db_path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self.db_path, [
                "CREATE TABLE IF NOT EXISTS complete (oid TEXT PRIMARY KEY)",
                "CREATE TABLE IF NOT EXISTS dirsig (path TEXT PRIMARY KEY, sig BLOB, oid TEXT)",
            ])
        return self._db

    def is_complete(self, oid: str) -> bool:
        if not self.db_path.exists():
            return False
        return retry(lambda: self._conn().execute("SELECT 1 FROM complete WHERE oid = ?", (oid,)).fetchone()) \
            is not None

    def mark_complete(self, oids) -> None:
        rows = [(o,) for o in oids]
        retry(lambda: self._conn().executemany("INSERT OR IGNORE INTO complete VALUES (?)", rows))

    def clear_complete(self) -> None:
        if self.db_path.exists():
            retry(lambda: self._conn().execute("DELETE FROM complete"))

    # A directory's stat signature (every path, size, mtime, inode, exec bit) -> its tree id.
    # Lets `status` on an unchanged 100k-file tree skip per-file lookups and the tree encoding.
    def tree_for_signature(self, path: str, sig: bytes) -> str | None:
        if not self.db_path.exists():
            return None
        row = retry(lambda: self._conn().execute("SELECT sig, oid FROM dirsig WHERE path = ?", (path,)).fetchone())
        return row[1] if row and row[0] == sig else None

    def remember_signature(self, path: str, sig: bytes, oid: str) -> None:
        retry(lambda: self._conn().execute("INSERT OR REPLACE INTO dirsig VALUES (?, ?, ?)", (path, sig, oid)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
