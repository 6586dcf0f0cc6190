"""``tuneforge export`` of an OFT adapter: the merged folder loads with plain transformers, equals base + adapter."""

from __future__ import annotations

import json

import pytest
import torch
from infer_kit import make_cfg

from tuneforge.infer.export import MANIFEST, export_model

IDS = torch.tensor([[5, 17, 300, 42, 8, 99, 512, 7, 3, 4]])


@pytest.fixture(scope="module")
def oft_adapter(tiny_model_dir, tmp_path_factory):
    """An OFT adapter (block 16 on every attention projection) with random, non-zero rotations."""
    from peft import OFTConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    config = OFTConfig(r=0, oft_block_size=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "oft_R" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    out = tmp_path_factory.mktemp("oft")
    model.save_pretrained(str(out))
    return out


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


@pytest.mark.parametrize("method", ["oft", "lora"])  # LLaMA-Factory's merge configs often keep `lora`
def test_oft_export_equals_base_plus_adapter(method, tiny_model_dir, oft_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(tiny_model_dir, finetuning_type=method, adapter_name_or_path=str(oft_adapter),
                   export_dir=str(tmp_path / "merged"), infer_dtype="float32")
    out = export_model(cfg)
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert not any("oft" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    plain = _logits(base)
    want = _logits(PeftModel.from_pretrained(base, str(oft_adapter)))
    assert (want - plain).abs().max() > 1e-3  # the adapter matters
    assert torch.allclose(_logits(merged), want, atol=1e-5)
    manifest = json.loads((out / MANIFEST).read_text())
    assert [a["path"] for a in manifest["adapters"]] == [str(oft_adapter)]
