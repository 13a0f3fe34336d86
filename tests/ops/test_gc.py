"""`mlvc gc`: scopes, dry-run, grace period, concurrent add, and remote gc with a concurrent push."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import commit, git, GIT_ENV, mlvc, mlvc_cli, write

from mlvc.errors import EXIT_LOCKED
from mlvc.repo import Repo


def age_packs(root: Path, seconds: float = 7200) -> None:
    past = time.time() - seconds
    for p in (root / ".mlvc/cache/packs").iterdir():
        os.utime(p, (past, past))


def packs(root: Path) -> set[str]:
    return {p.name for p in (root / ".mlvc/cache/packs").iterdir()}


def exports(root: Path, rev: str, dest: Path) -> int:
    return mlvc("checkout", rev, "--to", str(dest))


@pytest.fixture
def gcrepo(repo_dir):
    """v1 (main), v2 (main, HEAD), feature (v2 + new model), and an orphan version never committed."""
    r = repo_dir
    write(r / "model.bin", os.urandom(40_000))
    write(r / "data/a.txt", "a1")
    assert mlvc("add", "model.bin", "data") == 0
    commit(r, "v1", "v1")
    write(r / "model.bin", os.urandom(40_000))  # orphan: added, never committed
    assert mlvc("add", "model.bin") == 0
    write(r / "model.bin", os.urandom(40_000))
    write(r / "data/b.txt", "b2")
    assert mlvc("add", "model.bin", "data") == 0
    commit(r, "v2", "v2")
    git(r, "switch", "-q", "-c", "feature")
    write(r / "model.bin", os.urandom(40_000))
    assert mlvc("add", "model.bin") == 0
    commit(r, "feature")
    git(r, "switch", "-q", "main")
    assert mlvc("checkout") == 0
    age_packs(r)
    return r


def test_dry_run_removes_nothing_and_counts_bytes(gcrepo, capsys):
    before = packs(gcrepo)
    capsys.readouterr()
    assert mlvc("gc", "--workspace", "--dry-run", "--grace", "0") == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "KiB" in out
    assert packs(gcrepo) == before
    assert mlvc("gc", "--workspace", "--dry-run", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dry_run"] and doc["objects_removed"] > 0 and doc["bytes_removed"] > 3 * 40_000
    assert mlvc("gc") != 0  # a scope is required


def test_all_commits_keeps_every_commit(gcrepo, tmp_path, capsys):
    assert mlvc("gc", "--all-commits", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["objects_removed"] > 0  # the orphan version
    assert doc["bytes_removed"] < 2 * 40_000
    for rev in ("v1", "v2", "feature"):
        assert exports(gcrepo, rev, tmp_path / rev) == 0, rev
    assert mlvc("verify") == 0
    assert mlvc("status", "--exit-code") == 0


def test_all_branches_drops_old_commits(gcrepo, tmp_path):
    assert mlvc("gc", "--all-branches", "--grace", "0") == 0
    assert exports(gcrepo, "v2", tmp_path / "v2") == 0
    assert exports(gcrepo, "feature", tmp_path / "f") == 0
    assert exports(gcrepo, "v1", tmp_path / "v1") != 0
    assert mlvc("verify") == 0


def test_workspace_scope_and_state_cleared(gcrepo, tmp_path, capsys):
    repo = Repo.find(gcrepo)
    repo.store.complete.add(["xxh128:" + "0" * 32])
    repo.close()
    assert mlvc("gc", "--workspace", "--grace", "0") == 0
    repo = Repo.find(gcrepo)
    assert "xxh128:" + "0" * 32 not in repo.store.complete
    repo.close()
    assert mlvc("status", "--exit-code") == 0 and mlvc("verify") == 0
    assert exports(gcrepo, "HEAD", tmp_path / "head") == 0
    assert exports(gcrepo, "feature", tmp_path / "f") != 0
    capsys.readouterr()
    # idempotent: a second run finds nothing
    assert mlvc("gc", "--workspace", "--grace", "0", "--json") == 0
    assert json.loads(capsys.readouterr().out)["objects_removed"] == 0


def test_grace_period_protects_recent_packs(gcrepo, capsys):
    write(gcrepo / "model.bin", os.urandom(30_000))
    assert mlvc("add", "model.bin") == 0  # a new pack, plus the v2 model is now garbage in an old pack
    write(gcrepo / "model.bin", os.urandom(30_000))
    assert mlvc("add", "model.bin") == 0  # the previous version: garbage in a *recent* pack
    capsys.readouterr()
    assert mlvc("gc", "--workspace", "--grace", "600", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["packs_recent"] >= 2
    assert mlvc("status", "--exit-code") == 0 and mlvc("verify") == 0


ADDER = r"""
import os, sys
from pathlib import Path
from mlvc.cli.main import run
for i in range(int(sys.argv[1])):
    p = Path(f"new{i}.bin")
    p.write_bytes(os.urandom(30_000))
    assert run(["add", "--quiet", str(p)]) == 0
