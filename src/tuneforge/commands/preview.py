"""``tuneforge preview CONFIG [--n N] [--json]``: the first processed examples, trained spans highlighted."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import resolve_or_exit, run_guarded

IGNORE = -100


def spans(labels: list[int]) -> list[tuple[int, int, bool]]:
    """Runs of trained / untrained positions: ``[-100, -100, 5, 6] -> [(0, 2, False), (2, 4, True)]``."""
    out: list[tuple[int, int, bool]] = []
    for i, label in enumerate(labels):
        trained = label != IGNORE
        if out and out[-1][2] == trained:
            out[-1] = (out[-1][0], i + 1, trained)
        else:
            out.append((i, i + 1, trained))
    return out


def highlight(tokenizer: Any, ids: list[int], labels: list[int], color: bool) -> str:
    """The text with trained spans in green (tty) or between ⟦ ⟧ markers."""
    parts = []
    for start, end, trained in spans(labels):
        text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
        if trained:
            text = f"\033[42;30m{text}\033[0m" if color else f"⟦{text}⟧"
        parts.append(text)
    return "".join(parts)


def _sides(row: dict[str, Any]) -> list[str]:
    return ["chosen_", "rejected_"] if "chosen_input_ids" in row else [""]


def as_json(tokenizer: Any, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in _sides(row):
        ids = list(row[f"{side}input_ids"])
        out[f"{side}input_ids"] = ids
        out[f"{side}labels"] = list(row[f"{side}labels"])
        out[f"{side}text"] = tokenizer.decode(ids, skip_special_tokens=False)
    return out


def as_text(tokenizer: Any, row: dict[str, Any], index: int, color: bool) -> str:
    lines = [f"=== example {index} ==="]
    for side in _sides(row):
        ids, labels = list(row[f"{side}input_ids"]), list(row[f"{side}labels"])
        trained = sum(label != IGNORE for label in labels)
        if side:
            lines.append(f"--- {side[:-1]} ---")
        lines.append(highlight(tokenizer, ids, labels, color))
        lines.append(f"[{len(ids)} tokens, {trained} trained]")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from ..data.inspect import prepare, processed_rows

    res = resolve_or_exit(args)
    if isinstance(res, int):
        return res
    tokenizer, template = prepare(res.config)
    rows, _ = processed_rows(res.config, tokenizer, template, limit=max(args.n * 4, args.n + 16))
    color = sys.stdout.isatty()
    for index in range(min(args.n, len(rows))):
        row = rows[index]
        if args.json:
            sys.stdout.write(json.dumps(as_json(tokenizer, row), ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(as_text(tokenizer, row, index, color) + "\n\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
