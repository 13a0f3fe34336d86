"""Printing helpers for commands: plain text, JSON, errors, progress bars."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from ..progress import Progress
from ..units import human_size  # also re-exported for the commands

if TYPE_CHECKING:
    from rich.progress import Progress as Bar, ProgressColumn, Task, TaskID

    from ..repo import Repo


def echo(text: str = "", err: bool = False, flush: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    if flush:
        stream.flush()


def emit_json(data: object, stream: str | None = None) -> None:
    """`data` as indented JSON on stdout.  `stream`: a top-level key of the mapping `data` whose
    value is any iterable (a million entries), written item by item in the same format instead of
    built whole."""
    if stream is None or not isinstance(data, Mapping) or data.get(stream) is None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    items: Iterable[object] = data[stream]
    mark = "\x00mlvc-streamed\x00"
    before, after = json.dumps({**data, stream: mark}, indent=2, default=str).split(json.dumps(mark), 1)
    out = sys.stdout
    out.write(before)
    sep = "[\n    "
    for item in items:
        out.write(sep + json.dumps(item, indent=2, default=str).replace("\n", "\n    "))
        sep = ",\n    "
    out.write("[]" if sep.startswith("[") else "\n  ]")
    out.write(after + "\n")


class RichProgress(Progress):
    """A transient rich progress bar on stderr, shown only on a terminal."""

    def __init__(self) -> None:
        self._bar: Bar | None = None
        self._task: TaskID | None = None

    @staticmethod
    def columns(unit: str = "B") -> list[ProgressColumn]:
        """The bar's columns; byte counts and speeds in binary units (GiB), as every summary prints."""
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)
        from rich.text import Text

        class BinarySpeedColumn(TransferSpeedColumn):
            def render(self, task: Task) -> Text:
                speed = task.finished_speed or task.speed
                if speed is None:
                    return Text("?", style="progress.data.speed")
                return Text(f"{human_size(int(speed))}/s", style="progress.data.speed")

        cols: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
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
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class RemoteWatch(Progress):
    """The progress of a transfer, watched: when nothing moves for `NOTICE_S` (an endpoint that
    accepts connections and never answers looks exactly like this until its read timeouts and
    retries run out), `notify` is told, and again every `REPEAT_S`; a Ctrl-C inside the `with`
    block prints what was moved and that a re-run resumes, and exits 130.

        with RemoteWatch(progress_for(quiet), "remote 'origin'", "mlvc push", notify) as watched:
            push(repo, progress=watched)
    """

    NOTICE_S = 10.0
    REPEAT_S = 30.0

    def __init__(self, inner: Progress, remote: str, rerun: str,
                 notify: Callable[[str], None] | None = None) -> None:
        import threading
        import time

        self.inner, self.remote, self.rerun, self.notify = inner, remote, rerun, notify
        self._clock = time.monotonic
        self._last = self._clock()
        self._next = self.NOTICE_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mlvc-remote-watch", daemon=True)
        self.phase: str | None = None
        self.total: int | None = None
        self.moved = 0  # bytes (or items) advanced in the current phase
        self.moved_all = 0  # bytes advanced in every phase

    def _touch(self) -> None:
        self._last = self._clock()
        self._next = self.NOTICE_S

    def start(self, description: str, total: int | None = None, unit: str = "B") -> None:
        self._touch()
        self.phase, self.total, self.moved = description, total, 0
        self.inner.start(description, total, unit)

    def advance(self, amount: int = 1) -> None:
        self._touch()
        self.moved += amount
        self.moved_all += amount
        self.inner.advance(amount)

    def finish(self) -> None:
        self._touch()
        self.inner.finish()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            idle = self._clock() - self._last
            if idle >= self._next and self.notify is not None:
                self._next += self.REPEAT_S
                self.notify(f"waiting: nothing from {self.remote} for {int(idle)} s; still trying (an endpoint "
                            "that does not answer fails once its connect/read timeouts and retries run out). "
                            f"Ctrl-C stops; `{self.rerun}` again resumes")

    def summary(self) -> str:
        if self.phase is None or not self.moved_all:
            done = "nothing was transferred yet"
        elif self.total:  # the bar's basis, which the final summary also gives: artifact data
            done = (f"{self.phase}: {human_size(self.moved)} of {human_size(self.total)} of artifact data done "
                    "(sent, or already there)")
        else:
            done = f"{self.phase}: {human_size(self.moved)} of artifact data done (sent, or already there)"
        return (f"interrupted; {done}. What was transferred and verified is kept: `{self.rerun}` again "
                "resumes from there")

    def __enter__(self) -> "RemoteWatch":
        self._touch()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        self._stop.set()
        self._thread.join()
        self.inner.finish()
        if exc_type is KeyboardInterrupt:
            from typer import Exit

            from ..errors import EXIT_INTERRUPTED

            echo(self.summary(), err=True)
            raise Exit(EXIT_INTERRUPTED) from None
        return False


def remote_label(repo: Repo, name: str | None) -> str:
    """"remote 'origin'" for messages: the named remote, or the default one."""
    if name is None:
        from ..errors import MlvcError
        from ..remote.config import known_remotes

        try:
            name = known_remotes(repo)[1]
        except MlvcError:
            return "the remote"
        if name is None:
            return "the remote"
    return f"remote {name!r}"


def progress_for(quiet: bool) -> Progress:
    if quiet or not sys.stderr.isatty() or os.environ.get("MLVC_NO_PROGRESS"):
        return Progress()
    return RichProgress()


def find_repo() -> Repo:
    """The repository around the current directory."""
    from ..repo import Repo

    return Repo.find()


@contextmanager
def open_repo() -> Iterator[Repo]:
    """The repository around the current directory, closed (cache files, databases) afterwards."""
    repo = find_repo()
    try:
        yield repo
    finally:
        repo.close()
