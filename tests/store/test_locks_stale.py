"""A killed `gc --remote` (or push) never blocks gc and push for an hour.

A lock written by a process of this machine that is gone is broken at once; a lock from another
machine expires as before, or is removed by `mlvc remote unlock NAME`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlvc.errors import EXIT_LOCKED, LockedError
from mlvc.store.backend import Backend, open_backend
from mlvc.store.locks import (DEFAULT_LOCK_NAME, PUSH_LOCK_PREFIX, LockInfo, RemoteLock, active_locks,
                              machine_id, process_start)

from helpers import cli, cli_proc, commit, ok, write
from remote.helpers import add_remote, make_repo, rand_bytes


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _put(backend: Backend, key: str, *, pid: int, machine: str, started: str = "") -> None:
    now = time.time()
    info = LockInfo(owner="mlvc gc (someone)", host="h", pid=pid, created=now, expires=now + 3600,
                    token="t" * 32, machine=machine, started=started)
    assert backend.create_bytes(key, info.to_json()) is not None


def test_lock_of_a_dead_process_of_this_machine_is_broken(tmp_path: Path) -> None:
    backend = open_backend(str(tmp_path / "remote"), {})
    backend.ensure_base()
    _put(backend, DEFAULT_LOCK_NAME, pid=_dead_pid(), machine=machine_id())
    lock = RemoteLock(backend)
    lock.acquire()
    assert lock.broken is not None and lock.held_by().pid == os.getpid()
    lock.release()
    # a pid that is alive again but belongs to a later process (pid reuse) is just as dead
    _put(backend, DEFAULT_LOCK_NAME, pid=os.getpid(), machine=machine_id(), started="1")
    assert process_start(os.getpid()) not in ("", "1")
    lock = RemoteLock(backend)
    lock.acquire()
    lock.release()


def test_live_or_foreign_locks_still_hold(tmp_path: Path) -> None:
    backend = open_backend(str(tmp_path / "remote"), {})
    backend.ensure_base()
    _put(backend, DEFAULT_LOCK_NAME, pid=os.getpid(), machine=machine_id(), started=process_start(os.getpid()))
    with pytest.raises(LockedError):
        RemoteLock(backend).acquire()
    # another machine (or an old lock without a machine id): only expiry or a person breaks it
    key = f"{PUSH_LOCK_PREFIX}other-1-{'0' * 32}.lock"
    _put(backend, key, pid=_dead_pid(), machine="elsewhere|boot|pid:[1]")
    assert [lock.key for lock in active_locks(backend)] == [key]


def _project(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "work")
    add_remote(repo, (str(tmp_path / "remote"), {}))
    for version in range(3):
        for i in range(40):
            write(repo / "data" / f"{i}.bin", rand_bytes(200_000, version * 100 + i))
        ok(repo, "add", "-q", "data")
        commit(repo, f"v{version}")
        ok(repo, "push", "-q")
    return repo


def test_killed_gc_remote_does_not_block_the_next_gc_or_push(tmp_path: Path) -> None:
    repo = _project(tmp_path)
    lock_file = tmp_path / "remote" / DEFAULT_LOCK_NAME
    killed_holding = 0
    for _attempt in range(5):
        proc = cli_proc(repo, "gc", "--remote", "origin", "--workspace", "--grace", "0",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while proc.poll() is None and not lock_file.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if lock_file.exists():
            killed_holding += 1
            break
        # it finished before we saw its lock: give it more to collect and try again
        for i in range(40):
            write(repo / "data" / f"{i}.bin", rand_bytes(200_000, 1000 + _attempt * 100 + i))
        ok(repo, "add", "-q", "data")
        commit(repo, "more")
        ok(repo, "push", "-q")
    assert killed_holding, "gc never seen holding its lock"
    write(repo / "data" / "new.bin", rand_bytes(50_000, 99))
    ok(repo, "add", "-q", "data")
    commit(repo, "after the kill")
    ok(repo, "push", "-q")  # no exit 13
    code, _out, err = cli(repo, "gc", "--remote", "origin", "--workspace", "--grace", "0")
    assert code == 0, err
    assert "took over the gc lock" in err and "process is gone" in err
    assert not lock_file.exists()
    ok(repo, "verify", "-q")


def test_remote_unlock_removes_a_lock_from_another_machine(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "work")
    add_remote(repo, (str(tmp_path / "remote"), {}))
    write(repo / "m.bin", b"x" * 1000)
    ok(repo, "add", "-q", "m.bin")
    commit(repo, "v1")
    ok(repo, "push", "-q")
    backend = open_backend(str(tmp_path / "remote"), {})
    _put(backend, DEFAULT_LOCK_NAME, pid=4242, machine="other-host|boot|pid:[1]")
    code, _out, err = cli(repo, "gc", "--remote", "origin", "--workspace")
    assert code == EXIT_LOCKED and "mlvc remote unlock" in err, err
    out = ok(repo, "remote", "unlock", "origin")
    assert "removed locks/gc.lock" in out and "pid 4242" in out
    ok(repo, "gc", "--remote", "origin", "--workspace", "-q")
    # a lock held by a running process of this machine is not removed without --force
    _put(backend, DEFAULT_LOCK_NAME, pid=os.getpid(), machine=machine_id(), started=process_start(os.getpid()))
    code, _out, err = cli(repo, "remote", "unlock", "origin")
    assert code == EXIT_LOCKED, err
    ok(repo, "remote", "unlock", "origin", "--force", "-q")
    assert not (tmp_path / "remote" / DEFAULT_LOCK_NAME).exists()
