"""The machine probe: no torch import without an accelerator node; with one, torch's own answer."""

from __future__ import annotations

import subprocess
import sys

import torch

from tuneforge.config import machine


def test_with_a_device_node_torch_answers(monkeypatch):
    monkeypatch.setattr(machine, "may_have_accelerator", lambda: True)
    machine.bf16_support.cache_clear()
    machine.visible_gpus.cache_clear()
    try:
        expected = bool(torch.cuda.is_bf16_supported()) if torch.cuda.is_available() else None
        assert machine.bf16_support() is expected
        assert machine.visible_gpus() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    finally:
        machine.bf16_support.cache_clear()
        machine.visible_gpus.cache_clear()


def test_without_a_device_node_torch_is_not_imported():
    code = ("import sys; from tuneforge.config import machine; machine.may_have_accelerator = lambda: False; "
            "print(machine.bf16_support(), machine.visible_gpus(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["None", "0", "False"]
