"""`verify(store, ...)`: check a store (the cache or any remote), and the repairs it enables.

Checks, for every pack: its index decodes and is named by its checksum, its
pack file exists and is long enough for every record; every manifest record
decodes and matches its id.  With `read_data` every chunk record is read and
checked too; `subset` reads a random share of the packs instead.  Packs whose
index is missing (a writer died between the two) are listed as orphans.

Repairs never delete: `reindex_orphan` writes the missing index of a pack whose
records are all intact, and `quarantine` moves a damaged pack aside with a
record of why after copying its intact objects into new packs.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..codec import DELTA
from ..errors import CorruptObjectError, MlvcError
from ..hashing import to_oid
from ..progress import NULL, Progress
from ..objects import FileManifest, NotCanonical, TreeManifest
from .packs import (
    CHUNK,
    FILE_MANIFEST,
    TREE_MANIFEST,
    PACK_HEAD,
    pack_head_ok,
    RECORD,
    TYPE_NAMES,
    IndexEntry,
    decode_index,
    encode_index,
    index_name,
    record_size_error,
)
from .packindex import PACKS
from .packstore import PackStore
from .records import BaseRead, decode_verify, entries_in_runs, record_in_run


@dataclass
class Problem:
    pack: str
    message: str
    oid: str | None = None  # the damaged object, None when the whole pack is affected
    type: str | None = None


@dataclass
class VerifyReport:
    store: str
    packs: int = 0
    objects: int = 0
    packs_read: int = 0  # packs whose chunk records were read (all with read_data)
    problems: list[Problem] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # packs without an index

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_packs(self) -> list[str]:
        return sorted({p.pack for p in self.problems})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_record(e: IndexEntry, payload: bytes | memoryview, where: str, base: BaseRead | None = None) -> None:
    """What every reader checks of a record: its payload decodes to its id (`decode_verify`; a
    delta with its base, read by `base`: the base is checked too), and
    a manifest parses as the readers parse it (a file manifest's chunks add up and none is longer
    than its chunker allows; a tree's paths are safe and sorted).  MlvcError otherwise."""
    data = decode_verify(e.type, e.oid, e.codec, payload, e.raw, where, base=base)
    if e.type == FILE_MANIFEST:
        FileManifest.decode(bytes(data), e.oid)  # (a manifest is decoded as bytes: no copy)
    elif e.type == TREE_MANIFEST:
        try:
            TreeManifest.from_pieces([bytes(data)], to_oid(e.oid))  # as `PackStore.tree` reads it
        except NotCanonical:
            TreeManifest.decode(bytes(data), e.oid)


def _removed(store: PackStore, pack: str) -> bool:
    """Whether a pack listed when verify started was removed since, by a gc or repack beside it
    (index first: its live objects are in newer packs): not damage."""
    return pack not in store.listed_packs()


def _check_records(store: PackStore, pack: str, entries: list[IndexEntry], report: VerifyReport,
                   progress: Progress) -> None:
    where = f"pack {pack} ({store.name})"
    sane = []
    for e in entries:  # sizes first: a record claiming 4 GiB is never read
        err = record_size_error(e.type, e.oid, e.stored, e.raw, where)
        if err is not None:
            report.problems.append(Problem(pack, str(err), to_oid(e.oid), TYPE_NAMES.get(e.type)))
        else:
            sane.append(e)
    for run in entries_in_runs(sane):
        start = run[0].offset
        end = run[-1].offset + run[-1].stored
        try:
            buf = memoryview(store.read_stored(pack, start, end - start))
        except MlvcError as exc:
            if not _removed(store, pack):
                report.problems.append(Problem(pack, str(exc)))
            return
        for e in run:
            try:
                check_record(e, record_in_run(e, buf, start, where), where, store.base_reader())
            except MlvcError as exc:
                report.problems.append(Problem(pack, str(exc), to_oid(e.oid), TYPE_NAMES.get(e.type)))
            progress.advance(e.stored)


def _check_bases(store: PackStore, pack: str, entries: list[IndexEntry], report: VerifyReport) -> None:
    """Without reading the data: every delta's base is in the store (17 bytes of each delta
    record; a remote's are read with `--read-data`, when each delta is decoded with its base)."""
    where = f"pack {pack} ({store.name})"
    deltas = [e.oid for e in entries if e.type == CHUNK and e.codec == DELTA]
    if not deltas:
        return
    try:
        bases = store.delta_bases(deltas)
    except MlvcError as exc:
        report.problems.append(Problem(pack, str(exc)))
        return
    for oid, base in bases.items():
        if not store.has(CHUNK, base):
            report.problems.append(Problem(pack, f"object {to_oid(oid)} in {where} is a delta on "
                                                 f"{to_oid(base)}, which is missing", to_oid(oid), "chunk"))


def verify(store: PackStore, *, read_data: bool = True, subset: float | None = None,
           progress: Progress = NULL) -> VerifyReport:
    """Check `store`; `subset` (0 < s <= 1): read the chunks of that share of packs only."""
    report = VerifyReport(store.name)
    store.refresh()
    names = store.listed_packs()
    report.orphans = list(store.packs_without_index)
    for pack in store.indexes_without_pack:
        report.problems.append(Problem(pack, "index present but pack file missing"))
    chosen = set(names)
    if subset is not None:
        k = max(1, round(len(names) * subset)) if names else 0
        chosen = set(random.sample(names, k))
    elif not read_data:
        chosen = set()
    plans = []
    for pack in names:
        try:
            idx = store.index_bytes(pack)
            entries = decode_index(idx, f"pack index {pack} ({store.name})")
            if index_name(idx) != pack:
                raise CorruptObjectError(f"pack index {pack}", store.name, f"an index named {pack}",
                                         f"one whose checksum is {index_name(idx)}")
            size = store.backend.size(f"{PACKS}{pack}.pack")
        except MlvcError as exc:
            if _removed(store, pack):
                continue
            report.problems.append(Problem(pack, str(exc)))
            continue
        report.packs += 1
        report.objects += len(entries)
        end = max((e.offset + e.stored for e in entries), default=0)
        if size < end:
            report.problems.append(Problem(pack, f"pack file is {size} bytes, its index needs {end} (truncated)"))
            continue
        plans.append((pack, entries))
    total = sum(e.stored for pack, entries in plans for e in entries if pack in chosen or e.type != CHUNK)
    progress.start(f"verify {store.name}: {report.objects} objects", total)
    try:
        for pack, entries in plans:
            if pack in chosen:
                report.packs_read += 1
                _check_records(store, pack, entries, report, progress)
            else:
                _check_records(store, pack, [e for e in entries if e.type != CHUNK], report, progress)
                if store.backend.capabilities.local_files:  # on a remote: a download of the deltas
                    _check_bases(store, pack, entries, report)
    finally:
        progress.finish()
    return report


def reindex_orphan(store: PackStore, pack: str) -> str | None:
    """Write the index of a pack whose index is missing, if every record is intact; returns the
    name it is published under (a pack is named by its index), or None when it is damaged."""
    data = store.backend.get_bytes(f"{PACKS}{pack}.pack")
    if not pack_head_ok(data):
        return None
    entries: list[IndexEntry] = []
    offset = len(PACK_HEAD)
    where = f"orphan pack {pack} ({store.name})"
    own: dict[bytes, bytes | memoryview] = {}  # chunks of this pack, decoded: bases of its later deltas
    from_store = store.base_reader()

    def base(oid: bytes, base_oid: bytes) -> bytes | memoryview:
        return own[base_oid] if base_oid in own else from_store(oid, base_oid)

    while offset < len(data):
        if offset + RECORD.size > len(data):
            return None  # a torn last record
        typ, codec_id, oid, stored, raw = RECORD.unpack_from(data, offset)
        offset += RECORD.size
        payload = data[offset:offset + stored]
        try:
            if len(payload) != stored:
                return None
            plain = decode_verify(typ, oid, codec_id, payload, raw, where, base=base)
        except MlvcError:
            return None
        if typ == CHUNK:
            own[oid] = plain
        entries.append(IndexEntry(oid, typ, codec_id, offset, stored, raw))
        offset += stored
    if not entries:
        return None
    idx = encode_index(entries)
    name = index_name(idx)
    if name != pack:
        store.scratch.mkdir(parents=True, exist_ok=True)
        tmp = store.scratch / f"reindex-{os.getpid()}-{name}.pack"
        tmp.write_bytes(data)
        store.adopt_pack(tmp, name, idx)
        store.backend.delete(f"{PACKS}{pack}.pack")
    else:
        store.backend.put_bytes(f"{PACKS}{name}.idx", idx)
    return name


def quarantine(store: PackStore, pack: str, reason: str) -> tuple[str, int]:
    """Copy the intact objects of a damaged pack into new packs, then move the pack aside.
    Returns (where it went, objects saved)."""
    saved = 0
    try:
        entries = decode_index(store.index_bytes(pack), pack)
    except MlvcError:
        entries = []  # nothing readable to save; the pack still goes aside, never deleted
    where = f"pack {pack} ({store.name})"
    entries = [e for e in entries if record_size_error(e.type, e.oid, e.stored, e.raw, where) is None]
    for run in entries_in_runs(entries):
        start = run[0].offset
        end = run[-1].offset + run[-1].stored
        try:
            buf = memoryview(store.read_stored(pack, start, end - start))
        except MlvcError:
            continue
        for e in run:
            payload = buf[e.offset - start:e.offset - start + e.stored]
            try:
                check_record(e, payload, where, store.base_reader())
            except MlvcError:
                continue
            store.put_stored(e.type, e.oid, e.codec, payload, e.raw, force=True)
            saved += 1
    store.commit()
    return move_aside(store, pack, reason), saved


def move_aside(store: PackStore, pack: str, reason: str) -> str:
    """Move a damaged pack under ``quarantine/`` (never deleted) with a record of why; returns
    where.  The store's completeness marks are cleared first: what they promised may be going."""
    store.complete.clear()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    base = f"quarantine/{stamp}-{pack}"
    store.backend.put_bytes(f"{base}.json", json.dumps({"pack": pack, "reason": reason,
                                                        "time": time.time()}).encode())
    for suffix in (".idx", ".pack"):
        if store.backend.exists(f"{PACKS}{pack}{suffix}"):
            store.backend.rename(f"{PACKS}{pack}{suffix}", f"{base}{suffix}")
    return base


__all__ = ["verify", "VerifyReport", "Problem", "reindex_orphan", "quarantine", "move_aside"]
