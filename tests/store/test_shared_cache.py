"""A cache shared by several repositories, worktrees and stale state: the cases that lost data before."""

from __future__ import annotations

import json
import os
import shutil

from helpers import commit, git, mlvc_cli, write


def _repo(path, cache=None):
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    assert mlvc_cli(path, "init").code == 0
    if cache is not None:
        cfg = path / ".mlvc" / "config"
        cfg.write_text(cfg.read_text() + f"cache:\n  dir: {cache}\n")
    return path


def _two_versions(repo, name: str) -> tuple[bytes, bytes]:
    v1, v2 = os.urandom(300_000), os.urandom(300_000)
    write(repo / name, v1)
    assert mlvc_cli(repo, "add", "-q", name).code == 0
    commit(repo, "v1")
    write(repo / name, v2)
    assert mlvc_cli(repo, "add", "-q", name).code == 0
    commit(repo, "v2")
    return v1, v2


def test_gc_in_one_repository_keeps_what_another_sharing_the_cache_needs(tmp_path):
    cache = tmp_path / "shared-cache"
    a = _repo(tmp_path / "a", cache)
    b = _repo(tmp_path / "b", cache)
    _two_versions(a, "ma.bin")
    b1, _b2 = _two_versions(b, "mb.bin")
    for scope in ("--all-commits", "--workspace"):
        r = mlvc_cli(a, "gc", scope, "--grace", "0")
        assert r.code == 0, r
    # b's old version is still restorable from the shared cache
    git(b, "checkout", "-q", "HEAD~1")
    r = mlvc_cli(b, "checkout")
    assert r.code == 0, r
    assert (b / "mb.bin").read_bytes() == b1
    assert mlvc_cli(b, "verify").code == 0


def test_gc_refuses_when_a_registered_repository_cannot_be_read(tmp_path):
    cache = tmp_path / "shared-cache"
    a = _repo(tmp_path / "a", cache)
    b = _repo(tmp_path / "b", cache)
    _two_versions(a, "ma.bin")
    _two_versions(b, "mb.bin")
    packs_before = sorted(p.name for p in (cache / "packs").iterdir())
    shutil.move(b, tmp_path / "b-moved")
    r = mlvc_cli(a, "gc", "--workspace", "--grace", "0")
    assert r.code != 0 and "cannot read" in r.err and str(b) in r.err, r
    assert "Traceback" not in r.err
    assert sorted(p.name for p in (cache / "packs").iterdir()) == packs_before
    # forgetting the entry (as the hint says) lets gc go on
    entries = [e for e in (cache / "repos").iterdir() if json.loads(e.read_text())["root"] == str(b)]
    assert len(entries) == 1
    entries[0].unlink()
    assert mlvc_cli(a, "gc", "--workspace", "--grace", "0").code == 0


def test_completeness_marks_go_with_the_cache(cli, repo_dir):
    write(repo_dir / "m.bin", os.urandom(200_000))
    assert cli("add", "-q", "m.bin").code == 0
    (st,) = json.loads(cli("status", "--json").out)
    assert st["cache_complete"] is True
    shutil.rmtree(repo_dir / ".mlvc" / "cache")
    (repo_dir / "m.bin").unlink()
    (st,) = json.loads(cli("status", "--json").out)
    assert st["cache_complete"] is False
    r = cli("checkout")
    assert r.code == 7 and "Traceback" not in r.err, r


def _checked_out_worktree_of_the_previous_commit(main, wt):
    git(main, "branch", "old", "HEAD~1")
    git(main, "worktree", "add", "-q", str(wt), "old")
    r = mlvc_cli(wt, "checkout")
    assert r.code == 0, r
    return wt


def test_a_worktree_shares_its_repository_cache(tmp_path):
    main = _repo(tmp_path / "main")
    v1, v2 = _two_versions(main, "m.bin")
    wt = _checked_out_worktree_of_the_previous_commit(main, tmp_path / "wt2")
    assert (wt / "m.bin").read_bytes() == v1
    assert not (wt / ".mlvc" / "cache").exists()
    # gc in the main work tree keeps what the worktree's workspace needs (its branch is kept
    # by --all-branches, but --workspace must keep it too)
    r = mlvc_cli(main, "gc", "--workspace", "--grace", "0")
    assert r.code == 0, r
    (wt / "m.bin").unlink()
    assert mlvc_cli(wt, "checkout").code == 0
    assert (wt / "m.bin").read_bytes() == v1
    assert (main / "m.bin").read_bytes() == v2


def test_a_worktree_uses_the_cache_dir_its_main_work_tree_set_for_this_machine(tmp_path):
    # cache.dir in the git-ignored config.local (the documented per-machine setting), relative
    # to the main work tree: a worktree has no config.local of its own
    main = _repo(tmp_path / "main")
    (main / ".mlvc" / "config.local").write_text("cache:\n  dir: ../machine-cache\n")
    v1, _v2 = _two_versions(main, "m.bin")
    assert (tmp_path / "machine-cache" / "packs").is_dir()
    wt = _checked_out_worktree_of_the_previous_commit(main, tmp_path / "wt")
    assert (wt / "m.bin").read_bytes() == v1
    assert not (main / ".mlvc" / "cache" / "packs").exists() and not (wt / ".mlvc" / "cache").exists()
    # the worktree's own setting still wins
    (wt / ".mlvc" / "config.local").write_text(f"cache:\n  dir: {tmp_path / 'own-cache'}\n")
    write(wt / "n.bin", os.urandom(1000))
    assert mlvc_cli(wt, "add", "-q", "n.bin").code == 0
    assert (tmp_path / "own-cache" / "packs").is_dir()
