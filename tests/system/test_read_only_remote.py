"""A remote that refuses writes: a directory remote on a read-only bind mount (root ignores file
modes, so chmod would prove nothing), and an S3 remote reached with read-only credentials (an
IAM policy that allows only reads, enforced by the moto server).

Reads still work (pull, fetch, status --remote, verify --remote); writes (push, gc --remote) stop
with one error line and their documented code, having changed nothing; with write access the
plain re-run completes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import cli, commit, ok, one_error, write

from mlvc.errors import EXIT_DISK, EXIT_REMOTE

from remote.helpers import add_remote, clone, make_repo, rand_bytes, remote_packs, snapshot


def two_versions(tmp_path: Path, spec) -> tuple[Path, dict[str, bytes]]:
    """A repository that pushed v1 of `d/`, then committed v2 without pushing it."""
    repo = make_repo(tmp_path / "work")
    add_remote(repo, spec)
    write(repo / "d" / "a.bin", rand_bytes(300_000, 1))
    write(repo / "d" / "b.bin", rand_bytes(100_000, 2))
    ok(repo, "add", "-q", "d")
    commit(repo, "v1")
    ok(repo, "push", "-q")
    v1 = snapshot(repo, "d")
    write(repo / "d" / "b.bin", rand_bytes(120_000, 3))
    ok(repo, "add", "-q", "d")
    commit(repo, "v2")
    return repo, v1


def refused(repo: Path, code: int, *args: str) -> str:
    got, out, err = cli(repo, *args)
    assert got == code, (args, got, out, err)
    return one_error(err)


def reads_still_work(repo: Path, tmp_path: Path, v1: dict[str, bytes]) -> None:
    reader = clone(repo, tmp_path / "reader")
    subprocess.run(["git", "checkout", "-q", "HEAD~1"], cwd=reader, check=True)
    ok(reader, "pull", "-q")
    assert snapshot(reader, "d") == v1
    ok(reader, "verify", "--remote", "origin", "-q")


@pytest.fixture
def read_only_bind(tmp_path: Path):
    """`make(path)` bind-mounts `path` read-only over itself; returns `writable()` to undo it."""
    mounted: list[Path] = []

    def make(path: Path):
        for args in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,ro,bind", str(path)]):
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.fail(f"cannot make a read-only bind mount here ({proc.stderr.strip()}): this test needs "
                            "root with CAP_SYS_ADMIN")
        mounted.append(path)

        def writable() -> None:
            subprocess.run(["umount", str(path)], check=True)
            mounted.remove(path)

        return writable

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_directory_remote_on_a_read_only_mount(tmp_path: Path, local_url, read_only_bind) -> None:
    repo, v1 = two_versions(tmp_path, local_url)
    remote_dir = Path(local_url[0])
    before = remote_packs(local_url)
    writable = read_only_bind(remote_dir)
    line = refused(repo, EXIT_DISK, "push")
    assert str(remote_dir) in line and "read-only" in line.lower(), line
    line = refused(repo, EXIT_DISK, "gc", "--remote", "origin", "--all-commits", "--grace", "0")
    assert str(remote_dir) in line, line
    assert remote_packs(local_url) == before  # nothing changed
    reads_still_work(repo, tmp_path, v1)
    status = json.loads(ok(repo, "status", "--remote", "--json"))
    assert status[0]["not_on_remote"] > 0, status  # v2 is not there, and status can tell
    writable()
    ok(repo, "push", "-q")  # the plain re-run
    ok(repo, "verify", "--remote", "origin", "--read-data", "-q")
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert snapshot(fresh, "d") == snapshot(repo, "d")


def test_directory_remote_whose_packs_cannot_be_written_names_the_remote_once(tmp_path: Path, local_url) -> None:
    """Locks can be taken, packs not (an immutable `packs/`, EPERM even for root): the error names
    the file on the remote, once, not the local temp pack it was published from."""
    repo, _v1 = two_versions(tmp_path, local_url)
    packs = Path(local_url[0]) / "packs"
    subprocess.run(["chattr", "+i", str(packs)], check=True)
    try:
        line = refused(repo, EXIT_DISK, "push")
    finally:
        subprocess.run(["chattr", "-i", str(packs)], check=True)
    assert line.count("cannot write") == 1 and f"{packs}/" in line, line
    assert ".mlvc" not in line and "Operation not permitted" in line, line
    ok(repo, "push", "-q")


READ_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject",
                                                  "s3:GetBucketLocation", "s3:HeadBucket"],
                   "Resource": "*"}],
}


@pytest.mark.s3
def test_s3_remote_with_read_only_credentials(tmp_path: Path, s3_url, monkeypatch) -> None:
    import boto3
    from moto import settings

    url, options = s3_url
    repo, v1 = two_versions(tmp_path, s3_url)
    iam = boto3.client("iam", endpoint_url=options["endpoint_url"], region_name="us-east-1")
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(READ_ONLY_POLICY))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    before = remote_packs(s3_url)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now enforces IAM
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    line = refused(repo, EXIT_REMOTE, "push")
    assert "denied" in line.lower() or "credentials" in line.lower() or "permission" in line.lower(), line
    refused(repo, EXIT_REMOTE, "gc", "--remote", "origin", "--all-commits", "--grace", "0")
    reads_still_work(repo, tmp_path, v1)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    assert remote_packs(s3_url) == before  # nothing changed
    ok(repo, "push", "-q")  # with write access again: the plain re-run
    ok(repo, "verify", "--remote", "origin", "--read-data", "-q")
    fresh = clone(repo, tmp_path / "fresh")
    ok(fresh, "pull", "-q")
    assert snapshot(fresh, "d") == snapshot(repo, "d")
