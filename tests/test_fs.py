"""The `mlvc` fsspec filesystem: git's files and tracked artifacts at a revision, read-only."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import fsspec
import pytest
import torch
from helpers import commit, mlvc, write

from mlvc.fs import MlvcFileSystem
from mlvc.store.packs import TREE_MANIFEST


@pytest.fixture
def project(repo_dir: Path) -> Path:
    write(repo_dir / "data" / "table.csv", "a,b\n1,2\n")
    write(repo_dir / "data" / "img" / "x.bin", b"x" * 10)
    write(repo_dir / "data" / "img" / "y.bin", b"y" * 20)
    torch.save({"w": torch.arange(6.0)}, repo_dir / "model.pt")
    write(repo_dir / "src" / "train.py", "print('hi')\n")
    assert mlvc("add", "-q", "data", "model.pt") == 0
    commit(repo_dir, "v1", tag="v1")
    write(repo_dir / "data" / "table.csv", "a,b\n1,2\n3,4\n")
    (repo_dir / "data" / "img" / "y.bin").unlink()
    torch.save({"w": torch.arange(8.0)}, repo_dir / "model.pt")
    assert mlvc("add", "-q", "data", "model.pt") == 0
    commit(repo_dir, "v2")
    return repo_dir


def test_registered_under_the_mlvc_protocol(project: Path) -> None:
    fs = fsspec.filesystem("mlvc", repo=str(project), rev="v1")
    assert isinstance(fs, MlvcFileSystem)


def test_ls_find_info_exists_over_git_and_artifacts(project: Path) -> None:
    fs = MlvcFileSystem(repo=project, rev="v1")
    root = {i["name"]: i for i in fs.ls("")}
    assert {"data", "model.pt", "data.mlvc", "model.pt.mlvc", "src"} <= set(root)
    assert root["data"]["type"] == "directory" and root["model.pt"]["type"] == "file"
    assert root["model.pt"]["size"] == fs.info("model.pt")["size"] > 0
    assert fs.ls("data", detail=False) == ["data/img", "data/table.csv"]
    assert fs.find("data") == ["data/img/x.bin", "data/img/y.bin", "data/table.csv"]
    assert fs.find("", maxdepth=1) == [".gitignore", "data.mlvc", "model.pt", "model.pt.mlvc"]
    assert "data/img" in fs.find("data", withdirs=True)
    assert fs.info("data/img/y.bin") == {"name": "data/img/y.bin", "size": 20, "type": "file",
                                         "source": "artifact", "id": fs.info("data/img/y.bin")["id"],
                                         "artifact": "data"}
    assert fs.info("data/img")["type"] == "directory"
    assert fs.info("src/train.py")["size"] == len("print('hi')\n")
    assert fs.exists("data/img/y.bin") and not fs.exists("data/img/z.bin")
    assert fs.isdir("data") and fs.isfile("data/table.csv")
    with pytest.raises(FileNotFoundError):
        fs.info("nope")
    v2 = MlvcFileSystem(repo=project, rev="HEAD")
    assert not v2.exists("data/img/y.bin") and v2.find("data/img") == ["data/img/x.bin"]


def test_open_cat_and_csv_and_torch(project: Path) -> None:
    fs = fsspec.filesystem("mlvc", repo=str(project), rev="v1")
    assert fs.cat("data/table.csv") == b"a,b\n1,2\n"
    assert fs.cat_file("data/table.csv", start=2, end=5) == b"b\n1"
    assert fs.cat("src/train.py") == b"print('hi')\n"
    with fs.open("data/table.csv", "r") as f:
        assert list(csv.reader(f)) == [["a", "b"], ["1", "2"]]
    with fs.open("model.pt") as f:
        state = torch.load(f, weights_only=True)
    assert torch.equal(state["w"], torch.arange(6.0))
    with fsspec.open("mlvc://data/table.csv", "rt", repo=str(project), rev="HEAD") as f:
        assert f.read() == "a,b\n1,2\n3,4\n"
    with pytest.raises(PermissionError):
        fs.open("data/table.csv", "wb")
    with pytest.raises(PermissionError):
        fs.rm("data/table.csv")


def test_listing_a_large_artifact_reads_one_tree_not_every_manifest(repo_dir: Path) -> None:
    for i in range(3000):
        write(repo_dir / "many" / f"d{i % 30}" / f"{i}.txt", f"{i}\n")
    assert mlvc("add", "-q", "many") == 0
    commit(repo_dir, "many")
    fs = MlvcFileSystem(repo=repo_dir, rev="HEAD")
    reads: list[int] = []
    store = fs.view.source.store
    real_get = store.get

    def counting_get(typ, oid):
        reads.append(typ)
        return real_get(typ, oid)

    store.get = counting_get  # observes the real store
    files = fs.find("many", detail=True)
    assert len(files) == 3000 and files["many/d7/7.txt"]["size"] == 2
    assert len(fs.ls("many/d3")) == 100
    assert reads == [TREE_MANIFEST]  # one object read for the whole listing
    assert io.BytesIO(fs.cat("many/d7/2017.txt")).read() == b"2017\n"
