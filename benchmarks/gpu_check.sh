#!/usr/bin/env bash
# The GPU check of predsparse on one CUDA machine, in under 5 minutes (one H200):
#   1. tests/test_triton_kernels.py with the kernels compiled (TRITON_INTERPRET unset, CUDA tensors);
#   2. the layer benchmark (benchmarks/sparse_linear.py --device cuda --quick, through gpu_layer.py for the
#      TF32 switch) in float32 with TF32 off and on, and in bfloat16, against nn.Linear (cuBLAS);
#   3. its --dispatch mode, which measures DENSE_DISPATCH_DENSITY["cuda"];
#   4. a Morse (64, 1024, 64) and an MNIST (784, 224, 10) training epoch, dense and sparse (gpu_epochs.py);
#   5. results/benchmarks/gpu_check.csv (long format) and gpu_check.md (summary), by gpu_check_report.py.
# A failed or timed-out step is recorded in the summary and the others still run; the exit status is 1
# if any step failed, 2 (at once, nothing written) without a CUDA device. Run from the source tree:
#
#     PYTHONPATH=src bash benchmarks/gpu_check.sh
#
# Settings (environment): PYTHON (python3), GPU_CHECK_OUT (results/benchmarks), GPU_CHECK_BUDGET_S (285:
# the whole check's wall time; each step's time limit is cut so that every later step keeps
# GPU_CHECK_STEP_MIN_S, 15, and the summary 5), GPU_CHECK_STEPS (all: "triton_tests layer dispatch
# epochs_morse epochs_mnist"; e.g. only the ones to rerun), GPU_CHECK_LAYER_RUNS ("float32:off float32:on
# bfloat16:off": DTYPE:TF32 of each layer run; TF32 changes float32 matmuls only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
OUT=${GPU_CHECK_OUT:-results/benchmarks}
WORK=$OUT/gpu_check
BUDGET_S=${GPU_CHECK_BUDGET_S:-285}
STEP_MIN_S=${GPU_CHECK_STEP_MIN_S:-15}
REPORT_S=5
ALL_STEPS="triton_tests layer dispatch epochs_morse epochs_mnist"
read -r -a STEPS <<<"${GPU_CHECK_STEPS:-$ALL_STEPS}"
for step in "${STEPS[@]}"; do
    [[ " $ALL_STEPS " == *" $step "* ]] || {
        echo "gpu_check: GPU_CHECK_STEPS entry '$step' is not one of: $ALL_STEPS" >&2
        exit 2
    }
done
wanted() { [[ " ${STEPS[*]} " == *" $1 "* ]]; }
read -r -a LAYER_RUNS <<<"${GPU_CHECK_LAYER_RUNS:-float32:off float32:on bfloat16:off}"
wanted layer || LAYER_RUNS=()
for run in "${LAYER_RUNS[@]}"; do
    [[ $run =~ ^(float32|bfloat16):(on|off)$ ]] || {
        echo "gpu_check: GPU_CHECK_LAYER_RUNS entry '$run' is not DTYPE:TF32 (float32|bfloat16:on|off)" >&2
        exit 2
    }
done
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET          # compiled kernels: the tests interpret them only when this is 1
export TRITON_CACHE_AUTOTUNING=1  # autotuned block sizes kept on disk: later steps reuse earlier ones'

# --- CUDA probe: fail fast, write nothing ------------------------------------------------------------
rc=0
probe_err=$(mktemp)
trap 'rm -f -- "$probe_err"' EXIT
probe=$(timeout 90 "$PY" - 2>"$probe_err" <<'EOF'
import datetime, json, platform, subprocess, sys
import torch
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU build'}) sees no GPU"
          f" (torch.cuda.is_available() is False)")
    sys.exit(3)
from predsparse.nn.functional import DENSE_DISPATCH_DENSITY
try:
    import triton
    triton_version = triton.__version__
except ImportError as error:
    triton_version = f"not importable ({error})"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(json.dumps({
    "device": torch.cuda.get_device_name(0), "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
    "gpus": str(torch.cuda.device_count()), "torch": torch.__version__, "cuda": str(torch.version.cuda),
    "triton": triton_version, "python": platform.python_version(), "commit": commit or "unknown",
    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    "DENSE_DISPATCH_DENSITY": str(DENSE_DISPATCH_DENSITY.get("cuda")),
}))
EOF
) || rc=$?
if ((rc == 3)); then
    echo "no CUDA device: $probe" >&2
    exit 2
