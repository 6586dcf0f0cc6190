"""Side-by-side training benchmark: tuneforge vs LLaMA-Factory 0.9.5 vs a plain HF+PEFT loop, same card, same YAML.

Scenarios (:data:`SCENARIOS`, from shared/reference/benchmark-protocol.md §9.1): A Qwen2.5-7B LoRA SFT 8×2048, C
Qwen2.5-1.5B full SFT 8×2048, D Qwen2.5-0.5B LoRA SFT on variable-length data (cutoff 1024; padded and packed), E
Qwen2.5-7B DPO LoRA 4 pairs × 2048. Every run is its own process (``_bench_child.py``) with a timeout; models have
random weights (``bench_models.py``). Prints one markdown table and writes it plus every row to ``--out``
(``bench_table.md``, ``bench_rows.json``, all child logs in ``children.log``).

    bash bench/gpu_driver.sh A,D --budget 560             # on the GPU machine (see gpu_driver.sh)
    OMP_NUM_THREADS=1 .venv/bin/python bench/scenarios.py --smoke --scenarios A,C,D,E \
        --python-tf .venv/bin/python --python-lf /work/lf-venv/bin/python --out /tmp/smoke_out   # CPU smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import bench_models as bm  # noqa: E402

SCENARIOS: dict[str, dict] = {
    "A": {"what": "Qwen2.5-7B LoRA SFT, GC, 8×2048 fixed", "shape": "7b", "stage": "sft", "finetuning_type": "lora",
          "dataset": "bench_fixed", "cutoff_len": 2048, "batch": 8, "tf_variants": ["default", "liger"],
          "lf_tuned": {"enable_liger_kernel": True}},
    "C": {"what": "Qwen2.5-1.5B full SFT, GC, 8×2048 fixed", "shape": "1.5b", "stage": "sft",
          "finetuning_type": "full", "dataset": "bench_fixed", "cutoff_len": 2048, "batch": 8,
          "tf_variants": ["default", "liger"], "lf_tuned": {"enable_liger_kernel": True}},
    "D": {"what": "Qwen2.5-0.5B LoRA SFT, GC, varlen (mean≈350), cutoff 1024, bs16", "shape": "0.5b",
          "stage": "sft", "finetuning_type": "lora", "dataset": "bench_varlen", "cutoff_len": 1024, "batch": 16,
          "tf_variants": ["padded", "unpacked", "packed", "packed+liger", "packed+compile"],
          "lf_tuned": {"enable_liger_kernel": True, "packing": True, "neat_packing": True}},
    "E": {"what": "Qwen2.5-7B DPO LoRA, GC, 4 pairs × 2048", "shape": "7b", "stage": "dpo", "finetuning_type": "lora",
          "dataset": "bench_dpo", "cutoff_len": 2048, "batch": 4, "tf_variants": ["default", "liger"],
          "lf_tuned": {"enable_liger_kernel": True}, "extra": {"pref_beta": 0.1, "pref_loss": "sigmoid"}},
}
SMOKE = {"A": {"cutoff_len": 128, "batch": 2}, "C": {"cutoff_len": 128, "batch": 2},
         "D": {"cutoff_len": 256, "batch": 4}, "E": {"cutoff_len": 128, "batch": 2}}
"""CPU smoke test sizes (tiny models; the real vocabulary keeps the logits large)."""

TF_VARIANTS: dict[str, dict] = {
    "default": {},
    "padded": {"packing": False, "neat_packing": False, "padding_free": False},
    "unpacked": {"packing": False, "neat_packing": False},  # padding-free where the varlen kernel runs
    "packed": {"packing": True, "neat_packing": True},
    "liger": {"enable_liger_kernel": True},
    "compile": {"torch_compile": True},
    "nogc": {"disable_gradient_checkpointing": True},
}
"""tuneforge config overlays; a variant name combines them with '+' (``packed+liger``)."""

COMMON = {"do_train": True, "bf16": True, "learning_rate": 1e-4, "save_strategy": "no", "report_to": "none",
          "overwrite_output_dir": True, "optim": "adamw_torch_fused", "template": "qwen",
          "preprocessing_num_workers": 16, "dataloader_num_workers": 4, "gradient_accumulation_steps": 1}
LORA = {"lora_rank": 16, "lora_alpha": 32, "lora_target": "all"}
LF_ONLY = {"flash_attn": "sdpa"}  # tuneforge keeps its default attention
CPU = {"bf16": False, "preprocessing_num_workers": 2, "dataloader_num_workers": 0}  # and no fused optimizer
FRAMEWORKS = ("tuneforge", "lf_default", "lf_tuned", "hf")
ROWS_PER_BATCH = {"bench_fixed": 1, "bench_varlen": 4, "bench_dpo": 1}  # packed D eats ~3 rows per packed row
COLUMNS = ["scenario", "framework/variant", "real tokens/step", "tok/s", "vs LF tuned", "MFU (ours)", "MFU 6N",
           "% ceiling", "peak alloc GiB", "peak reserved GiB", "start-up s", "mean loss", "status"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default="A,C,D,E")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--tf-variants", default="", help="tuneforge variants for every scenario (default: per scenario)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 30; smoke 4)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 10; smoke 1)")
    p.add_argument("--timeout", type=int, default=420, help="seconds per run")
    p.add_argument("--budget", type=int, default=0, help="seconds for everything (0: no limit); runs that would "
                   "start with less than --min-run seconds left are skipped, the others get the rest as timeout")
    p.add_argument("--min-run", type=int, default=90, help="see --budget")
    p.add_argument("--qwen-dir", type=Path, default=Path("/work/shared/models/Qwen2.5-0.5B-Instruct"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/bench_out")))
    p.add_argument("--cache", type=Path, default=Path("/tmp/tf_bench_cache"), help="models and data")
    p.add_argument("--smoke", action="store_true", help="tiny models on CPU, 4 steps (implies --device cpu)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--commit", default="", help="shown when git is not available")
    for kind, site in (("tf", "/tmp/site_tf"), ("lf", "/tmp/site_lf"), ("hf", None)):
        p.add_argument(f"--python-{kind}", default=sys.executable, help=f"interpreter of the {kind} children")
        if site:
            p.add_argument(f"--site-{kind}", default=site, help=f"first PYTHONPATH entry of the {kind} children")
    p.add_argument("--site-common", default="/tmp/site_common", help="PYTHONPATH entry of every child")
    args = p.parse_args(argv)
    args.device = "cpu" if args.smoke else args.device
    args.smoke = args.smoke or args.device == "cpu"
    args.steps = args.steps or (4 if args.smoke else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 10)
    if not 1 <= args.warmup < args.steps:
        p.error("need 1 <= --warmup < --steps")
    for variant in filter(None, args.tf_variants.split(",")):
        try:
            variant_overlay(variant)
        except KeyError as err:
            p.error(str(err))
    return args


def scenario(name: str, smoke: bool) -> dict:
    """The scenario table entry with the smoke sizes applied."""
    return {**SCENARIOS[name], **(SMOKE[name] if smoke else {})}


def train_config(scn: dict, model_dir: Path, data_dir: Path, args: argparse.Namespace, overlay: dict,
                 lf: bool) -> dict:
    """The LLaMA-Factory-style dict of one run (``output_dir`` is added by :func:`run_child`)."""
    cfg = {**COMMON, **(LORA if scn["finetuning_type"] == "lora" else {}), **(LF_ONLY if lf else {})}
    cfg.update(stage=scn["stage"], finetuning_type=scn["finetuning_type"], model_name_or_path=str(model_dir),
               dataset=scn["dataset"], dataset_dir=str(data_dir), cutoff_len=scn["cutoff_len"],
               per_device_train_batch_size=scn["batch"], max_steps=args.steps, logging_steps=args.steps,
               **scn.get("extra", {}))
    if args.device == "cpu":
        cfg.update(CPU)
        cfg.pop("optim")
    cfg.update(overlay)
    return cfg


def variant_overlay(variant: str) -> dict:
    """Merge the overlays of ``a+b+...`` (unknown names raise KeyError listing the table)."""
    out: dict = {}
    for part in variant.split("+"):
        if part not in TF_VARIANTS:
            raise KeyError(f"unknown tuneforge variant {part!r}; known: {', '.join(TF_VARIANTS)}")
        out.update(TF_VARIANTS[part])
    return out


def plan(args: argparse.Namespace, data_dir: Path) -> list[dict]:
    """Every run, in order: per scenario tuneforge variants, lf_tuned, lf_default, hf."""
    runs = []
    frameworks = args.frameworks.split(",")
    for name in args.scenarios.split(","):
        scn = scenario(name, args.smoke)
        model = model_dir(args, scn["shape"])

        def add(framework: str, label: str, overlay: dict, scn=scn, model=model, name=name) -> None:
            train = train_config(scn, model, data_dir, args, overlay, lf=framework.startswith("lf"))
            runs.append({"scenario": name, "framework": framework, "label": label, "train": train,
                         "shape": scn["shape"]})

        if "tuneforge" in frameworks:
            variants = args.tf_variants.split(",") if args.tf_variants else scn["tf_variants"]
            for variant in variants:
                add("tuneforge", f"tuneforge/{variant}", variant_overlay(variant))
        if "lf_tuned" in frameworks:
            add("lf_tuned", "lf_tuned", scn["lf_tuned"])
        if "lf_default" in frameworks:
            add("lf_default", "lf_default", {})
        if "hf" in frameworks:
            add("hf", "hf", {})
    return runs


def skip_reason(run: dict, args: argparse.Namespace) -> str | None:
    """Why a run is not started: Liger needs CUDA; the plain HF loop has no DPO."""
    if args.device == "cpu" and run["train"].get("enable_liger_kernel"):
        return "skipped: needs CUDA"
    if run["framework"] == "hf" and run["train"]["stage"] != "sft":
        return "n/a"
    return None


def child_command(run: dict, args: argparse.Namespace, work: Path) -> tuple[list[str], dict]:
    """Interpreter, arguments and environment of one child (PYTHONPATH: existing dirs only)."""
    kind = {"tuneforge": "tf", "lf_default": "lf", "lf_tuned": "lf", "hf": "hf"}[run["framework"]]
    paths = {"tf": [args.site_tf, args.site_common, str(REPO / "src")], "lf": [args.site_lf, args.site_common],
             "hf": [args.site_common]}[kind]
    env = dict(os.environ, PYTHONUNBUFFERED="1", DISABLE_VERSION_CHECK="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", HF_DATASETS_CACHE=str(work / "hf_datasets"),
               PYTHONPATH=":".join(p for p in paths if Path(p).is_dir()))
    cmd = [getattr(args, f"python_{kind}"), str(BENCH / "_bench_child.py"), "--framework", run["framework"],
           "--config", str(work / "cfg.json"), "--result", str(work / "result.json")]
    return cmd, env


def run_child(run: dict, args: argparse.Namespace, pad_id: int, timeout: float) -> dict:
    """Run one child with a timeout (its whole process group is killed after it); returns its result dict."""
    work = Path(tempfile.mkdtemp(prefix=f"bench_{run['scenario']}_{run['framework']}_"))
    train = {**run["train"], "output_dir": str(work / "out")}
    cmd, env = child_command(run, args, work)
    bench = {"warmup": args.warmup, "steps": args.steps, "pad_id": pad_id, "device": args.device,
             "launch_ts": time.time()}
    (work / "cfg.json").write_text(json.dumps({"train": train, "bench": bench}, indent=1))
    start = time.perf_counter()
    with open(work / "child.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
        try:
            rc: int | str = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        _kill_group(proc)
    result_file = work / "result.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if not result:
        result["status"] = "timeout" if rc == "timeout" else f"error: child exited {rc} without a result"
    elif result["status"].startswith("finishing"):
        result["status"] = f"ok, but {'timeout' if rc == 'timeout' else f'exit {rc}'} after the timed steps"
    result.update(wall_s=time.perf_counter() - start, config=train)
    _append_log(args.out / "children.log", run, cmd, rc, result, work / "child.log")
    shutil.rmtree(work, ignore_errors=True)
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of the child's own process group (dataloader or preprocessing workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _append_log(path: Path, run: dict, cmd: list[str], rc, result: dict, child_log: Path, keep: int = 150) -> None:
    lines = child_log.read_text(errors="replace").splitlines()
    header = (f"\n===== [{run['scenario']}] {run['label']} | rc={rc} | {result['status'][:200]} | "
              f"wall {result['wall_s']:.0f} s | {shlex.join(cmd)}\n")
    with open(path, "a") as fh:
        fh.write(header + (f"... ({len(lines) - keep} lines cut)\n" if len(lines) > keep else ""))
        fh.write("\n".join(lines[-keep:]) + "\n")


def model_dir(args: argparse.Namespace, shape: str) -> Path:
    return args.cache / "models" / f"qwen2.5-{shape}{'-tiny' if args.smoke else ''}"


def build_model(args: argparse.Namespace, shape: str, timeout: float) -> str | None:
    """Build (or find cached) the model of ``shape`` in a subprocess; returns an error message or None."""
    cmd = [args.python_hf, str(BENCH / "bench_models.py"), "--shape", shape, "--qwen-dir", str(args.qwen_dir),
           "--out", str(model_dir(args, shape)), "--device", args.device] + (["--tiny"] if args.smoke else [])
    env = dict(os.environ, PYTHONPATH=args.site_common if Path(args.site_common).is_dir() else "")
    try:
        proc = subprocess.run(cmd, env=env, timeout=max(timeout, 1), check=False)
    except subprocess.TimeoutExpired:
        return f"error: building the {shape} model timed out"
    return None if proc.returncode == 0 else f"error: building the {shape} model failed (exit {proc.returncode})"


def prepare_data(args: argparse.Namespace) -> tuple[Path, dict, int]:
    """Write the data sets the scenarios need; returns ``(data dir, length stats by dataset, pad id)``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.qwen_dir)
    counts, cutoffs = {}, {}
    for scn in (scenario(n, args.smoke) for n in args.scenarios.split(",")):
        rows = scn["batch"] * (args.steps + 2) * ROWS_PER_BATCH[scn["dataset"]]
        counts[scn["dataset"]] = max(rows, counts.get(scn["dataset"], 0))
        cutoffs[scn["dataset"]] = scn["cutoff_len"]
    # one data folder per scenario list: parallel jobs (one per GPU, bench/gpu_parallel.sh) never share files
    data_dir = args.cache / f"data-{'smoke-' if args.smoke else ''}{args.scenarios.replace(',', '')}"
    stats = bm.write_datasets(data_dir, tokenizer, counts, cutoffs)
    return data_dir, stats, tokenizer.pad_token_id


