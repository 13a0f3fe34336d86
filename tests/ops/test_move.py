"""`mlvc mv` / `mlvc rm`: move or untrack an artifact, its pointer and its ignore entries."""

from __future__ import annotations

from pathlib import Path

from helpers import commit, git, mlvc_cli, write

import mlvc as api
from mlvc import errors
from mlvc.pointer import load


def _project(repo_dir: Path) -> Path:
    write(repo_dir / "data" / "raw" / "a.csv", "a\n1\n")
    write(repo_dir / "data" / "raw" / "b.csv", "b\n2\n")
    write(repo_dir / "model.bin", b"\x01" * 5000)
    assert mlvc_cli(repo_dir, "add", "-q", "data/raw", "model.bin", "--role", "data").code == 0
    commit(repo_dir, "v1", tag="v1")
    return repo_dir


def test_mv_moves_data_pointer_and_ignore_entries(repo_dir: Path) -> None:
    _project(repo_dir)
    old = load(repo_dir / "data" / "raw.mlvc")
    res = mlvc_cli(repo_dir, "mv", "data/raw", "data/images")
    assert res.code == 0 and "moved data/raw -> data/images" in res.out, res
    new = load(repo_dir / "data" / "images.mlvc")
    assert (new.oid, new.role, new.path) == (old.oid, "data", "images")
    assert not (repo_dir / "data" / "raw.mlvc").exists() and not (repo_dir / "data" / "raw").exists()
    assert (repo_dir / "data" / "images" / "a.csv").read_text() == "a\n1\n"
    assert (repo_dir / "data" / ".gitignore").read_text().splitlines() == ["/images"]
    (repo_dir / "sub").mkdir()
    assert mlvc_cli(repo_dir, "mv", "model.bin", "sub", "-q").code == 0  # into a directory
    assert (repo_dir / "sub" / "model.bin").read_bytes() == b"\x01" * 5000
    assert [s.state for s in api.status()] == ["unchanged", "unchanged"]
    changes = git(repo_dir, "status", "--porcelain", "--untracked-files=all").split()
    assert list(zip(changes[::2], changes[1::2], strict=True)) == [  # the data itself stays out of git
        ("D", ".gitignore"), ("M", "data/.gitignore"), ("D", "data/raw.mlvc"), ("D", "model.bin.mlvc"),
        ("??", "data/images.mlvc"), ("??", "sub/.gitignore"), ("??", "sub/model.bin.mlvc")]
    commit(repo_dir, "moved")
    assert api.read("data/raw/b.csv", rev="v1") == b"b\n2\n"  # history stays readable
    assert api.read("data/images/b.csv", rev="HEAD") == b"b\n2\n"


def test_mv_refuses_an_existing_destination_and_untracked_sources(repo_dir: Path) -> None:
    _project(repo_dir)
    write(repo_dir / "taken", "x")
    res = mlvc_cli(repo_dir, "mv", "model.bin", "taken")
    assert res.code == errors.EXIT_CONFLICT and (repo_dir / "model.bin.mlvc").exists(), res
    res = mlvc_cli(repo_dir, "mv", "taken", "elsewhere")
    assert res.code == errors.EXIT_BAD_PATH and "not tracked" in res.err, res
    res = mlvc_cli(repo_dir, "mv", "data/raw", "data/raw/inner")
    assert res.code == errors.EXIT_BAD_PATH, res
    res = mlvc_cli(repo_dir, "mv", "model.bin", "../outside")
    assert res.code == errors.EXIT_BAD_PATH and (repo_dir / "model.bin").exists(), res


def test_rm_untracks_and_deletes_only_saved_data(repo_dir: Path) -> None:
    _project(repo_dir)
    res = mlvc_cli(repo_dir, "rm", "model.bin")
    assert res.code == 0 and not (repo_dir / "model.bin").exists() and not (repo_dir / "model.bin.mlvc").exists()
    assert not (repo_dir / ".gitignore").exists() or "/model.bin" not in (repo_dir / ".gitignore").read_text()
    write(repo_dir / "data" / "raw" / "a.csv", "edited\n")
    res = mlvc_cli(repo_dir, "rm", "data/raw")
    assert res.code == errors.EXIT_CONFLICT and (repo_dir / "data" / "raw.mlvc").exists(), res
    assert (repo_dir / "data" / "raw" / "a.csv").read_text() == "edited\n"
    res = mlvc_cli(repo_dir, "rm", "data/raw", "--keep-data")
    assert res.code == 0 and (repo_dir / "data" / "raw" / "a.csv").read_text() == "edited\n", res
    assert not (repo_dir / "data" / "raw.mlvc").exists()
    untracked = git(repo_dir, "status", "--porcelain", "--untracked-files=all")
    assert "?? data/raw/a.csv" in untracked  # git sees the kept files again
    assert mlvc_cli(repo_dir, "rm", "data/raw").code == errors.EXIT_BAD_PATH


def test_log_of_a_moved_artifact_follows_it_to_its_old_path(repo_dir: Path) -> None:
    import json

    _project(repo_dir)
    write(repo_dir / "data" / "raw" / "c.csv", "c\n3\n")
    assert mlvc_cli(repo_dir, "add", "-q", "data/raw").code == 0
    v2 = commit(repo_dir, "v2")
    assert mlvc_cli(repo_dir, "mv", "-q", "data/raw", "data/images").code == 0
    moved = commit(repo_dir, "move raw to images")
    write(repo_dir / "data" / "images" / "d.csv", "d\n4\n")
    assert mlvc_cli(repo_dir, "add", "-q", "data/images").code == 0
    v3 = commit(repo_dir, "v3")

    res = mlvc_cli(repo_dir, "log", "data/images", "--json")
    assert res.code == 0, res
    got = [(e["commit"], e["change"], e["path"], e.get("moved_from")) for e in json.loads(res.out)]
    v1 = git(repo_dir, "rev-parse", "v1").strip()
    assert got == [(v3, "modified", "data/images", None), (moved, "moved", "data/images", "data/raw"),
                   (v2, "modified", "data/raw", None), (v1, "added", "data/raw", None)]
    res = mlvc_cli(repo_dir, "log", "data/images")
    assert "moved    data/raw -> data/images" in res.out and "added    data/raw" in res.out, res.out
    res = mlvc_cli(repo_dir, "log", "data/images", "--no-follow", "--json")
    assert [e["change"] for e in json.loads(res.out)] == ["modified", "added"]
    res = mlvc_cli(repo_dir, "log", "data/images", "-n", "2", "--json")
    assert [e["change"] for e in json.loads(res.out)] == ["modified", "moved"]
    assert mlvc_cli(repo_dir, "mv", "-q", "model.bin", "weights.bin").code == 0
    write(repo_dir / "model.bin", b"\x02" * 5000)  # a new artifact under the old name, same commit
    assert mlvc_cli(repo_dir, "add", "-q", "model.bin").code == 0
    commit(repo_dir, "rename the model, new model.bin")
    res = mlvc_cli(repo_dir, "log", "weights.bin", "--json")
    assert [(e["change"], e["path"]) for e in json.loads(res.out)] == [("moved", "weights.bin"),
                                                                       ("added", "model.bin")]
    res = mlvc_cli(repo_dir, "log", "model.bin", "--json")
    assert [(e["change"], e["path"]) for e in json.loads(res.out)][0] == ("modified", "model.bin")
