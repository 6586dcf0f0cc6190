"""Installed versions of the packages a run depends on (recorded next to every output)."""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("tuneforge", "torch", "transformers", "peft", "datasets", "accelerate", "safetensors", "tokenizers",
            "deepspeed", "liger-kernel", "bitsandbytes", "flash-attn", "fastapi", "uvicorn")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
