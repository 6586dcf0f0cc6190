"""LLaMA-Factory's side of ``bench/preprocess.py``: run inside the LLaMA-Factory venv, never tuneforge's.

Usage (``preprocess.py`` calls it)::

    /work/lf-venv/bin/python bench/_lf_preprocess.py DATASET_DIR MODEL WORKERS CUTOFF OUT.json [SAMPLE_IDS]

``WORKERS`` 0 leaves ``preprocessing_num_workers`` unset.

Loads + converts the registered ``synth_sft`` dataset with LLaMA-Factory's own loader, then times only its sft
tokenization map (``_get_preprocessed_dataset``: template rendering, tokenization, truncation, label masking),
which is the same stage ``get_dataset`` runs. ``overwrite_cache`` keeps every map from reading the cache. Writes
``{"load_s", "process_s", "cpu_s", "rows", "kept", "ids": [[input_ids, labels] ...first SAMPLE_IDS rows],
"versions"}`` to OUT.json (``cpu_s``: CPU seconds of the map, this process plus its reaped map workers).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one Rust thread per worker, as on tuneforge's side
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _args(dataset_dir: str, model: str, workers: int, cutoff: int, output_dir: str) -> dict:
    return {
        "model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "template": "qwen", "dataset": "synth_sft", "dataset_dir": dataset_dir, "cutoff_len": cutoff,
        "preprocessing_num_workers": workers or None, "overwrite_cache": True, "output_dir": output_dir,
        "report_to": "none",
    }


def _versions() -> dict[str, str]:
    import datasets
    import llamafactory
    import tokenizers
    import torch
    import transformers

    return {"llamafactory": llamafactory.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "tokenizers": tokenizers.__version__, "torch": torch.__version__}


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main(argv: list[str]) -> None:
    dataset_dir, model, workers, cutoff, out = argv[:5]
    sample = int(argv[5]) if len(argv) > 5 else 0
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_merged_dataset, _get_preprocessed_dataset
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with tempfile.TemporaryDirectory() as output_dir:
        model_args, data_args, training_args, _, _ = get_train_args(
            _args(dataset_dir, model, int(workers), int(cutoff), output_dir))
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        start = time.perf_counter()
        dataset = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, "sft")
        load_s = time.perf_counter() - start
        cpu, start = cpu_seconds(), time.perf_counter()
        processed = _get_preprocessed_dataset(dataset, data_args, training_args, "sft", template, tokenizer)
        process_s, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        ids = [[row["input_ids"], row["labels"]] for row in processed.select(range(min(sample, len(processed))))]
        result = {"load_s": load_s, "process_s": process_s, "cpu_s": cpu, "rows": len(dataset),
                  "kept": len(processed), "ids": ids,
                  "versions": _versions()}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
