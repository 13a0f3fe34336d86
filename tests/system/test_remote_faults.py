"""Faults: corrupt / deleted / half-written remote objects, outages, credentials, disk errors, kill -9."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import threading
import time
from pathlib import Path

import pytest

from mlvc.errors import RemoteUnreachableError
from mlvc.hashing import from_oid, to_oid
from mlvc.progress import Progress
from mlvc.store.backend import open_backend
from mlvc.store.packs import CHUNK, decode_index

from helpers import cli, cli_proc, commit, ok, write
from remote.helpers import add_remote, clone, make_repo, pushed_repo, rand_bytes, remote_packs, set_core, snapshot

SECRET = "sUp3rS3cr3tV4lu3DoNotPrint"


def _two_artifacts(tmp_path: Path, spec) -> Path:
    repo = make_repo(tmp_path / "work")
    add_remote(repo, spec)
    write(repo / "a.bin", rand_bytes(300_000, 1))
    write(repo / "b" / "x.bin", rand_bytes(200_000, 2))
    write(repo / "b" / "y.bin", rand_bytes(5_000, 3))
    ok(repo, "add", "-q", "a.bin", "b")
    commit(repo)
    ok(repo, "push", "-q")
    return repo


def _chunk_of(repo: Path, rel: str) -> bytes:
    from mlvc.ops.common import file_manifest
    from mlvc.pointer import load
    from mlvc.repo import Repo

    r = Repo(repo)
    try:
        ptr = load(repo / f"{rel}.mlvc")
        return file_manifest(r.store, from_oid(ptr.oid)).chunks[0][0]
    finally:
        r.close()


def _remote_entry(spec, oid: bytes, typ: int = CHUNK):
    backend = open_backend(*spec)
    for key in backend.list("packs/"):
        if key.endswith(".idx"):
            for e in decode_index(backend.get_bytes(key), key):
                if e.oid == oid and e.type == typ:
                    return backend, key[:-4], e
    raise AssertionError("object not on the remote")


def test_corrupt_remote_object_fails_only_its_artifact(tmp_path: Path, remote_spec) -> None:
    repo = _two_artifacts(tmp_path, remote_spec)
    oid = _chunk_of(repo, "a.bin")
    backend, pack, entry = _remote_entry(remote_spec, oid)
    data = bytearray(backend.get_bytes(f"{pack}.pack"))
    data[entry.offset + entry.stored // 2] ^= 0xFF
    backend.delete(f"{pack}.pack")
    backend.put_bytes(f"{pack}.pack", bytes(data))

    fresh = clone(repo, tmp_path / "fresh")
    code, out, err = cli(fresh, "pull")
    assert code == 12, (out, err)
    assert to_oid(oid) in err and "a.bin" in err and "corrupt" in err
    assert not (fresh / "a.bin").exists()  # nothing unverified reached the workspace
    assert snapshot(fresh, "b") == snapshot(repo, "b")  # the other artifact completed
    ok(fresh, "verify", "-q")  # nothing bad in the cache
    # range-read path too: only the corrupt artifact asked for
    code, _, err = cli(fresh, "fetch", "a.bin")
    assert code == 6 and to_oid(oid) in err


def test_deleted_remote_index_means_missing(tmp_path: Path, remote_spec) -> None:
    repo = _two_artifacts(tmp_path, remote_spec)
    backend = open_backend(*remote_spec)
    for key in backend.list("packs/"):
        if key.endswith(".idx"):
            backend.delete(key)
    fresh = clone(repo, tmp_path / "fresh")
    code, _, err = cli(fresh, "pull")
    assert code == 7 and "missing from remote" in err and "a.bin" in err
    # the pusher's cached copy of the index does not hide the loss either: push re-uploads
    out = json.loads(ok(repo, "push", "--json"))
    assert out["objects"] > 0
    ok(fresh, "pull", "-q")
    assert (fresh / "a.bin").read_bytes() == (repo / "a.bin").read_bytes()


def test_half_written_pack_is_ignored(tmp_path: Path, remote_spec) -> None:
    repo = make_repo(tmp_path / "work")
    add_remote(repo, remote_spec)
    write(repo / "m.bin", rand_bytes(400_000, 5))
    ok(repo, "add", "-q", "m.bin")
    commit(repo)
    backend = open_backend(*remote_spec)
    backend.ensure_base()
    backend.put_bytes("packs/" + "ab" * 16 + ".pack", b"MLVCPACK\x01garbage of a killed push")
    if backend.capabilities.local_files:
        write(Path(remote_spec[0]) / "packs" / ("cd" * 16 + ".pack.tmp-host-1-abc"), b"MLVCPACK\x01trunc")
    ok(repo, "push", "-q")
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert (fresh / "m.bin").read_bytes() == (repo / "m.bin").read_bytes()
    ok(fresh, "verify", "-q")


@pytest.mark.s3
def test_server_stopped_mid_push_then_resumed(tmp_path: Path, outage_server, make_bucket, options_for) -> None:
    from mlvc.ops.push import push
    from mlvc.repo import Repo

    bucket = make_bucket(outage_server.endpoint)
    spec = (f"s3://{bucket}/r", options_for(outage_server.endpoint))
    repo = make_repo(tmp_path / "work")
    add_remote(repo, spec)
    set_core(repo, "remote_pack_size", 256 * 1024)
    for i in range(8):
        write(repo / "d" / f"{i}.bin", rand_bytes(200_000, 10 + i))
    ok(repo, "add", "-q", "d")
    commit(repo)

    class StopAfterFirstBytes(Progress):
        fired = False

        def advance(self, amount: int = 1) -> None:
            if not self.fired:
                self.fired = True
                threading.Thread(target=outage_server.stop).start()

    r = Repo(repo)
    try:
        with pytest.raises(RemoteUnreachableError) as caught:
            push(r, jobs=1, progress=StopAfterFirstBytes())
        assert outage_server.endpoint in str(caught.value)
    finally:
        r.close()
    time.sleep(0.5)
    outage_server.start()
    out = json.loads(ok(repo, "push", "--json"))
    assert out["failed"] == {} and out["done"] == ["d"]
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert snapshot(fresh, "d") == snapshot(repo, "d")


@pytest.mark.s3
def test_wrong_credentials_exit_9_without_printing_secret(tmp_path: Path, s3_url, monkeypatch) -> None:
    from moto import settings

    repo = make_repo(tmp_path / "work")
    add_remote(repo, s3_url)
    write(repo / "m.bin", rand_bytes(10_000, 5))
    ok(repo, "add", "-q", "m.bin")
    ok(repo, "remote", "modify", "origin", "access_key_id", "AKIAUNKNOWNKEY000")
    ok(repo, "remote", "modify", "origin", "secret_access_key", SECRET)
    assert SECRET not in (repo / ".mlvc" / "config").read_text()
    assert SECRET in (repo / ".mlvc" / "config.local").read_text()
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    for args in (["push"], ["pull"], ["fetch"], ["remote", "list"], ["remote", "list", "--json"]):
        code, out, err = cli(repo, *args)
        assert SECRET not in out + err
        if args[0] != "remote":
            assert code == 9, (args, out, err)
            assert "credentials" in err


@pytest.mark.s3
def test_no_credentials_at_all_exit_9_with_the_credentials_hint(tmp_path: Path, s3_url, monkeypatch) -> None:
    """No key in the remote's options, the environment or any config file: botocore's
    NoCredentialsError is a remote error (exit 9) that says where credentials go, not an internal error."""
    url, options = s3_url
    repo = make_repo(tmp_path / "work")
    add_remote(repo, (url, {"endpoint_url": options["endpoint_url"]}))
    write(repo / "m.bin", rand_bytes(10_000, 5))
    ok(repo, "add", "-q", "m.bin")
    commit(repo)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for args in (["push"], ["fetch"]):
        code, _, err = cli(repo, *args)
        assert code == 9, (args, err)
        assert "internal error" not in err and "credentials" in err
        assert "hint: " in err and "AWS_" in err


@pytest.mark.s3
def test_missing_bucket_exit_9(tmp_path: Path, moto_server) -> None:
    repo = make_repo(tmp_path / "work")
    ok(repo, "remote", "add", "origin", "s3://mlvc-no-such-bucket-x/r", "--endpoint-url", moto_server)
    write(repo / "m.bin", rand_bytes(10_000, 5))
    ok(repo, "add", "-q", "m.bin")
    for args in (["push"], ["fetch"]):
        code, _, err = cli(repo, *args)
        assert code == 9 and "mlvc-no-such-bucket-x" in err


def test_local_write_failure_during_pull_is_disk_error(tmp_path: Path, local_url) -> None:
    """A file-size limit makes the OS refuse writes (EFBIG) like a full disk would; no root needed."""
    repo = pushed_repo(tmp_path / "work", local_url, {"big.bin": rand_bytes(3_000_000, 6)})
    fresh = clone(repo, tmp_path / "fresh")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    proc = cli_proc(fresh, "pull", preexec_fn=limit)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 10, err
    assert "File too large" in err or "disk" in err
    assert not (fresh / "big.bin").exists()
    ok(fresh, "pull", "-q")  # with room again: completes
    assert (fresh / "big.bin").read_bytes() == (repo / "big.bin").read_bytes()
    ok(fresh, "verify", "-q")


def _kill_at_random_points(cwd: Path, args: list[str], delays: list[float]) -> None:
    for delay in delays:
        proc = cli_proc(cwd, *args)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)


@pytest.mark.slow
def test_kill_9_push_and_pull_then_rerun(tmp_path: Path, local_url) -> None:
    rng = random.Random(1234)
    repo = make_repo(tmp_path / "work")
    add_remote(repo, local_url)
    set_core(repo, "remote_pack_size", 128 * 1024)
    for i in range(12):
        write(repo / "d" / f"{i}.bin", rand_bytes(300_000, 20 + i))
    write(repo / "w.bin", rand_bytes(2_000_000, 60))
    ok(repo, "add", "-q", "d", "w.bin")
    commit(repo)

    _kill_at_random_points(repo, ["push", "--jobs", "1"], [rng.uniform(0.4, 1.5) for _ in range(3)])
    ok(repo, "push", "-q")
    assert not [k for k in remote_packs(local_url) if ".tmp-" in k]

    fresh = clone(repo, tmp_path / "fresh")
    _kill_at_random_points(fresh, ["pull", "--jobs", "1"], [rng.uniform(0.4, 1.5) for _ in range(3)])
    ok(fresh, "pull", "-q", "--force")
    assert snapshot(fresh, "d") == snapshot(repo, "d")
    assert (fresh / "w.bin").read_bytes() == (repo / "w.bin").read_bytes()
    ok(fresh, "verify", "-q")
    ok(repo, "verify", "-q")
