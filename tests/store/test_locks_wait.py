"""`--wait-lock SECONDS` for `mlvc push` and `mlvc gc --remote`: wait for the other side's lock
(one message on stderr) instead of failing at once with exit 13; without it, exit 13 as before.

Real processes and real lock objects on a directory remote: the test plants a lock held by
itself (a live process of this machine, so it is neither expired nor abandoned) and releases it
about a second after `mlvc`, a subprocess, says that it waits.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mlvc.errors import EXIT_LOCKED
from mlvc.store.backend import open_backend
from mlvc.store.locks import DEFAULT_LOCK_NAME, RemoteLock, SharedLock, list_locks

from helpers import cli, cli_proc, commit, ok, write
from remote.helpers import add_remote, age_journal, clone, make_repo, rand_bytes, snapshot

GC_ARGS = ("gc", "--remote", "origin", "--all-commits", "--grace", "0")


def _world(tmp_path: Path):
    """`first` pushed base/; `pusher` (a clone) adds set0/, which reuses all of base's objects,
    so a push of it relies on the remote and must not run beside a gc."""
    spec = (str(tmp_path / "remote"), {})
    origin = make_repo(tmp_path / "origin")
    add_remote(origin, spec)
    write(origin / "README", b"project\n")
    commit(origin, "init")
    first = clone(origin, tmp_path / "first")
    pusher = clone(origin, tmp_path / "pusher")
    for root, name in ((first, "base"), (pusher, "set0")):
        for i in range(3):
            write(root / name / f"f{i}.bin", rand_bytes(200_000, 100 + i))
    write(pusher / "set0" / "new.bin", rand_bytes(300_000, 1))
    ok(first, "add", "-q", "base")
    commit(first, "base")
    ok(first, "push", "-q")
    age_journal(spec)  # no clone fetches `first`'s commit: kept only until the journal's retention
    ok(pusher, "add", "-q", "set0")
    return origin, first, pusher, open_backend(*spec)


def _run_and_release(cwd: Path, args: tuple[str, ...], lock, delay: float = 1.0) -> tuple[int, str, float]:
    """Run `mlvc ARGS` while `lock` is held; release it `delay` s after the command says it waits.
    Returns (exit code, stderr, seconds from its message to its exit)."""
    proc = cli_proc(cwd, *args)
    lines: list[str] = []
    seen_wait = None
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("waiting:") and seen_wait is None:
            seen_wait = time.monotonic()
            threading.Timer(delay, lock.release).start()
    proc.wait(timeout=60)
    took = time.monotonic() - seen_wait if seen_wait is not None else 0.0
    return proc.returncode, "".join(lines), took


def _run(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = cli_proc(cwd, *args)
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err, time.monotonic() - start


def test_push_waits_for_a_gc_lock_released_after_a_second(tmp_path: Path) -> None:
    origin, _first, pusher, backend = _world(tmp_path)
    gc_lock = RemoteLock(backend, owner="bob-gc", ttl_s=600)
    gc_lock.acquire()
    try:
        code, _out, err = cli(pusher, "push", "-q", "set0")  # without --wait-lock: at once, exit 13
        assert code == EXIT_LOCKED, err
        assert "bob-gc" in err
        code, err, took = _run_and_release(pusher, ("push", "--wait-lock", "30", "set0"), gc_lock)
    finally:
        gc_lock.release()
    assert code == 0, err
    assert took >= 0.9
    waits = [line for line in err.splitlines() if line.startswith("waiting:")]
    assert len(waits) == 1, err  # one message, not one per poll
    assert "bob-gc" in waits[0] and "--wait-lock" in waits[0]
    assert list_locks(backend) == []  # its push lock is gone
    fresh = clone(origin, tmp_path / "check")
    (fresh / "set0.mlvc").write_bytes((pusher / "set0.mlvc").read_bytes())
    ok(fresh, "pull", "-q", "set0")
    assert snapshot(fresh, "set0") == snapshot(pusher, "set0")


def test_push_gives_up_when_the_wait_runs_out(tmp_path: Path) -> None:
    _origin, _first, pusher, backend = _world(tmp_path)
    before = backend.list("packs/")
    with RemoteLock(backend, owner="bob-gc", ttl_s=600):
        code, err, took = _run(pusher, "push", "--wait-lock", "1", "set0")
        assert code == EXIT_LOCKED, err
        assert 0.9 <= took < 20
        assert err.count("waiting:") == 1 and "nothing was uploaded" in err
        code, err, _took = _run(pusher, "push", "-q", "--wait-lock", "0.5", "set0")
        assert code == EXIT_LOCKED and "waiting:" not in err  # --quiet: no message, still the error
    assert backend.list("packs/") == before
    assert list_locks(backend) == []


def test_gc_remote_waits_for_another_gc_and_for_a_push(tmp_path: Path) -> None:
    _origin, first, _pusher, backend = _world(tmp_path)
    gc_clone = clone(tmp_path / "origin", tmp_path / "gc-machine")  # keeps nothing: base is garbage
    other_gc = RemoteLock(backend, owner="other-gc", ttl_s=600)
    other_gc.acquire()
    try:
        code, _out, err = cli(gc_clone, *GC_ARGS)
        assert code == EXIT_LOCKED and "other-gc" in err
        code, err, took = _run_and_release(gc_clone, (*GC_ARGS, "--wait-lock", "30"), other_gc)
    finally:
        other_gc.release()
    assert code == 0, err
    assert took >= 0.9 and err.count("waiting:") == 1 and "other-gc" in err
    assert backend.list("packs/") == []
    assert not backend.exists(DEFAULT_LOCK_NAME)

    # a push in progress (its shared lock): gc waits for it instead of giving up
    write(first / "more.bin", rand_bytes(100_000, 5))
    ok(first, "add", "-q", "more.bin")
    ok(first, "push", "-q", "more.bin")
    age_journal(backend)
    push_lock = SharedLock(backend, owner="alice-pusher", ttl_s=600)
    push_lock.acquire()
    try:
        code, _out, err = cli(gc_clone, *GC_ARGS)
        assert code == EXIT_LOCKED and "alice-pusher" in err
        code, err, took = _run_and_release(gc_clone, (*GC_ARGS, "--wait-lock", "30"), push_lock)
    finally:
        push_lock.release()
    assert code == 0, err
    assert took >= 0.9 and err.count("waiting:") == 1 and "alice-pusher" in err
    assert backend.list("packs/") == []
    assert list_locks(backend) == []
