"""Bases of deltas read from local files instead of decoded again: `FileBases`.

A delta's base is a chunk of another version of the same tensor.  Restoring it from the store
decodes the base's record (and, down a chain, its base's: up to `codec.MAX_DELTA_DEPTH` + 1
records per chunk).  Often the base's plaintext already lies on this machine:

- the version of the file the workspace holds before a checkout replaces it (`last.pt`
  overwritten and committed: the version checked out is usually the next or the previous one
  of the same chain);
- a file this restore has just written (a run's `step_000040.pt` before `step_000080.pt`, in
  one checkout of the run directory).

A restore tells `FileBases` which chunks lie where (the chunk list of a file it knows the id
of); `read(id)` then reads those bytes back and hashes them: they are used only when they
hash to the id (a file changed since, or a chunk list that was wrong, costs a read and falls
back to the store).  A read from the page cache and one hash cost a fraction of a decode.

An XOR delta works both ways: a chunk C stored as a delta on B holds C ^ B, so B = C ^ (C's
delta) too.  `add_derived` names such pairs for the chunks of a file (the workspace's `last.pt`
at v5, whose chunks are deltas on v4's): `read(B)` then reads C from the file and decodes C's
record against it, one decode where B's own record may be a chain of them (`git checkout
HEAD~1`, a bisect stepping back), and checks the result against B's id like any other.

Bounded: at most `MAX_FILES` files (their descriptors and chunk positions) are kept, the
oldest dropped first.  Safe from several decode threads at once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from .. import codec
from ..hashing import digest

MAX_FILES = 8  # a restore needs the last few files written (a chain is at most 4 deltas deep)
# Smaller files are not worth a manifest read: deltas are blocks of the float tensors of checkpoints
MIN_FILE_BYTES = 256 << 10


class FileBases:
    """Where chunks' plaintexts lie in local files: {chunk id: (file, offset, length)}."""

    def __init__(self, max_files: int = MAX_FILES) -> None:
        self.max_files = max_files
        self._lock = threading.Lock()
        self._where: dict[bytes, tuple[int, int, int]] = {}  # chunk id -> (fd, offset, length)
        self._files: OrderedDict[int, list[bytes]] = OrderedDict()  # fd -> its chunk ids, oldest first
        self.hits = 0  # bases read from files (for tests and benchmarks)
        # chunk id -> the chunk stored as a delta on it, whose plaintext a file holds; and what
        # reads that delta's stored payload
        self._derived: dict[bytes, bytes] = {}
        self._payload: Callable[[bytes], codec.Bytes | None] | None = None
        self._pending: list[tuple[list[bytes], Callable[[list[bytes]], dict[bytes, bytes]]]] = []

    def add_derived(self, chunks: Iterable[bytes], bases_of: Callable[[list[bytes]], dict[bytes, bytes]],
                    payload: Callable[[bytes], codec.Bytes | None]) -> None:
        """`chunks`: ids of chunks `add_fd`/`add_path` were told of; `bases_of(ids)` answers
        {chunk id: the base its delta record names} for those stored as deltas (asked once, when
        a base is first wanted: a restore that needs none pays nothing); `payload(chunk id)`
        reads such a chunk's stored delta record (None if it cannot).  Each base can then be
        read as the chunk's plaintext decoded with its record."""
        with self._lock:
            self._payload = payload
            self._pending.append((list(chunks), bases_of))

    def add_fd(self, fd: int, chunks: Iterable[tuple[bytes, int]]) -> None:
        """The file open at `fd` (readable; duplicated here, the caller keeps its own) holds
        `chunks`, (id, length) in file order.  Its bytes are hashed when read, never trusted."""
        self._add(os.dup(fd), chunks)

    def add_path(self, path: str | os.PathLike[str], chunks: Iterable[tuple[bytes, int]]) -> None:
        """Like `add_fd`, for a file opened here by path (nothing if it cannot be opened)."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return
        self._add(fd, chunks)

    def _add(self, fd: int, chunks: Iterable[tuple[bytes, int]]) -> None:
        ids = []
        offset = 0
        with self._lock:
            for oid, length in chunks:
                self._where[oid] = (fd, offset, length)
                ids.append(oid)
                offset += length
            self._files[fd] = ids
            while len(self._files) > self.max_files:
                self._drop(next(iter(self._files)))

    def _drop(self, fd: int) -> None:
        for oid in self._files.pop(fd):
            if self._where.get(oid, (-1,))[0] == fd:
                del self._where[oid]
        os.close(fd)

    def read(self, oid: bytes, derive: bool = True) -> bytes | None:
        """The plaintext of chunk `oid`, read from a file (or, with `derive`, decoded from the
        delta of a chunk a file holds, `add_derived`) and checked against its id; None when no
        file holds it (or holds it no longer)."""
        data = self._read_file(oid)
        if data is None and derive:
            data = self._read_derived(oid)
        if data is not None:
            with self._lock:
                self.hits += 1
        return data

    def _read_derived(self, oid: bytes) -> bytes | None:
        with self._lock:
            while self._pending:
                chunks, bases_of = self._pending.pop()
                try:
                    found = bases_of(chunks)
                except Exception:  # noqa: BLE001 - unreadable here: those bases are decoded from the store
                    continue
                for chunk, base in found.items():
                    self._derived[base] = chunk
            delta, payload = self._derived.get(oid), self._payload
        if delta is None or payload is None:
            return None
        plain = self._read_file(delta)
        if plain is None:
            return None
        try:
            record = payload(delta)
            if record is None or codec.delta_base(record) != oid:
                return None
            data = bytes(codec.decode_delta(record, len(plain), plain))
        except Exception:  # noqa: BLE001 - whatever the decoder makes of it: the store decodes it instead
            return None
        return data if digest(data) == oid else None

    def _read_file(self, oid: bytes) -> bytes | None:
        with self._lock:
            where = self._where.get(oid)
            if where is None:
                return None
            fd, offset, length = where
            fd = os.dup(fd)  # a concurrent drop must not close (and reuse) it under the read
        try:
            data = os.pread(fd, length, offset)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) != length or digest(data) != oid:
            return None
        return data

    def close(self) -> None:
        with self._lock:
            self._derived.clear()
            self._pending.clear()
            while self._files:
                self._drop(next(iter(self._files)))

    def __enter__(self) -> FileBases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FileBases", "MAX_FILES", "MIN_FILE_BYTES"]
