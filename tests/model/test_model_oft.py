"""finetuning_type: oft: the exact trainable set, adapters resumed and merged, and sft training end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from model_helpers import base_model, load, logits, trainable_names

from tuneforge.config.loader import resolve
from tuneforge.model import ModelLoadError
from tuneforge.testing import count_parameters

REPO = Path(__file__).resolve().parents[2]
OFT = "base_model.model.model.layers.{i}.{sub}.{mod}.oft_R.default.weight"
SUB = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
       "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
IN_FEATURES = {"q_proj": 64, "k_proj": 64, "v_proj": 64, "o_proj": 64, "gate_proj": 64, "up_proj": 64,
               "down_proj": 128}  # the tiny llama (hidden 64, intermediate 128)


def oft_names(mods, layers=(0, 1)) -> set[str]:
    return {OFT.format(i=i, sub=SUB[m], mod=m) for i in layers for m in mods}


def oft_count(mods, *, block: int = 0, rank: int = 0, layers: int = 2) -> int:
    """Parameters of OFT on ``mods``: each of in/b blocks stores the b(b-1)/2 free entries of a skew matrix."""
    total = 0
    for m in mods:
        b = block or IN_FEATURES[m] // rank
        total += (IN_FEATURES[m] // b) * b * (b - 1) // 2
    return layers * total


def test_oft_block_size_on_q_v(tiny_model_dir):
    from peft import PeftModel

    model = load(tiny_model_dir, finetuning_type="oft", oft_target="q_proj,v_proj")
    assert isinstance(model, PeftModel) and model.peft_config["default"].peft_type.value == "OFT"
    assert trainable_names(model) == oft_names(["q_proj", "v_proj"])
    assert count_parameters(model, trainable_only=True) == oft_count(["q_proj", "v_proj"], block=32) == 3968


def test_oft_rank_on_every_linear_but_the_head(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="oft", oft_rank=4, oft_block_size=0)
    assert trainable_names(model) == oft_names(list(SUB))
    assert count_parameters(model, trainable_only=True) == oft_count(list(SUB), rank=4) == 9728


def test_a_new_oft_adapter_starts_as_the_identity(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="oft", module_dropout=0.1)
    assert torch.allclose(logits(model), logits(base_model(tiny_model_dir)), atol=1e-5)


def test_oft_with_llama_pro_adapts_only_the_expanded_block(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="oft", oft_target="q_proj", use_llama_pro=True,
                 freeze_trainable_layers=1)
    assert trainable_names(model) == oft_names(["q_proj"], layers=(1,))


def test_oft_additional_target_trains_whole_modules(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="oft", oft_target="q_proj", additional_target="lm_head")
    head = {n for n in trainable_names(model) if "lm_head" in n}
    assert head and trainable_names(model) - head == oft_names(["q_proj"])


def test_unknown_oft_target_lists_valid_names(tiny_model_dir):
    with pytest.raises(ModelLoadError, match=r"oft_target.*qproj.*q_proj"):
        load(tiny_model_dir, finetuning_type="oft", oft_target="qproj")


def test_rank_and_block_size_together_is_a_config_error(tiny_model_dir):
    res = resolve({"model_name_or_path": str(tiny_model_dir), "finetuning_type": "oft", "oft_rank": 4}, environ={})
    assert [d.key for d in res.errors] == ["oft_rank"] and "oft_block_size: 0" in res.errors[0].message


@pytest.fixture(scope="module")
def oft_adapter(tiny_model_dir, tmp_path_factory):
    """An OFT adapter (block 32 on q/v/down) with random, non-zero rotations."""
    from peft import OFTConfig, get_peft_model

    model = get_peft_model(base_model(tiny_model_dir),
                           OFTConfig(r=0, oft_block_size=32, target_modules=["q_proj", "v_proj", "down_proj"]))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "oft_R" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    out = tmp_path_factory.mktemp("oft-adapter")
    model.save_pretrained(str(out))
    return out


def _reference(model_dir, adapter):
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model(model_dir), str(adapter)).eval()


def test_oft_adapter_resumes_training(tiny_model_dir, oft_adapter):
    model = load(tiny_model_dir, finetuning_type="oft", adapter_name_or_path=str(oft_adapter))
    assert trainable_names(model) == oft_names(["q_proj", "v_proj", "down_proj"])
    assert torch.equal(logits(model), logits(_reference(tiny_model_dir, oft_adapter)))


def test_inference_merges_the_oft_adapter(tiny_model_dir, oft_adapter):
    from peft import PeftModel

    model = load(tiny_model_dir, is_trainable=False, finetuning_type="oft", adapter_name_or_path=str(oft_adapter))
    assert not isinstance(model, PeftModel) and not trainable_names(model)
    want, plain = logits(_reference(tiny_model_dir, oft_adapter)), logits(base_model(tiny_model_dir))
    assert (want - plain).abs().max() > 1e-3  # the adapter matters
    assert torch.allclose(logits(model), want, atol=1e-5)


def test_create_new_adapter_merges_the_oft_adapter_and_trains_a_new_one(tiny_model_dir, oft_adapter):
    model = load(tiny_model_dir, finetuning_type="oft", adapter_name_or_path=str(oft_adapter),
                 create_new_adapter=True, oft_target="o_proj")
    assert trainable_names(model) == oft_names(["o_proj"])
    assert torch.allclose(logits(model), logits(_reference(tiny_model_dir, oft_adapter)), atol=1e-5)


def _train(model_dir: Path, out: Path, **extra) -> list[float]:
    from tuneforge.train import stage_runner

    config = {"model_name_or_path": str(model_dir), "do_train": True, "stage": "sft", "finetuning_type": "oft",
              "dataset": "quickstart_task", "dataset_dir": str(REPO / "data"), "template": "chatml",
              "cutoff_len": 64, "max_samples": 160, "output_dir": str(out), "per_device_train_batch_size": 8,
              "max_steps": 20, "logging_steps": 1, "save_strategy": "no", "learning_rate": 5e-3,
              "report_to": "none", "seed": 0, "disable_shuffling": True, **extra}
    res = resolve(config, environ={})
    assert res.errors == [], res.errors
    stage_runner("sft")(res.config)
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def test_oft_sft_loss_falls_and_saves_an_adapter(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    losses = _train(tiny_model_dir, out)
    assert len(losses) == 20 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "OFT" and saved["oft_block_size"] == 32
    assert set(saved["target_modules"]) == set(SUB) and (out / "adapter_model.safetensors").is_file()


def test_qoft_4bit_trains_on_cpu(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes", reason="QOFT needs the bnb extra")
    out = tmp_path / "out"
    losses = _train(tiny_model_dir, out, quantization_bit=4, max_steps=2, oft_block_size=16)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert json.loads((out / "adapter_config.json").read_text())["oft_block_size"] == 16


@pytest.mark.slow
def test_oft_resume_from_checkpoint_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    full = _train(tiny_model_dir, tmp_path / "full", max_steps=6)
    part = tmp_path / "part"
    _train(tiny_model_dir, part, max_steps=6, save_strategy="steps", save_steps=3)
    shutil.rmtree(part / "checkpoint-6")  # as if stopped after step 3
    reset = tmp_path / "reset"
    shutil.copytree(part, reset)
    resumed = _train(tiny_model_dir, part, max_steps=6, resume_from_checkpoint=str(part / "checkpoint-3"))
    assert resumed[-3:] == pytest.approx(full[-3:], rel=1e-4)
    want = load_file(str(tmp_path / "full" / "adapter_model.safetensors"))
    got = load_file(str(part / "adapter_model.safetensors"))
    assert want.keys() == got.keys() and all(torch.allclose(want[k], got[k], atol=1e-6) for k in want)
    # the checkpoint's adapter is what step 4 starts from: reset to the identity, step 4 differs
    weights = reset / "checkpoint-3" / "adapter_model.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(weights)).items()}, str(weights))
    restarted = _train(tiny_model_dir, reset, max_steps=6, resume_from_checkpoint=str(reset / "checkpoint-3"))
    assert restarted[3] != pytest.approx(full[3], rel=1e-4)
