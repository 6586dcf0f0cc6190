"""Every LLaMA-Factory 0.9.5 key and every transformers 4.57 training argument is known: kept, translated, dropped
with a notice, or refused with the reason; `fsdp` is a list or a string and the old FSDP keys land in fsdp_config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuneforge.config.loader import load, resolve

HERE = Path(__file__).resolve().parent
BASE = {"model_name_or_path": "org/model", "stage": "sft", "do_train": True, "dataset": "identity",
        "template": "qwen", "output_dir": "saves/out"}
HF_457 = yaml.safe_load((HERE / "transformers_4_57_removed.yaml").read_text())


def _resolve(**keys):
    return resolve({**BASE, **keys}, environ={})


def _by_key(res, level: str) -> dict[str, str]:
    return {d.key: d.message for d in res.diagnostics if d.level == level}


def test_every_llamafactory_key_at_its_default_is_accepted():
    table = yaml.safe_load((HERE / "llamafactory_0_9_5_keys.yaml").read_text())
    defaults = {key: value for fields in table.values() for key, value in fields.items()}
    assert len(defaults) == 237
    res = resolve({**defaults, **BASE}, environ={})
    assert not [d for d in res.diagnostics if "unknown key" in d.message]
    assert res.errors == [], [(d.key, d.message) for d in res.errors]


@pytest.mark.parametrize("key", sorted(HF_457))
def test_transformers_4_57_key_at_its_default_is_known(key):
    res = _resolve(**{key: HF_457[key]})
    assert res.errors == [], [(d.key, d.message) for d in res.errors]
    assert not [d for d in res.diagnostics if "unknown key" in d.message]


@pytest.mark.parametrize(("old", "value", "new", "expected"), [
    ("adafactor", True, "optim", "adafactor"),
    ("include_inputs_for_metrics", True, "include_for_metrics", ["inputs"]),
    ("tpu_metrics_debug", True, "debug", "tpu_metrics_debug"),
    ("push_to_hub_model_id", "me/model", "hub_model_id", "me/model"),
])
def test_removed_training_arguments_are_translated(old, value, new, expected):
    res = _resolve(**{old: value})
    assert res.errors == [] and res.config.value(new) == expected
    assert f"translated to {new}" in _by_key(res, "notice")[old]


def test_a_translated_key_at_its_default_is_only_dropped():
    res = _resolve(adafactor=False, optim="adamw_torch")
    assert res.errors == [] and res.config.training.optim == "adamw_torch"
    assert "default" in _by_key(res, "notice")["adafactor"]


@pytest.mark.parametrize(("key", "value", "words"), [
    ("push_to_hub_organization", "my-org", "hub_model_id: <organization>/<name>"),
    ("parallelism_config", {"tp_size": 2}, "ParallelismConfig"),
])
def test_removed_settings_that_cannot_be_honoured_are_refused(key, value, words):
    assert words in _by_key(_resolve(**{key: value}), "error")[key]


def test_dropped_keys_say_why():
    notices = _by_key(_resolve(local_rank=0, fp16_opt_level="O2", mp_parameters="x"), "notice")
    assert "launcher" in notices["local_rank"] and "Apex" in notices["fp16_opt_level"] and "mp_parameters" in notices


def test_fsdp_as_a_list_a_string_or_an_override():
    listed, spaced = _resolve(fsdp=["full_shard", "auto_wrap"]), _resolve(fsdp="full_shard auto_wrap")
    override = resolve(BASE, ["fsdp=[full_shard, offload]"], environ={})
    assert listed.config.training.fsdp == spaced.config.training.fsdp == "full_shard auto_wrap"
    assert override.config.training.fsdp == "full_shard offload"


def test_old_fsdp_keys_move_into_fsdp_config():
    res = _resolve(fsdp=["full_shard", "auto_wrap"], fsdp_transformer_layer_cls_to_wrap="Qwen2DecoderLayer",
                   fsdp_min_num_params=1000, fsdp_config={"cpu_offload": True})
    assert res.errors == []
    assert res.config.training.fsdp_config == {
        "cpu_offload": True, "transformer_layer_cls_to_wrap": "Qwen2DecoderLayer", "min_num_params": 1000}
    notices = _by_key(res, "notice")
    assert "fsdp_config" in notices["fsdp_transformer_layer_cls_to_wrap"] and "fsdp_config" in notices[
        "fsdp_min_num_params"]


def test_the_merged_fsdp_settings_reach_transformers():
    from tuneforge.train.core.trainer import build_training_args

    res = _resolve(fsdp=["full_shard", "auto_wrap"], fsdp_transformer_layer_cls_to_wrap="Qwen2DecoderLayer",
                   use_cpu=True, report_to="none")
    args = build_training_args(res.config, output_dir="unused")
    assert args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "Qwen2DecoderLayer"
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_old_fsdp_key_next_to_the_same_fsdp_config_entry_is_an_error():
    for entry in ("min_num_params", "fsdp_min_num_params"):
        res = _resolve(fsdp="full_shard", fsdp_min_num_params=10, fsdp_config={entry: 5})
        assert "keep only fsdp_config.min_num_params" in _by_key(res, "error")["fsdp_min_num_params"]


def test_old_fsdp_key_with_an_fsdp_config_file_names_the_file(tmp_path):
    config = tmp_path / "fsdp.json"
    config.write_text(json.dumps({"version": 2}))
    error = _by_key(_resolve(fsdp="full_shard", fsdp_config=str(config), fsdp_min_num_params=10), "error")
    assert str(config) in error["fsdp_min_num_params"] and '"min_num_params": 10' in error["fsdp_min_num_params"]


def test_fsdp_config_as_a_json_string_is_merged():
    res = _resolve(fsdp="full_shard", fsdp_config='{"version": 2}', fsdp_transformer_layer_cls_to_wrap="Block")
    assert res.config.training.fsdp_config == {"version": 2, "transformer_layer_cls_to_wrap": "Block"}


def test_a_yaml_file_with_old_keys_checks_clean(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model_name_or_path: org/model\nstage: sft\ndo_train: true\ndataset: identity\ntemplate: qwen\n"
                    "output_dir: saves/x\nfsdp: [full_shard, auto_wrap]\nfsdp_transformer_layer_cls_to_wrap: Block\n"
                    "adafactor: true\nlocal_rank: -1\n")
    res = load([str(path)], environ={})
    assert res.errors == [] and res.config.training.optim == "adafactor"
