"""``tuneforge estimate CONFIG [overrides] [--gpu NAME | --gpu-memory 24GiB] [--gpus N] [--json] [--fit]``.

Row lengths: the worst case (every row ``cutoff_len`` tokens) unless ``--data`` measures the processed rows or
``--lengths FILE`` reads ``tuneforge lengths --json`` output.

Peak GPU memory per device by component, tokens/s and wall time, and with ``--fit`` the fastest config predicted
to fit, as a YAML overlay (``--write FILE`` saves it, plus a DeepSpeed JSON when it picks ZeRO). No model is
loaded: the shape comes from the model's config.json (see ``docs/estimate.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config.report import render_diagnostics
from .common import resolve_or_exit, run_guarded

# an estimate plans for a GPU from config.json alone: this machine's precision support and the weight files of a
# model folder (not needed to read its shape) do not stop it
PLANNING = frozenset({"precision_on_this_machine", "sources_exist"})

def _bad(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 2


def _hardware(args: argparse.Namespace):
    from ..estimate.hardware import choose

    gpus = None
    if args.gpus is not None:
        if not str(args.gpus).isdigit():
            raise ValueError(f"--gpus must be a whole number of GPUs (got {args.gpus!r})")
        gpus = int(args.gpus)
    return choose(args.gpu, args.gpu_memory, gpus)


def _lengths(args: argparse.Namespace, cfg):
    """(Lengths, rows) from --lengths FILE, or measured on the processed data with --data; else (None, None)."""
    from ..estimate import read_lengths
    from ..estimate.plan import Lengths

    if args.lengths:
        return read_lengths(args.lengths)
    if not args.data:
        return None, None
    import numpy as np

    from ..data.inspect import prepare, processed_rows, row_lengths

    tokenizer, template = prepare(cfg)
    rows, _ = processed_rows(cfg, tokenizer, template)
    lengths = np.minimum(row_lengths(rows), cfg.data.cutoff_len)
    return Lengths(float(lengths.mean()), float(np.percentile(lengths, 99, method="higher"))), len(lengths)


def _write_overlay(path: str, fit) -> None:
    import yaml

    from ..estimate.fit import deepspeed_config

    out = Path(path)
    out.write_text(yaml.safe_dump(dict(fit.overlay), sort_keys=False), encoding="utf-8")
    ds_name = fit.overlay.get("deepspeed")
    if ds_name:
        (out.parent / ds_name).write_text(json.dumps(deepspeed_config(fit.plan), indent=2) + "\n", encoding="utf-8")


def _run(args: argparse.Namespace) -> int:
    from ..estimate import ArchError, estimate_config
    from ..estimate.fit import fit as fit_plan
    from ..estimate.hardware import HardwareError
    from ..estimate.report import render_fit, render_text, to_json

    res = resolve_or_exit(args, tolerate=PLANNING)
    if isinstance(res, int):
        return res
    try:
        hw = _hardware(args)
        lengths, rows = _lengths(args, res.config)
        est = estimate_config(res.config, hw, lengths, rows)
    except (HardwareError, ArchError, ValueError) as err:
        return _bad(str(err))
    fit, budget = None, None
    if args.fit:
        if hw is None:
            return _bad("--fit needs the memory to fit: --gpu NAME (or a profile such as 1x24gb) or --gpu-memory "
                        "24GiB; no GPU was detected here")
        budget = hw.memory_gib
        fit = fit_plan(est.arch, est.plan, budget)
        if fit is not None and args.write:
            _write_overlay(args.write, fit)
    if args.json:
        print(json.dumps(to_json(est, fit, budget), indent=2))
    else:
        if res.diagnostics:
            render_diagnostics([d for d in res.diagnostics if d.level != "notice"], sys.stderr, False)
        print(render_text(est))
        if args.fit:
            print("\n" + render_fit(fit, budget))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
