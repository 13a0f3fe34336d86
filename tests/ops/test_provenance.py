"""`mlvc show` reads a checkpoint's embedded provenance without torch and without running pickle."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from helpers import git, mlvc_cli
from torch import nn

import mlvc
import mlvc.torch as mt
from mlvc.ops.common import select
from mlvc.ops.provenance import provenance_of
from mlvc.repo import Repo



def commit_all(repo: Path, msg: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD").strip()


def prov(repo_dir, target):
    repo = Repo.find(repo_dir)
    try:
        (t,) = select(repo, [target])
        return provenance_of(repo, t)
    finally:
        repo.close()


def test_file_checkpoint_from_workspace_then_from_cache(repo_dir):
    sha = commit_all(repo_dir, "init")
    mt.save(nn.Linear(4, 4), "ckpt/m.pt", params={"lr": 0.01, "opt": {"name": "adam"}}, epoch=2)
    mlvc.add("ckpt/m.pt")
    p = prov(repo_dir, "ckpt/m.pt")
    assert p["commit"] == sha and p["params.lr"] == 0.01 and p["params.opt.name"] == "adam"
    assert p["epoch"] == 2 and p["source"] == "workspace"
    os.remove("ckpt/m.pt")
    p2 = prov(repo_dir, "ckpt/m.pt")
    assert p2["commit"] == sha and p2["source"] == "cache"


def test_directory_of_checkpoints(repo_dir):
    sha = commit_all(repo_dir, "init")
    mt.save(nn.Linear(2, 2), "ckpts/a.pt", epoch=1)
    mt.save(nn.Linear(2, 2), "ckpts/b.safetensors", epoch=2)
    Path("ckpts/notes.txt").write_text("hi")
    mlvc.add("ckpts")
    p = prov(repo_dir, "ckpts")
    assert p["commit"] == sha and p["file"] in ("a.pt", "b.safetensors")
    assert p["files.a.pt.epoch"] == 1 and p["files.b.safetensors.epoch"] == 2
    r = mlvc_cli(repo_dir, "show", "ckpts", "--field", "commit")
    assert r.code == 0 and r.out.strip() == sha


def test_not_a_checkpoint_has_no_provenance(repo_dir):
    Path("data.bin").write_bytes(os.urandom(1000))
    mlvc.add("data.bin")
    assert prov(repo_dir, "data.bin") is None
    torch.save({"w": torch.zeros(3)}, "plain.pt")  # a checkpoint without a birth certificate
    mlvc.add("plain.pt")
    assert prov(repo_dir, "plain.pt") is None


def test_show_field_commit_without_torch(repo_dir):
    sha = commit_all(repo_dir, "init")
    mt.save(nn.Linear(2, 2), "m.pt", params={"lr": 0.5})
    mlvc.add("m.pt")
    out = mlvc_cli(repo_dir, "show", "m.pt", "--field", "commit", without=("torch",))
    assert out.code == 0, out.err
    assert out.out.strip() == sha
    out = mlvc_cli(repo_dir, "show", "m.pt", "--field", "params.lr", without=("torch",))
    assert out.out.strip() == "0.5"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-show",))


def test_malicious_checkpoint_is_reported_not_executed(repo_dir):
    torch.save({"model": {"w": torch.zeros(2)}, "mlvc": Evil()}, "evil.pt")
    mlvc.add("evil.pt")
    r = mlvc_cli(repo_dir, "show", "evil.pt", "--json")
    assert r.code == 0
    assert "refusing to load code" in r.out  # provenance_error
    assert not Path("pwned-by-show").exists()
