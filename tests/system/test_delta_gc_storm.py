"""The fresh-commit storm (`test_fresh_commit_storm.py`) with the float codec on: each machine
overwrites `last.pt` with the next checkpoint of its run, adds it, overwrites it with the one
after, adds and commits that, so every committed version is stored and pushed as XOR deltas
against a version no commit names (garbage to gc, but the base of a delta that stays), while a
gc clone loops `git fetch` + `mlvc gc --remote --all-commits --grace 0`.  A delta's base must
never go while a delta that stays needs it: afterwards a fresh clone restores every commit
byte-exact from the remote alone, and `verify --remote --read-data` reads every delta with its
base."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import pytest
import torch

from system.test_fresh_commit_storm import storm


@cache
def checkpoint(pusher: int, k: int) -> bytes:
    """Step `k` of a pusher's training run, as `torch.save` bytes: each step moves the weights a
    little, so its blocks are stored as deltas against step k - 1's."""
    g = torch.Generator().manual_seed(pusher)
    w = torch.randn(128, 1024, generator=g) * 0.02
    b = torch.randn(1024, generator=g) * 0.02
    for _ in range(k):
        w = w + torch.randn(128, 1024, generator=g) * 2e-5
        b = b + torch.randn(1024, generator=g) * 2e-5
    buf = io.BytesIO()
    torch.save({"layer.weight": w, "layer.bias": b}, buf)
    return buf.getvalue()


def version(pusher: int, k: int) -> dict[str, bytes]:
    """A pusher's commit k: step 2k of its run."""
    return {"last.pt": checkpoint(pusher, 2 * k)}


def pre_version(pusher: int, k: int) -> dict[str, bytes]:
    """Step 2k - 1: added (the base of step 2k's deltas), never committed."""
    return {"last.pt": checkpoint(pusher, 2 * k - 1)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_pushers_of_delta_checkpoints_beside_a_fetch_and_gc_loop_lose_nothing(tmp_path: Path, kind, request,
                                                                               spawn_workers) -> None:
    storm(tmp_path, request.getfixturevalue(f"{kind}_url"), spawn_workers, pushers=4, commits=8,
          version=version, pre_version=pre_version, paths=("last.pt",), core={"float_planes": True})
    remote_deltas(tmp_path)


def remote_deltas(tmp_path: Path) -> None:
    """The pushes did store deltas (else this storm would test nothing a plain one does not)."""
    from helpers import chunk_codecs

    from mlvc.codec import DELTA

    caches = [p / ".mlvc" / "cache" for p in tmp_path.glob("machine*")]
    assert sum(chunk_codecs(c).get(DELTA, 0) for c in caches) >= 4 * 7 * 4, [chunk_codecs(c) for c in caches]
