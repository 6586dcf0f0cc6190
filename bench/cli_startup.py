"""Wall time of the commands a user waits on before anything trains: `--help`, `version`, `check` (good and bad).

Each command runs ``--runs`` times as a fresh process (``python -m tuneforge ...``); the median, min and max are
printed as a markdown table, with whether torch/transformers/datasets were imported (``-X importtime``)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/cli_startup.py --runs 15

Targets (issue 19.5, a 2-core machine): `check` on a bad config <= 1.5 s, `--help` and `version` <= 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "examples" / "quickstart" / "model"
GOOD = f"model_name_or_path: {MODEL}\ntrain_from_scratch: true\nstage: sft\ndo_train: true\ndataset: identity\n" \
       "template: chatml\ncutoff_len: 512\nlora_rank: 8\nlearning_rate: 1.0e-4\n"
BAD = f"model_name_or_path: {MODEL}\ntrain_from_scratch: true\nlora_ranl: 8\n"  # one typo
HEAVY = ("torch", "transformers", "datasets")
TARGETS = {"--help": 0.5, "version": 0.5, "check bad.yaml": 1.5}


def _time(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tuneforge", *argv], cwd=REPO, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def _heavy_imports(argv: list[str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tuneforge", *argv], cwd=REPO,
                          capture_output=True, text=True, check=False)
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    return [m for m in HEAVY if m in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = Path(tmp) / "good.yaml", Path(tmp) / "bad.yaml"
        good.write_text(GOOD)
        bad.write_text(BAD)
        cases = {"--help": ["--help"], "version": ["version"], "check good.yaml": ["check", str(good)],
                 "check bad.yaml": ["check", str(bad)]}
        print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
              f"Python {platform.python_version()}, {args.runs} runs each\n")
        print("| command | median s | min s | max s | target s | heavy imports |\n|---|---|---|---|---|---|")
        for name, argv in cases.items():
            times = _time(argv, args.runs)
            heavy = ", ".join(_heavy_imports(argv)) or "none"
            target = TARGETS.get(name)
            print(f"| `tuneforge {name}` | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | "
                  f"{target if target else '-'} | {heavy} |")


if __name__ == "__main__":
    main()
