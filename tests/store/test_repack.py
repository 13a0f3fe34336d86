"""`mlvc.store.repack`: re-encoding hinted chunks (planes, or deltas on a kept base within the
chain bound and without cycles), merging small packs, dropping garbage and second copies; every
object reads back byte-exact, and a second repack finds nothing to do."""

from __future__ import annotations

import numpy as np
from helpers import open_cache

from mlvc import codec
from mlvc.hashing import digest
from mlvc.store.gc import GcResult
from mlvc.store.packs import CHUNK
from mlvc.store.repack import ChunkHint, repack

N = 16384  # fp32 elements per chunk (64 KiB)


def versions(n: int, seed: int = 0) -> list[bytes]:
    """`n` versions of one 64 KiB block of a tensor, each a small step from the one before."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(N) * 0.02).astype(np.float32)
    out = []
    for _ in range(n):
        w = (w + rng.standard_normal(N).astype(np.float32) * np.float32(2e-5)).astype(np.float32)
        out.append(w.tobytes())
    return out


def stored_raw(store, blocks: list[bytes]) -> list[bytes]:
    ids = []
    for b in blocks:
        oid = digest(b)
        store.put_stored(CHUNK, oid, codec.RAW, b, len(b))
        ids.append(oid)
    store.commit()
    return ids


def run(store, ids, hints, dry_run=False) -> GcResult:
    live = {(CHUNK, oid) for oid in ids}
    return repack(store, lambda: live, lambda: hints, GcResult("workspace", None, dry_run), grace_s=0,
                  dry_run=dry_run)


def chain_hints(ids, blocks) -> list[list[ChunkHint]]:
    return [[ChunkHint(oid, len(b), 4, 0, ids[i - 1] if i else None)]
            for i, (oid, b) in enumerate(zip(ids, blocks, strict=True))]


def test_a_chain_of_versions_becomes_deltas_within_the_bound(tmp_path):
    blocks = versions(9)
    with open_cache(tmp_path / "c") as store:
        ids = stored_raw(store, blocks)
        res = run(store, ids, chain_hints(ids, blocks))
        assert res.chunks_recoded == 9 and res.recoded_as_deltas >= 6, res
        assert res.stored_bytes_after < 0.8 * res.stored_bytes_before, res
    with open_cache(tmp_path / "c") as store:
        depths = [store.delta_depth(oid) for oid in ids]
        assert max(depths) == codec.MAX_DELTA_DEPTH and 0 in depths[1:], depths  # a chain starts again
        for oid, b in zip(ids, blocks, strict=True):
            assert store.get(CHUNK, oid) == b
        assert len(store.listed_packs()) == 1
        again = run(store, ids, chain_hints(ids, blocks))
        assert again.chunks_recoded == 0 and again.packs_written == 0 and again.packs_rewritten == 0, again


def test_deltas_already_building_on_a_chunk_count_toward_the_bound(tmp_path):
    """A whole record with a chain of 3 deltas above it may take a base only 0 deltas deep."""
    blocks = versions(6, seed=1)
    with open_cache(tmp_path / "c") as store:
        ids = stored_raw(store, blocks[:2])
        enc = codec.ChunkEncoder()
        for i in range(2, 6):  # blocks 2..5: a chain on block 1 as add writes it (depths 1..4 over it)
            payload = codec.encode_delta(blocks[i], blocks[i - 1], digest(blocks[i - 1]), enc, 4, 0)
            store.put_stored(CHUNK, digest(blocks[i]), codec.DELTA, payload, len(blocks[i]))
            ids.append(digest(blocks[i]))
            store.commit()
        assert store.delta_depth(ids[5]) == 4
        # block 1 as a delta on block 0 would make block 5 five deltas deep: refused
        run(store, ids, [[ChunkHint(ids[1], len(blocks[1]), 4, 0, ids[0])]])
    with open_cache(tmp_path / "c") as store:
        assert max(store.delta_depth(oid) for oid in ids) <= codec.MAX_DELTA_DEPTH
        assert store.record_head(ids[1])[0] != codec.DELTA
        for oid, b in zip(ids, blocks, strict=True):
            assert store.get(CHUNK, oid) == b


def test_hints_that_would_make_a_cycle_make_none(tmp_path):
    blocks = versions(2, seed=2)
    with open_cache(tmp_path / "c") as store:
        ids = stored_raw(store, blocks)
        hints = [[ChunkHint(ids[0], len(blocks[0]), 4, 0, ids[1])], [ChunkHint(ids[1], len(blocks[1]), 4, 0, ids[0])]]
        res = run(store, ids, hints)
        assert res.recoded_as_deltas == 1, res
    with open_cache(tmp_path / "c") as store:
        for oid, b in zip(ids, blocks, strict=True):
            assert store.get(CHUNK, oid) == b  # a cycle would be refused on read (exit 6)


def test_a_base_that_is_not_kept_is_not_used(tmp_path):
    blocks = versions(2, seed=3)
    with open_cache(tmp_path / "c") as store:
        ids = stored_raw(store, blocks)
        live = {(CHUNK, ids[1])}  # block 0 is garbage: it goes, so nothing may build on it
        res = repack(store, lambda: live, lambda: [[ChunkHint(ids[1], len(blocks[1]), 4, 0, ids[0])]],
                     GcResult("workspace", None, False), grace_s=0)
        assert res.recoded_as_deltas == 0 and res.objects_removed == 1, res
    with open_cache(tmp_path / "c") as store:
        assert store.get(CHUNK, ids[1]) == blocks[1]
        assert not store.has(CHUNK, ids[0])


def test_small_packs_are_merged_and_second_copies_dropped(tmp_path):
    blocks = [bytes([i]) * 5000 + np.random.default_rng(i).bytes(3000) for i in range(6)]
    with open_cache(tmp_path / "c") as store:
        ids = []
        for b in blocks:  # one small pack each
            ids += stored_raw(store, [b])
        extra = b"x" * 9000
        store.put_stored(CHUNK, ids[0], codec.RAW, blocks[0], len(blocks[0]), force=True)  # a second copy
        ids += stored_raw(store, [extra])  # beside another object (else the same pack, by name)
        blocks.append(extra)
        assert len(store.listed_packs()) == 7
        res = run(store, ids, [])
        assert res.packs_merged >= 5 and res.chunks_recoded == 0, res
    with open_cache(tmp_path / "c") as store:
        assert len(store.listed_packs()) == 1
        for oid, b in zip(ids, blocks, strict=True):
            assert store.get(CHUNK, oid) == b


def test_dry_run_writes_nothing(tmp_path):
    blocks = versions(3, seed=4)
    with open_cache(tmp_path / "c") as store:
        ids = stored_raw(store, blocks)
        before = sorted(p.name for p in (tmp_path / "c" / "packs").iterdir())
        res = run(store, ids, chain_hints(ids, blocks), dry_run=True)
        assert res.chunks_recoded == 3 and res.stored_bytes_after < res.stored_bytes_before, res
        assert sorted(p.name for p in (tmp_path / "c" / "packs").iterdir()) == before


def test_a_rerun_after_a_kill_between_publishing_and_deleting_loses_nothing(tmp_path):
    """The state a repack killed after publishing its packs and before deleting the old ones
    leaves: the old packs and the new ones side by side.  The re-run writes the same records
    again, into a pack of the same bytes, so of the same name as one it replaces: that one
    must stay."""
    import shutil

    blocks = versions(6, seed=5)
    with open_cache(tmp_path / "c") as store:
        ids = stored_raw(store, blocks)
    shutil.copytree(tmp_path / "c", tmp_path / "done")
    with open_cache(tmp_path / "done") as store:
        run(store, ids, chain_hints(ids, blocks))
    for p in (tmp_path / "done" / "packs").iterdir():  # the new packs beside the old
        shutil.copy(p, tmp_path / "c" / "packs" / p.name)
    with open_cache(tmp_path / "c") as store:
        assert len(store.listed_packs()) == 2
        run(store, ids, chain_hints(ids, blocks))
    with open_cache(tmp_path / "c") as store:
        assert len(store.listed_packs()) == 1
        for oid, b in zip(ids, blocks, strict=True):
            assert store.get(CHUNK, oid) == b
