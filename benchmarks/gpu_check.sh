#!/usr/bin/env bash
# One call for whoever has a GPU: every `cuda` test, then the GPU benchmarks, in < 5 min.
# Needs python3 with torch (CUDA), pytest and hypothesis; gradbasics is used from src/.
# Usage: bash benchmarks/gpu_check.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/gpu-check}"
mkdir -p "$out"
export PYTHONPATH="src:tests${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'
timeout 150 python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" \
    -W ignore::pytest.PytestUnraisableExceptionWarning tests 2>&1 | tee "$out/cuda-tests.log"
tests=${PIPESTATUS[0]}
timeout 120 python3 benchmarks/run.py --device cuda --only gpu --json "$out/gpu-bench.json" \
    2>&1 | tee "$out/gpu-bench.log"
bench=${PIPESTATUS[0]}
echo "cuda tests exit $tests, gpu benchmarks exit $bench"
exit $(( tests != 0 || bench != 0 ))
