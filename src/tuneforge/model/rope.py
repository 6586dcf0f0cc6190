"""RoPE scaling to extend the context beyond the length the model was trained on (``rope_scaling``).

LLaMA-Factory's rule: in training, scaling is used only when ``cutoff_len`` exceeds the model's
``max_position_embeddings``, with ``factor = ceil(cutoff_len / max_position_embeddings)``; for inference the factor
is 2. transformers 5 keeps the RoPE settings in ``config.rope_parameters`` (``rope_scaling`` is an alias), so the
scaling keys are merged into that dict, next to ``rope_theta``.
"""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)


def configure_rope(config, cfg, *, is_trainable: bool) -> None:
    """Set ``rope_type``/``factor`` (and the keys each type needs) on ``config`` when ``rope_scaling`` asks for it."""
    kind = cfg.model.rope_scaling
    if kind is None:
        return
    params = getattr(config, "rope_parameters", None)
    original = getattr(config, "max_position_embeddings", None)
    if not isinstance(params, dict) or not original:
        logger.warning("rope_scaling: %s ignored: this model (%s) has no RoPE settings", kind, config.model_type)
        return
    factor = _factor(cfg.data.cutoff_len, original, is_trainable=is_trainable)
    if factor is None:
        logger.info("rope_scaling: cutoff_len %d fits in the model's %d positions: no scaling needed",
                    cfg.data.cutoff_len, original)
        return
    if params.get("rope_type", "default") != "default":
        logger.warning("rope_scaling: replacing the model's own RoPE scaling %s", params)
    config.rope_parameters = {**_base_keys(params), **_scaling_keys(kind, factor, original)}
    # Dynamic NTK measures the context against max_position_embeddings, so it must keep the original length.
    if kind != "dynamic":
        config.max_position_embeddings = int(original * factor)
    config.validate_rope()
    logger.info("rope_scaling: %s with factor %s (model length %d -> %d)", kind, factor, original,
                int(original * factor))


def _factor(cutoff_len: int, original: int, *, is_trainable: bool) -> float | None:
    if not is_trainable:
        return 2.0
    if cutoff_len <= original:
        return None
    return float(math.ceil(cutoff_len / original))


def _base_keys(params: dict) -> dict:
    # Keep what describes the unscaled RoPE (theta, partial rotary factor); drop an earlier scaling.
    return {key: value for key, value in params.items() if key in ("rope_theta", "partial_rotary_factor")}


def _scaling_keys(kind: str, factor: float, original: int) -> dict:
    keys: dict = {"rope_type": kind, "factor": factor}
    # transformers 5's dynamic NTK reads the original length from max_position_embeddings, not from this key.
    if kind in ("yarn", "llama3"):
        keys["original_max_position_embeddings"] = original
    if kind == "llama3":
        keys.update(low_freq_factor=1.0, high_freq_factor=4.0)
    return keys
