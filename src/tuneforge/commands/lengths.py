"""``tuneforge lengths CONFIG [--json] [--png FILE]``: token-length statistics of the processed training data."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import resolve_or_exit, run_guarded


def _bar(count: int, top: int, width: int = 40) -> str:
    return "#" * max(1 if count else 0, round(width * count / top)) if top else ""


def render(report: dict[str, Any]) -> str:
    lines = [f"examples: {report['examples']}   mean: {report['mean']:.1f}   max: {report['max']}"]
    lines.append("   ".join(f"{k.upper()}: {report[k]:g}" for k in ("p50", "p90", "p95", "p99", "p99.9")))
    top = max(h["count"] for h in report["histogram"])
    for h in report["histogram"]:
        lines.append(f"  {h['from']:>8.0f} - {h['to']:<8.0f} {h['count']:>7}  {_bar(h['count'], top)}")
    lines.append(f"cutoff_len {report['cutoff_len']}: {100 * report['truncated_share']:.2f}% of examples would be "
                 "truncated")
    lines.append(f"cutoff_len that keeps 99% whole: {report['cutoff_len_for_99pct_exact']} "
                 f"(next power of two: {report['cutoff_len_for_99pct']})")
    return "\n".join(lines)


def _plot(lengths: Any, cutoff_len: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(lengths, bins=50, color="#4c72b0")
    ax.axvline(cutoff_len, color="#c44e52", linestyle="--", label=f"cutoff_len {cutoff_len}")
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _run(args: argparse.Namespace) -> int:
    from ..data.inspect import UNLIMITED, length_report, prepare, processed_rows, row_lengths

    res = resolve_or_exit(args)
    if isinstance(res, int):
        return res
    cfg = res.config
    tokenizer, template = prepare(cfg)
    rows, _ = processed_rows(cfg, tokenizer, template, cutoff_len=UNLIMITED)
    lengths = row_lengths(rows)
    report = length_report(lengths, cfg.data.cutoff_len)
    if args.png:
        _plot(lengths, cfg.data.cutoff_len, args.png)
        report["png"] = args.png
    sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else render(report) + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
