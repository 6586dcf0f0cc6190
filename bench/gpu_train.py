"""GPU training runs of tuneforge on random-weight real architectures; prints one markdown table.

Used for the training issue's first GPU run (Qwen2.5-0.5B shape, LoRA r16 all-linear, bf16, cutoff 2048, the demo
sharegpt data, 50 steps) and the preference issue's DPO run. Each run goes through the real `tuneforge train`
code path (stage registry, data pipeline, trainer); the numbers come from the run's own metrics plus
``torch.cuda.max_memory_allocated/reserved``.

    # .gpu/qwen: a copy of shared/models/Qwen2.5-0.5B-Instruct (config + tokenizer, no weights)
    python bench/gpu_train.py --tokenizer .gpu/qwen --runs sft_demo,sft_packed,dpo --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BF16 = os.environ.get("BENCH_BF16", "1") == "1"
WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not")



def build_model(tokenizer_dir: Path, out: Path) -> Path:
    """A random-weight model (bf16) from the config and tokenizer in ``tokenizer_dir`` (e.g. Qwen2.5-0.5B's)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


def synthetic_chats(path: Path, n: int, seed: int = 0) -> str:
    """A sharegpt set of variable-length chats (log-normal lengths) registered in ``path/dataset_info.json``."""
    import random

    rng = random.Random(seed)
    words = WORDS
    rows = []
    for _ in range(n):
        turns = []
        for _ in range(rng.randint(1, 3)):
            user = " ".join(rng.choices(words, k=max(4, int(rng.lognormvariate(3.5, 0.8)))))
            reply = " ".join(rng.choices(words, k=max(4, int(rng.lognormvariate(4.5, 0.9)))))
            turns += [{"from": "human", "value": user}, {"from": "gpt", "value": reply}]
        rows.append({"conversations": turns})
    path.mkdir(parents=True, exist_ok=True)
    (path / "chats.json").write_text(json.dumps(rows))
    info = {"chats": {"file_name": "chats.json", "formatting": "sharegpt"}}
    (path / "dataset_info.json").write_text(json.dumps(info))
    return str(path)


def run_configs(model: Path, data_dir: str, tmp: Path) -> dict[str, dict]:
    common = {"model_name_or_path": str(model), "do_train": True, "finetuning_type": "lora", "lora_rank": 16,
              "lora_alpha": 32, "lora_target": "all", "template": "qwen", "bf16": BF16, "cutoff_len": 2048,
              "logging_steps": 10, "save_strategy": "no", "report_to": "none", "learning_rate": 1e-4,
              "overwrite_output_dir": True, "max_steps": 50, "dataloader_num_workers": 2,
              "flash_attn": "sdpa"}
    return {
        "sft_demo": {**common, "stage": "sft", "dataset": "sharegpt_demo", "dataset_dir": str(REPO / "data"),
                     "per_device_train_batch_size": 8, "output_dir": str(tmp / "sft_demo")},
        "sft_padded": {**common, "stage": "sft", "dataset": "chats", "dataset_dir": data_dir,
                       "per_device_train_batch_size": 8, "output_dir": str(tmp / "sft_padded")},
        "sft_padded_w0": {**common, "stage": "sft", "dataset": "chats", "dataset_dir": data_dir,
                          "per_device_train_batch_size": 8, "dataloader_num_workers": 0,
                          "output_dir": str(tmp / "sft_padded_w0")},
        "sft_packed": {**common, "stage": "sft", "dataset": "chats", "dataset_dir": data_dir, "neat_packing": True,
                       "per_device_train_batch_size": 8, "output_dir": str(tmp / "sft_packed")},
        "dpo": {**common, "stage": "dpo", "dataset": "dpo_demo", "dataset_dir": str(REPO / "data"),
                "cutoff_len": 1024, "per_device_train_batch_size": 4, "learning_rate": 5e-6,
                "output_dir": str(tmp / "dpo")},
    }


def run_one(name: str, config: dict) -> dict:
    import torch

    from tuneforge.config.loader import resolve
    from tuneforge.train import stage_runner

    res = resolve(config, environ={})
    if res.errors:
        return {"run": name, "error": "; ".join(f"{d.key}: {d.message}" for d in res.errors)}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    metrics = stage_runner(res.config.finetuning.stage)(res.config)
    wall = time.perf_counter() - start
    return {"run": name, "steps": config["max_steps"], "tokens_per_s": metrics.get("effective_tokens_per_sec"),
            "train_runtime_s": metrics.get("train_runtime"), "wall_s": round(wall, 1),
            "peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
            "train_loss": metrics.get("train_loss"),
            "pairs_per_s": (metrics.get("train_samples_per_second") if name == "dpo" else None)}


def _profiled(name: str, config: dict, out: Path) -> dict:
    """Run under cProfile and write the top functions by own and cumulative time (where step time goes)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    row = profiler.runcall(run_one, name, config)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
    (out / f"profile_{name}.txt").write_text(text.getvalue())
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--runs", default="sft_demo,sft_padded,sft_packed,dpo")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/bench_out"))
    parser.add_argument("--profile", default="", help="cProfile these runs; top functions go to OUT/profile_*.txt")
    args = parser.parse_args()
    import torch

    tmp = Path("/tmp/tf_bench")
    model = build_model(Path(args.tokenizer), tmp / "qwen05")
    data_dir = synthetic_chats(tmp / "data", 2000)
    configs = run_configs(model, data_dir, tmp)
    rows = []
    for name in args.runs.split(","):
        try:
            if name in args.profile.split(","):
                rows.append(_profiled(name, configs[name], Path(args.out)))
            else:
                rows.append(run_one(name, configs[name]))
        except Exception as err:  # one failing run must not lose the others' numbers
            rows.append({"run": name, "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    (Path(args.out) / "gpu_train.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    print(f"\n| run ({device}) | tokens/s | peak alloc GiB | peak reserved GiB | wall s | loss |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r.get('tokens_per_s')} | {r.get('peak_alloc_gib')} | {r.get('peak_reserved_gib')} | "
              f"{r.get('wall_s')} | {r.get('train_loss', r.get('error'))} |")


if __name__ == "__main__":
    main()
