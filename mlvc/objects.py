"""Manifests: what a file and a directory are made of.

* A **file manifest** lists the chunks of one file in order.  Its id is the
  xxh3-128 of the file's *content* (not of the manifest), so the same bytes get
  the same id whatever chunker produced the manifest; the manifest records the
  chunker parameters and carries its own checksum.
* A **tree manifest** lists a directory's files: (relative POSIX path, size,
  executable bit, file id), sorted by path.  Its id is the xxh3-128 of its
  canonical JSON encoding.  Chunk lists are not part of a tree, so a tree's id
  does not depend on chunking either.

Paths are validated whenever a tree is built or read: no absolute paths, no
`..` or `.` components, no empty components, no NUL.
"""

from __future__ import annotations

import json
import re
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .chunking import ChunkerParams
from .errors import CorruptObjectError, UnsafePathError
from .hashing import digest, hasher, to_oid
from .packed import PackedPaths

FILE_MAGIC = b"MLVCFILE"
TREE_FORMAT = 1
FILE_FORMAT = 1

# Bounds on what one tree manifest may make a reader build (a 1.3 M-file ImageNet fits well):
# a tree past them is refused before it is parsed, not allocated entry by entry.
MAX_TREE_ENTRIES = 2_000_000
MAX_TREE_BYTES = 128 * 1024 * 1024

_FILE_HEAD = struct.Struct("<8sB16sQIIII")
_CHUNK_REF = struct.Struct("<16sI")


