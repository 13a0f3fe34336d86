"""Test helpers shared across the suite (import as `from helpers import git, mlvc_cli`)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from servers import REPO_ROOT

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


# One way to run the CLI in tests. In this process (fast; what a test needs unless it needs a process):
# `cli` (exit code, stdout, stderr, in a given directory), `ok` (stdout; fails on a non-zero exit) and
# `mlvc` (exit code; output goes to pytest's capture, in the current directory). As a real process (to
# kill it, signal it, time it, run it beside others, or read its real exit): `mlvc_cli` (waits, a
# CliResult), `cli_proc` (a started Popen), or `MLVC` with `cli_env()` for a command line of one's own.

MLVC = [sys.executable, "-c", "from mlvc.cli.main import main; main()"]
"""The `mlvc` entry point as a command line (this interpreter, this checkout's package: see `cli_env`)."""


def cli_env(env: dict | None = None) -> dict:
    """The environment of a CLI process: this one's, the test identity for git, no progress bars, and
    this checkout's `mlvc` first on PYTHONPATH (whichever package the interpreter would import)."""
    full = dict(os.environ, **GIT_ENV, **(env or {}))
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full.get("PYTHONPATH")]))
    return full


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


def blocking(*modules: str) -> str:
    """Python to run first in a process for which `modules` are not installed (importing one fails)."""
    return f"import sys; sys.modules.update(dict.fromkeys({list(modules)!r})); "


def mlvc_cli(cwd: Path, *args: str, timeout: float = 300, env: dict | None = None,
             without: tuple[str, ...] = ()) -> CliResult:
    """Run `mlvc ARGS` as a real process in `cwd` and wait for it; `without`: modules it runs
    without (as if not installed: `blocking`)."""
    command = [sys.executable, "-c", blocking(*without) + MLVC[-1]] if without else MLVC
    proc = subprocess.run([*command, *args], cwd=cwd, env=cli_env(env), capture_output=True, text=True,
                          timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def cli_proc(cwd: Path, *args: str, env: dict | None = None, **popen_kw) -> subprocess.Popen:
    """Start `mlvc ARGS` as a real process in `cwd` (stdout and stderr piped as text unless given)."""
    popen_kw.setdefault("stdout", subprocess.PIPE)
    popen_kw.setdefault("stderr", subprocess.PIPE)
    popen_kw.setdefault("text", True)
    return subprocess.Popen([*MLVC, *args], cwd=cwd, env=cli_env(env), **popen_kw)


def cli(cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run `mlvc ARGS` in this process, in `cwd`; returns (exit code, stdout, stderr)."""
    from mlvc.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(list(args))
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def ok(cwd: Path, *args: str) -> str:
    """`cli`, which must exit 0; its stdout."""
    code, out, err = cli(cwd, *args)
    assert code == 0, f"mlvc {' '.join(args)} in {cwd} -> {code}\n{out}\n{err}"
    return out


def mlvc(*args: str) -> int:
    """Run `mlvc ARGS` in this process, in the current directory; its exit code (output is not captured here)."""
    from mlvc.cli.main import run

    return run(list(args))


def write(p: Path, data: bytes | str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def commit(repo: Path, msg: str = "c", tag: str | None = None) -> str:
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


def chunk_codecs(cache: Path) -> dict[int, int]:
    """{codec: chunk records} over every pack of a cache directory."""
    from mlvc.store.packs import CHUNK, decode_index

    out: dict[int, int] = {}
    for idx in (cache / "packs").glob("*.idx"):
        for e in decode_index(idx.read_bytes(), idx.name):
            if e.type == CHUNK:
                out[e.codec] = out.get(e.codec, 0) + 1
    return out


FIXTURES = Path(__file__).parent / "fixtures"


def golden(name: str, tmp_path: Path, pack_format: int | None = None) -> tuple[Path, list[Path]]:
    """Fixture store `name` (tests/fixtures/) copied to `tmp_path`, and its cache's packs, each
    checked to be of `pack_format` when given."""
    import shutil

    from mlvc.store.packs import PACK_MAGIC

    work = tmp_path / "golden"
    shutil.copytree(FIXTURES / name, work)
    packs = sorted((work / ".mlvc" / "cache" / "packs").glob("*.pack"))
    if pack_format is not None:
        assert packs and all(p.read_bytes()[:9] == PACK_MAGIC + bytes([pack_format]) for p in packs)
    return work, packs


def chunk_entries(packs: list[Path]) -> list:
    """The index entries of the chunks in `packs`."""
    from mlvc.store.packs import CHUNK, decode_index

    return [e for p in packs for e in decode_index(p.with_suffix(".idx").read_bytes(), p.name) if e.type == CHUNK]


def assert_expected_bytes(root: Path) -> None:
    """Every file `root/expected.sha256` lists has the digest recorded there."""
    import hashlib

    for line in (root / "expected.sha256").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name


def assert_restores_exactly(work: Path, restored: list[str], read_data: bool = True) -> None:
    """The store at `work` verifies, a checkout restores `restored` byte-exactly (expected.sha256),
    and status then finds every artifact unchanged."""
    from mlvc.ops.checkout import checkout
    from mlvc.ops.status import UNCHANGED, status
    from mlvc.repo import Repo
    from mlvc.store.verify import verify

    repo = Repo.find(work)
    assert verify(repo.store, read_data=read_data).ok
    result = checkout(repo)
    assert not result.failed and sorted(result.restored) == restored
    assert_expected_bytes(work)
    assert all(s.state == UNCHANGED for s in status(Repo.find(work)))
