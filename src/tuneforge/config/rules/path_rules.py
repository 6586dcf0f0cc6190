"""Everything `train` would find missing before loading: model, adapter and reward folders, hub ids offline,
the FSDP config file, and output folders that cannot be written. Only file names are looked at; nothing loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...catalog import stage
from ..paths import (
    VALUE_HEAD,
    adapter_folder_problem,
    hub_cache,
    in_hub_cache,
    model_folder_problem,
    offline,
    source_kind,
)
from . import Ctx, Finding, rule


@dataclass(frozen=True)
class Source:
    """One model or adapter the run loads: the key naming it, its value, how to judge a local folder, and the
    file a cached hub snapshot must hold."""

    key: str
    name: str
    local_problem: Callable[[Path], str | None]
    needed: str


def _model(needs_weights: bool, needs_tokenizer: bool = False) -> Callable[[Path], str | None]:
    return lambda folder: model_folder_problem(folder, needs_weights, needs_tokenizer)


def _with_value_head(check: Callable[[Path], str | None]) -> Callable[[Path], str | None]:
    def judge(folder: Path) -> str | None:
        problem = check(folder)
        if problem is None and not (folder / VALUE_HEAD).is_file():
            return f"has no {VALUE_HEAD}, so it is not a reward model written by stage rm"
        return problem

    return judge


def _adapters(key: str, names: list[str] | None, last_has_head: bool = False) -> list[Source]:
    names = list(names or [])
    return [Source(key, name, _with_value_head(adapter_folder_problem) if last_has_head and i == len(names) - 1
                   else adapter_folder_problem, "adapter_config.json") for i, name in enumerate(names)]


def _reward_sources(ctx: Ctx) -> list[Source]:
    """PPO's reward model: a LoRA adapter with a value head, or a model whose value head sits in its last adapter."""
    ft = ctx.ft
    if "reward_model" not in stage(ctx.stage).keys or not ft.reward_model or ft.reward_model_type == "api":
        return []
    if ft.reward_model_type == "lora":
        return [Source("reward_model", ft.reward_model, _with_value_head(adapter_folder_problem),
                       "adapter_config.json")]
    adapters = _adapters("reward_model_adapters", ft.reward_model_adapters, last_has_head=True)
    check = _model(True) if adapters else _with_value_head(_model(True))
    return [Source("reward_model", ft.reward_model, check, "config.json"), *adapters]


def sources(ctx: Ctx) -> list[Source]:
    """Every model and adapter this config loads (the reference only for preference stages)."""
    out: list[Source] = []
    if ctx.model.model_name_or_path:
        out.append(Source("model_name_or_path", ctx.model.model_name_or_path,
                          _model(not ctx.model.train_from_scratch, needs_tokenizer=True), "config.json"))
    sub = ctx.model.adapter_folder  # the adapter may sit in a sub-folder of each given folder
    out += [Source(s.key, s.name, (lambda f: adapter_folder_problem(f / sub)) if sub else s.local_problem, s.needed)
            for s in _adapters("adapter_name_or_path", ctx.model.adapter_name_or_path)]
    if stage(ctx.stage).reference != "never" and ctx.ft.ref_model:
        out.append(Source("ref_model", ctx.ft.ref_model, _model(True), "config.json"))
        out += _adapters("ref_model_adapters", ctx.ft.ref_model_adapters)
    return out + _reward_sources(ctx)


def _is_offline(ctx: Ctx) -> bool:
    return offline(ctx.cfg.env.HF_HUB_OFFLINE, ctx.res.environ) and not ctx.cfg.env.USE_MODELSCOPE_HUB


def _cached(ctx: Ctx, src: Source) -> bool:
    return in_hub_cache(src.name, src.needed, hub_cache(ctx.model.cache_dir, ctx.res.environ))


@rule("error")
def sources_exist(ctx: Ctx) -> Iterator[Finding]:
    """A local source has the files it needs; a name is a folder or an ``owner/name`` hub id; offline, a hub id
    must already be in the local cache."""
    for src in sources(ctx):
        kind = source_kind(src.name)
        if kind == "local":
            problem = src.local_problem(Path(src.name).expanduser())
            if problem:
                yield src.key, f"{src.name} {problem}"
        elif kind == "invalid":
            yield src.key, f"{src.name!r} is neither a local folder nor a hub id of the form owner/name; give the " \
                           "path of a folder (./name for one in this directory) or a hub id such as Qwen/Qwen3-0.6B"
        elif _is_offline(ctx) and not _cached(ctx, src):
            cache = hub_cache(ctx.model.cache_dir, ctx.res.environ)
            yield src.key, f"{src.name} is neither a folder here nor in the hub cache {cache}, and the hub cannot " \
                           "be reached (HF_HUB_OFFLINE is set): give an existing folder, download it where there is " \
                           f"network (hf download {src.name}), or unset HF_HUB_OFFLINE"


@rule("notice")
def hub_download(ctx: Ctx) -> Iterator[Finding]:
    """A hub id not cached yet: said once, since a mistyped relative path (models/qwen) looks like one."""
    if _is_offline(ctx):
        return
    hub = "ModelScope" if ctx.cfg.env.USE_MODELSCOPE_HUB else "the Hugging Face hub"
    for src in sources(ctx):
        if source_kind(src.name) == "hub" and (ctx.cfg.env.USE_MODELSCOPE_HUB or not _cached(ctx, src)):
            yield src.key, f"{src.name} is not a local folder: it will be downloaded from {hub}"


def _unwritable(path: Path) -> str | None:
    """Why files cannot be written under ``path`` (a file in the way, no permission), or None."""
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"cannot be created: {probe} is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot be written: no write permission on {probe}"
    return None


@rule("error")
def output_folders_writable(ctx: Ctx) -> Iterator[Finding]:
    """output_dir (train, eval, predict) and export_dir can be created and written."""
    writes = ctx.tr.do_train or ctx.ev.do_eval or ctx.ev.do_predict
    for key, folder in (("output_dir", ctx.mon.output_dir if writes else None), ("export_dir", ctx.model.export_dir)):
        problem = _unwritable(Path(folder).expanduser().absolute()) if folder else None
        if problem:
            yield key, f"{key} {folder} {problem}"


@rule("error")
def fsdp_config_valid(ctx: Ctx) -> Iterator[Finding]:
    """fsdp_config given as a file must exist and hold a JSON object (transformers reads it at start-up)."""
    path = ctx.tr.fsdp_config
    if not isinstance(path, str) or not path.strip():
        return
    if not Path(path).is_file():
        yield "fsdp_config", f"FSDP config {path} does not exist"
        return
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        yield "fsdp_config", f"FSDP config {path} is not valid JSON: {err}"
        return
    if not isinstance(loaded, dict):
        yield "fsdp_config", f"FSDP config {path} is not a JSON object"
