"""Dependency rules between parameters, at three levels (errors, warnings, notices).

Each rule is a small named function of a :class:`Ctx` that yields ``(key, message)`` pairs;
``@rule(level)`` registers it. ``run_rules`` runs all of them and returns every finding, so a
config's problems are reported together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, Level

if TYPE_CHECKING:
    from ..loader import Resolution

Finding = tuple[str, str]
RuleFn = Callable[["Ctx"], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    name: str
    level: Level
    fn: RuleFn


RULES: dict[str, Rule] = {}


def rule(level: Level) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` as a rule of ``level``; its name is the function name."""

    def wrap(fn: RuleFn) -> RuleFn:
        if fn.__name__ in RULES:
            raise RuntimeError(f"rule {fn.__name__} registered twice")
        RULES[fn.__name__] = Rule(fn.__name__, level, fn)
        return fn

    return wrap


class Ctx:
    """What a rule sees: the typed config, which keys the user set, and a few cached facts."""

    def __init__(self, res: Resolution):
        self.res = res
        self.cfg = res.config
        self.model, self.data, self.ft = self.cfg.model, self.cfg.data, self.cfg.finetuning
        self.tr, self.ev, self.mon, self.gen = self.cfg.training, self.cfg.evaluation, self.cfg.monitoring, \
            self.cfg.generating
        self.stage = self.ft.stage

    def is_set(self, key: str) -> bool:
        return self.res.is_set(key)

    @cached_property
    def deepspeed_config(self) -> dict[str, Any] | None:
        """The DeepSpeed config as a dict (read from its file), or None when absent or unreadable."""
        ds = self.tr.deepspeed
        if isinstance(ds, dict):
            return ds
        if isinstance(ds, str) and Path(ds).is_file():
            try:
                loaded = json.loads(Path(ds).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            return loaded if isinstance(loaded, dict) else None
        return None

    @cached_property
    def zero_stage(self) -> int | None:
        ds = self.deepspeed_config
        if ds is None:
            return None
        stage = (ds.get("zero_optimization") or {}).get("stage", 0)
        return stage if isinstance(stage, int) else None

    @property
    def wants_eval(self) -> bool:
        return bool(self.ev.do_eval or self.ev.do_predict or self.ev.eval_strategy != "no")


def run_rules(res: Resolution) -> list[Diagnostic]:
    """Run every registered rule; a rule that crashes is reported, not raised."""
    from . import (  # noqa: F401
        data_rules,
        inactive,
        memory_rules,
        method_rules,
        path_rules,
        preference_rules,
        runtime_rules,
        stability,
        stage_rules,
        template_fit,
        template_rules,
        training_rules,
    )

    ctx = Ctx(res)
    out: list[Diagnostic] = []
    for r in RULES.values():
        try:
            findings = list(r.fn(ctx))
        except Exception as err:
            out.append(Diagnostic("warning", r.name, f"rule {r.name} could not run: {err}", r.name))
            continue
        out.extend(Diagnostic(r.level, key, msg, r.name) for key, msg in findings)
    return out
