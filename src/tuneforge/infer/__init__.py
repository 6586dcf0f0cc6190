"""Inference: one generation engine behind ``chat``, ``api`` and ``predict``, plus ``export`` (merge + save).

Public API (imported lazily, so importing the package costs nothing until a name is used)::

    Engine(model, tokenizer, template, params=None, *, skip_special_tokens=True)   # engine.py
    Engine.from_config(cfg) -> Engine
    SamplingParams.from_config(cfg.generating) -> SamplingParams
    export_model(cfg, *, force=False, max_shard_size=None) -> Path               # export.py
    predict_dataset(cfg, model, tokenizer, template, dataset) -> list[dict]        # predict.py
    predict_and_save(cfg, model, tokenizer, template, dataset, output_dir=None) -> dict[str, float]
    exact_match(predictions, labels) -> float                                      # metrics.py
    text_scores(predictions, labels) -> dict[str, float]
    create_app(engine, *, model_name, api_key, max_concurrent, cors_origins, limits) -> FastAPI   # api.py
    InferError                                                                     # user-facing error (exit 2)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "engine",
    "SamplingParams": "engine",
    "Completion": "engine",
    "export_model": "export",
    "predict_dataset": "predict",
    "predict_and_save": "predict",
    "exact_match": "metrics",
    "text_scores": "metrics",
    "create_app": "api",
    "InferError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuneforge.infer' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
