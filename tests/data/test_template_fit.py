"""The template/tokenizer fit check (config rule template_fits_tokenizer) on the real tokenizers of ../shared."""

from __future__ import annotations

import json

import pytest

from shared_models import SHARED_MODELS, shared_tokenizer_dirs
from tuneforge.data.templates.fit import control_tokens, template_misfit
from tuneforge.data.templates.registry import TEMPLATES

# folder -> (its template, a template of another family)
FOLDERS = {
    "Qwen2.5-0.5B-Instruct": ("qwen", "llama3"),
    "Qwen3-4B": ("qwen3", "gemma"),
    "Llama-3.2-3B-Instruct": ("llama3", "qwen"),
    "Mistral-7B-Instruct-v0.1": ("mistral", "chatml"),
    "SmolLM2-135M-Instruct": ("smollm2", "phi"),
    "SmolLM2-360M-Instruct": ("smollm2", "glm4"),
    "Yi-6B-Chat": ("yi", "llama3"),
    "Phi-3-mini-4k-instruct": ("phi", "qwen3"),
    "TinyLlama-1.1B-Chat-v1.0": ("zephyr", "deepseek3"),
}
DIRS = [p for p in shared_tokenizer_dirs() if p.name in FOLDERS] or [SHARED_MODELS / "absent"]


@pytest.mark.parametrize("path", DIRS, ids=lambda p: p.name)
def test_own_template_fits_and_another_family_does_not(path):
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared model fixtures live in ../shared/models)")
    own, other = FOLDERS[path.name]
    assert template_misfit(own, path) is None
    misfit = template_misfit(other, path)
    assert misfit is not None and misfit.missing == sorted(control_tokens(TEMPLATES[other]))
    if path.name.startswith(("Qwen3", "Llama")):  # the folder name picks the family first
        assert misfit.looks_like[0] == own


@pytest.mark.parametrize(("name", "folder", "missing"), [
    ("llama2", "Qwen2.5-0.5B-Instruct", ["[/INST]", "[INST]"]),
    ("deepseek", "SmolLM2-135M-Instruct", ["Assistant:", "User:"]),
    ("llama2", "tokenizer-only/TinyLlama-1.1B-Chat-v1.0", ["[/INST]", "[INST]"]),  # a zephyr-format model
    ("zephyr", "Qwen3-4B", ["<|assistant|>", "<|user|>"]),
    ("llama2", "Mistral-7B-Instruct-v0.1", None),  # the same [INST] markers
    ("alpaca", "Qwen3-4B", None),  # model-agnostic
])
def test_plain_markers_must_appear_in_the_models_chat_template(name, folder, missing):
    path = SHARED_MODELS / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared model fixtures live in ../shared/models)")
    misfit = template_misfit(name, path)
    assert (misfit.missing if misfit else None) == missing
    assert misfit is None or misfit.in_template


def test_control_tokens_of_chat_turns():
    assert control_tokens(TEMPLATES["chatml"]) == {"<|im_start|>", "<|im_end|>"}
    assert control_tokens(TEMPLATES["gemma"]) == {"<start_of_turn>", "<end_of_turn>"}
    assert control_tokens(TEMPLATES["exaone"]) == {"[|system|]", "[|endofturn|]", "[|user|]", "[|assistant|]"}
    assert control_tokens(TEMPLATES["llama2"]) == set()  # [INST] and <<SYS>> are plain text
    assert control_tokens(TEMPLATES["zephyr"]) == set()  # its <|user|> markers are plain text in its tokenizer


def test_nothing_to_judge(tmp_path):
    assert template_misfit("qwen", tmp_path) is None  # no tokenizer files
    assert template_misfit("qwen", tmp_path / "absent") is None  # a hub id, not a folder
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {}}))
    assert template_misfit("alpaca", tmp_path) is None  # a plain-text template fits any tokenizer
    assert template_misfit("qwen", tmp_path).missing == ["<|im_end|>", "<|im_start|>"]


def test_check_reports_a_multimodal_name_as_an_error_naming_the_text_template():
    from tuneforge.config.loader import resolve

    found = [d for d in resolve({"model_name_or_path": "org/model", "template": "qwen2_vl"}).diagnostics
             if d.key == "template"]
    assert [(d.level, d.rule) for d in found] == [("error", "template_known")]
    assert "multimodal template" in found[0].message and "use template: qwen " in found[0].message
