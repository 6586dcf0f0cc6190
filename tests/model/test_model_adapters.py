"""adapter_name_or_path: resume, merge all but the last, create_new_adapter, inference merge."""

from __future__ import annotations

import pytest
import torch
from model_helpers import base_model, load, logits, trainable_names

from tuneforge.config.loader import resolve
from tuneforge.model import ModelLoadError, load_model, load_tokenizer


def save_adapter(model_dir, out, *, seed: int, targets: list[str]):
    """A LoRA adapter (r=4) with random, non-zero B matrices, saved to ``out``."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base_model(model_dir), LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return (save_adapter(tiny_model_dir, root / "a1", seed=1, targets=["q_proj", "v_proj"]),
            save_adapter(tiny_model_dir, root / "a2", seed=2, targets=["o_proj", "down_proj"]))


def manual(model_dir, merged: list, last=None):
    """Reference: merge ``merged`` one by one with PEFT, then put ``last`` on top unmerged."""
    from peft import PeftModel

    model = base_model(model_dir)
    for path in merged:
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return PeftModel.from_pretrained(model, str(last)) if last else model


def lora_of(model, modules) -> set[str]:
    return {n for n in trainable_names(model) if any(f".{m}.lora_" in n for m in modules)}


def test_one_adapter_resumes_training(tiny_model_dir, adapters):
    a1, _ = adapters
    model = load(tiny_model_dir, adapter_name_or_path=str(a1))
    assert trainable_names(model) == lora_of(model, ["q_proj", "v_proj"]) and len(trainable_names(model)) == 8
    assert torch.equal(logits(model), logits(manual(tiny_model_dir, [], a1)))


def test_two_adapters_merge_the_first_and_train_the_second(tiny_model_dir, adapters):
    a1, a2 = adapters
    model = load(tiny_model_dir, adapter_name_or_path=f"{a1},{a2}")
    assert trainable_names(model) == lora_of(model, ["o_proj", "down_proj"]) and len(trainable_names(model)) == 8
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, torch.nn.Linear)  # a1 merged into the weight: no LoRA layer left
    assert torch.equal(logits(model), logits(manual(tiny_model_dir, [a1], a2)))


def test_create_new_adapter_merges_all(tiny_model_dir, adapters):
    a1, a2 = adapters
    model = load(tiny_model_dir, adapter_name_or_path=f"{a1},{a2}", create_new_adapter=True, lora_target="q_proj")
    assert trainable_names(model) == lora_of(model, ["q_proj"]) and len(trainable_names(model)) == 4
    assert model.peft_config["default"].r == 8  # the new adapter follows the config
    assert torch.equal(logits(model), logits(manual(tiny_model_dir, [a1, a2])))


def test_inference_merges_every_adapter(tiny_model_dir, adapters):
    from peft import PeftModel

    a1, a2 = adapters
    model = load(tiny_model_dir, is_trainable=False, adapter_name_or_path=f"{a1},{a2}")
    assert not isinstance(model, PeftModel) and not model.training
    assert not trainable_names(model)
    assert torch.equal(logits(model), logits(manual(tiny_model_dir, [a1, a2])))


def test_inference_without_adapters_is_the_base(tiny_model_dir):
    from peft import PeftModel

    model = load(tiny_model_dir, is_trainable=False)
    assert not isinstance(model, PeftModel) and not trainable_names(model)


def test_a_folder_without_adapter_config_is_refused(tiny_model_dir):
    res = resolve({"model_name_or_path": str(tiny_model_dir), "adapter_name_or_path": str(tiny_model_dir)},
                  environ={})
    assert "no adapter_config.json" in res.errors[0].message  # check refuses it first
    with pytest.raises(ModelLoadError, match=r"has no adapter_config\.json .*model_name_or_path"):
        load_model(res.config, load_tokenizer(res.config), is_trainable=False)
