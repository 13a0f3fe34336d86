"""Where each object of a store lies: (type, id) -> (pack number, codec, offset, stored, raw).

A store may hold millions of objects; a Python dict of them costs ~250 bytes each.
Here they stay in their packed binary form (~36 bytes each):

* a `PackTable` is one pack's index exactly as published (`packs.encode_index`:
  fixed-width entries sorted by (id, type));
* a `MergedTable` is many packs' entries merged into one sorted run (as git's
  multi-pack-index), kept in a local file named by its checksum and memory-mapped.

Lookups go through a fan-out array on the first id bits, then a C-speed `find` of
the 17-byte key (id + type) inside that bucket, accepting only hits at an entry
boundary.  `ObjectTable` holds one merged run plus the packs published since; once
they pile up (`MERGE_AT`), they are merged into a new run, so a lookup looks at a
bounded number of tables and memory stays ~flat whatever the number of objects.

Merged files are derived data (rebuilt from the pack indexes if missing or damaged),
never part of a store's format, so any number of processes may write them: each is
written under a unique temporary name, renamed into place, and verified by its
checksum when read.

Merged file layout::

    b"MLVCMIDX" u8 version u32 npacks
    npacks x (32-byte hex pack name, u64 pack size)
    entry*:  16-byte id | u8 type | u8 codec | u32 pack | u64 offset | u32 stored | u32 raw
    16-byte xxh3-128 of everything above
"""

from __future__ import annotations

import heapq
import mmap
import os
import struct
import sys
import threading
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

import xxhash

from ..hashing import digest, is_hex_name
from .packs import IDX_ENTRY_SIZE, IDX_HEAD_SIZE, TYPE_NAMES

Location = tuple[int, int, int, int, int]  # (pack number, codec, offset, stored, raw)

KEY = 17  # id (16) + type (1): what entries are sorted by
MIDX_MAGIC = b"MLVCMIDX"
MIDX_VERSION = 1
MIDX_SUFFIX = ".midx"
MERGE_AT = 8  # unmerged pack tables tolerated before merging (each costs every lookup one probe)

_PACK_VALUE = struct.Struct("<BQII")  # codec, offset, stored, raw (after the key, in a pack index)
_MERGED_VALUE = struct.Struct("<BIQII")  # codec, pack, offset, stored, raw
_MERGED_ENTRY = KEY + _MERGED_VALUE.size
_MIDX_HEAD = struct.Struct("<8sBI")
_MIDX_PACK = struct.Struct("<32sQ")
_PACK_NO = struct.Struct("<I")
_OFFSET_AND_STORED = struct.Struct("<QI")
_TYPE_BYTE = [bytes((t,)) for t in range(256)]


