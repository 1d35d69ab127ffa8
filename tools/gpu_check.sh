#!/usr/bin/env bash
# The GPU check: the CUDA-only tests (tests/test_gpu.py: bf16 and fp32 training steps of every method
# and stage without a host sync, evaluation on the GPU equal to the CPU's) on a CUDA machine that has
# torch, numpy, scipy and pytest but maybe no network. Writes a report (device, versions, per-test
# outcome and time) to REPORT_DIR (default: ./gpu-report), then the performance report (bench speed of
# every method at the ssl4mis and paper settings in fp32 and bf16, 1/2/4 concurrent runs) to PERF_DIR
# (default: docs/perf). Usage: tools/gpu_check.sh [REPORT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-report}"
mkdir -p "$out"
# install the package without the network: a plain copy in the layout its imports expect
site="$(mktemp -d)"
cp -r benchmark "$site/sslbench"
cp -r methods "$site/sslbench/methods"
cp -r datasets "$site/sslbench/datasets"
cp -r configs "$site/sslbench/configs"
export PYTHONPATH="$site" PYTHONUNBUFFERED=1
{
  echo "# GPU check"
  echo
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /'
  python3 -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)"
} > "$out/header.txt"
python3 -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib" tests/test_gpu.py \
  -rA --durations=15 --junitxml="$out/gpu.xml" 2>&1 | tee "$out/pytest.log"
code=${PIPESTATUS[0]}
{
  cat "$out/header.txt"
  echo
  echo '```'
  grep -E "passed|failed|error" "$out/pytest.log" | tail -1
  echo '```'
  echo
  echo "Slowest tests:"
  echo
  echo '```'
  sed -n '/slowest/,/^$/p' "$out/pytest.log" | head -20
  echo '```'
  if grep -qE "^(FAILED|ERROR)" "$out/pytest.log"; then
    echo; echo "Failures:"; echo; echo '```'; grep -E "^(FAILED|ERROR)" "$out/pytest.log"; echo '```'
  fi
} > "$out/report.md"
cat "$out/report.md"
# the performance half: bench speed of every method (ssl4mis, paper; fp32, bf16) and 1/2/4 concurrent
# runs, written to docs/perf/ (PERF_DIR); GPU_CHECK_CPU_SMOKE=1 runs it at tiny sizes on the CPU
if [ "${GPU_CHECK_SKIP_PERF:-0}" != "1" ]; then
  smoke=""; [ "${GPU_CHECK_CPU_SMOKE:-0}" = "1" ] && smoke="--cpu-smoke"
  python3 -m sslbench.run.perf_report --out "${PERF_DIR:-docs/perf}" $smoke || code=1
fi
exit "$code"
