"""Concurrent `mlvc push` and `mlvc gc --remote`: pushers hold shared locks, gc an exclusive one.

Both sides create their own lock object first and look for the other's second,
so of two racing operations at least one sees the other and stops with exit 13
before anything is deleted or uploaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlvc.errors import EXIT_LOCKED, LockedError
from mlvc.store.backend import Backend, open_backend
from mlvc.store.locks import (
    DEFAULT_LOCK_NAME,
    PUSH_LOCK_PREFIX,
    LockInfo,
    RemoteLock,
    SharedLock,
    active_locks,
    list_locks,
)

from helpers import cli, commit, ok, write
from remote.helpers import add_remote, age_journal, clone, make_repo, rand_bytes, snapshot

BASE_FILES = {f"f{i}.bin": (200_000, 100 + i) for i in range(3)}
GC_ARGS = ("gc", "--remote", "origin", "--all-commits", "--grace", "0")


def write_base(root: Path, rel: str) -> None:
    for name, (size, seed) in BASE_FILES.items():
        write(root / rel / name, rand_bytes(size, seed))


@pytest.fixture
def world(tmp_path: Path, remote_spec):
    """origin (remote configured, nothing tracked); A pushed `base/`; G, a clone that never saw
    `base/` (its gc deems every object garbage); B, a clone whose new artifacts reuse base's objects."""
    origin = make_repo(tmp_path / "origin")
    add_remote(origin, remote_spec)
    write(origin / "README", b"project\n")
    commit(origin, "init")
    gc_clone = clone(origin, tmp_path / "gc-machine")
    pusher = clone(origin, tmp_path / "push-machine")
    first = clone(origin, tmp_path / "first-machine")
    write_base(first, "base")
    ok(first, "add", "-q", "base")
    commit(first, "base")
    ok(first, "push", "-q")
    backend = open_backend(*remote_spec)
    age_journal(backend)  # G never fetches `first`'s commit: kept only until the journal's retention
    return {"origin": origin, "gc": gc_clone, "pusher": pusher, "first": first, "backend": backend,
            "tmp": tmp_path}


def new_artifact(pusher: Path, name: str, seed: int, new_bytes: int = 300_000) -> None:
    """A directory that reuses every object of `base/` plus one new file."""
    write_base(pusher, name)
    write(pusher / name / "new.bin", rand_bytes(new_bytes, seed))
    ok(pusher, "add", "-q", name)


def remote_packs(backend: Backend) -> list[str]:
    return backend.list("packs/")


def pull_matches(origin: Path, pusher: Path, name: str, dest: Path) -> tuple[int, str]:
    fresh = clone(origin, dest)
    (fresh / f"{name}.mlvc").write_bytes((pusher / f"{name}.mlvc").read_bytes())
    code, _out, err = cli(fresh, "pull", "-q", name)
    if code == 0:
        assert snapshot(fresh, name) == snapshot(pusher, name)
    return code, err


def put_lock(backend: Backend, key: str, owner: str, expires_in: float) -> None:
    now = time.time()
    info = LockInfo(owner=owner, host="deadhost", pid=999_999, created=now - 7200, expires=now + expires_in,
                    token="t" * 32)
    assert backend.create_bytes(key, info.to_json()) is not None


# ---------------------------------------------------------------------- (1) gc vs a running push


def test_gc_refuses_while_a_push_holds_its_lock(world) -> None:
    backend, gc_clone = world["backend"], world["gc"]
    before = remote_packs(backend)
    push_lock = SharedLock(backend, owner="alice-pusher", ttl_s=600)
    push_lock.acquire()
    try:
        assert push_lock.name.startswith(PUSH_LOCK_PREFIX) and push_lock.name.endswith(".lock")
        assert [lock.info.owner for lock in active_locks(backend)] == ["alice-pusher"]
        code, _out, err = cli(gc_clone, *GC_ARGS)
        assert code == EXIT_LOCKED, err
        assert "alice-pusher" in err and "push" in err and "nothing was deleted" in err
        assert remote_packs(backend) == before
        assert not backend.exists(DEFAULT_LOCK_NAME)  # gc released its own lock
        # a dry run only warns
        code, _out, err = cli(gc_clone, *GC_ARGS, "--dry-run")
        assert code == 0 and "alice-pusher" in err
        assert remote_packs(backend) == before
    finally:
        assert push_lock.release()
    assert list_locks(backend) == []
    code, _out, err = cli(gc_clone, *GC_ARGS)  # the push is over: gc goes ahead
    assert code == 0, err
    assert remote_packs(backend) == []  # G references nothing


