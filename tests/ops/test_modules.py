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