def add_derived(row: dict, args: argparse.Namespace, stats: dict, ceilings: dict) -> None:
    """MFU (ours and 6N), % of ceiling, from tokens/s, the model config and s̄ of the data (CUDA runs only)."""
    scn = scenario(row["scenario"], args.smoke)
    tok_s = row.get("tokens_per_s")
    if not tok_s or args.device != "cuda":
        return
    cfg = bm.shape_config(args.qwen_dir, scn["shape"])
    s_bar = stats[scn["dataset"]]["s_bar"]
    flops = bm.flops_per_token(cfg, scn["finetuning_type"], scn["stage"], s_bar)
    peak = float(ceilings["peak_bf16_flops"])
    row["mfu"] = tok_s * flops / peak
    row["mfu_6n"] = tok_s * 6 * bm.param_counts(cfg)["n_params"] / peak
    row["pct_ceiling"] = tok_s / ceilings["ceilings"][row["scenario"]]["tokens_per_s"]


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    """The markdown table (one line per run; "vs LF tuned" = tok/s over the same scenario's lf_tuned tok/s)."""
    tuned = {r["scenario"]: r.get("tokens_per_s") for r in rows if r["framework"] == "lf_tuned"}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        ref, tok_s = tuned.get(r["scenario"]), r.get("tokens_per_s")
        cells = [r["scenario"], r["label"], _fmt(r.get("tokens_per_step"), ",.0f"), _fmt(tok_s, ",.0f"),
                 _fmt(tok_s / ref if tok_s and ref else None, ".2f"), _fmt(r.get("mfu"), ".1%"),
                 _fmt(r.get("mfu_6n"), ".1%"), _fmt(r.get("pct_ceiling"), ".0%"),
                 _fmt(r.get("peak_alloc_gib"), ".1f"), _fmt(r.get("peak_reserved_gib"), ".1f"),
                 _fmt(r.get("startup_s"), ".0f"), _fmt(r.get("mean_loss"), ".3f"),
                 r["status"].replace("|", "/")[:120]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _commit(args: argparse.Namespace) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return args.commit or "unknown"


def header(rows: list[dict], args: argparse.Namespace, stats: dict) -> str:
    """Device, versions per framework environment, commit, exact command, step window and data stats."""
    device = next((r["device"] for r in rows if r.get("device")), "unknown")
    envs = {}
    for r in rows:
        if r.get("versions"):
            kind = "lf" if r["framework"].startswith("lf") else r["framework"]
            envs.setdefault(kind, r["versions"])
    lines = [f"device: {device}", f"commit: {_commit(args)}",
             f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}",
             *([f"driver: {os.environ['BENCH_COMMAND']}"] if os.environ.get("BENCH_COMMAND") else []),
             f"steps: {args.steps} per run, timed steps {args.warmup + 1}..{args.steps} (GPU sync at both ends)"]
    lines += [f"versions ({kind} env): " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items()))
              for kind, vers in envs.items()]
    lines += [f"scenario {n}: {scenario(n, args.smoke)['what']}" for n in dict.fromkeys(r["scenario"] for r in rows)]
    lines += [f"data {name}: " + json.dumps({k: round(v, 1) for k, v in s.items()}) for name, s in stats.items()]
    return "\n".join(lines)


