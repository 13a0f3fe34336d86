"""`mlvc ls URL`, `mlvc get URL PATH` at the command line: output, --json, and one-line errors with
their documented exit codes for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import commit, mlvc_cli, one_error
from registry import V1, V2, make_registry, served_bare

from mlvc import errors


@pytest.fixture
def registry(tmp_path: Path):
    return make_registry(tmp_path / "registry", str(tmp_path / "store"))


def test_ls_and_get_over_git_daemon(tmp_path: Path, registry, git_served: Path, git_daemon) -> None:
    served_bare(registry, git_served)
    url = git_daemon.url("registry.git")
    res = mlvc_cli(tmp_path, "ls", url, "datasets/images", "--rev", "v1")
    assert res.code == 0, res.err
    assert [line.split("\t")[0] for line in res.out.splitlines()] == ["img000.png", "img001.png", "labels/"]
    res = mlvc_cli(tmp_path, "ls", url, "--json", "-R", "models")
    data = json.loads(res.out)
    assert data["rev"] == registry.v2
    assert [(e["path"], e["size"]) for e in data["entries"] if e["source"] == "artifact"] == [
        ("models/base.bin", 400_000)]
    res = mlvc_cli(tmp_path, "get", url, "models/base.bin", "--rev", "v1", "-o", "m.bin")
    assert res.code == 0 and res.out.startswith("got models/base.bin"), res
    assert (tmp_path / "m.bin").read_bytes() == V1["models/base.bin"]
    res = mlvc_cli(tmp_path, "get", url, "datasets/images/img002.png", "-q")
    assert res.code == 0 and res.out == "" and (tmp_path / "img002.png").read_bytes() == \
        V2["datasets/images/img002.png"]


def test_plain_ls_still_lists_this_workspace(cli) -> None:
    assert cli("ls").code == 0
    res = cli("ls", "--rev", "v1")
    assert res.code == errors.EXIT_USAGE and "URL" in one_error(res.err)


def test_bad_input_is_one_line_with_its_exit_code(tmp_path: Path, registry) -> None:
    url = str(registry.path)
    cases = [
        (["get", "http://127.0.0.1:9/registry.git", "x"], errors.EXIT_REMOTE, "cannot be fetched"),
        (["get", str(tmp_path / "nowhere"), "x"], errors.EXIT_REMOTE, "no such directory"),
        (["ls", url, "--rev", "nosuch"], errors.EXIT_USAGE, "unknown revision 'nosuch'"),
        (["get", url, "datasets/nope"], errors.EXIT_BAD_PATH, "does not exist"),
        (["get", url, "../../etc/passwd"], errors.EXIT_BAD_PATH, ".."),
    ]
    for args, code, words in cases:
        res = mlvc_cli(tmp_path, *args)
        assert res.code == code, (args, res)
        assert words in one_error(res.err), (args, res.err)
    (tmp_path / "README.md").write_text("mine")
    res = mlvc_cli(tmp_path, "get", url, "README.md")
    assert res.code == errors.EXIT_CONFLICT and (tmp_path / "README.md").read_text() == "mine"
    pointer = registry.path / "models" / "base.bin.mlvc"
    pointer.write_text(pointer.read_text().replace("path: base.bin", "path: ../../x"))
    commit(registry.path, "hostile")
    res = mlvc_cli(tmp_path, "get", url, "models/base.bin", "-o", "b")
    assert res.code == errors.EXIT_BAD_POINTER and not (tmp_path / "b").exists(), res
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "registry", "store"]
