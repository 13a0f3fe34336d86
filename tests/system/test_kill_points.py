"""Kill points: `kill -9` of real `mlvc` processes at random moments, then the plain re-run.

Commands: add, push, pull, fetch, checkout, checkout REV, gc, gc --remote; on a directory
remote and on S3 (moto).  After each kill: `mlvc verify` and `mlvc verify --remote origin` exit
0, no workspace file holds bytes of neither version, and the plain re-run (no --force) completes
byte-exact (what it restores is compared with the bytes written, and a fresh clone pulls every
committed version back from the remote).

The default run has a fixed set of 10 points (fixed seeds); `-m slow` adds >= 60 randomized ones.
Each point starts from a copy of a prepared world (repository, cache, remote), so it costs a few
seconds.  A kill that came after the process had already finished is not counted as a point.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import DUMMY_KEY, DUMMY_SECRET, REGION, create_bucket

from helpers import cli, cli_proc, mlvc_cli, ok
from remote.helpers import git  # isort: skip

COMMANDS = ["add", "push", "pull", "fetch", "checkout", "checkout-rev", "gc", "gc-remote"]
ROOT_ARTIFACTS = ("model.bin", "ds")


def _version(tag: str) -> dict[str, bytes]:
    rng = random.Random(f"kill-points-{tag}")
    files = {"model.bin": rng.randbytes(32 << 20)}
    files.update({f"ds/p{i % 3}/{i}.bin": rng.randbytes(rng.randrange(0, 60_000)) for i in range(150)})
    if tag != "v1":  # later versions share most files with v1 and drop a few
        base = _version("v1") if tag != "v1" else {}
        for rel, body in base.items():
            if rel.startswith("ds/") and rng.random() < 0.6:
                files[rel] = body
    return files


VERSIONS = {tag: _version(tag) for tag in ("v1", "v2", "v3")}


def write_version(repo: Path, tag: str) -> None:
    for a in ROOT_ARTIFACTS:
        p = repo / a
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for rel, body in VERSIONS[tag].items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)


def workspace(repo: Path) -> dict[str, bytes]:
    out = {}
    for a in ROOT_ARTIFACTS:
        p = repo / a
        if p.is_file():
            out[a] = p.read_bytes()
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    out[f.relative_to(repo).as_posix()] = f.read_bytes()
    return out


def assert_no_torn_file(repo: Path) -> None:
    """Every workspace file holds the bytes of some version of it, and no temp file is left."""
    for rel, body in workspace(repo).items():
        assert any(v.get(rel) == body for v in VERSIONS.values()), f"{rel} holds bytes of no version"
    stray = [p for p in repo.rglob("*mlvc-tmp*") if ".git" not in p.parts and ".mlvc" not in p.parts]
    assert stray == []


# ---------------------------------------------------------------------- worlds


@dataclass
class Kind:
    name: str
    endpoint: str | None = None

    def new_remote(self, base: Path) -> str:
        if self.endpoint is None:
            return str(base / "remote")
        return f"s3://{create_bucket(self.endpoint)}/remote"

    def copy_remote(self, src: str, dst: str) -> None:
        if self.endpoint is None:
            shutil.copytree(src, dst)
            return
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                              aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_SECRET)
        sb, _, sp = src[5:].partition("/")
        db, _, dp = dst[5:].partition("/")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=sb, Prefix=sp):
            for obj in page.get("Contents", []):
                key = dp + obj["Key"][len(sp):]
                client.copy_object(Bucket=db, Key=key, CopySource={"Bucket": sb, "Key": obj["Key"]})

    def config(self, url: str) -> str:
        """`.mlvc/config.local` naming the remote (git-ignored: each copy points at its own)."""
        text = f"remotes:\n  origin:\n    url: {url}\n"
        if self.endpoint:
            text += (f"    endpoint_url: {self.endpoint}\n    region: {REGION}\n"
                     f"    access_key_id: {DUMMY_KEY}\n    secret_access_key: {DUMMY_SECRET}\n")
        return text + "default_remote: origin\n"


def set_remote(repo: Path, kind: Kind, url: str) -> None:
    (repo / ".mlvc" / "config.local").write_text(kind.config(url))


def make_template(base: Path, kind: Kind) -> tuple[Path, str]:
    """origin: v1 and v2 committed (tags), both pushed; v3 not written.  Returns (dir, remote url)."""
    repo = base / "origin"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Tester")
    ok(repo, "init", "-q")
    url = kind.new_remote(base)
    set_remote(repo, kind, url)
    for tag in ("v1", "v2"):
        write_version(repo, tag)
        ok(repo, "add", "-q", *ROOT_ARTIFACTS)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", tag)
        git(repo, "tag", tag)
    ok(repo, "push", "-q", "--all-commits")
    return base, url


class World:
    """A private copy of the template: its own repository, cache and remote."""

    def __init__(self, template: tuple[Path, str], kind: Kind, where: Path) -> None:
        src, src_url = template
        self.kind, self.base = kind, where
        shutil.copytree(src / "origin", where / "origin", symlinks=True)
        self.repo = where / "origin"
        self.url = kind.new_remote(where) if kind.endpoint else str(where / "remote")
        kind.copy_remote(src_url, self.url)
        set_remote(self.repo, kind, self.url)

    def clone(self, name: str) -> Path:
        dst = self.base / name
        subprocess.run(["git", "clone", "-q", str(self.repo), str(dst)], check=True, capture_output=True)
        git(dst, "config", "user.email", "t@example.com")
        git(dst, "config", "user.name", "Tester")
        set_remote(dst, self.kind, self.url)
        return dst

    def commit(self, message: str) -> None:
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", message)

    def check_remote_has(self, tags: list[str]) -> None:
        """A fresh clone pulls every given committed version back from the remote, byte-exact."""
        probe = self.clone(f"probe-{time.monotonic_ns()}")
        for tag in tags:
            git(probe, "checkout", "-q", tag)
            ok(probe, "pull", "-q")
            assert workspace(probe) == VERSIONS[tag], tag


# ---------------------------------------------------------------------- scenarios
# prepare(world) -> (cwd, args); finish(world, cwd) checks the state after the plain re-run.


def prep_add(w: World):
    write_version(w.repo, "v3")
    return w.repo, ["add", *ROOT_ARTIFACTS]


def fin_add(w: World, cwd: Path):
    for a in ROOT_ARTIFACTS:
        p = w.repo / a
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    ok(w.repo, "checkout", "-q")
    assert workspace(w.repo) == VERSIONS["v3"]


def prep_push(w: World):
    write_version(w.repo, "v3")
    ok(w.repo, "add", "-q", *ROOT_ARTIFACTS)
    w.commit("v3")
    git(w.repo, "tag", "v3")
    return w.repo, ["push"]


def fin_push(w: World, cwd: Path):
    w.check_remote_has(["v3", "v1"])


def prep_pull(w: World):
    return w.clone("clone"), ["pull"]


def fin_pull(w: World, cwd: Path):
    assert workspace(cwd) == VERSIONS["v2"]


def prep_fetch(w: World):
    return w.clone("clone"), ["fetch", "--all-commits"]


def fin_fetch(w: World, cwd: Path):
    ok(cwd, "checkout", "-q")
    assert workspace(cwd) == VERSIONS["v2"]
    ok(cwd, "checkout", "-q", "--to", str(w.base / "v1-export"), "v1")
    assert workspace(w.base / "v1-export") == VERSIONS["v1"]


def prep_checkout(w: World):
    git(w.repo, "checkout", "-q", "v1", "--", "model.bin.mlvc", "ds.mlvc")
    return w.repo, ["checkout"]


def fin_checkout(w: World, cwd: Path):
    assert workspace(w.repo) == VERSIONS["v1"]
    ok(w.repo, "status", "-q")


def prep_checkout_rev(w: World):
    return w.repo, ["checkout", "v1"]


def prep_gc(w: World):
    # a version added (so in the cache) but never committed: garbage for --all-commits
    write_version(w.repo, "v3")
    ok(w.repo, "add", "-q", *ROOT_ARTIFACTS)
    git(w.repo, "checkout", "-q", "--", "model.bin.mlvc", "ds.mlvc")
    ok(w.repo, "checkout", "-q", "--force")
    return w.repo, ["gc", "--all-commits", "--grace", "0"]


def fin_gc(w: World, cwd: Path):
    for tag in ("v1", "v2"):
        out = w.base / f"export-{tag}"
        ok(w.repo, "checkout", "-q", "--to", str(out), tag)
        assert workspace(out) == VERSIONS[tag]


def prep_gc_remote(w: World):
    # a version pushed but never committed: garbage on the remote
    write_version(w.repo, "v3")
    ok(w.repo, "add", "-q", *ROOT_ARTIFACTS)
    ok(w.repo, "push", "-q")
    git(w.repo, "checkout", "-q", "--", "model.bin.mlvc", "ds.mlvc")
    ok(w.repo, "checkout", "-q", "--force")
    return w.repo, ["gc", "--remote", "origin", "--all-commits", "--grace", "0"]


def fin_gc_remote(w: World, cwd: Path):
    w.check_remote_has(["v1", "v2"])


SCENARIOS = {
    "add": (prep_add, fin_add),
    "push": (prep_push, fin_push),
    "pull": (prep_pull, fin_pull),
    "fetch": (prep_fetch, fin_fetch),
    "checkout": (prep_checkout, fin_checkout),
    "checkout-rev": (prep_checkout_rev, fin_checkout),
    "gc": (prep_gc, fin_gc),
    "gc-remote": (prep_gc_remote, fin_gc_remote),
}
RESTORES = {"pull", "checkout", "checkout-rev"}


STARTUP_S = 0.3  # before this the process is still importing: no kill point there


def duration(template, kind: Kind, where: Path, command: str, cache: dict) -> float:
    """How long `command` runs unkilled here (measured once per kind and command)."""
    key = (kind.name, command)
    if key not in cache:
        where.mkdir(parents=True)
        w = World(template, kind, where)
        cwd, args = SCENARIOS[command][0](w)
        start = time.monotonic()
        result = mlvc_cli(cwd, *args)
        cache[key] = time.monotonic() - start
        assert result.code == 0, result.err
        SCENARIOS[command][1](w, cwd)
        shutil.rmtree(where, ignore_errors=True)
    return cache[key]


def kill_at(template, kind: Kind, where: Path, command: str, fraction: float, cache: dict) -> tuple[bool, float]:
    """A kill point `fraction` of the way through the command's work (after its start-up)."""
    total = duration(template, kind, where.with_name(where.name + "-calibrate"), command, cache)
    # A command whose whole run is barely longer than the start-up (a quiet machine, a fast path)
    # would leave no window after STARTUP_S: most kills then came after the exit and the test
    # failed for want of kills, not for damage. The window is the last 40% of the run at least,
    # and ends before the calibrated exit.
    start = min(STARTUP_S, 0.6 * total)
    delay = start + fraction * 0.95 * (total - start)
    killed, ran_for = kill_point(template, kind, where, command, delay)
    if ran_for is not None:
        # It ended before the kill: the calibration ran slower than the command runs now (a
        # loaded machine, two test workers). The next points of this command aim within what
        # was seen, instead of all coming after the exit.
        cache[(kind.name, command)] = min(total, ran_for)
    return killed, delay


