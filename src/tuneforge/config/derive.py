"""Values that follow from others (LLaMA-Factory's post-init rules), marked ``derived``.

Example: ``lora_rank: 16`` with no ``lora_alpha`` gives ``lora_alpha = 32`` (derived) and
``lora_scaling = 2.0``; ``stage: pt`` with no ``packing`` gives ``packing = true``.
Unlike LLaMA-Factory, ``cutoff_len`` is never decremented when packing is on: a packed row
holds exactly ``cutoff_len`` tokens whichever way packing was switched on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..catalog import stage

if TYPE_CHECKING:
    from .loader import Resolution


def _set(res: Resolution, group: str, key: str, value: Any) -> None:
    setattr(getattr(res.config, group), key, value)
    res.sources[key] = "derived"


def num_devices(res: Resolution) -> int:
    """Data-parallel processes: NNODES x NPROC_PER_NODE when set, else 1 (the GPUs are counted at launch)."""
    env = res.config.env
    return env.NNODES * (env.NPROC_PER_NODE or 1)


def compute_dtype(res: Resolution) -> str:
    cfg = res.config
    if cfg.training.bf16 or cfg.finetuning.pure_bf16:
        return "bfloat16"
    if cfg.training.fp16:
        return "float16"
    return "float32"


def lora_scaling(res: Resolution) -> float:
    ft = res.config.finetuning
    alpha = ft.lora_alpha or 2 * ft.lora_rank
    return alpha / math.sqrt(ft.lora_rank) if ft.use_rslora else alpha / ft.lora_rank


def derived_only(res: Resolution) -> dict[str, Any]:
    """The computed values that are not keys, in the order ``check`` shows them."""
    tr = res.config.training
    devices = num_devices(res)
    return {
        "lora_scaling": round(lora_scaling(res), 6),
        "effective_batch_size": tr.per_device_train_batch_size * tr.gradient_accumulation_steps * devices,
        "num_devices": devices,
        "compute_dtype": compute_dtype(res),
    }


def derive(res: Resolution) -> None:
    """Fill the values that default to 'derived from another key'."""
    cfg = res.config
    ft, data, ev, mon = cfg.finetuning, cfg.data, cfg.evaluation, cfg.monitoring
    if ft.lora_alpha is None:
        _set(res, "finetuning", "lora_alpha", 2 * ft.lora_rank)
    if data.neat_packing and not data.packing:
        _set(res, "data", "packing", True)
    elif data.packing is None:
        _set(res, "data", "packing", stage(ft.stage).processor == "pretrain")  # raw text packs by default
    if mon.eval_steps is None and ev.eval_strategy == "steps":
        _set(res, "monitoring", "eval_steps", mon.logging_steps)
    if ev.generation_max_length is None:
        _set(res, "evaluation", "generation_max_length", data.cutoff_len)
    if mon.output_dir is None:
        _set(res, "monitoring", "output_dir", "trainer_output")  # transformers' own default
    if (cfg.training.torch_compile_backend or cfg.training.torch_compile_mode) and not cfg.training.torch_compile:
        _set(res, "training", "torch_compile", True)  # as transformers: a backend or mode turns compilation on
    if cfg.training.use_liger_kernel and not cfg.model.enable_liger_kernel:
        _set(res, "model", "enable_liger_kernel", True)
    if data.eval_num_beams is not None and ev.generation_num_beams != data.eval_num_beams:
        _set(res, "evaluation", "generation_num_beams", data.eval_num_beams)
