"""The Backend contract, run against a directory, S3 on moto and S3 on SeaweedFS (and memory where it applies)."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlvc.errors import (
    DiskError,
    LockedError,
    ObjectNotFoundError,
    PathError,
    RemoteAuthError,
    RemoteNotFoundError,
    RemoteTimeoutError,
    RemoteUnreachableError,
)
from mlvc.store import local as local_module
from mlvc.store.backend import TEMP_MARKER, Backend, open_backend
from mlvc.store.fsspec_ import FsspecBackend

BIG_SIZE = 20 * 2**20 + 12_345  # above 10 MiB and above two S3 parts, so S3 goes multipart
SECRET = "s3cr3t-Value-that-must-never-be-shown"

PUT_WORKER = """
from mlvc.store.backend import open_backend
backend = open_backend(SPEC["url"], SPEC["options"])
backend.exists("warm/up")  # connect before the start signal
wait_for_start()
published = [backend.put_file(path, key) for path, key in SPEC["files"]]
for key, data in SPEC["small"]:
    backend.put_bytes(key, data.encode())
print(json.dumps(published))
"""


def write_random(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def temp_leftovers(root: Path) -> list[str]:
    return [name for _dir, _subdirs, names in os.walk(root) for name in names if TEMP_MARKER in name]


@pytest.fixture(params=["local", "fsspec-local", "fsspec-memory", pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("seaweed", marks=pytest.mark.s3)])
def remote_spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """Every kind the contract binds to (moto and SeaweedFS are both real S3 servers; the plain
    `FsspecBackend` on fsspec's own local filesystem and on its in-process memory filesystem)."""
    if request.param == "fsspec-local":
        return f"local://{tmp_path / 'fsspec-remote'}", {}
    if request.param == "fsspec-memory":
        return f"memory://mlvc-{uuid.uuid4().hex}/remote", {}
    return request.getfixturevalue(f"{request.param}_url")


def plain_fsspec(remote: Backend) -> bool:
    """A plain fsspec filesystem: no conditional writes (no locks), writes land in place."""
    return type(remote) is FsspecBackend


class TestBackendContract:
    """Every remote kind must behave the same through this API."""

    def test_large_file_roundtrip_is_streamed_with_progress(self, remote: Backend, tmp_path: Path) -> None:
        data = write_random(tmp_path / "big.bin", BIG_SIZE)
        uploaded: list[int] = []
        assert remote.put_file(tmp_path / "big.bin", "packs/big.pack", callback=uploaded.append) is True
        assert sum(uploaded) == BIG_SIZE
        # progress arrives in steps, not once at the end (fsspec's own filesystems may copy a
        # file without reporting: the backend then reports it whole when the copy ends)
        assert len(uploaded) > 1 or plain_fsspec(remote)

        downloaded: list[int] = []
        target = tmp_path / "out" / "big.bin"
        target.parent.mkdir()
        remote.get_file("packs/big.pack", target, callback=downloaded.append)
        assert target.read_bytes() == data
        assert sum(downloaded) == BIG_SIZE
        assert temp_leftovers(target.parent) == []
        assert remote.size("packs/big.pack") == BIG_SIZE

    def test_put_file_never_overwrites(self, remote: Backend, tmp_path: Path) -> None:
        (tmp_path / "first").write_bytes(b"first version")
        (tmp_path / "second").write_bytes(b"second version")
        assert remote.put_file(tmp_path / "first", "packs/a.pack") is True
        progress: list[int] = []
        assert remote.put_file(tmp_path / "second", "packs/a.pack", callback=progress.append) is False
        assert remote.get_bytes("packs/a.pack") == b"first version"
        assert progress == []  # nothing was transferred

    def test_put_bytes_roundtrip_and_replace(self, remote: Backend) -> None:
        remote.put_bytes("meta/info.json", b"{}")
        assert remote.get_bytes("meta/info.json") == b"{}"
        remote.put_bytes("meta/info.json", b'{"v": 2}')
        assert remote.get_bytes("meta/info.json") == b'{"v": 2}'
        remote.put_bytes("meta/empty", b"")
        assert remote.get_bytes("meta/empty") == b""
        assert remote.size("meta/empty") == 0

    def test_range_reads(self, remote: Backend) -> None:
        data = bytes(range(256)) * 4
        remote.put_bytes("packs/r.pack", data)
        assert remote.get_range("packs/r.pack", 0, 10) == data[:10]
        assert remote.get_range("packs/r.pack", 500, 100) == data[500:600]
        assert remote.get_range("packs/r.pack", 1020, 10) == data[1020:]  # short at the end
        assert remote.get_range("packs/r.pack", 1024, 10) == b""
        assert remote.get_range("packs/r.pack", 5000, 10) == b""
        assert remote.get_range("packs/r.pack", 7, 0) == b""
        with pytest.raises(ValueError):
            remote.get_range("packs/r.pack", -1, 10)

    def test_listing(self, remote: Backend) -> None:
        keys = ["packs/aa01.pack", "packs/aa01.idx", "packs/bb02.pack", "meta/x", "top"]
        for key in keys:
            remote.put_bytes(key, key.encode())
        assert remote.list() == sorted(keys)
        assert remote.list("") == sorted(keys)
        assert remote.list("packs/") == ["packs/aa01.idx", "packs/aa01.pack", "packs/bb02.pack"]
        assert remote.list("packs") == ["packs/aa01.idx", "packs/aa01.pack", "packs/bb02.pack"]
        assert remote.list("packs/aa") == ["packs/aa01.idx", "packs/aa01.pack"]
        assert remote.list("packs/zz") == []
        assert remote.list("nothing/") == []
        assert remote.list("nothing/deeper/") == []

    def test_exists_size_and_delete(self, remote: Backend) -> None:
        assert remote.exists("packs/e.pack") is False
        remote.put_bytes("packs/e.pack", b"12345")
        assert remote.exists("packs/e.pack") is True
        assert remote.size("packs/e.pack") == 5
        assert remote.exists("packs") is False  # a directory / prefix is not an object
        remote.delete("packs/e.pack")
        assert remote.exists("packs/e.pack") is False
        remote.delete("packs/e.pack")  # deleting an absent key is fine

    def test_missing_key_raises_object_not_found(self, remote: Backend, tmp_path: Path) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: remote.get_bytes("packs/missing.pack"),
            lambda: remote.get_range("packs/missing.pack", 0, 10),
            lambda: remote.get_range("packs/missing.pack", 0, 0),
            lambda: remote.size("packs/missing.pack"),
            lambda: remote.get_file("packs/missing.pack", tmp_path / "dest"),
        ]
        if not plain_fsspec(remote):  # (a conditional read: see test_conditional_operations)
            calls.append(lambda: remote.get_tagged("packs/missing.pack"))
        for call in calls:
            with pytest.raises(ObjectNotFoundError) as caught:
                call()
            assert caught.value.oid == "packs/missing.pack"
            assert remote.describe() in str(caught.value)
        assert not (tmp_path / "dest").exists()
        assert temp_leftovers(tmp_path) == []

    @pytest.mark.parametrize("bad_key", ["../x", "a/../../x", "/abs", "a//b", "./a", "", "a\\b", "a/b.tmp-1"])
    def test_unsafe_keys_are_refused(self, remote: Backend, bad_key: str, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"x")
        for call in (lambda: remote.put_bytes(bad_key, b"x"), lambda: remote.get_bytes(bad_key),
                     lambda: remote.exists(bad_key), lambda: remote.put_file(tmp_path / "f", bad_key),
                     lambda: remote.delete(bad_key)):
            with pytest.raises(PathError):
                call()
        with pytest.raises(ValueError):
            remote.list("../")

    def test_conditional_operations(self, remote: Backend) -> None:
        if plain_fsspec(remote):  # it says so, and the lock protocol refuses it (gc --remote does not run)
            assert not remote.capabilities.atomic_create and not remote.capabilities.conditional
            with pytest.raises(NotImplementedError):
                remote.create_bytes("locks/x", b"one")
            return
        tag = remote.create_bytes("locks/x", b"one")
        assert tag is not None
        assert remote.create_bytes("locks/x", b"two") is None
        data, current = remote.get_tagged("locks/x")
        assert (data, current) == (b"one", tag)

        assert remote.replace_if_unchanged("locks/x", b"three", "not-the-tag") is None
        new_tag = remote.replace_if_unchanged("locks/x", b"three", tag)
        assert new_tag is not None and new_tag != tag
        assert remote.get_bytes("locks/x") == b"three"

        assert remote.delete_if_unchanged("locks/x", tag) is False
        assert remote.exists("locks/x")
        assert remote.delete_if_unchanged("locks/x", new_tag) is True
        assert not remote.exists("locks/x")
        assert remote.delete_if_unchanged("locks/x", new_tag) is False
        assert remote.replace_if_unchanged("locks/x", b"four", new_tag) is None

    def test_temp_cleanup(self, remote: Backend, remote_spec: tuple[str, dict[str, Any]]) -> None:
        remote.put_bytes("packs/keep.pack", b"keep")
        if plain_fsspec(remote):  # it writes in place: no temp files, nothing to clean
            assert remote.cleanup(0) == 0 and remote.list("packs/") == ["packs/keep.pack"]
            return
        if not remote.capabilities.local_files:
            self.check_s3_stale_uploads_are_aborted(remote, remote_spec)
            return
        root = Path(remote_spec[0])
        stale = root / "packs" / f"dead.pack{TEMP_MARKER}host-123-abc"
        fresh = root / "packs" / f"live.pack{TEMP_MARKER}host-456-def"
        stale.write_bytes(b"partial")
        fresh.write_bytes(b"partial")
        an_hour_ago = time.time() - 3600
        os.utime(stale, (an_hour_ago, an_hour_ago))
        assert remote.list("packs/") == ["packs/keep.pack"]  # in-progress writes are invisible
        assert remote.cleanup(600) == 1
        assert not stale.exists() and fresh.exists()
        assert remote.get_bytes("packs/keep.pack") == b"keep"

    @staticmethod
    def check_s3_stale_uploads_are_aborted(remote: Backend, remote_spec: tuple[str, dict[str, Any]]) -> None:
        """A killed S3 writer leaves an incomplete multipart upload rather than a temp file."""
        import boto3

        options = remote_spec[1]
        client = boto3.client("s3", endpoint_url=options["endpoint_url"], region_name=options["region"])
        bucket = remote_spec[0].removeprefix("s3://").split("/")[0]
        upload = client.create_multipart_upload(Bucket=bucket, Key="remote/packs/dead.pack")
        client.upload_part(Bucket=bucket, Key="remote/packs/dead.pack", UploadId=upload["UploadId"],
                           PartNumber=1, Body=b"partial")
        outside = client.create_multipart_upload(Bucket=bucket, Key="elsewhere/x")  # not under the base
        # moto reports every upload as initiated in 2010, so "recent" here means within a century
        assert remote.cleanup(100 * 365 * 86400) == 0
        time.sleep(1.1)  # SeaweedFS reports the real time, to the second
        assert remote.cleanup(1) == 1
        remaining = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [item["UploadId"] for item in remaining] == [outside["UploadId"]]
        assert remote.get_bytes("packs/keep.pack") == b"keep"

    def test_concurrent_processes(self, remote: Backend, remote_spec: tuple[str, dict[str, Any]],
                                  tmp_path: Path, spawn_workers: Callable[..., list[str]]) -> None:
        """Real processes put one shared key and their own keys at the same moment."""
        shared = write_random(tmp_path / "shared.bin", 3 * 2**20)
        own = {i: write_random(tmp_path / f"own-{i}.bin", 2**20 + i) for i in range(3)}
        specs = [{
            "url": remote_spec[0], "options": remote_spec[1],
            "files": [[str(tmp_path / "shared.bin"), "packs/shared.pack"],
                      [str(tmp_path / f"own-{i}.bin"), f"packs/own-{i}.pack"]],
            "small": [["meta/shared", "same content"], [f"meta/own-{i}", f"content {i}"]],
        } for i in own]
        if remote_spec[0].startswith("memory://"):  # one process's memory: the writers are threads
            results = run_in_threads(specs)
        else:
            results = [json.loads(line) for line in spawn_workers(PUT_WORKER, specs)]
        assert all(own_published for _shared, own_published in results)
        shared_published = sum(shared_published for shared_published, _own in results)
        if remote.capabilities.local_files:
            assert shared_published == 1  # link() lets exactly one writer publish
        else:
            assert shared_published >= 1

        assert remote.get_bytes("packs/shared.pack") == shared
        for i, data in own.items():
            assert remote.get_bytes(f"packs/own-{i}.pack") == data
            assert remote.get_bytes(f"meta/own-{i}") == f"content {i}".encode()
        assert remote.get_bytes("meta/shared") == b"same content"
        assert len(remote.list("packs/")) == 1 + len(own)
        if remote.capabilities.local_files:
            assert temp_leftovers(Path(remote_spec[0])) == []


