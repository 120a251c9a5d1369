#!/usr/bin/env bash
# GPU check for the reward: the gpu-marked tests, then the RAFT tables of bench-reward on CUDA.
# Runs on any CUDA machine with torch + torchvision; wheels in .whl/ (if present) fill in the rest.
# Usage: OUT=dir bash benchmarks/gpu_reward.sh   (writes $OUT/benchmarks.md and $OUT/gpu_tests.log)
set -euo pipefail
OUT=${OUT:-/tmp/motionnft-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/motionnft 2>&1 | tee "$OUT/gpu_tests.log" | tail -3
python3 -m benchmarks.bench_reward --backend raft_large --device cuda --batch-sizes 8 32 \
  --allow-random-weights --groups 12 --section bench-reward-gpu --out "$OUT/benchmarks.md"
