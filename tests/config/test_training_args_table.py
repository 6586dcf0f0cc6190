"""The generated training-argument table matches the installed transformers, and is read without importing it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tuneforge.config.coerce import CoerceError, coerce
from tuneforge.config.hf_table import TABLE, rows_from_transformers
from tuneforge.config.schema import all_specs, load_table


def test_table_matches_installed_transformers():
    from importlib import metadata

    table = load_table(TABLE)
    fresh = rows_from_transformers()
    hint = "the table is stale: run python scripts/gen_training_args.py"
    assert table["transformers"] == metadata.version("transformers"), hint
    assert [r["name"] for r in table["keys"]] == [r["name"] for r in fresh], hint
    # a YAML round trip is what the shipped table went through
    assert table["keys"] == yaml.safe_load(yaml.safe_dump(fresh)), hint


def test_table_types_coerce_like_transformers_declares():
    specs = all_specs()
    assert coerce(specs["lr_scheduler_type"], "cosine") == "cosine"  # an Enum of transformers: its values only
    with pytest.raises(CoerceError, match="'cosine'"):
        coerce(specs["lr_scheduler_type"], "cosin")
    assert coerce(specs["per_device_train_batch_size"], "4") == 4
    assert coerce(specs["debug"], "underflow_overflow") == "underflow_overflow"
    assert coerce(specs["include_for_metrics"], "inputs,loss") == ["inputs", "loss"]
    first, second = specs["include_for_metrics"].default_value(), specs["include_for_metrics"].default_value()
    assert first == [] and first is not second  # a list default is a fresh list each time


def test_resolving_a_config_imports_no_heavy_library(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name_or_path: org/model\nlora_ranl: 8\n")
    code = ("import sys; from tuneforge.cli import main; rc = main(['check', sys.argv[1]]); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules), rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[] 2", proc.stdout + proc.stderr
