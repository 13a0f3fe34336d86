"""Deltas and their bases across stores: a push sends the bases a remote lacks (in closure
order), gc keeps a delta's base alive on the cache and on a remote, verify checks bases, and
`verify --repair` refills a delta whose base went missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlvc.codec import DELTA
from mlvc.store.packs import CHUNK, decode_index

from helpers import cli, cli_proc, commit, git, ok
from remote.helpers import add_remote, age_journal, clone, make_repo, set_core


def _state(step: int, rows: int = 200) -> dict:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(rows, 1000, generator=g) * 0.02
    for _ in range(step):
        w = w + torch.randn(rows, 1000, generator=g) * 2e-5
    return {"layer.weight": w}


def _versions(repo, n: int) -> list[bytes]:
    """`last.pt` saved, added and committed `n` times (a delta chain on the previous version)."""
    out = []
    for step in range(n):
        torch.save(_state(step), repo / "last.pt")
        out.append((repo / "last.pt").read_bytes())
        ok(repo, "add", "-q", "last.pt")
        commit(repo, f"step {step}")
    return out


def _deltas(store) -> int:
    from mlvc.store.backend import open_backend

    backend = open_backend(*store) if isinstance(store, tuple) else None
    n = 0
    if backend is not None:
        for key in backend.list("packs/"):
            if key.endswith(".idx"):
                n += sum(e.codec == DELTA for e in decode_index(backend.get_bytes(key), key) if e.type == CHUNK)
        return n
    for idx in (store / "packs").glob("*.idx"):
        n += sum(e.codec == DELTA for e in decode_index(idx.read_bytes(), idx.name) if e.type == CHUNK)
    return n


@pytest.fixture
def run_repo(tmp_path):
    repo = make_repo(tmp_path / "work")
    set_core(repo, "float_planes", True)
    commit(repo, "config")
    return repo


def test_a_fresh_remote_receives_the_bases_it_lacks(run_repo, tmp_path, remote_spec):
    repo = run_repo
    versions = _versions(repo, 3)
    assert _deltas(repo / ".mlvc" / "cache") >= 2 * 12
    add_remote(repo, remote_spec)
    commit(repo, "remote")
    ok(repo, "push", "-q")  # the workspace's version only: its deltas' bases come along
    assert _deltas(remote_spec) >= 12
    code, out, err = cli(repo, "verify", "--remote", "origin", "--read-data")
    assert code == 0, (out, err)
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert (fresh / "last.pt").read_bytes() == versions[-1]


def test_gc_of_the_cache_keeps_the_bases_of_the_newest_version(run_repo):
    repo = run_repo
    versions = _versions(repo, 3)
    code, out, err = cli(repo, "gc", "--workspace", "--grace", "0", "--json")
    assert code == 0, (out, err)
    assert json.loads(out)["objects_removed"] >= 2  # the old versions' file manifests went
    (repo / "last.pt").unlink()
    ok(repo, "checkout", "-q")
    assert (repo / "last.pt").read_bytes() == versions[-1]
    code, out, err = cli(repo, "verify")
    assert code == 0, (out, err)


def test_gc_of_a_remote_keeps_the_bases_of_the_newest_version(run_repo, tmp_path, local_url):
    repo = run_repo
    versions = _versions(repo, 3)
    add_remote(repo, local_url)
    commit(repo, "remote")
    ok(repo, "push", "-q", "--all-commits")
    age_journal(local_url)
    code, out, err = cli(repo, "gc", "--workspace", "--remote", "origin", "--grace", "0", "--json")
    assert code == 0, (out, err)
    assert json.loads(out)["objects_removed"] >= 2
    code, out, err = cli(repo, "verify", "--remote", "origin", "--read-data")
    assert code == 0, (out, err)
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert (fresh / "last.pt").read_bytes() == versions[-1]


def test_verify_repair_refills_a_missing_base(run_repo, tmp_path, local_url):
    """The cache loses the pack holding a delta's base: verify names the delta and its missing
    base, and --repair fetches what the artifact needs from the remote."""
    repo = run_repo
    versions = _versions(repo, 2)
    add_remote(repo, local_url)
    commit(repo, "remote")
    ok(repo, "push", "-q", "--all-commits")
    cache = repo / ".mlvc" / "cache" / "packs"
    first = [idx for idx in cache.glob("*.idx")
             if not any(e.codec == DELTA for e in decode_index(idx.read_bytes(), idx.name))]
    for idx in first:  # the first version's packs: the bases
        idx.unlink()
        idx.with_suffix(".pack").unlink()
    git(repo, "checkout", "-q", "main")
    code, out, err = cli(repo, "verify")
    assert code != 0 and "missing" in out, (out, err)
    code, out, err = cli(repo, "verify", "--repair")
    assert code == 0, (out, err)
    (repo / "last.pt").unlink()
    ok(repo, "checkout", "-q")
    assert (repo / "last.pt").read_bytes() == versions[-1]


def test_reading_a_delta_from_the_remote_keeps_it_whole_in_the_cache(run_repo, tmp_path, local_url):
    """`mlvc.read` of a version the cache lacks fetches its records (a delta with its base, from
    the remote) and keeps them in the cache readable on their own: the second read is local."""
    import mlvc

    repo = run_repo
    versions = _versions(repo, 3)
    add_remote(repo, local_url)
    commit(repo, "remote")
    ok(repo, "push", "-q", "--all-commits")
    fresh = clone(repo, tmp_path / "fresh")
    assert mlvc.read("last.pt", repo=fresh) == versions[-1]
    assert mlvc.read("last.pt", rev="HEAD~2", repo=fresh) == versions[1]
    assert _deltas(fresh / ".mlvc" / "cache") == 0
    import shutil

    shutil.rmtree(tmp_path / "remote")  # the cache alone now
    assert mlvc.read("last.pt", rev="HEAD~2", repo=fresh) == versions[1]
    code, out, err = cli(fresh, "verify")
    assert code == 0, (out, err)


@pytest.mark.parametrize("fraction", [0.45, 0.6, 0.75, 0.9])
def test_an_add_of_a_run_killed_at_any_moment_leaves_no_delta_without_its_base(run_repo, fraction):
    """`kill -9` of `mlvc add run/` (small packs: the deltas and their bases lie in many packs,
    published by a background thread): whatever is visible verifies (no delta without its base),
    and the re-run stores the run and restores it byte-exactly."""
    import signal
    import time

    repo = run_repo
    set_core(repo, "pack_size", "256 KiB")
    (repo / "run").mkdir()
    bodies = {}
    for step in range(6):
        torch.save(_state(step, rows=1000), repo / "run" / f"step_{step}.pt")
        bodies[step] = (repo / "run" / f"step_{step}.pt").read_bytes()
    import shutil

    t0 = time.perf_counter()
    proc = cli_proc(repo, "add", "-q", "run")
    assert proc.wait() == 0
    full = time.perf_counter() - t0  # the whole process, start-up included
    shutil.rmtree(repo / ".mlvc" / "cache")
    (repo / "run.mlvc").unlink()
    proc = cli_proc(repo, "add", "-q", "run")
    time.sleep(full * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    code, out, err = cli(repo, "verify")
    assert code == 0, (out, err)
    ok(repo, "add", "-q", "run")
    code, out, err = cli(repo, "verify")
    assert code == 0, (out, err)
    assert _deltas(repo / ".mlvc" / "cache") >= 4 * 60  # steps 1-4 (step 5 starts a new chain)
    commit(repo, "run")
    shutil.rmtree(repo / "run")
    ok(repo, "checkout", "-q")
    for step, body in bodies.items():
        assert (repo / "run" / f"step_{step}.pt").read_bytes() == body


def test_status_counts_the_bases_a_push_would_send(run_repo, local_url):
    """What `status --remote` counts as unpushed is what the push then sends: the bases of the
    version's deltas included."""
    from mlvc.ops.push import unpushed_counts
    from mlvc.repo import Repo

    repo = run_repo
    _versions(repo, 3)
    add_remote(repo, local_url)
    commit(repo, "remote")
    Path(local_url[0]).mkdir()  # an empty remote
    counted = unpushed_counts(Repo.find(repo), None, ["last.pt"])["last.pt"]
    out = json.loads(ok(repo, "push", "--json"))
    assert counted == out["objects"] > 13 + 1, (counted, out)  # more than the version's own chunks
    assert unpushed_counts(Repo.find(repo), None, ["last.pt"])["last.pt"] == 0


