"""`mlvc gc --repack`: the kept checkpoints' float chunks stored smaller (byte planes, or XOR
deltas against the previous version once the cache holds it), small packs merged, garbage
dropped as gc drops it; every version restores byte-exact and the cache verifies."""

from __future__ import annotations

import json
import subprocess

import torch
from helpers import chunk_codecs, cli, commit, git, ok, verify_cache
from safetensors.torch import save_file

from remote.helpers import set_core  # isort: skip

from mlvc.codec import DELTA, PLANES


def run_of(n: int, seed: int = 0, shape=(256, 512)) -> list[dict]:
    """`n` state dicts of a training run: each step moves the weights a little."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    b = torch.randn(shape[1], generator=g) * 0.02
    out = []
    for _ in range(n):
        w = w + torch.randn(*shape, generator=g) * 2e-5
        b = b + torch.randn(shape[1], generator=g) * 2e-5
        out.append({"layer.weight": w.clone(), "layer.bias": b.clone()})
    return out


def pack_bytes(repo) -> int:
    return sum(p.stat().st_size for p in (repo / ".mlvc" / "cache" / "packs").glob("*.pack"))


def repack(repo, *args: str) -> dict:
    return json.loads(ok(repo, "gc", "--all-commits", "--repack", "--json", *args))


def workspace_files(repo, top: str) -> dict[str, bytes]:
    root = repo / top
    if root.is_file():
        return {top: root.read_bytes()}
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def restores(repo, rev: str, expect: dict[str, bytes]) -> None:
    out = repo.parent / f"export-{rev}"
    ok(repo, "checkout", "-q", "--to", str(out), rev)
    assert workspace_files(out, next(iter(expect)).split("/")[0]) == expect, rev


def test_a_run_added_with_the_codec_off_is_stored_smaller_and_restores(repo_dir):
    ck = repo_dir / "ck"
    ck.mkdir()
    for i, sd in enumerate(run_of(4)):
        torch.save(sd, ck / f"step_{(i + 1) * 40}.pt")
        save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, str(ck / f"step_{(i + 1) * 40}.safetensors"))
    expect = workspace_files(repo_dir, "ck")
    ok(repo_dir, "add", "-q", "ck")
    commit(repo_dir, "run", tag="run")
    assert set(chunk_codecs(repo_dir / ".mlvc" / "cache")) <= {0, 1}  # raw or zstd: the codec is off
    before = pack_bytes(repo_dir)
    res = repack(repo_dir, "--grace", "0")
    after = pack_bytes(repo_dir)
    assert res["chunks_recoded"] > 0 and res["stored_bytes_after"] < res["stored_bytes_before"], res
    assert after < 0.85 * before, (after, before)  # fp32 planes ~83%, bf16 ~66%
    assert chunk_codecs(repo_dir / ".mlvc" / "cache").get(PLANES, 0) > 0
    assert verify_cache(repo_dir / ".mlvc" / "cache").ok
    restores(repo_dir, "run", expect)
    again = repack(repo_dir, "--grace", "0")
    assert again["chunks_recoded"] == 0 and again["packs_written"] == 0, again
    assert pack_bytes(repo_dir) == after


def test_a_base_that_arrives_later_is_found(tmp_path, monkeypatch):
    """`last.pt` v2 added in a clone whose cache lacks v1 is stored whole (planes); once v1 is
    fetched, the repack stores v2's blocks as deltas against v1's."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    ok(origin, "init", "-q")
    set_core(origin, "float_planes", True)
    ok(origin, "remote", "add", "-q", "shared", str(tmp_path / "remote"), "--default")
    steps = run_of(2, seed=1)
    torch.save(steps[0], origin / "last.pt")
    v1 = (origin / "last.pt").read_bytes()
    ok(origin, "add", "-q", "last.pt")
    commit(origin, "v1", tag="v1")
    ok(origin, "push", "-q")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
    monkeypatch.chdir(clone)
    torch.save(steps[1], clone / "last.pt")
    v2 = (clone / "last.pt").read_bytes()
    ok(clone, "add", "-q", "last.pt")
    commit(clone, "v2", tag="v2")
    cache = clone / ".mlvc" / "cache"
    assert chunk_codecs(cache).get(DELTA, 0) == 0  # its base was not here
    ok(clone, "fetch", "-q", "--all-commits")
    before = pack_bytes(clone)
    res = repack(clone, "--grace", "0")
    assert res["recoded_as_deltas"] >= 8, res  # 512 KiB of weights in 64 KiB blocks
    assert chunk_codecs(cache).get(DELTA, 0) >= 8
    assert pack_bytes(clone) < 0.85 * before
    assert verify_cache(cache).ok
    restores(clone, "v1", {"last.pt": v1})
    restores(clone, "v2", {"last.pt": v2})
    assert repack(clone, "--grace", "0")["chunks_recoded"] == 0