def kill_point(template, kind: Kind, where: Path, command: str, delay: float) -> tuple[bool, float | None]:
    """One point: (whether the kill landed, how long the process ran when it ended first; nothing
    was tested then)."""
    where.mkdir(parents=True)
    w = World(template, kind, where)
    prepare, finish = SCENARIOS[command]
    cwd, args = prepare(w)
    proc = cli_proc(cwd, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    ran_for = None
    while time.monotonic() - started < delay:
        if proc.poll() is not None:
            ran_for = time.monotonic() - started
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if command in RESTORES:
        assert_no_torn_file(cwd)
    ok(cwd, "verify", "-q")
    ok(cwd, "verify", "-q", "--remote", "origin")
    code, out, err = cli(cwd, *args)  # the plain re-run: no --force
    assert code == 0, f"re-run of mlvc {' '.join(args)} after a kill at {delay:.2f} s -> {code}\n{out}\n{err}"
    finish(w, cwd)
    ok(cwd, "verify", "-q")
    ok(cwd, "verify", "-q", "--remote", "origin")
    shutil.rmtree(where, ignore_errors=True)
    return killed, ran_for


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def local_template(tmp_path_factory):
    kind = Kind("dir")
    return kind, make_template(tmp_path_factory.mktemp("kill-template-dir"), kind)


@pytest.fixture(scope="module")
def s3_template(tmp_path_factory, moto_server):
    kind = Kind("moto", moto_server)
    return kind, make_template(tmp_path_factory.mktemp("kill-template-s3"), kind)


@pytest.fixture(scope="module")
def seaweed_template(tmp_path_factory, seaweed_server):
    kind = Kind("seaweedfs", seaweed_server)
    return kind, make_template(tmp_path_factory.mktemp("kill-template-seaweedfs"), kind)


TEMPLATES = {"dir": "local_template", "moto": "s3_template", "seaweedfs": "seaweed_template"}


@pytest.fixture(autouse=True)
def _identity(monkeypatch):
    monkeypatch.setenv("MLVC_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def durations() -> dict:
    return {}


# ---------------------------------------------------------------------- the fixed set (default run)

# (remote kind, command, how far through the command's work the kill comes)
FIXED = [("dir", "add", 0.5), ("dir", "push", 0.4), ("dir", "pull", 0.6), ("dir", "fetch", 0.3),
         ("dir", "checkout", 0.5), ("dir", "checkout-rev", 0.6), ("dir", "gc", 0.5),
         ("dir", "gc-remote", 0.5), ("moto", "push", 0.5), ("moto", "gc-remote", 0.4)]


@pytest.mark.crash
@pytest.mark.parametrize("kind_name,command,fraction", FIXED, ids=[f"{k}-{c}" for k, c, _ in FIXED])
def test_kill_point(kind_name, command, fraction, request, tmp_path, durations):
    kind, template = request.getfixturevalue(TEMPLATES[kind_name])
    killed, delay = kill_at(template, kind, tmp_path / "point", command, fraction, durations)
    print(f"{kind_name} {command}: {'killed' if killed else 'finished before the kill'} at {delay:.2f} s")


# ---------------------------------------------------------------------- randomized (slow)

# 74 kills; an S3 point costs ~3x a directory one
RANDOM_POINTS = {"dir": 44, "moto": 20, "seaweedfs": 10}


@pytest.mark.crash
@pytest.mark.slow
@pytest.mark.parametrize("kind_name", list(RANDOM_POINTS))
def test_randomized_kill_points(kind_name, request, tmp_path, durations):
    kind, template = request.getfixturevalue(TEMPLATES[kind_name])
    rng = random.Random(int(os.environ.get("MLVC_KILL_SEED", time.time_ns() % 10**6)))
    wanted = RANDOM_POINTS[kind_name]
    killed = tried = 0
    log = []
    while killed < wanted and tried < wanted * 2:
        command = COMMANDS[tried % len(COMMANDS)]
        tried += 1
        hit, delay = kill_at(template, kind, tmp_path / f"p{tried}", command, rng.random(), durations)
        killed += hit
        log.append(f"{command}@{delay:.2f}{'' if hit else ' (finished first)'}")
    print(f"{kind_name}: {killed} kill points survived of {tried} tried: {', '.join(log)}")
    assert killed >= wanted * 3 // 4, log
