"""The S3 server dies mid-push and mid-pull, then comes back: the commands stop with one error
line (exit 9) within seconds, the cache and the remote verify clean, and the plain re-run
completes byte-exact.  SeaweedFS is killed for real (`kill -9` of `weed mini`, restarted on its
data directory); moto's server is stopped and restarted on the same port.  Both run through
the real CLI in a child process.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cli_proc, commit, ok, one_error, write
from servers import DUMMY_KEY, DUMMY_SECRET, REGION, MotoServer, SeaweedServer

from mlvc.errors import EXIT_REMOTE

from remote.helpers import add_remote, clone, make_repo, rand_bytes, set_core, snapshot

pytestmark = pytest.mark.s3

FILES = 12
FILE_BYTES = 250_000


class Restartable:
    """One S3 server a test may kill and start again, keeping its data."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.server = MotoServer() if kind == "moto" else SeaweedServer(tmp_path / "weed")

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        if self.kind == "moto":
            self.server.stop()
        else:
            self.server.process.send_signal(signal.SIGKILL)
            self.server.process.wait()
            self.server.process = None
            self.server.log.close()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(params=["moto", pytest.param("seaweedfs", marks=pytest.mark.slow)])
def server(request, tmp_path: Path) -> Iterator[Restartable]:
    s = Restartable(request.param, tmp_path)
    s.start()
    yield s
    s.stop()


def client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=DUMMY_KEY,
                        aws_secret_access_key=DUMMY_SECRET,
                        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))


def packs_on(s3, bucket: str) -> int:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="r/packs/")
    return sum(item["Key"].endswith(".pack") for item in listing.get("Contents", []))


def kill_when(server: Restartable, proc, ready, what: str) -> float:
    """Kill the server once `ready()`, while `proc` still runs; seconds `proc` took to exit after."""
    deadline = time.monotonic() + 60
    while not ready():
        assert proc.poll() is None, f"the {what} finished before the server could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, f"the {what} never got going"
        time.sleep(0.01)
    server.kill()
    killed = time.monotonic()
    proc.communicate(timeout=120)
    return time.monotonic() - killed


def test_server_killed_mid_push_and_mid_pull(tmp_path: Path, server: Restartable) -> None:
    s3 = client(server.endpoint)
    bucket = f"restart-{server.kind}"
    s3.create_bucket(Bucket=bucket)
    spec = (f"s3://{bucket}/r", {"endpoint_url": server.endpoint, "region": REGION})
    repo = make_repo(tmp_path / "work")
    add_remote(repo, spec)
    set_core(repo, "remote_pack_size", 128 * 1024)  # ~24 packs, one at a time: the kill lands mid-push
    for i in range(FILES):
        write(repo / "d" / f"{i}.bin", rand_bytes(FILE_BYTES, 10 + i))
    ok(repo, "add", "-q", "d")
    commit(repo)

    push = cli_proc(repo, "push", "--jobs", "1")
    seconds = kill_when(server, push, lambda: packs_on(s3, bucket) >= 2, "push")
    _, err = push.communicate()
    assert push.returncode == EXIT_REMOTE, err
    assert server.endpoint in one_error(err)
    assert seconds < 30, f"push took {seconds:.0f} s to notice the server was gone"
    print(f"{server.kind}: push exited {seconds:.1f} s after the kill")
    ok(repo, "verify", "-q")
    server.start()
    ok(repo, "verify", "--remote", "origin", "-q")  # what the killed push left is consistent
    ok(repo, "push", "-q")  # the plain re-run
    ok(repo, "verify", "--remote", "origin", "--read-data", "-q")

    fresh = clone(repo, tmp_path / "fresh")
    cache_packs = fresh / ".mlvc" / "cache" / "packs"
    pull = cli_proc(fresh, "pull", "--jobs", "1")
    seconds = kill_when(server, pull, lambda: cache_packs.is_dir() and len(list(cache_packs.iterdir())) >= 2, "pull")
    _, err = pull.communicate()
    assert pull.returncode == EXIT_REMOTE, err
    assert server.endpoint in one_error(err)
    assert seconds < 30, f"pull took {seconds:.0f} s to notice the server was gone"
    print(f"{server.kind}: pull exited {seconds:.1f} s after the kill")
    assert not (fresh / "d").exists()  # an artifact is restored whole or not at all
    ok(fresh, "verify", "-q")
    server.start()
    ok(fresh, "pull", "-q")  # the plain re-run
    assert snapshot(fresh, "d") == snapshot(repo, "d")
    ok(fresh, "verify", "-q")
    ok(fresh, "verify", "--remote", "origin", "--read-data", "-q")
