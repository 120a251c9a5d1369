#!/usr/bin/env bash
# GPU check for the learner, one run (under ~8 minutes on an H100/H200):
#   1. every policy family in workers/policies/factory.py's FAMILIES, tiny model, on CUDA in bf16:
#      encoders offloaded, sample, decode, the batched old/reference pass, one NFT learner epoch
#      (the gpu-marked tests of tests/workers/test_policies_on_cuda.py, one family at a time), plus
#      the other gpu-marked tests of the policies and the learner bench;
#   2. bench-learner at FLUX.1 Kontext [dev] and Qwen-Image-Edit size (random weights, no downloads);
#   3. the reward API with RAFT (random weights, speed only), one flow batch size.
# Runs on any CUDA machine with torch + torchvision; wheels in .whl/ (if present) fill in the rest
# (diffusers, transformers, peft, pydantic, ...). A failing part is reported and the next still runs.
# Usage: OUT=dir bash benchmarks/gpu_learner.sh
#   writes $OUT/benchmarks.md (docs/benchmarks.md with the bench-learner section replaced),
#   $OUT/reward.md, one log per part, and prints a summary; exits 1 if any part failed.
set -uo pipefail
OUT=${OUT:-/tmp/motionnft-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
started=$SECONDS
summary=()
failed=0

part() {  # part NAME LOG COMMAND...: run, keep the log, record pass/fail and seconds
  local name=$1 log=$2 began=$SECONDS
  shift 2
  if "$@" >"$log" 2>&1; then
    summary+=("ok     $name ($((SECONDS - began)) s)")
  else
    summary+=("FAILED $name ($((SECONDS - began)) s): see $log")
    failed=1
  fi
  tail -3 "$log"
}

families=$(python3 -c "from workers.policies.factory import FAMILIES; print(' '.join(sorted(FAMILIES)))")
for family in $families; do
  part "tiny $family on CUDA, bf16: sample + one NFT epoch" "$OUT/tiny_$family.log" \
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/workers/test_policies_on_cuda.py -k "$family"
done
part "other gpu-marked tests (policies, bench)" "$OUT/gpu_tests.log" \
  python3 -m pytest -q -p no:cacheprovider -m gpu tests/workers tests/benchmarks \
  --ignore=tests/workers/test_policies_on_cuda.py
cp docs/benchmarks.md "$OUT/benchmarks.md"
part "bench-learner at FLUX.1 Kontext and Qwen-Image-Edit size" "$OUT/bench_learner.log" \
  python3 -m benchmarks.bench_learner --out "$OUT/benchmarks.md"
part "reward API with RAFT (random weights)" "$OUT/bench_reward.log" \
  python3 -m benchmarks.bench_reward --backend raft_large --device cuda --batch-sizes 32 --sizes 512 \
  --allow-random-weights --groups 8 --section bench-reward-gpu --out "$OUT/reward.md"

echo
echo "== summary ($((SECONDS - started)) s) =="
printf '%s\n' "${summary[@]}"
grep -E '^\| (FLUX|Qwen)' "$OUT/bench_learner.log" || true
grep -E '^\| 512x512' "$OUT/bench_reward.log" || true
exit $failed
