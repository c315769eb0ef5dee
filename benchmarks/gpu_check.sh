#!/usr/bin/env bash
# Everything a lent GPU machine should check, in one command (about 5-8 minutes on one H100):
#   1. the GPU test suite: tests/gpu (marked `cuda`) and tests/engine/test_device.py;
#   2. the demo config kiln::shapes/retinanet_r18_fpn_shapes.py for a few hundred iterations on the
#      GPU (2 epochs x 125 iterations, validation COCO AP after each), then `kiln infer` on 4 images;
#   3. the detector benchmarks: benchmarks/detector_step.py (RetinaNet vs torchvision) and
#      benchmarks/two_stage_step.py (Faster R-CNN vs torchvision);
# and writes one summary (timings, it/s, peak memory, AP, test counts): $OUT/gpu_summary.md when
# $OUT is set, else ./gpu_summary.md. Logs of every step go next to it (gpu_check/).
#
# Usage:
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run       # tiny sizes on the CPU: checks this script anywhere
#   options: --device cuda|cuda:N|cpu   --budget SECONDS (default 470, dry run 1500: later steps
#            get what is left and are skipped when it is spent)
#
# Needs no internet. Python: $PY if set, else .venv/bin/python, built like `make test` builds it
# (the Makefile's .venv/.kiln-installed rule, from requirements/ci.txt) when it is missing.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

DEVICE=cuda
DRY=0
BUDGET=
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; DEVICE=cpu ;;
    --device) DEVICE="$2"; shift ;;
    --device=*) DEVICE="${1#--device=}" ;;
    --budget) BUDGET="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# The GPU run must fit its ~8 minutes; a dry run on a small CPU machine may take longer.
if [ -z "$BUDGET" ]; then if [ "$DRY" = 1 ]; then BUDGET=1500; else BUDGET=470; fi; fi
DEST="${OUT:-$REPO}"
WORK="$DEST/gpu_check"
SUMMARY="$DEST/gpu_summary.md"
rm -rf "$WORK"
mkdir -p "$WORK"
# Bulky outputs (generated images, checkpoints) stay out of $OUT; logs and metrics are copied back.
BULK="$(mktemp -d "${TMPDIR:-/tmp}/kiln_gpu_check.XXXXXX")"
trap 'rm -rf "$BULK"' EXIT
: > "$WORK/steps.tsv"
START=$(date +%s)

