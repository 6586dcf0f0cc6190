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
_WORD_TEXT = (
    "the of and to in is that for it as with was on be by this are or from at an which have not but can all "
    "model data training loss learning rate batch layer token sequence attention gradient optimizer memory "
    "GPU function return value error file path config parameter example result output input string list dict "
    "however therefore because although while when where why how what please explain describe compare write "
    "first second finally next then also only just very more most less simple complex large small fast slow "
    "user system assistant question answer problem solution step approach method test case edge performance"
)
_WORDS = _WORD_TEXT.split()
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


def write_datasets(root: Path, n: int, repeat_n: int, seed: int) -> tuple[Path, Path]:
    """``root/full`` (``n`` chats) and ``root/head`` (its first ``repeat_n``, for the cheaper repeats)."""
    full, head = root / "full", root / "head"
    full.mkdir()
    head.mkdir()
    write_dataset(full, n, seed)
    lines = (full / "synth.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (head / "synth.jsonl").write_text("".join(lines[:repeat_n]), encoding="utf-8")
    (head / "dataset_info.json").write_text((full / "dataset_info.json").read_text())
    return full, head


# ----------------------------------------------------------------------------------------------- timing helpers
def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (the ``datasets`` map workers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# ----------------------------------------------------------------------------------------------- tuneforge side
def tf_config(data_dir: Path, workers: int):
    from tuneforge.config.loader import resolve

    return resolve({
        "model_name_or_path": str(MODEL), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "template": "qwen", "dataset": DATASET, "dataset_dir": str(data_dir), "cutoff_len": CUTOFF,
        "preprocessing_num_workers": workers or None, "overwrite_cache": True, "output_dir": str(data_dir / "out"),
    }, environ={}).config


def tf_prepare():
    """Tokenizer and template, built the way ``tuneforge train`` builds them (not timed, like LF's)."""
    from tuneforge.data.inspect import prepare

    return prepare(tf_config(ROOT, 1))


def run_tf(data_dir: Path, workers: int, tokenizer, template) -> dict:
    """Load + convert (timed apart), then the sft tokenization map; nothing comes from the datasets cache."""
    from tuneforge.data.loader import load_aligned
    from tuneforge.data.processors import ProcessStats, process

    cfg = tf_config(data_dir, workers)
    start = time.perf_counter()
    train = load_aligned(cfg).train
    load_s = time.perf_counter() - start
    stats = ProcessStats(stage="sft")
    cpu, start = cpu_seconds(), time.perf_counter()
    out = process(train, cfg, tokenizer, template, stats=stats)
    process_s, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"load_s": load_s, "process_s": process_s, "cpu_s": cpu, "rows": len(train), "kept": len(out),
            "dropped": dict(stats.dropped), "truncated": stats.truncated}


def tf_rows(data_dir: Path, tokenizer, template, count: int) -> tuple[list[dict], list[list[dict]]]:
    """The first ``count`` rows through the sft processor, drops included (aligned with LF's rows by index), and
    each row's chat as HF messages (system first)."""
    from tuneforge.data.loader import load_aligned
    from tuneforge.data.processors import PROCESSORS, build_context

    cfg = tf_config(data_dir, 1)
    train = load_aligned(cfg).train
    batch = train.select(range(min(count, len(train))))[:]
    out = PROCESSORS["sft"].process_batch(batch, build_context(cfg, tokenizer, template))
    rows = [{k: out[k][i] for k in out} for i in range(len(out["input_ids"]))]
    chats = [[{"role": "system", "content": system}, *prompt, *response]
             for prompt, response, system in zip(batch["_prompt"], batch["_response"], batch["_system"], strict=True)]
    return rows, chats


def tf_versions() -> dict[str, str]:
    import datasets
    import tokenizers
    import torch
    import transformers

    import tuneforge

    return {"tuneforge": tuneforge.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "tokenizers": tokenizers.__version__, "torch": torch.__version__}


def profile_tf(data_dir: Path, tokenizer, template, count: int = 2000) -> None:
    """cProfile of the sft processor on ``count`` rows in this process (no map workers hide the work)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    tf_rows(data_dir, tokenizer, template, count)  # includes loading the rows (small next to tokenizing)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


# ----------------------------------------------------------------------------------------------- LLaMA-Factory side
def run_lf(data_dir: Path, workers: int, out: Path, sample: int = 0) -> dict:
    """``bench/_lf_preprocess.py`` in LLaMA-Factory's venv; its own timings come back as JSON."""
    command = [str(LF_PYTHON), str(LF_SCRIPT), str(data_dir), str(MODEL), str(workers), str(CUTOFF), str(out),
               str(sample)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if done.returncode:
        sys.exit(f"LLaMA-Factory run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------- sanity + report
def compare_ids(lf_ids: list, tf_out: list[dict], chats: list[list[dict]], tokenizer) -> dict[str, int]:
    """Per row: same ids and labels, a tuneforge drop (by reason), or why they differ. An untruncated row that
    differs is checked against ``tokenizer.apply_chat_template`` (the model's own template ids)."""
    counts: dict[str, int] = {}
    for (lf_input, lf_labels), row, chat in zip(lf_ids, tf_out, chats, strict=False):
        if row["_drop"]:
            key = f"tuneforge dropped ({row['_drop']})"
        elif row["input_ids"] == lf_input and row["labels"] == lf_labels:
            key = "same ids and labels"
        elif row["_truncated"] or len(lf_input) >= CUTOFF:
            key = "differ: truncated (tuneforge keeps the assistant header and end-of-turn)"
        elif row["input_ids"] == list(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=False)):
            newline = any(m["role"] == "assistant" and m["content"].startswith("\n") for m in chat)
            key = ("differ: a reply starts with \\n; tuneforge == apply_chat_template" if newline
                   else "differ: tuneforge == apply_chat_template")
        else:
            key = "differ: other (unexpected)"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _rate(run: dict) -> float:
    return run["rows"] / run["process_s"]


def summarize(runs: list[dict]) -> list[dict]:
    """One line per (framework, workers): the full run, the median samples/s over all repeats, CPU per 1k rows."""
    lines = []
    for framework in ("tuneforge", "LLaMA-Factory"):
        for workers in sorted({r["workers"] for r in runs}):
            mine = [r for r in runs if r["framework"] == framework and r["workers"] == workers]
            if not mine:
                continue
            rates = [_rate(r) for r in mine]
            lines.append({
                "framework": framework, "workers": workers, "full_s": mine[0]["process_s"],
                "full_rate": _rate(mine[0]), "rate": statistics.median(rates), "low": min(rates), "high": max(rates),
                "cpu_per_1k": statistics.median(1000 * r["cpu_s"] / r["rows"] for r in mine),
                "load_s": mine[0]["load_s"],
            })
    return lines


def table(lines: list[dict], n: int, repeats: str) -> str:
    """The markdown table; the speedup compares the medians at the same worker count."""
    lf = {line["workers"]: line["rate"] for line in lines if line["framework"] == "LLaMA-Factory"}
    rows = [f"| framework | workers | seconds (n={n}) | samples/s (n={n}) | samples/s, median of {repeats} | min-max "
            f"| CPU s / 1k samples | load+convert s (n={n}) | speedup vs LF |", "|---|---:|" + "---:|" * 7]
    for line in lines:
        speedup = f"{line['rate'] / lf[line['workers']]:.2f}x" if line["workers"] in lf else "-"
        rows.append(f"| {line['framework']} | {line['workers']} | {line['full_s']:.1f} | {line['full_rate']:.0f} | "
                    f"{line['rate']:.0f} | {line['low']:.0f}-{line['high']:.0f} | {line['cpu_per_1k']:.2f} | "
                    f"{line['load_s']:.1f} | {speedup} |")
    return "\n".join(rows)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50000, help="chats to generate (the first repeat uses all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per framework and worker count")
    parser.add_argument("--repeat-n", type=int, default=4000,
                        help="chats in repeats 2.. (the first --repeat-n of the same data; keeps a run ~10 min)")
    parser.add_argument("--workers", default="1,2",
                        help="preprocessing_num_workers values, comma separated; 0 leaves it unset (map in-process)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-lf", action="store_true", help="tuneforge only (no LLaMA-Factory venv needed)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of tuneforge's sft processor")
    return parser.parse_args(argv)


def timed_runs(args: argparse.Namespace, full: Path, head: Path, tokenizer, template, scratch: Path) -> list[dict]:
    """Every (repeat, workers) runs both frameworks, alternating which goes first so load drift evens out."""
    runs = []
    for repeat in range(args.repeats):
        data_dir = full if repeat == 0 else head
        for workers in [int(w) for w in args.workers.split(",")]:
            order = ["tuneforge", "LLaMA-Factory"][:: 1 if repeat % 2 == 0 else -1]
            for framework in order:
                if framework == "LLaMA-Factory" and args.skip_lf:
                    continue
                if framework == "tuneforge":
                    run = run_tf(data_dir, workers, tokenizer, template)
                else:
                    run = run_lf(data_dir, workers, scratch / "lf.json")
                run.update(framework=framework, workers=workers, repeat=repeat)
                runs.append(run)
                print(f"  repeat {repeat} {framework:13s} workers={workers} rows={run['rows']} "
                      f"load={run['load_s']:.1f}s process={run['process_s']:.1f}s ({_rate(run):.0f}/s) "
                      f"cpu={run['cpu_s']:.1f}s kept={run['kept']}", flush=True)
    return runs


def sanity(head: Path, tokenizer, template, runs: list[dict], scratch: Path) -> list[str]:
    """Kept counts of the full runs, and the token ids of the first rows compared row by row."""
    out = []
    for run in runs:
        if run["repeat"] == 0:
            extra = f" (dropped {run['dropped']}, {run['truncated']} truncated)" if "dropped" in run else ""
            out.append(f"kept {run['framework']} workers={run['workers']}: {run['kept']} of {run['rows']}{extra}")
    lf = run_lf(head, 1, scratch / "lf_ids.json", SAMPLE_IDS)
    rows, chats = tf_rows(head, tokenizer, template, SAMPLE_IDS)
    counts = compare_ids(lf["ids"], rows, chats, tokenizer)
    out.append(f"token ids of the first {SAMPLE_IDS} rows: {counts}")
    return [*out, f"LLaMA-Factory stack: {lf['versions']}"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp:
        scratch = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(scratch / "hf_cache")  # both stacks: a fresh cache, removed after
        import datasets

        datasets.disable_caching()  # tuneforge's map never reuses a cached result (LF: overwrite_cache)
        datasets.disable_progress_bars()
        start = time.perf_counter()
        head_n = min(args.repeat_n, args.n)
        full, head = write_datasets(scratch, args.n, head_n, args.seed)
        print(f"generated {args.n} chats in {time.perf_counter() - start:.1f}s; {uptime()}", flush=True)
        tokenizer, template = tf_prepare()
        if args.profile:
            profile_tf(head, tokenizer, template)
        runs = timed_runs(args, full, head, tokenizer, template, scratch)
        notes = [] if args.skip_lf else sanity(head, tokenizer, template, runs, scratch)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores; {uptime()}")
    print(f"tuneforge stack: {tf_versions()}")
    print("\n".join(notes))
    print(f"\ncommand: HF_HUB_OFFLINE=1 .venv/bin/python bench/preprocess.py {' '.join(sys.argv[1:])}\n")
    repeats = f"{args.repeats} (1 x {args.n}" + (f" + {args.repeats - 1} x {head_n})" if args.repeats > 1 else ")")
    print(table(summarize(runs), args.n, repeats))


if __name__ == "__main__":
    main()
