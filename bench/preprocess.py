"""Preprocessing throughput: tuneforge vs LLaMA-Factory on the same synthetic sft chats (issue 3).

Generates ``--n`` deterministic multi-turn sharegpt chats (system prompt, 1-4 turns, mixed lengths, a few long
enough to be truncated at ``cutoff_len``), then tokenizes them for stage sft with the real Qwen2.5 tokenizer and
the ``qwen`` template, with 1 and 2 ``preprocessing_num_workers``: tuneforge in this process, LLaMA-Factory in its
own venv (``bench/_lf_preprocess.py`` via subprocess, so neither stack is installed into the other's venv).

Only the tokenization map (render + tokenize + truncation + label masking + drop bookkeeping) is timed; load and
conversion to the message schema are timed separately. Nothing is served from the ``datasets`` cache: tuneforge
runs with caching disabled, LLaMA-Factory with ``overwrite_cache``. ``TOKENIZERS_PARALLELISM=false`` keeps the
Rust tokenizer on one thread, so ``workers`` is the number of cores each side uses.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/preprocess.py            # --n 50000 --repeats 3
    HF_HUB_OFFLINE=1 .venv/bin/python bench/preprocess.py --n 2000 --repeats 1 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one Rust thread: workers == cores used
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path("/work/shared/models/Qwen2.5-0.5B-Instruct")
LF_PYTHON = Path("/work/lf-venv/bin/python")
LF_SCRIPT = Path(__file__).with_name("_lf_preprocess.py")
DATASET = "synth_sft"
CUTOFF = 2048
SAMPLE_IDS = 200  # examples whose token ids are compared between the two stacks

# ----------------------------------------------------------------------------------------------- synthetic data
_WORDS = (
    "the of and to in is that for it as with was on be by this are or from at an which have not but can all "
    "model data training loss learning rate batch layer token sequence attention gradient optimizer memory GPU "
    "function return value error file path config parameter example result output input string list dict "
    "however therefore because although while when where why how what please explain describe compare write "
    "first second finally next then also only just very more most less simple complex large small fast slow "
    "user system assistant question answer problem solution step approach method test case edge performance"
).split()
_CJK = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后"
_CODE = [
    "```python\ndef f(x):\n    return x * 2\n```",
    "```bash\npip install -e .\n```",
    "```json\n{\"lr\": 1e-4, \"epochs\": 3}\n```",
    "`torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100)`",
]
_SYSTEMS = [
    "You are a helpful assistant.",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "You are a senior software engineer. Answer concisely and show code when useful.",
    "You are a patient math tutor. Explain each step.",
    "你是一个乐于助人的助手。",
    "You are a customer support agent for an online store. Be polite and precise. Never invent order numbers.",
]


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", ":"])


def _text(rng: random.Random, words: int) -> str:
    """About ``words`` words of prose in paragraphs, with some numbers, lists, code and Chinese mixed in."""
    parts: list[str] = []
    left = max(1, words)
    while left > 0:
        roll = rng.random()
        if roll < 0.05:
            parts.append(rng.choice(_CODE))
        elif roll < 0.10:
            parts.append("".join(rng.choice(_CJK) for _ in range(rng.randint(5, 40))) + "。")
        elif roll < 0.16:
            parts.append("\n".join(f"{i + 1}. {_sentence(rng, rng.randint(3, 9))}" for i in range(rng.randint(2, 5))))
        else:
            n = min(left, rng.randint(4, 24))
            sentence = _sentence(rng, n)
            if rng.random() < 0.1:
                sentence += f" ({rng.randint(0, 10 ** rng.randint(1, 6))} {rng.choice(['ms', 'GB', '%', 'tokens'])})"
            parts.append(sentence)
        left -= 12
    text = ""
    for part in parts:  # paragraphs break now and then, like real replies
        text += part + ("\n\n" if rng.random() < 0.2 else " ")
    return text.strip()


def _length(rng: random.Random, median: float, long_share: float) -> int:
    if rng.random() < long_share:  # a long paste or essay: pushes some chats past cutoff_len
        return rng.randint(800, 2200)
    return max(1, min(1500, int(rng.lognormvariate(0.0, 0.9) * median)))


def make_chat(rng: random.Random) -> dict:
    """One sharegpt chat: system prompt, 1-4 user/assistant turns; a few messages start/end with newlines."""
    turns = rng.choices([1, 2, 3, 4], weights=[40, 30, 20, 10])[0]
    messages = []
    for _ in range(turns):
        user = _text(rng, _length(rng, 30, 0.01))
        reply = _text(rng, _length(rng, 110, 0.01))
        if rng.random() < 0.05:
            reply = "\n" + reply  # a reply starting with "\n" straddles the header's "\n" (see spans.py)
        messages += [{"from": "human", "value": user}, {"from": "gpt", "value": reply}]
    return {"conversations": messages, "system": rng.choice(_SYSTEMS)}


def write_dataset(folder: Path, n: int, seed: int) -> Path:
    """``folder/synth.jsonl`` + ``dataset_info.json`` registering it as ``synth_sft`` (both stacks read it)."""
    rng = random.Random(seed)
    with (folder / "synth.jsonl").open("w", encoding="utf-8") as handle:
        for _ in range(n):
            handle.write(json.dumps(make_chat(rng), ensure_ascii=False) + "\n")
    info = {DATASET: {"file_name": "synth.jsonl", "formatting": "sharegpt",
                      "columns": {"messages": "conversations", "system": "system"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder
