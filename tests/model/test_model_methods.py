"""The exact trainable parameter set of every method on the tiny llama (2 layers, hidden 64, 2 KV heads of 16)."""

from __future__ import annotations

import math

import pytest
from model_helpers import load, trainable_names

from tuneforge.model import ModelLoadError
from tuneforge.testing import count_parameters

LORA = "base_model.model.model.layers.{i}.{sub}.{mod}.lora_{ab}.default.weight"
SUB = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
       "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
# (in, out) features of each linear layer of the tiny llama
SHAPES = {"q_proj": (64, 64), "k_proj": (64, 32), "v_proj": (64, 32), "o_proj": (64, 64),
          "gate_proj": (64, 128), "up_proj": (64, 128), "down_proj": (128, 64)}
LAYER_PARAMS = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                "input_layernorm.weight", "post_attention_layernorm.weight"]


def lora_names(mods, layers=(0, 1)) -> set[str]:
    return {LORA.format(i=i, sub=SUB[m], mod=m, ab=ab) for i in layers for m in mods for ab in "AB"}


def lora_count(mods, r=8) -> int:
    return 2 * sum(r * (SHAPES[m][0] + SHAPES[m][1]) for m in mods)


def layer_names(i: int, subs=None) -> set[str]:
    return {f"model.layers.{i}.{p}" for p in LAYER_PARAMS if subs is None or p.split(".")[0] in subs}


def test_lora_q_v_only(tiny_model_dir):
    model = load(tiny_model_dir, lora_target="q_proj,v_proj")
    assert trainable_names(model) == lora_names(["q_proj", "v_proj"])
    assert count_parameters(model, trainable_only=True) == lora_count(["q_proj", "v_proj"]) == 3584


def test_lora_all_targets_every_linear_but_the_head(tiny_model_dir):
    model = load(tiny_model_dir)
    assert trainable_names(model) == lora_names(SHAPES)
    assert count_parameters(model, trainable_only=True) == lora_count(SHAPES) == 16384
    assert model.peft_config["default"].target_modules == set(SHAPES)
    assert model.peft_config["default"].lora_alpha == 16 and model.peft_config["default"].r == 8


def test_lora_additional_target_trains_whole_modules(tiny_model_dir):
    model = load(tiny_model_dir, lora_target="q_proj", additional_target="embed_tokens,lm_head")
    saved = {"base_model.model.model.embed_tokens.modules_to_save.default.weight",
             "base_model.model.lm_head.modules_to_save.default.weight"}
    assert trainable_names(model) == lora_names(["q_proj"]) | saved
    assert count_parameters(model, trainable_only=True) == lora_count(["q_proj"]) + 2 * 1024 * 64


def test_dora_adds_magnitude_vectors(tiny_model_dir):
    model = load(tiny_model_dir, lora_target="q_proj,v_proj", use_dora=True)
    magnitudes = {f"base_model.model.model.layers.{i}.self_attn.{m}.lora_magnitude_vector.default.weight"
                  for i in (0, 1) for m in ("q_proj", "v_proj")}
    assert trainable_names(model) == lora_names(["q_proj", "v_proj"]) | magnitudes
    assert count_parameters(model, trainable_only=True) == 3584 + 2 * (64 + 32)


def test_rslora_scaling_is_alpha_over_sqrt_rank(tiny_model_dir):
    model = load(tiny_model_dir, lora_target="q_proj", lora_rank=16, lora_alpha=8, use_rslora=True)
    assert model.peft_config["default"].use_rslora is True
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.scaling["default"] == pytest.approx(8 / math.sqrt(16))


def test_freeze_last_layer(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1)
    assert trainable_names(model) == layer_names(1)


def test_freeze_first_layer(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=-1)
    assert trainable_names(model) == layer_names(0)


def test_freeze_modules_and_extra_modules(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1,
                 freeze_trainable_modules="mlp,self_attn", freeze_extra_modules="embed_tokens,norm")
    # "norm" is model.norm only: the layers' input/post_attention layernorms stay frozen.
    expected = layer_names(1, {"mlp", "self_attn"}) | {"model.embed_tokens.weight", "model.norm.weight"}
    assert trainable_names(model) == expected


def test_full_trains_everything(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="full")
    assert count_parameters(model, trainable_only=True) == count_parameters(model) == 205_120


def test_unknown_lora_target_lists_valid_names(tiny_model_dir):
    with pytest.raises(ModelLoadError, match=r"lora_target: .* no module 'qkv_proj'; valid names: .*q_proj"):
        load(tiny_model_dir, lora_target="q_proj,qkv_proj")


def test_unknown_additional_target(tiny_model_dir):
    with pytest.raises(ModelLoadError, match=r"additional_target: .* no module 'embeddings'.*embed_tokens"):
        load(tiny_model_dir, additional_target="embeddings")


def test_unknown_freeze_modules_list_valid_names(tiny_model_dir):
    message = (r"freeze_trainable_modules: unknown module.* 'attention'; valid names: input_layernorm, mlp, "
               r"post_attention_layernorm, self_attn")
    with pytest.raises(ModelLoadError, match=message):
        load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_modules="mlp,attention")
    with pytest.raises(ModelLoadError, match=r"freeze_extra_modules: unknown module.* 'head'; valid names: "
                                             r"embed_tokens, lm_head, norm"):
        load(tiny_model_dir, finetuning_type="freeze", freeze_extra_modules="head")


def test_tied_head_is_not_a_separate_extra_module(tiny_qwen2_model_dir):
    with pytest.raises(ModelLoadError, match=r"valid names: embed_tokens, norm$"):
        load(tiny_qwen2_model_dir, finetuning_type="freeze", freeze_extra_modules="lm_head")
