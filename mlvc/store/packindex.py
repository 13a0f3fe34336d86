"""The object table side of a store: which packs are visible and where each object lies.

`PackIndex` lists a backend's ``packs/``, loads each visible pack's index (verified by its
name, the checksum), keeps downloaded indexes of a remote in `index_cache` (named by their
checksum, so valid forever) and answers lookups from an `ObjectTable` (merged tables are kept
between runs in `merged_dir`).  `PackStore` builds its reads and writes on it.

A pack is visible when both its index and its pack file are listed: publishing writes the pack
first, gc and quarantine remove the index first, so an index never names a missing pack unless
something outside mlvc damaged the store.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..atomic import write_bytes
from ..errors import CorruptObjectError, ObjectNotFoundError
from ..hashing import is_hex_name, to_oid
from .backend import Backend
from .objecttable import ObjectTable
from .packs import IndexEntry, check_index, decode_index, index_name
from .types import Location

PACKS = "packs/"
RESCAN_INTERVAL = 1.0  # seconds: `has_any` lists the store again on a miss at most this often


class PackIndex:
    """The visible packs of one backend and their objects' locations.

    `name`: the store's name in messages.  `index_cache`: where downloaded indexes are kept
    (None: read from the backend each run; the cache's own indexes are local anyway).
    `merged_dir`: where merged object tables are kept between runs (default: `index_cache`'s
    ``merged/``, or nowhere).  `jobs`: indexes downloaded at once.
    """

    def __init__(self, backend: Backend, *, name: str, index_cache: Path | None = None,
                 merged_dir: Path | None = None, jobs: int = 1) -> None:
        self.backend = backend
        self.name = name
        self.index_cache = Path(index_cache) if index_cache is not None else None
        self.merged_dir = Path(merged_dir) if merged_dir is not None else self.index_cache_dir(index_cache)
        self.jobs = max(1, jobs)
        self.problems: list[CorruptObjectError] = []  # indexes that could not be read (their objects count as missing)
        self.indexes_without_pack: list[str] = []  # as of the last listing
        self.packs_without_index: list[str] = []  # orphans: a writer died between pack and index
        self._lock = threading.Lock()
        self._refreshed_at = -RESCAN_INTERVAL  # time.monotonic() of the last listing
        self._reset_index()

    @staticmethod
    def index_cache_dir(index_cache: Path | None) -> Path | None:
        return Path(index_cache) / "merged" if index_cache is not None else None

    def _reset_index(self) -> None:
        self._pack_names: list[str] = []
        self._pack_no: dict[str, int] = {}
        self._table = ObjectTable(self.merged_dir)
        self._loaded = False

    def _packs_removed(self) -> None:
        """Called, with the lock held, when a listing no longer shows packs this index loaded
        (a gc removed them), before the index is rebuilt: a subclass closes what reads them."""

    def _read_index(self, pack: str) -> bytes | None:
        """Index bytes of a listed pack, verified by name (None: deleted since the listing)."""
        cached = self.index_cache / f"{pack}.idx" if self.index_cache is not None else None
        if cached is not None:
            try:
                data = cached.read_bytes()
                if index_name(data) == pack:
                    return data
            except OSError:
                pass
        try:
            data = self.backend.get_bytes(f"{PACKS}{pack}.idx")
        except ObjectNotFoundError:
            return None
        if cached is not None and index_name(data) == pack:
            self._save_index(pack, data)
        return data

    def _save_index(self, pack: str, data: bytes) -> None:
        if self.index_cache is None:
            return
        try:
            self.index_cache.mkdir(parents=True, exist_ok=True)
            write_bytes(self.index_cache / f"{pack}.idx", data)
        except OSError:
            pass  # downloaded indexes are an optimisation only

    def index_bytes(self, pack: str) -> bytes:
        data = self._read_index(pack)
        if data is None:
            raise ObjectNotFoundError(f"pack index {pack}", where=self.name)
        return data

    def listed_packs(self) -> list[str]:
        """Names of the visible packs (index and pack file both listed), sorted.

        An index whose pack file is gone is damage (publishing writes the pack first; gc and
        quarantine remove the index first): its objects count as missing, so a push uploads
        them again, and `verify` reports it."""
        keys = self.backend.list(PACKS)
        idx: set[str] = set()
        packs: set[str] = set()
        for k in keys:
            stem, _, ext = k[len(PACKS):].rpartition(".")
            if "/" in stem or not is_hex_name(stem):
                continue
            (idx if ext == "idx" else packs if ext == "pack" else set()).add(stem)
        self.indexes_without_pack = sorted(idx - packs)
        self.packs_without_index = sorted(packs - idx)
        return sorted(idx & packs)

    def refresh(self) -> int:
        """Load indexes published since the last call (by us or others); forget removed ones."""
        names = self.listed_packs()
        self._refreshed_at = time.monotonic()
        added = 0
        with self._lock:
            removed = set(self._pack_no) - set(names)
            if removed:
                self._packs_removed()
                self._table.drop_runs_with(removed)
                self._reset_index()  # a gc removed packs: rebuild rather than serve stale locations
            if not self._pack_no:
                adopted = self._table.adopt_merged(set(names))
                for pack in adopted or ():
                    self._pack_no[pack] = len(self._pack_names)
                    self._pack_names.append(pack)
                    added += 1
            self._loaded = True
        todo = [n for n in names if n not in self._pack_no]
        if not todo:
            return added

        def load(pack: str) -> tuple[str, bytes | None, CorruptObjectError | None]:
            data = self._read_index(pack)
            if data is None:
                return pack, None, None
            try:
                check_index(data, f"pack index {pack} ({self.name})")
            except CorruptObjectError as exc:
                return pack, None, exc
            if index_name(data) != pack:
                return pack, None, CorruptObjectError(f"pack index {pack}", self.name, f"checksum {pack}",
                                                      f"checksum {index_name(data)}")
            return pack, data, None

        if len(todo) > 1 and self.index_cache is not None:
            with ThreadPoolExecutor(max_workers=min(self.jobs * 2, 16)) as pool:
                loaded = list(pool.map(load, todo))
        else:
            loaded = [load(n) for n in todo]
        with self._lock:
            for pack, idx, problem in loaded:
                if problem is not None and str(problem) not in map(str, self.problems):
                    self.problems.append(problem)
                if idx is not None and pack not in self._pack_no:
                    self._add_pack(pack, idx)
                    added += 1
        self._prune_index_cache(set(names))
        self._merge_if_due()
        return added

    def _prune_index_cache(self, listed: set[str]) -> None:
        if self.index_cache is None:
            return
        try:
            cached = os.listdir(self.index_cache)
        except OSError:
            return
        for fname in cached:
            if fname.endswith(".idx") and not fname.startswith(".") and fname[:-4] not in listed:
                try:
                    os.unlink(self.index_cache / fname)
                except OSError:
                    pass

    def _add_pack(self, pack: str, idx: bytes) -> None:
        """Make a published pack's objects findable (caller holds the lock; `idx` is intact)."""
        no = len(self._pack_names)
        self._table.add_pack(no, idx)
        self._pack_names.append(pack)
        self._pack_no[pack] = no

    def _merge_if_due(self) -> None:
        """Fold recently added pack tables into the merged table (in the calling thread: a
        merge of a million objects takes a second, which lookups must not wait for)."""
        if self._table.needs_merge():
            with self._lock:
                names = list(self._pack_names)
            self._table.merge(names)

    def pack_bytes(self, pack: str) -> int:
        """Bytes of a visible pack's records (0 if unknown)."""
        self._ensure_loaded()
        no = self._pack_no.get(pack)
        return self._table.sizes.get(no, 0) if no is not None else 0

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def count(self) -> int:
        self._ensure_loaded()
        return self._table.count()

    def iter_ids(self, typ: int) -> Iterator[bytes]:
        """Each published id of a type once, in id order (streamed: not a list of millions)."""
        self._ensure_loaded()
        return self._table.iter_ids(typ)

    def pack_names(self) -> list[str]:
        self._ensure_loaded()
        return list(self._pack_names)

    def location(self, typ: int, oid: bytes) -> Location:
        """Where a published object lies (its pack by name)."""
        self._ensure_loaded()
        loc = self._table.get(typ, oid)
        if loc is None:
            raise ObjectNotFoundError(to_oid(oid), where=self.name)
        no, c, off, stored, raw = loc
        return Location(self._pack_names[no], c, off, stored, raw)

    def pack_entries(self, pack: str) -> list[IndexEntry]:
        """Every record of a visible pack, in pack order."""
        return sorted(decode_index(self.index_bytes(pack), f"pack index {pack} ({self.name})"),
                      key=lambda e: e.offset)


__all__ = ["PackIndex", "PACKS", "RESCAN_INTERVAL"]
