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
them) -> `PackPublisher` (publishing new ones) -> `ObjectReads` (objects read and verified, the
bases of deltas: `mlvc.store.objectreads`) -> `PackStore` (its role, writes, restores' reads,
decoded ahead by `mlvc.store.decodeahead`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .. import codec
from ..errors import CorruptObjectError, MlvcError
from ..hashing import digest, hasher
from . import shared_cache
from .backend import Backend
from .decodeahead import decode_ahead
from .filebases import FileBases
from .objectreads import ObjectReads
from .packindex import PACKS
from .packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST, PackWriter
from .publisher import wrap_os_error
from .state import CompleteRoots
from .types import Key, ObjectReader

DEFAULT_PACK_SIZE = 32 * 1024 * 1024


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


class PackStore(ObjectReads):
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

    def describe(self) -> str:
        return self.name

    # ---------------------------------------------------------------- read
    def iter_chunks(self, chunk_ids: Iterable[tuple[bytes, int]],
                    check_ids: bool = True, files: FileBases | None = None) -> Iterator[bytes | memoryview]:
        """Chunk bytes for a sequence of (oid, length), coalescing adjacent reads; each checked
        against its id unless the caller checks the whole file's (`check_ids=False`).  Decoded
        ahead of the caller on helper threads (`mlvc.store.decodeahead`).  `files`: local files
        that may hold the plaintexts of deltas' bases (`mlvc.store.filebases`)."""
        def reraise(key: Key, exc: CorruptObjectError) -> NoReturn:
            self._raise_named(key, check_ids, exc)
        stored = self.iter_stored(((CHUNK, oid) for oid, _ in chunk_ids), check_ids=check_ids, decode=False)
        return decode_ahead(stored, f"the store {self.name}", check_ids, self.base_reader(files=files), reraise,
                            files.read if files is not None else None)

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

    def _append(self, typ: int, oid: bytes, c: int, payload: codec.Buffer, raw: int) -> None:
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

    def put_chunk(self, data: codec.Buffer, oid: bytes | None = None, encoder: codec.ChunkEncoder | None = None,
                  width: int = 0,
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
            delta = self.delta_payload(data, base, base_bytes, delta_encoder, width, skip)
            if delta is not None and len(delta) < len(payload):
                c, payload = codec.DELTA, delta
        self._append(CHUNK, oid, c, payload, len(data))
        return oid, True

    def delta_payload(self, data: codec.Buffer, base: bytes, base_bytes: Callable[[], bytes | None] | None,
                      encoder: codec.ChunkEncoder, width: int, skip: int) -> bytes | None:
        """A `codec.DELTA` payload of `data` against the chunk `base` (its bytes from `base_bytes()` when
        they hash to it, else read here), or None when no delta may be made: the base is not here, is
        of another size, or its chain is already `codec.MAX_DELTA_DEPTH` deep.  Stored with
        `put_stored` by a caller that chose it (`put_chunk` chooses the smaller itself)."""
        depth = self.delta_depth(base)
        if depth is None or depth >= codec.MAX_DELTA_DEPTH:
            return None
        plain: codec.Bytes | None = base_bytes() if base_bytes is not None else None
        if plain is None or len(plain) != len(data) or digest(plain) != base:
            try:
                plain = self._get(CHUNK, base, ())
            except MlvcError:
                return None  # no base to build on: stored on its own
        if len(plain) != len(data):
            return None
        return codec.encode_delta(data, plain, base, encoder, width, skip)

    def put_stored(self, typ: int, oid: bytes, codec_id: int, payload: codec.Buffer, raw_len: int, *,
                   force: bool = False) -> bool:
        """Store an object already in its stored form (a verified copy): no recompression.
        `force`: even if present (gc copying it out of a pack about to go), or not asked again (a
        transfer asked when it planned the copy)."""
        if not force and self.has(typ, oid):
            return False
        self._append(typ, oid, codec_id, bytes(payload) if isinstance(payload, memoryview) else payload, raw_len)
        return True

    def put_pieces(self, typ: int, pieces: Iterable[bytes]) -> bytes:
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

    def __exit__(self, *exc: object) -> None:
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
