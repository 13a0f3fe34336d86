"""`repack(store, live, hints, ...)`: gc of the cache that also re-encodes and merges packs.

Besides dropping what no kept artifact reaches (as `mlvc.store.gc` does), a repack

* **re-encodes** the chunks the caller gives hints for (float tensors of the kept checkpoints,
  `ChunkHint`: the element width and phase, and the chunk of the same tensor, dtype, shape and
  offset in the previous version): a chunk stored raw or zstd (added with the float codec off,
  or fetched as an independent record) becomes byte planes, or an XOR delta against the hinted
  base when that is smaller still (a base the cache did not hold when the chunk was added).
  Records already stored as deltas stay as they are.  A delta is made only under the same rules
  as `add`'s: its base is kept, the chain stays within `codec.MAX_DELTA_DEPTH` counting the
  deltas that already build on the chunk, and no chain ever reaches back to the chunk (no
  cycle).  A new form is kept only when it is at least `MIN_GAIN` smaller, so a second repack
  finds nothing to do.  Ids never change: a record's id is its plaintext's digest whatever its
  codec, and every new record is decoded (with its base) and checked against its id before it
  is written;
* **merges** packs smaller than half the store's pack size into full ones;
* **drops** a second copy of an object (what a repack killed before its deletions leaves).

Order, as gc's: the new records and the copied survivors go to new packs, which are published
(pack, then index, in closure order: a delta's pack after its base's), and only then are the old
packs removed (index first).  A `kill -9` at any point leaves every object readable (old or new
copy, or both), and the next run completes the work.  Packs younger than the grace keep every
object (repacked, never dropped); packs published after the listing are never touched.  The
caller holds the cache's host lock exclusively (`mlvc.ops.gc`), as for gc.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import codec
from ..errors import MlvcError
from ..progress import NULL, Progress
from .gc import GcResult, PackPlan, deltas_outside, with_every_copys_bases
from .packs import CHUNK, PACK_HEAD, RECORD, IndexEntry
from .packindex import PACKS
from .packstore import PackStore
from .records import decode_verify
from .types import Key

MIN_GAIN = 0.01  # a new form is kept only if at least this much smaller than the stored one
SMALL_FRACTION = 0.5  # packs under this fraction of the store's pack size are merged


@dataclass(frozen=True)
class ChunkHint:
    """What the caller knows of a chunk of a kept checkpoint: its length, the float width and
    phase of its bytes (`codec.encode_planes`), and `base`: the chunk at the same offset of the
    same tensor (name, dtype, shape) in the previous version, of the same length (or None)."""

    oid: bytes
    length: int
    width: int
    skip: int
    base: bytes | None = None


class _Chains:
    """The delta graph of the store as it will be: each delta's base (`base_of`) and, for each
    chunk, how many deltas build on it at most (`height`), so a new delta keeps every chain that
    runs through it within `codec.MAX_DELTA_DEPTH`."""

    def __init__(self, base_of: dict[bytes, bytes]) -> None:
        self.base_of = base_of
        self.height: dict[bytes, int] = {}
        for oid in base_of:
            self._raise_above(oid, 0)

    def _raise_above(self, oid: bytes, h: int) -> None:
        cur = self.base_of.get(oid)
        steps = 0
        while cur is not None and steps <= codec.MAX_DELTA_DEPTH:
            h += 1
            if self.height.get(cur, 0) >= h:
                return
            self.height[cur] = h
            cur = self.base_of.get(cur)
            steps += 1

    def chain(self, oid: bytes) -> list[bytes] | None:
        """`oid` and the bases below it, down to a whole record; None past the bound or a cycle."""
        out = [oid]
        while (nxt := self.base_of.get(out[-1])) is not None:
            if nxt in out or len(out) > codec.MAX_DELTA_DEPTH:
                return None
            out.append(nxt)
        return out

    def may_build(self, oid: bytes, base: bytes) -> bool:
        """Whether `oid` (a whole record now) may become a delta on `base`."""
        below = self.chain(base)
        return below is not None and oid not in below and \
            (len(below) - 1) + 1 + self.height.get(oid, 0) <= codec.MAX_DELTA_DEPTH

    def add(self, oid: bytes, base: bytes) -> None:
        self.base_of[oid] = base
        self._raise_above(oid, self.height.get(oid, 0))


def _pack_bytes(entries: list[IndexEntry]) -> int:
    return len(PACK_HEAD) + sum(RECORD.size + e.stored for e in entries)


def repack(store: PackStore, live: Callable[[], set[Key]], hints: Callable[[], Iterable[list[ChunkHint]]],
           result: GcResult, *, grace_s: float, dry_run: bool = False,
           more_live: Callable[[], set[Key]] | None = None, progress: Progress = NULL) -> GcResult:
    """Collect garbage in `store`, re-encode what `hints()` names (one list per file, the files
    in the order their versions were made), merge small packs.  `live()` is called once the
    pack listing is taken, `hints()` after it; `more_live()` right before the copies, for what
    concurrent writers made live meanwhile (nothing, under the host lock: a second look)."""
    started = time.time()
    result.repacked = True
    published_before, names_before = store.published, len(store.published_names)
    store.refresh()
    listed: list[str] = []
    old: set[str] = set()
    sizes: dict[str, int] = {}
    deltas: list[bytes] = []
    for name in store.listed_packs():  # packs published after this listing are never touched
        try:
            mtime = store.backend.mtime(f"{PACKS}{name}.pack")
            entries = store.pack_entries(name)
        except MlvcError:
            continue  # removed meanwhile, or unreadable: `verify` reports it
        result.packs_scanned += 1
        listed.append(name)
        sizes[name] = _pack_bytes(entries)
        if mtime is None or started - mtime < grace_s:
            result.packs_recent += 1
        else:
            old.add(name)
        deltas.extend(e.oid for e in entries if e.type == CHUNK and e.codec == codec.DELTA)
    result.stored_bytes_before = sum(sizes.values())
    kept = with_every_copys_bases(store, store.with_bases(live() | deltas_outside(store, old)))
    chains = _Chains(store.delta_bases(deltas))
    recoded = _recode(store, kept, chains, hints(), result, dry_run, progress)
    if more_live is not None and not dry_run:
        extra = more_live() - kept
        if extra:
            kept = with_every_copys_bases(store, kept | store.with_bases(extra))
    result.live_objects = len(kept)

    # Which packs go: those with garbage (old enough), a re-encoded record, a second copy of an
    # object, or small (merged when there are two, or anything else is rewritten).
    rewrite: list[str] = []
    small: list[str] = []
    for name in listed:
        try:
            entries = store.pack_entries(name)
        except MlvcError:
            continue
        dead = [e for e in entries if name in old and (e.type, e.oid) not in kept]
        again = any(e.type == CHUNK and e.oid in recoded for e in entries) or \
            any(store.location(e.type, e.oid).pack != name for e in entries)
        if dead:
            plan = PackPlan(name, len(entries), len(dead), sum(e.stored for e in dead),
                            sum(e.raw for e in dead), len(dead) == len(entries))
            result.plans.append(plan)
            result.objects_removed += plan.dead_objects
            result.bytes_removed += plan.dead_bytes
            result.raw_bytes_removed += plan.dead_raw_bytes
        if dead or again:
            rewrite.append(name)
        elif sizes[name] < SMALL_FRACTION * store.pack_size:
            small.append(name)
    if len(small) > 1 or (small and (rewrite or recoded)):
        rewrite += small
        result.packs_merged = len(small)
    if dry_run:
        result.stored_bytes_after = result.stored_bytes_before - result.bytes_removed - \
            (result.recoded_bytes_before - result.recoded_bytes_after)
        return result
    if not rewrite and not recoded:
        result.stored_bytes_after = result.stored_bytes_before
        return result

    going = set(rewrite)
    copied: set[Key] = set()
    survivors: dict[str, int] = {}
    try:
        for name in rewrite:
            wanted: list[Key] = []
            for e in store.pack_entries(name):
                key = (e.type, e.oid)
                if (e.type == CHUNK and e.oid in recoded) or key in copied:
                    continue  # its new record is written already
                if name in old and key not in kept:
                    continue  # garbage
                survivors[name] = survivors.get(name, 0) + 1
                if store.location(*key).pack not in going:
                    continue  # another copy stays, in a pack left alone
                wanted.append(key)
            # copied as stored, each checked as it is read: a damaged one stops the repack before
            # anything goes (it would launder the damage into a new pack)
            for key, c, payload, raw, _data, error in store.iter_stored(wanted):
                if error is not None:
                    raise error
                store.put_stored(key[0], key[1], c, payload, raw, force=True)
                copied.add(key)
        store.commit()
    except BaseException:
        store.abort()
        raise
    result.packs_written = store.published - published_before
    written = set(store.published_names[names_before:])
    for name in rewrite:  # only now: every survivor is published in a new pack
        if name in written:
            continue  # this run wrote the same bytes again (a repack killed after publishing, re-run)
        store.remove_pack(name)
        if survivors.get(name, 0):
            result.packs_rewritten += 1
        else:
            result.packs_deleted += 1
    store.refresh()
    result.stored_bytes_after = sum(_pack_bytes(store.pack_entries(n)) for n in store.listed_packs())
    return result


def _recode(store: PackStore, kept: set[Key], chains: _Chains, files: Iterable[list[ChunkHint]],
            result: GcResult, dry_run: bool, progress: Progress) -> set[bytes]:
    """Write the smaller form of each hinted chunk (verified first); returns their ids."""
    recoded: set[bytes] = set()
    seen: set[bytes] = set()
    progress.start("repacking", None)
    for hints in files:
        encoder = codec.ChunkEncoder(store.level)
        delta_encoder = codec.ChunkEncoder(store.level)  # the XORs' planes pay differently
        for h in hints:
            progress.advance(h.length)
            if h.oid in seen or (CHUNK, h.oid) not in kept:
                continue
            seen.add(h.oid)
            try:
                loc = store.location(CHUNK, h.oid)
            except MlvcError:
                continue  # not in this cache (a version it holds only in part)
            if loc.codec == codec.DELTA or loc.raw != h.length:
                continue  # `add` made it a delta already (or the hint is not about this record)
            data = store.get(CHUNK, h.oid)  # verified
            c, payload = encoder.encode(data, h.width, h.skip)
            if h.base is not None and h.base != h.oid and (CHUNK, h.base) in kept \
                    and chains.may_build(h.oid, h.base):
                try:
                    plain = store.get(CHUNK, h.base)
                except MlvcError:
                    plain = None  # no base to build on: planes, or as it is
                if plain is not None and len(plain) == len(data):
                    delta = codec.encode_delta(data, plain, h.base, delta_encoder, h.width, h.skip)
                    if len(delta) < len(payload):
                        c, payload = codec.DELTA, delta
            if len(payload) > (1 - MIN_GAIN) * loc.stored:
                continue
            new: codec.Bytes = payload if isinstance(payload, (bytes, memoryview)) else bytes(payload)
            # decoded (with its base, read verified) and checked against its id before it is written
            decode_verify(CHUNK, h.oid, c, new, len(data), "a re-encoded record", base=store.base_reader())
            if not dry_run:
                store.put_stored(CHUNK, h.oid, c, new, len(data), force=True)
            recoded.add(h.oid)
            result.chunks_recoded += 1
            result.recoded_bytes_before += loc.stored
            result.recoded_bytes_after += len(payload)
            if c == codec.DELTA:
                result.recoded_as_deltas += 1
                chains.add(h.oid, codec.delta_base(payload))
    progress.finish()
    return recoded


__all__ = ["repack", "ChunkHint", "MIN_GAIN", "SMALL_FRACTION"]
