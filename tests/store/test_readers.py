"""mlvc/store/readers.py: an object from the first store that has it (the cache before a remote
in a remote gc's walk, the cache behind a store being verified)."""

from __future__ import annotations

import os

import pytest

from mlvc.errors import CorruptObjectError, ObjectNotFoundError
from mlvc.hashing import digest
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import TREE_MANIFEST
from mlvc.store.packstore import PackStore, Role
from mlvc.store.readers import FirstThatHas


def store(tmp_path, name: str) -> PackStore:
    return PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / name, name=name, fsync=False)


def damage(s: PackStore, oid: bytes) -> None:
    """Flip a byte in the middle of the object's record."""
    loc = s.location(TREE_MANIFEST, oid)
    key = f"packs/{loc.pack}.pack"
    body = bytearray(s.backend.get_bytes(key))
    body[loc.offset + loc.stored // 2] ^= 0xFF
    s.backend.delete(key)
    s.backend.put_bytes(key, bytes(body))


def put(s: PackStore, body: bytes) -> bytes:
    """`body` stored (and published) in `s`; its id."""
    oid = digest(body)
    s.put_object(TREE_MANIFEST, oid, body)
    s.commit()
    return oid


def test_each_object_comes_from_the_first_store_that_serves_it(tmp_path):
    cache, remote = store(tmp_path, "cache"), store(tmp_path, "remote")
    body = os.urandom(300)
    oid = put(remote, body)
    reader = FirstThatHas([cache, remote], primary=remote)
    assert reader.get(TREE_MANIFEST, oid) == body and remote.reads == 1  # the cache lacks it

    put(cache, body)
    before = remote.reads
    assert reader.get(TREE_MANIFEST, oid) == body and remote.reads == before  # the cache's copy

    damage(cache, oid)
    reader = FirstThatHas([PackStore(cache.backend, role=Role.REMOTE, scratch=tmp_path / "c2", fsync=False),
                           remote], primary=remote)
    assert reader.get(TREE_MANIFEST, oid) == body  # a damaged copy falls through to the next


def test_when_no_store_serves_it_the_primary_says_why(tmp_path):
    checked, cache = store(tmp_path, "checked"), store(tmp_path, "cache")
    oid = put(checked, os.urandom(300))
    damage(checked, oid)
    reader = FirstThatHas([checked, cache], primary=checked)
    with pytest.raises(CorruptObjectError) as damaged:
        reader.get(TREE_MANIFEST, oid)
    assert "checked" in damaged.value.where
    with pytest.raises(ObjectNotFoundError) as missing:
        FirstThatHas([cache, checked], primary=checked).get(TREE_MANIFEST, digest(b"other"))
    assert missing.value.where == "checked"
    assert FirstThatHas([cache, cache], primary=cache).stores == [cache]
    with pytest.raises(ValueError):
        FirstThatHas([cache], primary=checked)


def test_a_batch_reads_what_others_have_from_them_and_the_rest_from_the_primary_at_once(tmp_path):
    local, src = store(tmp_path, "local"), store(tmp_path, "src")
    bodies = [os.urandom(200 + i) for i in range(4)]
    oids = [put(src, b) for b in bodies]
    put(local, bodies[0])
    put(local, bodies[1])
    damage(local, oids[1])
    absent = digest(b"absent")
    reader = FirstThatHas([local, src], primary=src, rescan=False)
    assert reader.candidates(TREE_MANIFEST, oids[0]) == [local, src]
    assert reader.candidates(TREE_MANIFEST, oids[2]) == [src]
    assert reader.location(TREE_MANIFEST, oids[0]) == local.location(TREE_MANIFEST, oids[0])
    assert reader.location(TREE_MANIFEST, oids[2]) == src.location(TREE_MANIFEST, oids[2])
    got = [(served, key[1], None if data is None else bytes(data), error)
           for served, (key, _c, _payload, _raw, data, error) in reader.iter_stored(
               [(TREE_MANIFEST, oid) for oid in [oids[3], oids[0], absent, oids[1], oids[2]]])]
    # the local copy first; the damaged one falls through; the rest from src in one batch, in its pack order
    served = [(s.name, oid, data) for s, oid, data, error in got if error is None]
    assert served[0] == ("local", oids[0], bodies[0])
    assert sorted(served[1:]) == sorted(("src", oids[i], bodies[i]) for i in (1, 2, 3))
    [(served, oid, _data, error)] = [g for g in got if g[3] is not None]
    assert served is src and oid == absent and isinstance(error, ObjectNotFoundError)


def test_what_no_store_has_is_fetched_through_the_hook_and_only_that(tmp_path):
    cache, remote = store(tmp_path, "cache"), store(tmp_path, "remote")
    body = os.urandom(300)
    oid = put(remote, body)
    asked: list[bytes] = []

    def fetch(typ: int, oid: bytes) -> bytes:
        asked.append(oid)
        put(cache, remote.get(typ, oid))  # kept in the cache, as a read-through cache does
        return cache.get(typ, oid)

    reader = FirstThatHas([cache], primary=cache, fetch=fetch)
    assert reader.get(TREE_MANIFEST, oid) == body and asked == [oid]
    assert reader.get(TREE_MANIFEST, oid) == body and asked == [oid]  # kept: not fetched again
    damage(cache, oid)
    reopened = PackStore(cache.backend, role=Role.REMOTE, scratch=tmp_path / "c2", fsync=False)
    with pytest.raises(CorruptObjectError):  # a store has it, damaged: not fetched over it
        FirstThatHas([reopened], primary=reopened, fetch=fetch).get(TREE_MANIFEST, oid)
    assert asked == [oid]
    with pytest.raises(ObjectNotFoundError):  # without the hook, what none has is missing
        FirstThatHas([cache], primary=cache).get(TREE_MANIFEST, digest(b"absent"))
