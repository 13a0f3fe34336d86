"""Progress reporting protocol.  Operations report; only the CLI renders."""

from __future__ import annotations

import threading


class Progress:
    """No-op progress sink; the CLI passes a rich-backed subclass."""

    def start(self, description: str, total: int | None = None, unit: str = "B") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


NULL = Progress()


class ThreadSafeProgress(Progress):
    """A progress advanced from several worker threads (one transfer's copiers)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._lock = threading.Lock()

    def start(self, description: str, total: int | None = None, unit: str = "B") -> None:
        self._progress.start(description, total, unit)

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self._progress.advance(amount)

    def finish(self) -> None:
        self._progress.finish()

