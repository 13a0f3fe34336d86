"""Progress reporting protocol.  Operations report; only the CLI renders."""

from __future__ import annotations


class Progress:
    """No-op progress sink; the CLI passes a rich-backed subclass."""

    def start(self, description: str, total: int | None = None, unit: str = "B") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


NULL = Progress()
