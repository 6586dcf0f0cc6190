"""`check` judges every model and adapter source from its files: missing, incomplete, a hub id offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tuneforge.config.loader import resolve
from tuneforge.config.paths import source_kind


def _model(folder: Path, *files: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name in files or ("config.json", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}")
    return str(folder)


def _adapter(folder: Path, head: bool = False) -> str:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    if head:
        (folder / "value_head.safetensors").write_text("x")
    return str(folder)


def _errors(config: dict, environ: dict | None = None) -> dict[str, str]:
    res = resolve(config, environ=environ or {})
    return {d.key: d.message for d in res.errors if d.rule == "sources_exist"}


@pytest.mark.parametrize(("name", "kind"), [
    ("Qwen/Qwen2.5-0.5B-Instruct", "hub"), ("./models/x", "local"), ("/abs/x", "local"), ("a/b/c", "local"),
    ("~/m", "local"), ("my model", "invalid"), ("gpt2", "invalid"), ("org/na--me", "invalid"),
])
def test_source_kind(name, kind):
    assert source_kind(name) == kind


def test_missing_adapter_is_an_error(tmp_path):
    errors = _errors({"model_name_or_path": _model(tmp_path / "m"), "adapter_name_or_path": str(tmp_path / "none")})
    assert errors["adapter_name_or_path"].endswith("none does not exist")


@pytest.mark.parametrize(("files", "words"), [
    (("model.safetensors", "tokenizer.json"), "no config.json"),
    (("config.json", "tokenizer.json"), "no weights"),
    (("config.json", "model.safetensors"), "has no tokenizer: none of tokenizer.json"),
    (("adapter_config.json",), "is a LoRA adapter"),
])
def test_incomplete_model_folder(tmp_path, files, words):
    errors = _errors({"model_name_or_path": _model(tmp_path / "m", *files)})
    assert words in errors["model_name_or_path"]


def test_train_from_scratch_needs_no_weights(tmp_path):
    folder = _model(tmp_path / "m", "config.json", "tokenizer_config.json")
    assert _errors({"model_name_or_path": folder, "train_from_scratch": True}) == {}


def test_adapter_folder_without_adapter_config(tmp_path):
    errors = _errors({"model_name_or_path": _model(tmp_path / "m"), "adapter_name_or_path": _model(tmp_path / "a")})
    assert "no adapter_config.json" in errors["adapter_name_or_path"]


def test_name_neither_folder_nor_hub_id():
    assert "neither a local folder nor a hub id" in _errors({"model_name_or_path": "my model"})["model_name_or_path"]


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_hub_id_offline_not_cached(tmp_path, variable):
    environ = {variable: "1", "HF_HUB_CACHE": str(tmp_path)}
    message = _errors({"model_name_or_path": "org/model"}, environ)["model_name_or_path"]
    assert "HF_HUB_OFFLINE" in message and str(tmp_path) in message


def test_hub_id_offline_in_cache(tmp_path):
    _model(tmp_path / "models--org--model" / "snapshots" / "abc123")
    assert _errors({"model_name_or_path": "org/model"}, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path.parent)}) \
        != {}  # HF_HOME/hub is another folder
    assert _errors({"model_name_or_path": "org/model"}, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}) == {}
    assert _errors({"model_name_or_path": "org/model", "cache_dir": str(tmp_path)}, {"HF_HUB_OFFLINE": "1"}) == {}


def test_hub_id_online_is_a_notice():
    res = resolve({"model_name_or_path": "org/model"}, environ={})
    assert res.errors == [] and [d.rule for d in res.diagnostics] == ["hub_download"]


def test_reference_and_reward_models(tmp_path):
    base = _model(tmp_path / "m")
    config = {"model_name_or_path": base, "stage": "ppo", "do_train": True, "dataset": "a",
              "reward_model": _adapter(tmp_path / "rm"), "ref_model": str(tmp_path / "ref")}
    errors = _errors(config)
    assert "value_head.safetensors" in errors["reward_model"] and errors["ref_model"].endswith("does not exist")
    config.update(reward_model=_adapter(tmp_path / "rm2", head=True), ref_model=base)
    assert _errors(config) == {}
    full = {**config, "reward_model_type": "full", "finetuning_type": "full", "reward_model": base}
    assert "value_head.safetensors" in _errors(full)["reward_model"]


def test_reference_model_ignored_outside_preference_stages(tmp_path):
    assert _errors({"model_name_or_path": _model(tmp_path / "m"), "ref_model": "/none"}) == {}


def test_output_dir_not_writable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    res = resolve({"model_name_or_path": _model(tmp_path / "m"), "do_train": True, "dataset": "a",
                   "output_dir": str(locked / "out")}, environ={})
    assert any("no write permission" in d.message for d in res.errors if d.key == "output_dir")


def test_output_dir_under_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    res = resolve({"model_name_or_path": _model(tmp_path / "m"), "export_dir": str(tmp_path / "f" / "out")},
                  environ={})
    assert any("is a file" in d.message for d in res.errors if d.key == "export_dir")


def test_ppo_on_several_gpus(monkeypatch, tmp_path):
    from tuneforge.config.rules import training_rules

    monkeypatch.setattr(training_rules, "visible_gpus", lambda: 4)  # the rule's input: a 4-GPU machine
    config = {"model_name_or_path": _model(tmp_path / "m"), "stage": "ppo"}
    res = resolve(config, environ={})
    assert any("would start 4" in d.message for d in res.errors if d.key == "NPROC_PER_NODE")
    assert not any(d.key == "NPROC_PER_NODE" for d in resolve(config, environ={"NPROC_PER_NODE": "1"}).errors)


def test_adapter_in_a_sub_folder(tmp_path):
    _adapter(tmp_path / "repo" / "sft")
    config = {"model_name_or_path": _model(tmp_path / "m"), "adapter_name_or_path": str(tmp_path / "repo")}
    assert "no adapter_config.json" in _errors(config)["adapter_name_or_path"]
    assert _errors({**config, "adapter_folder": "sft"}) == {}
