"""Random-weight Qwen2.5 models, seeded synthetic data and the FLOPs convention of ``scenarios.py``.

Model shapes are data (:data:`SHAPES`): overrides of the Qwen2.5-0.5B-Instruct ``config.json`` (the only config
that is carried to the device), taken from the published Qwen2.5 shapes. Building runs in its own process so that
the benchmark driver never holds a CUDA context while the runs measure memory::

    python bench/bench_models.py --shape 7b --qwen-dir .gpu/qwen --out /tmp/tf_bench_cache/models/7b --device cuda

The data written by :func:`write_datasets` is sharegpt JSON plus one ``dataset_info.json`` in LLaMA-Factory's
schema, read unchanged by LLaMA-Factory and tuneforge; the plain HF loop reads the same JSON.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import random
import shutil
import statistics
import time
from pathlib import Path

_QWEN25_COMMON = {"rope_theta": 1e6, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
                  "use_sliding_window": False, "sliding_window": None, "num_hidden_layers": 28,
                  "max_window_layers": 28}
SHAPES: dict[str, dict] = {
    "0.5b": {},
    "1.5b": {**_QWEN25_COMMON, "hidden_size": 1536, "intermediate_size": 8960, "num_attention_heads": 12,
             "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True},
    "7b": {**_QWEN25_COMMON, "hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
           "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False},
}
"""Overrides of the Qwen2.5-0.5B config per shape (Qwen2.5-1.5B/7B ``config.json`` on the Hub)."""

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_window_layers": 2}
"""Applied on top of a shape for the CPU smoke test (vocabulary and tokenizer stay Qwen's)."""

WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
         "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her",
         "she", "there", "one", "all", "we", "their", "has", "been", "if", "more", "when", "will", "would", "who",
         "so", "no")
"""Each is one Qwen2.5 token with its leading space, so a text of k words is about k tokens."""

VARLEN_MU, VARLEN_SIGMA = 5.417, 0.9385
"""Log-normal token lengths: mean exp(μ+σ²/2) ≈ 350, p99 exp(μ+2.326σ) ≈ 2,000 (before the cut)."""

TEMPLATE_TOKENS = 31  # Qwen2.5's default system prompt plus the role markers of one exchange
TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
        "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
