"""Per-module ids follow a model's real modules, Hugging Face layouts included."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from helpers import mlvc
from torch import nn

import mlvc.torch as mt
from mlvc import pointer as pointers


class Base(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(32, 8)
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.norm = nn.LayerNorm(8)


class CausalLM(nn.Module):
    """The shape of a Hugging Face `*ForCausalLM`: `model.*` and `lm_head`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Base()
        self.lm_head = nn.Linear(8, 32, bias=False)


HF_MODULES = {"model.embed_tokens", "model.layers", "model.norm", "lm_head"}


def _modules(path: str) -> dict:
    return pointers.load(Path(path + ".mlvc")).meta["modules"]


@pytest.mark.parametrize("how", ["state_dict", "mlvc_save", "safetensors"])
def test_hf_layout_records_the_real_top_level_modules(repo_dir: Path, how: str) -> None:
    torch.manual_seed(0)
    model = CausalLM()
    name = "model.safetensors" if how == "safetensors" else "model.pt"

    def save() -> None:
        if how == "state_dict":
            torch.save(model.state_dict(), name)
        elif how == "mlvc_save":
            mt.save(model, name)
        else:
            safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, name)

    save()
    assert mlvc("add", "-q", name) == 0
    before = _modules(name)
    assert set(before) == HF_MODULES
    assert before == mt.module_versions(model)  # the pointer agrees with the live model
    blocks = pointers.load(Path(name + ".mlvc")).meta["blocks"]
    assert blocks == mt.block_versions(model) and list(blocks) == ["model.layers.0", "model.layers.1"]
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    save()
    assert mlvc("add", "-q", name) == 0
    after = _modules(name)
    assert {m for m in after if after[m] != before[m]} == {"lm_head"}
    assert after == mt.module_versions(model)


def test_training_checkpoint_wrapper_is_still_skipped(repo_dir: Path) -> None:
    base = Base()
    opt = torch.optim.SGD(base.parameters(), lr=0.1, momentum=0.9)
    base.norm(base.embed_tokens(torch.tensor([1, 2]))).sum().backward()
    opt.step()  # momentum buffers: tensors under "optimizer."
    torch.save({"model": base.state_dict(), "optimizer": opt.state_dict()}, "ckpt.pt")
    assert mlvc("add", "-q", "ckpt.pt") == 0
    assert set(_modules("ckpt.pt")) == {"embed_tokens", "layers", "norm"}


