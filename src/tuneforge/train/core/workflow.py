"""What every stage shares before and after its trainer: seed, tokenizer, template, data, model, predictions.

A stage module (``train/sft.py`` ...) is ``run(cfg) -> dict``: it calls :func:`prepare`, builds its collator,
loss and trainer, then :func:`train_and_evaluate`. Example::

    p = prepare(cfg)
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, p.data.eval, collator)
    return train_and_evaluate(cfg, trainer, p)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...config.schema import Config
from ...data.pipeline import DatasetBundle, build_datasets

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from ...data.templates.base import Template

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """The pieces of a run: tokenizer, chat template (None for pt), tokenized data and the model."""

    tokenizer: Tokenizer
    template: Template
    data: DatasetBundle
    model: Any


def load_template(cfg: Config, tokenizer: Tokenizer) -> Any:
    """The chat template of the run; a tokenizer without a chat_template gets ours, so saved outputs carry it."""
    from ...data.templates import resolve_template

    template = resolve_template(cfg.data.template, tokenizer, default_system=cfg.data.default_system,
                                enable_thinking=cfg.data.enable_thinking, tool_format=cfg.data.tool_format)
    if not getattr(tokenizer, "chat_template", None) and cfg.data.template:
        tokenizer.chat_template = template.jinja_chat_template()
    return template


def prepare(cfg: Config, *, stage_data: bool = True) -> Prepared:
    """Seed, then load tokenizer → template → datasets → model (the datasets first: bad data fails fast)."""
    from transformers import set_seed

    from ...model import load_model, load_tokenizer

    set_seed(cfg.training.seed)  # before the model: LoRA/from-scratch init must be reproducible
    start = time.perf_counter()
    tokenizer = load_tokenizer(cfg)
    template = load_template(cfg, tokenizer)
    data = build_datasets(cfg, tokenizer, template) if stage_data else DatasetBundle(None, None)
    for line in data.summary:
        logger.info(line)
    loaded = time.perf_counter()
    model = load_model(cfg, tokenizer, is_trainable=cfg.training.do_train)  # it logs the trainable params
    logger.info("start-up: tokenizer and data %.1f s, model %.1f s", loaded - start, time.perf_counter() - loaded)
    return Prepared(tokenizer, template, data, model)


def load_frozen_model(cfg: Config, tokenizer: Tokenizer, path: str, adapters: list[str] | None,
                      quantization_bit: int | None) -> Any:
    """``path`` loaded for inference with ``adapters`` merged, optionally quantized (reference and reward models).

    Loaded with the run's tokenizer, so a vocabulary the tokenizer extended is extended here too; finetuning_type
    lora at inference merges the adapters and adds none.
    """
    from dataclasses import replace

    from ...model import load_model

    model_args = replace(cfg.model, model_name_or_path=path, adapter_name_or_path=list(adapters) if adapters else None,
                         quantization_bit=quantization_bit)
    frozen = replace(cfg, model=model_args, finetuning=replace(cfg.finetuning, finetuning_type="lora"))
    return load_model(frozen, tokenizer, is_trainable=False)


def attn_implementation(model: Any) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "sdpa")


def train_and_evaluate(cfg: Config, trainer: Any, prepared: Prepared) -> dict[str, Any]:
    """Train (with everything ``run_training`` guarantees), or only evaluate when ``do_train`` is off."""
    from .trainer import run_training

    if cfg.training.do_train:
        return run_training(cfg, trainer, dataset_fingerprints=prepared.data.fingerprints)
    metrics: dict[str, Any] = {}
    if cfg.evaluation.do_eval and trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return metrics
