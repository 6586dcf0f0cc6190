"""Stage ppo: RLHF with PPO on our own losses (LLaMA-Factory's TRL-based PPO cannot run on a current install).

``run(cfg)`` wires the pieces and drives :func:`tuneforge.train.ppo.loop.ppo_step` once per PPO step:

* **policy** - the model of ``prepare`` (LoRA / freeze / full) plus a value head ``Linear(hidden, 1)`` on its own
  last hidden state (one model, as TRL's value-head models; the head is trained with the policy);
* **reference** - ``ref_model`` (+ ``ref_model_adapters``) if given; else, under LoRA, the same model with its
  adapter disabled (no copy); else a frozen second copy of the base;
* **reward** - ``reward_model`` by ``reward_model_type`` (see :mod:`tuneforge.train.ppo.rewards`), or a Python
  function passed as ``run(cfg, reward=fn)``.

The objective per mini-batch is ``policy_loss + VALUE_COEF · value_loss`` (0.1, TRL's ``vf_coef``), logged as
``loss``. Runs in one process, in fp32 or bf16 (autocast); fp16 and torchrun are refused with a clear message.

Steps: ``max_steps``, else ``ceil(num_train_epochs × rows / R)`` with R rollouts per step (``PPOSettings``). The
learning-rate schedule advances once per PPO step (as LLaMA-Factory's PPO). Prompts are read in a seeded order
per epoch, so the step number alone says where the data stands (exact resume, nothing to save for it).

Outputs as other stages: the policy (adapter or weights) + tokenizer + ``value_head.safetensors``,
``trainer_log.jsonl`` (LLaMA-Factory's fields, plus ``policy_loss``, ``value_loss``, ``kl``, ``kl_coef``),
``trainer_state.json`` (its history draws ``training_loss.png`` / ``training_reward.png``), ``train_results.json``,
``all_results.json``, the config and run record. ``checkpoint-N`` every ``save_steps`` (complete-marked) holds
the same plus optimizer, scheduler, RNG and PPO state (KL coefficient, score moments); resuming restores them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerControl, TrainerState

from ...config.diagnostics import ConfigError
from ...config.schema import Config
from ...losses import model_token_logps
from ...model.value_head import attach_value_head
from ..core.callbacks import MAX_NONFINITE_STEPS, TokenProgressBar, TrainerLogWriter, TrainingError
from ..core.checkpoints import (
    CheckpointCallback,
    ResumeError,
    invalidate,
    mark_complete,
    rotate_checkpoints,
    run_manifest,
    stop_on_signals,
)
from ..core.lifecycle import RunLifecycle, disable_dropout
from ..core.plots import plot_keys, plot_loss
from ..core.records import CONFIG_FILE, config_yaml
from ..core.workflow import Prepared, load_frozen_model, prepare
from .loop import Policy, PPOSettings, PPOState, PromptStream, ReferenceFn, generation_config, ppo_step
from .rewards import RewardFn, build_reward, on_device
from .state import load_policy, rng_state, save_policy, set_rng_state

logger = logging.getLogger(__name__)

PPO_STATE = "ppo_state.json"
LOGGED = ("loss", "policy_loss", "value_loss", "reward", "kl", "kl_coef", "clipfrac", "response_length")


def run(cfg: Config, *, reward: RewardFn | None = None) -> dict[str, Any]:
    """Train the policy of ``cfg`` with PPO and return the train metrics (see the module docstring).

    Args:
        cfg: a resolved config with ``stage: ppo``.
        reward: a Python reward function used instead of ``reward_model`` (see
            :class:`tuneforge.train.ppo.rewards.FunctionReward` for its signature).

    Raises:
        ValueError: fp16 (PPO here runs in bf16 or fp32) or several processes (one process only).
        OutputDirError, ResumeError, OutputWriteError, TrainingError: as
            :func:`tuneforge.train.core.trainer.run_training`.
    """
    from ..core.trainer import build_training_args

    args = build_training_args(cfg)
    _check_supported(args)
    p = prepare(cfg)
    return PPORun(cfg, args, p, reward).train()


def _check_supported(args: Any) -> None:
    if args.fp16:
        raise ConfigError.of("fp16", "stage ppo runs in bf16 or fp32 (fp16 needs loss scaling, which the PPO loop "
                                     "does not do); set bf16: true, or neither")
    if args.world_size > 1:
        raise ConfigError.of("NPROC_PER_NODE", f"stage ppo runs in one process (got {args.world_size}); launch it "
                                               "without torchrun")


def _autocast(args: Any):
    if not args.bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(args.device.type, dtype=torch.bfloat16)


def build_policy(cfg: Config, p: Prepared, args: Any) -> Policy:
    model = on_device(p.model, args.device)
    disable_dropout(model)
    model.train()
    stop_ids = p.template.stop_token_ids(p.tokenizer)
    pad_id = p.tokenizer.pad_token_id if p.tokenizer.pad_token_id is not None else stop_ids[0]
    # Registered on the model (the PeftModel under LoRA): one forward gives log-probabilities and values, and
    # the optimizer's parameter groups pick the head up with the policy's trainable parameters.
    return Policy(model, attach_value_head(model), pad_id, stop_ids, generation_config(cfg, p.tokenizer, stop_ids),
                  _autocast(args))


def build_reference(cfg: Config, p: Prepared, policy: Policy, device: torch.device) -> ReferenceFn:
    """Reference log-probabilities (see the module docstring for which model); never trained."""
    ft = cfg.finetuning
    if not ft.ref_model and hasattr(policy.model, "disable_adapter"):  # LoRA: the base is the reference, no copy
        def adapter_off(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            with policy.model.disable_adapter():
                return model_token_logps(policy.model, batch)[0]

        return adapter_off
    source = (ft.ref_model, ft.ref_model_adapters, ft.ref_model_quantization_bit) if ft.ref_model else \
        (cfg.model.model_name_or_path, None, None)
    model = on_device(load_frozen_model(cfg, p.tokenizer, *source), device)
    return lambda batch: model_token_logps(model, batch)[0]


def build_optimizer(cfg: Config, args: Any, policy: Policy) -> torch.optim.Optimizer:
    """transformers' optimizer of ``optim`` over the trainable parameters, value head included (weight decay and
    LoRA+ groups as in the other stages)."""
    from transformers import Trainer

    from ...model import optimizer_param_groups

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, policy.model)
    return optimizer_cls(optimizer_param_groups(policy.model, cfg, args.learning_rate), **kwargs)


def build_scheduler(args: Any, optimizer: torch.optim.Optimizer, total: int):
    """transformers' ``lr_scheduler_type`` over ``total`` PPO steps (warmup as ``warmup_steps``: a ratio below 1)."""
    from transformers import get_scheduler

    return get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(total),
                         num_training_steps=total, scheduler_specific_kwargs=args.lr_scheduler_kwargs)


