"""Reading old versions from a fresh clone with nothing pulled: objects come from the remote,
only those the reads need (ranged reads of remote packs), on a directory remote and on moto S3."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlvc
from mlvc.errors import ObjectNotFoundError
from mlvc.ops.read import RevisionView
from mlvc.repo import Repo

from helpers import commit, git, ok, write
from remote.helpers import add_remote, clone, make_repo, rand_bytes


def _project(tmp_path: Path, spec) -> Path:
    repo = make_repo(tmp_path / "work")
    add_remote(repo, spec)
    write(repo / "big.bin", rand_bytes(3_000_000, 1))
    write(repo / "data" / "table.csv", b"x,y\n1,2\n")
    for i in range(20):
        write(repo / "data" / "parts" / f"p{i}.txt", f"part {i}\n".encode())
    write(repo / "params.yaml", b"lr: 1\n")
    ok(repo, "add", "-q", "big.bin", "data")
    commit(repo, "v1")
    git(repo, "tag", "v1")
    write(repo / "data" / "table.csv", b"x,y\n1,2\n5,6\n")
    write(repo / "params.yaml", b"lr: 2\n")
    ok(repo, "add", "-q", "data")
    commit(repo, "v2")
    ok(repo, "push", "-q", "--all-commits")
    return repo


def test_fresh_clone_reads_every_revision_without_pull(tmp_path: Path, remote_spec, monkeypatch) -> None:
    repo = _project(tmp_path, remote_spec)
    fresh = clone(repo, tmp_path / "fresh")
    monkeypatch.chdir(fresh)
    assert mlvc.read("data/table.csv", rev="v1") == b"x,y\n1,2\n"
    assert mlvc.read("data/table.csv", rev="main", mode="r") == "x,y\n1,2\n5,6\n"
    assert mlvc.read("data/parts/p7.txt", rev="v1") == b"part 7\n"
    assert mlvc.read("params.yaml", rev="v1") == b"lr: 1\n"
    assert mlvc.read("big.bin", rev="v1") == (repo / "big.bin").read_bytes()
    assert not (fresh / "data").exists() and not (fresh / "big.bin").exists()  # workspace untouched


def test_a_small_read_fetches_only_its_chunks_and_keeps_them(tmp_path: Path, remote_spec) -> None:
    repo = _project(tmp_path, remote_spec)
    fresh = clone(repo, tmp_path / "fresh")
    r = Repo.find(fresh)
    try:
        with RevisionView(r, "v1") as view:
            with view.open_raw(view.entry("big.bin")) as f:
                f.seek(2_000_000)
                assert f.read(100) == (repo / "big.bin").read_bytes()[2_000_000:2_000_100]
            stats = view.source.stats
            # the index listing and download, the file manifest, then the chunk holding the range
            assert stats.bytes_downloaded < 400_000, stats
            assert stats.requests <= 5, stats
        with RevisionView(r, "v1") as view:  # what was fetched is in the cache now
            with view.open_raw(view.entry("big.bin")) as f:
                f.seek(2_000_000)
                f.read(100)
            assert view.source.stats.requests == 0
    finally:
        r.close()


def test_object_missing_on_the_remote_names_it(tmp_path: Path, remote_spec) -> None:
    repo = _project(tmp_path, remote_spec)
    write(repo / "new.bin", b"never pushed")
    ok(repo, "add", "-q", "new.bin")
    commit(repo, "v3")
    fresh = clone(repo, tmp_path / "fresh")
    with pytest.raises(ObjectNotFoundError, match="missing from the cache and remote") as info:
        mlvc.read("new.bin", rev="HEAD", repo=fresh)
    assert "mlvc push" in info.value.hint
    assert mlvc.read("data/table.csv", rev="v1", repo=fresh) == b"x,y\n1,2\n"


def test_load_tensor_fetches_only_that_tensors_byte_ranges(tmp_path: Path, remote_spec, monkeypatch) -> None:
    import torch

    import mlvc.torch as mt
    from mlvc.ops import object_source

    repo = make_repo(tmp_path / "work")
    add_remote(repo, remote_spec)
    g = torch.Generator().manual_seed(0)
    sd = {f"layer{i}.weight": torch.randn(512, 512, generator=g) for i in range(8)}  # 8 MiB
    torch.save(sd, repo / "model.pt")
    ok(repo, "add", "-q", "model.pt")
    commit(repo, "v1")
    ok(repo, "push", "-q")
    fresh = clone(repo, tmp_path / "fresh")
    monkeypatch.chdir(fresh)

    seen = []
    real_fetch = object_source.ObjectSource._fetch

    def counting(self, keys):
        real_fetch(self, keys)
        seen.append(self.stats)

    monkeypatch.setattr(object_source.ObjectSource, "_fetch", counting)  # observes; the reads are real
    t = mt.load_tensor("model.pt", "layer5.weight", rev="HEAD")
    assert torch.equal(t, sd["layer5.weight"])
    stats = seen[-1]
    size = (repo / "model.pt").stat().st_size
    assert stats.bytes_downloaded < size / 4, (stats, size)
    assert not (fresh / "model.pt").exists()


def test_streaming_and_whole_file_reads_are_few_large_requests(tmp_path: Path, remote_spec) -> None:
    repo = _project(tmp_path, remote_spec)
    want = (repo / "big.bin").read_bytes()
    fresh = clone(repo, tmp_path / "fresh")
    r = Repo.find(fresh)
    try:
        with RevisionView(r, "v1") as view:
            with view.open_raw(view.entry("big.bin")) as f:
                got = b"".join(iter(lambda: f.read(8192), b""))  # a streaming reader's pattern
            assert got == want
            assert view.source.stats.requests <= 16, view.source.stats  # not one per chunk: read ahead
    finally:
        r.close()
    other = clone(repo, tmp_path / "other")
    r = Repo.find(other)
    try:
        from mlvc.ops.read import read

        assert read(r, "big.bin", "v1") == want
    finally:
        r.close()


def test_fsspec_filesystem_on_a_fresh_clone(tmp_path: Path, remote_spec) -> None:
    import fsspec

    repo = _project(tmp_path, remote_spec)
    fresh = clone(repo, tmp_path / "fresh")
    fs = fsspec.filesystem("mlvc", repo=str(fresh), rev="v1")
    try:
        assert len(fs.find("data/parts")) == 20
        assert fs.info("big.bin")["size"] == 3_000_000
        assert fs.cat("data/table.csv") == b"x,y\n1,2\n"
        with fs.open("data/table.csv", "r") as f:
            assert f.readlines() == ["x,y\n", "1,2\n"]
    finally:
        fs.close()
    assert not (fresh / "data").exists()


def test_diff_of_checkpoints_on_a_fresh_clone_reads_the_remote(tmp_path: Path, remote_spec) -> None:
    import torch

    repo = make_repo(tmp_path / "work")
    add_remote(repo, remote_spec)
    sd = {"enc.weight": torch.zeros(64, 64), "head.weight": torch.ones(8, 64)}
    torch.save(sd, repo / "model.pt")
    ok(repo, "add", "-q", "model.pt")
    commit(repo, "v1")
    sd["head.weight"] = sd["head.weight"] * 2
    torch.save(sd, repo / "model.pt")
    ok(repo, "add", "-q", "model.pt")
    commit(repo, "v2")
    ok(repo, "push", "-q", "--all-commits")
    fresh = clone(repo, tmp_path / "fresh")
    (art,) = mlvc.diff("HEAD~1", "HEAD", repo=fresh).artifacts
    (cd,) = art.checkpoints
    assert not cd.error and set(cd.modules) == {"head"} and cd.unchanged_modules == ["enc"]
