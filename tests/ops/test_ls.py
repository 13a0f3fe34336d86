"""`mlvc ls URL [PATH]`: git's files and the tracked artifacts of a revision, with sizes and ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry import V1, make_registry

from mlvc.errors import PathError
from mlvc.ops.ls import ls
from mlvc.ops.read import RevisionView
from mlvc.sources import open_source


@pytest.fixture
def view(tmp_path: Path):
    registry = make_registry(tmp_path / "registry", "../store")
    repo = open_source(str(registry.path), "v1")
    with RevisionView(repo) as v:
        yield v
    repo.close()


def test_lists_one_level_with_tracked_directories_summarised(view) -> None:
    top = {e.path: e for e in ls(view)}
    assert set(top) == {".mlvc", "README.md", "datasets", "models"}
    assert top["README.md"].source == "git" and top["README.md"].size == len("registry v1\n")
    images = ls(view, "datasets")
    assert [(e.path, e.type, e.source, e.files) for e in images] == [
        ("datasets/.gitignore", "file", "git", None), ("datasets/images", "dir", "artifact", 3)]
    images = images[1:]
    assert images[0].size == sum(len(v) for k, v in V1.items() if k.startswith("datasets/"))
    assert images[0].id.startswith("xxh128:")
    models = [e for e in ls(view, "models") if e.source == "artifact"]
    assert [(e.path, e.size, e.artifact) for e in models] == [("models/base.bin", 400_000, "models/base.bin")]


def test_lists_inside_an_artifact_and_recursively(view) -> None:
    inside = ls(view, "datasets/images")
    assert [(e.path, e.type) for e in inside] == [("datasets/images/img000.png", "file"),
                                                  ("datasets/images/img001.png", "file"),
                                                  ("datasets/images/labels", "dir")]
    every = [e.path for e in ls(view, "datasets", recursive=True)]
    assert every == ["datasets/.gitignore", "datasets/images/img000.png", "datasets/images/img001.png",
                     "datasets/images/labels/a.txt"]
    assert [e.path for e in ls(view, "datasets/images/labels/a.txt")] == ["datasets/images/labels/a.txt"]
    with pytest.raises(PathError, match="does not exist"):
        ls(view, "datasets/nope")


def test_listing_the_top_reads_no_tree_manifest(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "registry", "../store")
    repo = open_source(f"file://{registry.path}")
    try:
        with RevisionView(repo) as v:
            assert [e.path for e in ls(v)] == [".mlvc", "README.md", "datasets", "models"]
            assert [e.files for e in ls(v, "datasets") if e.source == "artifact"] == [4]
            assert v.source.stats.requests == 0 and v.source.stats.objects_fetched == 0
            assert len(ls(v, "datasets", recursive=True)) == 5  # going inside reads the tree
            assert v.source.stats.objects_fetched == 1
    finally:
        repo.close()
