"""The layers of docs/architecture.md: a module imports nothing from a layer above its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tuneforge"
# lowest first; a layer may import itself and anything before it
ORDER = ["catalog", "config", "model", "losses", "data", "train", "infer", "commands"]
# config/rules check data files and template names before anything loads: they may read data's registry and
# templates (read-only), which sit above the rest of config
EXTRA = {"config/rules": {"data"}}
IMPORT = re.compile(r"^\s*(?:from\s+(\.+|tuneforge\.)([a-z_]+)|import\s+tuneforge\.([a-z_]+))", re.M)


def _imported_layers(path: Path) -> set[str]:
    layer_dir = path.relative_to(SRC).parts
    found = set()
    for dots, name, absolute in IMPORT.findall(path.read_text()):
        if absolute:
            found.add(absolute)
        elif dots == "tuneforge." or len(dots) == len(layer_dir):
            found.add(name)
    return found & set(ORDER)


@pytest.mark.parametrize("layer", ORDER)
def test_no_upward_imports(layer):
    allowed = set(ORDER[: ORDER.index(layer) + 1])
    bad = {}
    for path in (SRC / layer).rglob("*.py"):
        extra = set().union(*(v for k, v in EXTRA.items() if str(path.relative_to(SRC)).startswith(k)))
        bad[str(path.relative_to(SRC))] = sorted(_imported_layers(path) - allowed - extra)
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{layer} imports layers above it: {bad}"
