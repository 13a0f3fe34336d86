"""The PackStore contract: one test class, bound to every kind of backend.

Memory, a local directory, a directory written by two processes at once, S3 on
a real moto server and S3 on a real SeaweedFS server.  A new backend is done
when this class passes on it.  Faults are injected by wrapping the backend
(`mlvc.store.faults`), never by patching internals.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from servers import REPO_ROOT, create_bucket, s3_options

from mlvc import codec
from mlvc.chunking import ChunkerParams
from mlvc.errors import CorruptObjectError, DiskError, MlvcError, ObjectNotFoundError, RemoteUnreachableError
from mlvc.hashing import digest, to_oid
from mlvc.objects import FileManifest, TreeEntry, TreeManifest
from mlvc.store.backend import open_backend
from mlvc.store.faults import CorruptOnceBackend, FailAfter, FlakyBackend
from mlvc.store.gc import GcResult, gc
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import CHUNK, FILE_MANIFEST, RAW, TREE_MANIFEST, ZSTD
from mlvc.store.packstore import PackStore, Role
from mlvc.store.records import COALESCE_LIMIT
from mlvc.store.shared_cache import register_user, users
from mlvc.store.transfer import Artifact, transfer
from mlvc.store.types import Root
from mlvc.store.verify import quarantine, reindex_orphan, verify

KINDS = ["memory", "local", "local-two-processes", "fsspec-local", "fsspec-memory",
         pytest.param("s3-moto", marks=pytest.mark.s3), pytest.param("s3-seaweedfs", marks=pytest.mark.s3)]


def artifact(name, kind, oid, size=0):
    """What transfer needs of an artifact: a name and its root (kind, oid, size)."""
    return Artifact(name, Root(kind, to_oid(oid), size))


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def make_backend(kind, tmp_path, request):
    """A factory of backends all pointing at the same fresh location of this kind."""
    if kind == "memory":
        shared = MemoryBackend()
        return lambda: shared
    if kind.startswith("local"):
        return lambda: open_backend(str(tmp_path / "store"))
    if kind == "fsspec-local":  # the plain FsspecBackend, on fsspec's own local filesystem
        return lambda: open_backend(f"local://{tmp_path / 'store'}")
    if kind == "fsspec-memory":  # ... and on its in-process memory filesystem
        url = f"memory://mlvc-{uuid.uuid4().hex}/store"
        return lambda: open_backend(url)
    endpoint = request.getfixturevalue("moto_server" if kind == "s3-moto" else "seaweed_server")
    url = f"s3://{create_bucket(endpoint)}/store"
    return lambda: open_backend(url, s3_options(endpoint))


@pytest.fixture
def make_store(make_backend, tmp_path):
    opened = []

    def make(backend=None, **options):
        b = backend or make_backend()
        b.ensure_base()
        store = PackStore(b, role=Role.REMOTE, scratch=tmp_path / f"scratch-{len(opened)}", fsync=False,
                          pack_size=options.pop("pack_size", 1 << 20), **options)
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


def add_file(store, data: bytes, chunk=100_000) -> bytes:
    chunks = []
    for i in range(0, len(data), chunk):
        oid, _ = store.put_chunk(data[i:i + chunk])
        chunks.append((oid, len(data[i:i + chunk])))
    fid = digest(data)
    fm = FileManifest(fid, len(data), ChunkerParams(16384, 65536, 262144), tuple(chunks))
    store.put_object(FILE_MANIFEST, fid, fm.encode())
    return fid


def add_tree(store, files: dict[str, bytes]) -> bytes:
    entries = [TreeEntry(path, len(body), add_file(store, body), False) for path, body in files.items()]
    tree = TreeManifest.build(entries)
    body = tree.encode()
    tid = tree.oid()
    store.put_object(TREE_MANIFEST, tid, body)
    return tid


def flip_stored_byte(backend, key: str, at: int) -> None:
    data = bytearray(backend.get_bytes(key))
    data[at] ^= 0xFF
    backend.delete(key)
    backend.put_bytes(key, bytes(data))


def keys(backend, suffix):
    return [k for k in backend.list("packs/") if k.endswith(suffix)]


class TestPackStoreContract:
    @pytest.mark.parametrize("level", [0, 3])
    def test_a_tree_read_in_pieces_is_checked_after_its_last_piece(self, make_store, make_backend, level):
        store = make_store(level=level)
        tid = add_tree(store, {f"d/{i:04d}": b"%d" % i for i in range(300)})
        store.commit()
        body = store.get(TREE_MANIFEST, tid)
        fresh = make_store()
        pieces = list(fresh.iter_decoded(TREE_MANIFEST, tid, piece=1000))
        assert len(pieces) > 1 and max(map(len, pieces)) <= 1000 and b"".join(pieces) == body
        c, payload, raw = fresh.stored_form(TREE_MANIFEST, tid)
        assert (c, raw) == ((ZSTD if level else RAW), len(body)) and codec.decode(c, payload, raw) == body
        pack, _c, off, stored, _raw = fresh.location(TREE_MANIFEST, tid)
        flip_stored_byte(make_backend(), f"packs/{pack}.pack", off + stored // 2)
        damaged = make_store()
        with pytest.raises(CorruptObjectError):
            list(damaged.iter_decoded(TREE_MANIFEST, tid, piece=1000))
        with pytest.raises(CorruptObjectError):
            damaged.stored_form(TREE_MANIFEST, tid)

    def test_roundtrip_dedup_and_reopen(self, make_store):
        store = make_store()
        data = b"hello world" * 1000
        oid, new = store.put_chunk(data)
        assert new and oid == digest(data)
        assert store.put_chunk(data) == (oid, False)
        store.commit()
        fresh = make_store()
        assert fresh.get(CHUNK, oid) == data and fresh.count() == 1

    def test_compressible_chunks_compressed_random_ones_raw(self, make_store):
        store = make_store()
        text, noise = b"abcd" * 50_000, os.urandom(200_000)
        t, _ = store.put_chunk(text)
        n, _ = store.put_chunk(noise)
        store.commit()
        fresh = make_store()
        assert fresh.location(CHUNK, t)[1] == ZSTD and fresh.location(CHUNK, n)[1] == RAW
        assert fresh.get(CHUNK, t) == text and fresh.get(CHUNK, n) == noise

    def test_packs_roll_over_and_runs_read_together(self, make_store):
        store = make_store()
        blobs = [os.urandom(300_000) for _ in range(8)]
        ids = [store.put_chunk(b)[0] for b in blobs]
        store.commit()
        assert len(keys(store.backend, ".idx")) >= 2
        fresh = make_store()
        assert b"".join(fresh.iter_chunks([(i, 300_000) for i in ids])) == b"".join(blobs)

    def test_same_id_different_types_do_not_collide(self, make_store):
        store = make_store()
        oid, _ = store.put_chunk(b"single chunk file")
        store.put_object(TREE_MANIFEST, oid, b"not really a tree")
        store.commit()
        fresh = make_store()
        assert fresh.get(CHUNK, oid) == b"single chunk file"
        assert fresh.has(TREE_MANIFEST, oid)

    def test_pack_without_index_is_invisible_until_reindexed(self, make_store):
        store = make_store()
        oid, _ = store.put_chunk(b"x" * 5000)
        store.commit()
        (idx,) = keys(store.backend, ".idx")
        store.backend.delete(idx)  # as if the writer died between the pack and its index
        fresh = make_store()
        assert not fresh.has(CHUNK, oid)
        with pytest.raises(ObjectNotFoundError):
            fresh.get(CHUNK, oid)
        report = verify(fresh)
        assert report.orphans and report.ok
        assert reindex_orphan(fresh, report.orphans[0]) is not None
        assert make_store().get(CHUNK, oid) == b"x" * 5000

    def test_index_without_pack_counts_as_missing(self, make_store):
        store = make_store()
        oid, _ = store.put_chunk(os.urandom(5000))
        store.commit()
        (pack,) = keys(store.backend, ".pack")
        store.backend.delete(pack)
        fresh = make_store()
        assert not fresh.has(CHUNK, oid)  # so a push uploads it again
        report = verify(fresh)
        assert not report.ok and "pack file missing" in report.problems[0].message

    def test_flipped_byte_detected_on_read_and_by_verify(self, make_store):
        store = make_store()
        data = os.urandom(100_000)
        oid, _ = store.put_chunk(data)
        store.commit()
        (pack,) = keys(store.backend, ".pack")
        flip_stored_byte(store.backend, pack, -500)
        fresh = make_store()
        with pytest.raises(CorruptObjectError) as exc:
            fresh.get(CHUNK, oid)
        assert exc.value.oid.endswith(oid.hex())
        assert verify(fresh, read_data=False).ok  # chunks are not read without read_data
        report = verify(fresh, read_data=True)
        assert len(report.problems) == 1 and report.problems[0].oid == to_oid(oid)

    def test_truncated_pack_and_damaged_index_are_reported(self, make_store):
        store = make_store()
        oid, _ = store.put_chunk(os.urandom(50_000))
        store.commit()
        (pack,) = keys(store.backend, ".pack")
        data = store.backend.get_bytes(pack)
        store.backend.delete(pack)
        store.backend.put_bytes(pack, data[:1000])
        with pytest.raises(CorruptObjectError):
            make_store().get(CHUNK, oid)
        assert "truncated" in verify(make_store()).problems[0].message
        (idx,) = keys(store.backend, ".idx")
        body = store.backend.get_bytes(idx)
        store.backend.put_bytes(idx, body[:-3])
        fresh = make_store()
        fresh.refresh()
        assert fresh.problems and not fresh.has(CHUNK, oid)

    def test_abort_leaves_nothing_visible(self, make_store, tmp_path):
        store = make_store()
        oid, _ = store.put_chunk(b"z" * 1000)
        store.abort()
        assert not make_store().has(CHUNK, oid)
        assert keys(store.backend, ".pack") == []
        assert list(store.scratch.iterdir()) == []

    def test_transfer_both_ways_with_a_memory_store(self, make_store, tmp_path):
        store = make_store()
        tid = add_tree(store, {f"f{i}": os.urandom(120_000 + i) for i in range(5)})
        store.commit()
        other = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "other", fsync=False, pack_size=1 << 20)
        art = artifact("ds", "dir", tid)
        out = transfer(make_store(), other, [art])
        assert out.done == ["ds"] and out.objects == 5 * 2 + 5 + 1  # 2 chunks + 1 manifest per file, 1 tree
        assert transfer(make_store(), other, [art]).up_to_date == ["ds"]
        back = make_store(backend=None)
        # wipe this store's packs, then bring everything back from the other one
        for k in store.backend.list("packs/"):
            store.backend.delete(k)
        assert transfer(other, back, [art]).done == ["ds"]
        assert verify(make_store()).ok and make_store().has(TREE_MANIFEST, tid)

    def test_a_reader_whose_index_predates_a_gc_reads_the_objects_from_their_new_packs(self, make_store):
        """A checkout or push beside a gc (or `gc --repack`, which rewrites most packs): the
        packs whose index it loaded go once their live objects are published elsewhere.  It
        finds them there, instead of calling the store corrupt (exit 6)."""
        store = make_store()
        data = os.urandom(250_000)
        keep = add_file(store, data)
        drop = add_file(store, os.urandom(250_000))
        store.commit()
        looker = make_store()
        chunks = FileManifest.decode(looker.get(FILE_MANIFEST, keep), keep).chunks
        live = {(FILE_MANIFEST, keep), *((CHUNK, c) for c, _ in chunks)}
        reader, other = make_store(), make_store()
        assert reader.has(FILE_MANIFEST, keep) and reader.has(CHUNK, chunks[0][0])  # index loaded, no pack read
        assert gc(other, lambda: live, GcResult("test", None, False), grace_s=0).objects_removed > 0
        assert FileManifest.decode(reader.get(FILE_MANIFEST, keep), keep).chunks == chunks
        assert b"".join(bytes(b) for b in reader.iter_chunks(chunks)) == data
        assert reader.stored_form(CHUNK, chunks[1][0])[2] == chunks[1][1]
        assert not reader.has_any(FILE_MANIFEST, drop)

    def test_a_long_read_beside_many_gcs_goes_on(self, make_store):
        """Each gc beside a read removes a pack the read has yet to reach: the read lists the
        store again each time and goes on (the bound is on removals in a row, not in all)."""
        store = make_store()
        chunks, garbage = [], []
        for i in range(10):  # each pack: a live chunk and a dead one
            chunks.append(store.put_chunk(os.urandom(5000) + bytes([i]))[0])
            garbage.append(store.put_chunk(os.urandom(5000) + bytes([i]))[0])
            store.commit()
        reader = make_store()
        items = reader.iter_stored([(CHUNK, c) for c in chunks])
        got = [next(items)]
        for i in range(1, 10):  # the pack of chunk i goes, its chunk is copied to a new one
            live = {(CHUNK, c) for c in chunks} | {(CHUNK, g) for j, g in enumerate(garbage) if j != i}
            res = gc(make_store(), lambda live=live: live, GcResult("test", None, False), grace_s=0)
            assert res.objects_removed == 1
            got.append(next(items))
        assert [key[1] for key, *_rest, error in got if error is None] == chunks

    def test_gc_removes_the_dead_and_keeps_the_live(self, make_store):
        store = make_store()
        keep = add_file(store, os.urandom(250_000))
        drop = add_file(store, os.urandom(250_000))
        store.commit()
        fresh = make_store()
        live = {(FILE_MANIFEST, keep), *((CHUNK, c) for c, _ in FileManifest.decode(
            fresh.get(FILE_MANIFEST, keep), keep).chunks)}
        result = gc(fresh, lambda: live, GcResult("test", None, False), grace_s=0)
        assert result.objects_removed > 0
        after = make_store()
        assert after.has(FILE_MANIFEST, keep) and not after.has(FILE_MANIFEST, drop)
        assert verify(after).ok

    def test_verify_beside_a_gc_reports_no_damage(self, make_store):
        """A gc removes a pack verify listed and has yet to read (its live objects copied to a
        new pack first): gone, not damaged.  verify stopped with 'a pack file, got only its index'."""
        from mlvc.progress import Progress

        store = make_store()
        live = set()
        for i in range(3):  # each pack: a live chunk and a dead one
            live.add((CHUNK, store.put_chunk(os.urandom(5000) + bytes([i]))[0]))
            store.put_chunk(os.urandom(5000) + bytes([i]))
            store.commit()

        class GcBeside(Progress):
            done = False

            def advance(self, amount: int = 1) -> None:
                if not self.done:
                    self.done = True
                    assert gc(make_store(), lambda: live, GcResult("test", None, False), grace_s=0).objects_removed == 3

        progress = GcBeside()
        report = verify(make_store(), read_data=True, progress=progress)
        assert progress.done and report.ok, report.problems
        assert verify(make_store(), read_data=True).ok

    def test_quarantine_keeps_intact_objects_and_deletes_nothing(self, make_store):
        store = make_store()
        good, _ = store.put_chunk(os.urandom(60_000))
        bad, _ = store.put_chunk(os.urandom(60_000))
        store.commit()
        (pack,) = keys(store.backend, ".pack")
        fresh = make_store()
        flip_stored_byte(store.backend, pack, fresh.location(CHUNK, bad)[2] + 10)
        report = verify(make_store())
        assert report.bad_packs() == [pack[len("packs/"):-len(".pack")]]
        where, saved = quarantine(make_store(), report.bad_packs()[0], "test")
        assert saved == 1
        after = make_store()
        assert after.get(CHUNK, good) and not after.has(CHUNK, bad)
        assert any(k.startswith(where) for k in store.backend.list("quarantine/"))
        assert verify(after).ok

    def test_users_registry(self, make_store, tmp_path):
        store = make_store()
        register_user(store.backend, tmp_path / "repo-a")
        register_user(store.backend, tmp_path / "repo-a")
        register_user(make_store().backend, tmp_path / "repo-b")
        assert sorted(p.name for p in users(make_store().backend)) == ["repo-a", "repo-b"]

    def test_guarded_indexes(self, make_store):
        """`guard_indexes(check)`: check() runs before each index the store publishes, and its
        error keeps the index unpublished; outside the guard nothing is checked."""
        store = make_store()
        calls = []

        def lease_lost():
            calls.append(1)
            raise MlvcError("lease lost")

        with store.guard_indexes(lease_lost):
            store.put_chunk(os.urandom(5000))
            with pytest.raises(MlvcError, match="lease lost"):
                store.commit()
        assert calls == [1] and make_store().count() == 0
        oid, _ = store.put_chunk(os.urandom(5000))
        store.commit()
        assert calls == [1] and make_store().has(CHUNK, oid)

    def test_an_adopted_pack_is_guarded_like_a_written_one(self, make_store, tmp_path):
        """A whole pack copied from another store (`adopt_pack`, a push's whole-pack copy) is
        published through the same index guard."""
        other = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "other", fsync=False)
        oid, _ = other.put_chunk(os.urandom(5000))
        other.commit()
        name = other.location(CHUNK, oid).pack
        copy = tmp_path / "copy.pack"
        copy.write_bytes(other.backend.get_bytes(f"packs/{name}.pack"))
        store = make_store()

        def lease_lost():
            raise MlvcError("lease lost")

        with store.guard_indexes(lease_lost), pytest.raises(MlvcError, match="lease lost"):
            store.adopt_pack(copy, name, other.index_bytes(name))
        assert not make_store().has(CHUNK, oid) and not store.has(CHUNK, oid)
        copy.write_bytes(other.backend.get_bytes(f"packs/{name}.pack"))
        store.adopt_pack(copy, name, other.index_bytes(name))
        assert make_store().has(CHUNK, oid)

    def test_faults_injected_by_wrapping(self, make_store, make_backend):
        store = make_store()
        oid, _ = store.put_chunk(os.urandom(70_000))
        store.commit()
        flaky = make_store(backend=FlakyBackend(make_backend(), failures=1, methods=("list",)))
        with pytest.raises(RemoteUnreachableError):
            flaky.refresh()
        assert flaky.get(CHUNK, oid)  # the next call goes through
        corrupt = make_store(backend=CorruptOnceBackend(make_backend(), match=".pack"))
        if not corrupt.backend.capabilities.local_files:  # local packs are read by pread, not the backend
            with pytest.raises(CorruptObjectError):
                corrupt.get(CHUNK, oid)
            assert corrupt.get(CHUNK, oid)
        full = make_store(backend=FailAfter(make_backend(), 0))
        full.put_chunk(os.urandom(10_000))
        with pytest.raises(DiskError):
            full.commit()
        assert not make_store().has(CHUNK, digest(b"")) and verify(make_store()).ok

    def test_a_failed_pack_keeps_later_manifests_invisible(self, make_store, make_backend):
        """The closure rule when a publish fails: the manifest pack written after it never shows."""
        store = make_store(backend=FlakyBackend(make_backend(), failures=1, methods=("put_file",)),
                           pack_size=100_000, jobs=4)  # several publishes in flight at once
        with pytest.raises(RemoteUnreachableError):
            add_file(store, os.urandom(350_000), chunk=100_000)
            store.commit()
        store.abort()
        fresh = make_store()
        assert list(fresh.iter_ids(FILE_MANIFEST)) == []  # chunk packs after it may show; manifests never
        assert verify(fresh).ok

    def test_concurrent_writers(self, make_store, make_backend, kind, tmp_path):
        """Two writers publish at once; with `local-two-processes` the second is another process."""
        store = make_store()
        if kind == "local-two-processes":
            script = (
                "import os, sys\n"
                "from mlvc.store.backend import open_backend\n"
                "from mlvc.store.packstore import PackStore, Role\n"
                "s = PackStore(open_backend(sys.argv[1]), role=Role.REMOTE, scratch=sys.argv[2] + '/scratch',"
                " fsync=False, pack_size=1 << 18)\n"
                "for i in range(20):\n"
                "    s.put_chunk(bytes([i]) * 50_000 + os.urandom(1000))\n"
                "s.commit()\n")
            env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
            proc = subprocess.Popen([sys.executable, "-c", script, store.backend.describe(), str(tmp_path)], env=env)
        else:
            proc = None
            other = make_store()
        mine = [store.put_chunk(bytes([200 + i % 50]) * 50_000 + os.urandom(1000))[0] for i in range(20)]
        if proc is None:
            for i in range(20):
                other.put_chunk(bytes([i]) * 50_000 + os.urandom(1000))
            other.commit()
        store.commit()
        if proc is not None:
            assert proc.wait(timeout=60) == 0
        fresh = make_store()
        assert fresh.count() == 40 and all(fresh.has(CHUNK, o) for o in mine)
        assert verify(fresh).ok


def test_memory_backend_needs_no_server():
    """The reference kind works with nothing around it (used by fast tests of the layers above)."""
    b = MemoryBackend()
    assert b.create_bytes("locks/x", b"1") and b.create_bytes("locks/x", b"2") is None
    tag = b.get_tagged("locks/x")[1]
    assert b.replace_if_unchanged("locks/x", b"3", "wrong") is None
    assert b.replace_if_unchanged("locks/x", b"3", tag)
    assert b.list("locks/") == ["locks/x"]
    _ = (time, uuid)


def test_a_store_is_the_cache_or_a_remote_by_its_role(tmp_path):
    """The role is said, not guessed from other arguments: the cache keeps completeness marks
    and vouches for a subtree by them only; a remote keeps none, trusts its closure and counts
    its requests.  A role at odds with the marks is refused."""
    cache = PackStore(MemoryBackend(), role=Role.CACHE, scratch=tmp_path / "c", marks=tmp_path / "m.sqlite")
    remote = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "r")
    assert (cache.role, cache.closure_trusted, cache.counts_requests) == (Role.CACHE, False, False)
    assert (remote.role, remote.closure_trusted, remote.counts_requests) == (Role.REMOTE, True, True)
    cache.complete.add(["xxh128:" + "1" * 32])
    assert "xxh128:" + "1" * 32 in cache.complete
    with pytest.raises(ValueError, match="completeness marks"):
        PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "x", marks=tmp_path / "m2.sqlite")
    with pytest.raises(ValueError, match="completeness marks"):
        PackStore(MemoryBackend(), role=Role.CACHE, scratch=tmp_path / "y")
    cache.close()
    remote.close()


def test_objects_of_a_pack_being_published_read_back_intact(tmp_path):
    """A full pack is published by a background thread; reading its objects meanwhile (a fetch
    that reads what it just stored) must see their bytes, never a closed or reused file."""
    store = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "s", fsync=False, pack_size=64 * 1024,
                      jobs=2)
    blobs = [os.urandom(40_000) for _ in range(60)]
    ids = []
    for b in blobs:
        ids.append(store.put_chunk(b)[0])
        for oid, blob in zip(ids[-3:], blobs[len(ids) - 3:len(ids)], strict=False):
            assert store.get(CHUNK, oid) == blob
    store.commit()
    assert [store.get(CHUNK, o) for o in ids] == blobs
    store.close()


def test_transfer_of_a_tree_larger_than_a_manifest_batch_and_a_chunk_batch(tmp_path, monkeypatch):
    """A tree is walked a batch of files at a time, and a batch's chunks are copied in parts:
    the result is the same store (duplicates across batches copied once, the tree last)."""
    import mlvc.store.transfer as transfer_module

    monkeypatch.setattr(transfer_module, "MANIFEST_BATCH", 7)
    monkeypatch.setattr(transfer_module, "CHUNK_BATCH", 3)
    monkeypatch.setattr(transfer_module, "STREAM_OVER", 0)  # walked as decompressed, read again to be written
    src = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "src", fsync=False, pack_size=1 << 14)
    files = {f"d{i % 3}/f{i:03d}": os.urandom(50 + i) for i in range(40)}
    files["same-a"] = files["same-b"] = b"shared content"
    files["zz-copy-of-the-first"] = files["d0/f000"]  # its chunk was copied batches earlier
    tid = add_tree(src, files)
    src.commit()
    dst = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "dst", fsync=False, pack_size=1 << 14)
    out = transfer(src, dst, [artifact("ds", "dir", tid)])
    assert out.done == ["ds"] and not out.failed
    # one chunk and one manifest per distinct content, one tree: each appended once
    assert out.objects == 41 * 2 + 1
    assert sum(len(dst.pack_entries(p)) for p in dst.pack_names()) == 41 * 2 + 1
    assert verify(dst).ok
    tree = TreeManifest.decode(dst.get(TREE_MANIFEST, tid), tid)
    assert len(tree.entries) == len(files)
    for e in tree.entries:
        fm = FileManifest.decode(dst.get(FILE_MANIFEST, e.file_id), e.file_id)
        assert b"".join(dst.get(CHUNK, c) for c, _ in fm.chunks) == files[e.path]


@pytest.mark.parametrize("level", [0, 3])
def test_an_object_stored_in_pieces_reads_back_whole_under_the_id_of_its_bytes(tmp_path, level):
    store = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "s", fsync=False, level=level)
    pieces = [b'{"mlvc_tree":1,', b"x" * 100_000, b"", b"]}"]
    oid = store.put_pieces(TREE_MANIFEST, iter(pieces))
    store.commit()
    assert oid == digest(b"".join(pieces))
    assert store.get(TREE_MANIFEST, oid) == b"".join(pieces)
    assert store.put_pieces(TREE_MANIFEST, iter(pieces)) == oid and store.stats["new_objects"] == 1


def test_a_damaged_copy_of_a_large_tree_at_the_destination_is_never_walked(tmp_path, monkeypatch):
    """A large tree is walked as it is decompressed; a copy the destination already has (a cache
    without its completeness mark) is checked first, so ids a damaged copy misreads never reach
    a batch: the source's copy is walked and the artifact transfers whole."""
    import mlvc.store.transfer as transfer_module

    monkeypatch.setattr(transfer_module, "STREAM_OVER", 0)
    monkeypatch.setattr(transfer_module, "MANIFEST_BATCH", 7)  # batches leave before the tree is checked
    src = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "src", fsync=False)
    files = {f"f{i:03d}": os.urandom(100 + i) for i in range(30)}
    tid = add_tree(src, files)
    src.commit()
    body = src.get(TREE_MANIFEST, tid)
    some_id = digest(files["f007"]).hex().encode()
    damaged = body.replace(some_id, some_id[:-1] + (b"0" if some_id[-1:] != b"0" else b"1"))
    assert damaged != body and len(damaged) == len(body)
    dst = PackStore(MemoryBackend(), role=Role.CACHE, scratch=tmp_path / "dst", fsync=False,
                    marks=tmp_path / "marks.sqlite")
    dst.put_stored(TREE_MANIFEST, tid, RAW, damaged, len(damaged))
    dst.commit()
    out = transfer(src, dst, [artifact("ds", "dir", tid)])
    assert out.done == ["ds"] and not out.failed
    for path, data in files.items():
        fm = FileManifest.decode(dst.get(FILE_MANIFEST, digest(data)), digest(data))
        assert b"".join(dst.get(CHUNK, c) for c, _ in fm.chunks) == data, path
    dst.close()
    src.close()


