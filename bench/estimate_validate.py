"""Predicted vs measured peak GPU memory: ``tuneforge estimate`` against real tuneforge training steps.

Each config (:data:`RUNS`: Qwen2.5 0.5B/1.5B/7B shapes with random weights × LoRA/freeze/full/QLoRA × checkpointing
on/off × cutoff 512–4096 × batch 1–8 × Liger on/off, one DPO, one ZeRO-3 at world size 1) is written as a YAML
file; the parent predicts it with the estimate API (the code of ``tuneforge estimate --json``, no CUDA in the
parent), then a child process trains it for a few steps through ``tuneforge.train.stages`` after
``torch.cuda.reset_peak_memory_stats()`` and reports ``max_memory_allocated/reserved``. Data rows are longer than
every cutoff (bench_models' fixed set), so each batch is the estimate's worst case. A fresh process per run:
Liger patches transformers process-wide and the caching allocator must start empty.

    # on the GPU machine, from the repo root (wheels and .gpu/qwen as for bench/gpu_driver.sh):
    BENCH_SETUP_ONLY=1 bash bench/gpu_driver.sh x && \\
      PYTHONPATH=/tmp/site_tf:/tmp/site_common:$PWD/src python3 bench/estimate_validate.py --qwen-dir .gpu/qwen
    # CPU: configs and predictions only (no training), or one tiny training step per run with --cpu-smoke
    python bench/estimate_validate.py --qwen-dir ../shared/models/Qwen2.5-0.5B-Instruct --dry-run

Prints a markdown table (predicted vs measured, error %) and writes ``estimate_validate.json`` to ``$OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "src"))
import bench_models as bm  # noqa: E402

CACHE = Path(os.environ.get("BENCH_CACHE", "/tmp/tf_bench_cache"))
STEPS = 3  # step 2 is the first with optimizer states; step 3 confirms the peak
# name: (shape, config keys on top of COMMON). Fixed rows of ~2,200 tokens are cut at every cutoff used here.
RUNS: dict[str, tuple[str, dict]] = {  # ordered so that a time budget cut keeps every kind of run
    "05b_lora_gc_1024x8": ("0.5b", {"cutoff_len": 1024, "per_device_train_batch_size": 8}),
    "15b_full_1024x4": ("1.5b", {"finetuning_type": "full", "cutoff_len": 1024, "per_device_train_batch_size": 4}),
    "7b_lora_liger_2048x4": ("7b", {"cutoff_len": 2048, "per_device_train_batch_size": 4,
                                    "enable_liger_kernel": True}),
    "05b_freeze_2048x4": ("0.5b", {"finetuning_type": "freeze", "cutoff_len": 2048,
                                   "per_device_train_batch_size": 4}),
    "15b_dpo_lora_1024x2": ("1.5b", {"stage": "dpo", "dataset": "bench_dpo", "cutoff_len": 1024,
                                     "per_device_train_batch_size": 2, "learning_rate": 5e-6}),
    "15b_qlora_2048x2": ("1.5b", {"quantization_bit": 4, "cutoff_len": 2048, "per_device_train_batch_size": 2}),
    "15b_full_zero3_1024x2": ("1.5b", {"finetuning_type": "full", "cutoff_len": 1024,
                                       "per_device_train_batch_size": 2, "deepspeed": "ZERO3"}),
    "05b_lora_nogc_512x4": ("0.5b", {"cutoff_len": 512, "per_device_train_batch_size": 4,
                                     "disable_gradient_checkpointing": True}),
    "05b_full_liger_2048x2": ("0.5b", {"finetuning_type": "full", "cutoff_len": 2048,
                                       "per_device_train_batch_size": 2, "enable_liger_kernel": True}),
    "15b_lora_r8_4096x1": ("1.5b", {"lora_rank": 8, "cutoff_len": 4096, "per_device_train_batch_size": 1}),
    "7b_lora_nogc_1024x1": ("7b", {"cutoff_len": 1024, "per_device_train_batch_size": 1,
                                   "disable_gradient_checkpointing": True}),
    "15b_full_nogc_liger_512x2": ("1.5b", {"finetuning_type": "full", "cutoff_len": 512,
                                           "per_device_train_batch_size": 2, "enable_liger_kernel": True,
                                           "disable_gradient_checkpointing": True}),
    "7b_qlora_1024x8": ("7b", {"quantization_bit": 4, "cutoff_len": 1024, "per_device_train_batch_size": 8}),
    "05b_lora_padded_1024x4": ("0.5b", {"cutoff_len": 1024, "per_device_train_batch_size": 4,
                                        "padding_free": False}),
    "7b_lora_4096x1": ("7b", {"cutoff_len": 4096, "per_device_train_batch_size": 1}),
}
COMMON = {"stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_rank": 16, "lora_target": "all",
          "template": "qwen", "dataset": "bench_fixed", "bf16": True, "flash_attn": "sdpa", "learning_rate": 1e-4,
          "max_steps": STEPS, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
          "overwrite_output_dir": True, "dataloader_num_workers": 0, "preprocessing_num_workers": 1,
          "ignore_memory_estimate": True}
NEEDS = {"quantization_bit": "bitsandbytes", "enable_liger_kernel": "liger_kernel", "deepspeed": "deepspeed"}


def write_config(name: str, model: Path, data_dir: Path, work: Path) -> Path:
    """The YAML of run ``name`` (the ZeRO-3 run also gets its DeepSpeed JSON)."""
    keys = RUNS[name][1]
    cfg = {**COMMON, **keys, "model_name_or_path": str(model), "dataset_dir": str(data_dir),
           "output_dir": str(work / "out" / name)}
    if cfg.get("deepspeed") == "ZERO3":
        ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "train_batch_size": "auto", "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
              "zero_optimization": {"stage": 3, "overlap_comm": False, "contiguous_gradients": True,
                                    "stage3_prefetch_bucket_size": "auto", "reduce_bucket_size": "auto",
                                    "stage3_param_persistence_threshold": "auto"}}
        (work / "ds_z3.json").write_text(json.dumps(ds))
        cfg["deepspeed"] = str(work / "ds_z3.json")
    path = work / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def predict(config: Path, memory_gib: float) -> dict:
    """``tuneforge estimate CONFIG --gpu-memory ... --json``'s object, through the same functions."""
    from tuneforge.config.loader import load
    from tuneforge.estimate import estimate_config
    from tuneforge.estimate.hardware import Hardware
    from tuneforge.estimate.report import to_json

    res = load([str(config)], environ={})
    from tuneforge.commands.estimate import PLANNING  # the rules `tuneforge estimate` lets pass: it plans for a GPU

    if any(d.rule not in PLANNING for d in res.errors):
        return {"error": "; ".join(f"{d.key}: {d.message}" for d in res.errors)}
    return to_json(estimate_config(res.config, Hardware("card", memory_gib, 1)))


