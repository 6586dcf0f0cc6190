"""The trainer every stage uses: transformers' ``Seq2SeqTrainer`` with our loss, logs and run bookkeeping.

Composition, not patching: :class:`TuneforgeTrainer` overrides only ``compute_loss`` (our token-normalised loss)
and ``log`` (tokens/s, skipped steps, perplexity, accuracy, stage metrics). Everything else (the non-finite guard,
checkpoint markers, graceful stop, ``trainer_log.jsonl``, the progress bar) is a ``TrainerCallback``.

Stage modules call :func:`build_trainer` then :func:`run_training`::

    trainer = build_trainer(cfg, model, tokenizer, train_ds, eval_ds, collator)
    metrics = run_training(cfg, trainer, dataset_fingerprints={"alpaca_en": "3f2a..."})
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn
from transformers import (
    EarlyStoppingCallback,
    ProgressCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    set_seed,
)

from ...config.schema import Config
from ...losses.ce import causal_lm_loss_with_accuracy
from .callbacks import NonFiniteGuard, RunMeter, TokenProgressBar, TrainerLogWriter
from .checkpoints import CheckpointCallback, run_manifest, stop_on_signals
from .lifecycle import RunLifecycle
from .loss import StageLoss, TokenLoss
from .plots import plot_keys, plot_loss
from .records import CONFIG_FILE, config_yaml

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

logger = logging.getLogger(__name__)

# transformers keys we never pass: the model loader owns checkpointing and compilation (per decoder layer, see
# model/compile.py), run_training owns resuming.
_NOT_PASSED = ("gradient_checkpointing", "gradient_checkpointing_kwargs", "activation_checkpointing",
               "activation_checkpointing_kwargs", "resume_from_checkpoint", "torch_compile", "torch_compile_backend",
               "torch_compile_mode")


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _eval_prefix(logs: Mapping[str, Any]) -> str | None:
    """``eval`` / ``eval_<dataset>`` for the metrics ``evaluate()`` logs (they always hold ``<prefix>_runtime``)."""
    for key in logs:
        if key.endswith("_runtime") and not key.startswith("train"):
            return key[: -len("_runtime")]
    return None


class TuneforgeTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` whose loss is ``loss_fn`` (default: chunked causal-LM cross-entropy).

    The loss of a micro-batch is its summed token loss divided by ``num_items_in_batch``, the trained tokens of
    the whole optimizer step, so batch 8 × GA 1 and batch 1 × GA 8 give the same loss and gradients; hence
    ``loss_is_scaled_for_ga = True`` and ``model_accepts_loss_kwargs = True`` (HF must count the items and must
    not divide by the accumulation steps again).

    Args (besides ``Seq2SeqTrainer``'s):
        loss_fn: a stage's :class:`~.loss.StageLoss`; its metrics are logged as means since the last log.
        compute_accuracy: add ``eval_accuracy`` (token accuracy) with the default loss.
        record_vram: add ``vram_allocated``/``vram_reserved`` to ``trainer_log.jsonl``.
        chunk_size, use_liger: passed to the default loss.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, loss_fn: StageLoss | None = None, compute_accuracy: bool = False,
                 record_vram: bool = False, chunk_size: int = 1024, use_liger: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn or TokenLoss(chunk_size, use_liger)
        # Token-normalised losses need HF's item count; per-example ones (rm/dpo/kto: a mean over the micro-batch's
        # examples) get None and HF divides by the accumulation steps (LLaMA-Factory sets the same flag there).
        self.model_accepts_loss_kwargs = not self.loss_fn.per_example
        self.uses_default_loss = loss_fn is None
        self._tuner_layers: list[nn.Module] | None = None
        self.compute_accuracy = compute_accuracy
        self.chunk_size = chunk_size
        pad_id = getattr(self.processing_class, "pad_token_id", None)
        self.meter = RunMeter(self._sum_over_processes, pad_id, derive=self.loss_fn.derive_metrics)
        self.guard = NonFiniteGuard(self._sum_over_processes)
        self.checkpointing = CheckpointCallback()
        for callback in (self.guard, self.checkpointing, self.meter, TrainerLogWriter(record_vram)):
            self.add_callback(callback)
        if not self.args.disable_tqdm and self.pop_callback(ProgressCallback) is not None:
            self.add_callback(TokenProgressBar())

    def _sum_over_processes(self, tensor: Tensor) -> Tensor:
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor, reduction="sum")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``loss_fn`` on one micro-batch, normalised for the step (see the class docstring); also meters it.

        Training: counts real tokens and reports the loss to the non-finite guard. Evaluation with
        ``compute_accuracy`` and the default loss: ``causal_lm_loss_with_accuracy``. ``return_outputs`` gives
        ``(loss, {})``: no logits are ever returned.
        """
        training = model.training
        if training:
            self.meter.add_batch(inputs)
        # The whole loss under mixed precision, not only model.forward (which accelerate wraps): with fp32 master
        # weights (full fine-tuning) the output head would otherwise run its [tokens × vocab] matmuls in fp32.
        with self.accelerator.autocast(), self._adapters_in_compute_dtype(model):
            if not training and self.compute_accuracy and self.uses_default_loss:
                loss, stats = causal_lm_loss_with_accuracy(model, inputs, num_items_in_batch,
                                                           chunk_size=self.chunk_size)
                self.meter.add_accuracy(stats["num_correct"], stats["num_tokens"])
            else:
                loss, stats = self.loss_fn(model, inputs, num_items_in_batch)
        if training:
            self.guard.observe_loss(loss)
        if not self.uses_default_loss:
            self.meter.add_metrics(stats, training)
        loss = self._normalise(loss, num_items_in_batch, training)
        # Never logits: prediction_loss_only is on, so evaluation keeps no [B, T, V] tensors.
        return (loss, {}) if return_outputs else loss

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Tensor:
        # Forward and backward both: checkpointed layers run their forward again inside backward, and must run
        # the same code (a compiled layer would otherwise recompute other tensors than it saved).
        with self._adapters_in_compute_dtype(model):
            return super().training_step(model, inputs, *args, **kwargs)

    @contextmanager
    def _adapters_in_compute_dtype(self, model: nn.Module) -> Iterator[None]:
        """Under mixed precision, PEFT's adapters take their input as it comes (bf16) instead of casting it to
        their fp32 weights first: autocast casts it straight back for the matmul, so each adapter would pay two
        full copies of its input for nothing (about 0.2 s a step on a 7B model at 16K tokens). Same values, same
        gradients. The flag is PEFT's own (its ``helpers.disable_input_dtype_casting``), restored on exit; nesting
        (evaluation inside a step, or ``compute_loss`` inside :meth:`training_step`) is harmless."""
        if not self.accelerator.native_amp:
            yield
            return
        if self._tuner_layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._tuner_layers = [m for m in model.modules()
                                  if isinstance(m, BaseTunerLayer) and hasattr(m, "cast_input_dtype_enabled")]
        saved = [layer.cast_input_dtype_enabled for layer in self._tuner_layers]
        for layer in self._tuner_layers:
            layer.cast_input_dtype_enabled = False
        try:
            yield
        finally:
            for layer, value in zip(self._tuner_layers, saved, strict=True):
                layer.cast_input_dtype_enabled = value

    def _normalise(self, loss: Tensor, num_items_in_batch: Tensor | int | None, training: bool) -> Tensor:
        if num_items_in_batch is None:
            return loss / self.current_gradient_accumulation_steps if training else loss
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            # num_items_in_batch counts every rank's tokens, and DDP averages gradients over ranks: scale back up.
            return loss * self.accelerator.num_processes
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add our fields to ``logs`` in place (so ``evaluate()``'s returned metrics carry them too), then log.

        Step logs: stage metrics, ``total_tokens``, ``throughput`` (real tokens/s this session),
        ``skipped_steps``. Final train metrics: ``effective_tokens_per_sec``, ``skipped_steps``. Evaluation:
        ``<prefix>_perplexity`` (default loss), ``<prefix>_accuracy``, stage metrics as ``<prefix>_<name>``.
        """
        if "loss" in logs and "learning_rate" in logs:
            logs.update(self.meter.pop_metrics(training=True))
            logs["total_tokens"] = self.state.num_input_tokens_seen
            logs["throughput"] = self.meter.tokens_per_second(self.state)
            logs["skipped_steps"] = self.guard.skipped_steps
        elif "train_runtime" in logs:
            session_tokens = self.state.num_input_tokens_seen - self.meter.session_tokens_start
            logs["effective_tokens_per_sec"] = round(session_tokens / max(logs["train_runtime"], 1e-9), 2)
            logs["skipped_steps"] = self.guard.skipped_steps
        elif (prefix := _eval_prefix(logs)) is not None:
            logs.update(self._eval_extras(prefix, logs))
        super().log(logs, start_time)

    def _eval_extras(self, prefix: str, logs: Mapping[str, Any]) -> dict[str, float]:
        extras = {f"{prefix}_{key}": value for key, value in self.meter.pop_metrics(training=False).items()}
        loss = logs.get(f"{prefix}_loss")
        if self.uses_default_loss and loss is not None:
            extras[f"{prefix}_perplexity"] = _perplexity(loss)
        accuracy = self.meter.pop_accuracy()
        if accuracy is not None:
            extras[f"{prefix}_accuracy"] = accuracy
        return extras


def build_training_args(cfg: Config, **overrides: Any) -> Seq2SeqTrainingArguments:
    """transformers arguments from the resolved config, with the settings our trainer relies on.

    Forced: ``remove_unused_columns=False`` (collators need every column), ``label_names=["labels"]``,
    ``include_num_input_tokens_seen="no"`` (:class:`RunMeter` counts real tokens itself, also for packed batches),
    ``enable_jit_checkpoint=False`` (our SIGTERM handling replaces it), ``prediction_loss_only`` unless
    ``predict_with_generate`` (the loss pass returns no logits). ``disable_shuffling`` becomes
    ``train_sampling_strategy="sequential"``; ``early_stopping_steps`` without ``metric_for_best_model`` watches
    ``eval_loss``. Checkpointing flags are not passed (the model loader enables it), nor is resuming.
    """
    kwargs = cfg.hf_training_kwargs()
    for key in _NOT_PASSED:
        kwargs.pop(key, None)
    if kwargs["enable_jit_checkpoint"]:
        logger.warning("enable_jit_checkpoint is ignored: tuneforge saves a checkpoint on SIGTERM/SIGINT itself")
    kwargs.update(remove_unused_columns=False, label_names=["labels"], include_num_input_tokens_seen="no",
                  enable_jit_checkpoint=False, prediction_loss_only=not cfg.evaluation.predict_with_generate)
    if kwargs["report_to"] is None:
        kwargs["report_to"] = "none"  # `report_to: null` means no integration; HF would wrap None in a list
    if cfg.finetuning.disable_shuffling:
        kwargs["train_sampling_strategy"] = "sequential"
    if cfg.finetuning.early_stopping_steps and kwargs["metric_for_best_model"] is None:
        kwargs["metric_for_best_model"] = "eval_loss"
    kwargs.update(overrides)
    return Seq2SeqTrainingArguments(**installed_only(kwargs))


def installed_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` less the keys the installed transformers does not have (the key table comes from the release it
    was generated with; ``transformers>=5.0`` may be older). A key the user set away from its default is an error
    naming the installed version, never silently dropped.
    """
    import dataclasses

    import transformers

    known = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    missing = {k: v for k, v in kwargs.items() if k not in known}
    if not missing:
        return kwargs
    from ...config.diagnostics import ConfigError
    from ...config.schema import all_specs

    specs = all_specs()
    changed = [k for k, v in missing.items() if k in specs and v != specs[k].default]
    if changed:
        raise ConfigError.of(changed[0], f"{', '.join(changed)}: not a training argument of the installed "
                                         f"transformers {transformers.__version__}; upgrade transformers or remove it")
    logger.debug("not passed to transformers %s (unknown there, at their defaults): %s", transformers.__version__,
                 ", ".join(sorted(missing)))
    return {k: v for k, v in kwargs.items() if k in known}


def _loraplus_optimizer(cfg: Config, model: nn.Module, args: Seq2SeqTrainingArguments):
    """HF's optimizer class (``optim``) over LoRA+ parameter groups, or None to let HF build its own."""
    if cfg.finetuning.finetuning_type != "lora" or cfg.finetuning.loraplus_lr_ratio is None:
        return None
    from ...model.loraplus import optimizer_param_groups

    optimizer_cls, optimizer_kwargs = Seq2SeqTrainer.get_optimizer_cls_and_kwargs(args, model)
    return optimizer_cls(optimizer_param_groups(model, cfg, args.learning_rate), **optimizer_kwargs)


def build_trainer(
    cfg: Config,
    model: nn.Module,
    tokenizer: Tokenizer,
    train_dataset: Any,
    eval_dataset: Any,
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    *,
    compute_loss: StageLoss | None = None,
    callbacks: Iterable[TrainerCallback] = (),
) -> TuneforgeTrainer:
    """A :class:`TuneforgeTrainer` for ``cfg`` (seeded; LoRA+ groups and early stopping when configured).

    Args:
        cfg: the resolved config.
        model: the model as the loader returns it (PEFT-wrapped or not); gradient checkpointing already set.
        tokenizer: saved with the model (``processing_class``); its ``pad_token_id`` defines real tokens.
        train_dataset, eval_dataset: map-style datasets of processed rows (``eval_dataset`` may be a dict of them
            or None).
        data_collator: rows → batch dict (``input_ids``, ``labels``, ...).
        compute_loss: the stage's :class:`~.loss.StageLoss`; None uses :class:`~.loss.TokenLoss` (chunked
            causal-LM cross-entropy).
        callbacks: extra ``TrainerCallback`` objects.
    """
    args = build_training_args(cfg)
    set_seed(args.seed)
    trainer = TuneforgeTrainer(
        model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
        eval_dataset=eval_dataset, processing_class=tokenizer, callbacks=list(callbacks),
        optimizers=(_loraplus_optimizer(cfg, model, args), None), loss_fn=compute_loss,
        compute_accuracy=cfg.finetuning.compute_accuracy, record_vram=cfg.env.RECORD_VRAM,
        use_liger=cfg.model.enable_liger_kernel,
    )  # fmt: skip
    if cfg.finetuning.early_stopping_steps:
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=cfg.finetuning.early_stopping_steps))
    return trainer


