"""`PackStore`: the one object store, for the local cache and for every remote.

A store is a `Backend` holding ``packs/<name>.pack`` and ``packs/<name>.idx``
(format in `mlvc.store.packs`; which packs are visible and where each object lies:
`mlvc.store.packindex`), plus, for the cache, ``complete.sqlite`` (which roots are whole)
and what `mlvc.store.shared_cache` keeps (``repos/``, the host lock, the scratch sweep).
The cache and a remote differ by their `Role`, the backend under them and where the store
keeps its scratch files and downloaded indexes.

Objects are keyed by (type, 16-byte id).  Reads are verified against the id
(file manifests carry their own checksum; `mlvc.store.records` decodes and checks);
runs of adjacent records are read with one request (`mlvc.store.packreads` reads the
packs).  Writes go to a private temporary pack in `scratch`; a full pack is published by
a background publisher (`mlvc.store.publisher`): the pack first, then its index, so an
index never names a missing pack, and in closure order.

The class stack: `PackIndex` (which packs, where each object lies) -> `PackReads` (reading
them) -> `PackPublisher` (publishing new ones) -> `PackStore` (objects: has/get/put, deltas,
restores' decode-ahead).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Union

from .. import codec
from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, Remedy, UnsafePathError
from ..hashing import digest, hasher, to_oid
from ..objects import NotCanonical, TreeManifest
from . import shared_cache
from .backend import Backend
from .packs import (
    RECORD,
    CHUNK,
    FILE_MANIFEST,
    TREE_MANIFEST,
    PackWriter,
    record_size_error,
)
from .packindex import PACKS, RESCAN_INTERVAL
from .publisher import PackPublisher, wrap_os_error
from .records import COALESCE_LIMIT, BaseRead, decode_verify
from .state import CompleteRoots
from .types import Key, ObjectReader, PackedLocation, Pending

DEFAULT_PACK_SIZE = 32 * 1024 * 1024
RANGE_GAP = 256 * 1024  # remote reads also swallow gaps up to this size (fewer requests)
LOCAL_GAP = 4096  # a mapped read swallows small gaps (a small file's manifest between its chunk and
# the next file's): a view costs nothing for the bytes it skips, a run per record did

# (key, codec, stored payload, raw length, data, error): one object read by `iter_stored` (a plain tuple:
# made per object, a million times in a large transfer)
StoredItem = tuple[Key, int, Union[bytes, memoryview], int, Union[bytes, memoryview, None], Union[MlvcError, None]]


# Compressed chunks are decoded in batches of about DECODE_BATCH_BYTES (one helper-thread task
# each: a task per 64 KiB chunk left the reader waking on a future per chunk), at most
# DECODE_AHEAD_BYTES of decoded bytes ahead of the chunk the reader is given.
DECODE_BATCH_BYTES = 1 << 20
DECODE_BATCH_RECORDS = 64  # and at most this many records a batch (small chunks of many files)
DECODE_AHEAD_BYTES = 8 << 20
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
_DECODE_POOL: ThreadPoolExecutor | None = None
_DECODE_POOL_LOCK = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """The process's decode threads (made on the first compressed chunk a restore reads)."""
    global _DECODE_POOL
    with _DECODE_POOL_LOCK:
        if _DECODE_POOL is None:
            _DECODE_POOL = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="mlvc-decode")
        return _DECODE_POOL


def _decode_batch(records: list[tuple[Key, int, bytes | memoryview, int]], where: str, check_ids: bool,
                  base: BaseRead | None = None) -> list[tuple[Key, bytes | memoryview | CorruptObjectError]]:
    """Decode consecutive chunk records on a helper thread: (key, bytes or its error) each
    (a delta's missing base is raised: the object is missing, not damaged)."""
    out: list[tuple[Key, bytes | memoryview | CorruptObjectError]] = []
    for key, c, payload, raw in records:
        try:
            out.append((key, decode_verify(CHUNK, key[1], c, payload, raw, where, check_ids, base)))
        except CorruptObjectError as exc:
            out.append((key, exc))
    return out


