"""LLaMA-Factory compatibility: configs written the way LLaMA-Factory's examples are, for every stage x method and
the features it has for text models, pass `tuneforge check`; features tuneforge does not have are refused with the
feature named.

``configs/matrix``: stage (pt, sft, rm, ppo, dpo, kto) x method (lora, qlora, freeze, full, oft).
``configs/features``: DeepSpeed ZeRO 0/2/3, FSDP (list and string forms), packing, mixing, evaluation, RoPE
scaling, attention, Liger, LoRA variants, LLaMA Pro, QOFT, legacy transformers 4.57 keys, and the inference,
predict and merge (export) configs.
``configs/refused``: each starts with ``# refused: <key> -> <words of the error>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuneforge.config.loader import load

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
METHODS = ("lora", "qlora", "freeze", "full", "oft")
PASSING = sorted((CONFIGS / "matrix").glob("*.yaml")) + sorted((CONFIGS / "features").glob("*.yaml"))
REFUSED = sorted((CONFIGS / "refused").glob("*.yaml"))


def _check(path: Path, monkeypatch):
    from tuneforge.config.rules import training_rules

    monkeypatch.chdir(REPO)  # repo-relative data/ and examples/deepspeed/, as LLaMA-Factory's examples use
    monkeypatch.setattr(training_rules, "bf16_support", lambda: True)  # LLaMA-Factory's examples are GPU configs
    return load([str(path)], environ={})


def _ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_the_matrix_covers_every_stage_and_method():
    names = {p.stem for p in (CONFIGS / "matrix").glob("*.yaml")}
    assert names == {f"{s}_{m}" for s in STAGES for m in METHODS}


def _written_by_the_suite() -> set[str]:
    """Output folders of the suite's own configs: a later stage (ppo, merge) reads what an earlier one writes."""
    import yaml

    outs = (yaml.safe_load(p.read_text()) or {} for p in PASSING)
    return {str(o.get("output_dir") or o.get("export_dir")) for o in outs
            if o.get("output_dir") or o.get("export_dir")}


@pytest.mark.parametrize("path", PASSING, ids=_ids)
def test_config_passes_check(path, monkeypatch):
    res = _check(path, monkeypatch)
    later = _written_by_the_suite()
    errors = [d for d in res.errors if not (d.rule == "sources_exist" and d.message.endswith(" does not exist")
                                            and d.message.removesuffix(" does not exist") in later)]
    assert errors == [], "\n".join(f"{d.key}: {d.message}" for d in errors)
    unknown = [d.key for d in res.diagnostics if "unknown key" in d.message]
    assert not unknown, unknown


def test_matrix_values_reach_the_config(monkeypatch):
    cfg = _check(CONFIGS / "matrix" / "kto_oft.yaml", monkeypatch).config
    assert (cfg.finetuning.stage, cfg.finetuning.finetuning_type, cfg.finetuning.oft_block_size) == ("kto", "oft", 32)
    cfg = _check(CONFIGS / "matrix" / "ppo_qlora.yaml", monkeypatch).config
    assert cfg.model.quantization_bit == 4 and cfg.finetuning.reward_model_type == "lora"
    assert cfg.training.warmup_steps == 0.1  # warmup_ratio, translated


def test_fsdp_list_and_old_keys_become_transformers_5_settings(monkeypatch):
    listed = _check(CONFIGS / "features" / "full_sft_fsdp.yaml", monkeypatch)
    string = _check(CONFIGS / "features" / "full_sft_fsdp_string.yaml", monkeypatch)
    for res in (listed, string):
        assert res.config.training.fsdp == "full_shard auto_wrap"
        assert res.config.training.fsdp_config == {"transformer_layer_cls_to_wrap": "Qwen2DecoderLayer"}
    assert any(d.key == "fsdp_transformer_layer_cls_to_wrap" and d.level == "notice" for d in listed.diagnostics)


def _expected(path: Path) -> tuple[str, str]:
    match = re.match(r"# refused: (\w+) -> (.+)\n", path.read_text())
    assert match, f"{path.name} lacks its '# refused: key -> words' line"
    return match.group(1), match.group(2).strip()


@pytest.mark.parametrize("path", REFUSED, ids=_ids)
def test_missing_feature_is_refused_by_name(path, monkeypatch):
    key, words = _expected(path)
    res = _check(path, monkeypatch)
    errors = {d.key: d.message for d in res.errors}
    assert key in errors and words in errors[key], errors
    assert "unknown key" not in errors[key]