def child(config: Path, cpu: bool) -> None:
    """Train ``config`` for its few steps and print one JSON line with the measured peaks."""
    import torch

    from tuneforge.config.loader import load
    from tuneforge.train import stage_runner

    res = load([str(config)], environ=os.environ)
    cfg = res.config
    if cpu:
        cfg.training.bf16, cfg.training.max_steps = False, 1
    cuda = torch.cuda.is_available() and not cpu
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    metrics = stage_runner(cfg.finetuning.stage)(cfg)
    peak = {"alloc": torch.cuda.max_memory_allocated() / 2**30, "reserved": torch.cuda.max_memory_reserved() / 2**30} \
        if cuda else {}
    print("RESULT " + json.dumps({**peak, "train_s": round(time.perf_counter() - start, 1),
                                  "loss": metrics.get("train_loss")}), flush=True)


def _child_env(distributed: bool) -> dict[str, str]:
    """The allocator setting tuneforge's launcher uses, plus a world-size-1 rendezvous for DeepSpeed runs only
    (elsewhere it would start a process group, which is not what a one-GPU `tuneforge train` does)."""
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    if distributed:
        env |= {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO / "src")]))
    return env


def measure(config: Path, cpu: bool, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", str(config)] + (["--cpu-smoke"] if cpu else [])
    try:
        distributed = "deepspeed" in yaml.safe_load(config.read_text())
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_child_env(distributed))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1][len("RESULT "):])


