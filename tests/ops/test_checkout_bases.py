"""A restore reads the bases of deltas from local files that hold them (`mlvc.store.filebases`):
the workspace's version of a file it replaces, and the files it has just written, each chunk's
bytes checked against its id before use (a file changed since falls back to the store)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import commit, git, mlvc_cli, open_cache

from remote.helpers import set_core  # isort: skip

from mlvc.codec import DELTA
from mlvc.objects import FileManifest
from mlvc.ops.checkout import checkout
from mlvc.hashing import from_oid
from mlvc.pointer import load
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK, FILE_MANIFEST

from .test_add_deltas import run_of


@pytest.fixture(autouse=True)
def _planes_on(repo_dir):
    set_core(repo_dir, "float_planes", True)


def _chunks(cache: Path, fid: bytes) -> list[tuple[bytes, int]]:
    with open_cache(cache) as store:
        return FileManifest.decode(store.get(FILE_MANIFEST, fid), fid).chunks


def _bases(cache: Path, chunks) -> dict[bytes, bytes]:
    """{delta chunk id: its base's id} of the chunks stored as deltas."""
    with open_cache(cache) as store:
        return store.delta_bases([c for c, _n in chunks])


def _damage(cache: Path, oids) -> None:
    """Flip a byte in the middle of each object's record in its pack."""
    with open_cache(cache) as store:
        where = [store.location(CHUNK, oid) for oid in oids]
    for loc in where:
        pack = cache / "packs" / f"{loc.pack}.pack"
        os.chmod(pack, 0o644)
        with open(pack, "r+b") as f:
            f.seek(loc.offset + loc.stored // 2)
            b = f.read(1)
            f.seek(loc.offset + loc.stored // 2)
            f.write(bytes([b[0] ^ 0xFF]))


def _file_id(repo_dir: Path, pointer: str) -> bytes:
    return from_oid(load(repo_dir / pointer).oid)


def test_the_workspace_version_serves_as_base_and_is_checked(repo_dir):
    """last.pt at v1 in the workspace, v2 (deltas on v1) checked out: v2's bases are read from
    the workspace file, not from v1's records (damaged here: reading them fails), and a base
    whose bytes in the file changed since (mtime kept, so the hash cache still names v1) is
    read from its record instead (intact for that one)."""
    versions = []
    for i, sd in enumerate(run_of(2)):
        torch.save(sd, repo_dir / "last.pt")
        versions.append((repo_dir / "last.pt").read_bytes())
        assert mlvc_cli(repo_dir, "add", "last.pt").code == 0
        commit(repo_dir, f"v{i + 1}", tag=f"s{i + 1}")
    cache = repo_dir / ".mlvc" / "cache"
    git(repo_dir, "checkout", "-q", "s1")
    v1 = _chunks(cache, _file_id(repo_dir, "last.pt.mlvc"))
    assert mlvc_cli(repo_dir, "checkout", "--force").code == 0
    assert (repo_dir / "last.pt").read_bytes() == versions[0]
    git(repo_dir, "checkout", "-q", "s2")
    v2 = _chunks(cache, _file_id(repo_dir, "last.pt.mlvc"))
    bases = sorted(set(_bases(cache, v2).values()))
    assert len(bases) >= 4, bases
    # one base's bytes changed in the workspace file, the file's stat as it was
    offsets = {}
    at = 0
    for oid, n in v1:
        offsets[oid] = (at, n)
        at += n
    changed = bases[0]
    path = repo_dir / "last.pt"
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offsets[changed][0] + 10)
        b = f.read(1)
        f.seek(offsets[changed][0] + 10)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _damage(cache, bases[1:])  # the others only in the cache
    r = mlvc_cli(repo_dir, "checkout", "--force")
    assert r.code == 0, r
    assert (repo_dir / "last.pt").read_bytes() == versions[1]


def committed_run(repo_dir) -> dict[str, bytes]:
    """A run's directory of three steps (each stored against the one before), added by one
    `mlvc add` and committed; returns {file name: bytes}."""
    ck = repo_dir / "checkpoints"
    ck.mkdir()
    names = ["step_40.pt", "step_80.pt", "step_120.pt"]
    for name, sd in zip(names, run_of(3), strict=True):
        torch.save(sd, ck / name)
    expect = {n: (ck / n).read_bytes() for n in names}
    assert mlvc_cli(repo_dir, "add", "checkpoints").code == 0
    commit(repo_dir, "run")
    return expect


def test_a_run_directory_reads_each_base_from_the_file_just_written(repo_dir):
    """One checkout of a run's directory: each step's deltas are decoded against the previous
    step's file, just written, instead of reading their bases' records again."""
    expect = committed_run(repo_dir)
    ck = repo_dir / "checkpoints"
    cache = repo_dir / ".mlvc" / "cache"
    with open_cache(cache) as store:
        deltas = sum(1 for oid in store.iter_ids(CHUNK) if store.location(CHUNK, oid).codec == DELTA)
    assert deltas >= 2 * 12
    shutil.rmtree(ck)
    repo = Repo.find(repo_dir)
    try:
        result = checkout(repo)
        reads = repo.store.reads
    finally:
        repo.close()
    assert not result.failed, result.failed
    for n, body in expect.items():
        assert (ck / n).read_bytes() == body, n
    # a few runs of records per file; reading each delta's base would be one read per delta
    assert reads < deltas // 2, (reads, deltas)


def test_the_version_before_is_decoded_from_the_workspace_version(repo_dir):
    """last.pt at v3 (its chunks deltas on v2's) in the workspace, v2 checked out (HEAD~1): each
    of v2's chunks stored as a delta (on v1's) is v3's bytes decoded with v3's delta record,
    checked against v2's id, never read from its own record (damaged here); a chunk whose bytes
    in the file changed since falls back to its record (intact for that one)."""
    versions = []
    for i, sd in enumerate(run_of(3)):
        torch.save(sd, repo_dir / "last.pt")
        versions.append((repo_dir / "last.pt").read_bytes())
        assert mlvc_cli(repo_dir, "add", "last.pt").code == 0
        commit(repo_dir, f"v{i + 1}", tag=f"s{i + 1}")
    cache = repo_dir / ".mlvc" / "cache"
    v3 = _chunks(cache, _file_id(repo_dir, "last.pt.mlvc"))
    git(repo_dir, "checkout", "-q", "s2")
    v2_deltas = set(_bases(cache, _chunks(cache, _file_id(repo_dir, "last.pt.mlvc"))))
    pairs = {d: b for d, b in _bases(cache, v3).items() if b in v2_deltas}  # v3 chunk -> v2 chunk, a delta
    assert len(pairs) >= 4, pairs
    git(repo_dir, "checkout", "-q", "s3")
    assert mlvc_cli(repo_dir, "checkout", "--force").code == 0
    git(repo_dir, "checkout", "-q", "s2")
    offsets, at = {}, 0
    for oid, n in v3:
        offsets[oid] = at
        at += n
    kept = sorted(pairs)[0]  # this one's bytes change in the workspace file: its v2 chunk is read from the cache
    path = repo_dir / "last.pt"
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offsets[kept] + 10)
        b = f.read(1)
        f.seek(offsets[kept] + 10)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _damage(cache, [v2 for v3_chunk, v2 in pairs.items() if v3_chunk != kept])
    r = mlvc_cli(repo_dir, "checkout", "--force")
    assert r.code == 0, r
    assert (repo_dir / "last.pt").read_bytes() == versions[1]


def test_an_exported_run_directory_reads_each_base_from_the_file_just_written(repo_dir, tmp_path):
    """`mlvc checkout REV --to DIR` of a run's directory: as a checkout, each step's deltas are
    decoded against the previous step's file, just written."""
    from mlvc.ops.revcheckout import checkout_rev

    expect = committed_run(repo_dir)
    with open_cache(repo_dir / ".mlvc" / "cache") as store:
        deltas = sum(1 for oid in store.iter_ids(CHUNK) if store.location(CHUNK, oid).codec == DELTA)
    repo = Repo.find(repo_dir)
    try:
        result = checkout_rev(repo, "HEAD", to=tmp_path / "export")
        reads = repo.store.reads
    finally:
        repo.close()
    assert not result.failed, result.failed
    for n, body in expect.items():
        assert (tmp_path / "export" / "checkpoints" / n).read_bytes() == body, n
    assert reads < deltas // 2, (reads, deltas)


def test_a_new_checkpoint_reads_its_bases_from_the_older_ones_in_the_workspace(repo_dir):
    """A run's directory grows by a commit (step_120.pt added, stored against step_80.pt): the
    checkout that brings it reads its bases from step_80.pt, unchanged in the workspace, never
    from step_80's records (damaged here)."""
    ck = repo_dir / "checkpoints"
    ck.mkdir()
    names = ["step_40.pt", "step_80.pt", "step_120.pt"]
    steps = run_of(3)
    for name, sd in zip(names[:2], steps, strict=False):
        torch.save(sd, ck / name)
    assert mlvc_cli(repo_dir, "add", "checkpoints").code == 0
    commit(repo_dir, "two", tag="two")
    torch.save(steps[2], ck / names[2])
    newest = (ck / names[2]).read_bytes()
    assert mlvc_cli(repo_dir, "add", "checkpoints").code == 0
    commit(repo_dir, "three", tag="three")
    cache = repo_dir / ".mlvc" / "cache"
    with open_cache(cache) as store:
        tree = store.tree(from_oid(load(repo_dir / "checkpoints.mlvc").oid))
    ids = {e.path: e.file_id for e in tree.entries}
    bases = set(_bases(cache, _chunks(cache, ids["step_120.pt"])).values())
    assert len(bases) >= 4 and bases <= {c for c, _n in _chunks(cache, ids["step_80.pt"])}
    git(repo_dir, "checkout", "-q", "two")
    assert mlvc_cli(repo_dir, "checkout").code == 0
    assert not (ck / names[2]).exists()
    _damage(cache, bases)
    git(repo_dir, "checkout", "-q", "three")
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 0, r
    assert (ck / names[2]).read_bytes() == newest
