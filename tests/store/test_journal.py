"""The push journal: a remote gc whose refs are older than a push keeps what that push published.

Each step is run in order here (the storm in `tests/system/test_fresh_commit_storm.py` runs them at once):
a machine commits, `git push`es and `mlvc push`es while the gc's clone has not fetched yet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlvc.store.backend import open_backend
from mlvc.store.journal import JOURNAL, RETENTION_S, list_names

from helpers import cli, commit, git, ok, write
from remote.helpers import add_remote, clone, make_repo, rand_bytes, snapshot

GC = ["gc", "--remote", "origin", "--all-commits", "--grace", "0", "--json"]


def team(tmp_path: Path, spec) -> tuple[Path, Path, Path]:
    """A shared git repository, one pusher's clone and a gc clone (both fetched at the start)."""
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(hub))
    seed = make_repo(tmp_path / "seed")
    add_remote(seed, spec)
    write(seed / "README", b"project\n")
    commit(seed, "init")
    git(seed, "remote", "add", "origin", str(hub))
    git(seed, "push", "-q", "origin", "main")
    return hub, clone(hub, tmp_path / "pusher"), clone(hub, tmp_path / "gc")


def restores(hub: Path, tmp_path: Path, sha: str, files: dict[str, bytes]) -> bool:
    fresh = tmp_path / f"fresh-{time.monotonic_ns()}"
    clone(hub, fresh)
    code, _out, _err = cli(fresh, "checkout", sha, "--to", str(fresh / "restored"), "-q")
    return code == 0 and snapshot(fresh / "restored", "model.bin") == files


def test_gc_with_refs_older_than_a_push_keeps_it_and_collects_it_once_unreachable(tmp_path: Path,
                                                                                    remote_spec) -> None:
    hub, pusher, gc_clone = team(tmp_path, remote_spec)
    files = {"model.bin": rand_bytes(200_000, 1)}
    write(pusher / "model.bin", files["model.bin"])
    ok(pusher, "add", "-q", "model.bin")
    git(pusher, "checkout", "-q", "-b", "feature")
    commit(pusher, "v1")
    sha = git(pusher, "rev-parse", "HEAD").strip()
    git(pusher, "push", "-q", "origin", "feature")
    ok(pusher, "push", "-q")

    # the gc clone has not fetched: its refs do not reach the commit, whose record is old news
    out = json.loads(ok(gc_clone, *GC))
    assert restores(hub, tmp_path, sha, files)
    assert out["journal_roots"] == 1 and out["objects_removed"] == 0, out
    names = list_names(open_backend(*remote_spec))
    assert [n.commit for n in names] == [sha]  # one record, named by the commit it published

    # once the gc clone knows the commit and it is gone from every ref, its objects are garbage
    git(gc_clone, "fetch", "-q", "origin")
    git(pusher, "push", "-q", "origin", "--delete", "feature")
    git(gc_clone, "fetch", "-q", "--prune", "origin")
    git(gc_clone, "cat-file", "-e", sha)  # known, unreachable
    out = json.loads(ok(gc_clone, *GC))
    assert out["journal_roots"] == 0 and out["objects_removed"] > 0, out
    assert not restores(hub, tmp_path, sha, files)
    assert out["journal_pruned"] == 0  # younger than the retention: kept for clones that fetched less


def one_push_recorded(tmp_path: Path, local_url, seed: int):
    """A team whose pusher pushed one commit: (the gc clone, the remote's backend, its one journal record)."""
    _hub, pusher, gc_clone = team(tmp_path, local_url)
    write(pusher / "model.bin", rand_bytes(100_000, seed))
    ok(pusher, "add", "-q", "model.bin")
    commit(pusher, "v1")
    git(pusher, "push", "-q", "origin", "main")
    ok(pusher, "push", "-q")
    backend = open_backend(*local_url)
    [name] = list_names(backend)
    return gc_clone, backend, name


def test_gc_prunes_journal_records_past_the_retention(tmp_path: Path, local_url) -> None:
    gc_clone, backend, name = one_push_recorded(tmp_path, local_url, seed=2)
    old_ns = time.time_ns() - int((RETENTION_S + 60) * 1e9)
    old_key = f"{JOURNAL}{old_ns:020d}{name.key[len(JOURNAL) + 20:]}"
    backend.put_bytes(old_key, backend.get_bytes(name.key))
    backend.put_bytes(f"{JOURNAL}notes.txt", b"not a record: left alone")
    dry = json.loads(ok(gc_clone, *GC, "--dry-run"))
    assert dry["journal_pruned"] == 1 and backend.exists(old_key)
    out = json.loads(ok(gc_clone, *GC))
    assert out["journal_pruned"] == 1
    assert sorted(backend.list(JOURNAL)) == sorted([name.key, f"{JOURNAL}notes.txt"])


def test_an_unreadable_journal_record_stops_gc_before_anything_goes(tmp_path: Path, local_url) -> None:
    gc_clone, backend, name = one_push_recorded(tmp_path, local_url, seed=3)
    backend.put_bytes(name.key, b"{not json")
    code, _out, err = cli(gc_clone, *GC)
    assert code == 6, err
    assert f"push journal record {name.key}" in err and "nothing was deleted" in err