# ---------------------------------------------------------------------- (2) push vs a running gc


def test_push_relying_on_remote_objects_refuses_while_gc_holds_its_lock(world) -> None:
    backend, pusher = world["backend"], world["pusher"]
    new_artifact(pusher, "set0", seed=1)
    before = remote_packs(backend)
    gc_lock = RemoteLock(backend, owner="bob-gc", ttl_s=600)
    gc_lock.acquire()
    try:
        code, _out, err = cli(pusher, "push", "-q", "set0")
        assert code == EXIT_LOCKED, err
        assert "bob-gc" in err and "expires" in err and "UTC" in err and "nothing was uploaded" in err
        assert remote_packs(backend) == before
        assert list_locks(backend) == []  # its own push lock is gone again
        # an artifact that needs nothing already on the remote is safe to push meanwhile
        write(pusher / "fresh.bin", rand_bytes(50_000, 7))
        ok(pusher, "add", "-q", "fresh.bin")
        ok(pusher, "push", "-q", "fresh.bin")
    finally:
        assert gc_lock.release()
    ok(pusher, "push", "-q", "set0")
    code, err = pull_matches(world["origin"], pusher, "set0", world["tmp"] / "check")
    assert code == 0, err


# ---------------------------------------------------------------------- (3) killed processes


def test_expired_locks_of_killed_processes_are_ignored(world) -> None:
    backend, pusher, gc_clone = world["backend"], world["pusher"], world["gc"]
    dead_push = f"{PUSH_LOCK_PREFIX}deadhost-999999-{'0' * 32}.lock"
    put_lock(backend, dead_push, "killed-pusher", expires_in=-60)
    put_lock(backend, DEFAULT_LOCK_NAME, "killed-gc", expires_in=-60)
    assert active_locks(backend) == []
    new_artifact(pusher, "set0", seed=2)
    ok(pusher, "push", "-q", "set0")  # the dead gc's lock does not stop it
    code, err = pull_matches(world["origin"], pusher, "set0", world["tmp"] / "check")
    assert code == 0, err
    code, _out, err = cli(gc_clone, *GC_ARGS)  # takes over the dead gc lock, ignores the dead push lock
    assert code == 0, err
    assert remote_packs(backend) == []
    assert list_locks(backend) == []  # gc removed the expired push lock
    assert not backend.exists(DEFAULT_LOCK_NAME)


def test_shared_lock_lease(remote: Backend) -> None:
    # Held and renewed: a lease long enough that a slow server (a loaded CI machine took > 0.5 s
    # for one PUT) cannot let it run out between the calls.
    held = SharedLock(remote, owner="bob", ttl_s=30)
    held.acquire()
    held.check()
    first = held.refresh().expires
    assert held.refresh().expires >= first
    held.check(margin_s=10)
    with pytest.raises(LockedError):
        held.check(margin_s=60)  # judged by our clock: too close to running out to rely on
    assert held.release()
    lock = SharedLock(remote, owner="carol", ttl_s=0.5)
    lock.acquire()
    time.sleep(0.6)
    with pytest.raises(LockedError):
        lock.check()  # the lease ran out: a gc may have ignored it
    with pytest.raises(LockedError):
        lock.refresh()  # and it is never renewed after the fact
    assert [entry.info.owner for entry in list_locks(remote)] == ["carol"]
    assert active_locks(remote) == []
    kept = SharedLock(remote, owner="dave", ttl_s=2.0)
    kept.acquire()
    kept.keep_alive(interval_s=0.2)
    time.sleep(2.6)
    kept.check()  # refreshed in the background
    assert kept.release()
    assert [entry.info.owner for entry in list_locks(remote)] == ["carol"]


# ---------------------------------------------------------------------- (4) real processes racing

