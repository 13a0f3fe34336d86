"""Where each object of a store lies: (type, id) -> (pack number, codec, offset, stored, raw).

A store may hold millions of objects; a Python dict of them costs ~250 bytes each.
Here they stay in their packed binary form (~36 bytes each):

* a `PackTable` is one pack's index exactly as published (`packs.encode_index`:
  fixed-width entries sorted by (id, type));
* a `MergedTable` is many packs' entries merged into one sorted run (as git's
  multi-pack-index), kept in a local file named by its checksum and read with `pread` as needed.

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
import os
import struct
import sys
import threading
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import xxhash

from ..hashing import digest, is_hex_name
from .packs import IDX_ENTRY_SIZE, IDX_HEAD_SIZE, TYPE_NAMES
from .types import PackedLocation

Reader = Callable[[int, int], bytes]  # (position, length) -> the bytes there

KEY = 17  # id (16) + type (1): what entries are sorted by
MIDX_MAGIC = b"MLVCMIDX"
MIDX_VERSION = 1
MIDX_SUFFIX = ".midx"
# Unmerged pack tables tolerated before merging: each costs every miss one probe (a push looks up
# every object it plans at its destination, which lacks most of them), a merge rewrites the table
# (~0.5 s for 2 M objects).  At 8, a million-file push probed ~5 tables a miss against ~1 at 20,000
# files: its time per file grew 1.9x.
MERGE_AT = 4
FOUND_KEPT = 32768  # locations kept of the last lookups that found their object (~4 MB)

_PACK_VALUE = struct.Struct("<BQII")  # codec, offset, stored, raw (after the key, in a pack index)
_MERGED_VALUE = struct.Struct("<BIQII")  # codec, pack, offset, stored, raw
_MERGED_ENTRY = KEY + _MERGED_VALUE.size
_MIDX_HEAD = struct.Struct("<8sBI")
_MIDX_PACK = struct.Struct("<32sQ")
_PACK_NO = struct.Struct("<I")
_OFFSET_AND_STORED = struct.Struct("<QI")
_TYPE_BYTE = [bytes((t,)) for t in range(256)]


WINDOW_ENTRIES = 8192  # entries read at a time by the sequential walks (merging, listing)


def _fanout(read: Reader, base: int, stride: int, count: int) -> tuple[array[int], int]:
    """(first-entry index per bucket of the leading id bits, shift): ~8 entries per bucket."""
    bits = max(1, min(16, (count // 8).bit_length()))
    prefixes = array("H")
    for lo in range(0, count, WINDOW_ENTRIES):
        n = min(WINDOW_ENTRIES, count - lo)
        block = read(base + lo * stride, n * stride)
        pairs = bytearray(2 * n)
        pairs[0::2] = block[0::stride]
        pairs[1::2] = block[1::stride]
        prefixes.frombytes(bytes(pairs))
    if sys.byteorder == "little":
        prefixes.byteswap()  # the ids' first two bytes, read big-endian: sorted like the ids
    shift = 16 - bits
    fanout = array("I", (bisect_left(prefixes, v << shift) for v in range(1 << bits)))
    fanout.append(count)
    return fanout, shift


def _bytes_reader(data: bytes) -> Reader:
    return lambda pos, length: data[pos:pos + length]


class _SortedRun:
    """Fixed-width entries sorted by their 17-byte key, from byte `base` of what `read`
    (position, length) -> bytes returns: a bytes object, or a file read with `pread`.

    A file is read, never memory-mapped: lookups land on random pages, and every page a
    mapping touches (with the 64 KiB the kernel maps around each fault) counts in the
    process's RSS: a walk of a million-object store mapped in the whole 76 MB table.  A
    `pread` of one fan-out bucket (~300 bytes) costs the same time as the mapped lookup."""

    def __init__(self, read: Reader, base: int, stride: int, count: int):
        self.read = read
        self.base = base
        self.stride = stride
        self.count = count
        self._fanout, self._shift = _fanout(read, base, stride, count)

    def find(self, key: bytes) -> tuple[bytes, int] | None:
        """(a block of entries, the position in it of the entry with this key), or None."""
        bucket = (key[0] << 8 | key[1]) >> self._shift
        lo, hi = self._fanout[bucket], self._fanout[bucket + 1]
        if lo == hi:
            return None
        stride = self.stride
        block = self.read(self.base + lo * stride, (hi - lo) * stride)
        pos = block.find(key)
        while pos >= 0 and pos % stride:
            pos = block.find(key, pos + 1)  # the bytes matched across two entries: look further
        return None if pos < 0 else (block, pos)

    def windows(self, lo: int = 0, hi: int | None = None) -> Iterator[bytes]:
        """Entries lo..hi as blocks of at most WINDOW_ENTRIES entries, in order."""
        hi = self.count if hi is None else hi
        stride = self.stride
        for start in range(lo, hi, WINDOW_ENTRIES):
            n = min(WINDOW_ENTRIES, hi - start)
            yield self.read(self.base + start * stride, n * stride)

    def keys(self, typ: int) -> Iterator[bytes]:
        stride = self.stride
        for block in self.windows():
            for pos in range(0, len(block), stride):
                if block[pos + 16] == typ:
                    yield block[pos:pos + 16]

    def first_bytes(self) -> bytes:
        """The first id byte of every entry, in order (for splitting a merge into ranges)."""
        return b"".join(block[0::self.stride] for block in self.windows())


class PackTable(_SortedRun):
    """One pack's published index (already verified by its name)."""

    def __init__(self, no: int, idx: bytes):
        count = (len(idx) - IDX_HEAD_SIZE - 16) // IDX_ENTRY_SIZE
        super().__init__(_bytes_reader(idx), IDX_HEAD_SIZE, IDX_ENTRY_SIZE, count)
        self._idx = idx
        self.no = no
        self._no_bytes = _PACK_NO.pack(no)
        end = 0
        for i in range(count):
            off, stored = _OFFSET_AND_STORED.unpack_from(idx, IDX_HEAD_SIZE + i * IDX_ENTRY_SIZE + KEY + 1)
            end = max(end, off + stored)
        self.size = end  # of the pack file's records: what copying it whole moves

    def find(self, key: bytes) -> tuple[bytes, int] | None:
        # The index is in memory: searched in place, no slice per lookup (every object a
        # transfer plans is looked up in each recent pack table)
        bucket = (key[0] << 8 | key[1]) >> self._shift
        base, stride, data = self.base, self.stride, self._idx
        end = base + self._fanout[bucket + 1] * stride
        pos = data.find(key, base + self._fanout[bucket] * stride, end)
        while pos >= 0 and (pos - base) % stride:
            pos = data.find(key, pos + 1, end)
        return None if pos < 0 else (data, pos)

    def get(self, key: bytes) -> PackedLocation | None:
        found = self.find(key)
        if found is None:
            return None
        block, pos = found
        return (self.no, *_PACK_VALUE.unpack_from(block, pos + KEY))

    def merged_entries(self, lo: int, hi: int) -> list[bytes]:
        """Entries lo..hi in the merged layout (the pack number inserted after the codec)."""
        no, stride, cut = self._no_bytes, self.stride, KEY + 1
        return [block[pos:pos + cut] + no + block[pos + cut:pos + stride]
                for block in self.windows(lo, hi) for pos in range(0, len(block), stride)]


