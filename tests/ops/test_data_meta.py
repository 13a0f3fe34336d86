"""What produced a data version (config path + hash, seed) stays honest across re-adds (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import mlvc_cli, write

from mlvc.ops.data_meta import carry_over
from mlvc.pointer import load


def meta_of(repo_dir: Path, name: str = "d") -> dict:
    return load(repo_dir / f"{name}.mlvc").meta


def test_the_cli_records_config_and_seed_as_the_api_does(repo_dir: Path) -> None:
    import mlvc

    write(repo_dir / "cfg.yaml", "n: 1\n")
    write(repo_dir / "d" / "a.csv", "a\n")
    write(repo_dir / "e" / "a.csv", "a\n")
    r = mlvc_cli(repo_dir, "add", "-q", "d", "--config", "cfg.yaml", "--seed", "3")
    assert r.code == 0 and r.err == "", r
    mlvc.add("e", config="cfg.yaml", seed=3)
    assert meta_of(repo_dir) == meta_of(repo_dir, "e")
    assert meta_of(repo_dir)["config"] == "cfg.yaml" and meta_of(repo_dir)["seed"] == 3
    assert meta_of(repo_dir)["config_hash"].startswith("xxh128:")
    assert mlvc_cli(repo_dir, "add", "d", "--seed", "x").code == 2
    r = mlvc_cli(repo_dir, "add", "d", "--config", "nope.yaml")
    assert r.code == 4 and "nope.yaml: config file does not exist" in r.err


def test_changed_data_drops_the_old_config_and_seed_unless_given_again(repo_dir: Path) -> None:
    write(repo_dir / "cfg.yaml", "n: 1\n")
    write(repo_dir / "d" / "a.csv", "a\n")
    assert mlvc_cli(repo_dir, "add", "-q", "d", "--config", "cfg.yaml", "--seed", "3", "--meta", "source=s3").code == 0
    write(repo_dir / "d" / "b.csv", "b\n")  # new bytes, produced by who knows what
    r = mlvc_cli(repo_dir, "add", "d")
    assert r.code == 0 and r.err == ("warning: d: its content changed, so the recorded config, config_hash, seed "
                                     "no longer describe it and were dropped; pass --config/--seed (config=/seed=) "
                                     "to record what produced the new bytes\n"), r
    assert meta_of(repo_dir) == {"source": "s3"}  # the rest of the meta stays
    doc = json.loads(mlvc_cli(repo_dir, "add", "d", "--json").out)
    assert doc[0]["warnings"] == []  # unchanged: nothing to drop, nothing to say

    write(repo_dir / "cfg.yaml", "n: 2\n")
    write(repo_dir / "d" / "c.csv", "c\n")
    r = mlvc_cli(repo_dir, "add", "d", "--config", "cfg.yaml", "--seed", "4")
    assert r.code == 0 and r.err == "", r
    m = meta_of(repo_dir)
    assert m["seed"] == 4 and m["config"] == "cfg.yaml" and m["source"] == "s3"
    # only a seed given again: the old config no longer describes the new bytes either
    write(repo_dir / "d" / "e.csv", "e\n")
    r = mlvc_cli(repo_dir, "add", "d", "--seed", "5")
    assert "recorded config, config_hash no longer describe it" in r.err, r
    assert meta_of(repo_dir) == {"source": "s3", "seed": 5}


def test_a_config_that_changed_since_the_data_was_added_is_flagged(repo_dir: Path) -> None:
    write(repo_dir / "cfg.yaml", "n: 1\n")
    write(repo_dir / "d" / "a.csv", "a\n")
    assert mlvc_cli(repo_dir, "add", "-q", "d", "--config", "cfg.yaml").code == 0
    before = meta_of(repo_dir)["config_hash"]
    assert "note:" not in mlvc_cli(repo_dir, "status").out
    write(repo_dir / "cfg.yaml", "n: 2\n")
    r = mlvc_cli(repo_dir, "status", "--exit-code")
    assert r.code == 0, r  # the data itself is unchanged
    note = f"    note: d: its config cfg.yaml changed since the data was added ({before}, now xxh128:"
    assert r.out.startswith("d: unchanged\n" + note), r.out
    assert "re-create the data and `mlvc add d --config cfg.yaml`" in r.out
    r = mlvc_cli(repo_dir, "add", "d")  # re-adding the same bytes keeps the record, and says it is stale
    assert r.err.startswith("warning: d: its config cfg.yaml changed since the data was added"), r
    assert meta_of(repo_dir)["config_hash"] == before
    (repo_dir / "cfg.yaml").unlink()
    st = json.loads(mlvc_cli(repo_dir, "status", "--json").out)
    assert st[0]["config_changed"] == f"d: its config cfg.yaml is gone (the data was added with {before})"


def test_carry_over_rules():
    old = {"config": "c.yaml", "config_hash": "xxh128:1", "seed": 1, "lr": 0.1}
    assert carry_over(old, {}, False, "d") == (old, [])
    meta, warnings = carry_over(old, {"config_hash": "xxh128:2"}, True, "d")  # a dict config: no path
    assert meta == {"config_hash": "xxh128:2", "lr": 0.1} and "recorded seed no longer" in warnings[0]
    assert carry_over(None, {"seed": 2}, False, "d") == ({"seed": 2}, [])


def test_config_or_seed_make_a_tensor_dataset_role_data_and_add_says_so(repo_dir: Path) -> None:
    import torch

    import mlvc

    write(repo_dir / "c.yaml", "n: 1\n")
    for name in ("data", "data2", "data3"):
        (repo_dir / name).mkdir()
        torch.save({"x": torch.arange(8.0), "y": torch.zeros(8)}, repo_dir / name / "x.pt")
    r = mlvc_cli(repo_dir, "add", "data", "--config", "c.yaml", "--seed", "42")
    assert r.code == 0, r
    assert load(repo_dir / "data.mlvc").role == "data"
    assert "role data" in r.out, r.out
    assert mlvc.add("data2", seed=1).role == "data"  # the API infers it too
    assert mlvc_cli(repo_dir, "add", "-q", "data3", "--seed", "1", "--role", "other").code == 0
    assert load(repo_dir / "data3.mlvc").role == "other"  # a given role wins
    manifest = json.loads(mlvc_cli(repo_dir, "manifest", "--json").out)
    assert {a["path"]: a["role"] for a in manifest["artifacts"]} == {"data": "data", "data2": "data", "data3": "other"}
    r = mlvc_cli(repo_dir, "add", "data")  # re-added unchanged: the recorded role stays and is said
    assert load(repo_dir / "data.mlvc").role == "data" and "role data" in r.out, r
