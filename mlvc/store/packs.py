"""Pack files and their indexes: the on-disk container for every object.

A pack is append-only while it is being written (under `tmp/`) and immutable
once published.  Publishing order is the crash-safety invariant
(docs/concepts/storage-format.md):

1. records are appended to `tmp/pack-<unique>.pack`, then the file is fsynced;
2. the index is written to `tmp/pack-<unique>.idx` and fsynced;
3. the pack is published as `packs/<name>.pack`, then the index as `packs/<name>.idx`
   (`PackStore`; on a directory: rename, then fsync of the directory).

Readers only look at `*.idx` files, so a pack without its index (a crash
between the two renames) is invisible and later swept; an index never exists
without its complete pack.  `<name>` is the xxh3-128 of the index body, so
identical packs get identical names and concurrent writers never collide.

Pack layout (format 4; format 1 is the same without the `PLANES` and `DELTA` codecs, format 2
without `DELTA`, format 3 without `SPARSE` planes inside `PLANES` payloads; all are still read)::

    b"MLVCPACK" u8 version
    record*:  u8 type | u8 codec | 16-byte id | u32 stored length | u32 raw length | payload

Index layout (entries sorted by (id, type))::

    b"MLVCIDX\\0" u8 version u32 count
    entry*:   16-byte id | u8 type | u8 codec | u64 offset (of payload) | u32 stored | u32 raw
    16-byte xxh3-128 of everything above

The record headers repeat what the index says so that a pack can be
re-indexed (`mlvc verify --repair`) if its index is ever lost.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..chunking import MAX_CHUNK_SIZE
from ..codec import DELTA, PLANES, RAW, ZSTD  # noqa: F401 - re-exported: the format names them
from ..errors import CorruptObjectError
from ..hashing import digest, to_oid
from ..objects import MAX_TREE_BYTES

Buffer = Union[bytes, bytearray, memoryview]  # what a pack writer takes

PACK_MAGIC = b"MLVCPACK"
IDX_MAGIC = b"MLVCIDX\0"
FORMAT_VERSION = 4  # written; 2 added the PLANES codec (byte planes of floats), 3 DELTA (XOR with a base),
# 4 SPARSE planes (a mostly-zero plane as positions and bytes: `codec.SPARSE`)
READ_VERSIONS = (1, 2, 3, 4)  # read: packs and indexes written by earlier mlvc stay readable

# Object types (the `type` byte).
CHUNK = 0
FILE_MANIFEST = 1
TREE_MANIFEST = 2
TYPE_NAMES = {CHUNK: "chunk", FILE_MANIFEST: "file", TREE_MANIFEST: "tree"}


def type_name(typ: int) -> str:
    """An object type's name in messages ("chunk", "file", "tree")."""
    return TYPE_NAMES.get(typ, str(typ))


# Codecs (the `codec` byte) are the codec module's: RAW, ZSTD, PLANES, DELTA (re-exported here).

# The largest raw size a record of each type may declare.  Records are read whole, so these
# bound what one object can make a reader allocate, whatever an index or pack claims.
MAX_RAW_SIZE = {CHUNK: MAX_CHUNK_SIZE, FILE_MANIFEST: 512 * 1024 * 1024, TREE_MANIFEST: MAX_TREE_BYTES}
_STORED_SLACK = 1024  # zstd output is kept only when smaller than its input; raw is stored as is


def record_size_error(typ: int, oid: bytes, stored: int, raw: int, where: str) -> CorruptObjectError | None:
    """The error for a record whose declared sizes no writer produces (checked before reading it)."""
    limit = MAX_RAW_SIZE.get(typ)
    if limit is None:
        return CorruptObjectError(to_oid(oid), where, "a known object type", f"type {typ}")
    if raw > limit or stored > raw + _STORED_SLACK:
        return CorruptObjectError(to_oid(oid), where, f"at most {limit} bytes ({TYPE_NAMES[typ]})",
                                  f"a record declaring {raw} raw / {stored} stored bytes")
    return None


RECORD = struct.Struct("<BB16sII")
_IDX_HEAD = struct.Struct("<8sBI")
_IDX_ENTRY = struct.Struct("<16sBBQII")
PACK_HEAD = PACK_MAGIC + bytes([FORMAT_VERSION])