def test_compressed_chunks_are_decoded_ahead_in_order_and_a_damaged_one_names_its_pack(tmp_path):
    """A restore decodes byte-plane and zstd chunks on helper threads ahead of the reader: the
    chunks still come in the order asked, raw ones among them, and a damaged one fails with the
    error that names its pack (as the one-thread read gives)."""
    import numpy as np
    from helpers import open_cache

    from mlvc.store.packs import PLANES, decode_index

    rng = np.random.default_rng(9)
    blobs = []
    for i in range(120):
        kind = i % 3
        if kind == 0:
            blobs.append(((rng.standard_normal(8000 + i) * 0.02).astype(np.float32).tobytes(), 4))
        elif kind == 1:
            blobs.append((b"step,loss\n" * (500 + i), 0))
        else:
            blobs.append((rng.bytes(20000 + i), 0))
    store = open_cache(tmp_path / "c", fsync=False)
    enc = codec.ChunkEncoder(3)
    refs = [(store.put_chunk(b, None, enc, width)[0], len(b)) for b, width in blobs]
    store.commit()
    store.close()
    store = open_cache(tmp_path / "c")
    assert [bytes(d) for d in store.iter_chunks(refs + refs[:5], check_ids=False)] == \
        [b for b, _w in blobs] + [b for b, _w in blobs[:5]]
    store.close()
    idx = next((tmp_path / "c" / "packs").glob("*.idx"))
    entries = decode_index(idx.read_bytes(), idx.name)
    assert {e.codec for e in entries} == {PLANES, ZSTD, RAW}
    bad = next(e for e in entries if e.codec == PLANES and e.oid == refs[60][0])
    pack = idx.with_suffix(".pack")
    data = bytearray(pack.read_bytes())
    data[bad.offset + bad.stored - 3] ^= 0x10
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    store = open_cache(tmp_path / "c")
    got = []
    with pytest.raises(CorruptObjectError) as info:
        for d in store.iter_chunks(refs, check_ids=True):
            got.append(bytes(d))
    store.close()
    assert len(got) == 60 and info.value.oid == to_oid(refs[60][0]) and "pack" in info.value.where


