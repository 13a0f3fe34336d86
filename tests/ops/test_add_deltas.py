"""With the float codec on (`core.float_planes: true`), a checkpoint's float tensors are cut into
fixed blocks from each tensor's start, and a block is stored as a XOR delta (codec DELTA) against
the block at the same offset of the same tensor in the previous checkpoint of the run (a sibling
added at once, in natural order) or the previous version of the same path (`last.pt` overwritten),
when that is smaller.  Every restore is byte-exact; chains stay within `MAX_DELTA_DEPTH`."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from helpers import chunk_codecs, commit, mlvc_cli, open_cache, verify_cache

from remote.helpers import set_core  # isort: skip

from mlvc.codec import DELTA, MAX_DELTA_DEPTH
from mlvc.store.packs import CHUNK


@pytest.fixture(autouse=True)
def _planes_on(repo_dir):
    set_core(repo_dir, "float_planes", True)


def run_of(n: int, seed: int = 0, shape=(200, 1000)) -> list[dict]:
    """`n` state dicts of a 'training run': each step moves the weights a little (as an optimizer
    step does: the sign, exponent and high mantissa bits mostly stay), the buffers not at all."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    b = torch.randn(shape[1], generator=g) * 0.02
    steps = []
    for _ in range(n):
        w = w + torch.randn(*shape, generator=g) * 2e-5
        b = b + torch.randn(shape[1], generator=g) * 2e-5
        steps.append({"layer.weight": w.clone(), "layer.bias": b.clone(), "steps": torch.arange(1000)})
    return steps


def restore_all(repo_dir, expect: dict) -> None:
    for rel in expect:
        (repo_dir / rel).unlink()
    r = mlvc_cli(repo_dir, "checkout", "--force")
    assert r.code == 0, r
    for rel, body in expect.items():
        assert (repo_dir / rel).read_bytes() == body, rel


def max_depth(cache) -> int:
    with open_cache(cache) as store:
        return max((store.delta_depth(oid) or 0) for oid in store.iter_ids(CHUNK))


def test_a_run_added_at_once_is_stored_as_deltas_in_natural_order(repo_dir):
    ck = repo_dir / "checkpoints"
    ck.mkdir()
    steps = run_of(4)
    names = ["step_40.pt", "step_80.pt", "step_120.pt", "step_160.pt"]  # 120 sorts before 40 as text
    for name, sd in zip(names, steps, strict=True):
        torch.save(sd, ck / name)
    expect = {f"checkpoints/{n}": (ck / n).read_bytes() for n in names}
    r = mlvc_cli(repo_dir, "add", "--json", "checkpoints")
    assert r.code == 0, r
    cache = repo_dir / ".mlvc" / "cache"
    codecs = chunk_codecs(cache)
    assert codecs.get(DELTA, 0) >= 3 * 12, codecs  # 3 later steps x 800 KB of weights in 64 KiB blocks
    import json
    res = json.loads(r.out)[0]
    assert res["stored_bytes"] < 0.72 * res["new_bytes"], res  # independent planes: ~84% (here 0.64)
    commit(repo_dir, "run")
    restore_all(repo_dir, expect)
    assert verify_cache(cache).ok


def test_deltas_follow_tensors_across_renamed_checkpoints(repo_dir):
    """torch.save writes the file's name into every zip record: checkpoints saved under names
    of other lengths hold each tensor at other file offsets, and deltas still find their base."""
    ck = repo_dir / "ckpts"
    ck.mkdir()
    names = ["a.pt", "a_name_that_shifts_every_record_by_a_few_bytes.pt", "b" * 120 + ".pt"]
    for name, sd in zip(names, run_of(3, seed=1), strict=True):
        torch.save(sd, ck / name)
    from mlvc.checkpoint import read_layout

    offsets = set()
    for name in names:
        with open(ck / name, "rb") as f:
            offsets.add(read_layout(f).tensor("layer.weight").offset)
    assert len(offsets) == 3  # the same tensor lies at three different file offsets
    expect = {f"ckpts/{n}": (ck / n).read_bytes() for n in names}
    assert mlvc_cli(repo_dir, "add", "ckpts").code == 0
    assert chunk_codecs(repo_dir / ".mlvc" / "cache").get(DELTA, 0) >= 2 * 12
    commit(repo_dir, "run")
    restore_all(repo_dir, expect)


