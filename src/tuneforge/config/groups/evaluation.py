"""Evaluation group: benchmark evaluation (LLaMA-Factory's EvaluationArguments) and our eval extras.

The evaluation keys of Hugging Face ``TrainingArguments`` (``do_eval``, ``eval_strategy``,
``per_device_eval_batch_size`` ...) are placed in this group too; see ``tables/groups.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..fields import opt


@dataclass
class EvaluationArgs:
    """What is evaluated and how."""

    task: str | None = opt(None, "Benchmark task of `tuneforge eval`, e.g. mmlu_test.")
    task_dir: str = opt("evaluation", "Folder holding the benchmark tasks.")
    batch_size: int = opt(4, "Batch size of benchmark evaluation.", ge=1)
    lang: Literal["en", "zh"] = opt("en", "Language of the few-shot prompts.")
    n_shot: int = opt(5, "Number of few-shot examples.", ge=0)
    save_dir: str | None = opt(None, "Folder for benchmark results (must not exist).")
    download_mode: Literal["reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload"] = opt(
        "reuse_dataset_if_exists", "Download mode of benchmark data."
    )