class _NoMarks:
    """Completeness marks of a store that keeps none (remotes): nothing is known complete."""

    def __contains__(self, oid: str) -> bool:
        return False

    def add(self, oids: Iterable[str]) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


class Role(enum.Enum):
    """What a store is to this process: the local cache, or a remote."""

    CACHE = "cache"
    REMOTE = "remote"


class PackStore(PackPublisher):
    """Objects in packs on one backend.

    `role`: `Role.CACHE` (this machine's cache: it keeps completeness `marks`, vouches for a
    subtree by them only, and counts no requests) or `Role.REMOTE` (always written in closure
    order; requests counted).  `scratch`: a local directory for packs being written (for the
    cache, on the same filesystem, so publishing is a rename).  `index_cache`: where downloaded
    indexes of a remote are kept (they are named by their checksum, so valid forever).
    `marks`: the completeness table (the cache's; required for it, refused for a remote).
    `jobs`: packs published at once.  `merged_dir`: where merged object tables are kept
    between runs (`objecttable`; default: `index_cache`, or nowhere).
    """

    def __init__(self, backend: Backend, *, role: Role, scratch: Path, name: str = "the cache",
                 index_cache: Path | None = None, marks: Path | None = None, fsync: bool = True,
                 level: int = 3, pack_size: int = DEFAULT_PACK_SIZE, jobs: int = 1,
                 merged_dir: Path | None = None) -> None:
        if (role is Role.CACHE) != (marks is not None):
            raise ValueError(f"{name}: a cache keeps completeness marks and a remote none "
                             f"(role {role.value}, marks {marks})")
        super().__init__(backend, name=name, index_cache=index_cache, merged_dir=merged_dir, jobs=jobs)
        self.role = role
        self.scratch = Path(scratch)
        self.fsync = fsync
        self.level = level
        self.pack_size = pack_size
        self.complete: CompleteRoots | _NoMarks = CompleteRoots(marks) if marks is not None else _NoMarks()
        # The cache may hold what versions before the closure rule wrote (a fetch killed after its
        # trees arrived): it vouches for a subtree by its completeness marks only.  A remote has
        # always been written in closure order.
        self.closure_trusted = role is Role.REMOTE
        # Requests sent to a remote are counted (results and benchmarks report them); the cache is
        # this machine's disk, where a "request" means nothing.
        self.counts_requests = role is Role.REMOTE
        # new_bytes: every new object's raw size; new_chunk_bytes: the part that is file content
        self.stats = {"new_objects": 0, "new_bytes": 0, "new_chunk_bytes": 0, "stored_bytes": 0}
        self._depths: dict[bytes, int] = {}  # chunk id -> deltas between its record and a whole one

    def describe(self) -> str:
        return self.name

    def has(self, typ: int, oid: bytes) -> bool:
        self._ensure_loaded()
        # pending first: a publisher adds a pack's objects to the table before it drops them from
        # the pending ones, so this order never misses an object published between the two looks
        return oid in self._pending[typ] or self._table.get(typ, oid) is not None

    def has_any(self, typ: int, oid: bytes) -> bool:
        """Like `has`, but rescans for packs other processes published meanwhile: at most once
        every RESCAN_INTERVAL (a walk over a million ids the store lacks, as after a cache was
        emptied, must not list the store a million times; a miss only costs storing again)."""
        if self.has(typ, oid):
            return True
        if time.monotonic() - self._refreshed_at < RESCAN_INTERVAL:
            return False
        return self.refresh() > 0 and self.has(typ, oid)

    # ---------------------------------------------------------------- read
    def _lookup(self, typ: int, oid: bytes) -> PackedLocation | Pending:
        """Where an object is: published (the table's tuple), or in a pack being written."""
        self._ensure_loaded()
        loc = self._table.get(typ, oid)
        if loc is None and oid not in self._pending[typ] and self.refresh():
            loc = self._table.get(typ, oid)
        if loc is None:
            writer = self._pending[typ].get(oid)
            entry = writer.entry(typ, oid) if writer is not None else None
            if writer is not None and entry is not None:
                return Pending(writer, entry)
            loc = self._table.get(typ, oid)  # published between the two looks (table before pending)
        if loc is None:
            raise ObjectNotFoundError(to_oid(oid), where=self.name,
                                      remedy=None if typ == CHUNK else Remedy.FETCH)
        return loc

    def get(self, typ: int, oid: bytes) -> bytes:
        """An object's raw bytes, verified against its id."""
        return self._get(typ, oid, ())

    def base_reader(self, chain: tuple[bytes, ...] = ()) -> BaseRead:
        """What `decode_verify` reads a delta's base with: the base's verified bytes, read from
        this store; a base that is a delta itself is read the same way, at most
        `codec.MAX_DELTA_DEPTH` deltas deep.  A cycle or a longer chain is a corrupt record;
        a missing base is a missing object (exit 7) that names the delta needing it."""
        def read(oid: bytes, base_oid: bytes) -> bytes:
            seen = chain + (oid,)
            if base_oid in seen:
                raise CorruptObjectError(to_oid(oid), self.name, "a chain of deltas ending in a whole record",
                                         f"a cycle through {to_oid(base_oid)}")
            if len(seen) > codec.MAX_DELTA_DEPTH:
                raise CorruptObjectError(to_oid(oid), self.name,
                                         f"a chain of at most {codec.MAX_DELTA_DEPTH} deltas", "a longer one")
            try:
                return self._get(CHUNK, base_oid, seen)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(f"{to_oid(base_oid)} (the base of delta {to_oid(oid)})", where=self.name,
                                          remedy=Remedy.REPAIR_OR_FETCH) from None
        return read

    def _get(self, typ: int, oid: bytes, chain: tuple[bytes, ...]) -> bytes:
        loc = self._lookup(typ, oid)
        while isinstance(loc, Pending):
            writer, e = loc
            pending_payload = writer.read_back(e)
            if pending_payload is not None:
                return decode_verify(typ, oid, e.codec, pending_payload, e.raw, "a pack being written",
                                     base=self.base_reader(chain))
            loc = self._lookup(typ, oid)  # published meanwhile: now in the index
        no, c, off, stored, raw = loc
        where = f"pack {self._pack_names[no]} ({self.name})"
        if (err := record_size_error(typ, oid, stored, raw, where)) is not None:
            raise err  # before reading: a declared 4 GiB must not be fetched or allocated
        payload = self._reader(no)(off, stored)
        if len(payload) != stored:
            raise CorruptObjectError(to_oid(oid), where, f"{stored} bytes", f"{len(payload)} bytes (truncated pack)")
        return decode_verify(typ, oid, c, payload, raw, where, base=self.base_reader(chain))

    def iter_decoded(self, typ: int, oid: bytes, piece: int = 1 << 20) -> Iterator[bytes]:
        """An object's bytes in pieces of at most `piece`, as they are decompressed (a million-file
        tree is ~75 MB: never one string), for types whose id is the digest of their bytes
        (chunks, trees).  The id is checked after the last piece: CorruptObjectError then, so a
        caller treats what came before as provisional until the iteration ends."""
        record = self._published_record(typ, oid)
        if record is None or record[0] == codec.DELTA:  # being written here, or a delta chunk: read whole
            yield self.get(typ, oid)
            return
        yield from self._verified_pieces(typ, oid, *record, piece)

    def tree(self, oid: bytes) -> TreeManifest:
        """A tree manifest, parsed as it is decompressed (a million-file tree's ~75 MB document
        is never whole) and checked against its id."""
        pieces = self.iter_decoded(TREE_MANIFEST, oid)
        try:
            return TreeManifest.from_pieces(pieces, to_oid(oid))
        except UnsafePathError:
            for _piece in pieces:
                pass  # a damaged tree is reported as damaged, not as what its damage reads as
            raise
        except NotCanonical:  # not written by mlvc's encoder: decoded whole
            return TreeManifest.decode(self.get(TREE_MANIFEST, oid), oid)

    def stored_form(self, typ: int, oid: bytes) -> tuple[int, bytes, int]:
        """(codec, payload, raw length) of an object as stored, for copying it elsewhere as is;
        checked against its id by decoding it piece by piece (never a whole tree at once)."""
        record = self._published_record(typ, oid)
        if record is None:
            for _key, c, payload, raw, _data, error in self.iter_stored([(typ, oid)]):
                if error is not None:
                    raise error
                return c, bytes(payload), raw
            raise ObjectNotFoundError(to_oid(oid), where=self.name)  # (iter_stored answers every key)
        c, payload, raw, _where = record
        if c == codec.DELTA:
            self.get(typ, oid)  # decoded with its base: both checked
            return c, bytes(payload), raw
        for _piece in self._verified_pieces(typ, oid, *record):
            pass
        return c, bytes(payload), raw

    def _published_record(self, typ: int, oid: bytes) -> tuple[int, bytes | memoryview, int, str] | None:
        """(codec, stored payload, raw length, where) of a published object of a type whose id
        is its bytes' digest; None while it is in a pack this process is writing."""
        if typ == FILE_MANIFEST:
            raise ValueError("a file manifest's id is its content's, not its own bytes' digest")
        loc = self._lookup(typ, oid)
        if isinstance(loc, Pending):
            return None
        no, c, off, stored, raw = loc
        where = f"pack {self._pack_names[no]} ({self.name})"
        if (err := record_size_error(typ, oid, stored, raw, where)) is not None:
            raise err
        payload = self._reader(no)(off, stored)
        if len(payload) != stored:
            raise CorruptObjectError(to_oid(oid), where, f"{stored} bytes", f"{len(payload)} bytes (truncated pack)")
        return c, payload, raw, where

    @staticmethod
    def _verified_pieces(typ: int, oid: bytes, c: int, payload, raw: int, where: str,
                         piece: int = 1 << 20) -> Iterator[bytes]:
        name = to_oid(oid)
        if c == codec.PLANES and typ != CHUNK:  # only chunks are written so: never a 128 MiB decode
            raise CorruptObjectError(name, where, "a manifest stored raw or zstd", "byte planes")
        h = hasher()
        pieces = codec.decode_pieces(c, payload, raw, piece)
        while True:
            try:
                part = next(pieces)
            except StopIteration:
                break
            except Exception:  # noqa: BLE001 - whatever the decoder makes of damaged bytes
                raise CorruptObjectError(name, where, "a decodable payload", "undecodable bytes") from None
            h.update(part)
            yield part
        if h.digest() != oid:
            raise CorruptObjectError(name, where, name, to_oid(h.digest()))

    def iter_stored(self, keys: Iterable[Key], gap: int | None = None, check_ids: bool = True,
                    decode: bool = True) -> Iterator[StoredItem]:
        """(key, codec, stored payload, raw length, data, error) for each key, in the order given,
        reading runs of records that lie together in one pack with one read.  Payloads are
        decoded and checked against their ids (`data`: the object's bytes); a failed one comes
        with its error and no data (and the others go on).
        `gap`: bytes between records a run may swallow (default: LOCAL_GAP locally, RANGE_GAP remotely).
        `decode=False`: payloads only (data None, sizes checked), for a caller that decodes them."""
        if gap is None:
            gap = LOCAL_GAP if self.backend.capabilities.local_files else RANGE_GAP
        todo = list(keys)
        self._ensure_loaded()
        i = 0
        while i < len(todo):
            key = todo[i]
            pending_payload = None
            try:
                loc = self._lookup(*key)
                while isinstance(loc, Pending):
                    pending_payload = loc.writer.read_back(loc.entry)
                    if pending_payload is not None:
                        break
                    loc = self._lookup(*key)  # published meanwhile: now in the index
            except ObjectNotFoundError as exc:
                yield key, 0, b"", 0, None, exc
                i += 1
                continue
            if isinstance(loc, Pending):
                assert pending_payload is not None  # the loop above only leaves a Pending with its bytes
                e = loc.entry
                yield (key, e.codec, pending_payload, e.raw, *(self._check(key, e.codec, pending_payload, e.raw,
                                                                            "a pack being written", check_ids)
                                                                if decode else (None, None)))
                i += 1
                continue
            no, _c, off, stored, raw = loc
            if (err := record_size_error(key[0], key[1], stored, raw, f"pack {self._pack_names[no]}")) is not None:
                yield key, 0, b"", 0, None, err  # before reading: no writer produces such a record
                i += 1
                continue
            run: list[tuple[Key, PackedLocation]] = [(key, loc)]
            end = off + stored
            j = i + 1
            while j < len(todo) and end - off < COALESCE_LIMIT:
                nkey = todo[j]
                nloc = self._table.get(*nkey)
                if nloc is None:
                    break
                nno, _nc, noff, nstored, nraw = nloc
                if nno != no or not (end + RECORD.size <= noff <= end + RECORD.size + gap):
                    break
                if record_size_error(nkey[0], nkey[1], nstored, nraw, "") is not None:
                    break
                run.append((nkey, nloc))
                end = noff + nstored
                j += 1
            where = f"pack {self._pack_names[no]} ({self.name})"
            buf = self._reader(no)(off, end - off)
            mv = memoryview(buf)
            for rkey, (_, rc, roff, rstored, rraw) in run:
                rel = roff - off
                payload = mv[rel:rel + rstored]
                if len(payload) != rstored:
                    yield rkey, rc, payload, rraw, None, CorruptObjectError(
                        to_oid(rkey[1]), where, f"{rstored} bytes", f"{len(payload)} bytes (truncated pack)")
                    continue
                yield (rkey, rc, payload, rraw, *(self._check(rkey, rc, payload, rraw, where, check_ids)
                                                  if decode else (None, None)))
            i = j

    def _check(self, key: Key, c: int, payload: bytes | memoryview, raw: int, where: str,
               check_id: bool = True) -> tuple[bytes | memoryview | None, MlvcError | None]:
        try:
            return decode_verify(key[0], key[1], c, payload, raw, where, check_id, base=self.base_reader()), None
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            return None, exc

    def iter_chunks(self, chunk_ids, check_ids: bool = True) -> Iterator[bytes | memoryview]:
        """Chunk bytes for a sequence of (oid, length), coalescing adjacent reads; each checked
        against its id unless the caller checks the whole file's (`check_ids=False`).

        Compressed chunks (byte planes, zstd), and with `check_ids` every chunk, are decoded
        and checked on `DECODE_THREADS` helper threads in batches of consecutive records
        (`DECODE_BATCH_BYTES`, `DECODE_BATCH_RECORDS`), at most `DECODE_AHEAD_BYTES` ahead of the
        chunk yielded (zstd, numpy and xxhash release the GIL): a restore of float checkpoints
        or of many small files decodes and hashes on every core while the caller writes, and
        waits on one task per batch, not per chunk.  Raw chunks left to the caller's check are
        yielded as they lie (views of the mapped pack), in order among the decoded ones."""
        where = f"the store {self.name}"
        # the queue, in order: (True, future of a decoded batch, its bytes) or (False, a record
        # yielded as it lies, its bytes)
        ahead: deque = deque()
        ahead_bytes = 0
        batch: list[tuple[Key, int, bytes | memoryview, int]] = []
        batch_bytes = 0
        pool = None

        def submit() -> None:
            nonlocal batch, batch_bytes, pool, ahead_bytes
            if pool is None:
                pool = _decode_pool()
            ahead.append((True, pool.submit(_decode_batch, batch, where, check_ids, self.base_reader()), batch_bytes))
            ahead_bytes += batch_bytes
            batch, batch_bytes = [], 0

        try:
            for key, c, payload, raw, _data, error in self.iter_stored(
                    ((CHUNK, oid) for oid, _ in chunk_ids), check_ids=check_ids, decode=False):
                # a batch takes compressed records, and raw ones that need their hash checked or
                # that come while one is open (a raw run with nothing to check is never queued)
                if error is None and (c != codec.RAW or check_ids or batch):
                    batch.append((key, c, payload, raw))
                    batch_bytes += raw
                    if batch_bytes >= DECODE_BATCH_BYTES or len(batch) >= DECODE_BATCH_RECORDS:
                        submit()
                else:
                    if batch:
                        submit()
                    ahead.append((False, (key, c, payload, raw, error), raw))
                    ahead_bytes += raw  # (pages of the mapped pack, held until yielded)
                # yield what is ready, in order: a raw chunk at once, a batch once decoded or
                # when the queue holds too much (a raw chunk behind a batch waits for it)
                while ahead and (not ahead[0][0] or ahead[0][1].done() or ahead_bytes > DECODE_AHEAD_BYTES):
                    is_batch, item, n = ahead.popleft()
                    ahead_bytes -= n
                    yield from self._settled(is_batch, item, where, check_ids)
            if batch:
                submit()
            while ahead:
                is_batch, item, n = ahead.popleft()
                ahead_bytes -= n
                yield from self._settled(is_batch, item, where, check_ids)
        finally:
            for is_batch, item, _n in ahead:
                if is_batch:
                    item.cancel()

    def _settled(self, is_batch: bool, item, where: str, check_ids: bool) -> Iterator[bytes | memoryview]:
        if is_batch:
            for key, data in item.result():
                if isinstance(data, CorruptObjectError):
                    self._raise_named(key, check_ids, data)
                yield data
            return
        key, c, payload, raw, error = item
        if error is not None:
            raise error
        try:
            data = decode_verify(CHUNK, key[1], c, payload, raw, where, check_ids, base=self.base_reader())
        except CorruptObjectError as exc:
            self._raise_named(key, check_ids, exc)
        yield data

    def _raise_named(self, key: Key, check_ids: bool, exc: CorruptObjectError) -> NoReturn:
        """Read a damaged chunk again the plain way, for the error that names its pack."""
        for *_rest, error in self.iter_stored([key], check_ids=check_ids):
            if error is not None:
                raise error from None
        raise exc

    # ---------------------------------------------------------------- write
    def _current_writer(self) -> PackWriter:
        if self._writer is None:
            try:
                self.scratch.mkdir(parents=True, exist_ok=True)
                self._writer = PackWriter(self.scratch, fsync=self.fsync and self.backend.capabilities.local_files)
            except OSError as exc:
                raise wrap_os_error(exc, f"a new pack for {self.name}") from exc
        return self._writer

    def _append(self, typ: int, oid: bytes, c: int, payload, raw: int) -> None:
        with self._lock:
            writer = self._current_writer()
            try:
                writer.append(oid, typ, c, payload, raw)
            except OSError as exc:
                raise wrap_os_error(exc, self.name) from exc
            self._pending[typ][oid] = writer
            self.stats["new_objects"] += 1
            self.stats["new_bytes"] += raw
            if typ == CHUNK:
                self.stats["new_chunk_bytes"] += raw
            self.stats["stored_bytes"] += len(payload)
            full = writer.size >= self.pack_size
            if full:
                self._writer = None
        if full:
            self._start_publish(writer)  # outside the lock: it may wait for a publish, which takes it
            self._merge_if_due()

    def put_chunk(self, data, oid: bytes | None = None, encoder=None, width: int = 0,
                  skip: int = 0, base: bytes | None = None,
                  base_bytes: Callable[[], bytes | None] | None = None,
                  delta_encoder: codec.ChunkEncoder | None = None) -> tuple[bytes, bool]:
        """Store a chunk unless present.  Returns (oid, newly stored).

        `data` may be a view the caller keeps alive and unchanged (it is written later,
        by the pack writer's thread); `encoder` is a per-file `codec.ChunkEncoder`;
        `width`, `skip`: the chunk holds floats of `width` bytes from byte `skip` on (the
        checkpoint layout says so), which the encoder may store as byte planes.
        `base`: the id of a chunk holding the same bytes of the same tensor in another version
        (the caller's choice); the chunk is stored as a `codec.DELTA` against it (encoded by
        `delta_encoder`) when that is smaller than its own encoding, the base is here, and its
        chain of deltas is shorter than `codec.MAX_DELTA_DEPTH`.  `base_bytes()` may offer the
        base's bytes from elsewhere (a sibling file on disk): used only if they hash to `base`.
        """
        if oid is None:
            oid = digest(data)
        if self.has(CHUNK, oid):
            return oid, False
        c, payload = encoder.encode(data, width, skip) if encoder is not None else codec.encode(data, self.level)
        if base is not None and delta_encoder is not None and base != oid:
            delta = self._delta_payload(data, base, base_bytes, delta_encoder, width, skip)
            if delta is not None and len(delta) < len(payload):
                c, payload = codec.DELTA, delta
        self._append(CHUNK, oid, c, payload, len(data))
        return oid, True

    def _delta_payload(self, data, base: bytes, base_bytes: Callable[[], bytes | None] | None,
                       encoder: codec.ChunkEncoder, width: int, skip: int) -> bytes | None:
        depth = self.delta_depth(base)
        if depth is None or depth >= codec.MAX_DELTA_DEPTH:
            return None
        plain = base_bytes() if base_bytes is not None else None
        if plain is None or len(plain) != len(data) or digest(plain) != base:
            try:
                plain = self.get(CHUNK, base)
            except MlvcError:
                return None  # no base to build on: stored on its own
        if len(plain) != len(data):
            return None
        return codec.encode_delta(data, plain, base, encoder, width, skip)

    def record_head(self, oid: bytes) -> tuple[int, bytes | None]:
        """(codec, base id or None) of a chunk's record here (ObjectNotFoundError if none)."""
        loc = self._lookup(CHUNK, oid)
        while isinstance(loc, Pending):
            payload = loc.writer.read_back(loc.entry)
            if payload is not None:
                return loc.entry.codec, codec.delta_base(payload) if loc.entry.codec == codec.DELTA else None
            loc = self._lookup(CHUNK, oid)
        no, c, off, stored, _raw = loc
        if c != codec.DELTA:
            return c, None
        try:
            return c, codec.delta_base(self._reader(no)(off, min(stored, codec.DELTA_HEAD)))
        except ValueError:
            raise CorruptObjectError(to_oid(oid), f"pack {self._pack_names[no]} ({self.name})",
                                     "a delta naming its base", "a truncated record") from None

    def delta_depth(self, oid: bytes) -> int | None:
        """How many deltas lie between a chunk's record here and a whole one (0: it is whole);
        None if the chunk or a base on the way is missing, or the chain is longer than any
        writer makes (a reader refuses it)."""
        chain: list[bytes] = []
        cur = oid
        while True:
            known = self._depths.get(cur)
            if known is not None:
                depth = known
                break
            try:
                _c, base = self.record_head(cur)
            except MlvcError:
                return None
            if base is None:
                depth = 0
                break
            chain.append(cur)
            if len(chain) > codec.MAX_DELTA_DEPTH or base in chain:
                return None
            cur = base
        for back in reversed(chain):
            depth += 1
            self._depths[back] = depth
        if not chain:
            self._depths[oid] = depth
        return self._depths[oid]

    def delta_bases(self, oids: Iterable[bytes]) -> dict[bytes, bytes]:
        """{chunk id: the base its record here names} for the given chunks stored as deltas (the
        codec is in the index: only the records of deltas are read, in pack order, runs of them
        with one request on a remote).  CorruptObjectError for a delta too short to name one."""
        self._ensure_loaded()
        out: dict[bytes, bytes] = {}
        published: list[tuple[PackedLocation, bytes]] = []
        for oid in oids:
            loc = self._table.get(CHUNK, oid)
            if loc is not None:
                if loc[1] == codec.DELTA:
                    published.append((loc, oid))
            elif oid in self._pending[CHUNK]:
                try:
                    _c, base = self.record_head(oid)
                except ObjectNotFoundError:
                    continue
                if base is not None:
                    out[oid] = base
        published.sort(key=lambda t: (t[0][0], t[0][2]))
        for (_typ, oid), _c, payload, _raw, _data, error in self.iter_stored(
                [(CHUNK, oid) for _loc, oid in published], decode=False):
            if isinstance(error, ObjectNotFoundError):
                continue  # gone meanwhile (a concurrent gc): nothing of it to keep
            if error is not None:
                raise error
            try:
                out[oid] = codec.delta_base(payload)
            except ValueError:
                raise CorruptObjectError(to_oid(oid), self.name, "a delta naming its base",
                                         "a truncated record") from None
        return out

    def with_bases(self, keys: Iterable[Key]) -> set[Key]:
        """`keys` and, for each chunk stored here as a delta, its base, and the base's base, ...:
        what must stay for these objects to be read (gc keeps it, a transfer sends it)."""
        out = set(keys)
        todo = [oid for typ, oid in out if typ == CHUNK]
        while todo:
            found = self.delta_bases(todo)
            todo = []
            for base in found.values():
                if (CHUNK, base) not in out:
                    out.add((CHUNK, base))
                    todo.append(base)
        return out

    def put_stored(self, typ: int, oid: bytes, codec_id: int, payload, raw_len: int, *, force: bool = False) -> bool:
        """Store an object already in its stored form (a verified copy): no recompression.
        `force`: even if present (gc copying it out of a pack about to go), or not asked again (a
        transfer asked when it planned the copy)."""
        if not force and self.has(typ, oid):
            return False
        self._append(typ, oid, codec_id, bytes(payload) if isinstance(payload, memoryview) else payload, raw_len)
        return True

    def put_pieces(self, typ: int, pieces) -> bytes:
        """Store an object given as pieces of its bytes, hashed and compressed as they come
        (never joined: a million-file tree is ~75 MB); returns its id."""
        h = hasher()
        enc = codec.StreamEncoder(self.level)
        for piece in pieces:
            h.update(piece)
            enc.update(piece)
        oid = h.digest()
        if not self.has(typ, oid):
            c, payload = enc.finish()
            self._append(typ, oid, c, payload, enc.raw_len)
        return oid

    def put_object(self, typ: int, oid: bytes, body: bytes) -> bool:
        if self.has(typ, oid):
            return False
        c, payload = codec.encode(body, self.level)
        self._append(typ, oid, c, payload, len(body))
        return True

    def close(self) -> None:
        self.abort()
        if self._publisher is not None:
            self._publisher.shutdown(wait=True)
            self._publisher = None
        self._close_readers()
        self.complete.close()

    def __enter__(self) -> "PackStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- removal (gc)
    def remove_pack(self, pack: str) -> None:
        """Delete a pack: index first (so no index ever names a missing pack), then the pack.
        Completeness marks are cleared first: what they promised may be going."""
        self.complete.clear()
        self.backend.delete(f"{PACKS}{pack}.idx")
        self.backend.delete(f"{PACKS}{pack}.pack")


    # ---------------------------------------------------------------- the cache's upkeep (`shared_cache`)
    def host_lock(self, exclusive: bool = False) -> AbstractContextManager[None]:
        """The cache's lock between processes of this machine (see `shared_cache`)."""
        return shared_cache.host_lock(self.backend, self.name, exclusive)

    def sweep_tmp(self, now: float | None = None) -> int:
        """Remove scratch files left by processes that died (see `shared_cache`)."""
        return shared_cache.sweep_scratch(self.scratch, now)


if TYPE_CHECKING:  # mypy checks that a store (the cache or a remote) reads objects as ObjectReader says
    _AS_READER: type[ObjectReader] = PackStore

__all__ = ["PackStore", "Role", "wrap_os_error", "CHUNK", "FILE_MANIFEST", "TREE_MANIFEST"]