# ---------------------------------------------------------------- python (reuse or build .venv)
VENV="${VENV:-.venv}"
PY="${PY:-$VENV/bin/python}"
if ! "$PY" -c "import torch, numpy" >/dev/null 2>&1; then
  echo "== building $VENV like 'make test' (requirements/ci.txt)"
  if command -v make >/dev/null 2>&1; then
    make "$VENV/.kiln-installed" PYTHON="${PYTHON:-python3}" VENV="$VENV" > "$WORK/venv.log" 2>&1
  else
    { test -x "$VENV/bin/python" || "${PYTHON:-python3}" -m venv "$VENV"
      "$VENV/bin/python" -m pip install -q --upgrade "pip>=23" "setuptools>=64" wheel
      "$VENV/bin/python" -m pip install -q -r requirements/ci.txt
      "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . ; } > "$WORK/venv.log" 2>&1
  fi
  PY="$VENV/bin/python"
fi
# This checkout's kiln, whatever the venv has installed.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export KILN_DATA="${KILN_DATA:-$BULK/data}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"

# ---------------------------------------------------------------- step runner
# step NAME CAP_SECONDS CMD...: runs CMD with a timeout of min(CAP, what is left of the budget),
# its output in $WORK/NAME.log; one line per step in steps.tsv (name, status, seconds, exit code).
step() {
  local name="$1" cap="$2"; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  local limit=$(( cap < left ? cap : left ))
  if [ "$limit" -lt 15 ]; then
    printf '%s\tskipped (budget spent)\t0\t-\n' "$name" >> "$WORK/steps.tsv"
    echo "== $name: skipped, the ${BUDGET}s budget is spent"
    return 0
  fi
  echo "== $name (up to ${limit}s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timed out"; elif [ $rc -ne 0 ]; then status=failed; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$rc" >> "$WORK/steps.tsv"
  echo "   $status in ${secs}s"
  tail -n 3 "$WORK/$name.log" | sed 's/^/   | /'
}

# ---------------------------------------------------------------- sizes
if [ "$DRY" = 1 ]; then
  DEMO_OPTS=(data.train.num_images=16 data.train.image_size=64 data.val.num_images=4 data.val.image_size=64
             data.test.num_images=4 data.test.image_size=64 data.samples_per_gpu=4 data.workers_per_gpu=0
             total_epochs=1 log_config.interval=1 lr_config.warmup_iters=2)
  DET_ARGS=(--size 64 --batch 1 --steps 1 --infer-iters 1 --rounds 1)
  TWO_ARGS=(--size 64 --batch 1 --repeat 1)
  CAP_SUITE=300; CAP_DEMO=240; CAP_INFER=120; CAP_DET=240; CAP_TWO=120
else
  DEMO_OPTS=(data.train.num_images=1000 data.val.num_images=200 data.test.num_images=200
             data.samples_per_gpu=8 data.workers_per_gpu=8 total_epochs=2 log_config.interval=25)
  DET_ARGS=(--size 512 --batch 4 --steps 10 --infer-iters 10 --rounds 1)
  TWO_ARGS=(--size 512 --batch 2 --repeat 5)
  CAP_SUITE=270; CAP_DEMO=130; CAP_INFER=45; CAP_DET=60; CAP_TWO=45
fi

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')   device: $DEVICE   dry run: $DRY   budget: ${BUDGET}s"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda',
torch.version.cuda, '| available', torch.cuda.is_available(), '| devices', torch.cuda.device_count(),
'|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  echo "cpus: $(nproc)"
} > "$WORK/env.log" 2>&1
cat "$WORK/env.log"

# ---------------------------------------------------------------- 1. the GPU test suite
step suite "$CAP_SUITE" "$PY" -m pytest tests/gpu tests/engine/test_device.py -q -rfEs -p no:cacheprovider \
  --basetemp="$BULK/pytest" --junitxml="$WORK/gpu_junit.xml"

# ---------------------------------------------------------------- 2. the demo config + infer
step demo "$CAP_DEMO" "$PY" -m kiln train kiln::shapes/retinanet_r18_fpn_shapes.py --work-dir "$BULK/demo" \
  --device "$DEVICE" --cfg-options "${DEMO_OPTS[@]}"
mkdir -p "$WORK/demo" "$WORK/demo_infer"
cp "$BULK/demo/metrics.jsonl" "$BULK/demo/log.txt" "$BULK/demo/config.py" "$WORK/demo/" 2>/dev/null
if [ -f "$BULK/demo/last_checkpoint" ]; then
  step demo_infer "$CAP_INFER" "$PY" -m kiln infer "$BULK/demo/config.py" "$BULK/demo" --dataset-images 4 \
    --device "$DEVICE" --out-dir "$BULK/demo_infer"
  cp "$BULK/demo_infer/predictions.json" "$WORK/demo_infer/" 2>/dev/null
fi

# ---------------------------------------------------------------- 3. the detector benchmarks
step detector_step "$CAP_DET" "$PY" benchmarks/detector_step.py --device "$DEVICE" "${DET_ARGS[@]}"
step two_stage_step "$CAP_TWO" "$PY" benchmarks/two_stage_step.py --device "$DEVICE" "${TWO_ARGS[@]}"

# ---------------------------------------------------------------- summary
"$PY" benchmarks/gpu_summary.py "$WORK" "$SUMMARY"
echo "total: $(( $(date +%s) - START ))s; summary: $SUMMARY"
grep -q '^\*\*ALL OK' "$SUMMARY"
