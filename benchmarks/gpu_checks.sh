#!/usr/bin/env bash
# The GPU measurements still open in issues 2 (inference overhead) and 4 (batch pipeline), as one prepared run of
# at most 9 minutes on an H100 (the step limits add up to 540 s; a device call may run 600 s). Needs the project's
# dependencies importable (the checkout goes on PYTHONPATH; torch, timm, safetensors, pillow and pycocotools must be
# installed). Each step's output is also written to $OUT/<step>.txt.
#
#     bash benchmarks/gpu_checks.sh            # everything
#     STEPS="tests batch" bash benchmarks/gpu_checks.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/mpae-gpu-checks}
STEPS=${STEPS:-"tests inference inference-compiled batch batch-maps-only batch-cpu-only handover"}
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep going when one fails
    local name=$1 limit=$2
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "### $name: $*"
    timeout "$limit" "$@" 2>&1 | grep -v "RANDOM weights" | tee "$OUT/$name.txt"
    echo "### $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
step tests 75 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_inference.py tests/test_resize.py
step inference 90 "$PY" benchmarks/bench_inference.py --device cuda --sizes 224 448 --batches 1 8 --repeats 20 \
    --warmup 5 --markdown
step inference-compiled 120 "$PY" benchmarks/bench_inference.py --device cuda --sizes 224 448 --batches 8 \
    --repeats 20 --warmup 5 --markdown --compile-partformer  # batch 8 only: each shape compiles anew
step batch 90 "$PY" benchmarks/bench_batch.py --device cuda --markdown  # maps and resize on the GPU
step batch-maps-only 60 "$PY" benchmarks/bench_batch.py --device cuda --resize workers --repeats 1 --markdown
step batch-cpu-only 60 "$PY" benchmarks/bench_batch.py --device cuda --maps encoders --resize workers --repeats 1 \
    --markdown
step handover 45 "$PY" benchmarks/bench_batch_handover.py --images 48 --rounds 2 --workers 4 --markdown