# ---- run_training ------------------------------------------------------------------------------------------------


def _lifecycle(cfg: Config, trainer: TuneforgeTrainer, fingerprints: Mapping[str, str]) -> RunLifecycle:
    """The run's lifecycle, with the checkpoint markers, rotation and record updates armed on the trainer."""
    args = trainer.args
    manifest = run_manifest(cfg, dataset_fingerprints=fingerprints, world_size=args.world_size)
    life = RunLifecycle(cfg, args.output_dir, manifest=manifest, fingerprints=fingerprints,
                        world_size=args.world_size, main=trainer.is_world_process_zero(),
                        barrier=trainer.accelerator.wait_for_everyone)
    callback = trainer.checkpointing
    callback.manifest, callback.extra_files = manifest, {CONFIG_FILE: config_yaml(cfg)}
    # Rotation is ours, after the completion marker: transformers would rotate before it (a crash in between
    # could leave no complete checkpoint).
    callback.save_total_limit, args.save_total_limit = args.save_total_limit, None
    callback.on_saved = life.checkpoint_saved
    return life


def _evaluate(trainer: TuneforgeTrainer) -> dict[str, float]:
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def _finish(cfg: Config, trainer: TuneforgeTrainer, metrics: dict[str, Any], life: RunLifecycle) -> dict[str, Any]:
    state, main = trainer.state, trainer.is_world_process_zero()
    stopped = trainer.checkpointing.stop_signal if state.global_step < state.max_steps else None
    if stopped is None:
        trainer.save_model()  # weights or adapter, plus the tokenizer (processing_class)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    if stopped is None and trainer.args.do_eval and trainer.eval_dataset is not None:
        metrics.update(_evaluate(trainer))
    trainer.save_state()
    if main and cfg.monitoring.plot_loss:
        plot_loss(trainer.args.output_dir, plot_keys(cfg.finetuning.stage, state.log_history))
    life.finish(stopped, global_step=state.global_step, metrics=metrics)
    if stopped:
        logger.warning("stopped by %s at step %d; checkpoint-%d is complete: rerun with resume_from_checkpoint: "
                       "true to continue", stopped, state.global_step, state.global_step)
        metrics["interrupted_by"] = stopped
    return metrics


def run_training(cfg: Config, trainer: TuneforgeTrainer, *, dataset_fingerprints: Mapping[str, str]) -> dict:
    """Train (or resume), then save everything a run leaves in ``output_dir``, and return the metrics.

    Order (:class:`~tuneforge.train.core.lifecycle.RunLifecycle`): resolve and verify the checkpoint (complete, no
    drift); unless resuming, refuse a non-empty ``output_dir`` (with ``overwrite_output_dir``, remove only what
    tuneforge runs wrote there); lock it; write ``tuneforge_config.yaml`` and ``tuneforge_run.json``; train with
    SIGTERM/SIGINT turned into "save at the end of this optimizer step and stop"; save model + tokenizer,
    ``train_results.json``/``all_results.json``, evaluate when ``do_eval`` (``eval_results.json``),
    ``trainer_state.json``, the plots (``plot_loss``) and the final run record; release the lock.

    A stopped run saves no final model and skips the final evaluation (its checkpoint holds the state); the
    returned metrics then carry ``interrupted_by`` (``"SIGTERM"``/``"SIGINT"``).

    Raises:
        OutputDirError: ``output_dir`` is not empty and neither resuming nor overwriting, holds what overwriting
            must keep, is in use by another run, or cannot be written.
        ResumeError: no complete checkpoint to resume, or the run drifted from the checkpoint's.
        OutputWriteError: the disk filled up during the run (the record says "failed").
        TrainingError: too many consecutive non-finite steps (the run record says "failed").
    """
    life = _lifecycle(cfg, trainer, dataset_fingerprints)
    checkpoint = life.start()
    with life.guard(lambda: trainer.state.global_step):
        with stop_on_signals(trainer.checkpointing):
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        return _finish(cfg, trainer, dict(result.metrics), life)