def execute(run: dict, args: argparse.Namespace, pad_id: int, state: dict) -> dict:
    """Skip, or build the model if needed and run the child, within the time budget; returns the result dict."""
    reason = skip_reason(run, args)
    left = state["deadline"] - time.time()
    if reason is None and left < args.min_run:
        reason = f"skipped: time budget ({left:.0f} s left)"
    if reason:
        return {"status": reason}
    if run["shape"] not in state["built"]:
        state["built"][run["shape"]] = build_model(args, run["shape"], left)
    error = state["built"][run["shape"]]
    left = state["deadline"] - time.time()
    if error or left < args.min_run:
        return {"status": error or f"skipped: time budget ({left:.0f} s left)"}
    return run_child(run, args, pad_id, min(args.timeout, left - 5))


def write_outputs(rows: list[dict], args: argparse.Namespace, stats: dict) -> str:
    text = header(rows, args, stats) + "\n\n" + table(rows) + "\n"
    (args.out / "bench_table.md").write_text(text)
    (args.out / "bench_rows.json").write_text(json.dumps({"rows": rows, "data": stats}, indent=1, default=str))
    return text


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "children.log").write_text("")
    state = {"deadline": time.time() + (args.budget or 10**9), "built": {}}
    ceilings = yaml.safe_load((BENCH / "ceilings.yaml").read_text())
    data_dir, stats, pad_id = prepare_data(args)
    rows: list[dict] = []
    for run in plan(args, data_dir):
        result = execute(run, args, pad_id, state)
        row = {"scenario": run["scenario"], "framework": run["framework"], "label": run["label"], **result}
        add_derived(row, args, stats, ceilings)
        rows.append(row)
        print(f"[{row['scenario']}] {row['label']}: {row['status'][:200]} tok/s={_fmt(row.get('tokens_per_s'), '.0f')}"
              f" wall={_fmt(row.get('wall_s'), '.0f')} s", flush=True)
        write_outputs(rows, args, stats)
    print("\n" + write_outputs(rows, args, stats), flush=True)


if __name__ == "__main__":
    main()