def test_last_pt_overwritten_is_stored_against_its_previous_version(repo_dir):
    cache = repo_dir / ".mlvc" / "cache"
    steps = run_of(MAX_DELTA_DEPTH + 3, seed=2)
    versions = []
    for i, sd in enumerate(steps):
        torch.save(sd, repo_dir / "last.pt")
        versions.append((repo_dir / "last.pt").read_bytes())
        assert mlvc_cli(repo_dir, "add", "last.pt").code == 0
        commit(repo_dir, f"step {i}", tag=f"s{i}")
        if i == 0:
            assert chunk_codecs(cache).get(DELTA, 0) == 0
        elif i == 1:
            assert chunk_codecs(cache).get(DELTA, 0) >= 12
    assert max_depth(cache) == MAX_DELTA_DEPTH  # the chain starts again past its bound
    for i, body in enumerate(versions):  # every version restores exactly
        from helpers import git

        git(repo_dir, "checkout", "-q", f"s{i}")
        assert mlvc_cli(repo_dir, "checkout", "--force").code == 0
        assert (repo_dir / "last.pt").read_bytes() == body, i
    assert verify_cache(cache).ok


def test_a_delta_is_kept_only_when_smaller(repo_dir):
    """Unrelated values under the same tensor names (a moment estimate redrawn): no delta pays."""
    ck = repo_dir / "ck"
    ck.mkdir()
    for i in range(2):
        g = torch.Generator().manual_seed(10 + i)
        torch.save({"layer.weight": torch.randn(200, 1000, generator=g) * 0.02}, ck / f"s{i}.pt")
    assert mlvc_cli(repo_dir, "add", "ck").code == 0
    assert chunk_codecs(repo_dir / ".mlvc" / "cache").get(DELTA, 0) == 0


def test_deltas_are_off_with_the_float_codec(repo_dir):
    cfg = repo_dir / ".mlvc" / "config"
    data = yaml.safe_load(cfg.read_text())
    data["core"]["float_planes"] = False
    cfg.write_text(yaml.safe_dump(data))
    ck = repo_dir / "ck"
    ck.mkdir()
    for i, sd in enumerate(run_of(2, seed=3)):
        torch.save(sd, ck / f"s{i}.pt")
    assert mlvc_cli(repo_dir, "add", "ck").code == 0
    assert chunk_codecs(repo_dir / ".mlvc" / "cache").get(DELTA, 0) == 0
    shutil.rmtree(ck)


def test_a_tensor_whose_deltas_never_pay_is_not_encoded_as_one_past_its_first_blocks(repo_dir, monkeypatch):
    """A moment estimate redrawn at every step: after the first blocks of the tensor, its blocks
    are encoded on their own only (a probe now and then), not both ways each time."""
    from helpers import ok

    from mlvc import codec

    deltas = []
    encode_delta = codec.encode_delta
    monkeypatch.setattr(codec, "encode_delta", lambda *a, **k: deltas.append(1) or encode_delta(*a, **k))
    ck = repo_dir / "ck"
    ck.mkdir()
    for i in range(4):
        g = torch.Generator().manual_seed(20 + i)
        torch.save({"layer.weight": torch.randn(200, 1000, generator=g) * 0.02}, ck / f"s{i}.pt")
    ok(repo_dir, "add", "ck")
    assert chunk_codecs(repo_dir / ".mlvc" / "cache").get(DELTA, 0) == 0
    assert 0 < len(deltas) <= 6, len(deltas)  # 3 later steps x 13 blocks were each encoded both ways
