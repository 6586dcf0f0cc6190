"""The loader: types, ranges, overrides, suggestions, legacy keys, sources and derived values."""

from __future__ import annotations

import json

import pytest
import yaml

from tuneforge.config.coerce import CoerceError, coerce
from tuneforge.config.loader import load, parse_overrides, resolve
from tuneforge.config.schema import GROUPS, all_specs

BASE = {"model_name_or_path": "org/model"}


def _errors(res):
    return {d.key: d.message for d in res.errors}


def test_defaults_follow_llamafactory():
    cfg = resolve(BASE, environ={}).config
    assert cfg.finetuning.lora_rank == 8
    assert cfg.finetuning.lora_alpha == 16  # derived 2 x rank
    assert cfg.finetuning.lora_target == ["all"]
    assert cfg.data.cutoff_len == 2048
    assert cfg.data.packing is False  # sft
    assert cfg.finetuning.stage == "sft" and cfg.finetuning.finetuning_type == "lora"
    assert cfg.generating.temperature == 0.95 and cfg.generating.top_p == 0.7
    assert cfg.model.flash_attn == "auto" and cfg.model.disable_gradient_checkpointing is False
    assert cfg.training.learning_rate == 5e-5  # transformers' own default
    assert cfg.env.API_HOST == "127.0.0.1"


def test_packing_derived_for_pretraining():
    res = resolve({**BASE, "stage": "pt"}, environ={})
    assert res.config.data.packing is True and res.sources["packing"] == "derived"


def test_types_are_coerced():
    res = resolve({**BASE, "lora_rank": "16", "learning_rate": "1e-5", "bf16": "true", "dataset": "a, b",
                   "interleave_probs": "0.3,0.7", "mix_strategy": "interleave_under"}, environ={})
    cfg = res.config
    assert cfg.finetuning.lora_rank == 16 and cfg.training.learning_rate == 1e-5 and cfg.training.bf16 is True
    assert cfg.data.dataset == ["a", "b"] and cfg.data.interleave_probs == [0.3, 0.7]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("lora_rank", 0, ["must be >= 1", "got 0"]),
        ("lora_rank", "eight", ["expected an integer", "'eight'"]),
        ("lora_dropout", 1.0, ["must be < 1"]),
        ("val_size", -0.1, ["must be >= 0"]),
        ("flash_attn", "fa4", ["'fa4' is not one of", "'fa2'"]),
        ("stage", "sftt", ["is not one of"]),
        ("bf16", "maybe", ["true or false"]),
        ("lr_scheduler_type", "cosinus", ["is not one of", "'cosine'"]),
        ("optim", "adamw", ["is not one of"]),
        ("per_device_train_batch_size", 2.5, ["expected an integer"]),
        ("quantization_bit", 3, ["is not one of"]),
    ],
)
def test_bad_values_name_key_value_and_allowed(key, value, words):
    msg = _errors(resolve({**BASE, key: value}, environ={}))[key]
    assert "invalid value" in msg and "allowed:" in msg
    for word in words:
        assert word in msg


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("lora_ranl", "lora_rank"), ("learnig_rate", "learning_rate"), ("cuttoff_len", "cutoff_len"),
     ("per_device_batch_size", "per_device_train_batch_size"), ("neat_pack", "neat_packing"),
     ("gradient_accumulation", "gradient_accumulation_steps")],
)
def test_unknown_key_did_you_mean(typo, suggestion):
    msg = _errors(resolve({**BASE, typo: 1}, environ={}))[typo]
    assert f"unknown key '{typo}'" in msg and f"'{suggestion}'" in msg


def test_allow_extra_args_turns_unknown_into_warning():
    res = resolve({**BASE, "lora_ranl": 1}, environ={"ALLOW_EXTRA_ARGS": "1"})
    assert not res.errors and any(d.level == "warning" and d.key == "lora_ranl" for d in res.diagnostics)


def test_env_var_in_file_is_an_error():
    assert "environment variable" in _errors(resolve({**BASE, "FORCE_TORCHRUN": 1}, environ={}))["FORCE_TORCHRUN"]


def test_env_values_are_read_and_checked():
    res = resolve(BASE, environ={"API_PORT": "9000", "FORCE_TORCHRUN": "1"})
    assert res.config.env.API_PORT == 9000 and res.config.env.FORCE_TORCHRUN is True
    assert res.sources["API_PORT"] == "override"
    assert "API_PORT" in _errors(resolve(BASE, environ={"API_PORT": "70000"}))


def test_legacy_keys_translated_with_notice():
    res = resolve({**BASE, "warmup_ratio": 0.1, "evaluation_strategy": "no", "group_by_length": True}, environ={})
    assert res.config.training.warmup_steps == 0.1
    assert res.config.training.train_sampling_strategy == "group_by_length"
    notices = {d.key for d in res.diagnostics if d.level == "notice"}
    assert {"warmup_ratio", "evaluation_strategy", "group_by_length"} <= notices
    assert "warmup_ratio" in _errors(resolve({**BASE, "warmup_ratio": 5}, environ={}))
    both = resolve({**BASE, "warmup_ratio": 0.1, "warmup_steps": 10}, environ={})
    assert "both" in _errors(both)["warmup_ratio"]


