"""The card(s) an estimate is for: a name or profile from ``hardware.yaml``, a memory size, or the GPUs seen here.

Detection asks ``nvidia-smi`` (never CUDA itself, so no CUDA context is created before training forks workers).
Example::

    parse_memory("24GiB")   # 24.0 (GiB)
    parse_memory("24000MB") # 22.35 (MB are 10**6 bytes)
    lookup("1x24gb")        # Hardware(name='NVIDIA GeForce RTX 4090', memory_gib=23.6, gpus=1, ...)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ..utils.suggest import did_you_mean

GIB = 2**30
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_MEMORY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*$")


class HardwareError(ValueError):
    """Bad ``--gpu``/``--gpu-memory``/``--gpus`` input; the message says what is accepted."""


@dataclass(frozen=True)
class Hardware:
    """What the estimate compares against: per-device memory, device count and dense bf16 peak."""

    name: str
    memory_gib: float
    gpus: int = 1
    bf16_tflops: float | None = None
    source: str = "given"  # given | profile | detected


@cache
def table() -> dict[str, Any]:
    """``hardware.yaml``: ``gpus``, ``profiles`` and ``efficiency``."""
    text = resources.files("tuneforge.estimate").joinpath("hardware.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def parse_memory(text: str) -> float:
    """``"24GiB"``, ``"24 GB"``, ``"24000MB"``, ``"80g"`` → GiB; ``G`` alone means GiB, as nvidia-smi's GiB.

    Raises:
        HardwareError: no unit, an unknown unit, or not positive.
    """
    match = _MEMORY.match(str(text))
    unit = match.group(2).lower() if match else ""
    unit = {"g": "gib", "m": "mib", "t": "tib"}.get(unit, unit)
    if not match or unit not in _UNITS:
        raise HardwareError(f"cannot read the memory size {text!r}: write a number and a unit, e.g. 24GiB, "
                            "24GB (10^9 bytes), 24000MB or 80G (GiB)")
    gib = float(match.group(1)) * _UNITS[unit] / GIB
    if gib <= 0:
        raise HardwareError(f"memory size {text!r} must be above zero, e.g. 24GiB")
    return gib


def _gpu_index() -> dict[str, str]:
    """Every accepted spelling (key, alias, full name) → the table key."""
    index = {}
    for key, gpu in table()["gpus"].items():
        for spelling in (key, *map(str, gpu.get("aliases", [])), gpu["name"]):
            index[_norm(spelling)] = key
    return index


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower()).removeprefix("nvidia-")


def gpu(name: str) -> Hardware:
    """A card of ``hardware.yaml`` by key, alias or full name (case and spaces ignored)."""
    key = _gpu_index().get(_norm(name))
    if key is None:
        known = list(table()["gpus"]) + list(table()["profiles"])
        raise HardwareError(f"unknown GPU {name!r}.{did_you_mean(name.lower(), known)} Known: {', '.join(known)}; "
                            "or give the memory with --gpu-memory 24GiB")
    row = table()["gpus"][key]
    return Hardware(row["name"], float(row["memory_gib"]), 1, float(row["bf16_tflops"]), "given")


def lookup(name: str) -> Hardware:
    """A profile (``1x24gb``, ``2x48gb``, ``1x80gb``, ``1x141gb``...) or a single card name."""
    profile = table()["profiles"].get(name.strip().lower())
    if profile is not None:
        return replace(gpu(profile["gpu"]), gpus=int(profile["gpus"]), source="profile")
    return gpu(name)


def _nvidia_smi(fields: str) -> str | None:
    """``nvidia-smi --query-gpu=<fields>`` as CSV without header or units; None without nvidia-smi or on failure."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def detect() -> Hardware | None:
    """The first GPU nvidia-smi reports (name, total memory) and how many there are; None without one."""
    out = _nvidia_smi("name,memory.total")
    if out is None:
        return None
    rows = [line.split(",") for line in out.strip().splitlines() if "," in line]
    if not rows:
        return None
    name, mib = rows[0][0].strip(), float(rows[0][1])
    try:
        tflops = gpu(name).bf16_tflops
    except HardwareError:
        tflops = None
    return Hardware(name, mib / 1024, len(rows), tflops, "detected")


def free_memory_gib() -> list[float] | None:
    """Free memory of each GPU per nvidia-smi (what other processes leave), or None without nvidia-smi."""
    out = _nvidia_smi("memory.free")
    if out is None:
        return None
    values = [float(v) / 1024 for v in out.split() if v.replace(".", "", 1).isdigit()]
    return values or None


def choose(gpu_name: str | None, gpu_memory: str | None, gpus: int | None) -> Hardware | None:
    """The hardware of the command line: ``--gpu`` and/or ``--gpu-memory`` and ``--gpus``, else detected."""
    if gpus is not None and gpus < 1:
        raise HardwareError(f"--gpus must be at least 1 (got {gpus})")
    hw = lookup(gpu_name) if gpu_name else None
    if gpu_memory:
        mem = parse_memory(gpu_memory)
        hw = replace(hw, memory_gib=mem) if hw else Hardware(f"{mem:.1f} GiB card", mem, 1, None, "given")
    if hw is None:
        hw = detect()
    if hw is not None and gpus is not None:
        hw = replace(hw, gpus=gpus)
    return hw