RACER = """
import contextlib, io, random
from mlvc.cli.main import run
import mlvc.ops.gc, mlvc.ops.push, mlvc.store.locks  # imports before the start signal
os.chdir(SPEC["cwd"])
random.seed(SPEC["seed"])

def cmd(args):
    out, err = io.StringIO(), io.StringIO()
    start = time.time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return {"code": code, "start": start, "end": time.time(), "err": err.getvalue()[-2000:]}

def files(root):
    found = {}
    for d, _dirs, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                found[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return found

def pull_in_fresh_clone():
    # A fresh clone pulls the artifact while this push still holds its lock, i.e. before any gc
    # may legitimately remove it again (the gc machine's refs never reference it, and grace is 0).
    name = SPEC["name"]
    from helpers import mlvc_cli

    r = mlvc_cli(SPEC["fresh"], "pull", "-q", name, timeout=60)
    same = r.code == 0 and files(os.path.join(SPEC["fresh"], name)) == files(name)
    return {"code": r.code, "err": r.err[-2000:], "identical": same}

def missing_on_remote(store, backend, artifacts):
    # what the push claims is on the remote, checked against a fresh listing the moment it returns
    import tempfile
    from pathlib import Path
    from mlvc.ops.common import reachable
    from mlvc.store.packstore import PackStore, Role
    with tempfile.TemporaryDirectory() as scratch:
        remote = PackStore(backend, role=Role.REMOTE, scratch=Path(scratch))
        missing = []
        for art in artifacts:
            for typ, oid in reachable(store, art.ptr):
                if not remote.has(typ, oid):
                    missing.append(f"{typ}:{oid.hex()}")
        remote.close()
        return missing

if SPEC["role"] == "push":
    state = {"complete": False, "verify": None}
    real_transfer = mlvc.ops.push.transfer
    real_release = mlvc.store.locks.SharedLock.release

    def transfer(cache, remote, artifacts, **kwargs):
        result = real_transfer(cache, remote, artifacts, **kwargs)
        state["complete"] = not result.failed
        if state["complete"]:
            state["missing"] = missing_on_remote(cache, remote.backend, artifacts)
        return result

    def release(self):
        if state["complete"] and state["verify"] is None:
            state["verify"] = pull_in_fresh_clone()
        return real_release(self)

    mlvc.ops.push.transfer = transfer
    mlvc.store.locks.SharedLock.release = release

wait_for_start()
runs = []
if SPEC["role"] == "push":
    time.sleep(random.uniform(0.05, 0.35))
    for _attempt in range(40):
        state["complete"] = False
        runs.append(cmd(["push", "-q", SPEC["name"]]))
        if runs[-1]["code"] == 0:
            runs[-1]["verify"] = state["verify"]
            runs[-1]["missing"] = state["missing"]
            break
        time.sleep(random.uniform(0.02, 0.1))
    open(SPEC["done"], "w").close()
else:
    for _ in range(SPEC["loops"]):
        if os.path.exists(SPEC["done"]):
            break
        runs.append(cmd(SPEC["gc_args"]))
print(json.dumps(runs))
"""


def test_racing_push_and_gc_processes_lose_nothing(world, spawn_workers) -> None:
    """`mlvc push` of artifacts that reuse remote objects the gc machine's refs do not reference,
    against a loop of `mlvc gc --remote --all-commits --grace 0`, as real processes: every push that
    succeeds is complete on the remote (a fresh clone pulls it byte-identically), and every failure
    is a clean exit 13."""
    backend, pusher, first = world["backend"], world["pusher"], world["first"]
    gc_ok = refused = 0
    for round_no in range(3):
        name = f"set{round_no}"
        new_artifact(pusher, name, seed=10 + round_no, new_bytes=2_000_000)
        ok(first, "push", "-q")  # base's objects are on the remote again (gc may have removed them)
        fresh = clone(world["origin"], world["tmp"] / f"check{round_no}")
        (fresh / f"{name}.mlvc").write_bytes((pusher / f"{name}.mlvc").read_bytes())
        common = {"done": str(world["tmp"] / f"done-{round_no}"), "fresh": str(fresh), "name": name,
                  "seed": round_no}
        outputs = spawn_workers(RACER, [
            {**common, "role": "push", "cwd": str(pusher)},
            {**common, "role": "gc", "cwd": str(world["gc"]), "loops": 4, "gc_args": list(GC_ARGS)},
        ], timeout_s=60)
        push_runs, gc_runs = (json.loads(out.splitlines()[-1]) for out in outputs)
        for run in push_runs + gc_runs:
            assert run["code"] in (0, EXIT_LOCKED), run
            if run["code"] == EXIT_LOCKED:
                assert "locks/" in run["err"] or "garbage-collected" in run["err"], run
                refused += 1
        gc_ok += sum(run["code"] == 0 for run in gc_runs)
        assert push_runs[-1]["code"] == 0, push_runs
        assert push_runs[-1]["missing"] == [], f"round {round_no}: lost objects\n{push_runs}\n{gc_runs}"
        verify = push_runs[-1]["verify"]
        assert verify["code"] == 0 and verify["identical"], (
            f"round {round_no}: a pushed artifact lost objects: {verify}\n{push_runs}\n{gc_runs}")
        assert list_locks(backend) == [] and not backend.exists(DEFAULT_LOCK_NAME)
    assert gc_ok > 0, "gc never got to run"
    print(f"gc runs that went ahead: {gc_ok}; clean refusals: {refused}")