def _every(value: float | int | None, total: int) -> int | None:
    """``logging_steps``/``save_steps`` in steps: a value below 1 is a ratio of the total (as transformers)."""
    if not value:
        return None
    return max(1, math.ceil(value * total)) if value < 1 else int(value)


class PPORun:
    """One PPO training run: the loop, its logs, checkpoints, resume and final outputs."""

    def __init__(self, cfg: Config, args: Any, p: Prepared, reward: RewardFn | None) -> None:
        self.cfg, self.args, self.p, self.out = cfg, args, p, Path(args.output_dir)
        self.settings = PPOSettings.from_cfg(cfg)
        self.policy = build_policy(cfg, p, args)
        self.reference = build_reference(cfg, p, self.policy, args.device)
        self.score = build_reward(cfg, p.tokenizer, self.policy, reward)
        self.stream = PromptStream(p.data.train, self.settings.rollouts, args.data_seed or args.seed,
                                   shuffle=not cfg.finetuning.disable_shuffling)
        self.total = args.max_steps if args.max_steps > 0 else self.stream.steps(args.num_train_epochs)
        self.optimizer = build_optimizer(cfg, args, self.policy)
        self.scheduler = build_scheduler(args, self.optimizer, self.total)
        self.ppo = PPOState.new(self.settings.target_kl)
        self.state = TrainerState(max_steps=self.total, train_batch_size=self.settings.mini_batch,
                                  logging_steps=_every(args.logging_steps, self.total) or 0,
                                  num_train_epochs=math.ceil(self.stream.epoch(self.total)))
        self.control = TrainerControl()
        progress = [] if args.disable_tqdm else [TokenProgressBar()]
        self.callbacks = [TrainerLogWriter(cfg.env.RECORD_VRAM, extra_keys=LOGGED), *progress]
        self.stopper = CheckpointCallback()  # holds the stop request of stop_on_signals
        self.manifest = {**run_manifest(cfg, dataset_fingerprints=p.data.fingerprints, world_size=1),
                         "ppo_buffer_size": cfg.finetuning.ppo_buffer_size}
        self.life = RunLifecycle(cfg, self.out, manifest=self.manifest, fingerprints=p.data.fingerprints)
        self.pending: list[dict[str, float]] = []  # step statistics since the last log line
        self.session: list[dict[str, float]] = []  # every step of this session (train_results.json)

    # ---- the loop ---------------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train (or resume) to the last step, then write the outputs; see the module docstring."""
        checkpoint = self.life.start()
        start = time.time()
        with self.life.guard(lambda: self.state.global_step):
            if checkpoint is not None:
                self._resume(checkpoint)
            self._event("on_train_begin")
            with stop_on_signals(self.stopper):
                self._loop()
            self._event("on_train_end")
            return self._finish(time.time() - start)

    def _loop(self) -> None:
        save_every = self._save_every()
        while self.state.global_step < self.total:
            self._step()
            step = self.state.global_step
            if self.stopper.stop_signal is not None:
                logger.warning("%s received: saving checkpoint-%d and stopping", self.stopper.stop_signal, step)
                self._save_checkpoint()
                return
            # no checkpoint inside a non-finite streak: a resume would land straight back in it
            if save_every and step % save_every == 0 and not self.ppo.consecutive_skips:
                self._save_checkpoint()

    def _step(self) -> None:
        step = self.state.global_step
        lr = self.scheduler.get_last_lr()[0]
        stats = ppo_step(self.policy, self.optimizer, self.stream.batch(step), self.score, self.reference,
                         self.settings, self.ppo)
        self.scheduler.step()
        if self.ppo.consecutive_skips >= MAX_NONFINITE_STEPS:
            raise TrainingError(f"training stopped at PPO step {step + 1}: {self.ppo.consecutive_skips} consecutive "
                                "optimizer updates had a non-finite gradient. Lower learning_rate, or check the "
                                "reward scale (ppo_score_norm: true normalises it).")
        self.state.global_step, self.state.epoch = step + 1, self.stream.epoch(step + 1)
        self.state.num_input_tokens_seen += int(stats.pop("tokens"))
        stats["learning_rate"] = lr
        self.pending.append(stats)
        self.session.append(stats)
        self._event("on_step_end")
        every = self.state.logging_steps
        first = self.args.logging_first_step and step == 0
        if first or (every and (step + 1) % every == 0) or step + 1 == self.total:
            self._log()

    def _log(self) -> None:
        logs = {key: _mean(self.pending, key) for key in LOGGED}
        logs.update(learning_rate=self.pending[-1]["learning_rate"], epoch=round(self.state.epoch, 4),
                    total_tokens=self.state.num_input_tokens_seen, skipped_steps=self.ppo.skipped_steps,
                    throughput=round(self._session_tokens / max(time.time() - self._started, 1e-9), 2))
        self.pending = []
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self._event("on_log", logs=logs)

    def _event(self, name: str, **kwargs: Any) -> None:
        if name == "on_train_begin":
            self._started, self._tokens_at_start = time.time(), self.state.num_input_tokens_seen
        for callback in self.callbacks:
            getattr(callback, name)(self.args, self.state, self.control, **kwargs)

    @property
    def _session_tokens(self) -> int:
        return self.state.num_input_tokens_seen - self._tokens_at_start

    # ---- output_dir, checkpoints, resume ------------------------------------------------------------------------

    def _save_every(self) -> int | None:
        if self.args.save_strategy == "no":
            return None
        if self.args.save_strategy == "epoch":
            return max(1, self.stream.steps(1))
        return _every(self.args.save_steps, self.total)

    def _save_checkpoint(self) -> None:
        folder = self.out / f"checkpoint-{self.state.global_step}"
        invalidate(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_policy(self.policy, self.p.tokenizer, folder)
        if not self.args.save_only_model:
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            torch.save(rng_state(), folder / "rng_state.pth")
        (folder / PPO_STATE).write_text(json.dumps(self.ppo.to_dict(), indent=2), encoding="utf-8")
        self.state.save_to_json(str(folder / "trainer_state.json"))
        mark_complete(folder, self.manifest, {CONFIG_FILE: config_yaml(self.cfg)})
        rotate_checkpoints(self.out, self.args.save_total_limit)  # only now: a complete checkpoint always remains
        self.life.checkpoint_saved()

    def _resume(self, folder: Path) -> None:
        missing = [n for n in ("optimizer.pt", "scheduler.pt", "rng_state.pth") if not (folder / n).is_file()]
        if missing:
            raise ResumeError(f"cannot resume from {folder}: it has no {', '.join(missing)} (saved with "
                              "save_only_model); start a new run that loads its weights instead")
        load_policy(self.policy, folder)
        device = self.args.device
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        self.ppo.load_dict(json.loads((folder / PPO_STATE).read_text(encoding="utf-8")))
        saved = TrainerState.load_from_json(str(folder / "trainer_state.json"))
        self.state.global_step, self.state.epoch = saved.global_step, saved.epoch
        self.state.log_history, self.state.num_input_tokens_seen = saved.log_history, saved.num_input_tokens_seen
        set_rng_state(torch.load(folder / "rng_state.pth", weights_only=True))
        logger.info("resumed from %s at PPO step %d of %d", folder, saved.global_step, self.total)

    # ---- the end ------------------------------------------------------------------------------------------------

    def _finish(self, runtime: float) -> dict[str, Any]:
        stopped = self.stopper.stop_signal if self.state.global_step < self.total else None
        if stopped is None:
            save_policy(self.policy, self.p.tokenizer, self.out)
        metrics = {"epoch": self.state.epoch, "train_runtime": round(runtime, 4),
                   "train_steps_per_second": round(len(self.session) / max(runtime, 1e-9), 4),
                   "train_loss": _mean(self.session, "loss"), "train_reward": _mean(self.session, "reward"),
                   "skipped_steps": self.ppo.skipped_steps}
        for name in ("train_results.json", "all_results.json"):
            (self.out / name).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        self.state.save_to_json(str(self.out / "trainer_state.json"))
        if self.cfg.monitoring.plot_loss:
            plot_loss(self.out, plot_keys("ppo", self.state.log_history))
        self.life.finish(stopped, global_step=self.state.global_step, metrics=metrics)
        if stopped:
            logger.warning("stopped by %s at step %d; checkpoint-%d is complete: rerun with resume_from_checkpoint: "
                           "true to continue", stopped, self.state.global_step, self.state.global_step)
            metrics["interrupted_by"] = stopped
        return metrics


def _mean(rows: list[dict[str, float]], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return sum(values) / len(values) if values else None

