"""Reading objects from a store, verified: `ObjectReads`, between `PackPublisher` and `PackStore`.

Where an object is (published, or in a pack this process is still writing), its bytes checked
against its id (`get`, `tree`, `iter_decoded`, `stored_form`), runs of records read with one
request (`iter_stored`), and the delta side: what base a chunk's record names (`record_head`,
`delta_bases`), how deep its chain is (`delta_depth`), the bases a set of objects needs to be
read (`with_bases`), and the reader `decode_verify` reads a delta's base with (`base_reader`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path

from .. import codec
from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, Remedy, UnsafePathError
from ..hashing import digest, hasher, to_oid
from ..objects import NotCanonical, TreeManifest
from . import smallchunks
from .backend import Backend
from .filebases import FileBases
from .packindex import RESCAN_INTERVAL
from .packs import CHUNK, FILE_MANIFEST, RECORD, TREE_MANIFEST, record_size_error
from .publisher import PackPublisher
from .records import COALESCE_LIMIT, BaseRead, decode_verify
from .types import Key, PackedLocation, Pending, StoredItem

RANGE_GAP = 256 * 1024  # remote reads also swallow gaps up to this size (fewer requests)
REREADS = 8  # packs a read finds removed under it in a row (gc beside it) before it gives up
LOCAL_GAP = 4096  # a mapped read swallows small gaps (a small file's manifest between its chunk and
# the next file's): a view costs nothing for the bytes it skips, a run per record did


def _removed_under(oid: bytes, where: str) -> CorruptObjectError:
    return CorruptObjectError(to_oid(oid), where, "a pack that stays", f"{REREADS} packs removed under the read")


class ObjectReads(PackPublisher):
    """The objects of a backend's packs (`PackPublisher`: those visible and those this process
    writes), read and verified."""

    def __init__(self, backend: Backend, *, name: str, index_cache: Path | None = None,
                 merged_dir: Path | None = None, jobs: int = 1) -> None:
        super().__init__(backend, name=name, index_cache=index_cache, merged_dir=merged_dir, jobs=jobs)
        self._depths: dict[bytes, int] = {}  # chunk id -> deltas between its record and a whole one

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
        """An object's raw bytes, verified against its id (a chunk read as a view of a mapped pack
        is copied: restores read chunks through `iter_chunks`, as views)."""
        data = self._get(typ, oid, ())
        return data if isinstance(data, bytes) else bytes(data)

    def base_reader(self, chain: tuple[bytes, ...] = (), files: FileBases | None = None) -> BaseRead:
        """What `decode_verify` reads a delta's base with: the base's verified bytes, read from
        this store; a base that is a delta itself is read the same way, at most
        `codec.MAX_DELTA_DEPTH` deltas deep.  A cycle or a longer chain is a corrupt record;
        a missing base is a missing object (exit 7) that names the delta needing it.
        `files`: local files that may hold a base's plaintext (checked against its id), read
        before any record is decoded, at every level of the chain."""
        def read(oid: bytes, base_oid: bytes) -> bytes | memoryview:
            if files is not None and (plain := files.read(base_oid)) is not None:
                return plain
            seen = chain + (oid,)
            if base_oid in seen:
                raise CorruptObjectError(to_oid(oid), self.name, "a chain of deltas ending in a whole record",
                                         f"a cycle through {to_oid(base_oid)}")
            if len(seen) > codec.MAX_DELTA_DEPTH:
                raise CorruptObjectError(to_oid(oid), self.name,
                                         f"a chain of at most {codec.MAX_DELTA_DEPTH} deltas", "a longer one")
            try:
                return self._get(CHUNK, base_oid, seen, files)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(f"{to_oid(base_oid)} (the base of delta {to_oid(oid)})", where=self.name,
                                          remedy=Remedy.REPAIR_OR_FETCH) from None
        return read

    def _read_pack(self, no: int, offset: int, length: int) -> bytes | memoryview | None:
        """Bytes of pack `no`, or None when a gc (or repack) beside this reader removed the
        pack since this index was loaded: it published the pack's live objects elsewhere first,
        so the listing is read again and the caller looks them up anew.  A pack still listed
        whose file is missing is damage (CorruptObjectError, as `verify` reports it)."""
        names = self._pack_names
        if no >= len(names):
            return None  # numbered before another thread's refresh saw packs removed: looked up again
        name = names[no]
        try:
            return self._reader(no)(offset, length)
        except IndexError:
            return None  # (the same, between the two looks)
        except CorruptObjectError:
            self.refresh()
            if name in self._pack_no:
                raise
            return None

    def _where(self, no: int) -> str:
        names = self._pack_names  # (a pack number from before another thread's refresh may be past its end)
        return f"pack {names[no] if no < len(names) else '(removed)'} ({self.name})"

    def _get(self, typ: int, oid: bytes, chain: tuple[bytes, ...],
             files: FileBases | None = None) -> bytes | memoryview:
        record = self._record(typ, oid)
        while isinstance(record, Pending):
            writer, e = record
            pending_payload = writer.read_back(e)
            if pending_payload is not None:
                return decode_verify(typ, oid, e.codec, pending_payload, e.raw, "a pack being written",
                                     base=self.base_reader(chain, files))
            record = self._record(typ, oid)  # published meanwhile: now in the index
        c, payload, raw, where = record
        return decode_verify(typ, oid, c, payload, raw, where, base=self.base_reader(chain, files))

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
            self._get(typ, oid, ())  # decoded with its base: both checked
            return c, bytes(payload), raw
        for _piece in self._verified_pieces(typ, oid, *record):
            pass
        return c, bytes(payload), raw

    def _published_record(self, typ: int, oid: bytes) -> tuple[int, bytes | memoryview, int, str] | None:
        """(codec, stored payload, raw length, where) of a published object of a type whose id
        is its bytes' digest; None while it is in a pack this process is writing."""
        if typ == FILE_MANIFEST:
            raise ValueError("a file manifest's id is its content's, not its own bytes' digest")
        record = self._record(typ, oid)
        return None if isinstance(record, Pending) else record

    def _record(self, typ: int, oid: bytes) -> Pending | tuple[int, bytes | memoryview, int, str]:
        """(codec, stored payload, raw length, where) of an object as its pack holds it, its size
        checked before it is read and its length after; or where it is pending in a pack this
        process writes.  A pack that a gc removed under the read is looked up again (at most
        REREADS times in a row)."""
        for _attempt in range(REREADS):
            loc = self._lookup(typ, oid)
            if isinstance(loc, Pending):
                return loc
            no, c, off, stored, raw = loc
            where = self._where(no)
            if (err := record_size_error(typ, oid, stored, raw, where)) is not None:
                raise err  # before reading: a declared 4 GiB must not be fetched or allocated
            if (payload := self._read_pack(no, off, stored)) is not None:
                break
        else:
            raise _removed_under(oid, self.name)
        if len(payload) != stored:
            raise CorruptObjectError(to_oid(oid), where, f"{stored} bytes", f"{len(payload)} bytes (truncated pack)")
        return c, payload, raw, where

    @staticmethod
    def _verified_pieces(typ: int, oid: bytes, c: int, payload: bytes | memoryview, raw: int, where: str,
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
        rereads = 0
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
            if (err := record_size_error(key[0], key[1], stored, raw, self._where(no))) is not None:
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
            where = self._where(no)
            buf = self._read_pack(no, off, end - off)
            if buf is None:  # the pack went (a gc beside this read): these keys are looked up again
                rereads += 1
                if rereads >= REREADS:
                    raise _removed_under(key[1], self.name)
                continue
            rereads = 0  # (a bound on removals in a row, not on those a long read meets)
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

    def iter_small_chunks(self, oids: Iterable[bytes]) -> Iterator[tuple[bytes | memoryview | None,
                                                                        MlvcError | None]]:
        """(bytes, None) or (None, the error) for each chunk of `oids`, in order, each checked
        against its id: `iter_stored`, with the zstd frames of a batch of records decoded in one
        call on a helper thread while the caller handles the batch before (`smallchunks`).  For
        many small chunks (a restore of small files, each one chunk); memory is bounded by two
        batches (`smallchunks.BATCH_BYTES`)."""
        stored = self.iter_stored(((CHUNK, oid) for oid in oids), decode=False)
        ahead: Future[list[bytes | memoryview | None]] | None = None
        ahead_items: list[StoredItem] = []
        while True:
            items: list[StoredItem] = []
            size = 0
            for item in stored:
                items.append(item)
                size += item[3]
                if len(items) >= smallchunks.BATCH_RECORDS or size >= smallchunks.BATCH_BYTES:
                    break
            if items:
                batch = [(c, payload, raw) for _key, c, payload, raw, _data, error in items if error is None]
                future = smallchunks.pool().submit(smallchunks.decode_batch, batch)
            if ahead is not None:
                yield from self._checked_batch(ahead_items, ahead.result())
            if not items:
                return
            ahead, ahead_items = future, items

    def _checked_batch(self, items: list[StoredItem], decoded: list[bytes | memoryview | None]
                       ) -> Iterator[tuple[bytes | memoryview | None, MlvcError | None]]:
        done = iter(decoded)
        for key, _c, _payload, raw, _data, error in items:
            if error is not None:
                yield None, error
                continue
            data = next(done)
            if data is not None and len(data) == raw and digest(data) == key[1]:
                yield data, None
                continue
            for _key, _c2, _p2, _raw2, data, error in self.iter_stored([key]):  # the general way, which
                yield data, error  # names the damage (and decodes what the batch could not: a delta)

    def _check(self, key: Key, c: int, payload: bytes | memoryview, raw: int, where: str,
               check_id: bool = True) -> tuple[bytes | memoryview | None, MlvcError | None]:
        # A whole raw or zstd chunk whose bytes match its id (most records, each small file's one)
        # is done here: a restore of many small files paid ~4 us a record for the general path.
        # Anything else, and any doubt, goes through `decode_verify`, which names what is wrong.
        if key[0] == CHUNK and c in (codec.RAW, codec.ZSTD) \
                and record_size_error(CHUNK, key[1], len(payload), raw, where) is None:
            try:
                data = codec.decode(c, payload, raw)
            except Exception:  # noqa: BLE001 - decode_verify below says what
                data = None
            if data is not None and len(data) == raw and (not check_id or digest(data) == key[1]):
                return data, None
        try:
            return decode_verify(key[0], key[1], c, payload, raw, where, check_id, base=self.base_reader()), None
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            return None, exc

    def stored_delta(self, oid: bytes) -> codec.Bytes | None:
        """The stored payload of a published chunk whose record here is a delta (None for any
        other, or one being written), unchecked: what `FileBases.add_derived` decodes a base
        from, checking the result against the base's id."""
        try:
            record = self._published_record(CHUNK, oid)
        except MlvcError:
            return None
        if record is None or record[0] != codec.DELTA:
            return None
        return record[1]

    def record_head(self, oid: bytes) -> tuple[int, bytes | None]:
        """(codec, base id or None) of a chunk's record here (ObjectNotFoundError if none)."""
        for _attempt in range(REREADS):
            loc = self._lookup(CHUNK, oid)
            while isinstance(loc, Pending):
                payload = loc.writer.read_back(loc.entry)
                if payload is not None:
                    return loc.entry.codec, codec.delta_base(payload) if loc.entry.codec == codec.DELTA else None
                loc = self._lookup(CHUNK, oid)
            no, c, off, stored, _raw = loc
            if c != codec.DELTA:
                return c, None
            where = self._where(no)
            if (head := self._read_pack(no, off, min(stored, codec.DELTA_HEAD))) is None:
                continue  # the pack went (a gc beside this read): looked up again
            try:
                return c, codec.delta_base(head)
            except ValueError:
                raise CorruptObjectError(to_oid(oid), where, "a delta naming its base", "a truncated record") from None
        raise _removed_under(oid, self.name)

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
        out.update((CHUNK, base) for base in self.delta_closure([oid for typ, oid in out if typ == CHUNK]).values())
        return out

    def delta_closure(self, oids: Iterable[bytes], held: Callable[[bytes], bool] | None = None) -> dict[bytes, bytes]:
        """{delta: the base it names} for the chunks `oids` stored here as deltas, their bases,
        the bases' bases, ...; a base `held` says is had elsewhere (a transfer's destination
        holds it) is not followed further."""
        seen = set(oids)
        base_of: dict[bytes, bytes] = {}
        todo = list(seen)
        while todo:
            found = self.delta_bases(todo)
            todo = []
            for oid, base in found.items():
                base_of[oid] = base
                if base not in seen:
                    seen.add(base)
                    if held is None or not held(base):
                        todo.append(base)
        return base_of
