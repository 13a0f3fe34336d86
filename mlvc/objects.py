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
import struct
from dataclasses import dataclass

from .chunking import ChunkerParams
from .errors import CorruptObjectError, UnsafePathError
from .hashing import digest, to_oid

FILE_MAGIC = b"MLVCFILE"
TREE_FORMAT = 1
FILE_FORMAT = 1

# Bounds on what one tree manifest may make a reader build (a 1.3 M-file ImageNet fits well):
# a tree past them is refused before it is parsed, not allocated entry by entry.
MAX_TREE_ENTRIES = 2_000_000
MAX_TREE_BYTES = 128 * 1024 * 1024

_FILE_HEAD = struct.Struct("<8sB16sQIIII")
_CHUNK_REF = struct.Struct("<16sI")


def validate_relpath(path: str, where: str = "manifest") -> str:
    """Return `path` if it is a safe relative POSIX path, else raise UnsafePathError."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(where, f"empty or non-text path {path!r}")
    if "\0" in path or path.startswith("/") or "\\" in path and path.startswith("\\"):
        raise UnsafePathError(where, f"unsafe path {path!r}")
    if len(path) > 1 and path[1] == ":" and path[0].isalpha():
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

    @classmethod
    def decode(cls, data: bytes, expect_id: bytes | None = None) -> "FileManifest":
        oid_text = to_oid(expect_id) if expect_id else "file manifest"
        if len(data) < _FILE_HEAD.size + 16 or digest(data[:-16]) != data[-16:]:
            raise CorruptObjectError(oid_text, "the cache", "a valid file manifest", "damaged bytes")
        magic, version, cid, size, mn, avg, mx, n = _FILE_HEAD.unpack_from(data, 0)
        if magic != FILE_MAGIC or version != FILE_FORMAT:
            raise CorruptObjectError(oid_text, "the cache", f"file manifest v{FILE_FORMAT}", f"v{version}")
        if expect_id is not None and cid != expect_id:
            raise CorruptObjectError(oid_text, "the cache", to_oid(expect_id), to_oid(cid))
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


@dataclass(frozen=True, slots=True)
class TreeManifest:
    entries: tuple[TreeEntry, ...]

    @classmethod
    def build(cls, entries) -> "TreeManifest":
        ordered = tuple(sorted(entries, key=lambda e: e.path))
        seen = None
        for e in ordered:
            validate_relpath(e.path)
            if e.path == seen:
                raise UnsafePathError("manifest", f"duplicate path {e.path!r}")
            seen = e.path
        return cls(ordered)

    def encode(self) -> bytes:
        doc = {
            "mlvc_tree": TREE_FORMAT,
            "hash": "xxh3-128",
            "entries": [[e.path, e.size, e.file_id.hex(), int(e.executable)] for e in self.entries],
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    def oid(self) -> bytes:
        return digest(self.encode())

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

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
            doc = json.loads(data)
            if doc.get("mlvc_tree") != TREE_FORMAT:
                raise CorruptObjectError(where, "the cache", f"tree format {TREE_FORMAT}",
                                         str(doc.get("mlvc_tree")))
            entries = [TreeEntry(validate_relpath(p, where), int(s), bytes.fromhex(h), bool(x))
                       for p, s, h, x in doc["entries"]]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, (CorruptObjectError, UnsafePathError)):
                raise
            raise CorruptObjectError(where, "the cache", "a tree manifest", "unreadable JSON") from None
        for e in entries:
            if len(e.file_id) != 16:
                raise CorruptObjectError(where, "the cache", "16-byte file ids", "another length")
        return cls.build(entries)
