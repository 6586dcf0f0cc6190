"""What this machine's accelerators can run, asked without importing torch when there is no accelerator at all.

Importing torch costs over a second; on a machine without any accelerator device node the answer is known
without it. Example::

    bf16_support()   # None: no accelerator (CPU only); True/False: what the accelerator here supports
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

# Device nodes of the accelerators torch can use: NVIDIA, AMD ROCm, Intel (dri), Habana, Ascend, Neuron.
_DEVICE_NODES = ("/dev/nvidiactl", "/proc/driver/nvidia/gpus", "/dev/kfd", "/dev/dri", "/dev/accel",
                 "/dev/davinci_manager", "/dev/neuron0")


def may_have_accelerator() -> bool:
    """False only when certainly CPU only: no accelerator device node and not macOS (MPS)."""
    if sys.platform == "darwin":
        return True
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    return any(Path(node).exists() for node in _DEVICE_NODES if not (hidden and "nvidia" in node))


@functools.cache
def bf16_support() -> bool | None:
    """None without an accelerator; else whether it runs bf16 (transformers' own test, as train applies it)."""
    if not may_have_accelerator():
        return None
    try:
        import torch
        from transformers.utils import is_torch_bf16_gpu_available
    except ImportError:
        return None
    if not torch.accelerator.is_available():
        return None
    return bool(is_torch_bf16_gpu_available())


@functools.cache
def visible_gpus() -> int:
    """CUDA devices `train` would spread over when NPROC_PER_NODE is unset (0 on a machine without any)."""
    if not may_have_accelerator():
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
