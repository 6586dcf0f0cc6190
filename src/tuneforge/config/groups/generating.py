"""Generating group: decoding for chat, api, predict and PPO rollouts (LLaMA-Factory's GeneratingArguments)."""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import opt


@dataclass
class GeneratingArgs:
    """How text is generated."""

    do_sample: bool = opt(True, "Sample instead of greedy decoding.")
    temperature: float = opt(0.95, "Sampling temperature.", gt=0)
    top_p: float = opt(0.7, "Nucleus sampling: keep the smallest token set with this probability.", gt=0, le=1)
    top_k: int = opt(50, "Keep the k most likely tokens.", ge=0)
    num_beams: int = opt(1, "Beams of beam search (1 = none).", ge=1)
    max_length: int = opt(1024, "Largest length of prompt plus answer (used when max_new_tokens is 0).", ge=1)
    max_new_tokens: int = opt(1024, "Largest number of generated tokens.", ge=0)
    repetition_penalty: float = opt(1.0, "Penalty for repeating tokens (1 = none).", gt=0)
    length_penalty: float = opt(1.0, "Exponential length penalty of beam search.")
    skip_special_tokens: bool = opt(True, "Drop special tokens from the decoded text.")