def run_in_threads(specs: list[dict[str, Any]]) -> list[list[bool]]:
    """PUT_WORKER's work, each spec in a thread of this process, started together."""
    start = threading.Barrier(len(specs))
    results: list[list[bool]] = [[] for _ in specs]

    def work(i: int, spec: dict[str, Any]) -> None:
        backend = open_backend(spec["url"], spec["options"])
        start.wait()
        results[i] = [backend.put_file(path, key) for path, key in spec["files"]]
        for key, data in spec["small"]:
            backend.put_bytes(key, data.encode())

    threads = [threading.Thread(target=work, args=(i, spec)) for i, spec in enumerate(specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- directory remotes --------------------------------------------------------------------


def test_file_url_and_plain_path_are_the_same_remote(tmp_path: Path) -> None:
    plain = open_backend(str(tmp_path / "r"))
    plain.ensure_base()
    plain.put_bytes("a/b", b"data")
    via_url = open_backend((tmp_path / "r").as_uri(), {})
    assert via_url.capabilities.local_files
    assert via_url.get_bytes("a/b") == b"data"


def test_missing_local_base_is_remote_not_found(tmp_path: Path) -> None:
    unmounted = open_backend(str(tmp_path / "not-mounted" / "remote"))
    with pytest.raises(RemoteNotFoundError):
        unmounted.ensure_base()  # never creates more than the last component
    assert not (tmp_path / "not-mounted").exists()
    with pytest.raises(RemoteNotFoundError):
        unmounted.get_bytes("packs/x.pack")
    with pytest.raises(RemoteNotFoundError):
        unmounted.put_bytes("packs/x.pack", b"x")
    with pytest.raises(RemoteNotFoundError):
        unmounted.list()
    assert unmounted.exists("packs/x.pack") is False


def test_disk_full_while_downloading_is_disk_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = open_backend(str(tmp_path / "remote"))
    remote.ensure_base()
    remote.put_bytes("packs/p.pack", b"x" * 1000)

    def disk_full(*_args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # the only simulated failure in this suite: a real full disk is not available to tests
    monkeypatch.setattr(local_module, "_copy_stream", disk_full)
    with pytest.raises(DiskError, match="No space left"):
        remote.get_file("packs/p.pack", tmp_path / "dest")
    assert os.listdir(tmp_path) == ["remote"]  # neither target nor temp file left behind


def test_a_finished_file_on_another_filesystem_is_moved_in_by_copying(tmp_path: Path, tmpfs) -> None:
    """A cache on one filesystem, a directory remote on another (a share): the pack a push built
    in the cache's scratch cannot be linked or renamed in (EXDEV), so it is copied, then removed."""
    other = tmp_path / "other-fs"
    tmpfs(other, 8 << 20)
    remote = open_backend(str(tmp_path / "remote"))
    remote.ensure_base()
    built = other / "scratch.pack"
    built.write_bytes(b"pack bytes" * 1000)
    seen: list[int] = []
    assert remote.put_file(built, "packs/p.pack", seen.append, move=True) is True
    assert remote.get_bytes("packs/p.pack") == b"pack bytes" * 1000
    assert sum(seen) == 10_000 and not built.exists()
    assert [name for name in os.listdir(tmp_path / "remote" / "packs") if name != "p.pack"] == []
    built.write_bytes(b"pack bytes" * 1000)
    assert remote.put_file(built, "packs/p.pack", move=True) is False  # already there: nothing replaced
    assert not built.exists()


# -- S3 only ------------------------------------------------------------------------------


@pytest.mark.s3
def test_missing_bucket_is_remote_not_found(moto_server: str, options_for: Callable[..., dict[str, Any]]) -> None:
    remote = open_backend("s3://mlvc-no-such-bucket/remote", options_for(moto_server))
    with pytest.raises(RemoteNotFoundError, match="mlvc-no-such-bucket"):
        remote.ensure_base()
    with pytest.raises(RemoteNotFoundError, match="mlvc-no-such-bucket"):
        remote.get_bytes("packs/x.pack")
    with pytest.raises(RemoteNotFoundError):
        remote.put_bytes("packs/x.pack", b"x")
    with pytest.raises(RemoteNotFoundError):
        remote.list("packs/")


def enforce_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the in-process moto servers check credentials (they accept anything by default).
    monkeypatch turns it off again after the test."""
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)


def assert_no_secret(error: BaseException, backend: Backend) -> None:
    for text in (str(error), str(getattr(error, "hint", "")), repr(error), repr(backend), backend.describe()):
        assert SECRET not in text


@pytest.mark.s3
def test_unknown_access_key_is_auth_error(moto_server: str, make_bucket: Callable[[str], str],
                                          options_for: Callable[..., dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = make_bucket(moto_server)
    enforce_auth(monkeypatch)
    remote = open_backend(f"s3://{bucket}/r", options_for(moto_server, "AKIAUNKNOWN00000", SECRET))
    calls: list[Callable[[], Any]] = [remote.ensure_base, lambda: remote.get_bytes("k"),
                                      lambda: remote.put_bytes("k", b"x"), lambda: remote.exists("k"),
                                      lambda: remote.list("")]
    for call in calls:
        with pytest.raises(RemoteAuthError) as caught:
            call()
        assert_no_secret(caught.value, remote)
        assert remote.describe() in str(caught.value)


@pytest.mark.s3
def test_wrong_secret_is_auth_error(moto_server: str, make_bucket: Callable[[str], str],
                                    options_for: Callable[..., dict[str, Any]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1")
    iam.create_user(UserName="mlvc-tester")
    key_id = iam.create_access_key(UserName="mlvc-tester")["AccessKey"]["AccessKeyId"]
    bucket = make_bucket(moto_server)
    enforce_auth(monkeypatch)
    remote = open_backend(f"s3://{bucket}/r", options_for(moto_server, key_id, SECRET))
    for call in (lambda: remote.get_bytes("packs/x.pack"), lambda: remote.put_bytes("packs/x.pack", b"x")):
        with pytest.raises(RemoteAuthError, match="SignatureDoesNotMatch") as caught:
            call()
        assert_no_secret(caught.value, remote)


@pytest.mark.s3
def test_server_down_is_unreachable_within_seconds(outage_server: Any, make_bucket: Callable[[str], str],
                                                   options_for: Callable[..., dict[str, Any]],
                                                   tmp_path: Path) -> None:
    bucket = make_bucket(outage_server.endpoint)
    remote = open_backend(f"s3://{bucket}/r", options_for(outage_server.endpoint))
    remote.put_bytes("packs/a.pack", b"before the outage")
    (tmp_path / "f").write_bytes(b"data")

    outage_server.stop()
    calls: list[Callable[[], Any]] = [lambda: remote.get_bytes("packs/a.pack"),
                                      lambda: remote.put_file(tmp_path / "f", "packs/b.pack")]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(RemoteUnreachableError) as caught:
            call()
        assert time.monotonic() - started < 15
        assert f"s3://{bucket}/r" in str(caught.value)
        assert outage_server.endpoint in str(caught.value)

    outage_server.start()  # same port: the same backend object recovers
    assert remote.get_bytes("packs/a.pack") == b"before the outage"


@pytest.mark.s3
def test_a_server_that_stops_answering_fails_the_requests_after_the_first_at_once(
        outage_server: Any, make_bucket: Callable[[str], str], options_for: Callable[..., dict[str, Any]],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One request waits out its timeouts; the ones after it, with nothing answering meanwhile, fail
    at once with the same error instead of each waiting again.  The client's timeouts are shortened
    here (seconds, not the real 20 s) so that the test is quick."""
    from servers import FreezableProxy

    from mlvc.store import fsspec_, s3

    monkeypatch.setattr(s3, "READ_TIMEOUT_S", 1)
    monkeypatch.setattr(s3, "UPLOAD_BASE_S", 2)
    bucket = make_bucket(outage_server.endpoint)
    proxy = FreezableProxy(outage_server.port)
    try:
        remote = open_backend(f"s3://{bucket}/r", options_for(proxy.endpoint))
        remote.put_bytes("packs/a.pack", b"before the freeze")
        (tmp_path / "f").write_bytes(b"data")

        proxy.frozen.set()
        started = time.monotonic()
        with pytest.raises(RemoteTimeoutError) as first:
            remote.get_bytes("packs/a.pack")
        assert time.monotonic() - started < 10
        message = str(first.value)
        assert proxy.endpoint in message and "did not answer" in message and "timed out" in message
        calls: list[Callable[[], Any]] = [lambda: remote.put_bytes("packs/a.idx", b"index"),
                                          lambda: remote.put_file(tmp_path / "f", "packs/b.pack"),
                                          lambda: remote.exists("packs/a.pack"),
                                          lambda: remote.delete("locks/x.lock")]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(RemoteTimeoutError) as caught:
                call()
            assert time.monotonic() - started < 0.5
            assert str(caught.value) == message

        proxy.frozen.clear()
        monkeypatch.setattr(fsspec_, "STALL_HOLD_S", 0.0)  # the hold over: requests go out again
        assert remote.get_bytes("packs/a.pack") == b"before the freeze"  # the client survived the cancels
        remote.put_bytes("packs/a.idx", b"index")
        assert remote.get_bytes("packs/a.idx") == b"index"
    finally:
        proxy.close()


@pytest.mark.s3
def test_nothing_listening_is_unreachable(options_for: Callable[..., dict[str, Any]]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = open_backend("s3://bucket/r", options_for(f"http://127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(RemoteUnreachableError, match="s3://bucket/r"):
        remote.ensure_base()
    assert time.monotonic() - started < 15


def test_other_fsspec_protocols_work(tmp_path: Path) -> None:
    remote = open_backend(f"memory://mlvc-{time.time_ns()}/base")
    remote.ensure_base()
    (tmp_path / "f").write_bytes(b"payload")
    assert remote.put_file(tmp_path / "f", "packs/a.pack") is True
    assert remote.put_file(tmp_path / "f", "packs/a.pack") is False
    assert remote.list("packs/") == ["packs/a.pack"]
    assert remote.get_range("packs/a.pack", 1, 3) == b"ayl"
    remote.get_file("packs/a.pack", tmp_path / "g")
    assert (tmp_path / "g").read_bytes() == b"payload"
    with pytest.raises(ObjectNotFoundError):
        remote.get_bytes("packs/missing")


def test_describe_hides_credentials() -> None:
    remote = open_backend(f"s3://AKIA:{SECRET}@bucket/base?token={SECRET}",
                           {"secret_access_key": SECRET, "access_key_id": "AKIA"})
    assert remote.describe() == "s3://bucket/base"
    assert SECRET not in repr(remote)


def test_a_lock_being_refreshed_never_looks_free(tmp_path: Path) -> None:
    """replace_if_unchanged on a directory is one rename: a concurrent reader (a push looking for
    gc's lock) sees the old or the new object, never none.  (It was unlink + create: a push could
    slip through while gc refreshed its lease, and rely on packs gc then deleted.)"""
    import threading

    remote = open_backend(str(tmp_path / "r"))
    remote.ensure_base()
    tag = remote.create_bytes("locks/gc.lock", b"0")
    stop = threading.Event()
    seen_missing = []

    def reader() -> None:
        while not stop.is_set():
            if not remote.exists("locks/gc.lock"):
                seen_missing.append(True)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(300):
            tag = remote.replace_if_unchanged("locks/gc.lock", str(i).encode(), tag)
            assert tag is not None
    finally:
        stop.set()
        t.join()
    assert seen_missing == []


def test_a_guard_left_by_a_killed_process_of_this_machine_is_broken_at_once(tmp_path: Path) -> None:
    """A directory remote's guard (held for milliseconds around a check-then-delete) left by a
    process killed inside it: the re-run takes it over at once instead of failing for 30 s."""
    import subprocess
    import sys

    from mlvc.store.backend import host_tag

    backend = local_module.LocalBackend(str(tmp_path / "remote"))
    backend.ensure_base()
    tag = backend.create_bytes("locks/gc.lock", b"v1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    guard = backend._path("locks/gc.lock") + TEMP_MARKER + "guard"
    Path(guard).write_text(f"{host_tag()} {dead.pid}")
    started = time.monotonic()
    assert backend.replace_if_unchanged("locks/gc.lock", b"v2", tag) is not None
    assert time.monotonic() - started < 5
    assert backend.get_tagged("locks/gc.lock")[0] == b"v2" and not Path(guard).exists()
    # a guard of a running process is respected (judged by its age: fresh here)
    Path(guard).write_text(f"{host_tag()} {os.getpid()}")
    with pytest.raises(LockedError):
        backend.replace_if_unchanged("locks/gc.lock", b"v3", backend.get_tagged("locks/gc.lock")[1])
