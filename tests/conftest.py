"""Shared fixtures: real git repositories in temp dirs, an mlvc CLI runner, real S3 servers
(moto's server mode and SeaweedFS) on 127.0.0.1, and directory remotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import GIT_ENV, CliResult, git, mlvc_cli
from servers import (
    DUMMY_KEY,
    DUMMY_SECRET,
    REGION,
    REPO_ROOT,
    GitDaemon,
    GitHttpServer,
    MotoServer,
    RemoteSpec,
    SeaweedServer,
    create_bucket,
    s3_options,
)

from mlvc.store.backend import Backend, open_backend

ServerT = TypeVar("ServerT", GitDaemon, GitHttpServer, MotoServer, SeaweedServer)


def running(server: ServerT) -> Iterator[ServerT]:
    """Start a test server, hand it over, and stop it even when the test using it failed."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    """Source mirrors and the objects read from them go to a temp dir, never ~/.cache."""
    monkeypatch.setenv("MLVC_CACHE_HOME", str(tmp_path_factory.mktemp("user-cache")))


@pytest.fixture
def git_served(tmp_path) -> Path:
    """The directory the git servers (`git_daemon`, `git_http`) serve repositories from."""
    d = tmp_path / "served"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def git_daemon(git_served) -> Iterator[GitDaemon]:
    """`git daemon` on 127.0.0.1 serving `git_served` (git://)."""
    yield from running(GitDaemon(git_served))


@pytest.fixture
def git_http(git_served) -> Iterator[GitHttpServer]:
    """git's smart HTTP (`git http-backend` as CGI) on 127.0.0.1 serving `git_served`."""
    yield from running(GitHttpServer(git_served))


@pytest.fixture
def repo_dir(tmp_path, monkeypatch) -> Path:
    """A fresh git repository with `mlvc init` done; the cwd is set to it."""
    d = tmp_path / "repo"
    d.mkdir()
    git(d, "init", "-q", "-b", "main")
    monkeypatch.chdir(d)
    from mlvc.repo import Repo

    Repo.init(d)
    return d


@pytest.fixture
def cli(repo_dir):
    def run(*args: str, **kw) -> CliResult:
        return mlvc_cli(repo_dir, *args, **kw)

    return run


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials, and no lookups of real ones (files, instance metadata) that could leak in or stall."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Endpoint URL of a moto server shared by the whole session."""
    for server in running(MotoServer()):
        yield server.endpoint




@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory) -> Iterator[str]:
    """Endpoint URL of a SeaweedFS server (`weed mini`) shared by the whole session."""
    for server in running(SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))):
        yield server.endpoint


@pytest.fixture
def outage_server() -> Iterator[MotoServer]:
    """A separate server a test may stop and restart to simulate an outage without disturbing others."""
    yield from running(MotoServer())


@pytest.fixture
def s3_url(moto_server: str) -> RemoteSpec:
    """(url, options) of a remote under a fresh bucket."""
    return f"s3://{create_bucket(moto_server)}/remote", s3_options(moto_server)


@pytest.fixture
def seaweed_url(seaweed_server: str) -> RemoteSpec:
    """(url, options) of a remote under a fresh bucket of the SeaweedFS server."""
    return f"s3://{create_bucket(seaweed_server)}/remote", s3_options(seaweed_server)


@pytest.fixture(params=["moto", "seaweedfs"])
def any_s3_url(request: pytest.FixtureRequest) -> RemoteSpec:
    """(url, options) under a fresh bucket of each real S3 server in turn: moto, then SeaweedFS."""
    return request.getfixturevalue("s3_url" if request.param == "moto" else "seaweed_url")


@pytest.fixture
def local_url(tmp_path: Path) -> RemoteSpec:
    return str(tmp_path / "remote"), {}


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def remote_spec(request: pytest.FixtureRequest) -> RemoteSpec:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def remote(remote_spec: RemoteSpec) -> Backend:
    backend = open_backend(*remote_spec)
    backend.ensure_base()
    return backend


@pytest.fixture
def spawn_workers() -> Callable[..., list[str]]:
    """`run_workers`, for test modules (conftest is not importable by a stable module name)."""
    return run_workers


@pytest.fixture
def options_for() -> Callable[..., dict[str, Any]]:
    """`s3_options(endpoint, key=..., secret=...)`, for test modules."""
    return s3_options


@pytest.fixture
def make_bucket() -> Callable[[str], str]:
    """Creates a bucket on the given endpoint and returns its name."""
    return create_bucket


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, int], Callable[[int], None]]]:
    """`mount(path, size)` mounts a tmpfs of `size` bytes at `path` and returns `resize(size)`."""
    mounted: list[Path] = []

    def mount(path: Path, size: int) -> Callable[[int], None]:
        path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs here ({proc.stderr.strip()}): the disk-full tests need root "
                        "with CAP_SYS_ADMIN (a container run with --privileged or --cap-add SYS_ADMIN)")
        mounted.append(path)

        def resize(new_size: int) -> None:
            subprocess.run(["mount", "-o", f"remount,size={new_size}", str(path)], check=True)

        return resize

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


WORKER_PROLOGUE = """
import json, os, sys, time
SPEC = json.loads(sys.argv[1])

def wait_for_start():
    # report ready, then spin until the parent says go: every worker starts its remote calls together,
    # however long its imports took
    open(os.path.join(SPEC["sync_dir"], f"ready-{os.getpid()}"), "w").close()
    go = os.path.join(SPEC["sync_dir"], "go")
    while not os.path.exists(go):
        time.sleep(0.001)

def count_signals(prefix):
    # how many workers left a file named PREFIX... in the sync directory
    return sum(name.startswith(prefix) for name in os.listdir(SPEC["sync_dir"]))

def timed_cli(cwd, args):
    # `mlvc ARGS` in this worker process: its exit code, start/end times and the end of its stderr
    import contextlib, io
    from mlvc.cli.main import run
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    start = time.time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return {"args": args, "code": code, "start": start, "end": time.time(), "err": err.getvalue()[-2000:]}

def wait_for_all_to_finish(timeout_s=60.0):
    # a lock's holder that exits leaves an abandoned lock (dead pid on this host), which a slower
    # worker may rightly break: holders stay alive until every worker has had its go
    open(os.path.join(SPEC["sync_dir"], f"finished-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(name.startswith("finished-") for name in os.listdir(SPEC["sync_dir"])) >= SPEC["workers"]:
            return
        time.sleep(0.005)
"""


def run_workers(script: str, specs: list[dict[str, Any]], timeout_s: float = 60.0) -> list[str]:
    """Run `script` in one real Python process per spec; their stdouts.

    The script sees its spec as `SPEC` and calls `wait_for_start()` (from
    WORKER_PROLOGUE) once its imports are done, so all processes hit the remote
    at the same moment.
    """
    env = dict(os.environ)  # this checkout's mlvc, and tests/ (a script may use tests/helpers.py)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), str(Path(__file__).parent),
                                                      env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="mlvc-workers-") as sync_dir:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER_PROLOGUE + script,
                 json.dumps({**spec, "sync_dir": sync_dir, "workers": len(specs)})],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
            for spec in specs
        ]
        deadline = time.monotonic() + timeout_s
        while sum(name.startswith("ready-") for name in os.listdir(sync_dir)) < len(processes):
            if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
                break  # a worker died early: communicate() below reports its stderr
            time.sleep(0.005)
        Path(sync_dir, "go").touch()
        outputs = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, stderr
            outputs.append(stdout.strip())
    return outputs
