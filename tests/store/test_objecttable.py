"""ObjectTable: lookups over pack tables and merged runs agree with a plain dict, files are shared
between processes, and damaged or outdated merged files are never trusted."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mlvc.store.objecttable import KEY, MERGE_AT, MIDX_SUFFIX, ObjectTable, PackTable, load_midx
from mlvc.store.packs import CHUNK, FILE_MANIFEST, TREE_MANIFEST, IndexEntry, encode_index


def make_packs(rng: random.Random, npacks: int, per_pack: int, shared: int = 0):
    """(list of idx bytes, reference dict key -> every location it has): some objects in several
    packs, some ids under two types."""
    reference: dict[tuple[int, bytes], list[tuple]] = {}
    pool = [rng.randbytes(16) for _ in range(shared)]
    packs = []
    for no in range(npacks):
        entries = []
        seen = set()
        offset = 9
        for i in range(per_pack):
            if pool and i % 5 == 0:
                oid = rng.choice(pool)
            else:
                oid = rng.randbytes(16)
            typ = rng.choice((CHUNK, CHUNK, CHUNK, FILE_MANIFEST, TREE_MANIFEST))
            if (oid, typ) in seen:
                continue
            seen.add((oid, typ))
            if i % 7 == 0 and (oid, CHUNK) not in seen and typ != CHUNK:
                seen.add((oid, CHUNK))  # the same id as a chunk too: types are part of the key
                entries.append(IndexEntry(oid, CHUNK, 0, offset, 10, 10))
                reference.setdefault((CHUNK, oid), []).append((no, 0, offset, 10, 10))
                offset += 36
            stored = rng.randrange(1, 5000)
            entries.append(IndexEntry(oid, typ, 1, offset, stored, stored + 3))
            reference.setdefault((typ, oid), []).append((no, 1, offset, stored, stored + 3))
            offset += 26 + stored
        packs.append(encode_index(entries))
    return packs, reference


def check_against(table: ObjectTable, reference: dict, rng: random.Random) -> None:
    for (typ, oid), locations in reference.items():
        # a duplicate may be served from any pack holding it, with that pack's location
        assert table.get(typ, oid) in locations, (typ, oid.hex())
    for _ in range(2000):
        assert table.get(CHUNK, rng.randbytes(16)) is None
    for (typ, oid) in list(reference)[:200]:
        other = next(t for t in (CHUNK, FILE_MANIFEST, TREE_MANIFEST) if t != typ)
        assert (table.get(other, oid) is not None) == ((other, oid) in reference)


def test_pack_table_finds_every_entry_and_nothing_across_entry_boundaries() -> None:
    rng = random.Random(1)
    packs, reference = make_packs(rng, 1, 3000)
    table = PackTable(0, packs[0])
    for (typ, oid), locations in reference.items():
        assert table.get(oid + bytes((typ,))) == locations[0]
    data = packs[0]
    # every 17-byte window that starts inside an entry (not at its start) is not a key
    for pos in range(13 + 1, len(data) - 16 - KEY, 29):
        if (pos - 13) % 34 == 0:
            continue
        window = data[pos:pos + KEY]
        loc = table.get(window)
        if loc is not None:  # only if that window happens to be a real key too
            assert (window[16], window[:16]) in reference


@pytest.mark.parametrize("directory", [False, True])
def test_merging_keeps_every_object_and_bounds_the_tables_a_lookup_visits(tmp_path: Path, directory: bool) -> None:
    rng = random.Random(2)
    packs, reference = make_packs(rng, 3 * MERGE_AT + 2, 700, shared=300)
    names = [f"{i:032x}" for i in range(len(packs))]
    table = ObjectTable(tmp_path / "merged" if directory else None)
    for no, idx in enumerate(packs):
        table.add_pack(no, idx)
        if table.needs_merge():
            table.merge(names[:no + 1])
        assert len(table.recent) < MERGE_AT
    assert table.merged is not None
    check_against(table, reference, rng)
    by_type = {typ: sorted(oid for t, oid in reference if t == typ) for typ in (CHUNK, FILE_MANIFEST, TREE_MANIFEST)}
    for typ, oids in by_type.items():
        assert list(table.iter_ids(typ)) == oids
    assert table.count() == len(reference)
    if directory:
        files = [n for n in os.listdir(tmp_path / "merged") if n.endswith(MIDX_SUFFIX)]
        assert len(files) == 1, files  # older runs, subsets of the newest, were removed


def test_a_new_process_adopts_the_kept_run_only_if_all_its_packs_are_listed(tmp_path: Path) -> None:
    rng = random.Random(3)
    packs, reference = make_packs(rng, MERGE_AT, 500)
    names = [f"{i:032x}" for i in range(len(packs))]
    first = ObjectTable(tmp_path)
    for no, idx in enumerate(packs):
        first.add_pack(no, idx)
    first.merge(names)
    assert first.merged is not None and first.merged.path is not None

    second = ObjectTable(tmp_path)
    assert second.adopt_merged(set(names) | {"f" * 32}) == names
    check_against(second, reference, rng)
    assert second.sizes == first.sizes  # pack sizes come with the run

    third = ObjectTable(tmp_path)
    assert third.adopt_merged(set(names[1:])) is None  # a pack it covers is gone (gc): not usable
    third.drop_runs_with({names[0]})
    assert not [n for n in os.listdir(tmp_path) if n.endswith(MIDX_SUFFIX)]


def test_a_damaged_kept_run_is_never_used(tmp_path: Path) -> None:
    rng = random.Random(4)
    packs, _reference = make_packs(rng, MERGE_AT, 300)
    names = [f"{i:032x}" for i in range(len(packs))]
    table = ObjectTable(tmp_path)
    for no, idx in enumerate(packs):
        table.add_pack(no, idx)
    table.merge(names)
    path = table.merged.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # one flipped bit in an entry
    path.write_bytes(bytes(data))
    assert load_midx(path) is None
    assert ObjectTable(tmp_path).adopt_merged(set(names)) is None
    path.write_bytes(bytes(data[: len(data) - 7]))  # truncated
    assert load_midx(path) is None
    path.write_bytes(b"")
    assert load_midx(path) is None


def test_store_with_many_packs_merges_and_a_fresh_store_reads_through_the_kept_run(tmp_path: Path) -> None:
    from mlvc.store.local import LocalBackend
    from mlvc.store.packstore import PackStore, Role

    backend = LocalBackend(tmp_path / "cache")
    backend.ensure_base()
    merged = tmp_path / "cache" / "merged"
    rng = random.Random(5)
    blobs = {}
    with PackStore(backend, role=Role.REMOTE, scratch=tmp_path / "cache" / "tmp", merged_dir=merged,
                   pack_size=4096) as store:
        for _ in range(3 * MERGE_AT):
            for _ in range(5):
                data = rng.randbytes(1500)
                oid, _new = store.put_chunk(data)
                blobs[oid] = data
            store.commit()
        assert len(store.pack_names()) >= 3 * MERGE_AT
    assert [n for n in os.listdir(merged) if n.endswith(MIDX_SUFFIX)]
    with PackStore(backend, role=Role.REMOTE, scratch=tmp_path / "cache" / "tmp", merged_dir=merged) as fresh:
        for oid, data in blobs.items():
            assert fresh.get(CHUNK, oid) == data
        assert fresh._table.merged is not None  # read through the kept run, not pack by pack
        assert sorted(fresh.iter_ids(CHUNK)) == sorted(blobs)
        victim = fresh.pack_names()[0]
        gone = [oid for oid in blobs if fresh.location(CHUNK, oid)[0] == victim]
        fresh.remove_pack(victim)
    with PackStore(backend, role=Role.REMOTE, scratch=tmp_path / "cache" / "tmp", merged_dir=merged) as after:
        for oid in blobs:
            assert after.has(CHUNK, oid) == (oid not in gone)