def test_unsupported_llamafactory_keys():
    res = resolve({**BASE, "use_galore": False, "vllm_maxlen": 4096}, environ={})
    assert not res.errors and {"use_galore", "vllm_maxlen"} <= {d.key for d in res.diagnostics}
    assert "GaLore" in _errors(resolve({**BASE, "use_galore": True}, environ={}))["use_galore"]


def test_overrides_forms_and_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name_or_path: org/model\nlora_rank: 4\nlearning_rate: 1.0e-4\n")
    res = load([str(path), "lora_rank=16", "--learning_rate", "2e-4", "--plot_loss", "--cutoff_len=512"], environ={})
    cfg = res.config
    assert cfg.finetuning.lora_rank == 16 and cfg.training.learning_rate == 2e-4
    assert cfg.monitoring.plot_loss is True and cfg.data.cutoff_len == 512
    assert res.sources["lora_rank"] == "override" and res.sources["model_name_or_path"] == "file"
    assert res.sources["lora_dropout"] == "default" and res.sources["lora_alpha"] == "derived"
    assert cfg.finetuning.lora_alpha == 32


def test_json_config(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model_name_or_path": "org/model", "lora_rank": 32}))
    assert load([str(path)], environ={}).config.finetuning.lora_rank == 32


def test_nested_group_sections_are_accepted(tmp_path):
    res = resolve({"model": {"model_name_or_path": "org/model"}, "finetuning": {"lora_rank": 4, "cutoff_len": 64}},
                  environ={})
    assert res.config.finetuning.lora_rank == 4 and res.config.data.cutoff_len == 64
    assert any(d.key == "cutoff_len" and "data group" in d.message for d in res.diagnostics)


def test_parse_overrides_rejects_stray_words():
    pairs, diags = parse_overrides(["lora_rank=8", "oops"])
    assert pairs == [("lora_rank", 8)] and diags[0].key == "oops"


def test_every_group_has_keys_and_no_duplicates():
    specs = all_specs()
    for group in GROUPS:
        assert any(s.group == group for s in specs.values()), group
    assert {"logging_steps", "save_steps", "eval_steps", "report_to"} <= {
        k for k, s in specs.items() if s.group == "monitoring"}


def test_coerce_rejects_bool_for_int():
    with pytest.raises(CoerceError):
        coerce(all_specs()["lora_rank"], True)


def test_resume_from_checkpoint_accepts_true():
    assert resolve({**BASE, "resume_from_checkpoint": True}, environ={}).config.training.resume_from_checkpoint is True


def test_none_string_is_a_value_where_strings_are_allowed():
    cfg = resolve({**BASE, "report_to": "none", "max_samples": "None", "val_size": "null"}, environ={}).config
    assert cfg.monitoring.report_to == "none"  # a real report_to choice, not null
    assert cfg.data.max_samples is None  # Python-style None for a number means null
    assert "val_size" in _errors(resolve({**BASE, "val_size": "null"}, environ={}))  # not nullable


def test_torch_compile_backend_turns_compilation_on():
    """As in transformers: a torch_compile_backend (or mode) alone means torch_compile: true (derived)."""
    res = resolve({"stage": "sft", "model_name_or_path": "m", "dataset": "d", "torch_compile_backend": "aot_eager"},
                  environ={})
    assert res.config.training.torch_compile is True and res.sources["torch_compile"] == "derived"


@pytest.mark.parametrize("key", ["save_strategy", "eval_strategy", "logging_strategy"])
def test_bare_no_is_the_strategy_no(key):
    from tuneforge.config.loader import resolve

    res = resolve(yaml.safe_load(f"model_name_or_path: org/model\n{key}: no\n"), environ={})
    assert res.errors == [] and res.config.value(key) == "no"


def test_repeated_yaml_key_names_both_lines(tmp_path):
    from tuneforge.config.diagnostics import ConfigError
    from tuneforge.config.loader import read_config_file

    path = tmp_path / "dup.yaml"
    path.write_text("model_name_or_path: org/model\nlearning_rate: 1.0e-4\nlora_rank: 8\nlearning_rate: 2.0e-4\n"
                    "lora_rank: 16\nlora_ranl: 3\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert [d.key for d in info.value.diagnostics] == ["learning_rate", "lora_rank"]
    assert "line 2 and line 4" in info.value.diagnostics[0].message
    assert "line 3 and line 5" in info.value.diagnostics[1].message
    errors = _errors(load([str(path)], environ={}))  # reported together with every other problem
    assert {"learning_rate", "lora_rank", "lora_ranl"} <= set(errors)


def test_yaml_merge_keys_may_be_overridden():
    from tuneforge.config.yamlfile import read_yaml

    text = "base: &b\n  lora_rank: 8\n  lora_alpha: 16\nrun:\n  <<: *b\n  lora_rank: 4\n"
    data, repeated = read_yaml(text, "m.yaml")
    assert data["run"] == {"lora_rank": 4, "lora_alpha": 16} and repeated == []
