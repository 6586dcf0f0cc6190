"""Peak memory and time of preprocessing one huge sft row (a short question, a ``--mb`` MB reply).

Runs ``tuneforge.data.processors.process`` on a one-row dataset with the real Qwen2.5 tokenizer (``--tokenizer``)
at ``--cutoff``, and prints the time and the process's peak RSS (``ru_maxrss``) before and after. ``--uncapped``
runs the stage processor directly on the whole row, as ``process`` did before texts were cut to the character
budget (keep ``--mb`` small there: it tokenizes everything).

    HF_HUB_OFFLINE=1 PYTHONPATH=src .venv/bin/python bench/huge_row.py --mb 50
    HF_HUB_OFFLINE=1 PYTHONPATH=src .venv/bin/python bench/huge_row.py --mb 2 --uncapped
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

from datasets import Dataset


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def huge_text(mb: float, seed: int = 0) -> str:
    """About ``mb`` MB of word-like ASCII text (varied words, spaces and newlines, as a scraped document)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11))) for _ in range(5000)]
    line = " ".join(rng.choice(words) for _ in range(2000)) + "\n"
    return (line * (int(mb * 1e6) // len(line) + 1))[: int(mb * 1e6)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--cutoff", type=int, default=2048)
    parser.add_argument("--tokenizer", default="/work/shared/models/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--uncapped", action="store_true")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from tuneforge.config.loader import resolve
    from tuneforge.data.processors import PROCESSORS, ProcessStats, build_context, process
    from tuneforge.data.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    template = get_template("qwen", tokenizer)
    cfg = resolve({"model_name_or_path": "x", "stage": "sft", "cutoff_len": args.cutoff, "packing": False},
                  environ={}).config
    row = {"_prompt": [{"role": "user", "content": "Summarize this document."}],
           "_response": [{"role": "assistant", "content": huge_text(args.mb)}], "_system": "", "_tools": "",
           "_kto_tag": None}
    data = Dataset.from_list([row])
    del row
    before = peak_mib()
    started = time.perf_counter()
    if args.uncapped:
        out = PROCESSORS["supervised"].process_batch(data[:], build_context(cfg, tokenizer, template))
        tokens, cut = len(out["input_ids"][0]), "n/a"
    else:
        stats = ProcessStats(stage="sft")
        tokens, cut = len(process(data, cfg, tokenizer, template, stats=stats)[0]["input_ids"]), stats.cut
    print(json.dumps({"mb": args.mb, "cutoff": args.cutoff, "uncapped": args.uncapped, "seconds":
                      round(time.perf_counter() - started, 2), "peak_rss_mib_before": round(before),
                      "peak_rss_mib": round(peak_mib()), "tokens": tokens, "rows_cut": cut}))


if __name__ == "__main__":
    main()
