"""``tuneforge predict`` and sft ``do_predict`` + ``predict_with_generate``: batch generation with scores.

Writes into ``output_dir``:

* ``generated_predictions.jsonl``: one ``{"prompt", "predict", "label"}`` per example, in dataset order; ``prompt``
  is the generation prompt with its special tokens, ``predict`` / ``label`` are the answer and the reference with
  the template's end tokens removed and surrounding whitespace stripped;
* ``predict_results.json``: ``predict_bleu-4``, ``predict_rouge-1``, ``predict_rouge-2``, ``predict_rouge-l``,
  ``predict_exact_match`` (all ×100, see ``metrics.py``), ``predict_samples``, ``predict_runtime``,
  ``predict_samples_per_second``; the same keys are merged into ``all_results.json``.

Prompts are generated in batches of ``per_device_eval_batch_size`` with left padding, longest first (less padding),
and written back in the original order. Decoding follows ``cfg.generating`` (seeded with ``seed``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .engine import Engine, SamplingParams
from .errors import InferError
from .metrics import text_scores

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (no dropout) for the block, then the previous mode again (the trainer's model may be training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _as_list(dataset: Any) -> list[Any]:
    return list(dataset.values()) if isinstance(dataset, dict) else [dataset]


def prompt_rows(cfg: Any, tokenizer: Any, template: Any, dataset: Any) -> list[tuple[list[int], list[int]]]:
    """``(prompt ids, reference ids)`` per example of ``dataset``: rows already processed for generation (with
    ``input_ids`` / ``labels``), or converted rows (``_prompt`` ...) that are processed here. A dict of datasets
    (``eval_on_each_dataset``) is taken in order."""
    from ..data.processors import PREDICT, process

    rows: list[tuple[list[int], list[int]]] = []
    for part in _as_list(dataset):
        if "input_ids" not in (part.column_names or []):
            part = process(part, cfg, tokenizer, template, key=PREDICT)
        rows.extend((list(ids), list(labels)) for ids, labels in zip(part["input_ids"], part["labels"], strict=True))
    return rows


def _reference(engine: Engine, ids: list[int]) -> str:
    stops = set(engine.stop_ids)
    end = next((i for i, token in enumerate(ids) if token in stops or token < 0), len(ids))
    return engine.decode(ids[:end]).strip()


def predict_dataset(cfg: Any, model: Any, tokenizer: Any, template: Any, dataset: Any) -> list[dict[str, str]]:
    """Generate an answer for every example of ``dataset``; returns ``[{"prompt", "predict", "label"}, ...]`` in
    dataset order (see the module docstring for the dataset forms and the text of each field)."""
    rows = prompt_rows(cfg, tokenizer, template, dataset)
    engine = Engine(model, tokenizer, template, SamplingParams.from_config(cfg.generating),
                    skip_special_tokens=cfg.generating.skip_special_tokens)
    size = max(1, int(cfg.evaluation.per_device_eval_batch_size or 1))
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    answers: dict[int, str] = {}
    with eval_mode(model), _progress(len(rows), cfg) as bar:
        for start in range(0, len(order), size):
            batch = order[start:start + size]
            for index, done in zip(batch, engine.generate_batch([rows[i][0] for i in batch]), strict=True):
                answers[index] = done.text.strip()
            bar.update(len(batch))
    return [{"prompt": tokenizer.decode(ids, skip_special_tokens=False), "predict": answers[i],
             "label": _reference(engine, labels)} for i, (ids, labels) in enumerate(rows)]


@contextlib.contextmanager
def _progress(total: int, cfg: Any) -> Iterator[Any]:
    from tqdm.auto import tqdm

    if total > 8:
        logger.info("generating %d answers with transformers; large sets are faster with a serving engine", total)
    with tqdm(total=total, desc="Predicting", unit="ex", disable=bool(cfg.monitoring.disable_tqdm)) as bar:
        yield bar


def write_predictions(rows: list[dict[str, str]], output_dir: Path) -> Path:
    path = Path(output_dir) / PREDICTIONS_FILE
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_results(metrics: dict[str, float], output_dir: Path) -> None:
    """``predict_results.json``, and the same keys merged into ``all_results.json`` (as ``Trainer.save_metrics``)."""
    out = Path(output_dir)
    (out / RESULTS_FILE).write_text(json.dumps(metrics, indent=4, sort_keys=True) + "\n", encoding="utf-8")
    combined = out / "all_results.json"
    merged = json.loads(combined.read_text(encoding="utf-8")) if combined.is_file() else {}
    merged.update(metrics)
    combined.write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n", encoding="utf-8")


def predict_and_save(cfg: Any, model: Any, tokenizer: Any, template: Any, dataset: Any,
                     output_dir: str | Path | None = None) -> dict[str, float]:
    """:func:`predict_dataset`, then write the predictions and scores into ``output_dir`` (default the config's);
    returns the ``predict_*`` metrics."""
    out = Path(output_dir or cfg.monitoring.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = predict_dataset(cfg, model, tokenizer, template, dataset)
    runtime = time.perf_counter() - started
    scores = text_scores([r["predict"] for r in rows], [r["label"] for r in rows])
    metrics = {f"predict_{key}": value for key, value in scores.items()}
    metrics.update(predict_samples=len(rows), predict_runtime=round(runtime, 4),
                   predict_samples_per_second=round(len(rows) / runtime, 3) if runtime > 0 else 0.0)
    if _is_main_process():  # under torchrun every rank predicts the same rows: one writes
        path = write_predictions(rows, out)
        write_results(metrics, out)
        logger.info("wrote %d predictions to %s", len(rows), path)
    return metrics


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def predict_data_config(cfg: Any) -> Any:
    """The config whose training split is the data to predict: ``eval_dataset``, else ``dataset``, whole."""
    data = cfg.data
    names = data.eval_dataset or data.dataset
    if not names:
        raise InferError("predict needs data: set eval_dataset (or dataset) to the examples to generate answers for")
    changes = dict(dataset=names, eval_dataset=None, val_size=0.0, streaming=False, packing=False, neat_packing=False)
    return dataclasses.replace(cfg, data=dataclasses.replace(data, **changes))


def run_predict(cfg: Any) -> dict[str, float]:
    """The ``predict`` command: load model + data of ``cfg``, generate, write, return the metrics."""
    from transformers import set_seed

    from ..data.loader import load_aligned

    data_cfg = predict_data_config(cfg)
    dataset = load_aligned(data_cfg).train  # before the model: bad data fails fast
    set_seed(cfg.training.seed)
    engine = Engine.from_config(cfg)
    return predict_and_save(data_cfg, engine.model, engine.tokenizer, engine.template, dataset)
