#!/usr/bin/env bash
# The GPU rows of issues #4 and #6, side by side on one lent GPU, inside one command of a time-limited
# lease (each training ends by its wall budget, then evaluates, samples and stores its row):
#
#   DGM_DATA_DIR=../shared/data bash benchmarks/gpu_runs.sh LOG_DIR MINUTES [resume]
#
# MINUTES is each training's wall budget. The five trainings share the GPU (each row's budget column says
# so), and the test suite runs beside them, with the GPU visible, on three workers. 'resume' continues the
# checkpointed flow and PixelCNN runs (--resume) up to MINUTES in all instead of starting them afresh. Rows land in
# benchmarks/rows/ and benchmarks/figures/ as with any benchmark run; each job's output in LOG_DIR.
#
# Measured with it on 2026-11-26 (one H200): five processes time-slicing one GPU ran each step several times
# slower than alone (MADE 2x8000: 29.8 ms against 5.6 ms alone; PixelCNN: 29 ms at the start, 54 ms over
# the run), and MintNet's budget plus its test pass and sampling outran the 10-minute command. One training
# per command uses a lease better (benchmarks/lease.sh runs one across a lease's commands); this script
# remains for a machine with the time to share.
set -u
out=${1:?usage: gpu_runs.sh LOG_DIR MINUTES [resume]}
minutes=${2:?usage: gpu_runs.sh LOG_DIR MINUTES [resume]}
resume=${3:-}
mkdir -p "$out"
export PYTHONPATH=src:. PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    $py -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
    nproc
} > "$out/machine.txt" 2>&1
note="the GPU shared by 5 training jobs"
flags=(--device cuda --threads 2 --quiet --shared-note "$note")
[ "$resume" = resume ] && flow_resume=(--resume) || flow_resume=()  # the PixelCNN runs take it too
later=$(python3 -c "print($minutes - 0.3)")  # the two PixelCNN runs finish apart: they share one store file

# MADE sizes its cosine schedule from a measured epoch: it starts 45 s later, once the other jobs (and
# the test suite) load the GPU as they will while it trains.
made_minutes=$(python3 -c "print($minutes - 0.75)")
(sleep 45 && $py -m benchmarks.autoregressive_mlp --models made-2x8000-oa-gpu --max-minutes "$made_minutes" \
    --fit-share 0.75 "${flags[@]}" > "$out/made.log" 2>&1) &
$py -m benchmarks.flows_mnist --models realnvp-gpu --max-minutes "$minutes" "${flags[@]}" "${flow_resume[@]}" \
    > "$out/realnvp.log" 2>&1 &
$py -m benchmarks.flows_mnist --models mintnet-gpu --max-minutes "$minutes" "${flags[@]}" "${flow_resume[@]}" \
    > "$out/mintnet.log" 2>&1 &
$py -m benchmarks.pixelcnn --models pixelcnn --max-minutes "$minutes" "${flags[@]}" "${flow_resume[@]}" \
    > "$out/pixelcnn.log" 2>&1 &
$py -m benchmarks.pixelcnn --models gated-pixelcnn --max-minutes "$later" "${flags[@]}" "${flow_resume[@]}" \
    > "$out/gated.log" 2>&1 &
if [ "$resume" != resume ]; then
    timeout 300 $py -m pytest -q -p no:cacheprovider -n 3 tests > "$out/pytest.log" 2>&1
    echo "pytest rc=$?" >> "$out/pytest.log"
fi
wait
