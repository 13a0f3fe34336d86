"""Test helpers shared across the suite (import as `from helpers import git, mlvc_cli`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "mlvc-test",
    "GIT_AUTHOR_EMAIL": "test@mlvc.invalid",
    "GIT_COMMITTER_NAME": "mlvc-test",
    "GIT_COMMITTER_EMAIL": "test@mlvc.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "MLVC_NO_PROGRESS": "1",
}


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, **GIT_ENV)
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


def mlvc_cli(cwd: Path, *args: str, timeout: float = 300, env: dict | None = None) -> CliResult:
    """Run the real `mlvc` entry point in a subprocess."""
    full_env = dict(os.environ, **GIT_ENV, **(env or {}))
    proc = subprocess.run([sys.executable, "-c", "from mlvc.cli.main import main; main()", *args],
                          cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def mlvc(*args: str) -> int:
    """Run the CLI in this process and return its exit code."""
    from mlvc.cli.main import run

    return run(list(args))


def write(p: Path, data: bytes | str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())


def commit(repo: Path, msg: str, tag: str | None = None) -> str:
    """`git add -A && git commit`, optionally tagged; returns the new commit's sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    if tag:
        git(repo, "tag", tag)
    return git(repo, "rev-parse", "HEAD").strip()


def open_cache(path: Path, **options):
    """A `PackStore` on a cache directory, as `Repo.store` builds it."""
    from mlvc.store.local import LocalBackend
    from mlvc.store.packstore import PackStore, Role

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return PackStore(LocalBackend(path), role=Role.CACHE, scratch=path / "tmp", marks=path / "complete.sqlite",
                     **options)


def verify_cache(path: Path):
    """The full check (every object read) of a cache directory."""
    from mlvc.store.verify import verify

    store = open_cache(path)
    try:
        return verify(store, read_data=True)
    finally:
        store.close()


def one_error(err: str) -> str:
    """The one `error:` line of a failed command's stderr (a `hint:` may follow); fails on a
    traceback, an internal error or more than one error line."""
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def default_sigint() -> None:
    """`preexec_fn` for a child a test will Ctrl-C: SIGINT's default action, as under a terminal.
    A runner started as a background job of a non-interactive shell inherits SIGINT ignored, and
    a Python child then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
