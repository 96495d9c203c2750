#!/usr/bin/env bash
# The GPU check, on a fresh GPU machine with only this repository checked out (and
# PyPI reachable): the project's environment (make venv protos), vLLM's CUDA
# environment (make vllm-env VLLM_PACKAGE=vllm), full-size random-weight models
# (bench/models.py), then `python -m bench --full-size` on the local stack with the
# LLM on vLLM, sized to fit 10 minutes on one H100 (an estimate: not yet run on a
# GPU). The report judges the GPU targets (TTS first chunk p50 <= 150 ms at c=1,
# RTF <= 0.05 at c=4).
#
#   bench/gpu_check.sh [OUT]        # the report into OUT (default bench/results/gpu)
#
# Settings (environment): LLM_ENGINE (vllm; vllm,transformers adds the old loop's
# stack and the comparison, several minutes more), MAX_TOKENS (150: 3 s of speech a
# sentence), REQUESTS (6 per level), DEADLINE_S (570: the bench is stopped that many
# seconds after this script started), PYTHON.
set -euo pipefail

START=$SECONDS
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/bench/results/gpu}  # a relative OUT is the caller's
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LLM_ENGINE=${LLM_ENGINE:-vllm}
MAX_TOKENS=${MAX_TOKENS:-150}
REQUESTS=${REQUESTS:-6}
DEADLINE_S=${DEADLINE_S:-570}
PYTHON=${PYTHON:-python3}
MODELS=${MODELS:-$REPO/.bench-models}
cd "$REPO"
TIMINGS=$OUT/gpu_check-timings.txt
: > "$TIMINGS"

# step NAME COMMAND...: runs the command, prints and records how long it took, and
# returns its status.
step() {
  local name=$1 began=$SECONDS status=0
  shift
  echo "== $name (at +$((began - START)) s)"
  "$@" || status=$?
  echo "== $name: $((SECONDS - began)) s$( ((status == 0)) || echo ", FAILED (exit $status)")" \
    | tee -a "$TIMINGS"
  return "$status"
}

# shellcheck disable=SC2329  # called through step
write_models() {
  .venv/bin/python -c 'import sys; from pathlib import Path
from bench.models import full_size
print(full_size(Path(sys.argv[1])))' "$MODELS"
}

step "GPU" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "project environment (make venv protos)" make venv protos PYTHON="$PYTHON"

# vLLM's CUDA environment installs while the models are written (pip waits on the
# network, the models on the CPU and disk).
VLLM_LOG=$OUT/gpu_check-vllm-env.log
began=$SECONDS
echo "== vLLM environment (make vllm-env VLLM_PACKAGE=vllm), in the background; log $VLLM_LOG"
make vllm-env VLLM_PACKAGE=vllm PYTHON="$PYTHON" > "$VLLM_LOG" 2>&1 &
vllm_env=$!
step "full-size random-weight models ($MODELS)" write_models
if ! wait "$vllm_env"; then
  tail -n 40 "$VLLM_LOG" >&2
  echo "make vllm-env VLLM_PACKAGE=vllm failed (log above)" >&2
  exit 1
fi
echo "== vLLM environment: $((SECONDS - began)) s (beside the models)" | tee -a "$TIMINGS"

left=$((DEADLINE_S - (SECONDS - START)))
if ((left < 120)); then
  echo "only $left s left before the ${DEADLINE_S} s deadline: not starting the bench" >&2
  exit 1
fi
# The first chunk target is the per-layer run's TTS service row (c=1); the RTF target
# is the tts scenario at c=4. SIGTERM stops the bench and its stack cleanly; the report
# is written once each engine's stack has been measured (none if stopped before).
# The bench names its report by the time it started, so the report is the .md file
# that was not there before (file times are too coarse to tell a report written in
# the same second as a marker).
bench_status=0
reports_before=$(find "$OUT" -maxdepth 1 -name '*.md' -print | sort)
step "bench (--full-size, --llm-engine $LLM_ENGINE, at most $left s)" \
  timeout --signal=TERM --kill-after=20 "$left" \
  .venv/bin/python -m bench --full-size --models-cache "$MODELS" \
  --llm-engine "$LLM_ENGINE" \
  --scenarios tts,pipeline_stream --concurrency 1,4 --requests "$REQUESTS" \
  --max-tokens "$MAX_TOKENS" --layer-requests 3 \
  --llm-concurrency 1,4,16 --llm-requests 8 \
  --no-rvc-workers --no-baseline --out "$OUT" || bench_status=$?

echo "== total: $((SECONDS - START)) s" | tee -a "$TIMINGS"
report=$(comm -13 <(echo "$reports_before") \
  <(find "$OUT" -maxdepth 1 -name '*.md' -print | sort) | tail -n 1)
echo "report: ${report:-none written}"
exit "$bench_status"
