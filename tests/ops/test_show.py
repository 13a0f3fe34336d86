"""`mlvc show` of an artifact, and of a checkpoint that is not tracked yet (issue 9)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import commit, mlvc_cli, write

from mlvc.errors import EXIT_BAD_PATH

torch = pytest.importorskip("torch")


def test_an_untracked_checkpoint_shows_its_birth_certificate(repo_dir: Path) -> None:
    import mlvc.torch as mt

    write(repo_dir / "train.py", "print()\n")
    sha = commit(repo_dir, "init")
    mt.save(torch.nn.Linear(2, 2), repo_dir / "ckpt" / "m.pt", params={"lr": 0.25}, epoch=4)
    r = mlvc_cli(repo_dir, "show", "ckpt/m.pt")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "path: ckpt/m.pt"
    assert lines[1] == "tracked: no (run `mlvc add ckpt/m.pt` to track it)"
    assert f"  commit: {sha}" in lines and "  params.lr: 0.25" in lines and "  epoch: 4" in lines
    doc = json.loads(mlvc_cli(repo_dir, "show", "ckpt/m.pt", "--json").out)
    assert doc["tracked"] is False and doc["provenance"]["source"] == "workspace"
    assert doc["format"] == "torch-zip" and doc["size"] == (repo_dir / "ckpt" / "m.pt").stat().st_size
    r = mlvc_cli(repo_dir, "show", "ckpt/m.pt", "--field", "params.lr")
    assert r.code == 0 and r.out.strip() == "0.25"
    # once tracked it is shown from its pointer, as before
    assert mlvc_cli(repo_dir, "add", "-q", "ckpt/m.pt").code == 0
    doc = json.loads(mlvc_cli(repo_dir, "show", "ckpt/m.pt", "--json").out)
    assert doc["tracked"] is True and doc["id"].startswith("xxh128:") and doc["provenance"]["commit"] == sha


def test_an_untracked_safetensors_checkpoint_is_shown_too(repo_dir: Path) -> None:
    import mlvc.torch as mt

    mt.save(torch.nn.Linear(2, 2), repo_dir / "m.safetensors", epoch=7)
    doc = json.loads(mlvc_cli(repo_dir, "show", "m.safetensors", "--json").out)
    assert doc["tracked"] is False and doc["format"] == "safetensors" and doc["provenance"]["epoch"] == 7


@pytest.mark.parametrize("make", ["plain-bytes", "checkpoint-without-certificate", "missing"])
def test_an_untracked_file_without_a_certificate_is_still_not_tracked(repo_dir: Path, make: str) -> None:
    if make == "plain-bytes":
        write(repo_dir / "x.pt", os.urandom(100))
    elif make == "checkpoint-without-certificate":
        torch.save({"w": torch.zeros(2)}, repo_dir / "x.pt")
    r = mlvc_cli(repo_dir, "show", "x.pt")
    if make == "missing":  # `mlvc add x.pt` could not help (issue 22)
        assert r.code == EXIT_BAD_PATH and r.err.startswith("error: x.pt: does not exist and is not tracked"), r
        assert "mlvc add" not in r.err
    else:
        assert r.code == EXIT_BAD_PATH and r.err.startswith("error: x.pt: is not tracked by mlvc"), r


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-show",))


def test_an_untracked_malicious_checkpoint_is_reported_not_run(repo_dir: Path) -> None:
    torch.save({"model": {"w": torch.zeros(2)}, "mlvc": Evil()}, repo_dir / "evil.pt")
    r = mlvc_cli(repo_dir, "show", "evil.pt")
    assert r.code == 0 and "tracked: no" in r.out and "refusing to load code" in r.out, r
    assert not (repo_dir / "pwned-by-show").exists()
