"""A server that stops answering: the network path to a real moto server goes through a TCP
proxy that, once frozen, accepts connections and never replies, and stalls the ones already
open (a partition, a hung load balancer).  Frozen mid-push, `mlvc push` must say that it is
waiting within seconds (no silent hang), give up with one error line and exit 9 within a bounded
time, and the plain re-run completes once the path is back.  Through the real CLI only.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import cli_proc, commit, ok, one_error, write
from servers import REGION, FreezableProxy

from mlvc.errors import EXIT_REMOTE

from remote.helpers import add_remote, clone, make_repo, rand_bytes, set_core, snapshot

pytestmark = pytest.mark.s3

FIRST_MESSAGE_WITHIN_S = 30  # something on stderr while it waits
GIVE_UP_WITHIN_S = 150  # the issue saw 3-minute silent hangs


def read_stderr(proc) -> list[tuple[float, str]]:
    lines: list[tuple[float, str]] = []

    def reader() -> None:
        for line in proc.stderr:
            lines.append((time.monotonic(), line.rstrip("\n")))

    threading.Thread(target=reader, daemon=True).start()
    return lines


def test_server_that_stops_answering_mid_push(tmp_path: Path, outage_server, make_bucket) -> None:
    import boto3

    bucket = make_bucket(outage_server.endpoint)
    proxy = FreezableProxy(outage_server.port)
    try:
        repo = make_repo(tmp_path / "work")
        add_remote(repo, (f"s3://{bucket}/r", {"endpoint_url": proxy.endpoint, "region": REGION}))
        set_core(repo, "remote_pack_size", 128 * 1024)
        for i in range(12):
            write(repo / "d" / f"{i}.bin", rand_bytes(250_000, 30 + i))
        ok(repo, "add", "-q", "d")
        commit(repo)
        direct = boto3.client("s3", endpoint_url=outage_server.endpoint, region_name=REGION)

        def packs() -> int:
            listing = direct.list_objects_v2(Bucket=bucket, Prefix="r/packs/")
            return sum(item["Key"].endswith(".pack") for item in listing.get("Contents", []))

        push = cli_proc(repo, "push", "--jobs", "1")
        lines = read_stderr(push)
        deadline = time.monotonic() + 60
        while packs() < 2:
            assert push.poll() is None, "the push finished before the server went silent"
            assert time.monotonic() < deadline, "the push never got going"
            time.sleep(0.01)
        proxy.frozen.set()
        frozen_at = time.monotonic()
        try:
            push.wait(timeout=GIVE_UP_WITHIN_S)
        except Exception:
            push.kill()
            push.wait()
            pytest.fail(f"push still silent-hung {GIVE_UP_WITHIN_S} s after the server stopped answering; "
                        f"stderr: {lines}")
        took = time.monotonic() - frozen_at
        time.sleep(0.2)  # the reader thread has the last lines
        err = "\n".join(line for _, line in lines)
        first = min((t for t, _ in lines if t >= frozen_at), default=None)
        assert first is not None and first - frozen_at < FIRST_MESSAGE_WITHIN_S, (
            f"nothing on stderr for {FIRST_MESSAGE_WITHIN_S} s while waiting on a silent server "
            f"(exit after {took:.0f} s): {err}")
        assert push.returncode == EXIT_REMOTE, err
        line = one_error(err)
        assert proxy.endpoint in line and ("timed out" in line or "timeout" in line or "not answer" in line), line
        print(f"gave up {took:.1f} s after the server went silent; first message after {first - frozen_at:.1f} s")

        proxy.frozen.clear()
        ok(repo, "push", "-q")  # the plain re-run
        ok(repo, "verify", "--remote", "origin", "--read-data", "-q")
        fresh = clone(repo, tmp_path / "fresh")
        ok(fresh, "pull", "-q")
        assert snapshot(fresh, "d") == snapshot(repo, "d")
    finally:
        proxy.close()
