"""The small named types that cross the store layer's seams.

- `Key`: an object's (type, 16-byte id), as the pack format keys it.
- `Location`: where a published object lies, as `PackStore.location` answers: the pack
  by *name* (what other stores and messages know it by).
- `PackedLocation`: the same by pack *number* (this process's own numbering of the packs it
  loaded), as the object table answers.  Looked up per object, a million times in a large
  transfer, so it stays a plain tuple: the type is named in annotations only.
- `Pending`: an object in a pack this process is still writing (its writer and index entry).
- `Root` / `RootLike`: what the store reads of an artifact's pointer (kind, oid, size).
- `ObjectReader`: what reads verified objects; the cache, a remote `PackStore` and
  `mlvc.ops.object_source.ObjectSource` all are one (checked by mypy where each is defined).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..hashing import from_oid
from ..objects import TreeManifest
from .packs import FILE_MANIFEST, TREE_MANIFEST, IndexEntry, PackWriter

Key = tuple[int, bytes]  # (object type, 16-byte id)

# (pack number, codec, offset, stored length, raw length): the object table's answer
PackedLocation = tuple[int, int, int, int, int]


class Location(NamedTuple):
    """A published object's place: `pack` is the pack's name (hex of its index checksum)."""

    pack: str
    codec: int
    offset: int
    stored: int  # bytes of the record's payload in the pack
    raw: int  # bytes of the object once decoded


class Pending(NamedTuple):
    """An object appended to a pack this process has not published yet."""

    writer: PackWriter
    entry: IndexEntry


class RootLike(Protocol):
    """What the store reads of a pointer: `mlvc.pointer.PointerFile` and `Root` both are one."""

    @property
    def kind(self) -> str: ...  # "file" or "dir"

    @property
    def oid(self) -> str: ...  # hex id of the file's or tree's manifest

    @property
    def size(self) -> int: ...  # bytes of content below it


@dataclass(frozen=True, slots=True)
class Root:
    """An artifact's root object, as the store knows it (no pointer file needed)."""

    kind: str  # "file" or "dir"
    oid: str
    size: int = 0


def root_key(root: RootLike) -> Key:
    """The store key of a root: a tree manifest for a directory, else a file manifest."""
    return (TREE_MANIFEST if root.kind == "dir" else FILE_MANIFEST, from_oid(root.oid))


class ObjectReader(Protocol):
    """Reads verified objects (each checked against its id) by key."""

    def get(self, typ: int, oid: bytes) -> bytes: ...

    def tree(self, oid: bytes) -> TreeManifest: ...

    def iter_chunks(self, chunk_ids: Iterable[tuple[bytes, int]]) -> Iterator[bytes | memoryview]: ...


__all__ = ["Key", "Location", "PackedLocation", "Pending", "Root", "RootLike", "root_key", "ObjectReader"]
