"""``tuneforge predict CONFIG [overrides]``: answers for ``eval_dataset`` (or ``dataset``) with BLEU/ROUGE scores.

Writes ``generated_predictions.jsonl`` and ``predict_results.json`` into ``output_dir`` and prints the scores as
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .runner import run_command


def _predict(cfg: Any, _args: argparse.Namespace) -> int:
    from ..infer.predict import run_predict

    metrics = run_predict(cfg)
    sys.stdout.write(json.dumps(metrics, sort_keys=True) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_command(args, _predict)
