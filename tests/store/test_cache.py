import os

import pytest

from mlvc.errors import CorruptObjectError, ObjectNotFoundError
from mlvc.hashing import digest
from mlvc.store.cache import CHUNK, FILE_MANIFEST, ChunkStore
from mlvc.store.packs import RAW, ZSTD


@pytest.fixture
def store(tmp_path):
    s = ChunkStore(tmp_path / "cache", fsync=False, pack_size=1 << 20)
    yield s
    s.close()


def test_roundtrip_and_dedup(store):
    data = b"hello world" * 1000
    oid, new = store.put_chunk(data)
    assert new and oid == digest(data)
    assert store.put_chunk(data) == (oid, False)
    store.commit()
    fresh = ChunkStore(store.root)
    assert fresh.get(CHUNK, oid) == data
    assert fresh.count() == 1


def test_compressible_chunks_are_compressed_random_ones_raw(store):
    text = b"abcd" * 50_000
    noise = os.urandom(200_000)
    t, _ = store.put_chunk(text)
    n, _ = store.put_chunk(noise)
    store.commit()
    assert store.location(CHUNK, t)[1] == ZSTD
    assert store.location(CHUNK, n)[1] == RAW
    assert store.get(CHUNK, t) == text and store.get(CHUNK, n) == noise


def test_packs_roll_over_and_all_objects_stay_readable(store):
    blobs = [os.urandom(300_000) for _ in range(8)]
    ids = [store.put_chunk(b)[0] for b in blobs]
    store.commit()
    assert len(list(store.packs_dir.glob("*.idx"))) >= 2
    fresh = ChunkStore(store.root)
    assert [fresh.get(CHUNK, i) for i in ids] == blobs
    assert b"".join(fresh.iter_chunks([(i, 300_000) for i in ids])) == b"".join(blobs)


def test_pack_without_index_is_invisible(store):
    oid, _ = store.put_chunk(b"x" * 5000)
    store.commit()
    (idx,) = store.packs_dir.glob("*.idx")
    idx.unlink()  # as if the process died between renaming the pack and its index
    fresh = ChunkStore(store.root)
    assert not fresh.has(CHUNK, oid)
    with pytest.raises(ObjectNotFoundError):
        fresh.get(CHUNK, oid)
    assert fresh.reindex_orphans() == 1
    assert ChunkStore(store.root).get(CHUNK, oid) == b"x" * 5000


def test_corrupted_byte_is_detected_on_read_and_by_verify(store):
    data = os.urandom(100_000)
    oid, _ = store.put_chunk(data)
    store.commit()
    (pack,) = store.packs_dir.glob("*.pack")
    raw = bytearray(pack.read_bytes())
    raw[-500] ^= 0xFF
    pack.write_bytes(bytes(raw))
    fresh = ChunkStore(store.root)
    with pytest.raises(CorruptObjectError) as exc:
        fresh.get(CHUNK, oid)
    assert exc.value.oid.endswith(oid.hex())
    report = fresh.verify()
    assert not report.ok and len(report.problems) == 1


def test_truncated_pack_is_reported_not_crashing(store):
    oid, _ = store.put_chunk(os.urandom(50_000))
    store.commit()
    (pack,) = store.packs_dir.glob("*.pack")
    with open(pack, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(CorruptObjectError):
        ChunkStore(store.root).get(CHUNK, oid)


def test_damaged_index_is_a_clear_error(store):
    store.put_chunk(b"y" * 100)
    store.commit()
    (idx,) = store.packs_dir.glob("*.idx")
    idx.write_bytes(idx.read_bytes()[:-3])
    with pytest.raises(CorruptObjectError):
        ChunkStore(store.root).refresh()


def test_abort_leaves_nothing_visible(store):
    oid, _ = store.put_chunk(b"z" * 1000)
    store.abort()
    assert not ChunkStore(store.root).has(CHUNK, oid)
    assert list(store.tmp_dir.iterdir()) == []


def test_sweep_removes_temp_files_of_dead_processes(store):
    store.ensure_dirs()
    dead = store.tmp_dir / "pack-999999999-abc.pack"
    dead.write_bytes(b"partial")
    mine = store.tmp_dir / f"pack-{os.getpid()}-abc.pack"
    mine.write_bytes(b"in progress")
    assert store.sweep_tmp() == 1
    assert not dead.exists() and mine.exists()


def test_same_id_different_types_do_not_collide(store):
    data = b"single chunk file"
    oid, _ = store.put_chunk(data)
    store.put_object(FILE_MANIFEST, oid, b"manifest body")
    store.commit()
    fresh = ChunkStore(store.root)
    assert fresh.get(CHUNK, oid) == data
    assert fresh.get(FILE_MANIFEST, oid) == b"manifest body"
