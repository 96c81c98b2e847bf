#!/usr/bin/env bash
# Verifies the CUDA paths on a lent GPU machine (not run by CI, which has no GPU).
# Usage there: bash .ci/device-check.sh [SECTION ...]; with none, every section runs.
# Sections: tests cudatests selftest build suite overhead models. Logs and records go to
# $OUT (or ./device-out).
set -uo pipefail
OUT=${OUT:-device-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%T)"; }
quiet() { grep -v '^\[transformers\]'; }

tests()     { python3 -m pytest tests -q -p no:cacheprovider -rfE 2>&1 | tail -40; }
cudatests() { python3 -m pytest tests/test_cuda.py -v -p no:cacheprovider -rfE 2>&1 | tail -40; }
selftest()  { chipbench selftest --backend cpu,cuda 2>&1 | quiet; }
build()     { for m in qwen3-0.6b qwen3-8b; do chipbench build $m --device cuda; done; }
suite()     { pytest --benchmark --bench-out "$OUT/runs.jsonl" --benchmark-json "$OUT/bench.json" \
                -p no:cacheprovider 2>&1 | sed -n '/chipbench results/,/skipped backend/p;/passed\|failed/p'; }
overhead()  { python3 -m bench.measuring.overhead --backend cuda --model qwen3-8b --dtype bf16 --tokens 64 --rounds 7 2>&1 | quiet; }
models()    { chipbench run --backend cuda --model qwen3-30b-a3b,qwen3.5-9b --workload pp512,tg128 \
                --rounds 3 --out "$OUT/runs.jsonl" 2>&1 | quiet; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
python3 -c "import torch, transformers, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
step "install (offline, no deps)"
python3 -m pip install -q --no-deps --no-build-isolation -e . || { echo "editable install failed"; exit 1; }

sections=("$@"); [ ${#sections[@]} -eq 0 ] && sections=(tests selftest build suite overhead models)
for s in "${sections[@]}"; do step "$s"; "$s"; done
step "done"
