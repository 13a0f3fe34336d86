"""`mlvc verify` of the cache and of remotes, and `--repair`, on real repositories and remotes."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

from mlvc.errors import EXIT_CORRUPT, EXIT_USAGE

from helpers import cli, cli_proc, commit, ok
from remote.helpers import add_remote, clone, make_repo, pushed_repo, rand_bytes, write  # isort: skip


def flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def biggest_pack(root: Path) -> Path:
    return max((root / "packs").glob("*.pack"), key=lambda p: p.stat().st_size)


@pytest.fixture
def pushed(tmp_path, local_url):
    repo = make_repo(tmp_path / "work")
    add_remote(repo, local_url)
    write(repo / "m.bin", rand_bytes(600_000, 1))
    write(repo / "other.bin", rand_bytes(300_000, 2))
    ok(repo, "add", "-q", "m.bin", "other.bin")
    commit(repo)
    ok(repo, "push", "-q")
    return repo, Path(local_url[0])


def test_damaged_cache_is_reported_with_its_artifacts_then_repaired_from_the_remote(pushed):
    repo, _remote = pushed
    cache = repo / ".mlvc" / "cache"
    original = (repo / "m.bin").read_bytes()
    flip(biggest_pack(cache), 300_000)
    code, out, _err = cli(repo, "verify", "--json")
    doc = json.loads(out)
    assert code == EXIT_CORRUPT and not doc["ok"] and "m.bin" in doc["affected"]
    code, out, err = cli(repo, "verify", "--repair")
    assert code == 0, (out, err)
    assert "quarantined" in out and "restored from another store: m.bin" in out
    quarantined = list((cache / "quarantine").iterdir())
    assert any(p.suffix == ".pack" for p in quarantined) and any(p.suffix == ".json" for p in quarantined)
    (repo / "m.bin").unlink()
    ok(repo, "checkout", "-q")
    assert (repo / "m.bin").read_bytes() == original
    ok(repo, "verify", "-q")


def test_repair_of_the_cache_waits_for_a_gc_holding_its_host_lock(pushed):
    """--repair moves packs aside and writes into the cache: it takes the host lock exclusively,
    as gc does, so it neither runs beside a gc nor beside an add that relies on a pack it
    quarantines."""
    repo, _remote = pushed
    cache = repo / ".mlvc" / "cache"
    original = (repo / "m.bin").read_bytes()
    flip(biggest_pack(cache), 300_000)
    fd = os.open(cache / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a gc holds while it deletes
        proc = cli_proc(repo, "verify", "--repair", "-q")
        time.sleep(2.0)
        assert proc.poll() is None, proc.communicate()  # waiting for the lock, nothing moved yet
        assert not (cache / "quarantine").exists() or not any((cache / "quarantine").iterdir())
    finally:
        os.close(fd)
    assert proc.wait(120) == 0, proc.communicate()
    (repo / "m.bin").unlink()
    ok(repo, "checkout", "-q")
    assert (repo / "m.bin").read_bytes() == original


def test_repair_without_a_remote_says_what_it_could_not_do(tmp_path):
    repo = make_repo(tmp_path / "work")
    write(repo / "m.bin", rand_bytes(400_000, 3))
    ok(repo, "add", "-q", "m.bin")
    flip(biggest_pack(repo / ".mlvc" / "cache"), 200_000)
    code, out, err = cli(repo, "verify", "--repair")
    assert code == EXIT_CORRUPT and "not repaired: m.bin" in out and "no remote" in out, (out, err)
    assert "Traceback" not in err
    # the damaged pack was moved aside, not deleted
    assert list((repo / ".mlvc" / "cache" / "quarantine").glob("*.pack"))


def test_orphaned_pack_is_reindexed(pushed):
    repo, _remote = pushed
    cache = repo / ".mlvc" / "cache"
    for idx in (cache / "packs").glob("*.idx"):
        idx.unlink()  # as if every writer died between publishing its pack and its index
    code, out, _ = cli(repo, "verify")
    assert code == EXIT_CORRUPT or "orphan" in out
    code, out, err = cli(repo, "verify", "--repair")
    assert code == 0 and "re-indexed pack" in out, (out, err)
    (repo / "m.bin").unlink()
    ok(repo, "checkout", "-q")  # from the cache: the remote is not needed
    assert (repo / "m.bin").read_bytes() == rand_bytes(600_000, 1)


def test_damaged_remote_is_repaired_from_the_cache(pushed, tmp_path):
    repo, remote = pushed
    pack = biggest_pack(remote)  # a byte of m.bin's (its raw records lie in pack-name order)
    flip(pack, pack.read_bytes().index(rand_bytes(600_000, 1)[300_000:300_064]) + 10)
    code, out, _ = cli(repo, "verify", "--remote", "origin")
    assert code == 0  # indexes and manifests only: the damage is in a chunk
    code, out, _ = cli(repo, "verify", "--remote", "origin", "--read-data")
    assert code == EXIT_CORRUPT and "m.bin" in out
    code, out, err = cli(repo, "verify", "--remote", "origin", "--read-data", "--repair")
    assert code == 0, (out, err)
    assert list((remote / "quarantine").glob("*.pack"))
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert (fresh / "m.bin").read_bytes() == (repo / "m.bin").read_bytes()


def test_remote_pack_deleted_under_its_index_is_pushed_again(pushed, tmp_path):
    repo, remote = pushed
    for pack in (remote / "packs").glob("*.pack"):
        pack.unlink()
    code, out, _ = cli(repo, "status", "--remote", "--json")
    assert any(a["not_on_remote"] for a in json.loads(out)), out
    ok(repo, "push", "-q")
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert (fresh / "m.bin").read_bytes() == (repo / "m.bin").read_bytes()


def test_verify_remote_after_a_push_re_uploaded_part_of_a_lost_pack_names_only_what_is_missing(pushed):
    repo, remote = pushed
    for pack in (remote / "packs").glob("*.pack"):
        pack.unlink()
    ok(repo, "push", "-q", "m.bin")  # m.bin's objects again, in a pack of their own
    code, out, _err = cli(repo, "verify", "--remote", "origin", "--json")
    doc = json.loads(out)
    assert code == EXIT_CORRUPT and "pack file missing" in json.dumps(doc["report"]["problems"])
    assert doc["affected"] == ["other.bin"], doc
    ok(repo, "verify", "--remote", "origin", "--repair", "-q")
    ok(repo, "verify", "--remote", "origin", "--read-data", "-q")


def test_repair_of_a_pack_file_missing_from_the_cache_fetches_its_objects_again(pushed):
    repo, _remote = pushed
    cache = repo / ".mlvc" / "cache"
    original = (repo / "m.bin").read_bytes()
    for pack in (cache / "packs").glob("*.pack"):
        pack.unlink()
    code, out, err = cli(repo, "verify", "--repair")
    assert code == 0, (out, err)
    assert "pack file missing" in out and "restored from another store: m.bin" in out
    assert list((cache / "quarantine").glob("*.idx"))  # the dangling index moved aside, not deleted
    ok(repo, "verify", "-q")
    (repo / "m.bin").unlink()
    ok(repo, "checkout", "-q")
    assert (repo / "m.bin").read_bytes() == original


def test_repair_of_a_pack_file_missing_from_a_remote_uploads_its_objects_again(tmp_path, remote_spec):
    from mlvc.store.backend import open_backend

    repo = pushed_repo(tmp_path / "work", remote_spec, {"m.bin": rand_bytes(500_000, 7)})
    backend = open_backend(*remote_spec)
    for key in backend.list("packs/"):
        if key.endswith(".pack"):
            backend.delete(key)
    code, out, err = cli(repo, "verify", "--remote", "origin", "--repair")
    assert code == 0, (out, err)
    assert "pack file missing" in out and "restored from another store: m.bin" in out
    assert any(k.endswith(".idx") for k in backend.list("quarantine/"))
    ok(repo, "verify", "--remote", "origin", "--read-data", "-q")
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert (fresh / "m.bin").read_bytes() == (repo / "m.bin").read_bytes()


def test_repair_says_what_no_store_holds_and_exits_corrupt(pushed):
    repo, remote = pushed
    for root in (repo / ".mlvc" / "cache", remote):
        for pack in (root / "packs").glob("*.pack"):
            pack.unlink()
    code, out, err = cli(repo, "verify", "--repair")
    assert code == EXIT_CORRUPT, (out, err)
    assert "not repaired: m.bin" in out + err and "internal error" not in out + err
    code, out, _err = cli(repo, "verify", "--json")  # no dangling index left behind
    assert code == 0 and json.loads(out)["report"]["problems"] == []


def test_local_gc_refuses_when_a_kept_manifest_is_damaged(tmp_path):
    repo = make_repo(tmp_path / "work")
    write(repo / "d" / "a.bin", rand_bytes(200_000, 4))
    ok(repo, "add", "-q", "d")
    commit(repo)
    cache = repo / ".mlvc" / "cache"
    packs = sorted((cache / "packs").glob("*.pack"))
    before = {p.name: p.read_bytes() for p in packs}
    pack = packs[0]
    flip(pack, pack.stat().st_size - 40)  # the tree manifest is the pack's last record
    code, _out, err = cli(repo, "gc", "--workspace", "--grace", "0")
    assert code != 0 and "nothing was deleted" in err, err
    assert sorted(p.name for p in (cache / "packs").glob("*.pack")) == sorted(before)


def test_bad_subset_is_a_usage_error(pushed):
    repo, _ = pushed
    code, _out, err = cli(repo, "verify", "--read-data-subset", "150%")
    assert code == EXIT_USAGE and "percentage" in err and "Traceback" not in err
    code, out, _ = cli(repo, "verify", "--read-data-subset", "50%", "--json")
    assert code == 0 and json.loads(out)["report"]["packs_read"] >= 1
    _ = os