def test_gc_keeps_the_base_of_a_delta_in_a_recent_pack_it_leaves_alone(run_repo):
    """A delta nothing reaches but young enough to stay (the grace period) keeps its base, though
    nothing else reaches that base: the cache never holds a delta without its base."""
    import os
    import time

    repo = run_repo
    torch.save(_state(0), repo / "last.pt")
    ok(repo, "add", "-q", "last.pt")
    commit(repo, "v0")
    old = time.time() - 7200
    for p in (repo / ".mlvc" / "cache" / "packs").iterdir():
        os.utime(p, (old, old))  # v0's packs: past the grace
    torch.save(_state(1), repo / "last.pt")
    ok(repo, "add", "-q", "last.pt")  # deltas on v0, in a young pack
    commit(repo, "v1")
    g = torch.Generator().manual_seed(99)
    torch.save({"layer.weight": torch.randn(50, 1000, generator=g)}, repo / "last.pt")
    ok(repo, "add", "-q", "last.pt")
    commit(repo, "v2: another model")
    code, out, err = cli(repo, "gc", "--workspace", "--grace", "600", "--json")
    assert code == 0, (out, err)
    assert json.loads(out)["objects_removed"] >= 1  # v0's own manifest and zip records went
    assert _deltas(repo / ".mlvc" / "cache") >= 12  # v1's deltas stay (young)...
    code, out, err = cli(repo, "verify")
    assert code == 0, (out, err)  # ...and so do their bases


