"""Activation formulas against the tensors autograd really saves in one transformers decoder layer (CPU, bf16).

The CPU analogue of ``torch.cuda.max_memory_allocated`` for one layer: every tensor passed to autograd's
saved-tensor hook, unique storages, minus parameters, the layer input and the shared RoPE tables and mask.
"""

from __future__ import annotations

import pytest
import torch

from tuneforge.estimate import activations as act
from tuneforge.estimate.arch import Arch
from tuneforge.estimate.plan import Plan

RAW = {"model_type": "qwen2", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 1,
       "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "tie_word_embeddings": True}
B, T = 2, 64


def _saved_bytes(model: torch.nn.Module) -> int:
    """Bytes layer 0 saves for backward on a padded [B, T] batch (SDPA with a causal mask)."""
    x = torch.randn(B, T, RAW["hidden_size"], dtype=torch.bfloat16, requires_grad=True)
    position_embeddings = model.model.rotary_emb(x, torch.arange(T)[None].expand(B, T))
    mask = torch.ones(B, 1, T, T, dtype=torch.bool).tril()
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.layers[0](x, attention_mask=mask, position_embeddings=position_embeddings)
    shared = [*model.parameters(), x, mask, *position_embeddings]
    skip = {t.untyped_storage().data_ptr() for t in shared}
    return sum(n for ptr, n in seen.items() if ptr not in skip)


def _model() -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model("qwen2", **{k: v for k, v in RAW.items() if k != "model_type"})
    cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)


def test_lora_layer_saved_tensors_match_the_formula():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model(), LoraConfig(r=8, target_modules="all-linear")).to(torch.bfloat16)
    plan = Plan(method="lora", lora_rank=8, micro_batch=B, cutoff=T, padding_free=False)
    predicted = act.layer_saved(Arch.from_config(RAW), plan, B * T)
    assert predicted == pytest.approx(_saved_bytes(model.base_model.model), rel=0.02)


def test_full_layer_saved_tensors_match_the_formula():
    """All weights train (pure bf16: the residual stream stays bf16)."""
    model = _model()
    plan = Plan(method="full", pure_bf16=True, micro_batch=B, cutoff=T, padding_free=False)
    predicted = act.layer_saved(Arch.from_config(RAW), plan, B * T)
    assert predicted == pytest.approx(_saved_bytes(model), rel=0.02)
