"""`mlvc checkout REV`, `checkout --to`, `log`, `params diff` on real git repositories."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import commit, git, mlvc, mlvc_cli, write

from mlvc.errors import EXIT_CONFLICT, EXIT_MISSING_OBJECT, EXIT_PARTIAL, RevisionError
from mlvc.repo import Repo


@pytest.fixture
def hist(repo_dir):
    """main: v1 (data {a,b}, model.bin, lr 0.01) -> v2 (b changed, c added, model changed, lr 0.001);
    feature: v2 -> model changed again."""
    r = repo_dir
    write(r / "data/a.txt", "alpha\n")
    write(r / "data/b.txt", "beta\n")
    write(r / "model.bin", os.urandom(50_000))
    write(r / "params.yaml", "train:\n  lr: 0.01\n  epochs: 3\n")
    assert mlvc("add", "data", "--role", "data") == 0
    assert mlvc("add", "model.bin", "--role", "model", "--meta", "acc=0.5") == 0
    c1 = commit(r, "first model", "v1")
    write(r / "data/b.txt", "beta two\n")
    write(r / "data/c.txt", "gamma\n")
    write(r / "model.bin", os.urandom(60_000))
    write(r / "params.yaml", "train:\n  lr: 0.001\n  epochs: 3\n")
    assert mlvc("add", "data") == 0
    assert mlvc("add", "model.bin", "--role", "model", "--meta", "acc=0.7") == 0
    c2 = commit(r, "lower lr", "v2")
    git(r, "switch", "-q", "-c", "feature")
    write(r / "model.bin", os.urandom(70_000))
    assert mlvc("add", "model.bin", "--role", "model", "--meta", "acc=0.8") == 0
    c3 = commit(r, "feature model")
    git(r, "switch", "-q", "main")
    assert mlvc("checkout") == 0
    return {"root": r, "c1": c1, "c2": c2, "c3": c3}


def snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted((root / "data").rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    out["model.bin"] = (root / "model.bin").read_bytes()
    return out


# ------------------------------------------------------------------ checkout REV


def test_checkout_rev_restores_that_commits_artifacts(hist, capsys):
    r = hist["root"]
    at_v2 = snapshot(r)
    assert mlvc("checkout", "v1") == 0
    assert git(r, "rev-parse", "HEAD").strip() == hist["c1"]
    assert (r / "data/b.txt").read_text() == "beta\n"
    assert not (r / "data/c.txt").exists()
    assert mlvc("status", "--exit-code") == 0
    # detached HEAD (a tag), then back to a branch
    assert git(r, "branch", "--show-current").strip() == ""
    assert mlvc("checkout", "main") == 0
    assert git(r, "branch", "--show-current").strip() == "main"
    assert snapshot(r) == at_v2
    assert mlvc("checkout", "feature") == 0
    assert git(r, "branch", "--show-current").strip() == "feature"
    assert mlvc("status", "--exit-code") == 0


def test_checkout_from_detached_head_by_sha(hist):
    r = hist["root"]
    git(r, "checkout", "-q", "--detach", hist["c2"])
    assert mlvc("checkout", hist["c1"][:10]) == 0
    assert git(r, "rev-parse", "HEAD").strip() == hist["c1"]
    assert mlvc("status", "--exit-code") == 0


def test_checkout_refuses_to_lose_work(hist, capsys):
    r = hist["root"]
    write(r / "params.yaml", "train:\n  lr: 0.5\n")  # tracked git change
    assert mlvc("checkout", "v1") == EXIT_CONFLICT
    assert "params.yaml" in capsys.readouterr().err
    assert git(r, "rev-parse", "HEAD").strip() == hist["c2"]
    git(r, "checkout", "--", "params.yaml")
    write(r / "data/a.txt", "never added\n")  # artifact modified, not re-added
    assert mlvc("checkout", "v1") == EXIT_CONFLICT
    assert "data" in capsys.readouterr().err
    assert git(r, "rev-parse", "HEAD").strip() == hist["c2"]
    assert (r / "data/a.txt").read_text() == "never added\n"
    assert mlvc("checkout", "--force", "v1") == 0
    assert (r / "data/a.txt").read_text() == "alpha\n"


def test_unknown_revision(hist, capsys):
    from mlvc.ops.revcheckout import checkout_rev

    repo = Repo.find(hist["root"])
    try:
        with pytest.raises(RevisionError, match="nosuchrev"):
            checkout_rev(repo, "nosuchrev", None)
        with pytest.raises(RevisionError):
            checkout_rev(repo, "nosuchrev", None, to=hist["root"].parent / "x")
    finally:
        repo.close()
    assert mlvc("checkout", "nosuchrev") != 0
    assert "nosuchrev" in capsys.readouterr().err
    assert mlvc("log", "--rev", "nosuchrev") != 0
    assert mlvc("diff", "nosuchrev", "HEAD") != 0
    assert mlvc("params", "diff", "nosuchrev") != 0
    assert "unknown revision" in capsys.readouterr().err


def test_corrupt_pointer_at_a_commit(hist, capsys):
    r = hist["root"]
    write(r / "model.bin.mlvc", "mlvc: 1\npath: model.bin\nkind: file\nid: not-an-id\n")
    commit(r, "broken pointer", "broken")
    assert mlvc("checkout", "v1") == 0
    result = mlvc_cli(r, "checkout", "broken")
    assert result.code == EXIT_PARTIAL, result  # one artifact failed, the other was restored
    assert "model.bin" in result.err and "invalid pointer" in result.err
    assert git(r, "rev-parse", "HEAD").strip() == git(r, "rev-parse", "broken").strip()
    assert (r / "data/c.txt").read_text() == "gamma\n"  # the other artifact was restored
    # export and log report it too
    out = r.parent / "exp"
    assert mlvc("checkout", "broken", "--to", str(out)) != 0
    assert (out / "data/c.txt").exists()
    capsys.readouterr()
    assert mlvc("log", "--format", "json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert any(e["change"] == "invalid" and e["path"] == "model.bin" for e in entries)


def test_repo_without_commits(tmp_path, monkeypatch, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    git(d, "init", "-q", "-b", "main")
    monkeypatch.chdir(d)
    Repo.init(d)
    assert mlvc("log") == 0
    assert "no artifact changes" in capsys.readouterr().out
    assert mlvc("checkout", "HEAD", "--to", str(tmp_path / "out")) != 0
    assert "no commits" in capsys.readouterr().err
    assert mlvc("diff", "HEAD") != 0


# ------------------------------------------------------------------ --to


def test_checkout_to_exports_without_touching_head_or_workspace(hist):
    r = hist["root"]
    before = snapshot(r)
    head = git(r, "rev-parse", "HEAD").strip()
    out = r.parent / "v1export"
    assert mlvc("checkout", "v1", "--to", str(out), "data") == 0
    assert (out / "data/b.txt").read_text() == "beta\n"
    assert not (out / "data/c.txt").exists()
    assert not (out / "model.bin").exists()
    assert snapshot(r) == before and git(r, "rev-parse", "HEAD").strip() == head
    assert git(r, "status", "--porcelain") == ""
    out2 = r.parent / "featexport"
    assert mlvc("checkout", "feature", "--to", str(out2)) == 0
    assert len((out2 / "model.bin").read_bytes()) == 70_000
    assert mlvc("checkout", "--to", str(r.parent / "headexport")) == 0  # default: HEAD
    assert (r.parent / "headexport/model.bin").read_bytes() == before["model.bin"]


def test_pruned_objects_name_the_remote(hist, capsys):
    r = hist["root"]
    repo = Repo.find(r)
    repo.config.update_shared(lambda d: d.update(remotes={"origin": {"url": str(r.parent / "remote")}},
                                                 default_remote="origin"))
    repo.close()
    git(r, "commit", "-q", "-am", "remote")
    assert mlvc("gc", "--workspace", "--grace", "0") == 0
    capsys.readouterr()
    assert mlvc("checkout", "v1") in (EXIT_MISSING_OBJECT, 12)
    err = capsys.readouterr().err
    assert "origin" in err and "mlvc pull" in err and "model.bin" in err
    git(r, "checkout", "-q", "main")  # HEAD moved to v1 (whose config has no remote): come back
    out = r.parent / "exp"
    assert mlvc("checkout", "v2", "--to", str(out)) == 0  # still in the cache
    assert mlvc("checkout", "v1", "--to", str(r.parent / "exp1")) != 0
    assert "origin" in capsys.readouterr().err


def test_shallow_clone(hist, tmp_path, monkeypatch, capsys):
    src = hist["root"]
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{src}", str(clone)],
                   check=True)
    # share the cache so artifacts can be restored
    Repo.find(clone).config.update_local(lambda d: d.update(cache={"dir": str(src / ".mlvc/cache")}))
    monkeypatch.chdir(clone)
    assert mlvc("checkout") == 0
    capsys.readouterr()
    assert mlvc("log", "--format", "json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["path"] for e in entries} == {"data", "model.bin"}  # the boundary commit shows what it has
    assert mlvc("checkout", "HEAD~1") != 0
    from mlvc.ops.revcheckout import checkout_rev

    repo = Repo.find(clone)
    try:
        with pytest.raises(RevisionError) as info:
            checkout_rev(repo, "HEAD~1", None)
        assert "shallow" in (info.value.hint or "")
    finally:
        repo.close()
    capsys.readouterr()
    assert mlvc("gc", "--all-commits", "--dry-run") == 0
    assert "shallow" in capsys.readouterr().err


# ------------------------------------------------------------------ log


def test_log_of_one_artifact(hist, capsys):
    assert mlvc("log", "model.bin", "--format", "json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["commit"] for e in entries] == [hist["c2"], hist["c1"]]
    assert [e["change"] for e in entries] == ["modified", "added"]
    assert entries[0]["meta"] == {"acc": 0.7} and entries[0]["role"] == "model"
    assert entries[0]["size"] == 60_000 and entries[0]["message"] == "lower lr"
    assert entries[0]["author"] == "mlvc-test" and entries[0]["id"].startswith("xxh128:")
    assert mlvc("log", "model.bin.mlvc", "-n", "1", "--rev", "feature", "--format", "json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 1 and entries[0]["commit"] == hist["c3"]
    assert mlvc("log", "data") == 0
    out = capsys.readouterr().out
    assert "lower lr" in out and "first model" in out and "model.bin" not in out


def test_log_since_and_markdown_report(hist, capsys):
    r = hist["root"]
    env = {"GIT_AUTHOR_DATE": "2001-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2001-01-01T00:00:00Z"}
    git(r, "switch", "-q", "-c", "old")
    write(r / "metrics.json", json.dumps({"val": {"acc": 0.9}}))
    git(r, "add", "-A")
    subprocess.run(["git", "commit", "-q", "-m", "old metrics"], cwd=r, env={**os.environ, **env}, check=True)
    git(r, "switch", "-q", "main")
    assert mlvc("log", "--since", "7.days", "--format", "json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["commit"] for e in entries} == {hist["c1"], hist["c2"]}
    assert mlvc("log", "--since", "2.weeks", "--format", "md") == 0
    md = capsys.readouterr().out
    assert md.startswith("# What changed since 2.weeks")
    assert "`model.bin`" in md and "`data`" in md
    assert "`train.lr` (params.yaml): 0.01 → 0.001" in md
    assert "acc=0.7" in md
    assert mlvc("log", "--format", "md", "--rev", "old", "-n", "1") == 0
    md = capsys.readouterr().out
    assert "old metrics" in md and "val.acc=0.9" in md
    assert mlvc("log", "--since", "nonsense-date") != 0


def test_params_diff_and_which_commit_changed_lr(hist, capsys):
    r = hist["root"]
    assert mlvc("params", "diff", "v1", "HEAD", "--json") == 0
    changes = json.loads(capsys.readouterr().out)
    by_key = {(c["source"], c["key"]): c for c in changes}
    assert by_key[("params.yaml", "train.lr")]["old"] == 0.01
    assert by_key[("params.yaml", "train.lr")]["new"] == 0.001
    assert ("params.yaml", "train.epochs") not in by_key
    assert by_key[("model.bin", "acc")]["new"] == 0.7
    # extra params files from .mlvc/config
    repo = Repo.find(r)
    repo.config.update_shared(lambda d: d.update(params=["conf/train.json"]))
    repo.close()
    write(r / "conf/train.json", json.dumps({"optimizer": {"name": "adam"}}))
    commit(r, "optimizer")
    assert mlvc("params", "diff", "HEAD") == 0  # against the workspace: nothing changed
    assert "no parameter changes" in capsys.readouterr().out
    assert mlvc("params", "diff", "v2", "HEAD") == 0
    assert "optimizer.name" in capsys.readouterr().out
    # "which commit changed lr": the md log names it
    assert mlvc("log", "--format", "md") == 0
    md = capsys.readouterr().out
    section = md.split("## ")[2]
    assert "lower lr" in section and "train.lr" in section
