"""Merge the per-GPU job folders of ``bench/gpu_parallel.sh`` into the few files that come back from the device.

    python bench/merge_results.py /tmp/bench_job_0 /tmp/bench_job_1 ... --out $OUT

Writes ``bench_table.md`` (each job's header and table, in job order), ``bench_rows.json`` (all rows, each with its
``gpu``), ``children.log`` and ``jobs.log`` (concatenated, each part headed by its job), and ``fastpath.json``
(bench/fastpath_check.py's rows, when a job ran it). It also prints the merged table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def merge(jobs: list[Path], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    tables, rows, fastpath = [], [], []
    logs: dict[str, list[str]] = {"children.log": [], "jobs.log": []}
    for gpu, job in enumerate(sorted(jobs)):
        tables.append(f"## GPU {gpu} ({job.name})\n\n{_read(job / 'bench_table.md') or '(no table)'}")
        data = json.loads(_read(job / "bench_rows.json") or '{"rows": []}')
        rows += [{"gpu": gpu, **row} for row in data["rows"]]
        fastpath += [{"gpu": gpu, **row} for row in json.loads(_read(job / "fastpath.json") or "[]")]
        logs["children.log"].append(f"===== GPU {gpu}\n{_read(job / 'children.log')}")
        logs["jobs.log"].append(f"===== GPU {gpu} fastpath\n{_read(job / 'fastpath.log')[-20000:]}\n"
                                f"===== GPU {gpu} job\n{_read(job / 'job.log')[-12000:]}")
    text = "\n\n".join(tables) + "\n"
    (out / "bench_table.md").write_text(text)
    (out / "bench_rows.json").write_text(json.dumps({"rows": rows}, indent=1, default=str))
    (out / "fastpath.json").write_text(json.dumps(fastpath, indent=1))
    for name, parts in logs.items():
        (out / name).write_text("\n".join(parts))
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(merge(args.jobs, args.out))
    for row in json.loads((args.out / "fastpath.json").read_text()):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
