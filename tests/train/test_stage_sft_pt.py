"""pt and sft × lora / freeze / full / QLoRA end to end on the tiny model, through the `train` stage registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.config.loader import resolve
from tuneforge.train import stage_runner

pytestmark = pytest.mark.slow  # end-to-end runs: make test-fast skips them

REPO = Path(__file__).resolve().parents[2]
COMMON_FILES = {"trainer_log.jsonl", "all_results.json", "train_results.json", "trainer_state.json",
                "tuneforge_config.yaml", "tuneforge_run.json", "tokenizer.json", "tokenizer_config.json"}


def _config(model_dir: Path, out: Path, **extra) -> dict:
    base = {
        "model_name_or_path": str(model_dir), "do_train": True, "stage": "sft", "finetuning_type": "lora",
        "dataset": "quickstart_task", "dataset_dir": str(REPO / "data"), "template": "chatml", "cutoff_len": 64,
        "max_samples": 64, "output_dir": str(out), "per_device_train_batch_size": 8, "max_steps": 4,
        "logging_steps": 1, "save_strategy": "no", "learning_rate": 1e-3, "report_to": "none",
        "disable_gradient_checkpointing": False, "seed": 0,
    }
    return {**base, **extra}


def _train(config: dict) -> dict:
    from tuneforge.commands.runner import stage_hooks

    res = resolve(config, environ={})
    assert res.errors == [], res.errors
    return stage_runner(res.config.finetuning.stage)(res.config, **stage_hooks(res.config))


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("stage", "method", "weights"),
    [("sft", "lora", {"adapter_model.safetensors", "adapter_config.json"}),
     ("sft", "freeze", {"model.safetensors", "config.json"}),
     ("sft", "full", {"model.safetensors", "config.json"}),
     ("pt", "lora", {"adapter_model.safetensors", "adapter_config.json"}),
     ("pt", "freeze", {"model.safetensors", "config.json"}),
     ("pt", "full", {"model.safetensors", "config.json"})],
)
def test_stage_method_end_to_end(stage, method, weights, tiny_model_dir, tmp_path):
    extra = {"stage": stage, "finetuning_type": method}
    if stage == "pt":
        extra.update(dataset="pt_demo", template=None, cutoff_len=128)
    if method == "freeze":
        extra["freeze_trainable_layers"] = 1
    out = tmp_path / "out"
    metrics = _train(_config(tiny_model_dir, out, **extra))
    files = {p.name for p in out.iterdir()}
    assert COMMON_FILES | weights <= files, files
    log = _log(out)
    assert [row["current_steps"] for row in log if "loss" in row] == [1, 2, 3, 4]
    assert {"loss", "lr", "epoch", "percentage", "elapsed_time", "remaining_time", "throughput"} <= set(log[0])
    assert metrics["train_loss"] > 0 and json.loads((out / "all_results.json").read_text())["train_loss"] > 0


def test_freeze_keeps_frozen_weights_bit_identical(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    _train(_config(tiny_model_dir, out, finetuning_type="freeze", freeze_trainable_layers=1))
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed), changed
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])


@pytest.mark.parametrize(("method", "lr", "drop"), [("full", 5e-3, 2.0), ("lora", 5e-3, 0.2)])
def test_sft_loss_falls_over_20_steps(method, lr, drop, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    _train(_config(tiny_model_dir, out, finetuning_type=method, max_steps=20, max_samples=160, learning_rate=lr,
                   lora_rank=16))
    losses = [row["loss"] for row in _log(out) if "loss" in row]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - drop, losses


def test_qlora_4bit_trains_on_cpu(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs the bnb extra")
    out = tmp_path / "out"
    _train(_config(tiny_model_dir, out, quantization_bit=4, max_steps=2))
    assert (out / "adapter_model.safetensors").is_file()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16


def test_existing_output_dir_is_refused_without_overwrite(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = resolve(_config(tiny_model_dir, out), environ={})
    assert any(d.key == "output_dir" and d.level == "error" for d in res.diagnostics)
    from tuneforge.cli import main

    args = ["train", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--do_train",
            "--dataset", "quickstart_task", "--dataset_dir", str(REPO / "data")]
    assert main(args) == 2
    assert (out / "keep.txt").read_text() == "mine"


def test_sft_predict_with_generate_writes_predictions(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    metrics = _train(_config(tiny_model_dir, out, max_steps=2, eval_dataset="quickstart_eval", max_samples=8,
                             predict_with_generate=True, do_predict=True, max_new_tokens=8, do_sample=False))
    rows = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]) == {"prompt", "predict", "label"}
    assert "predict_bleu-4" in metrics and (out / "predict_results.json").is_file()


def _losses_and_logs(model_dir: Path, out: Path, caplog, logger: str, **keys) -> tuple[list[float], str]:
    """Train with ``keys`` (fixed order) and return the step losses and what ``logger`` logged at INFO."""
    caplog.clear()
    with caplog.at_level("INFO", logger=logger):
        _train(_config(model_dir, out, **keys, disable_shuffling=True))
    return [row["loss"] for row in _log(out) if "loss" in row], caplog.text


@pytest.mark.parametrize("extra", [{"padding_free": True}, {"neat_packing": True}])
def test_padding_free_training_matches_padded(extra, tiny_model_dir, tmp_path, caplog):
    """The varlen path through `train`: same sample order and seed, the same losses step by step as padding."""
    runs = {}
    for name, keys in (("padded", {"padding_free": False}), ("fast", extra)):
        runs[name], text = _losses_and_logs(tiny_model_dir, tmp_path / name, caplog, "tuneforge.model.varlen",
                                            per_device_train_batch_size=4, **keys)
        assert ("padding-free batches" in text) == (name == "fast")
    if "neat_packing" in extra:  # packed rows hold other examples per step: compare that it trains, not values
        assert len(runs["fast"]) == 4 and all(loss > 0 for loss in runs["fast"])
    else:
        assert runs["fast"] == pytest.approx(runs["padded"], rel=1e-4), runs


def test_torch_compile_compiles_layers_and_keeps_losses(tiny_model_dir, tmp_path, caplog):
    """torch_compile compiles each decoder layer (aot_eager here: the CPU has no Triton); losses unchanged."""
    runs = {}
    for name, keys in (("eager", {}), ("compiled", {"torch_compile_backend": "aot_eager"})):
        runs[name], text = _losses_and_logs(tiny_model_dir, tmp_path / name, caplog, "tuneforge.model.compile",
                                            max_steps=3, **keys)
        assert ("decoder layers compiled" in text) == (name == "compiled")
    assert runs["compiled"] == pytest.approx(runs["eager"], rel=1e-4), runs