def pack_head_ok(data: bytes | memoryview) -> bool:
    """Whether `data` begins with the head of a pack of a format this code reads."""
    return len(data) >= len(PACK_HEAD) and bytes(data[:len(PACK_MAGIC)]) == PACK_MAGIC \
        and data[len(PACK_MAGIC)] in READ_VERSIONS
IDX_HEAD_SIZE = _IDX_HEAD.size
IDX_ENTRY_SIZE = _IDX_ENTRY.size


@dataclass(frozen=True, slots=True)
class IndexEntry:
    oid: bytes  # raw 16 bytes
    type: int
    codec: int
    offset: int
    stored: int
    raw: int


def encode_index(entries: list[IndexEntry]) -> bytes:
    return encode_packed_index(b"".join(_IDX_ENTRY.pack(e.oid, e.type, e.codec, e.offset, e.stored, e.raw)
                                        for e in entries))


def encode_packed_index(packed: bytes | bytearray) -> bytes:
    """The index of entries already packed as index entries (in any order): sorted by their
    bytes, which begin with (id, type)."""
    size = _IDX_ENTRY.size
    entries = sorted(packed[i:i + size] for i in range(0, len(packed), size))
    body = _IDX_HEAD.pack(IDX_MAGIC, FORMAT_VERSION, len(entries)) + b"".join(entries)
    return body + digest(body)


def decode_index(data: bytes, where: str) -> list[IndexEntry]:
    check_index(data, where)
    return [IndexEntry(*t) for t in _IDX_ENTRY.iter_unpack(data[_IDX_HEAD.size:-16])]


def check_index(data: bytes, where: str) -> int:
    """The number of entries of an intact index (CorruptObjectError if it is not one)."""
    if len(data) < _IDX_HEAD.size + 16 or digest(data[:-16]) != data[-16:]:
        raise CorruptObjectError(where, "the cache", "a valid pack index", "a damaged file")
    magic, version, count = _IDX_HEAD.unpack_from(data, 0)
    count = int(count)
    if magic != IDX_MAGIC or version not in READ_VERSIONS:
        raise CorruptObjectError(where, "the cache", f"index format {' or '.join(map(str, READ_VERSIONS))}",
                                 f"{magic!r} v{version}")
    if len(data) != _IDX_HEAD.size + count * _IDX_ENTRY.size + 16:
        raise CorruptObjectError(where, "the cache", "a complete index", "a truncated file")
    return count


def index_name(idx_bytes: bytes) -> str:
    return idx_bytes[-16:].hex()


_BATCH_BYTES = 8 * 1024 * 1024
_MAX_INFLIGHT = 4
_IOV_MAX = 512  # buffers per writev call (the OS limit is 1024)


def write_all(fd: int, bufs: list[Buffer]) -> None:
    """writev every buffer completely (a short write only happens at the end of a disk)."""
    for i in range(0, len(bufs), _IOV_MAX):
        group = [memoryview(b).cast("B") for b in bufs[i:i + _IOV_MAX]]
        while group:
            n = os.writev(fd, group)
            while group and n >= len(group[0]):
                n -= len(group[0])
                group.pop(0)
            if group and n:
                group[0] = group[0][n:]


