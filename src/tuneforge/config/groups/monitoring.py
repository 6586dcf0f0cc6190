"""Monitoring group: logging, saving, plots and reporting.

Holds our own keys; the logging/saving keys of Hugging Face ``TrainingArguments``
(``logging_steps``, ``save_steps``, ``eval_steps``, ``report_to`` ...) join this
group through ``tables/groups.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import opt


@dataclass
class MonitoringArgs:
    """What a run records and where."""

    plot_loss: bool = opt(False, "Write training_loss.png (and eval/reward curves) into output_dir.")
    overwrite_output_dir: bool = opt(False, "Allow a run to replace the contents of a non-empty output_dir.")
    include_effective_tokens_per_second: bool = opt(False, "Also report tokens/s of real tokens in the results.")
