"""Publishing packs: the pack first, then its index, in closure order.

A store writes into a private temporary pack (`PackWriter`, in its scratch directory); a full
pack is published by a background thread while the next one fills: the pack file first, then
its index, so an index never names a missing pack.  A pack that holds manifests (or deltas)
publishes its index only after every earlier pack of this store object did (the closure rule: a
visible manifest implies everything below it, a visible delta its base, whatever dies when).
`guard_indexes(check)` runs a check before each index is published (a push's lease).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ..errors import DiskError, MlvcError
from .backend import Backend
from .packindex import PACKS
from .packreads import PackReads
from .packs import TYPE_NAMES, PackWriter, check_index


def wrap_os_error(exc: OSError, what: str) -> DiskError:
    if isinstance(exc, DiskError):
        return exc  # already says what could not be written (a backend's translation): said once
    if exc.errno == errno.ENOSPC:
        return DiskError(f"disk full while writing {what}; nothing was recorded, the cache is intact",
                         hint="free some space and run the command again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DiskError(f"permission denied while writing {what}: {exc.filename or ''}".rstrip(": "))
    return DiskError(f"cannot write {what}: {exc.strerror or exc}")


class PackPublisher(PackReads):
    """The packs of a backend, read (`PackReads`), and the packs this process publishes there."""

    def __init__(self, backend: Backend, *, name: str, index_cache: Path | None = None,
                 merged_dir: Path | None = None, jobs: int = 1) -> None:
        super().__init__(backend, name=name, index_cache=index_cache, merged_dir=merged_dir, jobs=jobs)
        self.published = 0  # packs this object published (written or adopted)
        self.published_names: list[str] = []  # their names, in order (one may be an older pack's: same bytes)
        self._index_guard: Callable[[], None] | None = None  # see `guard_indexes`
        self._writer: PackWriter | None = None
        # Objects in packs not yet published, by type: id -> the writer holding it
        self._pending: list[dict[bytes, PackWriter]] = [{} for _typ in TYPE_NAMES]
        self._publisher: ThreadPoolExecutor | None = None
        self._publishing: list[tuple[Future[None], threading.Event]] = []
        self._publish_failed = False

    @contextmanager
    def guard_indexes(self, check: Callable[[], None]) -> Iterator[None]:
        """Inside: `check()` runs before each index this store publishes, and its error stops
        the publish (a transfer's lease check: what an index promises must still hold when it
        becomes visible).  Packs written inside must be committed inside."""
        if self._index_guard is not None:
            raise RuntimeError(f"{self.name}: its indexes are guarded already")
        self._index_guard = check
        try:
            yield
        finally:
            self._index_guard = None

    def _start_publish(self, writer: PackWriter) -> None:
        # Publishing (fsync or upload) overlaps with producing the next pack.  At most `jobs`+1
        # packs wait: an unpublished pack still holds buffers (and scratch disk), so an unbounded
        # queue would grow with the data.
        if self._publisher is None:
            self._publisher = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mlvc-publish")
        earlier = [ev for _f, ev in self._publishing]
        done = threading.Event()
        future = self._publisher.submit(self._publish, writer, earlier, done)
        self._publishing.append((future, done))
        while len(self._publishing) > self.jobs + 1:
            self._publishing.pop(0)[0].result()

    def _publish(self, writer: PackWriter, earlier: list[threading.Event], done: threading.Event) -> None:
        try:
            self._publish_pack(writer, earlier)
        except BaseException:
            self._publish_failed = True  # later packs must not publish manifests that need this one
            raise
        finally:
            done.set()

    def _publish_pack(self, writer: PackWriter, earlier: list[threading.Event]) -> None:
        if not writer.count:
            writer.discard()
            return
        try:
            self._publish_records(writer, earlier)
        except OSError as exc:
            raise wrap_os_error(exc, self.name) from exc
        finally:
            with self._lock:  # published, or failed: either way no longer readable through the writer
                self._forget(writer)
            writer.discard()  # the scratch file (if not moved into the store) and its descriptor

    def _publish_records(self, writer: PackWriter, earlier: list[threading.Event]) -> None:
        name, idx = writer.finish()
        self.backend.put_file(writer.path, f"{PACKS}{name}.pack", move=True)
        if writer.has_manifest or writer.has_delta:
            for ev in earlier:  # the closure rule: earlier packs' indexes first (a delta's base too)
                ev.wait()
            if self._publish_failed:
                # an earlier pack never became visible: its objects may be what these manifests
                # name.  The pack file stays unindexed (invisible; `verify --repair` can index it).
                raise MlvcError(f"not publishing a pack of manifests for {self.name}: an earlier pack failed")
        self._publish_index(name, idx, writer)

    def _publish_index(self, name: str, idx: bytes, writer: PackWriter | None = None) -> None:
        """Publish the index of pack `name` (its file is in place) through the index guard
        (`guard_indexes`: its error leaves the pack unindexed, invisible), and know the pack here.
        `writer`: the pack this store wrote (its objects stop being pending); without it, an
        adopted pack whose index is checked before it is loaded."""
        if self._index_guard is not None:
            self._index_guard()
        self.backend.put_bytes(f"{PACKS}{name}.idx", idx)
        self._save_index(name, idx)
        with self._lock:
            self.published += 1
            self.published_names.append(name)
            if name not in self._pack_no:
                if writer is None:
                    check_index(idx, f"pack index {name}")
                self._add_pack(name, idx)
            if writer is not None:
                self._forget(writer)

    def _forget(self, writer: PackWriter) -> None:
        """Drop a writer's objects from the pending ones (it was published, or failed); call
        with the lock held."""
        for typ, oid in writer.keys():
            pending = self._pending[typ]
            if pending.get(oid) is writer:
                del pending[oid]

    def adopt_pack(self, pack_file: Path, name: str, idx: bytes) -> None:
        """Publish a complete, verified pack file (a whole pack copied from another store) as is,
        through the index guard like any pack (`guard_indexes`)."""
        self.backend.put_file(pack_file, f"{PACKS}{name}.pack", move=True)
        self._publish_index(name, idx)

    def commit(self) -> None:
        """Publish everything written so far; on return it is durable and visible to others."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._start_publish(writer)
        publishing, self._publishing = self._publishing, []
        try:
            self._wait_all(publishing)
        finally:
            self._publish_failed = False
        self._merge_if_due()

    @staticmethod
    def _wait_all(publishing: list[tuple[Future[None], threading.Event]]) -> None:
        first_error = None
        for f, _ev in publishing:
            try:
                f.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below after all finished
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def abort(self) -> None:
        """Drop the unpublished pack (used when an operation fails half-way)."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.discard()
                self._forget(writer)
        for f, _ev in self._publishing:
            try:
                f.result()
            except BaseException:  # noqa: BLE001 - already failing; keep the first error
                pass
        self._publishing = []
        self._publish_failed = False


__all__ = ["PackPublisher", "wrap_os_error"]
