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
