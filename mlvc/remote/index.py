"""What a remote holds: the union of its pack indexes, cached locally.

A remote has the cache's layout: ``packs/<name>.pack`` and ``packs/<name>.idx``.
An index is uploaded only after its pack is complete, so a listed ``.idx``
means a complete pack; a pack without an index (a push killed mid-way) is
invisible.  ``<name>`` is the xxh3-128 of the index body, so an index is
self-verifying and can be cached forever: downloaded indexes are kept under
``<cache>/remotes/<url key>/<name>.idx`` and each later push or fetch lists
``packs/`` (one request) and downloads only indexes it has not seen.  Only
indexes present in the current listing count, so an index deleted on the
remote makes its objects missing, never silently present.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import CorruptObjectError, ObjectNotFoundError
from ..hashing import digest, is_hex_name
from ..store.packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST, IndexEntry, decode_index, index_name

PACKS_PREFIX = "packs/"


def cache_dir_for(store_root: Path, url: str) -> Path:
    """Where the indexes of the remote at `url` are cached (keyed by URL, so a rename keeps it)."""
    return Path(store_root) / "remotes" / digest(url.encode()).hex()[:20]


def _parse_idx(data: bytes, name: str) -> list[IndexEntry]:
    entries = decode_index(data, f"remote pack index {name}")
    if index_name(data) != name:
        raise CorruptObjectError(f"pack index {name}", "the remote", f"an index named {name}",
                                 f"one whose checksum is {index_name(data)}")
    return entries


class RemoteIndex:
    """Objects on one remote: (type, id) -> (pack name, codec, offset, stored, raw)."""

    def __init__(self, backend, cache_dir: Path):
        self.backend = backend
        self.cache_dir = Path(cache_dir)
        self.pack_names: list[str] = []
        self.pack_sizes: dict[str, int] = {}
        self._no: dict[str, int] = {}
        self._raw: dict[str, bytes] = {}  # index bytes per pack (38 bytes an object)
        self._index: dict[int, dict[bytes, tuple]] = {CHUNK: {}, FILE_MANIFEST: {}, TREE_MANIFEST: {}}
        self.problems: list[str] = []  # unreadable indexes (their objects count as missing)
        self.downloaded = 0  # indexes fetched from the remote by the last load()

    # ------------------------------------------------------------------ load
    def load(self, jobs: int = 4) -> "RemoteIndex":
        keys = self.backend.list(PACKS_PREFIX)
        names = sorted({k[len(PACKS_PREFIX):-4] for k in keys
                        if k.endswith(".idx") and "/" not in k[len(PACKS_PREFIX):]
                        and is_hex_name(k[len(PACKS_PREFIX):-4])})
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        todo: list[str] = []
        for name in names:
            if name in self._no:
                continue
            path = self.cache_dir / f"{name}.idx"
            try:
                data = path.read_bytes()
                self._add(name, _parse_idx(data, name), data)
            except (OSError, CorruptObjectError):
                todo.append(name)

        def download(name: str) -> tuple[str, bytes | None, str | None]:
            try:
                data = self.backend.get_bytes(f"{PACKS_PREFIX}{name}.idx")
            except ObjectNotFoundError:
                return name, None, None  # deleted since the listing (gc): not there
            try:
                _parse_idx(data, name)
            except CorruptObjectError as exc:
                return name, None, str(exc)
            return name, data, None

        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, 16))) as pool:
                for name, data, problem in pool.map(download, todo):
                    if problem:
                        self.problems.append(problem)
                    if data is None:
                        continue
                    self._save(name, data)
                    self._add(name, _parse_idx(data, name), data)
                    self.downloaded += 1
        self._prune(set(names))
        return self

    def _save(self, name: str, data: bytes) -> None:
        tmp = self.cache_dir / f".{name}.idx.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.cache_dir / f"{name}.idx")
        except OSError:
            tmp.unlink(missing_ok=True)  # the cache of indexes is an optimisation only

    def _prune(self, listed: set[str]) -> None:
        try:
            cached = os.listdir(self.cache_dir)
        except OSError:
            return
        for fname in cached:
            if fname.endswith(".idx") and not fname.startswith(".") and fname[:-4] not in listed:
                try:
                    os.unlink(self.cache_dir / fname)
                except OSError:
                    pass

    def _add(self, name: str, entries: list[IndexEntry], data: bytes) -> None:
        no = len(self.pack_names)
        self._raw[name] = data
        self.pack_names.append(name)
        self._no[name] = no
        end = 0
        index = self._index
        for e in entries:
            if e.type in index:
                index[e.type].setdefault(e.oid, (no, e.codec, e.offset, e.stored, e.raw))
            end = max(end, e.offset + e.stored)
        self.pack_sizes[name] = end

    def add_uploaded(self, name: str, idx_bytes: bytes, entries: list[IndexEntry]) -> None:
        """Record a pack this process just published on the remote (and cache its index)."""
        if name in self._no:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._save(name, idx_bytes)
        self._add(name, entries, idx_bytes)

    # ------------------------------------------------------------------ queries
    def has(self, typ: int, oid: bytes) -> bool:
        return oid in self._index[typ]

    def location(self, typ: int, oid: bytes) -> tuple[str, int, int, int, int] | None:
        loc = self._index[typ].get(oid)
        if loc is None:
            return None
        no, c, off, stored, raw = loc
        return self.pack_names[no], c, off, stored, raw

    def entries_of(self, name: str) -> list[IndexEntry]:
        """All entries of one remote pack, in pack order."""
        return sorted(decode_index(self._raw[name], name), key=lambda e: e.offset)

    def index_bytes(self, name: str) -> bytes:
        return self._raw[name]

    def count(self) -> int:
        return sum(len(d) for d in self._index.values())
