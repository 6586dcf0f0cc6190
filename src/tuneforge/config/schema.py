"""The schema: every key, its group, type, default and help, in one place.

Eight groups. ``model``, ``data``, ``finetuning``, ``generating`` and ``env`` are our dataclasses;
``training``, ``monitoring`` and ``evaluation`` add the keys of transformers'
``Seq2SeqTrainingArguments`` (read from ``tables/training_args.yaml``, placed by ``tables/groups.yaml``), so a
key transformers has is accepted with transformers' own default, and one it removed is not.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, make_dataclass
from importlib import resources
from typing import Any

import yaml

from .fields import FieldSpec, specs_of
from .groups.data import DataArgs
from .groups.env import EnvArgs
from .groups.evaluation import EvaluationArgs
from .groups.finetuning import FinetuningArgs
from .groups.generating import GeneratingArgs
from .groups.model import ModelArgs
from .groups.monitoring import MonitoringArgs
from .hf_table import TABLE, spec_of

GROUPS = ("model", "data", "finetuning", "training", "generating", "evaluation", "monitoring", "env")

# Set by the launcher or meaningless in a YAML file.
_HF_EXCLUDED = frozenset({"local_rank", "parallelism_config"})

# transformers declares these narrower than LLaMA-Factory configs use them.
_HF_TYPES = {"resume_from_checkpoint": bool | str | None}

# Extra constraints on transformers keys: ``fsdp`` is written as a list in LLaMA-Factory's examples.
_HF_CONSTRAINTS = {"fsdp": {"spaced": True}}

# Values we compute and show but a user cannot set: name -> (group, meaning).
DERIVED_ONLY = {
    "lora_scaling": ("finetuning", "LoRA output scale: lora_alpha / lora_rank, or / sqrt(lora_rank) with rsLoRA"),
    "effective_batch_size": ("training", "per_device_train_batch_size x gradient_accumulation_steps x devices"),
    "num_devices": ("training", "data-parallel processes (NNODES x NPROC_PER_NODE, or the GPUs seen)"),
    "compute_dtype": ("training", "dtype of the forward pass: bfloat16, float16 or float32"),
}

_STATIC = {
    "model": ModelArgs,
    "data": DataArgs,
    "finetuning": FinetuningArgs,
    "generating": GeneratingArgs,
    "evaluation": EvaluationArgs,
    "monitoring": MonitoringArgs,
    "env": EnvArgs,
}


@dataclass
class TrainingOwnArgs:
    """Training keys of our own (the rest come from transformers)."""


@functools.cache
def load_table(name: str) -> Any:
    """Read one of the YAML tables shipped in ``config/tables`` (parsed once; treat the result as read-only)."""
    text = resources.files("tuneforge.config").joinpath("tables").joinpath(name).read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def _hf_specs() -> tuple[FieldSpec, ...]:
    """The transformers keys, from ``tables/training_args.yaml`` (no transformers import: ``check`` stays fast)."""
    placement = load_table("groups.yaml")
    group_of = {key: group for group, keys in placement.items() for key in keys}
    rows = load_table(TABLE)["keys"]
    specs = (spec_of(row, group_of.get(row["name"], "training")) for row in rows if row["name"] not in _HF_EXCLUDED)
    return tuple(dataclasses.replace(s, type=_HF_TYPES.get(s.name, s.type),
                                     constraints={**s.constraints, **_HF_CONSTRAINTS.get(s.name, {})})
                 for s in specs)


def hf_table_version() -> str:
    """The transformers version the training-argument table was generated from."""
    return str(load_table(TABLE)["transformers"])


@functools.cache
def all_specs() -> dict[str, FieldSpec]:
    """Every settable key, in group order."""
    out: dict[str, FieldSpec] = {}
    hf = _hf_specs()
    for group in GROUPS:
        own = _STATIC.get(group, TrainingOwnArgs if group == "training" else None)
        for spec in specs_of(own, group) + [s for s in hf if s.group == group]:
            if spec.name in out:
                raise RuntimeError(f"key {spec.name} declared twice ({out[spec.name].group}, {group})")
            out[spec.name] = spec
    return out


def _field_of(spec: FieldSpec) -> Any:
    if callable(spec.default):
        return dataclasses.field(default_factory=spec.default)
    return dataclasses.field(default=spec.default)


@functools.cache
def group_classes() -> dict[str, type]:
    """The dataclass of each group; training/monitoring/evaluation gain the transformers keys."""
    classes: dict[str, type] = {}
    hf = _hf_specs()
    for group in GROUPS:
        base = _STATIC.get(group, TrainingOwnArgs if group == "training" else None)
        extra = [s for s in hf if s.group == group]
        if not extra:
            classes[group] = base
            continue
        fields = [(s.name, s.type, _field_of(s)) for s in extra]
        classes[group] = make_dataclass(f"{group.capitalize()}Args", fields, bases=(base,))
    return classes


@dataclass
class Config:
    """A resolved configuration: one typed object per group. Read ``cfg.finetuning.lora_rank``."""

    model: ModelArgs
    data: DataArgs
    finetuning: FinetuningArgs
    training: Any
    generating: GeneratingArgs
    evaluation: Any
    monitoring: Any
    env: EnvArgs

    def value(self, key: str) -> Any:
        """Value of a flat key, wherever its group is (for reports and generic rules)."""
        return getattr(getattr(self, all_specs()[key].group), key)

    def to_flat(self) -> dict[str, Any]:
        """All settable keys and values, in schema order."""
        return {key: self.value(key) for key in all_specs()}

    def hf_training_kwargs(self) -> dict[str, Any]:
        """The keys that belong to transformers' ``Seq2SeqTrainingArguments``."""
        return {s.name: self.value(s.name) for s in _hf_specs()}