def _fanout(data, base: int, stride: int, count: int) -> tuple[array, int]:
    """(first-entry index per bucket of the leading id bits, shift): ~8 entries per bucket."""
    bits = max(1, min(16, (count // 8).bit_length()))
    end = base + count * stride
    pairs = bytearray(2 * count)
    pairs[0::2] = data[base:end:stride]
    pairs[1::2] = data[base + 1:end:stride]
    prefixes = array("H")
    prefixes.frombytes(bytes(pairs))
    if sys.byteorder == "little":
        prefixes.byteswap()  # the ids' first two bytes, read big-endian: sorted like the ids
    shift = 16 - bits
    fanout = array("I", (bisect_left(prefixes, v << shift) for v in range(1 << bits)))
    fanout.append(count)
    return fanout, shift


class _SortedRun:
    """Fixed-width entries sorted by their 17-byte key, in `data` from `base`."""

    def __init__(self, data, base: int, stride: int, count: int):
        self.data = data
        self.base = base
        self.stride = stride
        self.count = count
        self._fanout, self._shift = _fanout(data, base, stride, count)

    def find(self, key: bytes) -> int:
        """Byte position of the entry with this key, or -1."""
        bucket = (key[0] << 8 | key[1]) >> self._shift
        base, stride, data = self.base, self.stride, self.data
        start = base + self._fanout[bucket] * stride
        end = base + self._fanout[bucket + 1] * stride
        pos = data.find(key, start, end)
        while pos >= 0 and (pos - base) % stride:
            pos = data.find(key, pos + 1, end)  # the bytes matched across two entries: look further
        return pos

    def keys(self, typ: int) -> Iterator[bytes]:
        data, stride = self.data, self.stride
        for pos in range(self.base, self.base + self.count * stride, stride):
            if data[pos + 16] == typ:
                yield data[pos:pos + 16]

    def first_bytes(self) -> bytes:
        """The first id byte of every entry, in order (for splitting a merge into ranges)."""
        return self.data[self.base:self.base + self.count * self.stride:self.stride]


class PackTable(_SortedRun):
    """One pack's published index (already verified by its name)."""

    def __init__(self, no: int, idx: bytes):
        count = (len(idx) - IDX_HEAD_SIZE - 16) // IDX_ENTRY_SIZE
        super().__init__(idx, IDX_HEAD_SIZE, IDX_ENTRY_SIZE, count)
        self.no = no
        self._no_bytes = _PACK_NO.pack(no)
        end = 0
        for i in range(count):
            off, stored = _OFFSET_AND_STORED.unpack_from(idx, IDX_HEAD_SIZE + i * IDX_ENTRY_SIZE + KEY + 1)
            end = max(end, off + stored)
        self.size = end  # of the pack file's records: what copying it whole moves

    def get(self, key: bytes) -> Location | None:
        pos = self.find(key)
        if pos < 0:
            return None
        return (self.no, *_PACK_VALUE.unpack_from(self.data, pos + KEY))

    def merged_entries(self, lo: int, hi: int) -> list[bytes]:
        """Entries lo..hi in the merged layout (the pack number inserted after the codec)."""
        data, no, stride = self.data, self._no_bytes, self.stride
        cut = KEY + 1
        return [data[pos:pos + cut] + no + data[pos + cut:pos + stride]
                for pos in range(self.base + lo * stride, self.base + hi * stride, stride)]


class MergedTable(_SortedRun):
    """Entries of many packs in one sorted run (bytes, or a mapped file)."""

    # Lookups land on random pages, so a long walk maps in the whole file (38 bytes an object:
    # 76 MB for 2 M objects), counted in the process's RSS although it is the kernel's page
    # cache.  Every this many lookups the pages are dropped from the process (MADV_DONTNEED on
    # a read-only file mapping: the next lookup faults its page back in from the page cache).
    RELEASE_EVERY = 1 << 17

    def __init__(self, data, packs: list[tuple[str, int]], base: int, count: int, path: Path | None = None):
        super().__init__(data, base, _MERGED_ENTRY, count)
        self.packs = packs  # (name, size) by pack number
        self.path = path
        self._lookups = 0  # since the last release (racy between threads: only a pacing count)

    def release_pages(self) -> None:
        if isinstance(self.data, mmap.mmap):
            try:
                self.data.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError, AttributeError):
                pass  # closed, or a platform without it: only RSS stays higher

    def get(self, key: bytes) -> Location | None:
        self._lookups += 1
        if self._lookups >= self.RELEASE_EVERY:
            self._lookups = 0
            self.release_pages()
        pos = self.find(key)
        if pos < 0:
            return None
        c, no, off, stored, raw = _MERGED_VALUE.unpack_from(self.data, pos + KEY)
        return no, c, off, stored, raw

    def merged_entries(self, lo: int, hi: int) -> list[bytes]:
        data, stride = self.data, self.stride
        return [data[pos:pos + stride] for pos in range(self.base + lo * stride, self.base + hi * stride, stride)]


def _midx_header(packs: list[tuple[str, int]]) -> bytes:
    return _MIDX_HEAD.pack(MIDX_MAGIC, MIDX_VERSION, len(packs)) + b"".join(
        _MIDX_PACK.pack(name.encode(), size) for name, size in packs)


def _read_midx_packs(data) -> tuple[list[tuple[str, int]], int] | None:
    """(packs, where the entries start) of a merged file, or None if it is not one."""
    if len(data) < _MIDX_HEAD.size + 16:
        return None
    magic, version, npacks = _MIDX_HEAD.unpack_from(data, 0)
    base = _MIDX_HEAD.size + npacks * _MIDX_PACK.size
    if magic != MIDX_MAGIC or version != MIDX_VERSION or len(data) < base + 16:
        return None
    packs = []
    for i in range(npacks):
        raw_name, size = _MIDX_PACK.unpack_from(data, _MIDX_HEAD.size + i * _MIDX_PACK.size)
        name = raw_name.decode("ascii", "replace")
        if not is_hex_name(name):
            return None
        packs.append((name, size))
    return packs, base


def read_midx_packs(path: Path) -> list[str] | None:
    """The pack names a merged file covers (from its head only), or None if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(_MIDX_HEAD.size)
            if len(head) < _MIDX_HEAD.size:
                return None
            magic, version, npacks = _MIDX_HEAD.unpack(head)
            if magic != MIDX_MAGIC or version != MIDX_VERSION or npacks > 10_000_000:
                return None
            body = f.read(npacks * _MIDX_PACK.size)
    except OSError:
        return None
    if len(body) != npacks * _MIDX_PACK.size:
        return None
    names = [body[i:i + 32].decode("ascii", "replace") for i in range(0, len(body), _MIDX_PACK.size)]
    return names if all(is_hex_name(n) for n in names) else None


def load_midx(path: Path) -> MergedTable | None:
    """A merged file, mapped and checked (None if missing, damaged or of another version)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _MIDX_HEAD.size + 16:
                return None
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    head = _read_midx_packs(data)
    body = memoryview(data)[:-16]
    ok = head is not None and (size - 16 - head[1]) % _MERGED_ENTRY == 0 and digest(body) == data[-16:]
    body.release()
    if not ok:
        data.close()
        return None
    packs, base = head
    table = MergedTable(data, packs, base, (size - 16 - base) // _MERGED_ENTRY, path)
    table.release_pages()  # the checksum read every page
    return table


def merge(tables: list, packs: list[tuple[str, int]], directory: Path | None) -> MergedTable:
    """One sorted run of every entry of `tables` (the first of equal keys kept), written to a
    new file in `directory` and mapped, or kept in memory when there is none (or it fails)."""
    if directory is not None:
        try:
            return _merge_to_file(tables, packs, directory)
        except OSError:
            pass  # merged files are an optimisation: a full or read-only disk serves from memory
    header = _midx_header(packs)
    parts = [header]
    count = 0
    for block, n in _merged_blocks(tables):
        parts.append(block)
        count += n
    body = b"".join(parts)
    return MergedTable(body + digest(body), packs, len(header), count)


def _merged_blocks(tables: list) -> Iterator[tuple[bytes, int]]:
    """The merged entries in key order, in blocks of one leading id byte each: the memory a
    merge needs is 1/256 of the table (sorting a block is C work; most blocks are runs)."""
    bounds = []
    for table in tables:
        firsts = table.first_bytes()
        bounds.append([bisect_left(firsts, b) for b in range(256)] + [table.count])
    for b in range(256):
        entries: list[bytes] = []
        for table, bound in zip(tables, bounds, strict=True):
            if bound[b] < bound[b + 1]:
                entries.extend(table.merged_entries(bound[b], bound[b + 1]))
        if not entries:
            continue
        entries.sort()
        unique = [entries[0]]
        last = entries[0][:KEY]
        for entry in entries:
            key = entry[:KEY]
            if key != last:  # the same object in two packs: either copy serves
                unique.append(entry)
                last = key
        yield b"".join(unique), len(unique)


def _merge_to_file(tables: list, packs: list[tuple[str, int]], directory: Path) -> MergedTable:
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".merge-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    header = _midx_header(packs)
    checksum = xxhash.xxh3_128(header)
    try:
        with open(temp, "wb") as out:
            out.write(header)
            for block, _n in _merged_blocks(tables):
                checksum.update(block)
                out.write(block)
            out.write(checksum.digest())
        # no fsync: a torn file after a power cut fails its checksum and is rebuilt
        final = directory / f"{checksum.hexdigest()}{MIDX_SUFFIX}"
        os.replace(temp, final)
    finally:
        try:
            os.unlink(temp)
        except OSError:
            pass
    table = load_midx(final)
    if table is None:
        raise OSError(f"{final} could not be read back")
    return table


class ObjectTable:
    """Every published object of a store: one merged run plus the pack tables added since.

    `directory`: where merged runs are kept between processes (None: in memory only).
    Thread-safe for one writer (publishing adds packs) and many readers."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.merged: MergedTable | None = None
        self.recent: list[PackTable] = []
        self.sizes: dict[int, int] = {}  # pack number -> bytes of records
        self._lock = threading.Lock()
        self._merging = threading.Lock()  # one merge at a time; lookups never wait for it
        # Tables are never closed explicitly: a lookup in another thread may still be reading
        # one that was just replaced; a mapping is released when its last user drops it.

    # ------------------------------------------------------------- building
    def _kept_runs(self) -> Iterator[tuple[Path, list[str] | None]]:
        """(path, the packs it covers or None if unreadable) of every kept merged file."""
        if self.directory is None:
            return
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(MIDX_SUFFIX)]
        except OSError:
            return
        for name in names:
            path = self.directory / name
            yield path, read_midx_packs(path)

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            os.unlink(path)  # a reader that mapped it keeps its mapping
        except OSError:
            pass

    def adopt_merged(self, listed: set[str]) -> list[str] | None:
        """Map the largest kept merged run whose packs are all in `listed`; its pack names
        (numbered from 0, in order), or None when there is none.  Call on an empty table."""
        candidates = sorted(((len(packs), path) for path, packs in self._kept_runs()
                             if packs and set(packs) <= listed), reverse=True)
        for _n, path in candidates:
            table = load_midx(path)  # named by its checksum: the packs its head listed
            if table is not None:
                self.merged = table
                self.sizes = {no: size for no, (_p, size) in enumerate(table.packs)}
                return [p for p, _s in table.packs]
        return None

    def add_pack(self, no: int, idx: bytes) -> None:
        table = PackTable(no, idx)
        with self._lock:
            self.recent = [*self.recent, table]  # readers iterate whichever list they got
            self.sizes[no] = table.size

    def needs_merge(self) -> bool:
        return len(self.recent) >= MERGE_AT

    def merge(self, pack_names: list[str]) -> None:
        """Merge the recent pack tables into the merged run (`pack_names`: by number)."""
        with self._merging:
            self._merge(pack_names)

    def _merge(self, pack_names: list[str]) -> None:
        with self._lock:
            merged, recent = self.merged, self.recent
        if not recent:
            return
        sources = ([merged] if merged is not None else []) + recent
        packs = [(name, self.sizes.get(no, 0)) for no, name in enumerate(pack_names)]
        table = merge(sources, packs, self.directory)
        with self._lock:
            self.merged = table
            self.recent = [t for t in self.recent if t not in recent]  # added while we merged
        self._prune(table)

    def _prune(self, kept: MergedTable) -> None:
        """Remove kept runs that the new one makes useless (a subset of its packs)."""
        if kept.path is None:
            return
        covered = {p for p, _s in kept.packs}
        for path, packs in self._kept_runs():
            if path != kept.path and (packs is None or set(packs) <= covered):
                self._unlink(path)

    def drop_runs_with(self, removed: set[str]) -> None:
        """Delete kept runs naming packs that are gone (they can never be adopted again)."""
        for path, packs in self._kept_runs():
            if packs is None or removed & set(packs):
                self._unlink(path)

    # -------------------------------------------------------------- lookups
    def get(self, typ: int, oid: bytes) -> Location | None:
        key = oid + _TYPE_BYTE[typ]
        for table in self.recent:
            loc = table.get(key)
            if loc is not None:
                return loc
        merged = self.merged
        return merged.get(key) if merged is not None else None

    def __contains__(self, key: tuple[int, bytes]) -> bool:
        return self.get(*key) is not None

    def iter_ids(self, typ: int) -> Iterator[bytes]:
        """Each id of this type once, in id order."""
        tables = ([self.merged] if self.merged is not None else []) + list(self.recent)
        last = None
        for oid in heapq.merge(*(t.keys(typ) for t in tables)):
            if oid != last:
                last = oid
                yield oid

    def count(self) -> int:
        return sum(sum(1 for _ in self.iter_ids(typ)) for typ in TYPE_NAMES)
