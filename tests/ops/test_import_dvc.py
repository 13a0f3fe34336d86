"""`mlvc import-dvc` on a project made by the real `dvc` command (in its own venv, .venv-dvc)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import commit, git, mlvc_cli, write

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dvc_bin() -> str:
    """The real dvc (scripts/setup-dvc-venv makes .venv-dvc; MLVC_TEST_DVC names another)."""
    path = os.environ.get("MLVC_TEST_DVC") or str(REPO_ROOT / ".venv-dvc" / "bin" / "dvc")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the real dvc is needed for these tests and {path} is missing: run ./scripts/setup-dvc-venv")
    return path


@pytest.fixture
def dvc(dvc_bin, tmp_path):
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"),
               DVC_GLOBAL_CONFIG_DIR=str(tmp_path / "dvc-global"), DVC_SYSTEM_CONFIG_DIR=str(tmp_path / "dvc-sys"))

    def run(cwd: Path, *args: str) -> str:
        proc = subprocess.run([dvc_bin, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"dvc {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    return run


@pytest.fixture
def dvc_project(repo_dir: Path, dvc) -> dict[str, bytes]:
    """A DVC project: a directory and a file added with `dvc add`, a stage output in dvc.lock."""
    dvc(repo_dir, "init", "-q")
    files = {
        "data/images/a.bin": os.urandom(300_000),
        "data/images/sub/b.txt": b"line\r\nwith crlf\r\n",
        "data/images/run.sh": b"#!/bin/sh\necho hi\n",
        "model.bin": os.urandom(150_000),
    }
    for rel, data in files.items():
        write(repo_dir / rel, data)
    dvc(repo_dir, "add", "-q", "data/images")
    dvc(repo_dir, "add", "-q", "model.bin")
    dvc(repo_dir, "stage", "add", "-q", "-n", "prep", "-o", "out/result.txt",
        "mkdir -p out && printf 'prepared\\n' > out/result.txt")
    dvc(repo_dir, "repro", "-q")
    files["out/result.txt"] = b"prepared\n"
    commit(repo_dir, "dvc project")
    return files


@pytest.mark.slow
def test_import_converts_every_output_byte_exact_from_dvcs_cache(repo_dir: Path, dvc_project) -> None:
    for rel in ("data/images", "model.bin", "out"):  # the import reads DVC's cache, not the workspace
        p = repo_dir / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    r = mlvc_cli(repo_dir, "import-dvc")
    assert r.code == 0, r
    assert "imported data/images (3 files" in r.out and "verified against DVC's md5" in r.out
    assert "git rm -q data/images.dvc model.bin.dvc" in r.out
    assert ("git add data/images.mlvc data/.gitignore out/result.txt.mlvc out/.gitignore model.bin.mlvc "
            ".gitignore") in r.out
    assert "dvc.lock" in r.out  # the note about the pipeline's outputs
    assert "Traceback" not in r.err
    r = mlvc_cli(repo_dir, "checkout", "-q")
    assert r.code == 0, r
    for rel, data in dvc_project.items():
        assert (repo_dir / rel).read_bytes() == data, rel
    status = json.loads(mlvc_cli(repo_dir, "status", "--json").out)
    assert {s["path"]: s["state"] for s in status} == {
        "data/images": "unchanged", "model.bin": "unchanged", "out/result.txt": "unchanged"}
    ptr = (repo_dir / "model.bin.mlvc").read_text()
    assert "imported_from: dvc" in ptr
    # the user's next steps work
    git(repo_dir, "rm", "-q", "data/images.dvc", "model.bin.dvc")
    git(repo_dir, "add", "data/images.mlvc", "data/.gitignore", "out/result.txt.mlvc", "out/.gitignore",
        "model.bin.mlvc", ".gitignore")
    commit(repo_dir, "mlvc")
    tracked = git(repo_dir, "ls-files").split()
    assert "model.bin.mlvc" in tracked and "model.bin.dvc" not in tracked and "model.bin" not in tracked


@pytest.mark.slow
def test_damaged_or_missing_dvc_objects_fail_only_their_output(repo_dir: Path, dvc_project) -> None:
    md5 = next(line.split(": ")[1] for line in (repo_dir / "model.bin.dvc").read_text().splitlines()
               if "md5:" in line)
    obj = repo_dir / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[100] ^= 0xFF
    obj.write_bytes(bytes(data))
    r = mlvc_cli(repo_dir, "import-dvc", "model.bin.dvc", "data")
    assert r.code == 12, r  # partial: data/images was imported
    assert f"model.bin: object md5 {md5} is corrupt" in r.err
    assert (repo_dir / "data/images.mlvc").exists() and not (repo_dir / "model.bin.mlvc").exists()
    obj.unlink()
    r = mlvc_cli(repo_dir, "import-dvc", "model.bin")
    assert r.code == 7 and "dvc pull" in r.err, r
    r = mlvc_cli(repo_dir, "import-dvc", "data/images.dvc")
    assert r.code == 4 and "already has an mlvc pointer" in r.err, r
    r = mlvc_cli(repo_dir, "import-dvc", "nothing-here")
    assert r.code == 4 and "is not a .dvc file" in r.err, r
