"""Rules about files, folders, installed packages and the training schedule."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

from ..paths import OUTPUT_LOCK
from . import Ctx, Finding, rule


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@rule("error")
def model_required(ctx: Ctx) -> Iterator[Finding]:
    if not ctx.model.model_name_or_path:
        yield "model_name_or_path", "model_name_or_path is required: a local model folder or a hub id"


def _non_empty(path: Path) -> bool:
    return path.is_dir() and any(p.name != OUTPUT_LOCK for p in path.iterdir())  # a leftover lock is not content


@rule("error")
def output_dir_not_empty(ctx: Ctx) -> Iterator[Finding]:
    """Nothing a user wrote is overwritten without being asked."""
    out = ctx.mon.output_dir
    if not ctx.tr.do_train or not out or not _non_empty(Path(out)):
        return
    if ctx.mon.overwrite_output_dir or ctx.tr.resume_from_checkpoint not in (None, False):
        return
    yield "output_dir", f"{out} exists and is not empty: set resume_from_checkpoint: true to continue it, " \
                        "overwrite_output_dir: true to replace it, or choose another output_dir"


@rule("warning")
def overwrite_existing(ctx: Ctx) -> Iterator[Finding]:
    out = ctx.mon.output_dir
    if ctx.tr.do_train and ctx.mon.overwrite_output_dir and out and _non_empty(Path(out)):
        yield "overwrite_output_dir", f"the outputs earlier tuneforge runs wrote into {out} will be replaced by " \
                                      "this run (anything else there stops it, named)"


@rule("error")
def resume_checkpoint_exists(ctx: Ctx) -> Iterator[Finding]:
    ckpt = ctx.tr.resume_from_checkpoint
    if isinstance(ckpt, str) and not Path(ckpt).is_dir():
        yield "resume_from_checkpoint", f"checkpoint {ckpt} does not exist; give a checkpoint folder or true " \
                                        "(the latest complete checkpoint of output_dir)"


@rule("error")
def deepspeed_config_valid(ctx: Ctx) -> Iterator[Finding]:
    ds = ctx.tr.deepspeed
    if ds is None:
        return
    if isinstance(ds, str) and not Path(ds).is_file():
        yield "deepspeed", f"DeepSpeed config {ds} does not exist"
    elif ctx.deepspeed_config is None:
        yield "deepspeed", f"DeepSpeed config {ds} is not a JSON object"


_OPTIONAL = (
    ("enable_liger_kernel", "liger_kernel", "tuneforge[liger]", lambda c: c.model.enable_liger_kernel),
    ("use_unsloth", "unsloth", "unsloth", lambda c: c.model.use_unsloth),
    ("deepspeed", "deepspeed", "tuneforge[deepspeed]", lambda c: c.tr.deepspeed is not None),
    ("flash_attn", "flash_attn", "flash-attn", lambda c: c.model.flash_attn == "fa2"),
    ("flash_attn", "flash_attn_interface", "flash-attn 3 (hopper build)", lambda c: c.model.flash_attn == "fa3"),
    ("quantization_bit", "bitsandbytes", "tuneforge[bnb]", lambda c: c.model.quantization_bit is not None),
    ("plot_loss", "matplotlib", "matplotlib", lambda c: c.mon.plot_loss),
    ("USE_MODELSCOPE_HUB", "modelscope", "modelscope", lambda c: c.cfg.env.USE_MODELSCOPE_HUB),
)


@rule("warning")
def optional_packages(ctx: Ctx) -> Iterator[Finding]:
    """Requested kernels/extras not installed here: the run refuses to start on this machine."""
    for key, module, install, wanted in _OPTIONAL:
        if wanted(ctx) and not _installed(module):
            yield key, f"{key} needs the {module} package, which is not installed here (pip install {install}); " \
                       "training on this machine will stop with an error"
    reporters = ctx.mon.report_to if isinstance(ctx.mon.report_to, list) else [ctx.mon.report_to]
    for name in reporters:
        if name in ("wandb", "tensorboard", "trackio", "mlflow") and not _installed(
            "tensorboard" if name == "tensorboard" else name
        ):
            yield "report_to", f"report_to {name}: the {name} package is not installed (pip install {name})"


@rule("error")
def schedule_length(ctx: Ctx) -> Iterator[Finding]:
    if ctx.tr.do_train and ctx.tr.max_steps <= 0 and ctx.tr.num_train_epochs <= 0:
        yield "num_train_epochs", "with max_steps unset, num_train_epochs must be > 0"


@rule("error")
def best_model_strategies(ctx: Ctx) -> Iterator[Finding]:
    """load_best_model_at_end needs a checkpoint at every evaluation."""
    if not ctx.ev.load_best_model_at_end:
        return
    if ctx.ev.eval_strategy != ctx.mon.save_strategy and ctx.mon.save_strategy != "best":
        yield "load_best_model_at_end", f"load_best_model_at_end needs save_strategy ({ctx.mon.save_strategy}) " \
                                        f"equal to eval_strategy ({ctx.ev.eval_strategy})"
    elif ctx.ev.eval_strategy == "steps" and ctx.mon.eval_steps and ctx.mon.save_steps % ctx.mon.eval_steps:
        yield "save_steps", f"load_best_model_at_end needs save_steps ({ctx.mon.save_steps:g}) to be a multiple " \
                            f"of eval_steps ({ctx.mon.eval_steps:g})"


@rule("error")
def unsupported_hubs(ctx: Ctx) -> Iterator[Finding]:
    if ctx.cfg.env.USE_OPENMIND_HUB:
        yield "USE_OPENMIND_HUB", "the Modelers (OpenMind) hub is not supported; unset USE_OPENMIND_HUB"
