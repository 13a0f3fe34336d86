"""Crash safety with real processes: kill -9 mid-add, concurrent adds, a disk that fills up."""

import errno
import os
import random
import signal
import subprocess
import time

import pytest

from mlvc.errors import DiskError
from mlvc.hashing import to_oid
from mlvc.ops.add import add
from mlvc.pointer import load
from mlvc.repo import Repo

from helpers import cli_proc, mlvc_cli, verify_cache


def content_id(path):
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while b := f.read(1 << 22):
            h.update(b)
    return to_oid(h.digest())


@pytest.mark.crash
@pytest.mark.slow
def test_kill_9_during_add_then_rerun_completes(repo_dir):
    rng = random.Random(7)
    big = repo_dir / "model.bin"
    big.write_bytes(rng.randbytes(96 << 20))
    d = repo_dir / "ds"
    d.mkdir()
    for i in range(400):
        (d / f"{i}.txt").write_bytes(rng.randbytes(3000))
    for delay in (0.15, 0.4, 0.8):
        proc = cli_proc(repo_dir, "add", "model.bin", "ds", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        report = verify_cache(repo_dir / ".mlvc" / "cache")
        assert report.ok, report.problems
        # a pointer, if one was written, names complete objects
        if (repo_dir / "model.bin.mlvc").exists():
            assert load(repo_dir / "model.bin.mlvc").oid == content_id(big)
    r = mlvc_cli(repo_dir, "add", "model.bin", "ds")
    assert r.code == 0, r
    assert load(repo_dir / "model.bin.mlvc").oid == content_id(big)
    assert verify_cache(repo_dir / ".mlvc" / "cache").ok
    assert not [n for n in os.listdir(repo_dir / ".mlvc" / "cache" / "tmp")]  # killed runs' temp files swept
    big.unlink()
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 0, r
    assert content_id(big) == load(repo_dir / "model.bin.mlvc").oid


@pytest.mark.crash
def test_two_adds_at_once_on_different_paths(repo_dir):
    rng = random.Random(3)
    for name in ("a", "b"):
        sub = repo_dir / "data" / name
        sub.mkdir(parents=True)
        for i in range(200):
            (sub / f"{i}.bin").write_bytes(rng.randbytes(5000))
        (sub / "shared.bin").write_bytes(b"same in both" * 1000)
    procs = [cli_proc(repo_dir, "add", f"data/{n}", stdout=None, text=False) for n in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    gi = (repo_dir / "data" / ".gitignore").read_text().splitlines()
    assert "/a" in gi and "/b" in gi
    assert verify_cache(repo_dir / ".mlvc" / "cache").ok
    import shutil

    shutil.rmtree(repo_dir / "data" / "a")
    shutil.rmtree(repo_dir / "data" / "b")
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 0, r
    assert len(os.listdir(repo_dir / "data" / "a")) == 201
    r = mlvc_cli(repo_dir, "status", "--exit-code")
    assert r.code == 0, r


def test_disk_full_mid_add_leaves_cache_valid(repo_dir, monkeypatch):
    f = repo_dir / "m.bin"
    f.write_bytes(os.urandom(6 << 20))
    import mlvc.store.packs as packs

    real_append = packs.PackWriter.append
    written = {"n": 0}

    def filling_append(self, *args, **kw):
        written["n"] += 1
        if written["n"] > 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, *args, **kw)

    monkeypatch.setattr(packs.PackWriter, "append", filling_append)
    with pytest.raises(DiskError, match="disk full"):
        add(Repo.find(repo_dir), ["m.bin"])
    assert not (repo_dir / "m.bin.mlvc").exists()
    cache = repo_dir / ".mlvc" / "cache"
    assert verify_cache(cache).ok
    assert os.listdir(cache / "tmp") == []
    monkeypatch.setattr(packs.PackWriter, "append", real_append)
    res = add(Repo.find(repo_dir), ["m.bin"])[0]
    assert res.oid == content_id(f)
