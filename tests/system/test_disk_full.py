"""A full disk, for real: the cache, and the workspace, on a small tmpfs (the suite runs as root,
which may mount one; where it may not, these tests fail and say so, since a skip would prove
nothing).  `test_full_cache_through_a_wrapping_backend` injects the same fault by wrapping the
cache's backend (`mlvc.store.faults.FailAfter`), which needs no privilege.

Every outcome: exit 10, one `error:` line, no traceback, `mlvc verify` clean afterwards, and once
there is room again the plain re-run completes byte-exact.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import cli, commit, ok, one_error

from mlvc.errors import EXIT_DISK, DiskError
from remote.helpers import add_remote, clone, make_repo, rand_bytes, write  # isort: skip

MiB = 1 << 20


def use_cache(repo: Path, cache: Path) -> None:
    config = repo / ".mlvc" / "config"
    config.write_text(config.read_text() + f"cache:\n  dir: {cache}\n")


def refused(repo: Path, *args: str) -> str:
    code, out, err = cli(repo, *args)
    assert code == EXIT_DISK, (args, code, out, err)
    line = one_error(err)
    assert "disk" in line.lower() or "space" in line.lower(), line
    return line


def test_add_and_pull_into_a_full_cache(tmp_path: Path, tmpfs, local_url) -> None:
    cache = tmp_path / "small-cache"
    resize = tmpfs(cache, 2 * MiB)
    repo = make_repo(tmp_path / "repo")
    use_cache(repo, cache)
    big = rand_bytes(5 * MiB, 1)  # random: compression cannot make it fit
    write(repo / "big.bin", big)
    refused(repo, "add", "big.bin")
    assert not (repo / "big.bin.mlvc").exists()  # nothing was recorded
    assert (repo / "big.bin").read_bytes() == big  # the workspace is as it was
    ok(repo, "verify", "-q")
    assert os.listdir(cache / "tmp") == []
    resize(32 * MiB)
    ok(repo, "add", "-q", "big.bin")  # the plain re-run completes
    ok(repo, "verify", "-q")

    # pull into a full cache: push from the repo, pull into a clone whose cache has no room
    add_remote(repo, local_url)
    commit(repo, "big")
    ok(repo, "push", "-q")
    other_cache = tmp_path / "other-cache"
    resize_other = tmpfs(other_cache, 2 * MiB)
    fresh = clone(repo, tmp_path / "fresh")
    use_cache(fresh, other_cache)
    refused(fresh, "pull")
    assert not (fresh / "big.bin").exists()
    ok(fresh, "verify", "-q")
    resize_other(32 * MiB)
    ok(fresh, "pull", "-q")
    assert (fresh / "big.bin").read_bytes() == big
    ok(fresh, "verify", "-q")
    ok(repo, "verify", "--remote", "origin", "--read-data", "-q")


def test_a_full_workspace(tmp_path: Path, tmpfs, local_url) -> None:
    """The repository itself on a small disk (its cache elsewhere): checkout finds no room before
    writing; `add` cannot write its pointer or its state; both complete once there is room."""
    source = make_repo(tmp_path / "source")
    add_remote(source, local_url)
    big = rand_bytes(6 * MiB, 2)
    write(source / "big.bin", big)
    ok(source, "add", "-q", "big.bin")
    commit(source, "big")
    ok(source, "push", "-q")

    disk = tmp_path / "disk"
    resize = tmpfs(disk, 4 * MiB)
    repo = clone(source, disk / "repo")
    use_cache(repo, tmp_path / "cache")  # the cache has room; the workspace does not
    refused(repo, "pull")
    assert not (repo / "big.bin").exists()
    assert [p for p in repo.iterdir() if p.name.startswith(".") and "tmp" in p.name] == []
    ok(repo, "verify", "-q")

    # fill the disk to the last byte: add can write neither its pointer nor its state
    write(repo / "small.bin", rand_bytes(20_000, 3))
    filler = disk / "filler"
    with open(filler, "wb") as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    refused(repo, "add", "small.bin")
    assert not (repo / "small.bin.mlvc").exists()  # nothing was recorded
    ok(repo, "verify", "-q")

    filler.unlink()
    resize(16 * MiB)
    ok(repo, "add", "-q", "small.bin")
    ok(repo, "pull", "-q")
    assert (repo / "big.bin").read_bytes() == big
    ok(repo, "verify", "-q")
    assert cli(repo, "status", "--exit-code", "-q")[0] == 0


def test_status_on_a_full_disk_still_reports(tmp_path: Path, tmpfs) -> None:
    """status only reads: its state databases (hash cache, completeness marks, signatures) are
    advisory, so a disk too full for their WAL files costs a rehash, not the report (issue 21)."""
    disk = tmp_path / "disk"
    tmpfs(disk, 4 * MiB)
    repo = make_repo(disk / "repo")
    for i in range(3):
        write(repo / "d" / f"f{i}.bin", rand_bytes(50_000, 10 + i))
    ok(repo, "add", "-q", "d")
    commit(repo, "d")
    for db in (repo / ".mlvc").rglob("*.sqlite*"):  # as after a reboot: nothing open, no WAL files
        if db.name.endswith(("-wal", "-shm")):
            db.unlink()
    write(repo / "d" / "f1.bin", rand_bytes(50_000, 99))
    with open(disk / "filler", "wb") as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    code, out, err = cli(repo, "status")
    assert code == 0 and "modified: f1.bin" in out and "error" not in err, (code, out, err)
    code, out, err = cli(repo, "status", "--json")
    assert code == 0 and "f1.bin" in out, (code, out, err)


def test_full_cache_through_a_wrapping_backend(repo_dir: Path) -> None:
    """The same fault without a mount: every write to the cache's backend after the first fails
    as a full disk.  Nothing is recorded, the cache stays valid, the re-run completes."""
    from mlvc.ops.add import add
    from mlvc.repo import Repo
    from mlvc.store.faults import FailAfter
    from mlvc.store.local import LocalBackend
    from mlvc.store.packstore import PackStore, Role

    data = rand_bytes(3 * MiB, 4)
    write(repo_dir / "m.bin", data)
    write(repo_dir / "d" / "a.bin", rand_bytes(400_000, 5))
    repo = Repo.find(repo_dir)
    cache = repo.cache_dir
    repo.store = PackStore(FailAfter(LocalBackend(cache), 1), role=Role.CACHE, scratch=cache / "tmp",
                           marks=cache / "complete.sqlite",
                           pack_size=256 * 1024)
    try:
        with pytest.raises(DiskError, match="injected|disk full"):
            add(repo, ["m.bin", "d"])
    finally:
        repo.store.close()
    assert not (repo_dir / "m.bin.mlvc").exists()
    ok(repo_dir, "verify", "-q")
    assert os.listdir(cache / "tmp") == []
    ok(repo_dir, "add", "-q", "m.bin", "d")
    (repo_dir / "m.bin").unlink()
    ok(repo_dir, "checkout", "-q")
    assert (repo_dir / "m.bin").read_bytes() == data
    ok(repo_dir, "verify", "-q")
