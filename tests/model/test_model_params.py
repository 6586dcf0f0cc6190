"""Parameter accounting, LoRA+ optimizer groups, print_param_status, and the Unsloth path (with a stand-in)."""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types

import pytest
import torch
from model_helpers import base_model, load, make_cfg, trainable_names

from tuneforge.model import ModelLoadError, load_model, load_tokenizer, optimizer_param_groups, trainable_summary
from tuneforge.testing import count_parameters


def test_trainable_summary_counts_and_logs(tiny_model_dir, caplog):
    model = load(tiny_model_dir, lora_target="q_proj,v_proj")
    with caplog.at_level(logging.INFO, logger="tuneforge.model"):
        assert trainable_summary(model) == (3584, 205_120 + 3584)
    assert "trainable params: 3,584 || all params: 208,704 || trainable%: 1.7173" in caplog.text


def test_print_param_status(tiny_model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tuneforge.model"):
        load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1, print_param_status=True)
    line = "name: model.layers.{}.mlp.up_proj.weight, dtype: torch.float32, device: cpu, trainable: {}"
    assert line.format(1, True) in caplog.text
    assert line.format(0, False) in caplog.text


def _group(groups, name):
    return next(g for g in groups if g["name"] == name)


def test_loraplus_groups(tiny_model_dir):
    cfg = make_cfg(tiny_model_dir, lora_target="q_proj", loraplus_lr_ratio=16.0, use_dora=True, weight_decay=0.1)
    model = load_model(cfg, load_tokenizer(cfg), is_trainable=True)
    groups = optimizer_param_groups(model, cfg, lr=1e-4)
    assert {g["name"] for g in groups} == {"lora_a", "lora_b", "lora_b_no_decay"}
    a, b, magnitudes = _group(groups, "lora_a"), _group(groups, "lora_b"), _group(groups, "lora_b_no_decay")
    assert (a["lr"], a["weight_decay"], len(a["params"])) == (1e-4, 0.1, 2)
    assert (b["lr"], b["weight_decay"], len(b["params"])) == (pytest.approx(1.6e-3), 0.1, 2)
    assert (magnitudes["lr"], magnitudes["weight_decay"], len(magnitudes["params"])) == (pytest.approx(1.6e-3), 0.0, 2)
    assert sum(len(g["params"]) for g in groups) == len(trainable_names(model))


def test_plain_groups_without_loraplus(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1)
    groups = optimizer_param_groups(model, make_cfg(tiny_model_dir), lr=1e-3)
    decay, no_decay = _group(groups, "default"), _group(groups, "default_no_decay")
    assert len(decay["params"]) == 7 and len(no_decay["params"]) == 2  # 7 matrices; 2 norm vectors
    assert decay["lr"] == no_decay["lr"] == 1e-3 and no_decay["weight_decay"] == 0.0


@pytest.fixture
def fake_unsloth(monkeypatch):
    """A stand-in ``unsloth`` module that records its calls and builds the model with transformers + PEFT."""
    calls = {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(model_name, **kwargs):
            calls["from_pretrained"] = kwargs
            return base_model(model_name), None

        @staticmethod
        def get_peft_model(model, **kwargs):
            from peft import LoraConfig, get_peft_model

            calls["get_peft_model"] = kwargs
            return get_peft_model(model, LoraConfig(r=kwargs["r"], lora_alpha=kwargs["lora_alpha"],
                                                    target_modules=kwargs["target_modules"]))

    module = types.ModuleType("unsloth")
    module.__spec__ = importlib.machinery.ModuleSpec("unsloth", None)
    module.FastLanguageModel = FastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", module)
    return calls


def test_unsloth_path(tiny_model_dir, fake_unsloth):
    model = load(tiny_model_dir, use_unsloth=True, lora_target="q_proj", seed=7)
    assert fake_unsloth["from_pretrained"]["max_seq_length"] == 512
    assert fake_unsloth["from_pretrained"]["dtype"] == torch.float32
    assert fake_unsloth["get_peft_model"]["use_gradient_checkpointing"] == "unsloth"
    assert fake_unsloth["get_peft_model"]["random_state"] == 7
    assert fake_unsloth["get_peft_model"]["target_modules"] == ["q_proj"]
    assert count_parameters(model, trainable_only=True) == 2 * 8 * 128
    assert not model.get_base_model().is_activation_checkpointing  # Unsloth's own checkpointing, not ours


def test_unsloth_refuses_freeze(tiny_model_dir, fake_unsloth):
    with pytest.raises(ModelLoadError, match="use_unsloth supports finetuning_type: lora only"):
        load(tiny_model_dir, use_unsloth=True, finetuning_type="freeze")
