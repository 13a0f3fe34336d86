"""What the chunks of a file `add` stores are stored against: where a checkpoint's float
tensors lie (`FloatRegions`: the width and phase of each chunk's floats, its tensor identity),
where the blocks of one version lie by tensor (`ChunkMap`), and which version each file of an
add is a delta against (`Bases`: the previous checkpoint of its directory, else the previous
version of its path)."""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .. import pointer as pointers
from ..codec import FLOAT_WIDTHS
from ..errors import MlvcError
from ..hashing import from_oid
from ..objects import TreeEntries
from ..workspace import FileStat

if TYPE_CHECKING:
    from ..checkpoint import CheckpointLayout
    from ..store.types import ObjectReader


class HasFileno(Protocol):
    """An open file, read here by descriptor."""

    def fileno(self) -> int: ...


Tensor = tuple[str, str, tuple[int, ...]]  # a tensor's name, dtype and shape
TensorKey = tuple[str, str, tuple[int, ...], int]  # ... and a chunk's offset inside it


@dataclass
class ChunkMap:
    """Where the fixed blocks of one version of a checkpoint's float tensors lie, by tensor name,
    dtype, shape and offset inside the tensor (never by file offset: torch.save writes the file's
    name into every zip record, so the same tensor lies elsewhere in a file saved under another
    name).  The chunks of the next version are stored as deltas against these."""

    chunks: dict[TensorKey, tuple[bytes, int, int]]  # key -> (chunk id, length, offset in the file)
    path: Path | None = None  # a file on disk holding these bytes (a sibling just added), else None


class FloatRegions:
    """Where a checkpoint's float tensors lie, so that each chunk can be stored as byte planes
    of the right width and phase (`codec.encode_planes`), and its tensor identity (what a delta
    follows).  Built from the layout `add` reads anyway (torch zip, safetensors); only a
    compression hint: any choice restores the same bytes."""

    def __init__(self, starts: list[int], ends: list[int], widths: list[int], tensors: list[Tensor]):
        self._starts, self._ends, self._widths, self._tensors = starts, ends, widths, tensors

    @classmethod
    def of(cls, layout: CheckpointLayout | None) -> FloatRegions | None:
        if layout is None:
            return None
        regions = sorted((t.offset, t.offset + t.nbytes, FLOAT_WIDTHS[t.dtype], (t.name, t.dtype, tuple(t.shape)))
                         for t in layout.tensors if t.dtype in FLOAT_WIDTHS and t.nbytes > 0)
        if not regions:
            return None
        starts, ends, widths, tensors = (list(col) for col in zip(*regions, strict=True))
        return cls(starts, ends, widths, tensors)

    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def key_at(self, offset: int) -> TensorKey | None:
        """The tensor key of a chunk starting at `offset` (a fixed block of a float tensor)."""
        i = bisect_right(self._starts, offset) - 1
        if i < 0 or offset >= self._ends[i]:
            return None
        return (*self._tensors[i], offset - self._starts[i])

    @classmethod
    def of_npy(cls, f: HasFileno, size: int) -> FloatRegions | None:
        """The one float array of a `.npy` file (numpy's format: magic, version, header length,
        a dict literal naming `descr`), from its first bytes; None for anything else."""
        head = os.pread(f.fileno(), 512, 0)
        if not head.startswith(b"\x93NUMPY") or len(head) < 12:
            return None
        if head[6] == 1:
            start, header_len = 10, int.from_bytes(head[8:10], "little")
        else:
            start, header_len = 12, int.from_bytes(head[8:12], "little")
        match = _NPY_DESCR.search(head[start:start + header_len])
        if match is None or start + header_len > size:
            return None
        order, kind, itemsize = match.group(1), match.group(2), int(match.group(3))
        width = itemsize // 2 if kind == b"c" else itemsize
        if kind not in (b"f", b"c") or order == b">" or width not in (2, 4, 8):
            return None
        return cls([start + header_len], [size], [width], [("", descr_name(order, kind, itemsize), ())])

    def at(self, offset: int, length: int) -> tuple[int, int]:
        """(width, skip) for the chunk at `offset`: the float region under its middle byte
        ((0, 0) when none)."""
        mid = offset + length // 2
        i = bisect_right(self._starts, mid) - 1
        if i < 0 or mid >= self._ends[i]:
            return 0, 0
        width = self._widths[i]
        return width, (self._starts[i] - offset) % width


def descr_name(order: bytes, kind: bytes, itemsize: int) -> str:
    return (order + kind).decode("ascii") + str(itemsize)


_NPY_DESCR = re.compile(rb"'descr':\s*'([<>|=]?)([fcius])(\d+)'")