def missing_package(name: str) -> str | None:
    import importlib.util

    for key, module in NEEDS.items():
        if key in RUNS[name][1] and importlib.util.find_spec(module) is None:
            return f"skipped: {key} needs {module}, not importable here"
    return None


def prepare(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Path], Path]:
    """Models (random weights, one process each) and the data set; returns model folders and the data dir."""
    from transformers import AutoTokenizer

    tiny = args.cpu_smoke or args.dry_run
    device = "cpu" if tiny else "cuda"
    models = {}
    for shape in sorted({RUNS[n][0] for n in names}):
        out = CACHE / "models" / f"{shape}{'-tiny' if tiny else ''}"
        if args.dry_run:  # the config alone is enough to predict
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(bm.shape_config(args.qwen_dir, shape)))
        else:
            subprocess.run([sys.executable, str(BENCH / "bench_models.py"), "--shape", shape, "--qwen-dir",
                            str(args.qwen_dir), "--out", str(out), "--device", device] + (["--tiny"] if tiny else []),
                           check=True)
        models[shape] = out
    data_dir = CACHE / "estimate_data"
    tok = AutoTokenizer.from_pretrained(args.qwen_dir)
    bm.write_datasets(data_dir, tok, {"bench_fixed": 64, "bench_dpo": 32}, {"bench_fixed": 4096, "bench_dpo": 1024},
                      long_words=2200)
    return models, data_dir


def _pct(pred: float | None, got: float | None) -> str:
    return f"{(pred / got - 1) * 100:+.1f}%" if pred and got else "—"


def table(rows: list[dict], device: str) -> str:
    head = (f"| run ({device}) | predicted alloc GiB | measured alloc GiB | error | predicted reserved GiB | "
            "measured reserved GiB | error | peak phase |\n|---|---:|---:|---:|---:|---:|---:|---|")
    body = []
    for r in rows:
        p, m = r.get("predicted", {}), r.get("measured", {})
        note = m.get("error") or r.get("skipped") or p.get("peak_phase", "")
        body.append(f"| {r['run']} | {p.get('peak_allocated_gib', '—')} | {_round(m.get('alloc'))} | "
                    f"{_pct(p.get('peak_allocated_gib'), m.get('alloc'))} | {p.get('peak_reserved_gib', '—')} | "
                    f"{_round(m.get('reserved'))} | {_pct(p.get('peak_reserved_gib'), m.get('reserved'))} | {note} |")
    return "\n".join([head, *body])


def _round(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def run_all(args: argparse.Namespace) -> list[dict]:
    names = args.runs.split(",") if args.runs else list(RUNS)
    start = time.perf_counter()
    models, data_dir = prepare(args, names)
    work = CACHE / "estimate_work"
    rows = []
    for name in names:
        config = write_config(name, models[RUNS[name][0]], data_dir, work)
        row: dict = {"run": name, "config": yaml.safe_load(config.read_text()),
                     "predicted": predict(config, args.gpu_memory)}
        left = args.budget - (time.perf_counter() - start)
        if skip := missing_package(name) if not args.dry_run else None:
            row["skipped"] = skip
        elif args.budget and left < 30:
            row["skipped"] = "skipped: time budget spent"
        elif not args.dry_run:
            row["measured"] = measure(config, args.cpu_smoke, max(30.0, left) if args.budget else 600.0)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qwen-dir", type=Path, default=REPO / ".gpu" / "qwen",
                        help="Qwen2.5-0.5B-Instruct config + tokenizer (no weights needed)")
    parser.add_argument("--runs", default="", help="comma list of run names (default: all)")
    parser.add_argument("--gpu-memory", type=float, default=140.4, help="card memory in GiB (for the verdict)")
    parser.add_argument("--budget", type=float, default=530, help="seconds for everything; 0: no limit")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/estimate_validate")))
    parser.add_argument("--dry-run", action="store_true", help="configs and predictions only (CPU, no training)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models, one CPU step per run (no memory)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cpu_smoke)
        return
    rows = run_all(args)
    device = "dry run" if args.dry_run else "cpu smoke" if args.cpu_smoke else _device_name()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimate_validate.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    print("\n" + table(rows, device))


def _device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"
    return out[0] if out else "unknown GPU"


if __name__ == "__main__":
    main()
