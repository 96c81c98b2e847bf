#!/usr/bin/env bash
# Verifies the CUDA paths on a lent GPU machine (not run by CI, which has no GPU).
# Usage there: bash .ci/device-check.sh [quick|full]; logs and records go to $OUT (or ./device-out).
set -uo pipefail
OUT=${OUT:-device-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%T)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
python3 -c "import torch, transformers, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"

step "install (offline, no deps)"
python3 -m pip install -q --no-deps --no-build-isolation -e . || { echo "editable install failed"; exit 1; }

step "unit tests, CUDA tests included"
python3 -m pytest tests -q -p no:cacheprovider 2>&1 | tail -15

step "timing self-test"
chipbench selftest --backend cpu,cuda
chipbench selftest --backend cuda --model qwen3-0.6b --dtype bf16

step "random-weight build time"
chipbench build qwen3-0.6b --device cuda
chipbench build qwen3-8b --device cuda

step "pytest --benchmark (default suite on every backend)"
pytest --benchmark --bench-out "$OUT/runs.jsonl" --benchmark-json "$OUT/bench.json" -p no:cacheprovider 2>&1 | sed -n '/chipbench results/,/skipped backend/p;/passed\|failed/p'

step "harness overhead and generate() on cuda"
python3 -m bench.overhead --backend cuda --model qwen3-8b --dtype bf16 --tokens 128 2>&1 | grep -v '^\[transformers\]'

if [ "${1:-quick}" = full ]; then
  step "more models on cuda"
  chipbench run --backend cuda --model qwen3-30b-a3b,qwen3.5-9b --workload pp512,tg128 --rounds 3 --out "$OUT/runs.jsonl" 2>&1 | grep -v '^\[transformers\]'
fi
step "done"