"""


def test_concurrent_add_loses_nothing(gcrepo):
    """gc (real process) runs while another process keeps adding new artifacts."""
    env = dict(os.environ, **GIT_ENV)
    adder = subprocess.Popen([sys.executable, "-c", ADDER, "8"], cwd=gcrepo, env=env)
    try:
        for _ in range(3):
            res = mlvc_cli(gcrepo, "gc", "--workspace", "--grace", "30")
            assert res.code == 0, res
    finally:
        assert adder.wait(timeout=120) == 0
    res = mlvc_cli(gcrepo, "gc", "--workspace", "--grace", "30")
    assert res.code == 0, res
    st = mlvc_cli(gcrepo, "status", "--exit-code", "--json")
    assert st.code == 0, st
    doc = json.loads(st.out)
    assert len(doc) == 10 and all(d["cache_complete"] for d in doc)
    assert mlvc_cli(gcrepo, "verify").code == 0


# ------------------------------------------------------------------ remote


@pytest.fixture
def with_remote(gcrepo, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    repo = Repo.find(gcrepo)
    repo.config.update_shared(lambda d: d.update(remotes={"origin": {"url": str(remote)}},
                                                 default_remote="origin"))
    repo.close()
    commit(gcrepo, "remote")
    assert mlvc("push", "--all-commits") == 0
    return remote


def remote_packs(remote: Path) -> set[str]:
    return {p.name for p in (remote / "packs").iterdir()}


def test_remote_gc_removes_only_unreachable(gcrepo, with_remote, tmp_path, capsys):
    before = remote_packs(with_remote)
    capsys.readouterr()
    assert mlvc("gc", "--workspace", "--remote", "origin", "--dry-run", "--grace", "0") == 0
    assert "would remove" in capsys.readouterr().out
    assert remote_packs(with_remote) == before
    assert mlvc("gc", "--workspace", "--remote", "origin", "--grace", "0", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["objects_removed"] > 0 and doc["remote"] == "origin"
    assert not (with_remote / "locks/gc.lock").exists()  # released
    # a fresh clone can still pull HEAD from the remote, byte-identical
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(gcrepo), str(clone)], check=True)
    res = mlvc_cli(clone, "pull")
    assert res.code == 0, res
    assert (clone / "model.bin").read_bytes() == (gcrepo / "model.bin").read_bytes()
    # v1's objects are gone from the remote (and from a fresh cache): a clear error naming the remote
    res = mlvc_cli(clone, "checkout", "v1")
    assert res.code != 0 and "origin" in res.err, res


def test_remote_gc_respects_the_lock(gcrepo, with_remote, capsys):
    from mlvc.store.locks import RemoteLock

    repo = Repo.find(gcrepo)
    _, store = repo.remote_store("origin")
    backend = store.backend
    repo.close()
    with RemoteLock(backend, owner="someone-else"):
        assert mlvc("gc", "--workspace", "--remote", "origin", "--grace", "0") == EXIT_LOCKED
        assert "someone-else" in capsys.readouterr().err


PUSHER = r"""
import os, sys
from pathlib import Path
from mlvc.cli.main import run
for i in range(int(sys.argv[1])):
    p = Path(f"pushed{i}.bin")
    p.write_bytes(os.urandom(30_000))
    assert run(["add", "--quiet", str(p)]) == 0
    assert run(["push", "--quiet", str(p)]) == 0
