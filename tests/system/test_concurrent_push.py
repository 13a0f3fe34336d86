"""Several real `mlvc push` processes (separate clones, as if separate machines) share one remote."""

from __future__ import annotations

from pathlib import Path

from helpers import cli_proc, commit, ok, write
from remote.helpers import add_remote, clone, make_repo, rand_bytes, set_core, snapshot


def test_three_concurrent_pushers(tmp_path: Path, remote_spec) -> None:
    origin = make_repo(tmp_path / "origin")
    add_remote(origin, remote_spec)
    set_core(origin, "remote_pack_size", 256 * 1024)  # several packs each, so uploads interleave
    write(origin / "README", b"shared project\n")
    commit(origin, "init")

    clones = []
    for n in range(3):
        c = clone(origin, tmp_path / f"machine{n}")
        write(c / "shared" / "common.bin", rand_bytes(600_000, 1))  # identical on every machine
        write(c / "shared" / f"own{n}.bin", rand_bytes(300_000, 10 + n))  # overlaps in part
        write(c / f"model{n}.bin", rand_bytes(500_000, 20 + n))  # distinct
        ok(c, "add", "-q", "shared", f"model{n}.bin")
        commit(c, f"machine {n}")
        clones.append(c)

    procs = [cli_proc(c, "push", "--jobs", "2") for c in clones]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    for n, c in enumerate(clones):
        fresh = clone(c, tmp_path / f"check{n}")
        ok(fresh, "pull", "-q")
        assert snapshot(fresh, "shared") == snapshot(c, "shared")
        assert (fresh / f"model{n}.bin").read_bytes() == (c / f"model{n}.bin").read_bytes()
        ok(fresh, "verify", "-q")
        assert ok(c, "status", "--remote", "--exit-code", "-q") == ""
