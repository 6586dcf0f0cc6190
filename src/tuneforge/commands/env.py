"""``tuneforge env``: versions of the libraries tuneforge uses and the devices of this machine."""

from __future__ import annotations

import argparse
import platform

from ..utils.versions import package_versions


def _devices() -> list[str]:
    try:
        import torch
    except ImportError:
        return ["torch not installed"]
    lines = [f"CPU threads: {torch.get_num_threads()}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            bf16 = "bf16" if torch.cuda.is_bf16_supported() else "no bf16"
            lines.append(f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB, {bf16}")
    else:
        lines.append("CUDA: no GPU visible")
    return lines


def run(args: argparse.Namespace) -> int:
    print(f"python: {platform.python_version()} ({platform.platform()})")
    for name, version in package_versions().items():
        print(f"{name}: {version}")
    for line in _devices():
        print(line)
    return 0
