"""`mlvc gc --repack` as a real process: `kill -9` at several moments (while it re-encodes, copies,
publishes and deletes), then the plain re-run; and beside a concurrent `add` and a concurrent
`push`.  After each: the cache verifies (every record read, deltas with their bases), every
committed version restores byte-exact, and nothing is lost."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import chunk_codecs, cli_proc, commit, git, mlvc_cli, ok, verify_cache
from safetensors.torch import save_file

from remote.helpers import set_core  # isort: skip

from mlvc.codec import PLANES

pytestmark = pytest.mark.crash
STEPS = 5
REPACK = ["gc", "--all-commits", "--repack", "--grace", "0"]


def write_step(repo: Path, i: int, g: torch.Generator, state: dict) -> None:
    for k, v in state.items():
        state[k] = v + torch.randn(*v.shape, generator=g) * 2e-5
    ck = repo / "ck"
    ck.mkdir(exist_ok=True)
    torch.save(state, ck / f"step_{(i + 1) * 40}.pt")
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(ck / f"step_{(i + 1) * 40}.safetensors"))


def snapshot(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted((repo / "ck").rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict[str, dict[str, bytes]]]:
    """A repository whose cache holds a run added with the float codec off, one commit per step
    (the directory grows), small packs (many publishes and deletions), and a version never
    committed (garbage)."""
    repo = tmp_path_factory.mktemp("repack") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    ok(repo, "init", "-q")
    set_core(repo, "pack_size", 4 << 20)
    g = torch.Generator().manual_seed(7)
    state = {"w1": torch.randn(2048, 1024, generator=g) * 0.02, "w2": torch.randn(512, 1024, generator=g) * 0.02}
    versions = {}
    for i in range(STEPS):
        write_step(repo, i, g, state)
        ok(repo, "add", "-q", "ck")
        commit(repo, f"step {i}", tag=f"s{i}")
        versions[f"s{i}"] = snapshot(repo)
    write_step(repo, STEPS, g, state)  # added, never committed: garbage
    ok(repo, "add", "-q", "ck")
    git(repo, "checkout", "-q", "--", "ck.mlvc")
    ok(repo, "checkout", "-q", "--force")
    return repo, versions


def world(template, where: Path) -> Path:
    shutil.copytree(template[0], where / "repo", symlinks=True)
    return where / "repo"


def check_versions(repo: Path, versions: dict[str, dict[str, bytes]]) -> None:
    for tag, files in versions.items():
        out = repo.parent / f"export-{tag}-{time.monotonic_ns()}"
        ok(repo, "checkout", "-q", "--to", str(out), tag)
        assert snapshot(out) == files, tag
        shutil.rmtree(out)


def repack_done(repo: Path) -> dict:
    r = mlvc_cli(repo, *REPACK, "--json")
    assert r.code == 0, r
    return json.loads(r.out)


def _packs(repo: Path) -> set[str]:
    try:
        return {p.name for p in (repo / ".mlvc" / "cache" / "packs").iterdir()}
    except FileNotFoundError:
        return set()


def kill_when(proc: subprocess.Popen, moment, timeout: float = 120.0) -> bool:
    """SIGKILL `proc` as soon as `moment()` holds (polled every millisecond or so); False if
    the process ended first (the kill did not land)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if moment():
            proc.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.001)
    raise AssertionError("the repack neither ended nor reached the moment")


def moments(repo: Path) -> dict[str, object]:
    """The phases of a repack seen from outside, by the cache's pack files (not by the clock,
    which on a loaded machine runs the repack at another speed each time)."""
    before = {n for n in _packs(repo) if n.endswith(".pack")}

    def new(k: int):
        return lambda: len({n for n in _packs(repo) if n.endswith(".pack")} - before) >= k

    def gone(k: int):
        return lambda: len(before - _packs(repo)) >= k

    return {
        "while re-encoding (the first second)": None,
        "the first new pack published": new(1),
        "three new packs published": new(3),
        "the first old pack removed": gone(1),
        "half the old packs removed": gone(max(2, len(before) // 2)),
    }


def test_repack_killed_at_any_moment_leaves_a_valid_cache_and_the_rerun_completes(template, tmp_path):
    timing = world(template, tmp_path / "timing")
    first = repack_done(timing)
    assert first["chunks_recoded"] > 0 and first["packs_deleted"] + first["packs_rewritten"] > 1, first
    assert len({n for n in _packs(template[0]) if n.endswith(".pack")}) >= 4, "too few packs to kill between"
    landed = []
    for n, name in enumerate(moments(template[0])):
        repo = world(template, tmp_path / f"k{n}")
        proc = cli_proc(repo, *REPACK)
        moment = moments(repo)[name]
        if moment is None:
            time.sleep(0.3)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        elif kill_when(proc, moment):
            landed.append(name)
        proc.communicate()
        cache = repo / ".mlvc" / "cache"
        assert verify_cache(cache).ok, name
        check_versions(repo, template[1])
        again = repack_done(repo)  # the plain re-run completes the work
        assert verify_cache(cache).ok
        assert chunk_codecs(cache).get(PLANES, 0) > 0
        assert repack_done(repo)["chunks_recoded"] == 0
        check_versions(repo, template[1])
        assert again["stored_bytes_after"] <= first["stored_bytes_after"] * 1.02, (name, again, first)
        shutil.rmtree(repo.parent)
    # each moment is seen while the repack runs; only the last could (rarely) end before the kill
    assert len(landed) >= 3, f"kills landed only at {landed}"


def test_an_add_beside_a_repack_loses_nothing(template, tmp_path):
    repo = world(template, tmp_path)
    g = torch.Generator().manual_seed(99)
    state = {"w1": torch.randn(1024, 1024, generator=g), "w2": torch.randn(512, 1024, generator=g)}
    write_step(repo, STEPS + 1, g, state)
    expect = snapshot(repo)
    repack = cli_proc(repo, *REPACK)
    time.sleep(0.3)
    add = cli_proc(repo, "add", "-q", "ck")
    assert add.wait(120) == 0, add.communicate()
    assert repack.wait(120) == 0, repack.communicate()
    commit(repo, "after", tag="after")
    versions = dict(template[1], after=expect)
    assert verify_cache(repo / ".mlvc" / "cache").ok
    check_versions(repo, versions)
    repack_done(repo)  # the new version repacked too
    check_versions(repo, versions)


def test_a_push_beside_a_repack_loses_nothing(template, tmp_path):
    repo = world(template, tmp_path)
    ok(repo, "remote", "add", "-q", "shared", str(tmp_path / "remote"), "--default")
    commit(repo, "remote")
    repack = cli_proc(repo, *REPACK)
    time.sleep(0.5)
    push = cli_proc(repo, "push", "--all-commits")
    pushed = push.wait(120)
    assert repack.wait(120) == 0, repack.communicate()
    # a pack the repack replaced under the push is read from its new pack (it exited 6 before)
    assert pushed == 0, push.communicate()
    assert mlvc_cli(repo, "verify", "--remote", "shared").code == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    for tag, files in template[1].items():
        git(clone, "checkout", "-q", tag)
        assert mlvc_cli(clone, "pull", "-q").code == 0
        assert snapshot(clone) == files, tag