def _save_sharded(model: nn.Module, d: Path) -> None:
    """Two safetensors shards and the `model.safetensors.index.json` naming them (save_pretrained's layout)."""
    import json

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    d.mkdir(parents=True, exist_ok=True)
    for fname, keys in shards.items():
        safetensors.torch.save_file({k: sd[k] for k in keys}, str(d / fname))
    index = {"metadata": {"total_size": 0}, "weight_map": {k: f for f, ks in shards.items() for k in ks}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    (d / "config.json").write_text("{}")


def test_sharded_safetensors_are_one_model_for_pointer_show_and_diff(repo_dir: Path) -> None:
    from helpers import commit

    import mlvc as api

    torch.manual_seed(1)
    model = CausalLM()
    _save_sharded(model, repo_dir / "hf")
    assert mlvc("add", "-q", "hf") == 0
    commit(repo_dir, "v1")
    modules = pointers.load(repo_dir / "hf.mlvc").meta["modules"]
    assert list(modules) == ["model.safetensors.index.json"]  # one model, not one per shard
    assert modules["model.safetensors.index.json"] == mt.module_versions(model)
    from mlvc.ops.show import show
    from mlvc.repo import Repo

    r = Repo.find(repo_dir)
    try:
        assert set(show(r, "hf")["meta"]["modules"]["model.safetensors.index.json"]) == HF_MODULES
    finally:
        r.close()
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
        model.model.embed_tokens.weight[0, 0] += 1.0
    _save_sharded(model, repo_dir / "hf")
    assert mlvc("add", "-q", "hf") == 0
    commit(repo_dir, "v2")
    (art,) = api.diff("HEAD~1", "HEAD").artifacts
    (cd,) = art.checkpoints
    assert cd.path == "model.safetensors.index.json" and cd.format == "sharded safetensors" and not cd.error
    assert set(cd.modules) == {"lm_head", "model.embed_tokens"}
    assert set(cd.unchanged_modules) == {"model.layers", "model.norm"}
    assert cd.tensors_compared == len(model.state_dict())


def test_show_of_one_shard_prints_only_that_shards_modules(repo_dir: Path) -> None:
    import json

    from helpers import commit, mlvc_cli
    from hf_model import llama_state, save_pretrained

    shards = save_pretrained(llama_state(layers=4), repo_dir / "model", shards=4)
    assert mlvc("add", "-q", "model") == 0
    commit(repo_dir, "v1")
    index_ids = pointers.load(repo_dir / "model.mlvc").meta["modules"]["model.safetensors.index.json"]
    first = mlvc_cli(repo_dir, "show", f"model/{shards[0]}", "--json")
    assert first.code == 0, first.err
    info = json.loads(first.out)
    assert info["modules"] == {m: index_ids[m] for m in ("model.embed_tokens", "model.layers")}
    assert "modules" not in info["meta"]  # the other shards' ids are not this file's
    blocks = pointers.load(repo_dir / "model.mlvc").meta["blocks"]["model.safetensors.index.json"]
    assert info["blocks"] == {"model.layers.0": blocks["model.layers.0"]}  # tensors 1-9 of 39: layer 0
    assert "blocks" not in info["meta"]
    last = mlvc_cli(repo_dir, "show", f"model/{shards[-1]}")
    assert last.code == 0, last.err
    assert "lm_head" in last.out and "model.norm" in last.out and "embed_tokens" not in last.out
    assert "model.layers.3:" in last.out and "model.layers.0:" not in last.out, last.out
    config = json.loads(mlvc_cli(repo_dir, "show", "model/config.json", "--json").out)
    assert config["modules"] is None and "modules" not in config["meta"]


def test_repeated_blocks_get_ids_so_diff_show_and_report_name_the_layer(repo_dir: Path) -> None:
    import json

    from helpers import commit, mlvc_cli
    from hf_model import llama_state, save_pretrained

    import mlvc as api
    from mlvc.ops.report import collect
    from mlvc.ops.report_render import render_markdown
    from mlvc.repo import Repo

    sd = llama_state(layers=4, seed=3)
    save_pretrained(sd, repo_dir / "model", shards=3)
    assert mlvc("add", "-q", "model") == 0
    commit(repo_dir, "v1")
    meta = pointers.load(repo_dir / "model.mlvc").meta
    index = "model.safetensors.index.json"
    # the top-level ids are what they always were (old pointers compare); blocks sit beside them
    assert set(meta["modules"][index]) == HF_MODULES
    assert list(meta["blocks"][index]) == [f"model.layers.{i}" for i in range(4)]
    before = dict(meta["blocks"][index])
    sd["model.layers.2.mlp.up_proj.weight"] = sd["model.layers.2.mlp.up_proj.weight"] * 1.5
    sd["lm_head.weight"] = sd["lm_head.weight"] * 2
    save_pretrained(sd, repo_dir / "model", shards=4)  # re-sharded, as transformers does
    assert mlvc("add", "-q", "model") == 0
    commit(repo_dir, "v2")
    after = pointers.load(repo_dir / "model.mlvc").meta["blocks"][index]
    assert [b for b in after if after[b] != before[b]] == ["model.layers.2"]

    (art,) = api.diff("HEAD~1", "HEAD").artifacts
    (cd,) = art.checkpoints
    assert set(cd.modules) == {"model.layers", "lm_head"}
    assert cd.changed_blocks == {"model.layers": ["model.layers.2"]}
    assert art.id_changes == {index: {"modules": ["lm_head", "model.layers"], "blocks": ["model.layers.2"]}}
    out = mlvc_cli(repo_dir, "diff", "HEAD~1", "HEAD").out
    assert "model.layers (blocks changed: 2):" in out, out
    ids_only = mlvc_cli(repo_dir, "diff", "HEAD~1", "HEAD", "--no-contents").out  # from the pointers alone
    assert f"module ids changed in {index}: lm_head, model.layers (blocks 2)" in ids_only, ids_only
    assert "xxh128" not in ids_only.split("\n", 1)[1]  # names, not pairs of ids

    shown = json.loads(mlvc_cli(repo_dir, "show", "model", "--json").out)
    assert shown["meta"]["blocks"][index]["model.layers.2"] == after["model.layers.2"]

    repo = Repo.find(repo_dir)
    try:
        rep = collect(repo)
        (ck,) = rep.commits[-1].checkpoints  # the shards compared as one model, though re-sharded
        mods = {m.module: m for m in ck.modules}
        assert set(mods) == {"model.layers", "lm_head"} and mods["model.layers"].blocks == ["model.layers.2"]
        assert mods["model.layers"].tensors_changed == 1 and mods["model.layers"].rel_l2 > 0
        assert "model.layers (" in render_markdown(rep) and "; blocks 2)" in render_markdown(rep)
        ids_only = collect(repo, contents=False)
        (ck,) = ids_only.commits[-1].checkpoints
        assert {m.module: m.blocks for m in ck.modules} == {"model.layers": ["model.layers.2"], "lm_head": []}
    finally:
        repo.close()
