"""The hash cache: (path, size, mtime_ns, inode) -> file id, in SQLite.

It lets `status` and a repeated `add` skip re-reading files whose stat has not
changed.  An entry is only trusted when the file's mtime is safely older than
the moment it was hashed ("racy" entries, written within the timestamp
granularity of the file system, are not stored), the same rule git uses.
"""

from __future__ import annotations

import sqlite3
import time

from .sqlite import LazyDB, retry

RACY_NS = 20_000_000  # 20 ms: coarser than any common file system's timestamp tick


class HashCache(LazyDB):
    SCHEMA = ("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, "
              "size INTEGER, mtime_ns INTEGER, ino INTEGER, fid BLOB)",)

    BATCH_ROWS = 20_000

    def rows_after(self, prefix: str, after: str | None) -> list[tuple[str, int, int, int, bytes]]:
        """The next `BATCH_ROWS` rows, sorted by path, for `prefix` itself and every path under
        `prefix/`, after the path `after` (None: from the first).  Each batch is its own query
        (keyset paging): no statement stays open while rows are written."""
        if not self.db_path.exists():
            return []
        try:
            db = self._conn()
            return retry(lambda: db.execute(
                "SELECT path, size, mtime_ns, ino, fid FROM files WHERE (path = ? OR (path >= ? AND path < ?))"
                " AND path > ? ORDER BY path LIMIT ?",
                (prefix, prefix + "/", prefix + "0", "" if after is None else after, self.BATCH_ROWS)).fetchall())
        except sqlite3.OperationalError:
            self.close()  # cannot be opened (a full disk: its WAL files): every file is hashed instead
            return []

    def get(self, path: str) -> tuple[str, int, int, int, bytes] | None:
        if not self.db_path.exists():
            return None
        try:
            db = self._conn()
            row: tuple[str, int, int, int, bytes] | None = retry(
                lambda: db.execute("SELECT path, size, mtime_ns, ino, fid FROM files WHERE path = ?",
                                   (path,)).fetchone())
            return row
        except sqlite3.OperationalError:
            self.close()
            return None

    def store(self, rows: list[tuple[str, int, int, int, bytes]], hashed_at_ns: int | None = None,
              written_by_us: bool = False) -> None:
        """Record (path, size, mtime_ns, ino, fid) rows, skipping racy ones.

        Files mlvc itself just wrote and verified (`written_by_us`) are recorded
        even when racy: their content is known, and a write by someone else
        within the same timestamp tick is the one case this accepts.
        """
        if not written_by_us:
            limit = (hashed_at_ns or time.time_ns()) - RACY_NS
            rows = [r for r in rows if r[2] < limit]
        if not rows:
            return
        try:
            db = self._conn()
        except sqlite3.OperationalError:
            return  # advisory: not remembered costs a rehash next time (a full disk)

        def write() -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        try:
            retry(write)
        except sqlite3.OperationalError:
            self.close()