def stored_chunk_map(store: ObjectReader, fid: bytes, name: str) -> ChunkMap | None:
    """The chunk map of a version of a checkpoint that is only in the store (the previous version
    of an overwritten `last.pt`): its layout read through its chunks, matched to its chunk list.
    None when it is not a checkpoint with float tensors, or cannot be read."""
    from .. import checkpoint as ckpt
    from .chunked_reader import ChunkedFile
    from .common import file_manifest

    try:
        fm = file_manifest(store, fid)
        reader = ChunkedFile(store, fm.chunks, name=name)
        if ckpt.detect_format(reader.read(ckpt.HEAD_SIZE), name) is None:
            return None
        reader.seek(0)
        floats = FloatRegions.of(ckpt.read_layout(reader))
    except Exception:  # noqa: BLE001 - no base: the new version is stored on its own
        return None
    if floats is None:
        return None
    chunks: dict[TensorKey, tuple[bytes, int, int]] = {}
    pos = 0
    for oid, length in fm.chunks:
        if (key := floats.key_at(pos)) is not None:
            chunks[key] = (oid, length, pos)
        pos += length
    return ChunkMap(chunks) if chunks else None


class Bases:
    """Which chunk map each file of an `add` is stored against (`store_file`'s `base`): the
    previous checkpoint of its directory in natural order (a run's `step_000040.pt`,
    `step_000080.pt`, ... added at once), else the previous version of the same path (a
    `last.pt` overwritten after each save: the pointer's id before this add)."""

    def __init__(self, store: ObjectReader, old: pointers.PointerFile | None, name: str) -> None:
        self._store = store
        self._name = name  # the artifact's file name (a file artifact's checkpoint format may depend on it)
        self._old = old
        self._old_entries: TreeEntries | None = None
        self._last: dict[str, tuple[FileStat, bytes, ChunkMap | None]] = {}  # directory -> its last file
        self.choice = DeltaChoice()  # which way each tensor's blocks are encoded, learnt over the add

    def stored(self, fs: FileStat, fid: bytes, chunk_map: ChunkMap | None) -> None:
        self._last[os.path.dirname(fs.rel)] = (fs, fid, chunk_map)

    def for_file(self, fs: FileStat) -> Callable[[], ChunkMap | None]:
        return lambda: self._base_of(fs)

    def _base_of(self, fs: FileStat) -> ChunkMap | None:
        sibling = self._last.get(os.path.dirname(fs.rel))
        if sibling is not None:
            sfs, sfid, smap = sibling
            if smap is None:  # stored by an earlier add: its map from the store, its bytes on disk
                smap = stored_chunk_map(self._store, sfid, os.path.basename(sfs.rel))
                if smap is not None:
                    smap.path = sfs.path
                    self._last[os.path.dirname(fs.rel)] = (sfs, sfid, smap)
            if smap is not None:
                return smap
        fid = self._previous_id(fs.rel)
        return stored_chunk_map(self._store, fid, os.path.basename(fs.rel) or self._name) if fid else None

    def _previous_id(self, rel: str) -> bytes | None:
        old = self._old
        if old is None:
            return None
        try:
            if old.kind == "file":
                return from_oid(old.oid) if rel == "" else None
            entries = self._old_entries
            if entries is None:
                entries = self._old_entries = self._store.tree(from_oid(old.oid)).entries
            entry = entries.find(rel)
        except MlvcError:
            return None
        return entry.file_id if entry is not None else None


class DeltaChoice:
    """Which way to encode the blocks of a tensor that have a base: as a delta, on their own, or
    both ways to keep the smaller.  Encoding both ways costs twice, and within a tensor the
    answer rarely changes (a training run's weights and bf16 copies delta well, Adam's exp_avg
    never does), so the first `LEARN` blocks of a tensor are encoded both ways, then only the
    way that won them, with every `PROBE`-th block encoded both ways again: a probe that
    disagrees starts the learning over.  Keyed by tensor (name, dtype, shape), shared by the files
    of one `add` (a run's checkpoints hold the same tensors).  Only a cost choice: any way
    restores the same bytes."""

    BOTH, DELTA, OWN = 0, 1, 2
    LEARN = 2
    PROBE = 16

    def __init__(self) -> None:
        self._tensors: dict[Tensor, list[int]] = {}  # -> [way that won, wins in a row, blocks]

    def way(self, tensor: Tensor) -> int:
        state = self._tensors.get(tensor)
        if state is None:
            state = self._tensors[tensor] = [self.BOTH, 0, 0]
        state[2] += 1
        if state[1] < self.LEARN or state[2] % self.PROBE == 0:
            return self.BOTH
        return state[0]

    def learn(self, tensor: Tensor, delta_won: bool) -> None:
        state = self._tensors[tensor]
        won = self.DELTA if delta_won else self.OWN
        if state[0] == won:
            state[1] += 1
        else:
            state[0], state[1] = won, 1