def validate_relpath(path: str, where: str = "manifest", *, below_dir: bool = False) -> str:
    """Return `path` if it is a safe relative POSIX path, else raise UnsafePathError.

    `below_dir`: a path inside a directory artifact, always joined below its directory, where
    a name like `A:` is just a name (Linux allows it); elsewhere it would be a drive on Windows."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(where, f"empty or non-text path {path!r}")
    if "\0" in path or path.startswith("/") or path.startswith("\\"):
        raise UnsafePathError(where, f"unsafe path {path!r}")
    if not below_dir and len(path) > 1 and path[1] == ":" and path[0].isalpha():
        raise UnsafePathError(where, f"absolute path {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(where, f"unsafe path {path!r}")
    return path


@dataclass(frozen=True, slots=True)
class FileManifest:
    content_id: bytes
    size: int
    chunker: ChunkerParams
    chunks: tuple[tuple[bytes, int], ...]

    def encode(self) -> bytes:
        c = self.chunker
        head = _FILE_HEAD.pack(FILE_MAGIC, FILE_FORMAT, self.content_id, self.size,
                               c.min_size, c.avg_size, c.max_size, len(self.chunks))
        body = head + b"".join(_CHUNK_REF.pack(oid, n) for oid, n in self.chunks)
        return body + digest(body)

    @staticmethod
    def check_intact(data: bytes, expect_id: bytes | None = None) -> tuple[Any, ...]:
        """Check a manifest's checksum, format and content id (what a damaged or misplaced
        record fails) without parsing its chunk list; its header fields."""
        oid_text = to_oid(expect_id) if expect_id else "file manifest"
        if len(data) < _FILE_HEAD.size + 16 or digest(data[:-16]) != data[-16:]:
            raise CorruptObjectError(oid_text, "the cache", "a valid file manifest", "damaged bytes")
        head = _FILE_HEAD.unpack_from(data, 0)
        magic, version, cid = head[:3]
        if magic != FILE_MAGIC or version != FILE_FORMAT:
            raise CorruptObjectError(oid_text, "the cache", f"file manifest v{FILE_FORMAT}", f"v{version}")
        if expect_id is not None and cid != expect_id:
            raise CorruptObjectError(oid_text, "the cache", to_oid(expect_id), to_oid(cid))
        return head

    @classmethod
    def decode(cls, data: bytes, expect_id: bytes | None = None) -> "FileManifest":
        oid_text = to_oid(expect_id) if expect_id else "file manifest"
        _magic, _version, cid, size, mn, avg, mx, n = cls.check_intact(data, expect_id)
        body = data[_FILE_HEAD.size:-16]
        if len(body) != n * _CHUNK_REF.size:
            raise CorruptObjectError(oid_text, "the cache", f"{n} chunk refs", "a truncated list")
        params = ChunkerParams(mn, avg, mx)
        if not params.is_sane():
            raise CorruptObjectError(oid_text, "the cache", "sane chunker sizes", f"min/avg/max {mn}/{avg}/{mx}")
        chunks = tuple(_CHUNK_REF.iter_unpack(body))
        # The declared size must be what the chunks add up to, and no chunk may be longer than the
        # chunker that cut it allows: a manifest declaring 1 TB needs 1 TB of listed chunks.
        if sum(length for _, length in chunks) != size:
            raise CorruptObjectError(oid_text, "the cache", f"{size} bytes of chunks", "another total")
        if chunks and max(length for _, length in chunks) > mx:
            raise CorruptObjectError(oid_text, "the cache", f"chunks of at most {mx} bytes", "a longer one")
        return cls(cid, size, params, chunks)


@dataclass(frozen=True, slots=True)
class TreeEntry:
    path: str
    size: int
    file_id: bytes
    executable: bool = False


class TreeEntries(PackedPaths):
    """A tree's entries, kept packed (~60 bytes a file instead of ~250 as objects): paths in
    one UTF-8 blob with offsets, sizes, ids and executable bits in arrays.  Indexing and
    iterating build `TreeEntry` objects on the fly, so a million-file tree costs tens of MB."""

    __slots__ = ("_sizes", "_ids", "_exec")

    def __init__(self, paths: bytes | bytearray, ends: array[int], sizes: array[int], ids: bytes,
                 executable: bytes | bytearray):
        super().__init__(paths, ends)
        self._sizes, self._ids, self._exec = sizes, ids, executable

    @classmethod
    def pack(cls, entries: Iterable[TreeEntry]) -> "TreeEntries":
        paths, ends, sizes, ids, executable = bytearray(), array("Q"), array("Q"), bytearray(), bytearray()
        for e in entries:
            paths += e.path.encode("utf-8", "surrogateescape")
            ends.append(len(paths))
            sizes.append(e.size)
            ids += e.file_id
            executable.append(1 if e.executable else 0)
        return cls(bytes(paths), ends, sizes, bytes(ids), bytes(executable))

    def _row(self, i: int, path: str) -> TreeEntry:
        return TreeEntry(path, self._sizes[i], self._ids[16 * i:16 * i + 16], bool(self._exec[i]))

    # A tree's entries are in path order (every way of making one sorts or checks it): a path is
    # found by bisection, without a dict of every entry.
    def first_at_or_after(self, path: str) -> int:
        """The index of the first entry whose path is `path` or sorts after it."""
        return bisect_left(range(len(self._ends)), path, key=self.path)  # decodes only the paths probed

    def find(self, path: str) -> TreeEntry | None:
        i = self.first_at_or_after(path)
        return self[i] if i < len(self._ends) and self.path(i) == path else None

    def has_below(self, directory: str) -> bool:
        """Whether some entry lies below `directory` (a path inside the tree, without '/')."""
        prefix = directory + "/"
        i = self.first_at_or_after(prefix)
        return i < len(self._ends) and self.path(i).startswith(prefix)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TreeEntries):
            return (self._paths, self._ends, self._sizes, self._ids, self._exec) == (
                other._paths, other._ends, other._sizes, other._ids, other._exec)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._paths, self._ids))

    def total_size(self) -> int:
        return sum(self._sizes)

    def ids_and_sizes(self) -> Iterator[tuple[bytes, int]]:
        """(file id, size) of each entry, without building its path."""
        ids = self._ids
        for i, size in enumerate(self._sizes):
            yield ids[16 * i:16 * i + 16], size


_TREE_HEAD = b'{"mlvc_tree":1,"hash":"xxh3-128","entries":['
_TREE_TAIL = b"]}"
# One entry exactly as `json.dumps(..., separators=(",", ":"), ensure_ascii=False)` writes it.
_CANONICAL_ENTRY = re.compile(rb'\[("(?:[^"\\]|\\.)*"),(0|[1-9][0-9]*),"([0-9a-f]{32})",([01])\]')


def _encode_entry(e: TreeEntry) -> bytes:
    return json.dumps([e.path, e.size, e.file_id.hex(), int(e.executable)],
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")


# json.dumps(ensure_ascii=False) escapes only these in a string; a path without them is written
# as its own bytes between quotes, which is ~10x faster than json.dumps for a million entries.
_NEEDS_ESCAPE = re.compile(rb'["\\\x00-\x1f]')
ENCODE_BATCH = 8192  # entries per piece of an encoded tree


def _encode_entries(entries: "TreeEntries") -> Iterator[bytes]:
    """The canonical encoding of a tree, in pieces of `ENCODE_BATCH` entries (never the whole
    document as a list of per-entry strings)."""
    yield _TREE_HEAD
    escape = _NEEDS_ESCAPE.search
    paths, ends, sizes, ids, executable = entries._paths, entries._ends, entries._sizes, entries._ids, entries._exec
    piece: list[bytes] = []
    start = 0
    for i, end in enumerate(ends):
        raw = paths[start:end]
        if escape(raw) is None:
            piece.append(b'["%s",%d,"%s",%d]' % (raw, sizes[i], ids[16 * i:16 * i + 16].hex().encode(),
                                                 executable[i]))
        else:
            piece.append(_encode_entry(entries[i]))
        start = end
        if len(piece) == ENCODE_BATCH:
            yield (b"," if i >= ENCODE_BATCH else b"") + b",".join(piece)
            piece = []
    if piece:
        yield (b"," if len(ends) > len(piece) else b"") + b",".join(piece)
    yield _TREE_TAIL


class NotCanonical(Exception):
    """The bytes are not in the canonical encoding: the general parser (`TreeManifest.decode`
    of the whole document) decides."""


# An entry is a JSON list of four; only a path of escaped characters makes it long.  A longer
# run of bytes that does not parse as one is not the canonical encoding.
MAX_ENTRY_BYTES = 1 << 20
_HEAD, _FIRST, _ENTRY, _SEP, _TAIL = range(5)


class _TreeParser:
    """The canonical encoding of a tree, parsed as its bytes arrive (`feed` any pieces, then
    `close`): each entry checked (a safe path, after the one before it) and packed into
    columns that `take` hands over, so neither the document nor its entries need be whole.
    Raises NotCanonical on anything else."""

    def __init__(self, where: str):
        self.where = where
        self._phase = _HEAD
        self._rest = b""  # bytes of an entry (or of the head or tail) not complete yet
        self._last: str | None = None
        self.count = 0
        self._reset()

    def _reset(self) -> None:
        self._paths, self._ends, self._sizes = bytearray(), array("Q"), array("Q")
        self._ids, self._exec = bytearray(), bytearray()

    @property
    def pending(self) -> int:
        """Entries parsed and not yet taken."""
        return len(self._ends)

    def take(self) -> TreeEntries:
        """The entries parsed since the last `take` (the path blob is handed over, not copied)."""
        taken = TreeEntries(self._paths, self._ends, self._sizes, bytes(self._ids), bytes(self._exec))
        self._reset()
        return taken

    def feed(self, piece: bytes) -> None:
        buf = self._rest + piece if self._rest else piece  # a whole document is never copied
        pos, n = 0, len(buf)
        match = _CANONICAL_ENTRY.match
        while pos < n:
            phase = self._phase
            if phase == _HEAD:
                if n < len(_TREE_HEAD):
                    if not _TREE_HEAD.startswith(buf):
                        raise NotCanonical
                    break
                if not buf.startswith(_TREE_HEAD):
                    raise NotCanonical
                pos, self._phase = len(_TREE_HEAD), _FIRST
            elif phase == _FIRST and buf[pos] == 0x5D:  # "]" right after the head: no entries
                self._phase = _TAIL
            elif phase in (_FIRST, _ENTRY):
                m = match(buf, pos)
                if m is None:
                    if n - pos > MAX_ENTRY_BYTES:
                        raise NotCanonical
                    break  # an entry not complete yet (or not one: `close` says)
                self._entry(m)
                pos, self._phase = m.end(), _SEP
            elif phase == _SEP:
                if buf[pos] == 0x2C:  # ","
                    pos, self._phase = pos + 1, _ENTRY
                elif buf[pos] == 0x5D:  # "]"
                    self._phase = _TAIL
                else:
                    raise NotCanonical
            else:  # _TAIL: nothing may follow it
                if not _TREE_TAIL.startswith(buf[pos:]):
                    raise NotCanonical
                break
        self._rest = buf[pos:]

    def close(self) -> None:
        if self._phase != _TAIL or self._rest != _TREE_TAIL:
            raise NotCanonical

    def _entry(self, m: re.Match[bytes]) -> None:
        raw_path, size, hexid, x = m.groups()
        if b"\\" in raw_path:
            path = json.loads(raw_path)
            encoded = path.encode("utf-8", "surrogateescape")
        else:
            encoded = raw_path[1:-1]
            path = encoded.decode("utf-8", "surrogateescape")
        if self._last is not None and not self._last < path:
            raise NotCanonical  # out of order or a duplicate: the general path sorts or refuses
        validate_relpath(path, self.where, below_dir=True)
        self.count += 1
        if self.count > MAX_TREE_ENTRIES:
            raise CorruptObjectError(self.where, "the cache", f"a tree of at most {MAX_TREE_ENTRIES} files",
                                     "more entries")
        self._last = path
        self._paths += encoded
        self._ends.append(len(self._paths))
        self._sizes.append(int(size))
        self._ids += bytes.fromhex(hexid.decode())
        self._exec.append(x[0] - 48)


def _parse_canonical(data: bytes, where: str) -> TreeEntries:
    """The entries of a whole tree in the canonical encoding (sorted, no duplicates), packed
    as they are read: never the whole JSON as objects.  Raises NotCanonical on anything else."""
    parser = _TreeParser(where)
    parser.feed(data)
    parser.close()
    return parser.take()


def iter_tree_batches(pieces: Iterable[bytes], where: str, batch: int) -> Iterator[TreeEntries]:
    """A tree's entries, `batch` or so at a time, parsed as the pieces of its canonical encoding
    arrive (never the whole document, nor every entry at once).  The pieces' source checks the
    tree's id once the last piece is read (`PackStore.iter_decoded`): until the iteration ends
    without an error, what it yielded is provisional.  NotCanonical: read the tree whole."""
    parser = _TreeParser(where)
    for piece in pieces:
        parser.feed(piece)
        if parser.pending >= batch:
            yield parser.take()
    parser.close()
    if parser.pending:
        yield parser.take()


@dataclass(frozen=True, slots=True)
class TreeManifest:
    entries: TreeEntries

    @classmethod
    def build(cls, entries: Iterable[TreeEntry]) -> "TreeManifest":
        ordered = sorted(entries, key=lambda e: e.path)
        seen = None
        for e in ordered:
            validate_relpath(e.path, below_dir=True)
            if e.path == seen:
                raise UnsafePathError("manifest", f"duplicate path {e.path!r}")
            seen = e.path
        return cls(TreeEntries.pack(ordered))

    @classmethod
    def from_sorted(cls, entries: Iterable[TreeEntry]) -> "TreeManifest":
        """A tree of entries already in path order: packed, then checked as `from_columns`
        checks, never held as a list of entry objects."""
        packed = TreeEntries.pack(entries)
        return cls.from_columns(packed._paths, packed._ends, packed._sizes, packed._ids, packed._exec)

    @classmethod
    def from_columns(cls, paths: bytes | bytearray, ends: array[int], sizes: array[int], ids: bytes | bytearray,
                     executable: bytes | bytearray) -> "TreeManifest":
        """A tree over columns already in path order (a workspace scan's), sharing them instead
        of copying: each path is checked (safe, ascending, no duplicate) without building an
        entry object per file."""
        last = None
        start = 0
        for end in ends:
            path = paths[start:end].decode("utf-8", "surrogateescape")
            validate_relpath(path, below_dir=True)
            if last is not None and not last < path:
                if last == path:
                    raise UnsafePathError("manifest", f"duplicate path {path!r}")
                raise ValueError(f"tree entries out of order: {last!r} before {path!r}")
            last = path
            start = end
        if not (len(sizes) == len(ends) == len(executable) and len(ids) == 16 * len(ends)):
            raise ValueError("tree columns of different lengths")
        return cls(TreeEntries(paths, ends, sizes, bytes(ids), executable))

    def encode(self) -> bytes:
        # The same bytes as json.dumps of the whole document (separators (",", ":"),
        # ensure_ascii=False), written piece by piece instead of as one list of lists.
        return b"".join(_encode_entries(self.entries))

    def pieces(self) -> Iterator[bytes]:
        """`encode()` in pieces of `ENCODE_BATCH` entries, for writers that never join them."""
        return _encode_entries(self.entries)

    def oid(self) -> bytes:
        h = hasher()
        for piece in _encode_entries(self.entries):
            h.update(piece)
        return h.digest()

    @property
    def size(self) -> int:
        return self.entries.total_size()

    @classmethod
    def from_pieces(cls, pieces: Iterable[bytes], where: str) -> "TreeManifest":
        """A tree parsed as the pieces of its canonical encoding arrive (the decompressed
        document is never whole: ~75 MB for a million files); its id is the source's to check
        (`PackStore.iter_decoded`).  NotCanonical: decode it whole instead."""
        parser = _TreeParser(where)
        for piece in pieces:
            parser.feed(piece)
        parser.close()
        return cls(parser.take())

    @classmethod
    def decode(cls, data: bytes, expect_id: bytes | None = None) -> "TreeManifest":
        where = to_oid(expect_id) if expect_id else "tree manifest"
        if expect_id is not None and digest(data) != expect_id:
            raise CorruptObjectError(where, "the cache", to_oid(expect_id), to_oid(digest(data)))
        # Counted before parsing: json.loads of a hostile tree would build every entry first.
        n_entries = data.count(b"],[") + 1
        if len(data) > MAX_TREE_BYTES or n_entries > MAX_TREE_ENTRIES:
            raise CorruptObjectError(where, "the cache", f"a tree of at most {MAX_TREE_ENTRIES} files",
                                     f"{n_entries} entries in {len(data)} bytes")
        try:
            try:
                return cls(_parse_canonical(data, where))
            except NotCanonical:
                entries = cls._parse_json(data, where)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, (CorruptObjectError, UnsafePathError)):
                raise
            raise CorruptObjectError(where, "the cache", "a tree manifest", "unreadable JSON") from None
        for e in entries:
            if len(e.file_id) != 16:
                raise CorruptObjectError(where, "the cache", "16-byte file ids", "another length")
        return cls.build(entries)

    @staticmethod
    def _parse_json(data: bytes, where: str) -> list[TreeEntry]:
        doc = json.loads(data)
        if doc.get("mlvc_tree") != TREE_FORMAT:
            raise CorruptObjectError(where, "the cache", f"tree format {TREE_FORMAT}", str(doc.get("mlvc_tree")))
        return [TreeEntry(validate_relpath(p, where, below_dir=True), int(s), bytes.fromhex(h), bool(x))
                for p, s, h, x in doc["entries"]]
