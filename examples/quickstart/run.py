"""The offline quick-start that `make demo` runs (2 CPU cores, a few minutes, no download).

1. Trains the 0.9M-parameter model of ``model/`` from scratch (``train.yaml``) to reverse letters.
2. Measures exact match on 200 held-out prompts (``quickstart_eval``) before and after training (greedy decoding).
3. Trains a LoRA adapter on top of the trained model (``lora.yaml``) and shows what it saved.

The last line reads ``held-out exact match: before X% after Y%``. Run from the repository root:
``python examples/quickstart/run.py``. The trained model in ``saves/quickstart/full`` can then be used with
``tuneforge chat examples/quickstart/chat.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread: this model's matrices are small, and two threads on a busy 2-core machine slow torch down 10-50x.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent


def _config(name: str, *overrides: str):
    from tuneforge.config.loader import load
    from tuneforge.config.report import render_diagnostics

    res = load([str((HERE / name).relative_to(Path.cwd())), *overrides])
    if res.errors:
        render_diagnostics(res.diagnostics, sys.stderr, False)
        raise SystemExit(2)
    return res.config


def _eval_config(cfg, model_dir: str | None):
    """Greedy decoding of the held-out set with ``model_dir`` (None: the untrained from-scratch init)."""
    model = dataclasses.replace(cfg.model, **({"model_name_or_path": model_dir, "train_from_scratch": False}
                                              if model_dir else {}))
    gen = dataclasses.replace(cfg.generating, do_sample=False, max_new_tokens=24)
    data = dataclasses.replace(cfg.data, dataset=["quickstart_eval"], max_samples=None)
    ev = dataclasses.replace(cfg.evaluation, per_device_eval_batch_size=100)
    tr = dataclasses.replace(cfg.training, do_train=False)
    return dataclasses.replace(cfg, model=model, generating=gen, data=data, evaluation=ev, training=tr)


def exact_match_pct(cfg, model_dir: str | None) -> float:
    from transformers import set_seed

    from tuneforge.data.loader import load_aligned
    from tuneforge.infer.engine import Engine
    from tuneforge.infer.metrics import exact_match
    from tuneforge.infer.predict import predict_dataset

    eval_cfg = _eval_config(cfg, model_dir)
    set_seed(eval_cfg.training.seed)  # the "before" model is the same random init training starts from
    engine = Engine.from_config(eval_cfg)
    rows = predict_dataset(eval_cfg, engine.model, engine.tokenizer, engine.template, load_aligned(eval_cfg).train)
    return 100 * exact_match([r["predict"] for r in rows], [r["label"] for r in rows])


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="[tuneforge] %(levelname)s %(message)s")
    from tuneforge.model import trainable_summary  # noqa: F401  (imports torch before the timer starts)
    from tuneforge.train import stage_runner

    start = time.perf_counter()
    cfg = _config("train.yaml")
    before = exact_match_pct(cfg, None)
    print(f"before training: held-out exact match {before:.1f}%", flush=True)
    metrics = stage_runner("sft")(cfg)
    out = cfg.monitoring.output_dir
    after = exact_match_pct(cfg, out)
    print(f"after training ({metrics['train_runtime']:.0f} s, mean training loss {metrics['train_loss']:.3f}): "
          f"held-out exact match {after:.1f}%; model saved in {out}", flush=True)
    lora_cfg = _config("lora.yaml")
    stage_runner("sft")(lora_cfg)
    lora_dir = Path(lora_cfg.monitoring.output_dir)
    files = sorted(p.name for p in lora_dir.iterdir() if p.name.startswith("adapter"))
    print(f"LoRA step on top: adapter files {files} in {lora_dir}; total {time.perf_counter() - start:.0f} s")
    print(f"held-out exact match: before {before:.1f}% after {after:.1f}%")


if __name__ == "__main__":
    main()
