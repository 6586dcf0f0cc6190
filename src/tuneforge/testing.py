"""Tiny, offline, deterministic models and tokenizers for tests, benchmarks and the quick-start.

Everything here works without network access. The tokenizer and the model configs are package data in
``tuneforge/assets/tiny/`` (regenerate them with ``scripts/make_tiny_assets.py``); model weights are never shipped,
they are drawn from a seeded RNG on demand, so the same seed always gives bit-identical weights.

Architectures (``arch``): ``"llama"`` (hidden 64, 2 layers, untied head), ``"qwen2"`` (same body, q/k/v biases,
tied embeddings) and ``"quickstart"`` (llama, hidden 128, 4 layers, for the character-level quick-start task).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "tiny"
ARCHS = ("llama", "qwen2", "quickstart")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
# Qwen-style stop ids: <|im_end|> ends an assistant turn, <|endoftext|> ends a pretraining document.
PAD_ID, BOS_ID, EOT_ID, IM_START_ID, IM_END_ID = 0, 1, 2, 3, 4


def tiny_tokenizer_path() -> Path:
    """Folder of the shipped tokenizer; ``AutoTokenizer.from_pretrained`` loads it offline."""
    return ASSETS_DIR


def load_tiny_tokenizer():
    """A fresh ``AutoTokenizer`` for the shipped 1024-token byte-level BPE (ChatML template, no automatic bos).

    Fresh on every call because tokenizers are mutable (padding side, template); cache it in the caller if needed.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_path()))


def tiny_config(arch: str = "llama"):
    """The ``PretrainedConfig`` for one of :data:`ARCHS`, read from ``assets/tiny/<arch>.json``."""
    from transformers import AutoConfig

    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is not a tiny architecture; choose one of {', '.join(ARCHS)}")
    data = json.loads((ASSETS_DIR / f"{arch}.json").read_text())
    return AutoConfig.for_model(data.pop("model_type"), **data)


def tiny_generation_config():
    """Greedy decoding that stops on ``<|im_end|>`` or ``<|endoftext|>``, padding with ``<|pad|>``."""
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=BOS_ID, eos_token_id=[IM_END_ID, EOT_ID], pad_token_id=PAD_ID)


def build_tiny_model(arch: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32, attn: str = "sdpa"):
    """A randomly initialised ``*ForCausalLM`` of ``arch``, in eval mode (as ``from_pretrained`` returns it).

    Weights are drawn in float32 under ``torch.manual_seed(seed)`` and then cast to ``dtype``, so the same seed gives
    bit-identical weights whatever the dtype; the caller's global RNG state is left untouched.
    """
    from transformers import AutoModelForCausalLM

    config = tiny_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)
    model.generation_config = tiny_generation_config()
    return model.to(dtype).eval()


def save_tiny_model(dir: str | os.PathLike, arch: str = "llama", seed: int = 0) -> Path:
    """Write a complete Hugging Face model folder and return its path.

    The folder holds ``config.json``, ``model.safetensors``, ``generation_config.json`` and the tokenizer files with
    the chat template, so plain ``AutoModelForCausalLM.from_pretrained(dir)`` / ``AutoTokenizer.from_pretrained(dir)``
    load it offline. Weights are those of ``build_tiny_model(arch, seed)`` in float32.
    """
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    build_tiny_model(arch, seed=seed).save_pretrained(str(out))
    load_tiny_tokenizer().save_pretrained(str(out))
    return out


def repo_root() -> Path:
    """Root of the source checkout (``src/tuneforge/testing.py`` → two levels above ``src``)."""
    return Path(__file__).resolve().parents[2]


def shared_models_dir() -> Path:
    """``<shared>/models``: ``$TUNEFORGE_SHARED/models`` if set, else ``../shared/models`` next to the repo root.

    Same rule as ``tests/conftest.py``: ``TUNEFORGE_SHARED`` names the shared folder, not its ``models`` child.
    """
    base = os.environ.get("TUNEFORGE_SHARED")
    return (Path(base) if base else repo_root().parent / "shared") / "models"


def load_shared_tokenizer(name: str):
    """``AutoTokenizer`` of a real model's tokenizer in the shared models folder (e.g. ``"Qwen2.5-0.5B-Instruct"``).

    Raises ``FileNotFoundError`` naming the folder when it is absent.
    """
    from transformers import AutoTokenizer

    path = shared_models_dir() / name
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; set TUNEFORGE_SHARED to the folder that holds models/")
    return AutoTokenizer.from_pretrained(str(path))


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once, as ``model.parameters()`` yields them)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
