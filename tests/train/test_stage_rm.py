"""Stage rm end to end on the tiny model: output files LLaMA-Factory's ppo reads, ranking held-out pairs, and the
value head's files, checkpoints and resume."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from trainkit import make_cfg
from transformers import TrainerControl, TrainerState

from tuneforge.data.collator import PairwiseCollator
from tuneforge.model.value_head import (
    VALUE_HEAD_FILE,
    ValueHeadCallback,
    ValueHeadModel,
    attach_value_head,
    last_token_index,
    load_value_head_model,
    save_value_head,
    strip_value_head,
)
from tuneforge.testing import PAD_ID, build_tiny_model
from tuneforge.train import stage_runner

pytestmark = pytest.mark.slow  # end-to-end runs: make test-fast skips them

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def rm_cfg(out: Path, model_dir: Path, **keys):
    base = dict(stage="rm", do_train=True, finetuning_type="lora", model_name_or_path=str(model_dir),
                dataset="dpo_demo", dataset_dir=str(DATA_DIR), template="chatml", cutoff_len=64, max_samples=8,
                max_steps=2, learning_rate=1e-3, plot_loss=True)
    return make_cfg(out, **{**base, **keys})


def tensor_names(path: Path) -> set[str]:
    with safe_open(str(path), "pt") as handle:
        return set(handle.keys())


def pairs_dir(tmp_path: Path) -> Path:
    """``easy`` (24 pairs) and ``heldout`` (12 other prompts): the preferred reply is always "yes", the other
    "no no no"."""
    rng = random.Random(0)

    def rows(n: int, low: int, high: int) -> list[dict]:
        return [{"instruction": f"question {rng.randint(low, high)}?", "chosen": "yes", "rejected": "no no no"}
                for _ in range(n)]

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "easy.json").write_text(json.dumps(rows(24, 0, 499)))
    (tmp_path / "heldout.json").write_text(json.dumps(rows(12, 500, 999)))
    columns = {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}
    info = {name: {"file_name": f"{name}.json", "ranking": True, "columns": columns} for name in ("easy", "heldout")}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return tmp_path


@pytest.mark.parametrize("method", ["lora", "freeze", "full"])
def test_rm_writes_a_reward_model(method, tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    metrics = stage_runner("rm")(rm_cfg(out, tiny_model_dir, finetuning_type=method, save_strategy="steps",
                                        save_steps=2))
    names = {p.name for p in out.iterdir()}
    weights = {"adapter_model.safetensors", "adapter_config.json"} if method == "lora" else {"model.safetensors",
                                                                                             "config.json"}
    assert weights | {VALUE_HEAD_FILE, "trainer_log.jsonl", "all_results.json", "training_loss.png"} <= names
    assert tensor_names(out / VALUE_HEAD_FILE) == {"v_head.summary.weight", "v_head.summary.bias"}
    assert VALUE_HEAD_FILE in {p.name for p in (out / "checkpoint-2").iterdir()}
    if method != "lora":  # the head lives in value_head.safetensors only, as LLaMA-Factory writes it
        assert not any(k.startswith("v_head") for k in tensor_names(out / "model.safetensors"))
    logs = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert [e["step"] for e in logs] == [1, 2]
    assert all(math.isfinite(e["loss"]) and 0.0 <= e["accuracy"] <= 1.0 for e in logs)
    assert math.isfinite(metrics["train_loss"])


def eval_pairs(cfg) -> dict[str, torch.Tensor]:
    """The evaluation pairs of ``cfg``, tokenized by the stage's pipeline, as one pair batch."""
    from tuneforge.data.pipeline import build_datasets
    from tuneforge.model import load_tokenizer
    from tuneforge.train.core.workflow import load_template

    tokenizer = load_tokenizer(cfg)
    return PairwiseCollator(PAD_ID)(list(build_datasets(cfg, tokenizer, load_template(cfg, tokenizer)).eval))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_reward_model_ranks_held_out_pairs(method, tmp_path, tiny_model_dir):
    data = pairs_dir(tmp_path / "data")
    out = tmp_path / "out"
    cfg = rm_cfg(out, tiny_model_dir, finetuning_type=method, dataset="easy", eval_dataset="heldout",
                 dataset_dir=str(data), max_samples=24, per_device_train_batch_size=4, per_device_eval_batch_size=4,
                 max_steps=6, learning_rate=5e-3 if method == "lora" else 1e-3, do_eval=True, do_predict=True)
    metrics = stage_runner("rm")(cfg)
    assert metrics["eval_accuracy"] > 0.5 and metrics["predict_accuracy"] == metrics["eval_accuracy"]
    lines = [json.loads(x) for x in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 12
    assert sum(x["chosen"] > x["rejected"] for x in lines) / len(lines) > 0.5
    # The saved folder, loaded as ppo's reward model, scores exactly as the trained model did.
    scorer = load_value_head_model(out)
    assert isinstance(scorer, ValueHeadModel) and not any(p.requires_grad for p in scorer.parameters())
    with torch.no_grad():
        chosen, rejected = scorer(**eval_pairs(cfg)).chunk(2)
    assert chosen.tolist() == pytest.approx([x["chosen"] for x in lines], abs=1e-4)
    assert rejected.tolist() == pytest.approx([x["rejected"] for x in lines], abs=1e-4)


def test_evaluation_only_reads_the_saved_head(tmp_path, tiny_model_dir):
    out = tmp_path / "train"
    trained = stage_runner("rm")(rm_cfg(out, tiny_model_dir, eval_dataset="dpo_demo", do_eval=True))
    again = stage_runner("rm")(rm_cfg(tmp_path / "eval", tiny_model_dir, do_train=False, do_eval=True,
                                      eval_dataset="dpo_demo", adapter_name_or_path=str(out)))
    assert again["eval_loss"] == pytest.approx(trained["eval_loss"], abs=1e-5)
    assert again["eval_accuracy"] == trained["eval_accuracy"]


# ---- the value head on its own ------------------------------------------------------------------------------------


def test_last_token_index_either_padding_side():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token_index(mask).tolist() == [1, 3, 3]


def test_checkpoint_head_is_saved_and_restored(tmp_path):
    model = build_tiny_model().train()
    head = attach_value_head(model)
    callback = ValueHeadCallback(resume=True)
    args = type("Args", (), {"should_save": True, "output_dir": str(tmp_path)})()
    state = TrainerState(global_step=4)
    (tmp_path / "checkpoint-4").mkdir()
    callback.on_save(args, state, TrainerControl(), model=model)
    saved = head.summary.weight.detach().clone()
    with torch.no_grad():
        head.summary.weight.zero_()
    callback.on_train_begin(args, state, TrainerControl(), model=model)  # HF resumed step 4: the head comes back
    assert torch.equal(head.summary.weight, saved)
    callback.on_train_begin(args, TrainerState(global_step=0), TrainerControl(), model=model)  # fresh run: no-op
    assert torch.equal(head.summary.weight, saved)


def test_strip_value_head_from_shards(tmp_path):
    model = build_tiny_model()
    attach_value_head(model)
    model.save_pretrained(str(tmp_path), max_shard_size="100KB")
    save_value_head(model, tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert any(k.startswith("v_head.") for k in index["weight_map"]) and len(set(index["weight_map"].values())) > 1
    strip_value_head(tmp_path)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert not any(k.startswith("v_head.") for k in index["weight_map"])
    stored = set().union(*(tensor_names(tmp_path / shard) for shard in set(index["weight_map"].values())))
    assert stored == set(index["weight_map"]) and not any(k.startswith("v_head.") for k in stored)
    assert tensor_names(tmp_path / VALUE_HEAD_FILE) == {"v_head.summary.weight", "v_head.summary.bias"}
