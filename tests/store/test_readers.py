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
