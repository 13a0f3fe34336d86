"""`workspace.scan`: symlinks are refused all at once, or followed inside the repository only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlvc.errors import LinksRefusedError, PathError
from mlvc.workspace import scan


def hf_snapshot(root: Path, n: int = 8) -> Path:
    """A Hugging Face cache layout: snapshots/<rev>/ files are links into ../../blobs/."""
    blobs = root / "hub" / "blobs"
    snap = root / "hub" / "snapshots" / "abc123"
    (snap / "sub").mkdir(parents=True)
    blobs.mkdir(parents=True)
    for i in range(n):
        (blobs / f"b{i}").write_bytes(f"blob {i}".encode())
        os.symlink(f"../../blobs/b{i}", snap / f"f{i}.safetensors")
    os.symlink("../../../blobs/b0", snap / "sub" / "again")
    (snap / "README.md").write_text("real file\n")
    return snap


def test_every_link_is_counted_and_the_first_few_named(tmp_path: Path) -> None:
    snap = hf_snapshot(tmp_path)
    with pytest.raises(LinksRefusedError) as exc:
        scan(snap, "snap")
    err = exc.value
    assert len(err.links) == 9 and err.exit_code == 4
    assert str(err).startswith("snap: holds 9 symlinks (snap/f0.safetensors -> ../../blobs/b0, ")
    assert "and 4 more); mlvc tracks file contents, not links" in str(err)
    assert "mlvc add --follow-links snap" in err.hint


def test_links_inside_the_root_are_followed(tmp_path: Path) -> None:
    snap = hf_snapshot(tmp_path)
    files = scan(snap, "snap", follow_within=tmp_path)
    assert [f.rel for f in files] == ["README.md", *[f"f{i}.safetensors" for i in range(8)], "sub/again"]
    assert {f.size for f in files if f.rel != "README.md"} == {6}


@pytest.mark.parametrize("where", ["outside", "dangling", "into-.git"])
def test_links_pointing_elsewhere_stay_refused_when_following(tmp_path: Path, where: str) -> None:
    root = tmp_path / "repo"
    snap = hf_snapshot(root)
    outside = tmp_path / "secret"
    outside.write_text("not yours")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    dest = {"outside": str(outside), "dangling": "../../blobs/nope", "into-.git": str(root / ".git" / "config")}[where]
    os.symlink(dest, snap / "bad")
    with pytest.raises(LinksRefusedError) as exc:
        scan(snap, "snap", follow_within=root)
    assert exc.value.links == ["snap/bad"]
    assert str(exc.value) == (f"snap: 1 symlink points outside the repository (or nowhere, or into .git/.mlvc): "
                              f"snap/bad -> {dest}; mlvc never reads outside the repository")


def test_a_directory_link_that_loops_is_read_once(tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "x").mkdir(parents=True)
    (d / "x" / "a").write_text("a")
    os.symlink("..", d / "x" / "up")  # d/x/up -> d: would loop forever
    files = scan(d, "d", follow_within=tmp_path)
    assert [f.rel for f in files] == ["x/a"]


def test_a_top_level_link_is_followed_only_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "real.bin").write_bytes(b"12345")
    os.symlink("real.bin", tmp_path / "link.bin")
    with pytest.raises(PathError, match=r"link.bin: is a symlink \(-> real.bin\); mlvc tracks file contents"):
        scan(tmp_path / "link.bin", "link.bin")
    (f,) = scan(tmp_path / "link.bin", "link.bin", follow_within=tmp_path)
    assert f.rel == "" and f.size == 5


TRICKY_PATHS = ["a-b", "a.b", "a0", "a b", "é", "z", "ä/x", "a/b-c", "a/b/c", "a/b.d", "a-b2/c", "A", "_", "a/bc"]


def test_scan_yields_paths_in_sorted_order_without_sorting_afterwards(tmp_path: Path) -> None:
    """Directories are visited as name + '/', which is exactly the order of whole relative
    paths: the order tree manifests keep, so status and checkout can merge-join them."""
    root = tmp_path / "ds"
    for rel in TRICKY_PATHS:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())
    files = scan(root, "ds")
    rels = [f.rel for f in files]
    assert rels == sorted(TRICKY_PATHS)
    assert [files[i].rel for i in range(len(files))] == rels and files[-1].rel == rels[-1]
    assert [Path(f.fspath).read_bytes() for f in files] == [r.encode() for r in rels]
    assert files.total_size() == sum(len(r.encode()) for r in rels)


def test_id_lookup_reads_the_hash_cache_in_batches_and_answers_out_of_order(tmp_path: Path, monkeypatch) -> None:
    from mlvc.hashing import digest
    from mlvc.store.hashcache import HashCache
    from mlvc.workspace import IdLookup

    root = tmp_path / "ds"
    root.mkdir()
    for i in range(23):
        (root / f"{i:03d}").write_bytes(b"x" * i)
    files = scan(root, "ds")
    past = os.stat(root).st_mtime_ns - 10**9
    for f in files:  # not racy: old mtimes
        os.utime(f.fspath, ns=(past, past))
    files = scan(root, "ds")
    cache = HashCache(tmp_path / "hc.db")
    monkeypatch.setattr(HashCache, "BATCH_ROWS", 4)
    first = IdLookup(cache, "ds")
    assert [first.id_of(f, f.rel) for f in files] == [digest(b"x" * i) for i in range(23)]
    first.flush()
    again = IdLookup(cache, "ds")
    assert all(again.cached_id(f) == digest(b"x" * int(f.rel)) for f in files)  # in order, 6 batches
    assert again.cached_id(files[3]) == digest(b"xxx")  # behind the batches: looked up on its own
    other = IdLookup(cache, "ds2")  # a prefix that is only a string prefix of this one's paths
    assert all(other.cached_id(f) is None for f in files)
