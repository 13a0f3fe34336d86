"""Messages and conventions of issue 22: each a real run of the `mlvc` entry point."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import commit, one_error, write

from mlvc.errors import EXIT_BAD_PATH, EXIT_USAGE


def _model(repo_dir: Path, scale: float) -> None:
    import torch

    torch.save({"w": torch.full((4,), scale)}, repo_dir / "m.pt")


def test_log_has_json_and_prints_module_ids_as_a_count_not_a_dict(cli, repo_dir):
    _model(repo_dir, 1.0)
    assert cli("add", "-q", "m.pt", "--meta", "lr=2.0").code == 0
    commit(repo_dir, "v1")
    r = cli("log", "m.pt", "--json")
    assert r.code == 0, r
    (entry,) = json.loads(r.out)
    assert entry["meta"]["modules"] == {"w": entry["meta"]["modules"]["w"]} and entry["meta"]["lr"] == 2.0
    text = cli("log", "m.pt").out
    assert "{" not in text and "[1 module id]" in text and "lr=2.0" in text, text
    assert cli("log", "--json", "--format", "md").code == EXIT_USAGE


def test_params_diff_leaves_module_ids_out_and_prints_floats_as_written(cli, repo_dir):
    write(repo_dir / "params.yaml", "lr: 1.0\nepochs: 3\n")
    _model(repo_dir, 1.0)
    assert cli("add", "-q", "m.pt").code == 0
    commit(repo_dir, "v1")
    write(repo_dir / "params.yaml", "lr: 2.0\nepochs: 3\n")
    _model(repo_dir, 3.0)
    assert cli("add", "-q", "m.pt").code == 0
    commit(repo_dir, "v2")
    r = cli("params", "diff", "HEAD~1", "HEAD")
    assert r.code == 0, r
    assert r.out.splitlines() == ["modified params.yaml: lr: 1.0 -> 2.0"], r.out
    assert "params.yaml: lr: 1.0 -> 2.0" in cli("diff", "HEAD~1", "HEAD").out


def test_diff_without_a_revision_is_the_workspace_against_head_and_takes_ranges(cli, repo_dir):
    _model(repo_dir, 1.0)
    assert cli("add", "-q", "m.pt").code == 0
    commit(repo_dir, "v1")
    assert "no artifact or parameter changes between HEAD and workspace" in cli("diff").out
    _model(repo_dir, 2.0)
    assert cli("add", "-q", "m.pt").code == 0
    r = cli("diff")
    assert r.code == 0 and r.out.startswith("modified  m.pt"), r
    assert cli("diff", "m.pt").out == r.out  # a path alone: still HEAD against the workspace
    commit(repo_dir, "v2")
    pair, ranged = cli("diff", "HEAD~1", "HEAD"), cli("diff", "HEAD~1..HEAD")
    assert ranged.code == 0 and ranged.out == pair.out and "modified  m.pt" in ranged.out, ranged
    assert cli("diff", "HEAD~1..", "m.pt").out == pair.out
    for args in (("diff", "nosuchrev"), ("checkout", "nosuchrev")):
        r = cli(*args)
        assert r.code == EXIT_BAD_PATH, r
        assert "is neither a tracked path nor a known revision" in one_error(r.err)


def test_bad_role_meta_and_grace_are_usage_errors(cli, repo_dir):
    write(repo_dir / "d" / "a.txt", "a")
    for args, message in ((("add", "d", "--role", "foo"), "--role must be one of"),
                          (("add", "d", "--meta", "badformat"), "--meta expects KEY=VALUE"),
                          (("add", "d", "--meta", "=x"), "--meta expects KEY=VALUE"),
                          (("gc", "--workspace", "--grace", "-5"), "--grace must be a number of seconds, 0 or more"),
                          (("gc", "--workspace", "--grace", "nan"), "--grace must be")):
        r = cli(*args)
        assert r.code == EXIT_USAGE, (args, r)
        assert one_error(r.err).startswith(f"error: {message}"), r.err
    assert not (repo_dir / "d.mlvc").exists()


def test_missing_paths_say_they_do_not_exist(cli, repo_dir):
    r = cli("add", "/nonexistent")
    assert r.code == EXIT_BAD_PATH and one_error(r.err) == "error: /nonexistent: does not exist", r
    write(repo_dir / "x.txt", "x")
    assert cli("add", "-q", "x.txt").code == 0
    commit(repo_dir, "v1")
    for args in (("log", "nosuchpath"), ("show", "nosuchpath")):
        r = cli(*args)
        assert r.code == EXIT_BAD_PATH, (args, r)
        assert "nosuchpath: does not exist" in one_error(r.err) and "mlvc add" not in r.err, r.err
        assert "hint: run `mlvc ls`" in r.err
    assert cli("log", "x.txt").code == 0


def test_adds_new_bytes_count_data_and_manifests_apart(cli, repo_dir):
    import mlvc

    for i in range(400):
        write(repo_dir / "d" / f"s{i:04d}.txt", f"sample {i:04d} " * 6)  # 400 small distinct files
    size = sum(p.stat().st_size for p in (repo_dir / "d").iterdir())
    r = cli("add", "d")
    assert r.code == 0, r
    res = mlvc.add("d")  # unchanged: nothing new of either kind
    assert res.new_bytes == res.new_data_bytes == 0
    write(repo_dir / "e" / "one.txt", "x" * 100)
    res = mlvc.add("e")
    assert res.new_data_bytes == 100 and res.new_bytes > 100
    from mlvc.units import human_size

    assert f"{human_size(size)}, 400 files, {human_size(size)} new + " in r.out and " manifests)" in r.out, r.out


def test_push_summary_and_an_interrupted_push_count_artifact_data_alike(cli, repo_dir, tmp_path):
    from mlvc.cli.output import RemoteWatch
    from mlvc.progress import NULL
    from mlvc.units import human_size

    for i in range(20):  # compressible: stored bytes are far fewer than the data's
        write(repo_dir / "d" / f"f{i:02d}.txt", f"line {i}\n" * 4000)
    size = sum(p.stat().st_size for p in (repo_dir / "d").iterdir())
    assert cli("add", "-q", "d").code == 0
    assert cli("remote", "add", "origin", str(tmp_path / "remote"), "--default").code == 0
    r = cli("push")
    assert r.code == 0, r
    assert f"{human_size(size)} of artifact data done; " in r.out, r.out
    stored = r.out.split(" objects (")[1].split(" as stored)")[0]
    assert stored != human_size(size)  # the stored figure is labelled as such, not passed off as the data
    w = RemoteWatch(NULL, "remote 'origin'", "mlvc push")
    w.start("push to origin", size)
    w.advance(size // 2)
    assert f"{human_size(size // 2)} of {human_size(size)} of artifact data done" in w.summary()