class MergedTable(_SortedRun):
    """Entries of many packs in one sorted run (bytes, or a file read as it is needed)."""

    def __init__(self, read: Reader, packs: list[tuple[str, int]], base: int, count: int,
                 path: Path | None = None, fd: int | None = None):
        super().__init__(read, base, _MERGED_ENTRY, count)
        self.packs = packs  # (name, size) by pack number
        self.path = path
        self._fd = fd  # closed with the table: a lookup in another thread may still use a replaced one

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def get(self, key: bytes) -> PackedLocation | None:
        found = self.find(key)
        if found is None:
            return None
        block, pos = found
        c, no, off, stored, raw = _MERGED_VALUE.unpack_from(block, pos + KEY)
        return no, c, off, stored, raw

    def merged_entries(self, lo: int, hi: int) -> list[bytes]:
        stride = self.stride
        return [block[pos:pos + stride] for block in self.windows(lo, hi) for pos in range(0, len(block), stride)]


def _midx_header(packs: list[tuple[str, int]]) -> bytes:
    return _MIDX_HEAD.pack(MIDX_MAGIC, MIDX_VERSION, len(packs)) + b"".join(
        _MIDX_PACK.pack(name.encode(), size) for name, size in packs)


def _read_midx_packs(fd: int, size: int) -> tuple[list[tuple[str, int]], int] | None:
    """(packs, where the entries start) of a merged file of `size` bytes, or None if it is not one."""
    if size < _MIDX_HEAD.size + 16:
        return None
    magic, version, npacks = _MIDX_HEAD.unpack(os.pread(fd, _MIDX_HEAD.size, 0))
    base = _MIDX_HEAD.size + npacks * _MIDX_PACK.size
    if magic != MIDX_MAGIC or version != MIDX_VERSION or size < base + 16:
        return None
    listing = os.pread(fd, npacks * _MIDX_PACK.size, _MIDX_HEAD.size)
    packs = []
    for raw_name, pack_size in _MIDX_PACK.iter_unpack(listing):
        name = raw_name.decode("ascii", "replace")
        if not is_hex_name(name):
            return None
        packs.append((name, pack_size))
    return packs, base


