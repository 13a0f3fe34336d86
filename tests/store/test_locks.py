"""RemoteLock against a directory remote and a moto S3 remote."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from mlvc.errors import LockedError
from mlvc.store.backend import Backend
from mlvc.store.locks import DEFAULT_LOCK_NAME, LockInfo, RemoteLock

LOCK_WORKER = """
from mlvc.errors import LockedError
from mlvc.store.backend import open_backend
from mlvc.store.locks import RemoteLock
backend = open_backend(SPEC["url"], SPEC["options"])
backend.exists("warm/up")  # connect before the start signal
lock = RemoteLock(backend, owner=SPEC["owner"], ttl_s=600)
wait_for_start()
try:
    lock.acquire()
    print("won", flush=True)  # and keep it: a release could let a slower starter win too
except LockedError:
    print("locked", flush=True)
wait_for_all_to_finish()  # exiting would abandon the lock, which a slower starter may break
"""


def test_acquire_release(remote: Backend) -> None:
    lock = RemoteLock(remote, owner="alice", ttl_s=60)
    assert lock.held_by() is None
    info = lock.acquire()
    assert lock.held
    assert info.owner == "alice"
    assert info.expires == pytest.approx(info.created + 60)
    assert lock.held_by() == info
    assert remote.exists(DEFAULT_LOCK_NAME)
    assert lock.release() is True
    assert not lock.held
    assert lock.held_by() is None
    assert lock.release() is False  # releasing twice is harmless
    lock.acquire()  # and it can be taken again
    lock.release()


def test_second_acquirer_gets_locked_error_naming_the_owner(remote: Backend) -> None:
    first = RemoteLock(remote, owner="alice@gpu-box", ttl_s=60)
    first.acquire()
    second = RemoteLock(remote, owner="bob", ttl_s=60)
    with pytest.raises(LockedError) as caught:
        second.acquire()
    message = str(caught.value)
    assert "alice@gpu-box" in message
    assert "expires" in message and "UTC" in message
    assert remote.describe() in message
    assert caught.value.hint
    assert first.held_by().owner == "alice@gpu-box"  # the failed attempt changed nothing
    with pytest.raises(LockedError):
        first.acquire()  # not re-entrant either
    first.release()
    second.acquire()
    second.release()


def test_expired_lock_is_broken_and_the_old_holder_cannot_release_it(remote: Backend) -> None:
    crashed = RemoteLock(remote, owner="crashed", ttl_s=0.2)
    crashed.acquire()
    time.sleep(0.3)
    assert crashed.held_by().is_expired()
    successor = RemoteLock(remote, owner="successor", ttl_s=60)
    successor.acquire()
    assert successor.held_by().owner == "successor"
    with pytest.raises(LockedError, match="successor"):
        crashed.refresh()
    assert crashed.release() is False  # no longer ours: the successor's lock stays
    assert successor.held_by().owner == "successor"
    assert successor.release() is True


def test_refresh_extends_the_lease(remote: Backend) -> None:
    lock = RemoteLock(remote, owner="long-gc", ttl_s=3.0)  # leases of seconds: a loaded CI machine stalls
    first = lock.acquire()
    time.sleep(1.8)
    renewed = lock.refresh()
    assert renewed.expires > first.expires
    assert renewed.token == first.token
    time.sleep(max(0.0, first.expires - time.time() + 0.2))  # past the first expiry, within the renewed one
    assert time.time() < renewed.expires
    with pytest.raises(LockedError):
        RemoteLock(remote, owner="other", ttl_s=60).acquire()
    assert lock.release() is True


def test_context_manager_releases_even_on_error(remote: Backend) -> None:
    with RemoteLock(remote, owner="ctx") as lock:
        assert lock.held
        assert remote.exists(DEFAULT_LOCK_NAME)
    assert not remote.exists(DEFAULT_LOCK_NAME)
    with pytest.raises(RuntimeError), RemoteLock(remote, owner="ctx"):
        raise RuntimeError("gc failed")
    assert not remote.exists(DEFAULT_LOCK_NAME)


def test_unreadable_lock_is_never_broken(remote: Backend) -> None:
    remote.put_bytes(DEFAULT_LOCK_NAME, b"not json")
    with pytest.raises(LockedError) as caught:
        RemoteLock(remote, owner="x", ttl_s=1).acquire()
    assert "unreadable" in str(caught.value)
    assert DEFAULT_LOCK_NAME in (caught.value.hint or "")


def test_custom_name_and_json_content(remote: Backend) -> None:
    with RemoteLock(remote, name="locks/other.lock", owner="me", ttl_s=10):
        info = LockInfo.from_json(remote.get_bytes("locks/other.lock"))
        assert info is not None and info.owner == "me"
        assert {"owner", "host", "pid", "created", "expires"} <= set(json.loads(remote.get_bytes("locks/other.lock")))
        RemoteLock(remote, owner="gc").acquire()  # a different lock name is independent


@pytest.mark.parametrize("preexisting", ["none", "expired"])
def test_racing_processes_exactly_one_wins(remote: Backend, remote_spec: tuple[str, dict[str, Any]],
                                           spawn_workers: Callable[..., list[str]], preexisting: str) -> None:
    if preexisting == "expired":
        RemoteLock(remote, owner="crashed", ttl_s=0.01).acquire()
        time.sleep(0.05)
    specs = [{"url": remote_spec[0], "options": remote_spec[1], "owner": f"worker-{i}"} for i in range(3)]
    outcomes = spawn_workers(LOCK_WORKER, specs)
    assert sorted(outcomes) == ["locked"] * 2 + ["won"]
    winner = specs[outcomes.index("won")]["owner"]
    assert RemoteLock(remote).held_by().owner == winner