def test_recent_packs_keep_their_garbage_but_are_repacked(repo_dir):
    """Within the grace, nothing is dropped (a pack younger than it keeps every object), but the
    kept chunks are stored smaller all the same."""
    sd = run_of(1, seed=2)[0]
    torch.save(sd, repo_dir / "model.pt")
    v1 = (repo_dir / "model.pt").read_bytes()
    ok(repo_dir, "add", "-q", "model.pt")
    commit(repo_dir, "v1", tag="v1")
    torch.save({k: v * 2 for k, v in sd.items()}, repo_dir / "model.pt")
    ok(repo_dir, "add", "-q", "model.pt")  # never committed: garbage
    git(repo_dir, "checkout", "-q", "--", "model.pt.mlvc")
    res = repack(repo_dir)  # the default grace: an hour
    assert res["objects_removed"] == 0 and res["chunks_recoded"] > 0, res
    res = repack(repo_dir, "--grace", "0")
    assert res["objects_removed"] > 0, res
    restores(repo_dir, "v1", {"model.pt": v1})


def test_dry_run_changes_nothing_and_says_what_it_would_do(repo_dir):
    torch.save(run_of(1, seed=3)[0], repo_dir / "model.pt")
    ok(repo_dir, "add", "-q", "model.pt")
    commit(repo_dir, "v1")
    packs = sorted(p.name for p in (repo_dir / ".mlvc" / "cache" / "packs").iterdir())
    out = ok(repo_dir, "gc", "--all-commits", "--repack", "--dry-run", "--grace", "0")
    assert "would re-encode" in out
    assert sorted(p.name for p in (repo_dir / ".mlvc" / "cache" / "packs").iterdir()) == packs


def test_repack_is_quiet_with_q_and_refused_on_a_remote(repo_dir):
    torch.save(run_of(1, seed=4)[0], repo_dir / "model.pt")
    ok(repo_dir, "add", "-q", "model.pt")
    commit(repo_dir, "v1")
    assert ok(repo_dir, "gc", "--all-commits", "--repack", "-q", "--grace", "0") == ""
    ok(repo_dir, "remote", "add", "-q", "shared", str(repo_dir.parent / "remote"))
    code, _out, err = cli(repo_dir, "gc", "--all-commits", "--repack", "--remote", "shared")
    assert code == 2 and "cache only" in err, err


def test_a_damaged_chunk_stops_the_repack_before_anything_goes(repo_dir):
    """A chunk that fails its check is never re-encoded or copied (that would launder the damage
    into a new pack): one error line, exit 6, and every old pack stays."""
    from helpers import one_error

    from mlvc.store.packs import CHUNK, decode_index

    torch.save(run_of(1, seed=5)[0], repo_dir / "model.pt")
    ok(repo_dir, "add", "-q", "model.pt")
    commit(repo_dir, "v1")
    packs = repo_dir / ".mlvc" / "cache" / "packs"
    idx = next(packs.glob("*.idx"))
    biggest = max((e for e in decode_index(idx.read_bytes(), idx.name) if e.type == CHUNK), key=lambda e: e.stored)
    pack = idx.with_suffix(".pack")
    body = bytearray(pack.read_bytes())
    body[biggest.offset + biggest.stored // 2] ^= 0xFF
    pack.write_bytes(bytes(body))
    code, _out, err = cli(repo_dir, "gc", "--all-commits", "--repack", "--grace", "0")
    assert code == 6, err
    assert "xxh128:" in one_error(err), err
    assert pack.exists() and idx.exists()
