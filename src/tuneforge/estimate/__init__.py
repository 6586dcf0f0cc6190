"""Memory, time and a config that fits, predicted from the config and the model's ``config.json`` alone.

No torch, no transformers, no weights: ``estimate_config(cfg)`` reads the shape with json and runs the formulas
of :mod:`.memory`, :mod:`.activations` and :mod:`.time`. Example::

    report = estimate_config(res.config, hw=lookup("1x24gb"))
    report.memory.peak_allocated_gib, report.fits
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import Arch, ArchError, load_arch
from .hardware import Hardware
from .memory import MemoryEstimate, estimate_memory
from .plan import Lengths, Plan
from .time import TimeEstimate, estimate_time, num_steps

__all__ = ["ArchError", "Estimate", "estimate_config", "plan_of", "read_lengths"]


@dataclass(frozen=True)
class Estimate:
    arch: Arch
    plan: Plan
    memory: MemoryEstimate
    time: TimeEstimate
    hardware: Hardware | None
    notes: tuple[str, ...] = ()

    @property
    def fits(self) -> bool | None:
        """Whether the card holds reserved memory plus the CUDA context (None: no card known)."""
        if self.hardware is None:
            return None
        return self.memory.device_total_gib <= self.hardware.memory_gib


def read_lengths(path: str | Path) -> tuple[Lengths, int]:
    """``tuneforge lengths --json`` output → (Lengths, number of rows); ValueError naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Lengths(float(data["mean"]), float(data["p99"])), int(data["examples"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--lengths {path}: not the output of `tuneforge lengths CONFIG --json` ({err})") from None


def _deepspeed(value: Any) -> dict | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and Path(value).is_file():
        try:
            loaded = json.loads(Path(value).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None
    return None


def plan_of(cfg: Any, world: int, lengths: Lengths | None = None) -> Plan:
    return Plan.from_config(cfg, world=world, zero=_deepspeed(cfg.training.deepspeed), lengths=lengths)


def _world(cfg: Any, hw: Hardware | None) -> int:
    env = cfg.env
    if env.NPROC_PER_NODE:
        return env.NNODES * env.NPROC_PER_NODE
    return hw.gpus if hw is not None else 1


_FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "yi")


def notes_for(arch: Arch, plan: Plan) -> tuple[str, ...]:
    """What the numbers do not cover for this config (shown under the estimate)."""
    out = []
    known = set(arch.linears())
    unknown = [t for t in plan.lora_target if t != "all" and t not in known] if plan.method == "lora" else []
    if unknown:
        out.append(f"lora_target {', '.join(unknown)}: not a projection of this layer ({', '.join(sorted(known))}); "
                   "counted as no adapter")
    if arch.model_type and not arch.model_type.startswith(_FAMILIES):
        out.append(f"model type {arch.model_type}: the activation formula is the Llama/Qwen2 layer's; "
                   "expect a rougher estimate")
    if arch.experts:
        out.append("mixture of experts: the routed experts' activations assume an even load")
    return tuple(out)


def estimate_config(cfg: Any, hw: Hardware | None = None, lengths: Lengths | None = None,
                    rows: int | None = None) -> Estimate:
    """The estimate of a resolved config on ``hw`` (raises ArchError when the model's shape is unknown)."""
    arch = load_arch(cfg.model.model_name_or_path or "", cfg.model.cache_dir)
    plan = plan_of(cfg, _world(cfg, hw), lengths)
    steps = num_steps(plan, cfg.training.max_steps, cfg.training.num_train_epochs, rows)
    return Estimate(arch, plan, estimate_memory(arch, plan), estimate_time(arch, plan, hw, steps), hw,
                    notes_for(arch, plan))