"""


def _clone_with_remote(gcrepo: Path, tmp_path: Path, name: str) -> Path:
    clone = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(gcrepo), str(clone)], check=True)
    return clone


def test_push_during_remote_gc_loses_nothing(gcrepo, with_remote, tmp_path):
    """A push from another machine lands after gc took its snapshot: nothing it uploaded is deleted."""
    from mlvc.ops.gc import gc_remote_store
    from mlvc.store.faults import WrappedBackend

    clone = _clone_with_remote(gcrepo, tmp_path, "other")
    env = dict(os.environ, **GIT_ENV)

    class PushRightAfterGcLooked(WrappedBackend):
        """The worst moment: gc has listed the packs and found no pusher; then a push runs."""

        pushed = False

        def list(self, prefix=""):
            keys = self.inner.list(prefix)
            if prefix.startswith("locks/push-") and not self.pushed:
                self.pushed = True
                subprocess.run([sys.executable, "-c", PUSHER, "2"], cwd=clone, env=env, check=True, timeout=120)
            return keys

    repo = Repo.find(gcrepo)
    _, store = repo.remote_store("origin")
    store.backend = PushRightAfterGcLooked(store.backend)
    try:
        result = gc_remote_store(repo, store, "origin", "workspace", grace=0)
    finally:
        store.close()
        repo.close()
    assert store.backend.pushed
    assert result.objects_removed > 0
    # every artifact the other machine pushed is complete on the remote
    fresh = _clone_with_remote(clone, tmp_path, "fresh")
    for i in range(2):
        (fresh / f"pushed{i}.bin.mlvc").write_bytes((clone / f"pushed{i}.bin.mlvc").read_bytes())
    res = mlvc_cli(fresh, "pull", "pushed0.bin", "pushed1.bin")
    assert res.code == 0, res
    for i in range(2):
        assert (fresh / f"pushed{i}.bin").read_bytes() == (clone / f"pushed{i}.bin").read_bytes()


def test_push_and_remote_gc_as_concurrent_processes(gcrepo, with_remote, tmp_path):
    """Packs pushed while gc runs (before or after its snapshot) are younger than the grace period:
    gc removes the old garbage and never what the concurrent pusher uploaded."""
    past = time.time() - 7200
    for p in [*(with_remote / "packs").iterdir(), *(with_remote / "journal").iterdir()]:  # the whole push
        os.utime(p, (past, past))
    clone = _clone_with_remote(gcrepo, tmp_path, "other")
    env = dict(os.environ, **GIT_ENV)
    pusher = subprocess.Popen([sys.executable, "-c", PUSHER, "4"], cwd=clone, env=env)
    removed = 0
    try:
        for _ in range(3):
            res = mlvc_cli(gcrepo, "gc", "--workspace", "--remote", "origin", "--grace", "600", "--json")
            assert res.code in (0, EXIT_LOCKED), res
            if res.code == 0:
                removed += json.loads(res.out)["objects_removed"]
    finally:
        assert pusher.wait(timeout=120) == 0
    assert removed > 0
    fresh = _clone_with_remote(clone, tmp_path, "fresh")
    names = []
    for i in range(4):
        (fresh / f"pushed{i}.bin.mlvc").write_bytes((clone / f"pushed{i}.bin.mlvc").read_bytes())
        names.append(f"pushed{i}.bin")
    res = mlvc_cli(fresh, "pull", *names)
    assert res.code == 0, res
    for n in names:
        assert (fresh / n).read_bytes() == (clone / n).read_bytes()
