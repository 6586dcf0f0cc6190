"""Stage sft: supervised fine-tuning on conversations (loss on the assistant replies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...config.schema import Config
from ..core.workflow import Prepared, attn_implementation, prepare, train_and_evaluate

# (cfg, model, tokenizer, template, eval rows) -> metrics; writes generated_predictions.jsonl (infer.predict's
# predict_and_save, handed over by the commands layer so that train never imports infer)
PredictFn = Callable[[Config, Any, Any, Any, Any], dict[str, Any]]


class PredictorMissing(TypeError):
    """``predict_with_generate`` was asked of a run that was given no predictor (a caller's programming error)."""


def run(cfg: Config, *, predict: PredictFn | None = None) -> dict[str, Any]:
    """Train, evaluate, then generate for the eval rows with ``predict`` when ``predict_with_generate`` is on."""
    from ...data.collator import build_collator
    from ...model.varlen import flattens_batches
    from ..core.trainer import build_trainer

    generate = cfg.evaluation.predict_with_generate
    if generate and predict is None:
        raise PredictorMissing("predict_with_generate needs a predictor: call run(cfg, predict=...) (tuneforge train "
                               "passes tuneforge.infer.predict.predict_and_save)")
    p = prepare(cfg)
    collator = build_collator(cfg, p.tokenizer, attn_implementation=attn_implementation(p.model),
                              padding_free=flattens_batches(cfg))
    # generation-ready eval rows (prompt only) cannot give an eval loss: they are predicted after training
    eval_rows = None if generate else p.data.eval
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, eval_rows, collator)
    metrics = train_and_evaluate(cfg, trainer, p)
    if generate and predict is not None and p.data.eval is not None:
        metrics.update(_predict(cfg, trainer, p, predict))
    return metrics


def _predict(cfg: Config, trainer: Any, p: Prepared, predict: PredictFn) -> dict[str, Any]:
    return predict(cfg, trainer.model, p.tokenizer, p.template, p.data.eval)
