"""mlvc/atomic.py: the one way mlvc replaces a file (temp beside it, renamed over it, removed on
failure), and no second copy of it in the package."""

from __future__ import annotations

import ast
import os
import subprocess
import time
from pathlib import Path

import pytest

from mlvc import atomic

PACKAGE = Path(__file__).resolve().parents[1] / "mlvc"


def test_a_replaced_file_is_the_old_one_or_the_new_one_and_no_temp_stays(tmp_path):
    target = tmp_path / "f.yaml"
    target.write_text("old")
    atomic.write_text(target, "new", fsync=True)
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["f.yaml"]
    with pytest.raises(RuntimeError), atomic.replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["f.yaml"]
    atomic.write_bytes(target, b"\x00bytes", mode=0o751)
    assert target.read_bytes() == b"\x00bytes" and target.stat().st_mode & 0o777 == 0o751


def test_temp_names_are_hidden_beside_the_file_and_unique_per_writer(tmp_path):
    names = {atomic.temp_path(tmp_path / "m.pt") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path and name.name.startswith(f".m.pt{atomic.TEMP_MARK}{os.getpid()}-")
    assert atomic.pid_alive(os.getpid()) and not atomic.pid_alive(0)


def test_the_sweep_removes_only_our_temps_that_their_writers_left_behind(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    names = atomic.TempNames(r"(?:w-(?P<pid>\d+)-.*)|(?:shared-.*)")
    try:
        for name in [f"w-{dead.pid}-file", f"w-{alive.pid}-file", f"w-{os.getpid()}-mine", "shared-new",
                     "shared-old", f"w-{alive.pid}-old", "user-file"]:
            (tmp_path / name).write_bytes(b"partial")
        (tmp_path / f"w-{dead.pid}-dir" / "sub").mkdir(parents=True)
        (tmp_path / f"w-{dead.pid}-dir" / "sub" / "x").write_bytes(b"x")
        long_ago = time.time() - atomic.STALE_TEMP_S - 60
        for name in ["shared-old", f"w-{alive.pid}-old", f"w-{os.getpid()}-mine"]:
            os.utime(tmp_path / name, (long_ago, long_ago))
        assert atomic.sweep(tmp_path, names, dirs=False) == 3  # the dead writer's file, the old ones
        assert f"w-{dead.pid}-dir" in os.listdir(tmp_path)
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert atomic.sweep(fd, names) == 1  # through a directory fd, a directory with what it holds
        finally:
            os.close(fd)
        assert sorted(os.listdir(tmp_path)) == sorted([f"w-{alive.pid}-file", f"w-{os.getpid()}-mine",
                                                       "shared-new", "user-file"])
        assert atomic.sweep(tmp_path, names, max_age=0, now=time.time() + 1) == 2  # age alone: live pids too
        assert sorted(os.listdir(tmp_path)) == sorted([f"w-{os.getpid()}-mine", "user-file"])
        assert atomic.sweep(tmp_path / "absent", names) == 0
    finally:
        alive.kill()
        alive.wait()
    target = tmp_path / "mirror"
    atomic.temp_path(target).mkdir()
    assert atomic.TempNames.of(target).writer(atomic.temp_path(target).name) == os.getpid()
    assert atomic.TempNames.of(target).writer(".other.tmp-1-0123abcd") is False


# Modules that rename files by a mechanism of their own, and why (everything else writes through
# mlvc.atomic): the backends publish content-named objects by link (local) or download into a
# caller's path (fsspec), the object table names its merged file by its checksum once written,
# a restore renames numbered temp files by directory descriptors, hooks move a user's hook aside,
# get and mv move whole outputs.
OWN_RENAMES = {"atomic.py", "store/local.py", "store/objecttable.py", "safepath.py", "hooks.py", "ops/get.py",
               "ops/move.py", "sources.py"}


def test_no_module_replaces_files_by_hand():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os" and rel not in OWN_RENAMES):
                found.append(f"{rel}:{node.lineno}")
    assert not found, found
