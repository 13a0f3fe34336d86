"""A transfer against an endpoint that accepts connections and never answers: a message while
waiting, and a Ctrl-C that says what was done and that a re-run resumes (issue 9).  The endpoint
is a real TCP server on 127.0.0.1 that accepts and then stays silent, not a mock."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import cli_proc, commit, default_sigint, mlvc_cli, write

from mlvc.errors import EXIT_INTERRUPTED


class SilentServer:
    """Accepts every connection, reads what it is sent, never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def read_stderr_until(proc: subprocess.Popen, text: str, timeout_s: float) -> str:
    """What the process wrote to stderr until `text` appeared (or the time ran out)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    got = b""
    deadline = time.monotonic() + timeout_s
    while text.encode() not in got and time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.2):
            got += os.read(proc.stderr.fileno(), 65536)
    return got.decode()


@pytest.mark.parametrize("command", ["push", "fetch"])
def test_an_unanswering_endpoint_is_announced_and_ctrl_c_says_a_rerun_resumes(repo_dir: Path, silent_server,
                                                                              command: str) -> None:
    write(repo_dir / "m.bin", os.urandom(1000))
    assert mlvc_cli(repo_dir, "add", "-q", "m.bin").code == 0
    commit(repo_dir, "v1")
    assert mlvc_cli(repo_dir, "remote", "add", "origin", "s3://bucket/proj", "--endpoint-url",
                    f"http://127.0.0.1:{silent_server.port}", "--region", "us-east-1", "--default", "-q").code == 0
    if command == "fetch":
        (repo_dir / ".mlvc" / "cache").rename(repo_dir / "old-cache")  # the cache lacks the objects
    started = time.monotonic()
    proc = cli_proc(repo_dir, command, text=False, preexec_fn=default_sigint)
    try:
        waiting = "waiting: nothing from remote 'origin' for 10 s; still trying"
        err = read_stderr_until(proc, waiting, timeout_s=60)
        assert waiting in err, err
        assert time.monotonic() - started >= 10
        assert f"Ctrl-C stops; `mlvc {command}` again resumes" in err
        assert silent_server.accepted >= 1  # it really is talking to the silent socket
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err += rest.decode()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert (f"interrupted; nothing was transferred yet. What was transferred and verified is kept: "
            f"`mlvc {command}` again resumes from there") in err
    assert "Traceback" not in err


def test_the_watch_summary_names_what_moved():
    from mlvc.cli.output import RemoteWatch
    from mlvc.progress import NULL

    w = RemoteWatch(NULL, "remote 'origin'", "mlvc push")
    w.start("push to origin", 3 * 2**20)
    w.advance(2**20)
    assert w.summary() == ("interrupted; push to origin: 1.0 MiB of 3.0 MiB of artifact data done (sent, or "
                           "already there). What was transferred and verified is kept: `mlvc push` again resumes "
                           "from there")


def test_the_watch_says_it_once_per_period_and_nothing_without_a_listener():
    from mlvc.cli.output import RemoteWatch
    from mlvc.progress import NULL

    said = []
    w = RemoteWatch(NULL, "remote 'origin'", "mlvc push", said.append)
    w.NOTICE_S = 0.6
    with w:
        time.sleep(1.5)
    assert len(said) == 1 and said[0].startswith("waiting: nothing from remote 'origin' for ")
    quiet = RemoteWatch(NULL, "remote 'origin'", "mlvc push", None)
    quiet.NOTICE_S = 0.1
    with quiet:
        time.sleep(0.5)  # nothing to call: must not raise
