"""Every command that takes a config answers every bad config with exit 2, the problem named, and no traceback.

Each case is YAML text (``{model}`` is a complete tiny model folder) and a word the report must contain. The
commands fail while resolving the config, before anything heavy loads, so the whole table runs in-process in a
few seconds; a few cases also run as real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.cli import main

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("check", "train", "lengths", "preview", "chat", "export", "api", "predict")
TRAIN = "do_train: true\ndataset: identity\ntemplate: chatml\n"

BAD = {
    "typo": ("model_name_or_path: {model}\nlora_ranl: 8\n", "Did you mean 'lora_rank'"),
    "batch_size_zero": ("model_name_or_path: {model}\nper_device_train_batch_size: 0\n",
                        "per_device_train_batch_size"),
    "missing_adapter": ("model_name_or_path: {model}\nadapter_name_or_path: /no/such/adapter\n",
                        "/no/such/adapter does not exist"),
    "missing_model": ("model_name_or_path: ./no/such/model\n", "./no/such/model does not exist"),
    "not_a_name": ("model_name_or_path: my model\n", "neither a local folder nor a hub id"),
    "hub_id_offline": ("model_name_or_path: nobody/no-such-model\n", "HF_HUB_OFFLINE"),
    "no_model": ("template: chatml\n", "model_name_or_path is required"),
    "ppo_fp16": ("model_name_or_path: {model}\nstage: ppo\nfp16: true\nreward_model: {model}\n" + TRAIN,
                 "stage ppo runs in bf16 or fp32"),
    "learning_rate_zero": ("model_name_or_path: {model}\nlearning_rate: 0\n" + TRAIN, "learning_rate must be > 0"),
    "repeated_key": ("model_name_or_path: {model}\nlora_rank: 8\nlora_rank: 16\n", "line 2 and line 3"),
    "unparsable": ("model_name_or_path: [{model}\n", "cannot parse"),
    "not_a_mapping": ("- model_name_or_path\n", "must be a mapping"),
    "bad_choice": ("model_name_or_path: {model}\nsave_strategy: sometimes\n", "save_strategy"),
    "output_dir_is_file": ("model_name_or_path: {model}\noutput_dir: {file}\n" + TRAIN, "is a file"),
    "bad_scheduler_combo": ("model_name_or_path: {model}\nlr_scheduler_type: reduce_lr_on_plateau\n",
                            "lr_scheduler_type"),
}


@pytest.fixture(scope="module")
def bad_configs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    a_file = folder / "a_file.txt"
    a_file.write_text("x")
    out = {}
    for name, (text, _) in BAD.items():
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(text.format(model=tiny_model_dir, file=a_file))
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_bad_config_exits_two(command, bad_configs, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the data registry of TRAIN (data/dataset_info.json) is repo-relative
    for name, (_, words) in BAD.items():
        code = main([command, str(bad_configs[name])])
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert code == 2, f"{command} {name}: exit {code}\n{text}"
        assert words in text, f"{command} {name}: {words!r} not in\n{text}"
        assert "Traceback" not in text


# Commands that import nothing heavy before resolving (train and the data commands do; they run in-process above).
@pytest.mark.parametrize(("command", "name"), [("check", "missing_adapter"), ("export", "ppo_fp16"),
                                               ("api", "repeated_key"), ("chat", "batch_size_zero")])
def test_a_real_process_shows_no_traceback(command, name, bad_configs):
    proc = subprocess.run([sys.executable, "-m", "tuneforge", command, str(bad_configs[name])], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert BAD[name][1] in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["lengths", "preview"])
def test_data_commands_without_a_dataset(command, tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "nodata.yaml"
    path.write_text(f"model_name_or_path: {tiny_model_dir}\ntemplate: chatml\n")
    assert main([command, str(path)]) == 2
    assert "names no training dataset" in capsys.readouterr().err
