"""What a cache shared by the repositories and processes of one machine keeps about them.

- ``repos/``: who uses it.  Every repository that keeps objects in the cache registers its
  root (`register_user`), so a gc run from any of them keeps what all of them need (`users`).
- ``lock``: the host lock (`host_lock`) between processes: writers (add, fetch) hold it shared,
  gc exclusive while it deletes.  An add may reuse an object no pointer references yet;
  without the lock a concurrent gc could delete it between the dedup check and the pointer
  write.  (Remotes use the lock objects of `mlvc.store.locks` instead.)
- the scratch directory: packs being written; `sweep_scratch` removes what processes that
  died (kill -9, power loss) left there.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import MlvcError
from ..hashing import digest
from ..atomic import TempNames, sweep
from .backend import Backend

USERS = "repos/"


def register_user(backend: Backend, repo_root: Path) -> None:
    """Record that the repository at `repo_root` keeps objects in the store on `backend`
    (idempotent).  gc keeps what every registered repository needs; see `users`."""
    root = str(Path(os.path.abspath(repo_root)))
    key = f"{USERS}{digest(root.encode()).hex()[:24]}.json"
    try:
        if not backend.exists(key):
            backend.put_bytes(key, json.dumps({"root": root}).encode() + b"\n")
    except (MlvcError, OSError):
        pass  # a read-only store: this repository cannot write objects here either


def users(backend: Backend) -> dict[Path, str]:
    """{registered repository root: the registry entry naming it}."""
    out: dict[Path, str] = {}
    for key in backend.list(USERS):
        if not key.endswith(".json"):
            continue
        try:
            root = Path(json.loads(backend.get_bytes(key))["root"])
        except (MlvcError, ValueError, KeyError, TypeError):
            continue  # a damaged entry names nobody
        where = backend.local_path(key) if backend.capabilities.local_files else key
        out[root] = where or key
    return out


@contextmanager
def host_lock(backend: Backend, name: str, exclusive: bool = False) -> Iterator[None]:
    """Hold the host lock of the cache on `backend` (`name`: the store's, for errors): shared,
    or `exclusive` (gc while it deletes)."""
    backend.ensure_base()
    path = backend.local_path("lock")
    if path is None:
        raise ValueError(f"{name} is not on a local filesystem: it has no host lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


SCRATCH_NAMES = TempNames(r"(?:[^-]*-(?P<pid>\d+)(?:-.*)?|.*)")
"""Everything in the scratch directory is a temp: ``<kind>-<pid>-...`` (a pack being written, a
fetched pack, a reindex)."""


def sweep_scratch(scratch: Path, now: float | None = None) -> int:
    """Remove scratch files left by processes that died, and any older than STALE_TEMP_S;
    returns how many."""
    return sweep(scratch, SCRATCH_NAMES, now=now)


__all__ = ["register_user", "users", "host_lock", "sweep_scratch", "USERS", "SCRATCH_NAMES"]
