"""`tuneforge check` as a user runs it: exit codes, JSON shape, no traceback, fast --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.cli import main

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tuneforge", *args], capture_output=True, text=True, cwd=REPO,
                          env=full_env, timeout=120)


@pytest.fixture
def good_yaml(tmp_path, tiny_model_dir):
    path = tmp_path / "good.yaml"
    path.write_text(f"model_name_or_path: {tiny_model_dir}\nstage: sft\nfinetuning_type: lora\nlora_rank: 16\n"
                    "learning_rate: 1.0e-4\n")
    return path


def test_check_ok_exit_zero(good_yaml, capsys):
    assert main(["check", str(good_yaml)]) == 0
    out = capsys.readouterr().out
    assert "lora_alpha" in out and "[derived]" in out and "0 error(s)" in out
    for group in ("model", "data", "finetuning", "training", "generating", "evaluation", "monitoring", "env"):
        assert f"\n{group}" in out or out.startswith(group) or f"{group}  (" in out


def test_check_json_shape(good_yaml, capsys):
    assert main(["check", str(good_yaml), "--json", "lora_rank=4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"resolved", "sources", "groups", "diagnostics"}
    assert data["resolved"]["lora_rank"] == 4 and data["sources"]["lora_rank"] == "override"
    assert data["resolved"]["lora_alpha"] == 8 and data["sources"]["lora_alpha"] == "derived"
    assert data["resolved"]["effective_batch_size"] == 8 and data["resolved"]["lora_scaling"] == 2.0
    assert set(data["sources"].values()) <= {"default", "file", "override", "derived"}
    assert "lora_rank" in data["groups"]["finetuning"] and "logging_steps" in data["groups"]["monitoring"]


@pytest.mark.slow  # a whole CLI process
def test_bad_config_exit_two_all_errors_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model_name_or_path: org/model\nlora_ranl: 8\nlora_dropout: 3\nstage: dpo\nmask_history: true\n")
    proc = _run("check", str(path))
    assert proc.returncode == 2
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    assert "Did you mean 'lora_rank'" in text and "lora_dropout" in text and "mask_history" in text


def test_json_diagnostics_for_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model_name_or_path: org/model\nlora_rank: 0\n")
    assert main(["check", str(path), "--json"]) == 2
    diags = json.loads(capsys.readouterr().out)["diagnostics"]
    assert {"level": "error", "key": "lora_rank"}.items() <= diags[0].items()


@pytest.mark.parametrize("content", ["a: [1, 2", "- just\n- a list\n"])
def test_unparsable_file_exit_two(tmp_path, content, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    assert main(["check", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_missing_file_exit_two(capsys):
    assert main(["check", "/no/such/config.yaml"]) == 2
    assert "not found" in capsys.readouterr().err


def test_help_imports_nothing_heavy():
    code = "import sys, tuneforge.cli as c; c._parser(); print(sorted(m for m in ('torch','transformers') " \
           "if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]"
    assert _run("--help").returncode == 0


def test_version_and_env(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("tuneforge ")
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "transformers:" in out and "torch:" in out
