"""A fresh adapter changes nothing; an optimizer step changes exactly the trainable weights; PiSSA keeps the
function while rewriting the base; QLoRA trains on CPU."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from model_helpers import INPUT_IDS, base_logits, load, logits, trainable_names


def test_fresh_lora_gives_the_base_logits_exactly(tiny_model_dir):
    model = load(tiny_model_dir)
    assert torch.equal(logits(model), base_logits(tiny_model_dir))


def _one_step(model) -> dict[str, torch.Tensor]:
    """Snapshot every parameter, run one AdamW step on the LM loss (train mode, checkpointing on), return it."""
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    loss = model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss
    loss.backward()
    optimizer.step()
    return before


@pytest.mark.parametrize("keys", [{"finetuning_type": "lora"},
                                  {"finetuning_type": "freeze", "freeze_trainable_layers": 1}], ids=["lora", "freeze"])
def test_optimizer_step_changes_only_trainable_weights(tiny_model_dir, keys):
    model = load(tiny_model_dir, **keys)
    assert model.is_activation_checkpointing  # the gradients below flow through checkpointed layers
    before = _one_step(model)
    trainable = trainable_names(model)
    for name, param in model.named_parameters():
        if name not in trainable:
            assert torch.equal(param, before[name]), f"frozen {name} changed"
        elif "lora_A" not in name:  # with B = 0 at the start, A gets no gradient in the first step
            assert not torch.equal(param, before[name]), f"trainable {name} did not change"


def test_pissa_rewrites_the_base_but_keeps_the_function(tiny_model_dir):
    model = load(tiny_model_dir, lora_target="q_proj,v_proj", pissa_init=True, pissa_iter=-1)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    original = load_original_weight(tiny_model_dir, "model.layers.0.self_attn.q_proj.weight")
    assert not torch.allclose(q_proj.base_layer.weight, original, atol=1e-3)  # the residual, not W
    assert q_proj.lora_B["default"].weight.abs().sum() > 0  # principal components, not zeros
    torch.testing.assert_close(logits(model), base_logits(tiny_model_dir), atol=1e-4, rtol=0)


def test_pissa_fast_svd_iterations(tiny_model_dir):
    model = load(tiny_model_dir, lora_target="q_proj", pissa_init=True, pissa_iter=4)
    assert model.peft_config["default"].init_lora_weights == "pissa_niter_4"
    torch.testing.assert_close(logits(model), base_logits(tiny_model_dir), atol=1e-4, rtol=0)


def load_original_weight(model_dir, name: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))[name]


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_qlora_4bit_on_cpu(tiny_model_dir):
    model = load(tiny_model_dir, quantization_bit=4)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit"
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable_names(model))
    assert len(trainable_names(model)) == 2 * 2 * 7  # A and B of the 7 linear layers of both layers
    loss = model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
