"""Data group: datasets, template, lengths and packing (LLaMA-Factory's DataArguments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..fields import opt


@dataclass
class DataArgs:
    """Which datasets, how they are rendered, cut, mixed, split and packed."""

    template: str | None = opt(None, "Chat template name; empty uses the tokenizer's own chat_template.")
    dataset: list[str] | None = opt(None, "Comma list of training datasets (names in dataset_info.json).", listy=True)
    eval_dataset: list[str] | None = opt(None, "Comma list of evaluation datasets.", listy=True)
    dataset_dir: str = opt("data", "Folder holding dataset_info.json and the data files.")
    media_dir: str | None = opt(None, "Base folder of media files (defaults to dataset_dir).")
    cutoff_len: int = opt(2048, "Largest number of tokens in one example after tokenization.", ge=1)
    train_on_prompt: bool = opt(False, "Also train on the prompt tokens (sft only).")
    mask_history: bool = opt(False, "Train only on the last assistant turn (sft only).")
    streaming: bool = opt(False, "Stream the datasets instead of loading them whole (needs max_steps).")
    buffer_size: int = opt(16384, "Shuffle buffer size in streaming mode.", ge=1)
    mix_strategy: Literal["concat", "interleave_under", "interleave_over", "interleave_once"] = opt(
        "concat", "How several datasets are mixed."
    )
    interleave_probs: list[float] | None = opt(
        None, "Comma list of sampling probabilities, one per dataset (interleave strategies only).", ge=0
    )
    overwrite_cache: bool = opt(False, "Ignore the processed-data cache.")
    preprocessing_batch_size: int = opt(1000, "Examples per batch in preprocessing.", ge=1)
    preprocessing_num_workers: int | None = opt(None, "Processes used for preprocessing.", ge=1)
    max_samples: int | None = opt(None, "Keep at most this many examples of each dataset (the first ones).", ge=1)
    eval_num_beams: int | None = opt(None, "Beams in evaluation generation (overrides generation_num_beams).", ge=1)
    ignore_pad_token_for_loss: bool = opt(True, "Do not train on padding tokens.")
    val_size: float = opt(0.0, "Validation split of the training data: a fraction below 1, a count from 1.", ge=0)
    eval_on_each_dataset: bool = opt(False, "Report evaluation metrics per eval dataset.")
    packing: bool | None = opt(None, "Pack examples into cutoff_len rows; empty means on for pt only.")
    neat_packing: bool = opt(False, "Pack without attention between packed examples (sft; implies packing).")
    padding_free: bool | None = opt(
        None, "tuneforge: give attention one unpadded stream of variable-length sequences (pt/sft); empty means on "
        "where a CUDA varlen kernel runs (sdpa/auto via torch's flash varlen, or fa2/fa3)."
    )
    tool_format: str | None = opt(None, "Override the template's tool-call format.")
    default_system: str | None = opt(None, "Override the template's default system prompt.")
    enable_thinking: bool | None = opt(True, "Reasoning templates: add an empty think block (true), drop it (false).")
    preserve_thinking: bool = opt(False, "Keep the reasoning of earlier turns.")
    tokenized_path: str | None = opt(None, "Save the processed dataset here, or load it from here if present.")
    data_shared_file_system: bool = opt(False, "Nodes share one file system for the data cache.")
    max_bad_rows: float = opt(
        0.05, "Largest share of malformed rows tolerated before the run fails (0: fail on any).", ge=0, le=1
    )
