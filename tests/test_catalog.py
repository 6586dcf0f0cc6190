"""The stage and loss catalogs are complete, consistent with the code, and the only place their facts are written."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tuneforge.catalog import LOSSES, STAGES, uses_reference
from tuneforge.config.loader import resolve
from tuneforge.config.schema import all_specs

SRC = Path(__file__).resolve().parents[1] / "src" / "tuneforge"
TESTS = Path(__file__).resolve().parent
DOCS = Path(__file__).resolve().parents[1] / "docs"
_NAME = "|".join(STAGES)
# `stage == "dpo"`, `stage in ("pt", "sft")`, `stage != 'ppo'` ... anywhere outside the catalog
STAGE_TEST = re.compile(rf"""stage\)?\s*(==|!=|not in|in)\s*[\(\[{{]?\s*["']({_NAME})["']""")
LOSS_LITERAL = re.compile(rf"""["']({"|".join(LOSSES)})["']""")


def _sources(*skip: str) -> list[Path]:
    return [p for p in SRC.rglob("*.py") if not any(part in p.parts for part in skip)]


def test_no_stage_comparisons_outside_the_catalog():
    found = [f"{p.relative_to(SRC)}:{n}: {line.strip()}" for p in _sources("catalog")
             for n, line in enumerate(p.read_text().splitlines(), 1) if STAGE_TEST.search(line)]
    assert not found, "stage facts belong in catalog/stages.yaml:\n" + "\n".join(found)


def test_no_loss_names_outside_the_catalog_and_the_loss_table():
    """Only ``losses/dpo.py`` (name -> function) may spell a preference loss's name; every fact is the catalog's."""
    allowed = {SRC / "losses" / "dpo.py", SRC / "losses" / "__init__.py"}
    found = [f"{p.relative_to(SRC)}:{n}: {line.strip()}" for p in _sources("catalog") if p not in allowed
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if LOSS_LITERAL.search(line) and "opt(" not in line]  # the schema default value `sigmoid` is a value
    assert not found, "loss facts belong in catalog/losses.yaml:\n" + "\n".join(found)


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_is_wired_everywhere(name):
    """One record + one run module: everything else reads the record, so a missing piece fails here."""
    from tuneforge.data.processors import PROCESSORS

    spec, specs = STAGES[name], all_specs()
    assert callable(importlib.import_module(spec.run).run)
    assert spec.processor in PROCESSORS
    assert spec.collator in {"causal", "pairwise", "kto", "generation"}
    assert spec.dataset in {"plain", "ranking", "kto_tag"}
    assert spec.plot_keys and spec.plot_keys[0] == "loss"
    assert set(spec.keys) | set(spec.exclusive_keys) <= set(specs), "catalog names keys the schema lacks"
    assert name in specs["stage"].constraints["choices"]
    assert name in (DOCS / "training.md").read_text(), f"docs/training.md does not describe stage {name}"
    tested = [p.name for p in (TESTS / "train").glob("test_stage_*.py") if name in p.stem.split("_")]
    assert tested, f"no end-to-end test file tests/train/test_stage_*{name}*.py"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_resolves_and_builds_its_collator(name, tiny_tokenizer):
    from tuneforge.data.collator import build_collator

    keys = {"model_name_or_path": "x", "stage": name, "reward_model": "r" if name == "ppo" else None}
    cfg = resolve({k: v for k, v in keys.items() if v is not None}).config
    assert build_collator(cfg, tiny_tokenizer) is not None


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_is_wired(name):
    from tuneforge.losses import PREF_LOSSES

    spec = LOSSES[name]
    assert PREF_LOSSES[name] is not None and spec.paper
    assert set(spec.keys) <= set(all_specs())
    assert name in all_specs()["pref_loss"].constraints["choices"]
    assert uses_reference(STAGES["dpo"], name) is not spec.reference_free
    assert f"`{name}`" in (DOCS / "training.md").read_text(), f"docs/training.md does not describe pref_loss {name}"


def test_the_loss_table_in_the_docs_is_the_catalog():
    rows = [line for line in (DOCS / "training.md").read_text().splitlines() if line.startswith("| `")][1:]
    assert [row.split("`")[1] for row in rows] == list(LOSSES)
    for row, spec in zip(rows, LOSSES.values(), strict=True):
        assert ("| none |" in row) is spec.reference_free and ("length-averaged" in row) is spec.length_averaged
        assert all(f"`{key}`" in row for key in spec.keys) and spec.paper in row
