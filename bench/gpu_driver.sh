#!/usr/bin/env bash
# Side-by-side GPU benchmark on a lent machine (no network), from the repo root:
#
#   bash bench/gpu_driver.sh A,C,D,E [extra args of bench/scenarios.py, e.g. --steps 20 --warmup 5 --budget 540]
#   BENCH_BUDGET=0 bash bench/gpu_driver.sh A      # no time budget (default: 590 s minus set-up, see below)
#
# Needs the ignored folders .whl (wheels) and .gpu (qwen.tar.xz: Qwen2.5-0.5B-Instruct config + tokenizer) carried.
# Wheels: .whl/common -> /tmp/site_common (every process), .whl/tf -> /tmp/site_tf (tuneforge children, before
# the repo's src/), .whl/lf -> /tmp/site_lf (LLaMA-Factory children). Results go to $OUT: bench_table.md,
# bench_rows.json (both rewritten after every run, so a command cut short keeps its finished rows), children.log.
set -uo pipefail
export BENCH_COMMAND="bash bench/gpu_driver.sh $*"
cd "$(dirname "$0")/.."
SCENARIOS=${1:-A,C,D,E}
shift || true
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"

install_wheels() {  # install_wheels SRC_DIR TARGET_DIR
  local src=$1 dst=$2
  if ! compgen -G "$src/*.whl" >/dev/null; then
    echo "no wheels in $src (skipped)"
    return 0
  fi
  local start=$SECONDS
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$dst" "$src"/*.whl \
    && echo "installed $(ls "$src"/*.whl | wc -l) wheels from $src into $dst in $((SECONDS - start)) s"
}

install_wheels .whl/common /tmp/site_common
install_wheels .whl/tf /tmp/site_tf
install_wheels .whl/lf /tmp/site_lf

if [ -f .gpu/qwen.tar.xz ] && [ ! -f .gpu/qwen/config.json ]; then
  rm -rf .gpu/qwen .gpu/_qwen_x && mkdir -p .gpu/_qwen_x
  tar -xJf .gpu/qwen.tar.xz -C .gpu/_qwen_x
  mv "$(dirname "$(find .gpu/_qwen_x -name config.json | head -n 1)")" .gpu/qwen && rm -rf .gpu/_qwen_x
fi
ls .gpu/qwen

nvidia-smi -L
versions='import importlib.metadata as m
for n in ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "liger-kernel", "llamafactory"):
    try: print(f"  {n} {m.version(n)}")
    except m.PackageNotFoundError: pass'
for env in "common:/tmp/site_common" "tuneforge:/tmp/site_tf:/tmp/site_common:$PWD/src" "lf:/tmp/site_lf:/tmp/site_common"; do
  echo "${env%%:*} env:"
  PYTHONPATH=${env#*:} python3 -c "$versions"
done
PYTHONPATH=/tmp/site_tf:/tmp/site_common:$PWD/src python3 -c "import tuneforge; print('  tuneforge', tuneforge.__version__)"

[ "${BENCH_SETUP_ONLY:-0}" = 1 ] && exit 0

# Default time budget: the device's 600 s per command, less what this script has used (BENCH_BUDGET=0: none; a
# --budget among the extra args wins, being later on the command line).
BUDGET=${BENCH_BUDGET:-590}
budget_args=()
[ "$BUDGET" -gt 0 ] && budget_args=(--budget $((BUDGET - SECONDS)))
PYTHONPATH=/tmp/site_common python3 bench/scenarios.py --scenarios "$SCENARIOS" --qwen-dir .gpu/qwen --out "$OUT" \
  "${budget_args[@]}" "$@"