@pytest.mark.parametrize("fraction", [0.7, 0.78, 0.86, 0.94])
def test_a_push_killed_at_any_moment_leaves_no_delta_without_its_base(run_repo, local_url, fraction):
    """`kill -9` of a push of delta chains (256 KiB remote packs, published by several threads):
    the remote verifies, reading every record (no delta without its base), and the re-run
    completes; a fresh clone pulls every version byte-exactly."""
    import signal
    import time

    repo = run_repo
    set_core(repo, "remote_pack_size", "256 KiB")
    bodies = []
    for step in range(5):
        torch.save(_state(step, rows=2000), repo / "last.pt")
        bodies.append((repo / "last.pt").read_bytes())
        ok(repo, "add", "-q", "last.pt")
        commit(repo, f"step {step}")
    add_remote(repo, local_url)
    commit(repo, "remote")
    t0 = time.perf_counter()
    cli_proc(repo, "push", "-q", "--all-commits").communicate()  # only its duration matters
    full = time.perf_counter() - t0
    import shutil

    shutil.rmtree(local_url[0])
    proc = cli_proc(repo, "push", "-q", "--all-commits")
    time.sleep(full * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    if Path(local_url[0]).exists():
        code, out, err = cli(repo, "verify", "--remote", "origin", "--read-data")
        assert code == 0, (out, err)
    ok(repo, "push", "-q", "--all-commits")
    code, out, err = cli(repo, "verify", "--remote", "origin", "--read-data")
    assert code == 0, (out, err)
    fresh = clone(repo, repo.parent / "fresh")
    for back, body in enumerate(reversed(bodies), start=1):
        git(fresh, "checkout", "-q", f"main~{back}")
        ok(fresh, "pull", "-q")
        assert (fresh / "last.pt").read_bytes() == body



def test_a_chunk_repacked_into_a_delta_during_a_push_never_reaches_the_remote_without_its_base(tmp_path):
    """A push plans from the cache's index as it is (v2's two blocks stored whole), then, after
    its first block is copied, a repack beside it stores the second as a delta on v1's block,
    whose pack the push never planned to send.  The push finds the block's new record (a delta on
    a base the remote lacks): the remote gets it whole (its checked plaintext), and reads it
    back without v1's block."""
    import numpy as np

    from helpers import open_cache
    from mlvc import codec
    from mlvc.chunking import ChunkerParams
    from mlvc.hashing import digest, to_oid
    from mlvc.objects import FileManifest
    from mlvc.progress import Progress
    from mlvc.store.gc import GcResult
    from mlvc.store.memory import MemoryBackend
    from mlvc.store.packs import FILE_MANIFEST
    from mlvc.store.packstore import PackStore, Role
    from mlvc.store.repack import ChunkHint, repack
    from mlvc.store.transfer import Artifact, transfer
    from mlvc.store.types import Root
    from mlvc.store.verify import verify

    rng = np.random.default_rng(0)
    w = (rng.standard_normal(16384) * 0.02).astype(np.float32)
    v1 = w.tobytes()
    blocks = [(w + rng.standard_normal(16384).astype(np.float32) * np.float32(2e-5)).astype(np.float32).tobytes()
              for _ in range(2)]
    b = digest(v1)
    ids = [digest(x) for x in blocks]
    fid = digest(b"".join(blocks))
    fm = FileManifest(fid, 2 * len(v1), ChunkerParams(16384, 65536, 262144), tuple((i, len(v1)) for i in ids))
    cache = tmp_path / "cache"
    packs = {}
    with open_cache(cache) as store:  # each block in its own pack, the manifest in another
        for oid, data in [(b, v1), *zip(ids, blocks, strict=True)]:
            store.put_stored(CHUNK, oid, codec.RAW, data, len(data))
            store.commit()
            packs[oid] = store.location(CHUNK, oid).pack
        store.put_object(FILE_MANIFEST, fid, fm.encode())
        store.commit()
    late = max(ids, key=lambda oid: packs[oid])  # copied second (a push reads packs in name order)

    class RepackBeside(Progress):
        done = False

        def advance(self, amount: int = 1) -> None:
            if not self.done:
                self.done = True
                with open_cache(cache) as other:
                    live = {(CHUNK, b), *((CHUNK, i) for i in ids), (FILE_MANIFEST, fid)}
                    res = repack(other, lambda: live, lambda: [[ChunkHint(late, len(v1), 4, 0, b)]],
                                 GcResult("all-commits", None, False), grace_s=0)
                    assert res.recoded_as_deltas == 1, res

    remote = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "scratch", fsync=False)
    with open_cache(cache) as pusher:
        progress = RepackBeside()
        out = transfer(pusher, remote, [Artifact("v2", Root("file", to_oid(fid), 2 * len(v1)))], progress=progress)
        assert progress.done and out.done == ["v2"], out
    assert not remote.has(CHUNK, b)  # never planned: the push did not need it
    assert [remote.get(CHUNK, i) for i in ids] == blocks
    assert verify(remote, read_data=True).ok
