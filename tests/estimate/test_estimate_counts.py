"""Parameter, adapter and optimizer bytes against tensors counted on tiny models built by transformers and PEFT."""

from __future__ import annotations

import pytest
import torch

from tuneforge.estimate.arch import Arch
from tuneforge.estimate.params import optimizer_bytes_per_param, param_bytes, trainable_params
from tuneforge.estimate.plan import Plan

QWEN2 = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320, "tie_word_embeddings": True}
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 16, "vocab_size": 256,
         "tie_word_embeddings": False}
QWEN3 = {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 256,
         "tie_word_embeddings": True}


def _model(raw: dict) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {k: v for k, v in raw.items() if k != "model_type"}
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(raw["model_type"], **kwargs))


def _count(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@pytest.mark.parametrize("raw", [QWEN2, LLAMA, QWEN3], ids=["qwen2", "llama", "qwen3"])
def test_parameter_count_equals_the_built_model(raw):
    arch = Arch.from_config(raw)
    model = _model(raw)
    assert arch.n_params == _count(model)
    linear = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    assert arch.n_matmul == linear  # every projection and the output head (tied or not)


def test_published_shape_counts():
    from tuneforge.estimate.arch import known_shape

    assert Arch.from_config(known_shape("Qwen/Qwen2.5-0.5B-Instruct")).n_params == 494_032_768
    assert Arch.from_config(known_shape("Qwen/Qwen2.5-7B")).n_params == 7_615_616_512


@pytest.mark.parametrize(("targets", "dora"), [(("all",), False), (("q_proj", "v_proj"), False), (("all",), True)])
def test_lora_trainable_params_equal_peft(targets, dora):
    from peft import LoraConfig, get_peft_model

    arch = Arch.from_config(QWEN2)
    target = "all-linear" if targets == ("all",) else list(targets)
    peft_model = get_peft_model(_model(QWEN2), LoraConfig(r=4, target_modules=target, use_dora=dora))
    plan = Plan(method="lora", lora_rank=4, lora_target=targets, use_dora=dora)
    assert trainable_params(arch, plan) == _count(peft_model, trainable_only=True)


def test_freeze_trainable_params_equal_tuneforge_freeze():
    from tuneforge.config.loader import resolve
    from tuneforge.model.freeze import apply_freeze

    arch = Arch.from_config(LLAMA)
    for layers, modules in ((1, "all"), (-1, "mlp"), (2, "self_attn")):
        cfg = resolve({"model_name_or_path": "x", "finetuning_type": "freeze", "freeze_trainable_layers": layers,
                       "freeze_trainable_modules": modules}, environ={}).config
        model = apply_freeze(_model(LLAMA), cfg)
        plan = Plan(method="freeze", freeze_layers=layers, freeze_modules=(modules,))
        assert trainable_params(arch, plan) == _count(model, trainable_only=True), (layers, modules)


def test_adamw_state_bytes_equal_torch():
    """fp32 AdamW (fused or not) keeps exp_avg and exp_avg_sq per parameter: 8 bytes, as the formula says."""
    model = _model(LLAMA).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
    plan = Plan(method="full")
    pb = param_bytes(Arch.from_config(LLAMA), plan)
    assert pb.optimizer == state == optimizer_bytes_per_param(plan) * _count(model)
    assert pb.gradients == sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())


def test_qlora_weights_are_four_bit_projections_and_fp32_rest():
    """bitsandbytes nf4 with double quantization: 0.5 B + 1/64 + 4/(64*256) per projection weight; PEFT's
    prepare_model_for_kbit_training casts embeddings, norms and biases to fp32."""
    arch = Arch.from_config(QWEN2)
    projections = arch.layers * sum(a * b for a, b in arch.linears().values())
    rest = arch.n_params - projections
    pb = param_bytes(arch, Plan(method="lora", quant_bit=4))
    assert pb.frozen == pytest.approx(projections * (0.5 + 1 / 64 + 4 / 16384) + rest * 4)
