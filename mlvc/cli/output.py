"""Printing helpers for commands: plain text, JSON, errors, progress bars."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

from ..progress import Progress
from ..units import human_size  # also re-exported for the commands


def echo(text: str = "", err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class RichProgress(Progress):
    """A transient rich progress bar on stderr, shown only on a terminal."""

    def __init__(self):
        self._bar = None
        self._task = None

    @staticmethod
    def columns(unit: str = "B") -> list:
        """The bar's columns; byte counts and speeds in binary units (GiB), as every summary prints."""
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)
        from rich.text import Text

        class BinarySpeedColumn(TransferSpeedColumn):
            def render(self, task) -> Text:
                speed = task.finished_speed or task.speed
                if speed is None:
                    return Text("?", style="progress.data.speed")
                return Text(f"{human_size(int(speed))}/s", style="progress.data.speed")

        cols = [TextColumn("{task.description}"), BarColumn()]
        cols += [DownloadColumn(binary_units=True), BinarySpeedColumn()] if unit == "B" else [MofNCompleteColumn()]
        cols.append(TimeRemainingColumn())
        return cols

    def start(self, description: str, total: int | None = None, unit: str = "B") -> None:
        from rich.progress import Progress as Bar
        from rich.console import Console

        self.finish()
        self._bar = Bar(*self.columns(unit), console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_for(quiet: bool) -> Progress:
    if quiet or not sys.stderr.isatty() or os.environ.get("MLVC_NO_PROGRESS"):
        return Progress()
    return RichProgress()


def find_repo():
    """The repository around the current directory."""
    from ..repo import Repo

    return Repo.find()


@contextmanager
def open_repo():
    """The repository around the current directory, closed (cache files, databases) afterwards."""
    repo = find_repo()
    try:
        yield repo
    finally:
        repo.close()
