"""Helpers of the inference tests: configs for a tiny model folder and a LoRA adapter trained to end its turn.

Not a conftest.py (tests/data imports the top-level conftest by name); fixtures live in the test modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tuneforge.config.loader import resolve
from tuneforge.testing import IM_END_ID, load_tiny_tokenizer

PROMPTS = ("hi", "hello", "how are you", "what is up")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_cfg(model_dir: Path, **keys: Any):
    """Resolved config for ``model_dir`` (chatml, cutoff 512, greedy) plus ``keys``; fails on config errors."""
    base = {"model_name_or_path": str(model_dir), "template": "chatml", "cutoff_len": 512, "do_sample": False,
            "max_new_tokens": 16, "report_to": "none"}
    res = resolve({**base, **keys}, environ={})
    assert not res.errors, [(d.key, d.message) for d in res.errors]
    return res.config


def chatml_prompt(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def train_eot_adapter(model_dir: Path, out: Path, steps: int = 15) -> Path:
    """A LoRA adapter (r=8, every linear layer) trained for ``steps`` Adam steps so that greedy decoding answers
    the PROMPTS (and similar ones) with ``<|im_end|>`` at once. Training makes every B matrix non-zero, so merging
    it changes the logits. Deterministic (seeded)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    tokenizer = load_tiny_tokenizer()
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS))
    rows = [tokenizer(chatml_prompt(p))["input_ids"] + [IM_END_ID] for p in PROMPTS]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = sum(_last_token_loss(model, row) for row in rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(str(out))
    return out


def _last_token_loss(model: Any, row: list[int]) -> torch.Tensor:
    ids = torch.tensor([row])
    logits = model(input_ids=ids).logits
    return torch.nn.functional.cross_entropy(logits[0, -2:-1], ids[0, -1:])
