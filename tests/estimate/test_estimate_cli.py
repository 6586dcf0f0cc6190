"""``tuneforge estimate`` end to end on config files, ``--fit --write``, bad input, and train's memory guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuneforge.cli import main

REPO = Path(__file__).resolve().parents[2]
SHAPE = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
         "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(SHAPE))
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": str(model), "stage": "sft", "do_train": True,
                                    "finetuning_type": "full", "bf16": True, "dataset": "identity",
                                    "dataset_dir": str(REPO / "data"), "output_dir": str(tmp_path / "out"),
                                    "cutoff_len": 2048,
                                    "per_device_train_batch_size": 8, "max_steps": 100}))
    return path


def test_json_has_the_promised_keys(config, capsys):
    assert main(["estimate", str(config), "--gpu", "1x24gb", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak_allocated_gib"] < out["peak_reserved_gib"] < out["device_total_gib"]
    assert sum(out["components"].values()) == pytest.approx(out["peak_allocated_gib"], abs=0.01)
    assert out["hardware"]["name"] == "NVIDIA GeForce RTX 4090" and out["time"]["steps"] == 100
    low, high = out["time"]["tokens_per_s"]
    assert 0 < low < high and out["time"]["wall_s"][0] < out["time"]["wall_s"][1]


def test_overrides_change_the_estimate(config, capsys):
    main(["estimate", str(config), "--gpu-memory", "80GiB", "--json"])
    small = json.loads(capsys.readouterr().out)["peak_allocated_gib"]
    main(["estimate", str(config), "per_device_train_batch_size=16", "--gpu-memory", "80GiB", "--json"])
    assert json.loads(capsys.readouterr().out)["peak_allocated_gib"] > small


def test_fit_writes_an_overlay_that_fits(config, tmp_path, capsys):
    overlay = tmp_path / "fit.yaml"
    assert main(["estimate", str(config), "--gpu-memory", "16GiB", "--fit", "--write", str(overlay)]) == 0
    text = capsys.readouterr().out
    assert "--fit: predicted" in text and "per_device_train_batch_size" in text
    keys = yaml.safe_load(overlay.read_text())
    assert main(["estimate", str(config), *(f"{k}={v}" for k, v in keys.items()), "--gpu-memory", "16GiB",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device_total_gib"] <= 16 * 0.9


@pytest.mark.parametrize(("args", "words"), [
    (["--gpu", "h10"], ["unknown GPU 'h10'", "h100"]),
    (["--gpu-memory", "24"], ["24GiB"]),
    (["--gpus", "two", "--gpu", "h100"], ["--gpus"]),
    (["--fit", "--lengths", "nope.json", "--gpu", "h100"], ["tuneforge lengths"]),
])
def test_bad_flags_exit_2_with_a_message(config, capsys, args, words):
    assert main(["estimate", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err


def test_unknown_model_exits_2(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model_name_or_path: someone/private-model\ndo_train: true\ndataset: identity\n"
                    f"dataset_dir: {REPO / 'data'}\n")
    assert main(["estimate", str(path)]) == 2
    assert "config.json of 'someone/private-model'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(p.relative_to(REPO) for p in (REPO / "examples").glob("*/*.yaml")),
                         ids=str)
def test_every_example_estimates(example, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = main(["estimate", str(example), "--gpu", "1x24gb", "--fit", "--json"])
    captured = capsys.readouterr()
    if code == 2:  # a model that only exists after another example ran (quickstart's saves/)
        assert "saves/" in captured.err
        return
    assert code == 0 and "peak_allocated_gib" in json.loads(captured.out)


def test_train_guard_refuses_and_the_override_key_allows(config, monkeypatch):
    from tuneforge.config.loader import load
    from tuneforge.estimate import guard
    from tuneforge.estimate.hardware import Hardware

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(guard, "detect", lambda: Hardware("NVIDIA L4", 22.0, 1, 121.0, "detected"))
    monkeypatch.setattr(guard, "free_memory_gib", lambda: [6.0])
    cfg = load([str(config)], environ={}).config
    message = guard.memory_refusal(cfg, launching=False, config_path="cfg.yaml")
    assert "6.0 GiB free on NVIDIA L4" in message and "--fit" in message and "ignore_memory_estimate" in message
    cfg.model.ignore_memory_estimate = True
    assert guard.memory_refusal(cfg, launching=False) is None
    monkeypatch.setattr(guard, "free_memory_gib", lambda: [60.0])
    cfg.model.ignore_memory_estimate = False
    assert guard.memory_refusal(cfg, launching=False) is None


def test_train_command_refuses_before_loading(config, monkeypatch, capsys):
    from tuneforge.estimate import guard
    from tuneforge.estimate.hardware import Hardware

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(guard, "detect", lambda: Hardware("NVIDIA L4", 22.0, 1, 121.0, "detected"))
    monkeypatch.setattr(guard, "free_memory_gib", lambda: [6.0])
    assert main(["train", str(config)]) == 2
    assert "ignore_memory_estimate" in capsys.readouterr().err


def test_data_flag_measures_real_lengths(tmp_path, capsys):
    from shared_models import require_shared

    qwen = require_shared("Qwen2.5-0.5B-Instruct")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": str(qwen), "do_train": True, "dataset": "identity",
                                    "dataset_dir": str(REPO / "data"), "template": "qwen", "cutoff_len": 2048,
                                    "per_device_train_batch_size": 4, "output_dir": str(tmp_path / "out")}))
    assert main(["estimate", str(path), "--gpu", "h100", "--json"]) == 0
    worst = json.loads(capsys.readouterr().out)
    assert main(["estimate", str(path), "--gpu", "h100", "--json", "--data"]) == 0
    real = json.loads(capsys.readouterr().out)
    assert worst["tokens_per_micro_batch"] == 4 * 2048
    assert real["tokens_per_micro_batch"] < 2048  # identity rows are a few dozen tokens
    assert real["time"]["steps"] is not None and real["peak_allocated_gib"] < worst["peak_allocated_gib"]


def test_unknown_lora_target_is_noted(config, capsys):
    assert main(["estimate", str(config), "finetuning_type=lora", "lora_target=c_attn,q_proj", "--gpu", "h100"]) == 0
    assert "note: lora_target c_attn: not a projection" in capsys.readouterr().out
