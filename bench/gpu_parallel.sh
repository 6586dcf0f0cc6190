#!/usr/bin/env bash
# The side-by-side benchmark on a machine of several GPUs: one job per GPU, in parallel. Each job runs its own
# scenarios on its own card, every framework of a scenario on that same card one after another, so each
# comparison stays same-card and same-call; the cards only share the host (64 CPU cores on nvidia-h100-x4).
#
#   bash bench/gpu_parallel.sh "fastpath+D:30:10 C:20:5 A:20:5 E:20:5" [extra args of bench/scenarios.py]
#
# Job i (0-based) runs on GPU i. A job is SCENARIOS[:STEPS[:WARMUP[:TF_VARIANTS[:FRAMEWORKS]]]] (variants and
# frameworks comma-separated, as bench/scenarios.py takes them); a "fastpath+" prefix first runs
# bench/fastpath_check.py on that card. Set-up (wheels, tokenizer, versions) is bench/gpu_driver.sh's.
# $OUT gets bench_table.md, bench_rows.json, children.log, jobs.log and fastpath.json (bench/merge_results.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bench_out}
JOBS=($1)
shift
BENCH_SETUP_ONLY=1 bash bench/gpu_driver.sh
BUDGET=$(( ${BENCH_BUDGET:-590} - SECONDS ))
TF_PATH=/tmp/site_tf:/tmp/site_common:$PWD/src

run_job() {  # run_job INDEX SPEC [extra args]
  local i=$1 spec=$2 work=/tmp/bench_job_$1
  shift 2
  local start=$SECONDS
  mkdir -p "$work"
  export CUDA_VISIBLE_DEVICES=$i
  if [[ $spec == fastpath+* ]]; then
    spec=${spec#fastpath+}
    PYTHONPATH=$TF_PATH python3 bench/fastpath_check.py --qwen-dir .gpu/qwen --out "$work" >"$work/fastpath.log" 2>&1
  fi
  IFS=: read -r scen steps warmup variants frameworks <<<"$spec"
  PYTHONPATH=/tmp/site_common python3 bench/scenarios.py --scenarios "$scen" --qwen-dir .gpu/qwen --out "$work" \
    --budget $((BUDGET - (SECONDS - start))) ${steps:+--steps $steps} ${warmup:+--warmup $warmup} \
    ${variants:+--tf-variants $variants} ${frameworks:+--frameworks $frameworks} "$@" >"$work/job.log" 2>&1
}

rm -rf /tmp/bench_job_*
for i in "${!JOBS[@]}"; do
  run_job "$i" "${JOBS[$i]}" "$@" &
done
wait
python3 bench/merge_results.py /tmp/bench_job_* --out "$OUT"