def read_midx_packs(path: Path) -> list[str] | None:
    """The pack names a merged file covers (from its head only), or None if unreadable."""
    try:
        with open(path, "rb") as f:
            head = _read_midx_packs(f.fileno(), os.fstat(f.fileno()).st_size)
    except (OSError, struct.error):
        return None
    return None if head is None else [name for name, _size in head[0]]


CHECK_PIECE = 8 << 20  # bytes of a merged file checksummed at a time


def _checksum_ok(fd: int, size: int) -> bool:
    h = xxhash.xxh3_128()
    pos, end = 0, size - 16
    while pos < end:
        piece = os.pread(fd, min(CHECK_PIECE, end - pos), pos)
        if not piece:
            return False
        h.update(piece)
        pos += len(piece)
    return h.digest() == os.pread(fd, 16, end)


def load_midx(path: Path) -> MergedTable | None:
    """A merged file, checked and opened for reading (None if missing, damaged or of another
    version).  It is read with `pread` as lookups need it, never mapped (see `_SortedRun`)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        head = _read_midx_packs(fd, size)
        if head is not None and (size - 16 - head[1]) % _MERGED_ENTRY == 0 and _checksum_ok(fd, size):
            packs, base = head
            return MergedTable(lambda pos, length: os.pread(fd, length, pos), packs, base,
                               (size - 16 - base) // _MERGED_ENTRY, path, fd)
    except (OSError, struct.error):
        pass
    os.close(fd)
    return None


def merge(tables: Sequence[PackTable | MergedTable], packs: list[tuple[str, int]],
          directory: Path | None) -> MergedTable:
    """One sorted run of every entry of `tables` (the first of equal keys kept), written to a
    new file in `directory` and opened, or kept in memory when there is none (or it fails)."""
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
    return MergedTable(_bytes_reader(body + digest(body)), packs, len(header), count)


def _merged_blocks(tables: Sequence[PackTable | MergedTable]) -> Iterator[tuple[bytes, int]]:
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


def _merge_to_file(tables: Sequence[PackTable | MergedTable], packs: list[tuple[str, int]],
                   directory: Path) -> MergedTable:
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
        # Locations found lately (a transfer asks for an object's 2-3 times: to sort, to group by
        # pack, to read); only hits, which stay true while this table lives (a gc that removes
        # packs makes the store start a new table).
        self._found: dict[bytes, PackedLocation] = {}
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
            os.unlink(path)  # a reader that opened it keeps reading it
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
    def get(self, typ: int, oid: bytes) -> PackedLocation | None:
        key = oid + _TYPE_BYTE[typ]
        loc = self._found.get(key)
        if loc is not None:
            return loc
        for table in self.recent:
            loc = table.get(key)
            if loc is not None:
                break
        else:
            merged = self.merged
            loc = merged.get(key) if merged is not None else None
            if loc is None:
                return None
        if len(self._found) >= FOUND_KEPT:
            self._found.clear()
        self._found[key] = loc
        return loc

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