class BackgroundWriter:
    """Writes buffers to a file descriptor from a helper thread, in large `writev` batches.

    The caller's thread goes on (chunking, hashing, reading packs) while the kernel
    copies the previous batch.  Buffers are held, not copied, until written; at most
    `_MAX_INFLIGHT` batches are pending, which bounds memory.  A write error (disk
    full) is re-raised from a later `write` or from `drain`.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self._batch: list[Buffer] = []
        self._batch_bytes = 0
        self._inflight: deque[Future[None]] = deque()
        self._io: ThreadPoolExecutor | None = None

    def write(self, buf: Buffer) -> None:
        self._batch.append(buf)
        self._batch_bytes += len(buf)
        if self._batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlvc-io")
        self._inflight.append(self._io.submit(write_all, self.fd, batch))
        while len(self._inflight) > _MAX_INFLIGHT or (self._inflight and self._inflight[0].done()):
            self._inflight.popleft().result()

    def drain(self) -> None:
        """Write everything queued; on return it is in the file (or an error was raised)."""
        if self._batch and self._io is None:
            # Small output that never filled a batch: write it here, no thread needed.
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            write_all(self.fd, batch)
        if self._batch:
            self._flush()
        while self._inflight:
            self._inflight.popleft().result()

    def close(self, discard: bool = False) -> None:
        """Stop the helper thread; with `discard`, drop what is queued and swallow write errors."""
        if discard:
            self._batch = []
            for f in self._inflight:
                try:
                    f.result()
                except OSError:
                    pass
            self._inflight.clear()
        else:
            self.drain()
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None


class PackWriter:
    """Appends records to one temporary pack; `publish()` makes it visible atomically.

    Records are written by a background thread in large `writev` batches, so
    the disk writes overlap with chunking and hashing on the caller's thread.
    Payload buffers are held (not copied) until written; at most
    `_MAX_INFLIGHT` batches are pending, which bounds memory.
    """

    def __init__(self, tmp_dir: Path, fsync: bool = True):
        self.tmp_dir = tmp_dir
        self.fsync = fsync
        stem = f"pack-{os.getpid()}-{uuid.uuid4().hex}"
        self.path = tmp_dir / f"{stem}.pack"
        self._f = open(self.path, "x+b", buffering=0)  # readable too: read_back of unpublished objects
        self._guard = threading.Lock()
        self.closed = False
        self._fd = self._f.fileno()
        self._out = BackgroundWriter(self._fd)
        self._out.write(PACK_HEAD)
        self.size = len(PACK_HEAD)
        # The records' index entries, packed in append order (~34 bytes an object: a pack of
        # small files holds ~50,000, and `jobs`+2 packs may be in flight), not an object each.
        self._index = bytearray()
        self.count = 0
        self.has_manifest = False
        self.has_delta = False  # a delta's base may be in an earlier pack: published after it

    def append(self, oid: bytes, typ: int, codec: int, payload: Buffer, raw_len: int) -> None:
        stored = len(payload)
        self._out.write(RECORD.pack(typ, codec, oid, stored, raw_len))
        self._out.write(payload)
        self._index += _IDX_ENTRY.pack(oid, typ, codec, self.size + RECORD.size, stored, raw_len)
        self.size += RECORD.size + stored
        self.count += 1
        if typ != CHUNK:
            self.has_manifest = True
        elif codec == DELTA:
            self.has_delta = True

    def entry(self, typ: int, oid: bytes) -> IndexEntry | None:
        """The entry of a record written here (a linear search: only objects read back use it)."""
        key = oid + bytes((typ,))
        index, size = self._index, _IDX_ENTRY.size
        pos = index.find(key)
        while pos >= 0 and pos % size:
            pos = index.find(key, pos + 1)  # matched across two entries
        return None if pos < 0 else IndexEntry(*_IDX_ENTRY.unpack_from(index, pos))

    def keys(self) -> Iterator[tuple[int, bytes]]:
        """(type, id) of every record written here."""
        index, size = self._index, _IDX_ENTRY.size
        for pos in range(0, len(index), size):
            yield index[pos + 16], bytes(index[pos:pos + 16])

    def read_back(self, entry: IndexEntry) -> bytes | None:
        """Read a record of this still-unpublished pack (an object added twice in one run), or
        None once the writer is discarded (the store's index has the object by then, or never will)."""
        with self._guard:  # the publisher thread may finish or discard this writer meanwhile
            if self.closed:
                return None
            self._out.drain()
            return os.pread(self._fd, entry.stored, entry.offset)

    def finish(self) -> tuple[str, bytes]:
        """Write out the pack (fsynced when durable); returns (name, index bytes).  The caller
        publishes the pack, then the index (`PackStore`), then `discard`s the writer.  The file
        stays open until then: objects of the pack are read back through it (`read_back`) until
        the store's index has them, also after the file was renamed or uploaded and removed."""
        with self._guard:
            self._out.close()
            if self.fsync:
                os.fsync(self._f.fileno())
        idx = encode_packed_index(self._index)
        return index_name(idx), idx

    def discard(self) -> None:
        with self._guard:
            self.closed = True
            self._out.close(discard=True)
            try:
                self._f.close()
            except OSError:
                pass
        self.path.unlink(missing_ok=True)