DATASETS = {
    "bench_fixed": {"file_name": "fixed.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}},
    "bench_varlen": {"file_name": "varlen.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}},
    "bench_dpo": {"file_name": "dpo.json", "formatting": "sharegpt", "ranking": True,
                  "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
}
"""``dataset_info.json`` entries (LLaMA-Factory's schema; all tags listed, since a partial ``tags`` nulls the rest)."""


def shape_config(qwen_dir: Path, shape: str, tiny: bool = False) -> dict:
    """The raw ``config.json`` dict of ``shape``: the 0.5B config with the shape's (and the tiny) overrides."""
    raw = json.loads((Path(qwen_dir) / "config.json").read_text())
    raw.update(SHAPES[shape])
    if tiny:
        raw.update(TINY)
    raw.pop("layer_types", None)  # derived from num_hidden_layers by the config class
    return raw


def param_counts(cfg: dict, lora_rank: int = 16) -> dict[str, int]:
    """Parameter counts of a Qwen2 config dict.

    Returns:
        ``n_params`` (all parameters, a tied lm_head counted once), ``n_mm`` (matmul weights of q, k, v, o, gate,
        up, down of every layer plus lm_head, tied or not; no input embedding, biases or norms) and ``n_lora``
        (LoRA A and B of rank ``lora_rank`` on the seven projections of every layer).
    """
    h, i, v, n_layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # (in, out) of q k v o gate up down
    layer_mm = sum(a * b for a, b in shapes)
    layer_other = h + 2 * kv + 2 * h  # q/k/v biases, two RMSNorms
    embed = v * h
    n_params = embed + n_layers * (layer_mm + layer_other) + h + (0 if cfg["tie_word_embeddings"] else embed)
    n_lora = n_layers * sum(lora_rank * (a + b) for a, b in shapes)
    return {"n_params": n_params, "n_mm": n_layers * layer_mm + embed, "n_lora": n_lora}


def flops_per_token(cfg: dict, finetuning_type: str, stage: str, s_bar: float, lora_rank: int = 16) -> float:
    """Model FLOPs per trained token (benchmark-protocol §6.2; recomputation by checkpointing not counted).

    F_full = 6·N_mm + 12·L·H·d·s̄, F_lora = 4·N_mm + 12·L·H·d·s̄ + 6·N_lora (frozen base: no weight gradients).
    dpo adds the reference model's forward pass on the same tokens: 2·N_mm + 4·L·H·d·s̄.
    """
    counts = param_counts(cfg, lora_rank)
    attn = 12 * cfg["num_hidden_layers"] * cfg["hidden_size"] * s_bar  # H·d = hidden size
    if finetuning_type == "lora":
        flops = 4 * counts["n_mm"] + attn + 6 * counts["n_lora"]
    else:
        flops = 6 * counts["n_mm"] + attn
    if stage == "dpo":
        flops += 2 * counts["n_mm"] + attn / 3
    return flops


def build_model(qwen_dir: Path, shape: str, out: Path, device: str, tiny: bool = False) -> Path:
    """Save a seeded random-weight model of ``shape`` (bf16 on CUDA, fp32 on CPU) plus Qwen's tokenizer to ``out``.

    Skipped when ``out/config.json`` exists already (a finished build: the config is written last).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:  # parallel jobs (one per GPU) build a shape once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "config.json").is_file():
            print(f"model {shape}: cached at {out}", flush=True)
            return out
        return _build(qwen_dir, shape, out, device, tiny)


def _build(qwen_dir: Path, shape: str, out: Path, device: str, tiny: bool) -> Path:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    start = time.perf_counter()
    raw = shape_config(qwen_dir, shape, tiny)
    config = CONFIG_MAPPING[raw["model_type"]].from_dict(raw)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for item in Path(qwen_dir).iterdir():
        if item.is_file() and item.name != "config.json" and not item.name.endswith(".safetensors"):
            shutil.copy(item, tmp / item.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"model {shape}{' (tiny)' if tiny else ''}: {n / 1e9:.3f}B params built and saved in "
          f"{time.perf_counter() - start:.1f} s -> {out}", flush=True)
    return out


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=max(1, n_words)))


def _turn(role: str, text: str) -> dict:
    return {"from": role, "value": text}


def fixed_rows(n: int, words: int, seed: int = 0) -> list[dict]:
    """``n`` single-turn chats of ``words`` words per side (set ``words`` so any cutoff ≤ 2·words truncates)."""
    rng = random.Random(seed)
    return [{"conversations": [_turn("human", _text(rng, words)), _turn("gpt", _text(rng, words))]}
            for _ in range(n)]


def varlen_rows(n: int, seed: int = 1) -> list[dict]:
    """``n`` single-turn chats with log-normal templated lengths (:data:`VARLEN_MU`, :data:`VARLEN_SIGMA`).

    The user side gets 20–50 % of the words, the reply the rest.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = max(8, round(rng.lognormvariate(VARLEN_MU, VARLEN_SIGMA)) - TEMPLATE_TOKENS)
        user = max(2, round(words * rng.uniform(0.2, 0.5)))
        rows.append({"conversations": [_turn("human", _text(rng, user)), _turn("gpt", _text(rng, words - user))]})
    return rows


def dpo_rows(n: int, words: int, seed: int = 2) -> list[dict]:
    """``n`` preference pairs: a prompt and two replies of ``words`` words each (LLaMA-Factory's ranking format)."""
    rng = random.Random(seed)
    return [{"conversations": [_turn("human", _text(rng, words))], "chosen": _turn("gpt", _text(rng, words)),
             "rejected": _turn("gpt", _text(rng, words))} for _ in range(n)]


def to_messages(turns: list[dict]) -> list[dict]:
    """sharegpt turns -> ``[{"role", "content"}]`` for ``apply_chat_template``."""
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    return [{"role": roles[t["from"]], "content": t["value"]} for t in turns]


def token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Templated token length of each row (its ``conversations``, plus ``chosen`` when present)."""
    convs = [row["conversations"] + ([row["chosen"]] if "chosen" in row else []) for row in rows]
    texts = [tokenizer.apply_chat_template(to_messages(c), tokenize=False) for c in convs]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def length_stats(lengths: list[int], cutoff: int) -> dict[str, float]:
    """min/mean/p50/p99/max before the cut, mean after it, and s̄ = Σsᵢ²/Σsᵢ of the cut lengths (§6.2)."""
    ordered = sorted(lengths)
    cut = [min(n, cutoff) for n in lengths]
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {"n": len(lengths), "min": ordered[0], "mean": round(statistics.fmean(lengths), 1),
            "p50": ordered[len(ordered) // 2], "p99": p99, "max": ordered[-1],
            "mean_cut": round(statistics.fmean(cut), 1), "s_bar": sum(s * s for s in cut) / sum(cut)}


def write_datasets(data_dir: Path, tokenizer, counts: dict[str, int], cutoffs: dict[str, int],
                   long_words: int = 1300) -> dict[str, dict]:
    """Write the three sets and ``dataset_info.json`` to ``data_dir``; print and return their length stats.

    Args:
        counts: rows per set name (``bench_fixed``, ``bench_varlen``, ``bench_dpo``); a missing name is not written.
        cutoffs: the ``cutoff_len`` each set is used with (for the after-cut stats and s̄).
        long_words: words per side of the fixed and dpo rows (1,300 ≈ 1,300 tokens: every sample is cut).
    """
    makers = {"bench_fixed": lambda n: fixed_rows(n, long_words), "bench_varlen": varlen_rows,
              "bench_dpo": lambda n: dpo_rows(n, long_words)}
    data_dir.mkdir(parents=True, exist_ok=True)
    info, stats = {}, {}
    for name, n in counts.items():
        rows = makers[name](n)
        (data_dir / DATASETS[name]["file_name"]).write_text(json.dumps(rows))
        info[name] = {**DATASETS[name], "tags": TAGS}
        stats[name] = length_stats(token_lengths(tokenizer, rows), cutoffs[name])
        print(f"data {name}: {json.dumps(stats[name])}", flush=True)
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=1))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description="Build one random-weight model (see the module docstring).")
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--qwen-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    build_model(args.qwen_dir, args.shape, args.out, args.device, args.tiny)


if __name__ == "__main__":
    main()
