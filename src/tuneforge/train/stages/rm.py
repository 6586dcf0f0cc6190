"""Stage rm: a reward model, the causal LM plus a scalar value head trained on preference pairs.

Loss ``−log σ(r_w − r_l)`` (InstructGPT eq. 1) with r the head's value at the last real token of each reply; metric
``accuracy`` (``eval_accuracy`` in evaluation) = share of pairs with r_w > r_l. The output folder is what
LLaMA-Factory's ppo reads as a reward model: the LoRA adapter or the full weights, plus ``value_head.safetensors``
(also in every checkpoint). ``do_predict`` writes ``generated_predictions.jsonl``, one
``{"chosen": r_w, "rejected": r_l}`` line per evaluation pair.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...config.schema import Config
from ...losses import pairwise_accuracy, pairwise_reward_loss
from ...model.value_head import (
    VALUE_HEAD_FILE,
    ValueHeadCallback,
    attach_value_head,
    load_value_head,
    save_value_head,
    sequence_scores,
    strip_value_head,
)
from ..core.workflow import Prepared, prepare, train_and_evaluate
from . import preference as pref

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "generated_predictions.jsonl"


def reward_loss(model: nn.Module, batch: dict[str, Any], num_items_in_batch: Any) -> tuple[Tensor, dict]:
    """The ``compute_loss`` of stage rm on a 2n pair batch: ``(mean pairwise loss, {"accuracy": [n]})``."""
    chosen, rejected = sequence_scores(model, batch).chunk(2)
    return pairwise_reward_loss(chosen, rejected).mean(), {pref.ACCURACY: pairwise_accuracy(chosen, rejected)}


reward_loss.per_example = True  # a mean over the micro-batch's pairs (build_trainer reads it)


def _initial_head(cfg: Config, model: nn.Module) -> None:
    """Continue from a reward model's head when the model (or its last adapter) has one, as LLaMA-Factory does."""
    source = (cfg.model.adapter_name_or_path or [cfg.model.model_name_or_path])[-1]
    if source and Path(source).is_dir() and load_value_head(model, source):
        logger.info("value head loaded from %s", source)
    elif not cfg.training.do_train:
        logger.warning("%s has no %s: the reward model is evaluated with an untrained value head", source,
                       VALUE_HEAD_FILE)


def _save_head(trainer: Any) -> None:
    """The final ``value_head.safetensors``, and model weights without the head's tensors (full/freeze)."""
    if trainer.args.should_save:
        save_value_head(trainer.model, trainer.args.output_dir)
        strip_value_head(trainer.args.output_dir)


@torch.no_grad()
def _scores(trainer: Any, dataset: Any) -> list[tuple[float, float]]:
    model = trainer.model.eval()
    pairs: list[tuple[float, float]] = []
    for batch in trainer.get_test_dataloader(dataset):
        batch = {key: value.to(trainer.args.device) for key, value in batch.items()}
        chosen, rejected = sequence_scores(model, batch).chunk(2)
        pairs.extend(zip(chosen.tolist(), rejected.tolist(), strict=True))
    return pairs


def _predict(trainer: Any, dataset: Any) -> dict[str, Any]:
    """``predict_*`` metrics and ``generated_predictions.jsonl`` (LLaMA-Factory's rm predict output)."""
    Path(trainer.args.output_dir).mkdir(parents=True, exist_ok=True)  # an evaluation-only run never created it
    metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix="predict")
    trainer.log_metrics("predict", metrics)
    trainer.save_metrics("predict", metrics)
    pairs = _scores(trainer, dataset)
    if trainer.args.should_save:
        out = Path(trainer.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / PREDICTIONS_FILE).write_text("".join(json.dumps({"chosen": c, "rejected": r}) + "\n" for c, r in pairs))
    return metrics


def run(cfg: Config) -> dict[str, Any]:
    from ...data.collator import build_collator
    from ..core.trainer import build_trainer

    p: Prepared = prepare(cfg)
    attach_value_head(p.model)
    _initial_head(cfg, p.model)
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, p.data.eval, build_collator(cfg, p.tokenizer),
                            compute_loss=reward_loss,
                            callbacks=[ValueHeadCallback(cfg.training.resume_from_checkpoint)])
    metrics = train_and_evaluate(cfg, trainer, p)
    if cfg.training.do_train and "interrupted_by" not in metrics:
        _save_head(trainer)
    if cfg.evaluation.do_predict and p.data.eval is not None and not isinstance(p.data.eval, dict):
        metrics.update(_predict(trainer, p.data.eval))
    return metrics
