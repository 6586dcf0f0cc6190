"""Every shipped example config passes `tuneforge check` (no errors), and the parameter docs are current."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tuneforge.config.docs import render
from tuneforge.config.loader import load
from tuneforge.config.rules import training_rules
from tuneforge.config.schema import all_specs

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*") if p.suffix in (".yaml", ".yml"))
SEED = ["4.1.1_dialogue_sft.yaml", "4.1.2_code_sft.yaml", "4.2.1_single_gpu_24gb.yaml",
        "4.2.2_multi_gpu_48gb_x2.yaml", "4.3.1_baseline.yaml"]


def test_examples_cover_stages_methods_and_seed():
    names = {p.name for p in EXAMPLES}
    assert set(SEED) <= names
    texts = [p.read_text() for p in EXAMPLES]
    for stage in ("pt", "sft", "rm", "dpo", "kto", "ppo"):
        assert any(f"stage: {stage}\n" in t for t in texts), stage
    for method in ("lora", "freeze", "full"):
        assert any(f"finetuning_type: {method}\n" in t for t in texts), method
    assert any("deepspeed:" in t for t in texts) and any("export_dir:" in t for t in texts)


# The mission's own seed configs name model folders of the mission's machine.
SEED_MODELS = {"/models/Qwen2.5-7B-Instruct", "/models/CodeLlama-7b-Python"}


def _written_by_examples() -> set[str]:
    """Folders one example writes and a later one reads (an adapter trained, then merged or chatted with)."""
    return {str(yaml.safe_load(p.read_text()).get(key)) for p in EXAMPLES for key in ("output_dir", "export_dir")}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_example_passes_check(path, monkeypatch):
    monkeypatch.chdir(REPO)  # examples use repo-relative paths (data/, examples/deepspeed/), as LLaMA-Factory's do
    monkeypatch.setattr(training_rules, "bf16_support", lambda: True)  # the examples are GPU configs
    res = load([str(path.relative_to(REPO))], environ={})
    later = _written_by_examples() | SEED_MODELS
    errors = [d for d in res.errors
              if not (d.rule == "sources_exist" and d.message.endswith(" does not exist")
                      and d.message.removesuffix(" does not exist") in later)]
    assert errors == [], "\n".join(f"{d.key}: {d.message}" for d in errors)


def test_parameter_docs_are_generated_from_the_schema():
    committed = (REPO / "docs" / "parameters.md").read_text(encoding="utf-8")
    if f"(transformers {metadata.version('transformers')})" in committed:
        assert committed == render(), "docs/parameters.md is stale: run python scripts/gen_parameters_doc.py"
    else:  # generated with another transformers: our own keys must all be there
        for key, spec in all_specs().items():
            if spec.origin == "tuneforge":
                assert f"| `{key}` |" in committed, key
