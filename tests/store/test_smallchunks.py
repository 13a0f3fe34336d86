"""mlvc/store/smallchunks.py and `ObjectReads.iter_small_chunks`: many small chunks read in
order, zstd frames decoded a batch at a time on a helper thread, every one checked against its id."""

from __future__ import annotations

import os

import zstandard

from mlvc import codec
from mlvc.errors import CorruptObjectError, ObjectNotFoundError
from mlvc.hashing import digest, to_oid
from mlvc.store import smallchunks
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import CHUNK
from mlvc.store.packstore import PackStore, Role


def store(tmp_path) -> PackStore:
    return PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "s", name="s", fsync=False)


def small_files(n: int) -> list[bytes]:
    """Bodies of `n` small files: text that zstd shrinks, and random bytes stored raw."""
    return [(f"row {i}," * (50 + i % 200)).encode() if i % 3 else os.urandom(100 + i % 5000) for i in range(n)]


def put_all(s: PackStore, bodies: list[bytes]) -> list[bytes]:
    oids = []
    for body in bodies:
        oid = digest(body)
        s.put_object(CHUNK, oid, body)
        oids.append(oid)
    s.commit()
    return oids


def damage(s: PackStore, oid: bytes) -> None:
    """Flip a byte in the middle of the object's record."""
    loc = s.location(CHUNK, oid)
    key = f"packs/{loc.pack}.pack"
    body = bytearray(s.backend.get_bytes(key))
    body[loc.offset + loc.stored // 2] ^= 0xFF
    s.backend.delete(key)
    s.backend.put_bytes(key, bytes(body))


def test_many_small_chunks_come_back_in_order_each_checked(tmp_path):
    s = store(tmp_path)
    bodies = small_files(3 * smallchunks.BATCH_RECORDS + 7)  # several batches, the last one short
    oids = put_all(s, bodies)
    assert {s.location(CHUNK, oid).codec for oid in oids} == {codec.RAW, codec.ZSTD}
    missing = digest(b"never stored")
    wanted = oids[:300] + [missing] + oids[300:]
    got = list(PackStore(s.backend, role=Role.REMOTE, scratch=tmp_path / "r", fsync=False).iter_small_chunks(wanted))
    assert len(got) == len(wanted)
    assert got[300][0] is None and isinstance(got[300][1], ObjectNotFoundError)
    rest = got[:300] + got[301:]
    assert all(error is None for _data, error in rest)
    assert [bytes(data) for data, _error in rest] == bodies  # type: ignore[arg-type]


def test_a_damaged_record_among_them_is_named_and_the_others_come(tmp_path):
    s = store(tmp_path)
    bodies = small_files(600)
    oids = put_all(s, bodies)
    bad = [oids[4], oids[6], oids[299]]  # a zstd record (frames decoded as a batch), a raw one, another batch
    assert [s.location(CHUNK, oid).codec for oid in bad[:2]] == [codec.ZSTD, codec.RAW]
    for oid in bad:
        damage(s, oid)
    reader = PackStore(s.backend, role=Role.REMOTE, scratch=tmp_path / "r", fsync=False)
    got = list(reader.iter_small_chunks(oids))
    for oid, body, (data, error) in zip(oids, bodies, got, strict=True):
        if oid in bad:
            assert data is None and isinstance(error, CorruptObjectError) and error.oid == to_oid(oid)
        else:
            assert error is None and bytes(data) == body  # type: ignore[arg-type]


def test_a_frame_declaring_another_size_is_left_to_the_general_way():
    text = b"abc" * 1000
    frame = zstandard.ZstdCompressor().compress(text)
    out = smallchunks.decode_batch([(codec.ZSTD, frame, len(text) + 1), (codec.ZSTD, frame, len(text)),
                                    (codec.RAW, b"xyz", 3), (codec.PLANES, b"...", 3),
                                    (codec.ZSTD, b"not a frame", 30)])
    assert out == [None, text, b"xyz", None, None]
