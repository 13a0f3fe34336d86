"""A transfer beside a gc of its source: the packs it planned to copy whole (a fetch from a
remote) or record by record go once their live objects are published elsewhere, and the
transfer reads them there."""

from __future__ import annotations

import os

from helpers import open_cache

from mlvc.chunking import ChunkerParams
from mlvc.hashing import digest, to_oid
from mlvc.objects import FileManifest
from mlvc.progress import Progress
from mlvc.store.gc import GcResult, gc
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import CHUNK, FILE_MANIFEST
from mlvc.store.packstore import PackStore, Role
from mlvc.store.transfer import Artifact, transfer
from mlvc.store.types import Root


def test_a_fetch_copying_whole_packs_beside_a_remote_gc_reads_the_objects_from_their_new_packs(tmp_path):
    """The fetch copies the remote's packs whole (it needs most of each); after the first, a gc
    removes the second (its garbage dropped, its live chunk copied to a new pack): the fetch
    reads that chunk from the new pack.  It stopped with 'pack index ... is missing' (exit 7)."""
    backend = MemoryBackend()

    def remote(n: int) -> PackStore:
        return PackStore(backend, role=Role.REMOTE, scratch=tmp_path / f"scratch-{n}", fsync=False)

    writer = remote(0)
    parts = [os.urandom(60_000) for _ in range(2)]
    for part in parts:  # each pack: a chunk of the file and a little garbage
        writer.put_chunk(part)
        writer.put_chunk(os.urandom(2_000))
        writer.commit()
    data = b"".join(parts)
    fid = digest(data)
    fm = FileManifest(fid, len(data), ChunkerParams(16384, 65536, 262144), tuple((digest(p), len(p)) for p in parts))
    writer.put_object(FILE_MANIFEST, fid, fm.encode())
    writer.commit()
    live = {(FILE_MANIFEST, fid), *((CHUNK, digest(p)) for p in parts)}

    class GcBeside(Progress):
        done = False

        def advance(self, amount: int = 1) -> None:
            if not self.done:
                self.done = True
                assert gc(remote(1), lambda: live, GcResult("test", None, False), grace_s=0).objects_removed == 2

    progress = GcBeside()
    with open_cache(tmp_path / "cache") as cache:
        out = transfer(remote(2), cache, [Artifact("f", Root("file", to_oid(fid), len(data)))], jobs=1,
                       progress=progress)
        assert progress.done and out.done == ["f"], out
        assert b"".join(cache.get(CHUNK, digest(p)) for p in parts) == data
