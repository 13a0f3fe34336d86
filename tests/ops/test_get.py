"""`mlvc get`: a file or directory of another repository, copied out untracked and byte-verified,
fetching only the chunks it needs; a failed get leaves nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from registry import V1, V2, make_registry

from mlvc.errors import ConflictError, ObjectNotFoundError, PathError, RemoteError
from mlvc.ops.get import get
from mlvc.sources import cache_home, open_source


@pytest.fixture
def registry(tmp_path: Path, any_s3_url):
    url, options = any_s3_url
    return make_registry(tmp_path / "registry", url, options)


def _get(url, path, out, rev=None, **kw):
    repo = open_source(url, rev)
    try:
        return get(repo, path, out, **kw)
    finally:
        repo.close()


def test_gets_one_file_fetching_only_its_chunks(registry, tmp_path: Path) -> None:
    res = _get(str(registry.path), "datasets/images/img001.png", tmp_path / "one.png", rev="v1")
    assert (tmp_path / "one.png").read_bytes() == V1["datasets/images/img001.png"]
    assert res.kind == "file" and res.files == 1 and res.rev == registry.v1
    dataset = sum(len(v) for k, v in V2.items() if k.startswith("datasets/"))
    assert 300_000 <= res.fetched.bytes_downloaded < dataset / 2  # its chunks, never the dataset
    assert not list((cache_home() / "objects").rglob("*.pack"))  # a download: written once, where it goes


def test_gets_a_directory_and_a_git_file(registry, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _get(f"file://{registry.path}", "datasets/images", None)
    out = tmp_path / "images"
    assert res.out == out and res.kind == "dir" and res.files == 4
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {k[len("datasets/images/"):]: v for k, v in V2.items() if k.startswith("datasets/images/")}
    _get(str(registry.path), "README.md", tmp_path / "r.md", rev="v1")
    assert (tmp_path / "r.md").read_text() == "registry v1\n"
    _get(str(registry.path), "datasets", tmp_path / "whole")  # a git directory holding an artifact
    assert (tmp_path / "whole" / "images" / "labels" / "a.txt").read_bytes() == b"cat\n"
    assert not (tmp_path / "whole" / "images.mlvc").exists()


def test_an_existing_output_is_kept_unless_forced(registry, tmp_path: Path) -> None:
    out = tmp_path / "base.bin"
    out.write_bytes(b"mine")
    with pytest.raises(ConflictError):
        _get(str(registry.path), "models/base.bin", out)
    assert out.read_bytes() == b"mine"
    _get(str(registry.path), "models/base.bin", out, force=True)
    assert out.read_bytes() == V2["models/base.bin"]


def test_an_existing_directory_as_output_gets_it_inside(registry, tmp_path: Path) -> None:
    into = tmp_path / "into"
    into.mkdir()
    (into / "old").write_text("old")
    res = _get(str(registry.path), "models/base.bin", into)
    assert res.out == into / "base.bin" and (into / "base.bin").read_bytes() == V2["models/base.bin"]
    res = _get(str(registry.path), "datasets/images", into, rev="v1")
    assert res.out == into / "images" and (into / "images" / "img001.png").read_bytes() == V1[
        "datasets/images/img001.png"]
    with pytest.raises(ConflictError):  # into/images exists now: kept unless forced
        _get(str(registry.path), "datasets/images", into)
    _get(str(registry.path), "datasets/images", into, force=True)
    assert (into / "images" / "img002.png").read_bytes() == V2["datasets/images/img002.png"]
    assert (into / "old").read_text() == "old"


def test_a_failed_get_leaves_nothing(registry, tmp_path: Path, any_s3_url) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(PathError):
        _get(str(registry.path), "datasets/nope", out_dir / "nope")
    store = registry.path / ".mlvc" / "config"
    store.write_text(store.read_text().replace(any_s3_url[0].split("/")[2], "mlvc-no-such-bucket"))
    from helpers import commit

    commit(registry.path, "remote moved away")
    with pytest.raises((RemoteError, ObjectNotFoundError)):
        _get(str(registry.path), "datasets/images", out_dir / "images")
    assert list(out_dir.iterdir()) == []  # no partial directory, no temp files


def test_a_file_larger_than_a_batch_streams_through_several(registry, tmp_path: Path, monkeypatch) -> None:
    import mlvc.ops.get as get_module

    monkeypatch.setattr(get_module, "BATCH_BYTES", 100_000)  # 400 kB file, 300 kB images: many batches
    _get(str(registry.path), "models/base.bin", tmp_path / "m.bin")
    assert (tmp_path / "m.bin").read_bytes() == V2["models/base.bin"]
    res = _get(str(registry.path), "datasets/images", tmp_path / "imgs")
    assert res.files == 4 and (tmp_path / "imgs" / "img002.png").read_bytes() == V2["datasets/images/img002.png"]


def test_a_missing_chunk_midway_leaves_no_partial_file(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    packs = sorted((tmp_path / "store").rglob("*.pack"))
    shutil.rmtree(tmp_path / "store")  # every object gone after the pointers were committed
    assert packs
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises((RemoteError, ObjectNotFoundError)):
        _get(str(registry.path), "models/base.bin", out_dir / "base.bin")
    assert list(out_dir.iterdir()) == []


def test_a_killed_gets_temp_output_is_swept(registry, tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".base.bin.mlvc-get-{dead.pid}"
    stale.write_bytes(b"half")
    _get(str(registry.path), "models/base.bin", tmp_path / "base.bin")
    assert not stale.exists() and (tmp_path / "base.bin").read_bytes() == V2["models/base.bin"]
