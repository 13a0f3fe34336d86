"""What `mlvc gc --repack` re-encodes: the chunks of the kept checkpoints' float tensors, each
with the chunk of the same tensor (name, dtype, shape) at the same offset in the version it is
stored against (`mlvc.store.repack.ChunkHint`).

The versions are taken in the order they were made: the commits oldest first (a pointer file's
history), then the workspace, then what other repositories sharing the cache keep.  A file's
base is chosen as `add` chooses it (`mlvc.ops.add_bases`): the previous checkpoint of its
directory in the same version, in natural order (a run's `step_40.pt`, `step_80.pt`, ...),
else the previous version of the same path (a `last.pt` overwritten and committed).  A file
stored twice (an unchanged checkpoint in a later commit) is looked at once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .. import pointer as pointers
from ..errors import MlvcError
from ..store.packs import CHUNK
from ..store.repack import ChunkHint
from .add_bases import FloatRegions, TensorKey
from .common import file_manifest, load_entries, natural_key, select

if TYPE_CHECKING:
    from ..repo import Repo
    from ..store.types import ObjectReader

MIN_FILE = 64 * 1024  # smaller files are not read for a checkpoint layout (as `add`)
_MAPS_KEPT = 8  # chunk maps of recent files kept (a base is usually the file just before)

ChunkRefs = list[tuple[bytes, int]]


def versions_in_order(repo: Repo, kept: list[pointers.PointerFile],
                      history: bool = True) -> list[tuple[str, pointers.PointerFile]]:
    """The kept pointers, each with its pointer file's path (what names one path's versions),
    the oldest first (`history=False`: the workspace's, then the others, without reading git:
    gc keeps no older version)."""
    wanted = {(p.kind, p.oid): p for p in kept}
    placed: set[tuple[str, str]] = set()
    out: list[tuple[str, pointers.PointerFile]] = []

    def place(key: str, ptr: pointers.PointerFile) -> None:
        k = (ptr.kind, ptr.oid)
        if k in wanted and k not in placed:
            placed.add(k)
            out.append((key, ptr))

    if history and repo.has_git:
        from ..git import GitRepo
        from .log import History

        git = GitRepo(repo.root)
        try:
            if git.has_commits():
                hist = History(git, set(), None)
                for info in reversed(git.all_commits()):  # oldest first
                    new, old = hist.commit_trees(info.sha)
                    for rel, _old_blob, blob in sorted(hist.changed(new, old)):
                        if blob is not None:
                            ptr = hist.pointer(blob, f"{rel} at {info.short}")
                            if not isinstance(ptr, MlvcError):
                                place(rel, ptr)
        finally:
            git.close()
    for t in select(repo):
        if t.ptr is not None:
            place(t.rel_pointer, t.ptr)
    for p in kept:  # other repositories' (a shared cache): each its own path
        place(f"{p.path} ({p.oid})", p)
    return out


def _layout(store: ObjectReader, fid: bytes, name: str) -> tuple[FloatRegions, ChunkRefs] | None:
    """Where a stored file's float tensors lie and its chunks; None for anything but a
    checkpoint with float tensors (or one that cannot be read: it is left as it is)."""
    from .. import checkpoint as ckpt
    from .chunked_reader import ChunkedFile

    try:
        fm = file_manifest(store, fid)
        if not fm.chunks:
            return None
        first, length = fm.chunks[0]
        if length >= ckpt.HEAD_SIZE and ckpt.detect_format(store.get(CHUNK, first)[:ckpt.HEAD_SIZE], name) is None:
            return None  # one read tells most files (a dataset's) from checkpoints
        reader = ChunkedFile(store, fm.chunks, name=name)
        if ckpt.detect_format(reader.read(ckpt.HEAD_SIZE), name) is None:
            return None
        reader.seek(0)
        floats = FloatRegions.of(ckpt.read_layout(reader))
    except Exception:  # noqa: BLE001 - not a checkpoint mlvc reads: its chunks stay as they are
        return None
    return (floats, list(fm.chunks)) if floats is not None else None


class _Maps:
    """The chunk maps (tensor key -> (chunk id, length)) of the files recently looked at."""

    def __init__(self, store: ObjectReader) -> None:
        self._store = store
        self._maps: OrderedDict[bytes, dict[TensorKey, tuple[bytes, int]] | None] = OrderedDict()

    def put(self, fid: bytes, floats: FloatRegions, chunks: ChunkRefs) -> None:
        out: dict[TensorKey, tuple[bytes, int]] = {}
        pos = 0
        for oid, length in chunks:
            if (key := floats.key_at(pos)) is not None:
                out[key] = (oid, length)
            pos += length
        self._keep(fid, out)

    def get(self, fid: bytes, name: str) -> dict[TensorKey, tuple[bytes, int]] | None:
        if fid in self._maps:
            self._maps.move_to_end(fid)
            return self._maps[fid]
        got = _layout(self._store, fid, name)
        if got is None:
            self._keep(fid, None)
            return None
        self.put(fid, *got)
        return self._maps[fid]

    def _keep(self, fid: bytes, m: dict[TensorKey, tuple[bytes, int]] | None) -> None:
        self._maps[fid] = m
        self._maps.move_to_end(fid)
        while len(self._maps) > _MAPS_KEPT:
            self._maps.popitem(last=False)


def chunk_hints(store: ObjectReader, versions: list[tuple[str, pointers.PointerFile]]) -> Iterator[list[ChunkHint]]:
    """One list of hints per kept checkpoint file (each file once), in the order of `versions`."""
    maps = _Maps(store)
    done: set[bytes] = set()
    checkpoints: set[bytes] = set()  # the files of `done` with float tensors
    previous: dict[tuple[str, str], tuple[bytes, str]] = {}  # (pointer path, file) -> last version's id
    for key, ptr in versions:
        try:
            entries = [e for e in load_entries(store, ptr) if e.size >= MIN_FILE]
        except MlvcError:
            continue  # its tree is not in this cache: nothing of it to repack
        entries.sort(key=lambda e: natural_key(e.path))
        sibling: dict[str, tuple[bytes, str]] = {}  # directory -> its last checkpoint in this version
        for e in entries:
            name = os.path.basename(e.path) or os.path.basename(ptr.path)
            fid, where = e.file_id, (key, e.path)
            before = sibling.get(os.path.dirname(e.path)) or previous.get(where)
            previous[where] = (fid, name)
            if fid in done:
                if fid in checkpoints:
                    sibling[os.path.dirname(e.path)] = (fid, name)
                continue
            done.add(fid)
            got = _layout(store, fid, name)
            if got is None:
                continue
            floats, chunks = got
            checkpoints.add(fid)
            maps.put(fid, floats, chunks)
            sibling[os.path.dirname(e.path)] = (fid, name)
            base = maps.get(*before) if before is not None and before[0] != fid else None
            hints: list[ChunkHint] = []
            pos = 0
            for oid, length in chunks:
                width, skip = floats.at(pos, length)
                if width:
                    on = None
                    if base is not None and (tk := floats.key_at(pos)) is not None:
                        b = base.get(tk)
                        if b is not None and b[1] == length and b[0] != oid:
                            on = b[0]
                    hints.append(ChunkHint(oid, length, width, skip, on))
                pos += length
            yield hints

