"""Loading: attention kernel, dtypes and their trainable precision, checkpointing, norms, fp32 logits flag, RoPE,
train_from_scratch."""

from __future__ import annotations

import pytest
import torch
from model_helpers import base_logits, load, logits, make_cfg

from tuneforge.model import compute_dtype, wants_fp32_logits


def base_of(model):
    """The transformers model under a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@pytest.mark.parametrize(("flash_attn", "expected"), [("disabled", "eager"), ("sdpa", "sdpa"), ("auto", "sdpa")])
def test_attention_implementation(tiny_model_dir, flash_attn, expected):
    model = load(tiny_model_dir, is_trainable=False, flash_attn=flash_attn)
    assert model.config._attn_implementation == expected


def test_compute_dtype(tiny_model_dir):
    assert compute_dtype(make_cfg(tiny_model_dir)) == torch.float32
    assert compute_dtype(make_cfg(tiny_model_dir, bf16=True)) == torch.bfloat16
    assert compute_dtype(make_cfg(tiny_model_dir, pure_bf16=True)) == torch.bfloat16
    assert compute_dtype(make_cfg(tiny_model_dir, fp16=True)) == torch.float16


def test_bf16_lora_keeps_trainable_params_fp32(tiny_model_dir):
    model = load(tiny_model_dir, bf16=True)
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    assert dtypes == {torch.float32}
    assert base_of(model).model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16


def test_pure_bf16_keeps_trainable_params_bf16(tiny_model_dir):
    model = load(tiny_model_dir, pure_bf16=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_bf16_full_trains_fp32_master_weights(tiny_model_dir):
    model = load(tiny_model_dir, bf16=True, finetuning_type="full")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_inference_dtype(tiny_model_dir):
    model = load(tiny_model_dir, is_trainable=False, infer_dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())


def test_checkpointing_on_by_default_in_training(tiny_model_dir):
    model = load(tiny_model_dir)
    assert base_of(model).is_activation_checkpointing
    assert base_of(model).config.use_cache is False
    assert model.training


def test_checkpointing_off_with_the_flag_and_at_inference(tiny_model_dir):
    assert not base_of(load(tiny_model_dir, disable_gradient_checkpointing=True)).is_activation_checkpointing
    model = load(tiny_model_dir, is_trainable=False)
    assert not model.is_activation_checkpointing and not model.training


def test_non_reentrant_checkpointing_trains(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1, use_reentrant_gc=False)
    model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_upcast_layernorm(tiny_model_dir):
    model = base_of(load(tiny_model_dir, bf16=True, upcast_layernorm=True))
    norms = [model.model.norm.weight, model.model.layers[0].input_layernorm.weight]
    assert all(w.dtype == torch.float32 for w in norms)
    assert model.model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16


def test_upcast_lmhead_output_flag(tiny_model_dir):
    assert wants_fp32_logits(load(tiny_model_dir, upcast_lmhead_output=True))
    assert not wants_fp32_logits(load(tiny_model_dir))


def test_rope_linear_when_cutoff_exceeds_the_model(tiny_model_dir):
    model = load(tiny_model_dir, rope_scaling="linear", cutoff_len=3000)
    config = base_of(model).config
    assert config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "linear", "factor": 3.0}
    assert config.max_position_embeddings == 3072


@pytest.mark.parametrize("kind", ["dynamic", "yarn", "llama3"])
def test_rope_kinds(tiny_model_dir, kind):
    model = load(tiny_model_dir, rope_scaling=kind, cutoff_len=2048)
    params = base_of(model).config.rope_parameters
    assert params["rope_type"] == kind and params["factor"] == 2.0
    assert params.get("original_max_position_embeddings") == (None if kind == "dynamic" else 1024)
    if kind == "llama3":
        assert (params["low_freq_factor"], params["high_freq_factor"]) == (1.0, 4.0)
    # dynamic NTK measures lengths against max_position_embeddings: it keeps the original
    assert base_of(model).config.max_position_embeddings == (1024 if kind == "dynamic" else 2048)
    assert logits(model).isfinite().all()


def test_rope_unchanged_when_cutoff_fits(tiny_model_dir):
    model = load(tiny_model_dir, rope_scaling="linear", cutoff_len=1024)
    assert base_of(model).config.rope_parameters["rope_type"] == "default"


def test_rope_inference_factor_two(tiny_model_dir):
    model = load(tiny_model_dir, is_trainable=False, rope_scaling="linear")
    assert model.config.rope_parameters["factor"] == 2.0


def test_train_from_scratch_is_seeded(tiny_model_dir):
    first = load(tiny_model_dir, finetuning_type="full", train_from_scratch=True, seed=3)
    again = load(tiny_model_dir, finetuning_type="full", train_from_scratch=True, seed=3)
    other = load(tiny_model_dir, finetuning_type="full", train_from_scratch=True, seed=4)
    assert torch.equal(logits(first), logits(again))
    assert not torch.equal(logits(first), logits(other))
    assert not torch.equal(logits(first), base_logits(tiny_model_dir))


def test_modelscope_download_is_used_for_hub_ids(tiny_model_dir, monkeypatch):
    import importlib.machinery
    import sys
    import types

    from tuneforge.config.loader import resolve
    from tuneforge.model import load_tokenizer

    calls = []
    modelscope = types.ModuleType("modelscope")
    modelscope.__spec__ = importlib.machinery.ModuleSpec("modelscope", None)
    modelscope.snapshot_download = lambda name, **kwargs: calls.append((name, kwargs)) or str(tiny_model_dir)
    hub_api = types.ModuleType("modelscope.hub.api")
    hub_api.HubApi = object
    monkeypatch.setitem(sys.modules, "modelscope", modelscope)
    monkeypatch.setitem(sys.modules, "modelscope.hub", types.ModuleType("modelscope.hub"))
    monkeypatch.setitem(sys.modules, "modelscope.hub.api", hub_api)
    cfg = resolve({"model_name_or_path": "qwen/Tiny", "cutoff_len": 512}, environ={"USE_MODELSCOPE_HUB": "1"}).config
    assert len(load_tokenizer(cfg)) == 1024
    assert calls == [("qwen/Tiny", {"revision": "master", "cache_dir": None})]  # ModelScope's default branch


def test_llama_pro_trains_the_expanded_blocks_only(tiny_model_dir):
    from tuneforge.model.freeze import trainable_layer_ids

    assert trainable_layer_ids(8, 2, llama_pro=True) == [3, 7]
    assert trainable_layer_ids(8, 3) == [5, 6, 7] and trainable_layer_ids(8, -3) == [0, 1, 2]
    model = load(tiny_model_dir, use_llama_pro=True, freeze_trainable_layers=1, lora_target="q_proj")
    assert {n.split(".")[4] for n, p in model.named_parameters() if p.requires_grad} == {"1"}


def test_hub_keywords(tiny_model_dir):
    from tuneforge.model.hub import hub_kwargs

    cfg = make_cfg(tiny_model_dir, trust_remote_code=True, model_revision="v2", cache_dir="/tmp/c", hf_hub_token="t")
    assert hub_kwargs(cfg) == {"trust_remote_code": True, "revision": "v2", "cache_dir": "/tmp/c", "token": "t"}
