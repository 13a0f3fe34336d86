"""A registry repository for the source tests: datasets and a model tracked by mlvc, pushed to a
remote, at two tagged versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers import commit, git, write

import mlvc as api
from mlvc.remote.config import add_remote
from mlvc.repo import Repo


def blob(seed: int, n: int) -> bytes:
    """`n` incompressible bytes, the same for the same seed."""
    import random

    return random.Random(seed).randbytes(n)


@dataclass
class Registry:
    path: Path
    v1: str  # commit ids
    v2: str

    def v1_bytes(self, rel: str) -> bytes:
        return V1[rel]

    def v2_bytes(self, rel: str) -> bytes:
        return V2[rel]


V1 = {"datasets/images/img000.png": blob(0, 300_000), "datasets/images/img001.png": blob(1, 300_000),
      "datasets/images/labels/a.txt": b"cat\n", "models/base.bin": blob(2, 400_000)}
V2 = {**V1, "datasets/images/img001.png": blob(3, 300_000), "datasets/images/img002.png": blob(4, 300_000)}


def make_registry(path: Path, remote_url: str, remote_options: dict | None = None) -> Registry:
    """A git work tree at `path` with `datasets/images` and `models/base.bin` tracked, pushed to the
    remote `store` (committed in .mlvc/config; secrets, as mlvc keeps them, in config.local), v1
    and v2 tagged."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo.init(path)
    add_remote(repo, "store", remote_url, dict(remote_options or {}), make_default=True)
    ids = []
    for version, files in (("v1", V1), ("v2", V2)):
        for rel, data in files.items():
            write(path / rel, data)
        write(path / "README.md", f"registry {version}\n")
        api.add([str(path / "datasets" / "images"), str(path / "models" / "base.bin")], repo=path)
        res = api.push(repo=path)
        assert not res.failed, res.failed
        ids.append(commit(path, version, tag=version))
    return Registry(path, *ids)


def served_bare(registry: Registry, served: Path, name: str = "registry.git") -> Path:
    """A bare clone of the registry under a git server's directory."""
    git(served, "clone", "-q", "--bare", str(registry.path), name)
    return served / name


__all__ = ["Registry", "make_registry", "served_bare", "blob", "V1", "V2"]
