"""SQLite connections for the local state databases, safe with several mlvc processes.

SQLite's busy timeout does not cover every case: switching to WAL, the first
schema creation, and a read transaction upgraded to a write can fail at once
with "database is locked" while another process writes.  Those steps are
retried here with a short backoff instead of failing the command.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")
_RETRY_FOR_S = 60.0


def retry(fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(*args)`, retrying while SQLite reports the database as locked or busy."""
    deadline = time.monotonic() + _RETRY_FOR_S
    delay = 0.01
    while True:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)


def connect(db_path: Path, schema: list[str]) -> sqlite3.Connection:
    """Open (creating if needed) a WAL database in autocommit mode with `schema` applied."""
    db_path.parent.mkdir(parents=True, exist_ok=True)

    def open_db() -> sqlite3.Connection:
        db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in schema:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    return retry(open_db)


class LazyDB:
    """A database opened on its first use (`connect` with the class's `SCHEMA`) and closed by
    `close()`: the hash cache, the completeness marks and the workspace state are one each."""

    SCHEMA: tuple[str, ...] = ()

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = connect(self.db_path, list(self.SCHEMA))
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

