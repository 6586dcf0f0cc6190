"""What a PPO checkpoint holds besides the optimizer: the policy (adapter or weights + value head) and the RNGs.

A checkpoint folder written by :func:`save_policy` loads like an sft output (``adapter_model.safetensors`` or
``model*.safetensors``, the tokenizer) plus LLaMA-Factory's ``value_head.safetensors``; :func:`load_policy` puts
those weights back into the live policy when a run resumes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ...model.value_head import load_value_head, save_value_head, strip_value_head
from ..core.checkpoints import ResumeError
from .loop import Policy


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_policy(policy: Policy, tokenizer: Any, folder: Path) -> None:
    """The policy as sft saves it (adapter, or weights + config) plus the tokenizer and ``value_head.safetensors``."""
    model = policy.model
    if hasattr(model, "peft_config"):  # only the policy's adapter, not a loaded reward adapter
        model.save_pretrained(str(folder), selected_adapters=[model.active_adapter])
    else:
        model.save_pretrained(str(folder))
        strip_value_head(folder)  # the head is a submodule here; it belongs in its own file only
    tokenizer.save_pretrained(str(folder))
    save_value_head(model, folder)


def load_policy(policy: Policy, folder: Path) -> None:
    """Load :func:`save_policy`'s weights back into the live policy (resume).

    Raises:
        ResumeError: the folder lacks the weights, or they leave a trainable parameter unset.
    """
    from safetensors.torch import load_file

    model = policy.model
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        path = folder / "adapter_model.safetensors"
        if not path.is_file():
            raise ResumeError(f"{folder} has no adapter_model.safetensors")
        set_peft_model_state_dict(model, load_file(str(path)))
    else:
        shards = sorted(folder.glob("model*.safetensors"))
        state = {key: value for shard in shards for key, value in load_file(str(shard)).items()}
        missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in state and "v_head" not in n]
        if not shards or missing:
            raise ResumeError(f"{folder}: no weights for {', '.join(missing[:3]) or 'the model'}")
        model.load_state_dict(state, strict=False)
    if not load_value_head(model, folder):
        raise ResumeError(f"{folder} has no value_head.safetensors")


