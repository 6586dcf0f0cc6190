"""What a finished run leaves in output_dir, and the plots and records on their own."""

from __future__ import annotations

import json

import pytest
from trainkit import IdCollator, make_cfg, random_rows

from tuneforge.config.loader import read_config_file, resolve
from tuneforge.config.schema import all_specs
from tuneforge.testing import build_tiny_model
from tuneforge.train.core.plots import ema, plot_keys, plot_loss
from tuneforge.train.core.records import CONFIG_FILE, RUN_FILE
from tuneforge.train.core.trainer import build_trainer, run_training

PNG = b"\x89PNG\r\n\x1a\n"
LF_FIELDS = {"current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time", "remaining_time"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from tuneforge.testing import load_tiny_tokenizer

    out = tmp_path_factory.mktemp("outputs") / "run"
    cfg = make_cfg(out, max_steps=6, save_strategy="steps", save_steps=3, do_eval=True, eval_strategy="steps",
                   eval_steps=3, compute_accuracy=True, plot_loss=True, disable_tqdm=False,
                   per_device_eval_batch_size=4)
    trainer = build_trainer(cfg, build_tiny_model(), load_tiny_tokenizer(), random_rows(24), random_rows(6, seed=5),
                            IdCollator())
    metrics = run_training(cfg, trainer, dataset_fingerprints={"toy": "fp-9"})
    return cfg, out, metrics


def test_output_dir_contents(finished_run):
    _, out, metrics = finished_run
    names = {p.name for p in out.iterdir()}
    expected = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "chat_template.jinja", "training_args.bin", "trainer_state.json",
                "train_results.json", "eval_results.json", "all_results.json", "trainer_log.jsonl", CONFIG_FILE,
                RUN_FILE, "training_loss.png", "training_eval_loss.png", "training_eval_accuracy.png",
                "checkpoint-3", "checkpoint-6"}
    assert names == expected
    for png in ("training_loss.png", "training_eval_loss.png", "training_eval_accuracy.png"):
        assert (out / png).read_bytes()[:8] == PNG
    for ckpt in ("checkpoint-3", "checkpoint-6"):
        assert {"tuneforge_complete.json", CONFIG_FILE, "optimizer.pt"} <= {p.name for p in (out / ckpt).iterdir()}

    train = json.loads((out / "train_results.json").read_text())
    assert {"train_loss", "train_runtime", "effective_tokens_per_sec", "skipped_steps"} <= train.keys()
    evals = json.loads((out / "eval_results.json").read_text())
    assert evals["eval_perplexity"] == pytest.approx(2.718281828 ** evals["eval_loss"], rel=1e-6)
    assert 0.0 <= evals["eval_accuracy"] <= 1.0
    assert json.loads((out / "all_results.json").read_text()).keys() >= train.keys() | evals.keys()
    assert metrics["eval_loss"] == evals["eval_loss"]


def test_trainer_log_lines(finished_run):
    _, out, _ = finished_run
    lines = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    assert [x["current_steps"] for x in train_lines] == [1, 2, 3, 4, 5, 6]
    for line in train_lines:
        assert LF_FIELDS | {"throughput", "total_tokens"} <= line.keys()
        assert line["total_steps"] == 6 and line["throughput"] > 0
    assert [x["total_tokens"] for x in train_lines] == sorted(x["total_tokens"] for x in train_lines)
    assert train_lines[-1]["percentage"] == 100.0
    eval_lines = [x for x in lines if "eval_loss" in x]
    assert [x["current_steps"] for x in eval_lines] == [3, 6, 6]  # two during training, one final evaluation


def test_config_round_trips_through_the_loader(finished_run):
    cfg, out, _ = finished_run
    reloaded = resolve(read_config_file(out / CONFIG_FILE), environ={})
    assert not [d for d in reloaded.diagnostics if "unknown key" in d.message]
    specs = all_specs()
    original = {k: v for k, v in cfg.to_flat().items() if specs[k].group != "env"}
    again = {k: v for k, v in reloaded.config.to_flat().items() if specs[k].group != "env"}
    assert again == original


def test_run_record(finished_run):
    _, out, _ = finished_run
    record = json.loads((out / RUN_FILE).read_text())
    assert record["status"] == "completed"
    assert record["dataset_fingerprints"] == {"toy": "fp-9"}
    assert record["packages"]["transformers"] and record["packages"]["torch"]
    assert record["started"] <= record["ended"]
    assert record["command"] and record["global_step"] == 6
    assert record["git"] is None or len(record["git"]["commit"]) == 40
    assert record["outputs"] == sorted(p.name for p in out.iterdir())  # what overwrite_output_dir may remove


def test_plot_loss_names_and_missing_keys(tmp_path):
    history = [{"loss": 2.0 - 0.1 * i, "rewards/accuracies": 0.5, "step": i} for i in range(1, 11)]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    written = plot_loss(tmp_path, ["loss", "rewards/accuracies", "eval_loss"])
    assert [p.name for p in written] == ["training_loss.png", "training_rewards_accuracies.png"]
    assert all(p.read_bytes()[:8] == PNG for p in written)
    assert plot_keys("dpo", [{"eval_alpaca_loss": 1.0}]) == ["loss", "rewards/accuracies", "eval_loss",
                                                            "eval_alpaca_loss"]


def test_ema_starts_on_the_data_and_smooths():
    assert ema([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])
    smoothed = ema([0.0, 10.0] * 20)
    assert smoothed[0] == 0.0
    assert max(smoothed[-10:]) - min(smoothed[-10:]) < 10.0
