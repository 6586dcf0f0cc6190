"""Render a :class:`Resolution` for ``tuneforge check``: grouped text, or one JSON object."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, TextIO

from .derive import derived_only
from .diagnostics import Diagnostic, sort_key
from .loader import Resolution
from .schema import DERIVED_ONLY, GROUPS, all_specs

# Keys shown even at their default: the ones the mission calls core.
CORE = frozenset({
    "model_name_or_path", "template", "flash_attn", "enable_liger_kernel", "use_unsloth", "trust_remote_code",
    "dataset", "cutoff_len", "train_on_prompt", "mask_history", "mix_strategy", "val_size", "packing",
    "neat_packing", "stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
    "use_rslora", "use_dora", "pissa_init", "learning_rate", "lr_scheduler_type", "warmup_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_grad_norm", "num_train_epochs",
    "max_steps", "bf16", "fp16", "deepspeed", "output_dir", "logging_steps", "save_steps", "eval_steps",
    "plot_loss", "report_to", "do_sample", "temperature", "top_p", "max_new_tokens", "do_train",
    "eval_strategy", "FORCE_TORCHRUN", "NPROC_PER_NODE", "API_HOST", "API_PORT", "API_KEY",
})
_SECRET = frozenset({"API_KEY", "hf_hub_token", "ms_hub_token", "hub_token"})


def plain(value: Any) -> Any:
    """A JSON-friendly version of a config value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _shown(key: str, value: Any) -> Any:
    return "***" if key in _SECRET and value else plain(value)


def to_json(res: Resolution) -> dict[str, Any]:
    """The machine-readable form: resolved values, their sources, the groups and the diagnostics."""
    specs = all_specs()
    resolved = {k: _shown(k, res.config.value(k)) for k in specs}
    sources = {k: res.sources[k] for k in specs}
    groups: dict[str, list[str]] = {g: [k for k, s in specs.items() if s.group == g] for g in GROUPS}
    for key, value in derived_only(res).items():
        resolved[key], sources[key] = value, "derived"
        groups[DERIVED_ONLY[key][0]].append(key)
    diags = [d.to_json() for d in sorted(res.diagnostics, key=sort_key)]
    return {"resolved": resolved, "sources": sources, "groups": groups, "diagnostics": diags}


def _fmt(value: Any) -> str:
    value = plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "[]"
    if value is None:
        return "null"
    return json.dumps(value) if isinstance(value, str) and (not value or " " in value) else str(value)


def _color(text: str, code: str, enabled: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if enabled else text


def render_values(res: Resolution, out: TextIO, show_all: bool, color: bool) -> None:
    specs = all_specs()
    derived = derived_only(res)
    for group in GROUPS:
        keys = [k for k, s in specs.items() if s.group == group]
        shown = [k for k in keys if show_all or k in CORE or res.sources[k] != "default"]
        extra = [k for k, (g, _) in DERIVED_ONLY.items() if g == group]
        hidden = len(keys) - len(shown)
        out.write(_color(group, "1", color) + (f"  ({hidden} more at their defaults)" if hidden else "") + "\n")
        width = max([len(k) for k in shown + extra] + [10])
        for key in shown:
            source = res.sources[key]
            tag = _color(f"[{source}]", "2" if source == "default" else "36", color)
            out.write(f"  {key:<{width}}  {_fmt(_shown(key, res.config.value(key)))}  {tag}\n")
        for key in extra:
            out.write(f"  {key:<{width}}  {_fmt(derived[key])}  {_color('[derived]', '36', color)}\n")


_LEVEL_COLOR = {"error": "31;1", "warning": "33", "notice": "34"}


def render_diagnostics(diags: list[Diagnostic], out: TextIO, color: bool) -> None:
    for d in sorted(diags, key=sort_key):
        out.write(f"{_color(f'{d.level:<7}', _LEVEL_COLOR[d.level], color)}  {d.key}: {d.message}\n")
    counts = {level: sum(d.level == level for d in diags) for level in _LEVEL_COLOR}
    out.write(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['notice']} notice(s)\n")


def render_text(res: Resolution, out: TextIO = sys.stdout, show_all: bool = False) -> None:
    color = out.isatty()
    if res.path:
        out.write(f"config: {res.path}\n")
    render_values(res, out, show_all, color)
    out.write("\n")
    render_diagnostics(res.diagnostics, out, color)
