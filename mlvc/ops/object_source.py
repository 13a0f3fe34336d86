"""Where reads of stored objects come from: the local cache, else the default remote.

`ObjectSource` is the one place the read API (`mlvc.open/read`, the `mlvc`
fsspec filesystem, `mlvc.torch.load_tensor`) touches the store layer.  An
object the cache lacks is located in the remote's pack indexes and fetched
with ranged reads of just its bytes (adjacent objects coalesced into one
request), verified against its id, and kept in the cache so the next read is
local.  Nothing else is downloaded: one tensor of a 10 GB checkpoint costs the
index listing plus the ranges of the chunks that hold the tensor.

Store-layer calls (the whole surface): the cache ``repo.store`` (a PackStore):
``has``, ``get``, ``iter_chunks``, ``put_stored``, ``commit``, ``abort``, ``host_lock``,
``pack_size``; the remote ``repo.remote_store(name)`` -> PackStore: ``refresh``,
``location``, ``iter_stored(keys, gap=)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..codec import DELTA, encode
from ..errors import MlvcError, ObjectNotFoundError, RemoteNotFoundError
from ..hashing import to_oid
from ..objects import FileManifest, TreeManifest
from ..store.packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST
from ..store.readers import FirstThatHas
from ..store.records import entries_in_runs
from ..store.types import Key, ObjectReader, StoredItem
from .chunked_reader import ChunkedFile

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from ..repo import Repo
    from ..store.packstore import PackStore

RANGE_GAP = 64 * 1024  # read across gaps up to this size rather than issue another request
READ_AHEAD_AFTER = 256 * 1024  # a sequential run this long turns read-ahead on
READ_AHEAD_MIN = 1 << 20
READ_AHEAD_MAX = 32 << 20


class _Wanted(NamedTuple):
    """An object to fetch and its place in its pack (an `Extent` for `entries_in_runs`)."""

    key: Key
    offset: int
    stored: int


@dataclass
class SourceStats:
    """What reads cost beyond the cache: remote requests (index listing and downloads, ranges)."""

    requests: int = 0
    bytes_downloaded: int = 0
    objects_fetched: int = 0


class ObjectSource:
    """Verified objects of one repository, from its cache or (when missing) a remote.

    `remote`: a configured remote's name (None: the default one).  `cache`: keep
    fetched objects in the local cache (published by `close`).
    """

    def __init__(self, repo: Repo, remote: str | None = None, *, cache: bool = True):
        self.repo = repo
        self.store = repo.store
        self.remote_name = remote
        self.cache = cache
        self.stats = SourceStats()
        self._remote: PackStore | None = None  # the remote's store, opened on the first miss
        self._jobs = 1
        self._held: dict[tuple[int, bytes], bytes] = {}  # fetched objects when not caching
        self._manifests: dict[bytes, FileManifest] = {}  # a few decoded file manifests
        self._dirty = False
        # Publish fetched objects before the cache's pack writer fills: the cache publishes a
        # full pack on a background thread, and reading one of its objects back meanwhile can
        # hit the pack's closed file (a race inside the cache's PackStore).
        self._publish_every = max(1, self.store.pack_size // 2)
        self._unpublished = 0
        # the cache, else the remote through it: what the cache lacks is fetched into it (or held)
        self._reads = FirstThatHas([self.store], primary=self.store, rescan=False, fetch=self._fetch_one)

    # ------------------------------------------------------------------ remote
    def _remote_store(self, missing: bytes) -> PackStore:
        if self._remote is None:
            try:
                rdef, rstore = self.repo.remote_store(self.remote_name)
            except RemoteNotFoundError as exc:
                raise ObjectNotFoundError(
                    to_oid(missing), "the cache",
                    hint=f"{exc} ({exc.hint})" if exc.hint else str(exc)) from None
            self._jobs = max(1, rdef.default_jobs() * 2)  # ranged reads are small: more in flight
            self.stats.requests += 1 + rstore.refresh()  # the listing, and indexes not cached yet
            self._remote = rstore
        return self._remote

    def _have(self, typ: int, oid: bytes) -> bool:
        return (typ, oid) in self._held or self.store.has(typ, oid)

    def _fetch(self, keys: list[tuple[int, bytes]]) -> None:
        """Download the objects `keys` (all missing from the cache) with coalesced ranged reads."""
        rstore = self._remote_store(keys[0][1])
        by_pack: dict[str, list[_Wanted]] = {}
        for typ, oid in dict.fromkeys(keys):
            try:
                loc = rstore.location(typ, oid)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(to_oid(oid), f"the cache and {rstore.describe()}",
                                          hint="run `mlvc push` on a machine that has it") from None
            by_pack.setdefault(loc.pack, []).append(_Wanted((typ, oid), loc.offset, loc.stored))
        runs = [run for pack in sorted(by_pack) for run in entries_in_runs(by_pack[pack], gap=RANGE_GAP)]

        def get(run: list[_Wanted]) -> list[StoredItem]:
            return list(rstore.iter_stored([w.key for w in run], gap=RANGE_GAP))

        if len(runs) == 1:
            results = [get(runs[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(len(runs), self._jobs)) as pool:
                results = list(pool.map(get, runs))
        for run, got in zip(runs, results, strict=True):
            self.stats.requests += 1
            self.stats.bytes_downloaded += max(w.offset + w.stored for w in run) - run[0].offset
            for key, c, payload, raw, body, error in got:
                if error is not None:
                    raise error
                self.stats.objects_fetched += 1
                if self.cache:
                    if c == DELTA:  # its base may be missing here: the cache keeps it whole
                        assert body is not None  # decoded (with its base, from the remote) and verified
                        c, whole = encode(body, self.store.level)
                        data = bytes(whole)
                    else:
                        data = bytes(payload)
                    self.store.put_stored(key[0], key[1], c, data, raw)
                    self._dirty = True
                    self._unpublished += len(data)
                    if self._unpublished >= self._publish_every:
                        self.flush()
                else:
                    assert body is not None  # decoded and verified
                    self._held[key] = bytes(body)

    # ------------------------------------------------------------------ reads
    def read_object(self, typ: int, oid: bytes) -> bytes:
        """An object's bytes, verified against its id."""
        held = self._held.get((typ, oid))
        if held is not None:
            return held
        return self._reads.get(typ, oid)

    def _fetch_one(self, typ: int, oid: bytes) -> bytes:
        """An object the cache lacks, fetched from the remote (kept in the cache, or held)."""
        self._fetch([(typ, oid)])
        held = self._held.get((typ, oid))
        return held if held is not None else self.store.get(typ, oid)

    get = read_object  # the store's name, so readers written for the cache (diff, ChunkedFile) take a source

    def tree(self, oid: bytes) -> TreeManifest:
        return TreeManifest.decode(self.read_object(TREE_MANIFEST, oid), oid)

    def file_manifest(self, file_id: bytes) -> FileManifest:
        fm = self._manifests.get(file_id)
        if fm is None:
            fm = FileManifest.decode(self.read_object(FILE_MANIFEST, file_id), file_id)
            if len(self._manifests) >= 16:
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[file_id] = fm
        return fm

    def file_chunks(self, file_id: bytes) -> tuple[tuple[bytes, int], ...]:
        """The (chunk id, length) list of a file."""
        return self.file_manifest(file_id).chunks

    def iter_chunks(self, chunk_ids: Iterable[tuple[bytes, int]]) -> Iterator[bytes | memoryview]:
        """Verified bytes of each (chunk id, length), in order; missing ones fetched first in one batch.

        (The interface `ChunkedFile` reads through, like the cache's own `iter_chunks`.)
        """
        ids = list(chunk_ids)
        missing = [(CHUNK, cid) for cid, _ in ids if not self._have(CHUNK, cid)]
        if missing:
            self._fetch(missing)
        i = 0
        while i < len(ids):
            if (CHUNK, ids[i][0]) in self._held:
                yield self._held[(CHUNK, ids[i][0])]
                i += 1
                continue
            j = i
            while j < len(ids) and (CHUNK, ids[j][0]) not in self._held:
                j += 1
            yield from self.store.iter_chunks(ids[i:j])
            i = j

    def open_file(self, file_id: bytes, name: str = "") -> ChunkedFile:
        """A seekable, read-only raw file over a stored file (only the chunks a read touches are
        fetched; sequential reads fetch ahead in growing windows)."""
        return _ReadAheadFile(self, file_id, self.file_chunks(file_id), name=name)

    def prefetch(self, file_id: bytes, ranges: Iterable[tuple[int, int]]) -> int:
        """Fetch, in one batch of parallel ranged reads, the chunks of a file that cover the
        (offset, length) `ranges` and that the cache lacks; returns how many were fetched."""
        chunks = self.file_chunks(file_id)
        starts, pos = [], 0
        for _, n in chunks:
            starts.append(pos)
            pos += n
        return self.prefetch_spans(chunks, starts, pos, ranges)

    def prefetch_spans(self, chunks: Sequence[tuple[bytes, int]], starts: list[int], size: int,
                       ranges: Iterable[tuple[int, int]]) -> int:
        """`prefetch` over a chunk list whose start offsets the caller already has."""
        import bisect

        wanted: dict[bytes, None] = {}
        for off, length in ranges:
            if length <= 0 or off >= size:
                continue
            first = bisect.bisect_right(starts, off) - 1
            last = bisect.bisect_right(starts, min(size, off + length) - 1) - 1
            for cid, _ in chunks[first:last + 1]:
                if not self._have(CHUNK, cid):
                    wanted[cid] = None
        if wanted:
            self._fetch([(CHUNK, cid) for cid in wanted])
        return len(wanted)

    def fetch_missing(self, keys: Iterable[Key]) -> int:
        """Fetch, in one batch of parallel ranged reads, the (type, id) objects the cache lacks;
        returns how many were fetched."""
        wanted = [key for key in dict.fromkeys(keys) if not self._have(*key)]
        if wanted:
            self._fetch(wanted)
        return len(wanted)

    def release(self, keys: Iterable[Key]) -> None:
        """Forget fetched objects held in memory (`cache=False`) once they are written out."""
        for key in keys:
            self._held.pop(key, None)

    # ------------------------------------------------------------------ lifetime
    def flush(self) -> None:
        """Publish the objects fetched so far into the cache."""
        if self._dirty:
            with self.store.host_lock():  # shared, as fetch: a concurrent gc waits
                self.store.commit()
            self._dirty = False
            self._unpublished = 0

    def close(self) -> None:
        try:
            self.flush()
        except MlvcError:
            self.store.abort()  # the cache is an optimisation here: the read itself succeeded
        self._held.clear()
        if self._remote is not None:
            self._remote.close()
            self._remote = None

    def __enter__(self) -> "ObjectSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ReadAheadFile(ChunkedFile):
    """A ChunkedFile that, on reads continuing where the previous one ended, fetches the missing
    chunks of a window ahead in one batch (after READ_AHEAD_AFTER bytes in a row; 1 MiB, doubling up
    to READ_AHEAD_MAX): a streaming
    reader costs a few large ranged reads instead of one request per chunk.  Random reads
    (a checkpoint's layout, one tensor) fetch only what they touch."""

    def __init__(self, source: ObjectSource, file_id: bytes, chunks: Iterable[tuple[bytes, int]],
                 name: str = "") -> None:
        super().__init__(source, chunks, name=name)
        self._source = source
        self._file_id = file_id
        self._next = -1  # where the previous read ended
        self._run = 0  # bytes read sequentially up to there
        self._window = READ_AHEAD_MIN
        self._ahead = 0  # read-ahead has fetched up to here

    def readinto(self, b: WriteableBuffer) -> int:
        wanted = memoryview(b).nbytes
        if self._pos != self._next:
            self._run, self._window, self._ahead = 0, READ_AHEAD_MIN, 0
        elif self._run >= READ_AHEAD_AFTER and self._pos < self._size and self._pos + wanted > self._ahead:
            span = max(wanted, self._window)
            self._source.prefetch_spans(self._chunks, self._starts, self._size, [(self._pos, span)])
            self._ahead = self._pos + span
            self._window = min(self._window * 2, READ_AHEAD_MAX)
        n = super().readinto(b)
        self._run += n
        self._next = self._pos
        return n

    def readall(self) -> bytes:
        """The rest of the file in one read (RawIOBase would loop over 8 KiB reads)."""
        buf = bytearray(max(0, self._size - self._pos))
        view, done = memoryview(buf), 0
        while done < len(buf):  # in slices, so the chunk cache holds one slice, not the whole file
            n = self.readinto(view[done:done + READ_AHEAD_MAX])
            if not n:
                break
            done += n
        return bytes(buf[:done])


if TYPE_CHECKING:  # mypy checks that a source reads objects as the cache and a remote do
    _AS_READER: type[ObjectReader] = ObjectSource

__all__ = ["ObjectSource", "SourceStats"]
