"""Every rule has a case that triggers it and asserts its level, key and message.

A case is (config, level, key, words): ``words`` must all appear in the message. Configs start
from BASE; callables receive ``tmp_path`` to build files. The last test proves the table covers
every registered rule, so a new rule without a test fails the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config.loader import resolve
from tuneforge.config.rules import RULES

BASE = {"model_name_or_path": "org/model"}


def _dataset_dir(tmp_path: Path) -> str:
    (tmp_path / "sft.json").write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    (tmp_path / "pairs.json").write_text("[]")
    info = {"sft": {"file_name": "sft.json"}, "pairs": {"file_name": "pairs.json", "ranking": True},
            "ghost": {"file_name": "missing.json"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return str(tmp_path)


def _nonempty_dir(tmp_path: Path) -> str:
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_model.safetensors").write_text("x")
    return str(out)


def _zero3(tmp_path: Path) -> str:
    path = tmp_path / "ds_z3.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    return str(path)


def _a_file(tmp_path: Path) -> str:
    path = tmp_path / "a_file"
    path.write_text("not json {")
    return str(path)


def _model_dir(tmp_path: Path) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    return str(tmp_path)


def _llama3_tokenizer_dir(tmp_path: Path) -> str:
    added = {str(i): {"content": t, "special": True} for i, t in enumerate(["<|start_header_id|>", "<|eot_id|>"])}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}))
    return str(tmp_path)


def _shaped_model(tmp_path: Path) -> str:
    shape = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
             "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(shape))
    return str(tmp_path)


CASES = {
    # memory estimate (tuneforge estimate)
    "memory_estimate": (lambda p: {"model_name_or_path": _shaped_model(p), "do_train": True}, "notice",
                        "ignore_memory_estimate", ["GiB allocated", "tuneforge estimate"]),
    "memory_fits": (lambda p: {"model_name_or_path": _shaped_model(p), "do_train": True, "finetuning_type": "full",
                               "__gpu_memory__": 4.0}, "warning", "per_device_train_batch_size",
                    ["4.0 GiB", "--fit", "ignore_memory_estimate"]),
    # stage errors
    "stage_exclusive_options": ({"stage": "dpo", "mask_history": True}, "error", "mask_history", ["stage: sft"]),
    "packing_stage": ({"stage": "rm", "packing": True}, "error", "packing", ["pt or sft"]),
    "predict_needs_generate": ({"do_predict": True, "eval_dataset": "x"}, "error", "do_predict",
                               ["predict_with_generate"]),
    "best_model_stage": ({"stage": "rm", "load_best_model_at_end": True}, "error", "load_best_model_at_end",
                         ["rm"]),
    "ppo_requirements": ({"stage": "ppo", "do_train": True, "dataset": "sft"}, "error", "reward_model",
                         ["needs reward_model"]),
    "train_only_stage": ({"stage": "ppo", "do_train": False, "reward_model": "r"}, "error", "do_train",
                         ["only trains"]),
    "train_needs_dataset": ({"do_train": True}, "error", "dataset", ["needs a dataset"]),
    "eval_needs_data": ({"do_eval": True}, "error", "do_eval", ["eval_dataset or val_size"]),
    "pissa_stage": ({"stage": "kto", "pissa_init": True}, "error", "pissa_init", ["kto"]),
    "early_stopping_needs_eval": ({"early_stopping_steps": 3}, "error", "early_stopping_steps", ["eval_strategy"]),
    # preference notices
    "bco_needs_reference": ({"stage": "dpo", "pref_loss": "simpo", "pref_bco_weight": 0.5}, "notice",
                            "pref_bco_weight", ["reference-free", "simpo"]),
    "ref_model_options_need_ref_model": ({"stage": "kto", "ref_model_quantization_bit": 4}, "notice",
                                         "ref_model_quantization_bit", ["ref_model, which is not set"]),
    "reference_is_a_second_copy": ({"stage": "dpo", "do_train": True, "dataset": "a", "finetuning_type": "full"},
                                   "notice", "finetuning_type", ["second", "finetuning_type: lora"]),
    # data errors
    "mask_history_with_train_on_prompt": ({"mask_history": True, "train_on_prompt": True}, "error",
                                          "mask_history", ["contradict"]),
    "interleave_probs_usage": ({"interleave_probs": "0.5,0.5"}, "error", "interleave_probs", ["concat"]),
    "val_size_conflicts": ({"val_size": 0.1, "dataset": "a", "eval_dataset": "b"}, "error", "val_size",
                           ["eval_dataset"]),
    "streaming_limits": ({"streaming": True, "do_train": True, "dataset": "a"}, "error", "max_steps",
                         ["max_steps"]),
    "datasets_exist": (lambda t: {"dataset_dir": _dataset_dir(t), "dataset": "sfd"}, "error", "dataset",
                       ["'sfd'", "Did you mean 'sft'"]),
    # method errors
    "lora_only_options": ({"finetuning_type": "full", "use_dora": True}, "error", "use_dora", ["lora"]),
    "quantization_limits": ({"finetuning_type": "freeze", "quantization_bit": 4}, "error", "quantization_bit",
                            ["QLoRA"]),
    "llama_pro_method": ({"finetuning_type": "full", "use_llama_pro": True}, "error", "use_llama_pro", ["freeze"]),
    "oft_rank_or_block_size": ({"finetuning_type": "oft", "oft_rank": 4}, "error", "oft_rank", ["oft_block_size: 0"]),
    "pissa_convert_needs_init": ({"pissa_convert": True}, "error", "pissa_convert", ["pissa_init"]),
    "freeze_layers_nonzero": ({"finetuning_type": "freeze", "freeze_trainable_layers": 0}, "error",
                              "freeze_trainable_layers", ["no layer"]),
    "precision_flags": ({"bf16": True, "fp16": True}, "error", "fp16", ["both"]),
    "zero3_limits": (lambda t: {"deepspeed": _zero3(t), "pissa_init": True}, "error", "pissa_init", ["ZeRO-3"]),
    "generate_with_accuracy": ({"predict_with_generate": True, "compute_accuracy": True, "eval_dataset": "x"},
                               "error", "compute_accuracy", ["logits"]),
    "inference_backend": ({"infer_backend": "vllm"}, "error", "infer_backend", ["huggingface"]),
    "device_map_in_training": ({"do_train": True, "dataset": "a", "quantization_device_map": "auto"}, "error",
                               "quantization_device_map", ["inference"]),
    "export_options": ({"export_quantization_bit": 4}, "error", "export_quantization_bit", ["calibration"]),
    # runtime
    "model_required": ({"model_name_or_path": None}, "error", "model_name_or_path", ["required"]),
    "sources_exist": ({"adapter_name_or_path": "/no/such/adapter"}, "error", "adapter_name_or_path",
                      ["/no/such/adapter does not exist"]),
    "hub_download": ({}, "notice", "model_name_or_path", ["org/model", "downloaded from the Hugging Face hub"]),
    "output_folders_writable": (lambda t: {"do_train": True, "dataset": "a", "output_dir": _a_file(t)}, "error",
                                "output_dir", ["is a file"]),
    "fsdp_config_valid": (lambda t: {"fsdp_config": _a_file(t)}, "error", "fsdp_config", ["not valid JSON"]),
    "batch_sizes_positive": ({"per_device_train_batch_size": 0}, "error", "per_device_train_batch_size",
                             ["at least 1", "got 0"]),
    "learning_rate_positive": ({"do_train": True, "dataset": "a", "learning_rate": 0}, "error", "learning_rate",
                               ["> 0"]),
    "ppo_runtime": ({"stage": "ppo", "fp16": True}, "error", "fp16", ["bf16 or fp32"]),
    "precision_on_this_machine": ({"do_train": True, "dataset": "a", "bf16": True, "__cpu__": True}, "error",
                                  "bf16", ["has none", "bf16: false"]),
    "trainer_argument_limits": ({"lr_scheduler_type": "reduce_lr_on_plateau"}, "error", "lr_scheduler_type",
                                ["eval_strategy"]),
    "output_dir_not_empty": (lambda t: {"do_train": True, "dataset": "a", "output_dir": _nonempty_dir(t)}, "error",
                             "output_dir", ["not empty", "overwrite_output_dir"]),
    "overwrite_existing": (lambda t: {"do_train": True, "dataset": "a", "output_dir": _nonempty_dir(t),
                                      "overwrite_output_dir": True}, "warning", "overwrite_output_dir",
                           ["replaced"]),
    "resume_checkpoint_exists": ({"resume_from_checkpoint": "/no/ckpt"}, "error", "resume_from_checkpoint",
                                 ["does not exist"]),
    "deepspeed_config_valid": ({"deepspeed": "/no/ds.json"}, "error", "deepspeed", ["does not exist"]),
    "optional_packages": ({"enable_liger_kernel": True}, "warning", "enable_liger_kernel", ["liger_kernel"]),
    "schedule_length": ({"do_train": True, "dataset": "a", "num_train_epochs": 0}, "error", "num_train_epochs",
                        ["> 0"]),
    "best_model_strategies": ({"load_best_model_at_end": True, "eval_strategy": "epoch", "eval_dataset": "x"},
                              "error", "load_best_model_at_end", ["save_strategy"]),
    "unsupported_hubs": ({"__env__": {"USE_OPENMIND_HUB": "1"}}, "error", "USE_OPENMIND_HUB", ["not supported"]),
    # warnings
    "fp16_prefer_bf16": ({"fp16": True}, "warning", "fp16", ["bf16"]),
    "no_mixed_precision": ({"do_train": True, "dataset": "a", "__gpu__": True}, "warning", "bf16", ["fp32"]),
    "learning_rate_range": ({"learning_rate": 0.01}, "warning", "learning_rate", ["far outside", "lora"]),
    "lora_alpha_ratio": ({"lora_rank": 8, "lora_alpha": 64}, "warning", "lora_alpha", ["above 4"]),
    "no_grad_clipping": ({"do_train": True, "dataset": "a", "max_grad_norm": 0}, "warning", "max_grad_norm",
                         ["clipping"]),
    "no_warmup_long_run": ({"do_train": True, "dataset": "a", "max_steps": 5000}, "warning", "warmup_steps",
                           ["no warmup"]),
    "packing_cross_attention": ({"packing": True}, "warning", "packing", ["neat_packing"]),
    "activation_memory": ({"cutoff_len": 8192, "per_device_train_batch_size": 16}, "warning",
                          "per_device_train_batch_size", ["131072"]),
    "cutoff_beyond_context": (lambda t: {"model_name_or_path": _model_dir(t), "cutoff_len": 2048}, "warning",
                              "cutoff_len", ["512"]),
    # notices
    "lora_keys_inactive": ({"finetuning_type": "full", "lora_rank": 16, "learning_rate": 2e-6}, "notice",
                           "lora_rank", ["only applies to finetuning_type: lora"]),
    "freeze_keys_inactive": ({"freeze_trainable_layers": 4}, "notice", "freeze_trainable_layers",
                             ["finetuning_type: freeze"]),
    "oft_keys_inactive": ({"oft_block_size": 16}, "notice", "oft_block_size", ["finetuning_type: oft"]),
    "generation_keys_in_training": ({"do_train": True, "dataset": "a", "temperature": 0.5}, "notice",
                                    "temperature", ["ignored during training"]),
    "stage_keys_inactive": ({"ppo_epochs": 2}, "notice", "ppo_epochs", ["stage ppo"]),
    "pref_loss_specific": ({"stage": "dpo", "pref_loss": "hinge", "dpo_label_smoothing": 0.1}, "notice",
                           "dpo_label_smoothing", ["pref_loss: sigmoid", "hinge"]),
    "eval_keys_inactive": ({"eval_steps": 10}, "notice", "eval_steps", ["eval_strategy"]),
    "quantization_keys_inactive": ({"quantization_type": "fp4"}, "notice", "quantization_type",
                                   ["quantization_bit"]),
    "pissa_keys_inactive": ({"pissa_iter": 4}, "notice", "pissa_iter", ["pissa_init"]),
    "hf_duplicates": ({"gradient_checkpointing": True}, "notice", "gradient_checkpointing",
                      ["disable_gradient_checkpointing"]),
    "liger_kernels_under_compile": ({"enable_liger_kernel": True, "torch_compile": True}, "notice",
                                    "enable_liger_kernel", ["fused linear cross-entropy"]),
    "padding_free_inactive": ({"stage": "dpo", "padding_free": True}, "notice", "padding_free",
                              ["only pt/sft"]),
    "neat_packing_forces_packing": ({"neat_packing": True, "packing": False}, "notice", "packing",
                                    ["neat_packing implies packing"]),
    "template_in_pretraining": ({"stage": "pt", "template": "qwen"}, "notice", "template", ["pretraining"]),
    "version_check_flag": ({"__env__": {"DISABLE_VERSION_CHECK": "1"}}, "notice", "DISABLE_VERSION_CHECK",
                           ["no effect"]),
    # templates
    "template_known": ({"template": "qwen25"}, "error", "template", ["unknown template", "Did you mean"]),
    "template_fits_tokenizer": (lambda t: {"model_name_or_path": _llama3_tokenizer_dir(t), "template": "qwen"},
                                "warning", "template", ["<|im_end|>, <|im_start|>", "leave template empty"]),
    "efficient_eos_train_on_prompt": ({"template": "glm4", "train_on_prompt": True}, "error", "train_on_prompt",
                                      ["efficient_eos"]),
}


def _diagnose(case, tmp_path, monkeypatch):
    config = case(tmp_path) if callable(case) else dict(case)
    env = config.pop("__env__", {})
    if config.pop("__gpu__", False):
        from tuneforge.config.rules import stability

        monkeypatch.setattr(stability, "_cuda_bf16", lambda: True)  # the rule's input: a bf16-capable GPU
    if config.pop("__cpu__", False):
        from tuneforge.config.rules import training_rules

        monkeypatch.setattr(training_rules, "bf16_support", lambda: None)  # the rule's input: no accelerator
    if (gib := config.pop("__gpu_memory__", None)) is not None:
        from tuneforge.config.rules import memory_rules
        from tuneforge.estimate.hardware import Hardware

        monkeypatch.setattr(memory_rules, "_hardware", lambda: Hardware("test card", gib))  # the rule's input
    return resolve({**BASE, **config}, environ=env)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_triggers(name, tmp_path, monkeypatch):
    case, level, key, words = CASES[name]
    res = _diagnose(case, tmp_path, monkeypatch)
    found = [d for d in res.diagnostics if d.rule == name]
    assert found, f"rule {name} did not fire; got {res.diagnostics}"
    hit = [d for d in found if d.key == key]
    assert hit, f"rule {name} fired on {[d.key for d in found]}, expected key {key}"
    assert hit[0].level == level == RULES[name].level
    for word in words:
        assert word in hit[0].message, f"{word!r} not in {hit[0].message!r}"


def test_every_rule_has_a_case():
    resolve(BASE, environ={})  # resolving imports every rule module
    assert set(RULES) == set(CASES), f"rules without a test case: {sorted(set(RULES) - set(CASES))}"


def test_clean_config_has_no_findings(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (model / name).write_text("{}")
    res = resolve({"model_name_or_path": str(model), "stage": "sft", "finetuning_type": "lora",
                   "learning_rate": 1e-4}, environ={})
    assert res.diagnostics == []


def test_all_problems_reported_together():
    res = resolve({**BASE, "stage": "dpo", "mask_history": True, "use_dora": True, "finetuning_type": "full",
                   "lora_ranl": 3, "lora_dropout": 2}, environ={})
    keys = {d.key for d in res.errors}
    assert {"mask_history", "use_dora", "lora_ranl", "lora_dropout"} <= keys
