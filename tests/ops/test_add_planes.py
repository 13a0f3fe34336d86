"""With `core.float_planes: true`, `add` stores a checkpoint's float chunks as byte planes (the dtype
from its layout), beside the chunker; checkout, verify and a push restore and check them byte-exactly.
Without it (the default) they keep the zstd-or-raw rule."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
import yaml
from helpers import chunk_codecs, commit, mlvc_cli, verify_cache

from remote.helpers import set_core  # isort: skip

from mlvc.store.packs import PLANES, decode_index


@pytest.fixture(autouse=True)
def _planes_on(repo_dir):
    set_core(repo_dir, "float_planes", True)


def test_float_planes_are_off_by_default(repo_dir):
    cfg = repo_dir / ".mlvc" / "config"
    data = yaml.safe_load(cfg.read_text())
    del data["core"]["float_planes"]  # back to what `mlvc init` wrote
    cfg.write_text(yaml.safe_dump(data))
    from safetensors.torch import save_file

    save_file({"w": _trained((300, 1000), 5, torch.bfloat16)}, str(repo_dir / "w.safetensors"))
    assert mlvc_cli(repo_dir, "add", "w.safetensors").code == 0
    assert PLANES not in chunk_codecs(repo_dir / ".mlvc" / "cache")


def _trained(shape, seed, dtype=None):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g) * 0.02
    return t.to(dtype) if dtype is not None else t


@pytest.mark.parametrize("big", [False, True], ids=["inline", "beside-the-chunker"])
def test_checkpoint_floats_are_stored_as_planes_and_restored_exactly(repo_dir, big):
    from safetensors.torch import save_file

    n = 1_500_000 if big else 200_000  # the helper thread encodes files of 4 MiB and more
    sd = {"w": _trained((n // 1000, 1000), 1), "half": _trained((n // 4,), 2, torch.float16),
          "ids": torch.arange(n // 8, dtype=torch.int64), "b": _trained((37,), 3)}
    torch.save({"model": sd, "optimizer": {"state": {0: {"exp_avg": _trained((n // 2,), 4)}}}},
               repo_dir / "ckpt.pt")
    save_file({"w": _trained((n // 1000, 1000), 5, torch.bfloat16)}, str(repo_dir / "w.safetensors"))
    expect = {p: (repo_dir / p).read_bytes() for p in ("ckpt.pt", "w.safetensors")}
    r = mlvc_cli(repo_dir, "add", "--json", "ckpt.pt", "w.safetensors")
    assert r.code == 0, r
    codecs = chunk_codecs(repo_dir / ".mlvc" / "cache")
    assert codecs.get(PLANES, 0) >= 2, codecs
    results = json.loads(r.out)
    for res in results:
        assert res["stored_bytes"] < 0.9 * res["new_bytes"], res  # fp32 ~84%, bf16 ~70%, ints ~0%
    commit(repo_dir, "v1")
    for p in expect:
        (repo_dir / p).unlink()
    assert mlvc_cli(repo_dir, "checkout").code == 0
    for p, body in expect.items():
        assert (repo_dir / p).read_bytes() == body
    assert verify_cache(repo_dir / ".mlvc" / "cache").ok


def test_planes_records_travel_as_stored_and_verify_on_the_remote(repo_dir, tmp_path):
    torch.save({"w": _trained((300, 1000), 7)}, repo_dir / "m.pt")
    assert mlvc_cli(repo_dir, "add", "m.pt").code == 0
    commit(repo_dir, "v1")
    remote = tmp_path / "remote"
    assert mlvc_cli(repo_dir, "remote", "add", "origin", str(remote), "--default").code == 0
    commit(repo_dir, "remote")
    assert mlvc_cli(repo_dir, "push").code == 0
    assert chunk_codecs(remote).get(PLANES, 0) >= 1
    assert mlvc_cli(repo_dir, "verify", "--remote", "origin", "--read-data").code == 0
    fresh = tmp_path / "fresh"  # a clone pulls the planes records and restores the exact bytes
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(fresh)], check=True)
    assert mlvc_cli(fresh, "pull").code == 0
    assert (fresh / "m.pt").read_bytes() == (repo_dir / "m.pt").read_bytes()
    assert chunk_codecs(fresh / ".mlvc" / "cache").get(PLANES, 0) >= 1  # kept as stored, not re-encoded


def test_a_planes_chunk_damaged_in_the_cache_is_refused_and_the_workspace_kept(repo_dir):
    torch.save({"w": _trained((300, 1000), 8)}, repo_dir / "m.pt")
    body = (repo_dir / "m.pt").read_bytes()
    assert mlvc_cli(repo_dir, "add", "m.pt").code == 0
    cache = repo_dir / ".mlvc" / "cache"
    idx = next((cache / "packs").glob("*.idx"))
    entry = next(e for e in decode_index(idx.read_bytes(), idx.name) if e.codec == PLANES)
    pack = idx.with_suffix(".pack")
    data = bytearray(pack.read_bytes())
    data[entry.offset + entry.stored - 1] ^= 0x40  # a bit of the last plane
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    (repo_dir / "m.pt").unlink()
    r = mlvc_cli(repo_dir, "checkout")
    assert r.code == 6, r
    assert not (repo_dir / "m.pt").exists()  # nothing half-restored
    assert len(body) > 1_000_000


def test_npy_float_arrays_are_stored_as_planes(repo_dir):
    import numpy as np

    rng = np.random.default_rng(4)
    np.save(repo_dir / "f32.npy", (rng.standard_normal(100_003) * 0.02).astype(np.float32))
    np.save(repo_dir / "c64.npy", (rng.standard_normal(40_000) * 0.5).astype(np.complex64))
    np.save(repo_dir / "i64.npy", np.arange(50_000, dtype=np.int64))
    expect = {p.name: p.read_bytes() for p in repo_dir.glob("*.npy")}
    r = mlvc_cli(repo_dir, "add", "--json", *sorted(expect))
    assert r.code == 0, r
    stored = {res["path"]: res["stored_bytes"] / res["new_bytes"] for res in json.loads(r.out)}
    assert stored["f32.npy"] < 0.9 and stored["c64.npy"] < 0.95, stored
    assert chunk_codecs(repo_dir / ".mlvc" / "cache").get(PLANES, 0) >= 2
    commit(repo_dir, "v1")
    for name in expect:
        (repo_dir / name).unlink()
    assert mlvc_cli(repo_dir, "checkout").code == 0
    assert {name: (repo_dir / name).read_bytes() for name in expect} == expect