def _float_and_text_chunks(store, n: int, seed: int):
    """n chunks (fp32 values, stored as byte planes, and text, zstd) put in `store`: (refs, blobs)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    enc = codec.ChunkEncoder(3)
    refs, blobs = [], []
    for i in range(n):
        if i % 4 == 3:
            blob, width = b"epoch,loss,acc\n" * (3000 + i), 0
        else:
            blob, width = (rng.standard_normal(16000 + i) * 0.02).astype(np.float32).tobytes(), 4
        refs.append((store.put_chunk(blob, None, enc, width)[0], len(blob)))
        blobs.append(blob)
    return refs, blobs


def test_compressed_chunks_are_decoded_in_batches_not_one_task_each(tmp_path, monkeypatch):
    """A restore of compressed chunks hands the decode threads batches of records (a task per
    64 KiB chunk left the reader waiting on a future per chunk): 200 chunks are a few tasks, and
    come back in order, every byte as stored."""
    from helpers import open_cache

    from mlvc.store import decodeahead

    store = open_cache(tmp_path / "c", fsync=False)
    refs, blobs = _float_and_text_chunks(store, 200, 5)
    store.commit()
    store.close()
    real = decodeahead._decode_pool()
    tasks = []

    class Counting:
        def submit(self, fn, *args):
            tasks.append(fn)
            return real.submit(fn, *args)

    monkeypatch.setattr(decodeahead, "_decode_pool", lambda: Counting())
    store = open_cache(tmp_path / "c")
    assert [bytes(d) for d in store.iter_chunks(refs, check_ids=False)] == blobs
    store.close()
    assert 0 < len(tasks) <= len(refs) // 8


def test_raw_chunks_behind_a_decoding_batch_are_not_read_ahead_without_bound(tmp_path):
    """A raw chunk behind compressed ones waits for their batch, but the queue holds at most
    DECODE_AHEAD_BYTES: taking the first chunks of a zstd chunk followed by 48 MiB of raw ones
    reads a bounded part of the pack, not all of it."""
    from helpers import open_cache

    from mlvc.store import decodeahead

    store = open_cache(tmp_path / "c", fsync=False)
    enc = codec.ChunkEncoder(3)
    blobs = [b"header\n" * 4000] + [os.urandom(256 << 10) for _ in range(192)]
    refs = [(store.put_chunk(b, None, enc)[0], len(b)) for b in blobs]
    store.commit()
    store.close()
    store = open_cache(tmp_path / "c")
    chunks = store.iter_chunks(refs, check_ids=False)
    assert bytes(next(chunks)) == blobs[0] and bytes(next(chunks)) == blobs[1]
    read = store.reads
    rest = [bytes(d) for d in chunks]
    store.close()
    assert rest == blobs[2:]
    # what was read before the second chunk was given is the queue's bound, and a coalesced read
    assert read * COALESCE_LIMIT <= decodeahead.DECODE_AHEAD_BYTES + 2 * COALESCE_LIMIT


def _mapped_pack_rss(packs_dir) -> int:
    """Bytes of this process's RSS in mappings of files under `packs_dir` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                inside = line.rstrip().endswith(".pack") and str(packs_dir) in line
            elif inside and first == "Rss:":
                total += int(line.split()[1]) * 1024
    return total


