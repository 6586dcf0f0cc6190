"""The stage catalog and the preference-loss catalog: the one place each stage's and each loss's facts live.

Torch-free (config, data, model and train all read it). ``STAGES["dpo"].packable is False``;
``uses_reference(STAGES["dpo"], "simpo") is False``; ``LOSSES["ipo"].length_averaged is True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

_HERE = Path(__file__).parent
Reference = Literal["never", "loss", "always"]


@dataclass(frozen=True)
class StageSpec:
    """One training stage (see ``stages.yaml`` for what each field means)."""

    name: str
    title: str
    run: str
    processor: str
    collator: str
    packable: bool
    reference: Reference
    needs_response: bool
    dataset: str
    plot_keys: tuple[str, ...]
    keys: tuple[str, ...] = ()
    exclusive_keys: tuple[str, ...] = ()
    best_model: bool = True
    train_only: bool = False
    generates: bool = False
    predicts: bool = False
    single_process: bool = False
    value_head: bool = False
    fp16: bool = True


@dataclass(frozen=True)
class LossSpec:
    """One ``pref_loss`` of stage dpo (see ``losses.yaml``)."""

    name: str
    reference_free: bool
    length_averaged: bool
    paper: str
    adds_sft: bool = False
    kwargs: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """The config keys this loss reads besides ``pref_beta``: ``LOSSES["simpo"].keys == ("simpo_gamma",)``."""
        return tuple(self.kwargs.values())


def _records(file: str, kind: type) -> dict[str, Any]:
    raw = yaml.safe_load((_HERE / file).read_text(encoding="utf-8"))
    known = {f.name for f in fields(kind)}
    out = {}
    for name, record in raw.items():
        unknown = set(record) - known
        if unknown:  # a typo in the table must fail loudly, not read as a default
            raise ValueError(f"{file}: {name} has unknown fields {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}
        out[name] = kind(name=name, **values)
    return out


@cache
def _stages() -> dict[str, StageSpec]:
    return _records("stages.yaml", StageSpec)


@cache
def _losses() -> dict[str, LossSpec]:
    return _records("losses.yaml", LossSpec)


STAGES: dict[str, StageSpec] = _stages()
LOSSES: dict[str, LossSpec] = _losses()
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)
LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)


def stage(name: str) -> StageSpec:
    """The record of stage ``name`` (the schema only lets catalog names through)."""
    return STAGES[name]


def uses_reference(spec: StageSpec, pref_loss: str) -> bool:
    """Whether ``spec`` runs a reference model with this ``pref_loss``: ``uses_reference(STAGES["kto"], "x")``."""
    return spec.reference == "always" or (spec.reference == "loss" and not LOSSES[pref_loss].reference_free)


def stages_reading(key: str) -> tuple[str, ...]:
    """The stages whose ``keys`` list ``key`` (empty when no stage claims it)."""
    return tuple(s.name for s in STAGES.values() if key in s.keys)


def stage_keys() -> tuple[str, ...]:
    """Every key some stage claims, in catalog order, without repeats."""
    return tuple(dict.fromkeys(k for s in STAGES.values() for k in s.keys))


def loss_keys() -> tuple[str, ...]:
    """Every extra key some preference loss reads."""
    return tuple(dict.fromkeys(k for s in LOSSES.values() for k in s.keys))
