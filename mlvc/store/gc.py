"""`gc(store, live, ...)`: remove what no kept artifact reaches, from the cache or any remote.

Packs are immutable, so a pack holding garbage is rewritten: its live objects
are copied (as stored, verified) into new packs, the new packs are published,
and only then is the old pack removed (index first, so readers never see an
index without its pack).  Packs newer than the grace period, and packs that
appear after the listing taken at the start, are never touched: objects a
concurrent writer has just published (and whose pointer does not exist yet)
survive.  A delta's base is live while the delta stays (live, or in a pack left alone).
Which pointers are kept, and the locks that keep writers out while
packs go, are the caller's (`mlvc.ops.gc`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import MlvcError
from ..codec import DELTA, DELTA_HEAD, delta_base
from .packs import CHUNK, IndexEntry
from .packindex import PACKS
from .packstore import PackStore

Key = tuple[int, bytes]


@dataclass
class PackPlan:
    name: str
    objects: int
    dead_objects: int
    dead_bytes: int  # stored (compressed) bytes that would go
    dead_raw_bytes: int
    delete_whole: bool


@dataclass
class GcResult:
    scope: str
    remote: str | None
    dry_run: bool
    kept_artifacts: int = 0
    live_objects: int = 0
    packs_scanned: int = 0
    packs_recent: int = 0  # skipped: newer than the grace period (or published after gc started)
    packs_rewritten: int = 0
    packs_deleted: int = 0
    packs_written: int = 0
    objects_removed: int = 0
    bytes_removed: int = 0
    raw_bytes_removed: int = 0
    journal_roots: int = 0  # remote: roots kept only because a push journal record names them
    journal_pruned: int = 0  # remote: push journal records old enough to go (would go, with dry_run)
    # `gc --repack` (`mlvc.store.repack`): chunks re-encoded (as planes, or as deltas), and the
    # stored bytes they took before and take now; small packs merged; every pack's bytes
    repacked: bool = False
    chunks_recoded: int = 0
    recoded_as_deltas: int = 0
    recoded_bytes_before: int = 0
    recoded_bytes_after: int = 0
    packs_merged: int = 0
    stored_bytes_before: int = 0
    stored_bytes_after: int = 0
    plans: list[PackPlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plan(name: str, entries: list[IndexEntry], live: set[Key]) -> tuple[PackPlan, list[IndexEntry]]:
    keep = [e for e in entries if (e.type, e.oid) in live]
    dead = [e for e in entries if (e.type, e.oid) not in live]
    return PackPlan(name, len(entries), len(dead), sum(e.stored for e in dead), sum(e.raw for e in dead),
                    not keep), keep


def deltas_outside(store: PackStore, candidates: set[str]) -> set[Key]:
    """The delta records of the visible packs gc leaves alone (their bases must stay)."""
    out: set[Key] = set()
    for name in store.listed_packs():
        if name in candidates:
            continue
        try:
            entries = store.pack_entries(name)
        except MlvcError:
            continue  # removed meanwhile, or unreadable: `verify` reports it
        out.update((e.type, e.oid) for e in entries if e.type == CHUNK and e.codec == DELTA)
    return out


def with_every_copys_bases(store: PackStore, keep: set[Key]) -> set[Key]:
    """`keep` (closed under `with_bases`) and the bases named by every delta record of its chunks
    in the visible packs, not only by the record the store reads (the one `with_bases` follows):
    a chunk stored twice (a repack killed after it published the new form and before it removed
    the old) keeps both records until gc drops one, and the other may be read any time."""
    out = set(keep)
    while True:
        extra: set[Key] = set()
        for name in store.listed_packs():
            try:
                entries = store.pack_entries(name)
            except MlvcError:
                continue  # removed meanwhile, or unreadable: `verify` reports it
            for e in entries:
                if e.type != CHUNK or e.codec != DELTA or (CHUNK, e.oid) not in out:
                    continue
                try:
                    loc = store.location(CHUNK, e.oid)
                    if loc.pack == name and loc.offset == e.offset:
                        continue  # the record the store reads: followed already
                    base = delta_base(store.read_stored(name, e.offset, min(e.stored, DELTA_HEAD)))
                except (MlvcError, ValueError):
                    continue  # unreadable: `verify` reports it
                if (CHUNK, base) not in out:
                    extra.add((CHUNK, base))
        if not extra:
            return out
        out |= store.with_bases(extra)


def gc(store: PackStore, live: Callable[[], set[Key]], result: GcResult, *, grace_s: float, dry_run: bool = False,
       more_live: Callable[[], set[Key]] | None = None, keep_alive: Callable[[], None] | None = None) -> GcResult:
    """Collect garbage in `store`.

    `live()` is called once the pack listing is taken; `more_live()` (optional) right before
    anything is deleted, for what concurrent writers made live meanwhile.  `keep_alive()` is
    called between steps that take time (e.g. to refresh a lock's lease)."""
    # Memory stays bounded by the live set and one pack's index: packs' entries are read again
    # where needed instead of being held for the whole store (a million objects).
    started = time.time()
    store.refresh()
    candidates: list[str] = []
    for name in store.listed_packs():  # packs published after this listing are never touched
        try:
            mtime = store.backend.mtime(f"{PACKS}{name}.pack")
        except MlvcError:
            continue  # removed by another gc meanwhile: `verify` reports what is left
        result.packs_scanned += 1
        if mtime is None or started - mtime < grace_s:
            result.packs_recent += 1
            continue
        candidates.append(name)
    # A record is live while a record that stays names it as its base (a delta's chain): the
    # live ones, and every delta of a pack gc does not touch (recent: kept whatever it holds).
    live_set = with_every_copys_bases(store, store.with_bases(live() | deltas_outside(store, set(candidates))))

    def plan() -> list[PackPlan]:
        plans = []
        for name in candidates:
            try:
                entries = store.pack_entries(name)
            except MlvcError:
                continue  # removed by another gc meanwhile, or unreadable: `verify` reports it
            p, _keep = _plan(name, entries, live_set)
            if p.dead_objects:
                plans.append(p)
        return plans

    plans = plan()
    if plans and not dry_run:
        # what concurrent writers made live meanwhile, and the deltas of packs published since
        extra = ((more_live() if more_live is not None else set()) | deltas_outside(store, set(candidates))) \
            - live_set
        if extra:
            live_set = with_every_copys_bases(store, live_set | store.with_bases(extra))
            plans = plan()
    result.live_objects = len(live_set)
    result.plans = plans
    for p in plans:
        result.objects_removed += p.dead_objects
        result.bytes_removed += p.dead_bytes
        result.raw_bytes_removed += p.dead_raw_bytes
    if dry_run or not plans:
        return result

    rewritten = {p.name for p in plans}

    def kept_elsewhere(key: Key) -> bool:
        # where the store finds it: a pack that stays.  (A copy in another pack that also goes is
        # copied once: `copied`, below.)
        return store.location(*key)[0] not in rewritten

    published_before = store.published
    copied: set[Key] = set()
    try:
        for p in plans:
            keep = [] if p.delete_whole else _plan(p.name, store.pack_entries(p.name), live_set)[1]
            wanted = [(e.type, e.oid) for e in keep]
            wanted = [k for k in wanted if k not in copied and not kept_elsewhere(k)]
            # Never carry a damaged object into a new pack (gc would launder the corruption): the
            # store checks each one as it reads it, and a failure stops gc before anything goes.
            for key, c, payload, raw, _data, error in store.iter_stored(wanted):
                if error is not None:
                    raise error
                store.put_stored(key[0], key[1], c, payload, raw, force=True)
                copied.add(key)
            if keep_alive is not None:
                keep_alive()
        store.commit()
    except BaseException:
        store.abort()
        raise
    result.packs_written = store.published - published_before
    for p in plans:
        store.remove_pack(p.name)
        if p.delete_whole:
            result.packs_deleted += 1
        else:
            result.packs_rewritten += 1
        if keep_alive is not None:
            keep_alive()
    return result


__all__ = ["gc", "GcResult", "PackPlan", "with_every_copys_bases"]