elif ((rc != 0)); then
    echo "gpu_check: the CUDA probe ($PY, PYTHONPATH=$PYTHONPATH) failed with exit status $rc:" \
        "$(tail -n 1 "$probe_err")" >&2
    exit 2
fi

rm -rf -- "${WORK:?}"
mkdir -p "$WORK"
printf '%s\n' "$probe" >"$WORK/env.json"
echo "GPU check on $("$PY" -c 'import json, sys; print(json.load(sys.stdin)["device"])' <"$WORK/env.json");" \
    "logs in $WORK/, budget ${BUDGET_S} s"

# --- steps ---------------------------------------------------------------------------------------------
STEPS_LEFT=$((${#STEPS[@]} + ${#LAYER_RUNS[@]} - (${#LAYER_RUNS[@]} > 0 ? 1 : 0)))

# run_step NAME MAX_S COMMAND...: runs COMMAND with its output in $WORK/NAME.log, under a time limit of
# MAX_S seconds cut so that the later steps and the summary keep their share of the budget; records
# "name, exit status, seconds, limit, note" in steps.tsv. Never fails itself.
run_step() {
    local name=$1 max_s=$2 rc=0 start end
    shift 2
    STEPS_LEFT=$((STEPS_LEFT - 1))
    local limit=$((BUDGET_S - SECONDS - REPORT_S - STEPS_LEFT * STEP_MIN_S))
    ((limit > max_s)) && limit=$max_s
    if ((limit < 5)); then
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" 125 0 "$limit" "not run: the time budget was spent" >>"$WORK/steps.tsv"
        echo "  $name: NOT RUN (time budget spent)"
        return 0
    fi
    start=$(date +%s%N)
    timeout --kill-after=5 "$limit" "$@" >"$WORK/$name.log" 2>&1 </dev/null || rc=$?
    end=$(date +%s%N)
    local seconds
    seconds=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    printf '%s\t%s\t%s\t%s\t\n' "$name" "$rc" "$seconds" "$limit" >>"$WORK/steps.tsv"
    if ((rc == 0)); then
        echo "  $name: ok (${seconds} s)"
    elif ((rc == 124 || rc == 137)); then
        echo "  $name: TIMED OUT after ${limit} s (log: $WORK/$name.log)"
    else
        echo "  $name: FAILED, exit status $rc (${seconds} s; log: $WORK/$name.log)"
    fi
}

wanted triton_tests && run_step triton_tests 90 \
    "$PY" -m pytest -q -p no:cacheprovider --junitxml="$WORK/triton_tests.xml" tests/test_triton_kernels.py

for run in "${LAYER_RUNS[@]}"; do
    dtype=${run%%:*} tf32=${run##*:}
    name=layer_${dtype}_tf32_${tf32}
    PREDSPARSE_TF32=$([[ $tf32 == on ]] && echo 1 || echo 0) \
        run_step "$name" 75 "$PY" benchmarks/gpu_layer.py --device cuda --dtype "$dtype" --quick --out "$WORK/$name"
done

wanted dispatch && PREDSPARSE_TF32=0 run_step dispatch 90 \
    "$PY" benchmarks/gpu_layer.py --device cuda --dtype float32 --dispatch --quick --out "$WORK/dispatch"

for dataset in morse mnist; do
    wanted "epochs_$dataset" && run_step "epochs_$dataset" "$([[ $dataset == morse ]] && echo 60 || echo 45)" \
        "$PY" benchmarks/gpu_epochs.py --device cuda --dataset "$dataset" --out "$WORK/epochs_$dataset"
done

# --- summary -------------------------------------------------------------------------------------------
rc=0
"$PY" benchmarks/gpu_check_report.py "$WORK" --csv "$OUT/gpu_check.csv" --md "$OUT/gpu_check.md" \
    --total-s "$SECONDS" || rc=$?
if ((rc > 1)); then
    echo "gpu_check: the summary failed (exit status $rc); step results: $WORK/steps.tsv" >&2
    {
        echo "# GPU check: the summary script failed (exit status $rc)"
        echo
        echo "Steps (name, exit status, seconds, time limit, note):"
        echo
        sed 's/^/    /' "$WORK/steps.tsv"
    } >"$OUT/gpu_check.md"
    exit 1
fi
echo "gpu check done in ${SECONDS} s: $OUT/gpu_check.md"
exit "$rc"
