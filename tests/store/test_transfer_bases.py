"""A transfer relies on the bases `dst` already holds for the deltas it copies: they count as
objects the transfer needs to stay (`check_plan`'s `reused`), so a push beside a running gc
stops before it publishes a delta whose base that gc may delete."""

from __future__ import annotations

import os

import pytest

from mlvc.codec import DELTA, ChunkEncoder, encode_delta
from mlvc.errors import LockedError
from mlvc.hashing import digest, to_oid
from mlvc.objects import FileManifest
from mlvc.chunking import ChunkerParams
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import CHUNK, FILE_MANIFEST
from mlvc.store.packstore import PackStore, Role
from mlvc.store.transfer import Artifact, transfer
from mlvc.store.types import Root


def _store(tmp_path, name: str) -> PackStore:
    return PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / name, fsync=False, pack_size=1 << 20)


def _delta_on_a_base_dst_holds(tmp_path):
    """(src holding a one-chunk file stored as a delta, dst holding only its base, the file's
    artifact, the chunk's id, its base's id)."""
    base = os.urandom(65536)
    data = bytearray(base)
    data[100:110] = bytes(10)
    data = bytes(data)
    base_oid, oid = digest(base), digest(data)
    src, dst = _store(tmp_path, "src"), _store(tmp_path, "dst")
    src.put_chunk(base)
    assert src.put_stored(CHUNK, oid, DELTA, encode_delta(data, base, base_oid, ChunkEncoder()), len(data))
    fid = oid  # a one-chunk file: its manifest's id is its content's, like its chunk's
    fm = FileManifest(fid, len(data), ChunkerParams(16384, 65536, 262144), ((oid, len(data)),))
    src.put_object(FILE_MANIFEST, fid, fm.encode())
    src.commit()
    dst.put_chunk(base)  # the base is there already (e.g. an older version's, which a gc may be deleting)
    dst.commit()
    return src, dst, Artifact("m.bin", Root("file", to_oid(fid), len(data))), oid, base_oid


def test_a_base_dst_already_holds_is_relied_on(tmp_path):
    src, dst, art, oid, base_oid = _delta_on_a_base_dst_holds(tmp_path)
    plans: list[tuple[int, int]] = []
    out = transfer(src, dst, [art], check_plan=lambda reused, copied: plans.append((reused, copied)))
    assert out.done == ["m.bin"] and not out.failed
    assert dst.delta_bases([oid]) == {oid: base_oid}  # copied as a delta on the base dst had
    assert plans and plans[-1][0] >= 1, plans  # and the transfer said it relies on that base


def test_a_plan_refused_for_the_base_copies_no_delta(tmp_path):
    """As a push does beside a gc: refusing a plan that relies on objects already there stops the
    transfer before the delta is copied (a delta published on a base being deleted is lost)."""
    src, dst, art, oid, _base_oid = _delta_on_a_base_dst_holds(tmp_path)

    def refuse(reused: int, copied: int) -> None:
        if reused:
            raise LockedError("a gc is running")

    with pytest.raises(LockedError):
        transfer(src, dst, [art], check_plan=refuse)
    dst.refresh()
    assert not dst.has(CHUNK, oid)
