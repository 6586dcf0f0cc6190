"""``--fit``: never a config predicted over the limit, the global batch kept, QLoRA only as the last resort."""

from __future__ import annotations

import pytest

from tuneforge.estimate.arch import Arch, known_shape
from tuneforge.estimate.fit import fit, fits
from tuneforge.estimate.memory import estimate_memory
from tuneforge.estimate.plan import Lengths, Plan

Q7 = Arch.from_config(known_shape("Qwen/Qwen2.5-7B"))


@pytest.mark.parametrize("budget", [12.0, 16.0, 23.6, 40.0, 79.6])
@pytest.mark.parametrize("plan", [Plan(micro_batch=8, grad_accum=2, cutoff=4096),
                                  Plan(method="full", micro_batch=4, grad_accum=2, cutoff=2048, world=2),
                                  Plan(stage="dpo", micro_batch=4, cutoff=2048)],
                         ids=["lora", "full-2gpu", "dpo"])
def test_fit_never_returns_a_config_over_the_limit(plan, budget):
    result = fit(Q7, plan, budget)
    if result is None:
        return
    assert fits(estimate_memory(Q7, result.plan), budget)
    assert result.memory.device_total_gib <= budget * 0.9
    assert result.plan.micro_batch * result.plan.grad_accum == plan.micro_batch * plan.grad_accum


def test_qlora_only_when_nothing_else_fits():
    plan = Plan(micro_batch=1, cutoff=1024)
    assert fit(Q7, plan, 23.6).plan.quant_bit is None
    tight = fit(Q7, plan, 12.0)
    assert tight.plan.quant_bit == 4 and tight.overlay["quantization_bit"] == 4


def test_nothing_fits_returns_none():
    assert fit(Q7, Plan(method="full", micro_batch=1, cutoff=512), 8.0) is None


def test_cutoff_lowered_only_to_the_data_p99():
    plan = Plan(micro_batch=16, cutoff=8192, lengths=Lengths(mean=400, p99=1900))
    result = fit(Q7, plan, 23.6)
    assert result.plan.cutoff >= 1900
    assert fit(Q7, Plan(micro_batch=16, cutoff=8192), 23.6).plan.cutoff == 8192


def test_overlay_keys_resolve_without_errors():
    from tuneforge.config.loader import resolve

    result = fit(Q7, Plan(micro_batch=8, cutoff=4096, world=2), 23.6)
    assert result.overlay and set(result.reasons) <= set(result.overlay)
    overlay = {k: v for k, v in result.overlay.items() if k != "deepspeed"}
    res = resolve({"model_name_or_path": "Qwen/Qwen2.5-7B", **overlay}, environ={})
    assert not res.errors
