"""Stage sft: supervised fine-tuning on conversations (loss on the assistant replies)."""

from __future__ import annotations

from typing import Any

from ...config.schema import Config
from ..core.workflow import attn_implementation, prepare, train_and_evaluate


def run(cfg: Config) -> dict[str, Any]:
    from ...data.collator import build_collator
    from ...model.varlen import flattens_batches
    from ..core.trainer import build_trainer

    p = prepare(cfg)
    generate = cfg.evaluation.predict_with_generate
    collator = build_collator(cfg, p.tokenizer, attn_implementation=attn_implementation(p.model),
                              padding_free=flattens_batches(cfg))
    # generation-ready eval rows (prompt only) cannot give an eval loss: they are predicted after training
    eval_rows = None if generate else p.data.eval
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, eval_rows, collator)
    metrics = train_and_evaluate(cfg, trainer, p)
    if generate and p.data.eval is not None:
        metrics.update(_predict(cfg, trainer, p))
    return metrics


def _predict(cfg: Config, trainer: Any, p: Any) -> dict[str, Any]:
    """Generate for the eval rows (``predict_with_generate``): generated_predictions.jsonl + BLEU/ROUGE scores."""
    from ...infer.predict import predict_and_save

    return predict_and_save(cfg, trainer.model, p.tokenizer, p.template, p.data.eval)
