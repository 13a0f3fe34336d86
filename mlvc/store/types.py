"""The small named types that cross the store layer's seams.

- `Key`: an object's (type, 16-byte id), as the pack format keys it.
- `Location`: where a published object lies, as `PackStore.location` answers: the pack
  by *name* (what other stores and messages know it by).
- `PackedLocation`: the same by pack *number* (this process's own numbering of the packs it
  loaded), as the object table answers.  Looked up per object, a million times in a large
  transfer, so it stays a plain tuple: the type is named in annotations only.
- `StoredItem`: one object as `PackStore.iter_stored` reads it (payload as stored, data, error).
- `Pending`: an object in a pack this process is still writing (its writer and index entry).
- `Root` / `RootLike`: what the store reads of an artifact's pointer (kind, oid, size).
- `ObjectReader`: what reads verified objects; the cache, a remote `PackStore` and
  `mlvc.ops.object_source.ObjectSource` all are one (checked by mypy where each is defined).
- `Artifact` / `TransferResult`: what `mlvc.store.transfer.transfer` is asked to copy, and what
  it answers (failures as the typed errors that stopped each artifact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple, Protocol, Union

from ..errors import MlvcError, describe
from ..hashing import from_oid
from ..objects import TreeManifest
from .packs import FILE_MANIFEST, TREE_MANIFEST, IndexEntry, PackWriter

Key = tuple[int, bytes]  # (object type, 16-byte id)

# (pack number, codec, offset, stored length, raw length): the object table's answer
PackedLocation = tuple[int, int, int, int, int]

# (key, codec, stored payload, raw length, data, error): one object read by `PackStore.iter_stored`
# (a plain tuple: made per object, a million times in a large transfer)
StoredItem = tuple[Key, int, Union[bytes, memoryview], int, Union[bytes, memoryview, None], Union[MlvcError, None]]


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


@dataclass
class Artifact:
    name: str  # what messages call it: the artifact path (plus @commit for other revisions)
    ptr: RootLike  # a `Root`, or the mlvc.pointer.PointerFile it came from (kept for the caller)
    pointer_path: Path | None = None  # the workspace pointer, None for other commits

    @property
    def root(self) -> Key:
        return root_key(self.ptr)


@dataclass
class TransferResult:
    done: list[str] = field(default_factory=list)  # artifacts complete at the destination now
    up_to_date: list[str] = field(default_factory=list)  # of those, the ones nothing had to move for
    failed: dict[str, MlvcError] = field(default_factory=dict)  # artifact -> what stopped it (the first)
    objects: int = 0  # objects moved
    bytes: int = 0  # bytes moved (as stored: compressed where it paid)
    packs: int = 0  # packs published at the destination (written or copied whole)
    requests: int = 0  # data requests to remote stores (reads of packs, uploads of packs and indexes)

    @property
    def failed_codes(self) -> dict[str, int]:
        """{artifact: the exit code of what stopped it}."""
        return {name: exc.exit_code for name, exc in self.failed.items()}

    def fail(self, name: str, exc: MlvcError) -> None:
        self.failed.setdefault(name, exc)

    def as_dict(self, describe: Callable[[MlvcError], str] = describe) -> dict[str, object]:
        """The result as plain data (`--json`): each failure as one line (`describe`: how; the
        CLI adds its commands to the hint) and its exit code in `failed_codes`."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "failed"}
        out["failed"] = {name: describe(exc) for name, exc in self.failed.items()}
        out["failed_codes"] = self.failed_codes
        return out


__all__ = ["Key", "Location", "PackedLocation", "Pending", "Root", "RootLike", "root_key", "ObjectReader",
           "Artifact", "TransferResult"]