def test_restore_drops_only_pages_read_long_ago(tmp_path):
    """Pages of mapped packs are dropped from the process as a restore reads on (RSS stays
    bounded however much is read), but not those of the last MAP_KEEP_BYTES: a writer thread
    behind the reads still copies from them, and dropping them made it fault each page in twice."""
    from helpers import open_cache

    from mlvc.store import packreads

    store = open_cache(tmp_path / "c", fsync=False)
    blobs = [os.urandom(1 << 20) for _ in range(48)]
    refs = [(store.put_chunk(b, None, None)[0], len(b)) for b in blobs]
    store.commit()
    store.close()
    store = open_cache(tmp_path / "c")
    packs = tmp_path / "c" / "packs"
    chunks = store.iter_chunks(refs * 4, check_ids=False)
    for _ in range(40):  # 40 MiB read: more than MAP_RELEASE_BYTES, less than MAP_KEEP_BYTES
        bytes(next(chunks))
    # (dropping every page each 16 MiB left ~16 MiB; the margin is for a kernel reclaiming some)
    assert (rss := _mapped_pack_rss(packs)) >= 24 << 20, rss
    for data in chunks:  # 192 MiB in all
        bytes(data)
    assert (rss := _mapped_pack_rss(packs)) <= packreads.MAP_KEEP_BYTES + packreads.MAP_RELEASE_BYTES + (16 << 20), rss
    store.close()


def test_get_gives_bytes_even_for_a_raw_chunk_read_from_a_mapped_pack(tmp_path):
    """`get` answers bytes, as ObjectReader says (a raw chunk of a local pack is decoded as a
    view of the mapping: `get` copies it; restores read views through iter_chunks)."""
    from helpers import open_cache

    blob = os.urandom(100_000)  # incompressible: stored raw
    store = open_cache(tmp_path / "c", fsync=False)
    oid, _new = store.put_chunk(blob)
    store.commit()
    store.close()
    store = open_cache(tmp_path / "c")
    data = store.get(CHUNK, oid)
    store.close()
    assert type(data) is bytes and data == blob
