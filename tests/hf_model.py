"""A Llama-like model saved the way `transformers`' `save_pretrained` does: bf16 tensors in
safetensors shards written by the `safetensors` package, and the `model.safetensors.index.json`
naming them (import as `from hf_model import llama_state, save_pretrained`)."""

from __future__ import annotations

import json
from pathlib import Path

LLAMA_BLOCK = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
               "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
               "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")


def llama_state(layers: int = 4, hidden: int = 64, vocab: int = 128, seed: int = 0) -> dict:
    """{name: bf16 tensor} with a Llama's names: model.embed_tokens, model.layers.N.*, model.norm, lm_head."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def t(*shape):
        return torch.randn(*shape, generator=g).to(torch.bfloat16)

    sd = {"model.embed_tokens.weight": t(vocab, hidden)}
    for i in range(layers):
        for name in LLAMA_BLOCK:
            shape = (hidden,) if "norm" in name else (hidden, hidden)
            sd[f"model.layers.{i}.{name}"] = t(*shape)
    sd["model.norm.weight"] = t(hidden)
    sd["lm_head.weight"] = t(vocab, hidden)
    return sd


def save_pretrained(sd: dict, d: Path, shards: int) -> list[str]:
    """Write `sd` as `shards` safetensors files plus the index (stale shards of an earlier save
    removed, as transformers does); returns the shard names."""
    import safetensors.torch

    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("model-*-of-*.safetensors"):
        old.unlink()
    names = list(sd)
    per = -(-len(names) // shards)
    files = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = {}
    for i, fname in enumerate(files):
        part = names[i * per:(i + 1) * per]
        safetensors.torch.save_file({k: sd[k].contiguous() for k in part}, str(d / fname),
                                    metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}))
    return files
