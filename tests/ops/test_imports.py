"""`mlvc import` / `mlvc update`: another repository's artifact tracked here, its source recorded;
a fresh clone pulls it from the source, or from this project's remote once pushed there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import commit, git, mlvc_cli, write
from registry import V1, V2, make_registry, served_bare

import mlvc as api
from mlvc import errors
from mlvc.pointer import load


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _images(version: dict) -> dict[str, bytes]:
    return {k[len("datasets/images/"):]: v for k, v in version.items() if k.startswith("datasets/images/")}


@pytest.mark.parametrize("transport", ["path", "git_daemon", "git_http"])
def test_import_clone_pull_update_and_outlive_the_registry(request, transport, tmp_path: Path, repo_dir: Path,
                                                            git_served: Path, any_s3_url) -> None:
    url, options = any_s3_url
    registry = make_registry(tmp_path / "registry", url, options)
    if transport == "path":
        source = str(registry.path)
    else:
        served_bare(registry, git_served)
        source = request.getfixturevalue(transport).url("registry.git")
    res = mlvc_cli(repo_dir, "import", source, "datasets/images", "-o", "data/images", "--rev", "v1", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["source"]["commit"] == registry.v1
    assert mlvc_cli(repo_dir, "import", source, "models/base.bin", "-q").code == 0
    assert _tree(repo_dir / "data" / "images") == _images(V1)
    ptr = load(repo_dir / "data" / "images.mlvc")
    assert (ptr.source.path, ptr.source.rev, ptr.source.commit) == ("datasets/images", "v1", registry.v1)
    assert "images" in (repo_dir / "data" / ".gitignore").read_text()
    commit(repo_dir, "import v1")
    manifest = api.manifest("HEAD", repo=repo_dir)
    assert {a["path"]: a.get("source", {}).get("commit") for a in manifest["artifacts"]} == {
        "data/images": registry.v1, "base.bin": registry.v2}

    # a fresh clone of this project, which has no remote of its own: pulled from the source
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo_dir), str(clone))
    res = mlvc_cli(clone, "pull")
    assert res.code == 0, res.err
    assert _tree(clone / "data" / "images") == _images(V1)
    assert (clone / "base.bin").read_bytes() == V2["models/base.bin"]

    # update to v2, then push to this project's own remote
    res = mlvc_cli(repo_dir, "update", "data/images", "--rev", "v2")
    assert res.code == 0 and "updated data/images" in res.out, res
    assert _tree(repo_dir / "data" / "images") == _images(V2)
    assert load(repo_dir / "data" / "images.mlvc").source.commit == registry.v2
    assert mlvc_cli(repo_dir, "update", "-q").code == 0  # nothing moved: up to date
    own = tmp_path / "own-remote"
    assert mlvc_cli(repo_dir, "remote", "add", "own", str(own), "--default").code == 0
    assert mlvc_cli(repo_dir, "push").code == 0
    commit(repo_dir, "images v2, own remote")

    # the registry's remote goes away: a fresh clone still pulls, from this project's remote
    bucket = url.split("/")[2]
    import boto3

    s3 = boto3.resource("s3", endpoint_url=options["endpoint_url"], region_name=options["region"])
    s3.Bucket(bucket).objects.all().delete()
    clone2 = tmp_path / "clone2"
    git(tmp_path, "clone", "-q", str(repo_dir), str(clone2))
    res = mlvc_cli(clone2, "pull")
    assert res.code == 0, res.err
    assert _tree(clone2 / "data" / "images") == _images(V2)


def test_import_into_an_existing_directory_puts_it_inside(tmp_path: Path, repo_dir: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    (repo_dir / "data").mkdir()
    res = mlvc_cli(repo_dir, "import", str(registry.path), "datasets/images", "-o", "data", "--rev", "v1")
    assert res.code == 0, res.err
    assert _tree(repo_dir / "data" / "images") == _images(V1)
    assert load(repo_dir / "data" / "images.mlvc").source.commit == registry.v1
    res = mlvc_cli(repo_dir, "import", str(registry.path), "datasets/images", "-o", "data/images", "--force", "-q")
    assert res.code == 0, res.err  # a tracked directory is the output itself, replaced with --force
    assert _tree(repo_dir / "data" / "images") == _images(V2)
    assert not (repo_dir / "data" / "images" / "images").exists()


def test_import_of_one_file_inside_a_directory_artifact(tmp_path: Path, repo_dir: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    res = mlvc_cli(repo_dir, "import", str(registry.path), "datasets/images/img001.png", "--rev", "v1")
    assert res.code == 0, res.err
    assert (repo_dir / "img001.png").read_bytes() == V1["datasets/images/img001.png"]
    ptr = load(repo_dir / "img001.png.mlvc")
    assert ptr.kind == "file" and ptr.source.path == "datasets/images/img001.png"
    res = mlvc_cli(repo_dir, "show", "img001.png", "--json")
    assert json.loads(res.out)["source"]["commit"] == registry.v1


def test_a_local_source_is_recorded_relative_to_the_project_top(tmp_path: Path, repo_dir: Path) -> None:
    make_registry(tmp_path / "registry", str(tmp_path / "store"))
    (repo_dir / "sub").mkdir()
    res = mlvc_cli(repo_dir / "sub", "import", "../../registry", "models/base.bin", "-o", "m.bin")
    assert res.code == 0, res.err
    assert load(repo_dir / "sub" / "m.bin.mlvc").source.url == "../registry"  # clones beside it agree
    res = mlvc_cli(repo_dir, "update", "sub/m.bin")  # resolved from the top, whatever the cwd
    assert res.code == 0 and "up to date" in res.out, res


def test_import_bad_input(tmp_path: Path, repo_dir: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    url = str(registry.path)
    cases = [
        (["import", url, "README.md"], errors.EXIT_BAD_PATH, "is not tracked by mlvc"),
        (["import", url, "datasets"], errors.EXIT_BAD_PATH, "not a tracked artifact"),
        (["import", url, "datasets/images/labels"], errors.EXIT_BAD_PATH, "directory inside the artifact"),
        (["import", url, "nope"], errors.EXIT_BAD_PATH, "does not exist"),
        (["import", url, "models/base.bin", "--rev", "v9"], errors.EXIT_USAGE, "unknown revision"),
        (["import", "http://127.0.0.1:9/r.git", "x"], errors.EXIT_REMOTE, "cannot be fetched"),
        (["import", url, "models/base.bin", "-o", "../outside"], errors.EXIT_BAD_PATH, "outside the repository"),
        (["update", "nothing"], errors.EXIT_BAD_PATH, "not tracked"),
    ]
    for args, code, words in cases:
        res = mlvc_cli(repo_dir, *args)
        assert res.code == code, (args, res)
        assert words in res.err, (args, res.err)
    write(repo_dir / "base.bin", b"mine")
    res = mlvc_cli(repo_dir, "import", url, "models/base.bin")
    assert res.code == errors.EXIT_CONFLICT and (repo_dir / "base.bin").read_bytes() == b"mine"
    assert sorted(p.name for p in repo_dir.iterdir()) == [".git", ".mlvc", "base.bin"]


def test_update_keeps_unsaved_changes_unless_forced(tmp_path: Path, repo_dir: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    assert mlvc_cli(repo_dir, "import", str(registry.path), "models/base.bin", "--rev", "v1", "-q").code == 0
    write(registry.path / "models" / "base.bin", b"v3 weights" * 1000)
    api.add(str(registry.path / "models" / "base.bin"), repo=registry.path)
    api.push(repo=registry.path)
    commit(registry.path, "v3", tag="v3")
    write(repo_dir / "base.bin", b"edited here")
    res = mlvc_cli(repo_dir, "update", "base.bin", "--rev", "v3")
    assert res.code == errors.EXIT_CONFLICT, res
    assert (repo_dir / "base.bin").read_bytes() == b"edited here"
    assert mlvc_cli(repo_dir, "update", "base.bin", "--rev", "v3", "--force", "-q").code == 0
    assert (repo_dir / "base.bin").read_bytes() == b"v3 weights" * 1000
    shutil.rmtree(tmp_path / "store")


def test_status_says_when_the_source_moved(tmp_path: Path, repo_dir: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    assert mlvc_cli(repo_dir, "import", str(registry.path), "models/base.bin", "--rev", "main", "-q").code == 0
    assert mlvc_cli(repo_dir, "import", str(registry.path), "datasets/images", "--rev", "v1", "-q").code == 0
    res = mlvc_cli(repo_dir, "status")
    assert res.code == 0 and "source moved" not in res.out, res
    write(registry.path / "README.md", "moved\n")
    commit(registry.path, "readme only")
    res = mlvc_cli(repo_dir, "status")
    assert "base.bin: unchanged\n    source moved: main is now" in res.out and "is the same there" in res.out, res
    assert "images: unchanged\n" in res.out and res.out.count("source moved") == 1  # a tag stays put
    write(registry.path / "models" / "base.bin", b"new weights")
    api.add(str(registry.path / "models" / "base.bin"), repo=registry.path)
    api.push(repo=registry.path)
    head = commit(registry.path, "new weights")
    doc = {d["path"]: d for d in json.loads(mlvc_cli(repo_dir, "status", "--json").out)}
    assert doc["base.bin"]["source_moved"] == {"rev": "main", "commit": head, "artifact_changed": True,
                                               "error": None}
    assert "source_moved" not in doc["images"]
    res = mlvc_cli(repo_dir, "status", "--no-sources")
    assert "source moved" not in res.out
    shutil.move(registry.path, tmp_path / "registry-gone")
    res = mlvc_cli(repo_dir, "status")
    assert res.code == 0 and "its source could not be checked" in res.out, res


def test_a_checkpoint_birth_certificate_names_the_imported_data_source(tmp_path: Path, repo_dir: Path) -> None:
    import torch

    import mlvc.torch as mt

    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    assert mlvc_cli(repo_dir, "import", str(registry.path), "datasets/images", "--rev", "v1", "-q").code == 0
    commit(repo_dir, "import")
    mt.save({"w": torch.ones(2)}, repo_dir / "model.pt", data="images")
    cert = mt.load(repo_dir / "model.pt", check=False)["mlvc"]
    assert cert["data"]["images"]["source"] == {"url": "../registry", "path": "datasets/images", "rev": "v1",
                                                "commit": registry.v1}


def test_a_clone_pulls_an_import_its_own_remote_lacks_from_the_source(tmp_path: Path, repo_dir: Path) -> None:
    registry = make_registry(tmp_path / "registry", str(tmp_path / "store"))
    own = tmp_path / "own-remote"
    assert mlvc_cli(repo_dir, "remote", "add", "own", str(own), "--default").code == 0
    write(repo_dir / "notes.bin", b"project data")
    assert mlvc_cli(repo_dir, "add", "-q", "notes.bin").code == 0
    assert mlvc_cli(repo_dir, "push", "-q", "notes.bin").code == 0  # the import is never pushed
    assert mlvc_cli(repo_dir, "import", str(registry.path), "models/base.bin", "-q").code == 0
    commit(repo_dir, "import, not pushed")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo_dir), str(clone))
    res = mlvc_cli(clone, "pull")
    assert res.code == 0, res
    assert (clone / "base.bin").read_bytes() == V2["models/base.bin"]
    assert (clone / "notes.bin").read_bytes() == b"project data"
