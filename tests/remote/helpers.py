"""Helpers for tests against remotes (anywhere in tests/: `from remote.helpers import ...`): real git
repositories, remotes configured through the CLI (which runs through tests/helpers.py)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from helpers import commit, git, ok, write


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "Tester")
    ok(path, "init", "-q")
    return path


def clone(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    git(dst.parent, "clone", "-q", str(src), str(dst))
    git(dst, "config", "user.email", "t@example.com")
    git(dst, "config", "user.name", "Tester")
    return dst


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def add_remote(repo: Path, spec, name: str = "origin") -> None:
    """Configure the remote of a (url, options) fixture spec through the CLI."""
    url, options = spec
    args = ["remote", "add", name, url, "--default", "-q"]
    if options.get("endpoint_url"):
        args += ["--endpoint-url", options["endpoint_url"], "--region", options.get("region", "us-east-1")]
    ok(repo, *args)


def pushed_repo(path: Path, spec, files: dict[str, bytes]) -> Path:
    """A repository with `spec` as its default remote and `files` added, committed and pushed."""
    repo = make_repo(path)
    add_remote(repo, spec)
    for rel, data in files.items():
        write(repo / rel, data)
    ok(repo, "add", "-q", *files)
    commit(repo)
    ok(repo, "push", "-q")
    return repo


def snapshot(root: Path, rel: str) -> dict[str, bytes]:
    """{relative path: bytes} of a file or of every file under a directory."""
    p = root / rel
    if p.is_file():
        return {rel: p.read_bytes()}
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def remote_packs(spec) -> list[str]:
    from mlvc.store.backend import open_backend

    return open_backend(*spec).list("packs/")


def set_core(repo: Path, key: str, value) -> None:
    from mlvc.config import Config

    cfg = Config(repo / ".mlvc" / "config", repo / ".mlvc" / "config.local")
    cfg.update_shared(lambda d: d.setdefault("core", {}).__setitem__(key, value))


def age_journal(spec_or_backend, seconds: float | None = None) -> None:
    """Make every push journal record look `seconds` (default: past the retention) old, by its name.

    For tests whose gc clone must see another machine's never-shared commit as garbage: the
    journal keeps a commit the gc's git does not know for `RETENTION_S` (storage-format.md)."""
    from mlvc.store.backend import Backend, open_backend
    from mlvc.store.journal import JOURNAL, RETENTION_S, list_names

    backend = spec_or_backend if isinstance(spec_or_backend, Backend) else open_backend(*spec_or_backend)
    then = time.time_ns() - int(((RETENTION_S + 60) if seconds is None else seconds) * 1e9)
    for name in list_names(backend):
        backend.put_bytes(f"{JOURNAL}{then:020d}{name.key[len(JOURNAL) + 20:]}", backend.get_bytes(name.key))
        backend.delete(name.key)
