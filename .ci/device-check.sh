#!/usr/bin/env bash
# Verifies the CUDA paths on a lent GPU machine (not run by CI, which has no GPU).
# Usage there: bash .ci/device-check.sh [SECTION ...]; with none, every section runs.
# Sections: tests cudatests selftest build suite overhead models issue9 issue9b lease lease2. First, here: bash
# .ci/device-wheels.sh, then run it with carry [".whl"]. Logs and records go to
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
overhead()  { python3 -m chipbench.measuring.overhead --backend cuda --model qwen3-8b --dtype bf16 --tokens 64 --rounds 7 2>&1 | quiet; }
# Issue 9's GPU list, most important first, each run capped so one slow compile cannot eat the rest
# (a cold inductor compile of a 36-layer decode step may take a minute or two; the compiled
# self-test and each new batch / length compile once). issue9 fits one ~590 s call: qwen3-8b
# batch-1 decode eager vs compiled with the correctness gate (the 70% MBU target), then qwen3-0.6b's
# grid. issue9b, a second call while the machine is warm: qwen3-8b batch 16 and pp512, and an
# interleaved A/B of the two modes. Records go to $OUT/issue9*.jsonl as each case finishes.
issue9()    { local o="$OUT/issue9.jsonl"
              timeout 380 chipbench run --backend cuda --model qwen3-8b --workload tg128 --batch 1 \
                --mode compiled,eager --rounds 5 --out "$o" 2>&1 | quiet
              timeout 170 chipbench run --backend cuda --model qwen3-0.6b --workload pp512,tg128 --batch 1,16 \
                --mode compiled,eager --rounds 5 --no-check --out "$o" 2>&1 | quiet; }
issue9b()   { timeout 300 chipbench run --backend cuda --model qwen3-8b --workload pp512,tg128 --batch 16 \
                --mode compiled,eager --rounds 3 --no-check --out "$OUT/issue9b.jsonl" 2>&1 | quiet
              timeout 200 chipbench ab --backend cuda --model qwen3-0.6b --workload tg128 --a mode=eager \
                --b mode=compiled --pairs 3 --no-check --out "$OUT/issue9-ab.jsonl" 2>&1 | quiet; }
# lease: issue 9 in one call of a 15-minute lease (LEASE_S seconds of work, default 540, for a
# timeout_s of 590), most important first, each step capped by the time left so a slow compile
# cannot take the rest: qwen3-8b batch-1 decode eager vs compiled with the gate (the 70% MBU
# target), qwen3-0.6b's grid, the CUDA tests, then qwen3-8b batch 16 if time is left.
lease()     { local end=$(( $(date +%s) + ${LEASE_S:-540} )) t
              cap() { local l=$(( end - $(date +%s) )); (( l > $1 )) && l=$1; (( l >= 45 )) && echo $l; }
              t=$(cap 260) && timeout $t chipbench run --backend cuda --model qwen3-8b --workload tg128 --batch 1 \
                --mode compiled,eager --rounds 5 --out "$OUT/issue9.jsonl" 2>&1 | quiet
              step "grid"; t=$(cap 150) && timeout $t chipbench run --backend cuda --model qwen3-0.6b --workload pp512,tg128 \
                --batch 1,16 --mode compiled,eager --rounds 3 --no-check --out "$OUT/issue9.jsonl" 2>&1 | quiet
              step "cudatests"; t=$(cap 170) && timeout $t python3 -m pytest tests/test_cuda.py -v -p no:cacheprovider -rfE 2>&1
              step "qwen3-8b batch 16"; t=$(cap 200) && timeout $t chipbench run --backend cuda --model qwen3-8b \
                --workload tg128,pp512 --batch 16 --mode compiled,eager --rounds 3 --no-check --out "$OUT/issue9b.jsonl" 2>&1 | quiet
              nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,clocks_throttle_reasons.active --format=csv; }
# lease2: what the 2026-12-04 H200 lease left of issue 9 (results/measurements/2026-12-04-h200-issue9/),
# most important first, each step capped by the time left: qwen3-8b and qwen3-0.6b batch-1 decode with
# the host's share of each step now recorded (host_step_s, host_bound: host or device, which sets
# qwen3-0.6b's 2.09 ms compiled step?), a kernel profile of each compiled step with its time with and
# without dynamo's per-call guard check, then qwen3-8b compiled under two inductor settings that
# gpt-fast-style decoders use (coordinate descent tuning; freezing, which concatenates the q/k/v and
# gate/up projections), each its own path (compile_flags), then qwen3-8b at batch 16, then qwen3-8b
# pp512 eager against compiled (the prefill compiled with a dynamic prompt length since 2026-12-05).
lease2()    { local end=$(( $(date +%s) + ${LEASE_S:-540} )) t o="$OUT/lease2.jsonl"
              cap() { local l=$(( end - $(date +%s) )); (( l > $1 )) && l=$1; (( l >= 45 )) && echo $l; }
              t=$(cap 200) && timeout $t chipbench run --backend cuda --model qwen3-0.6b,qwen3-8b --workload tg128 \
                --mode compiled,eager --rounds 3 --no-check --out "$o" 2>&1 | quiet
              step "decode profile"; t=$(cap 100) && timeout $t python3 .ci/decode_profile.py --model qwen3-0.6b 2>&1 | quiet
              t=$(cap 100) && timeout $t python3 .ci/decode_profile.py --model qwen3-8b 2>&1 | quiet
              step "coordinate descent tuning"; t=$(cap 130) && TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 timeout $t \
                chipbench run --backend cuda --model qwen3-8b --workload tg128 --mode compiled --rounds 3 --no-check --out "$o" 2>&1 | quiet
              step "freezing"; t=$(cap 130) && TORCHINDUCTOR_FREEZING=1 timeout $t \
                chipbench run --backend cuda --model qwen3-8b --workload tg128 --mode compiled --rounds 3 --no-check --out "$o" 2>&1 | quiet
              step "qwen3-8b batch 16"; t=$(cap 150) && timeout $t chipbench run --backend cuda --model qwen3-8b \
                --workload tg128 --batch 16 --mode compiled,eager --rounds 3 --no-check --out "$o" 2>&1 | quiet
              # compiled mode compiles the prefill too (dynamic prompt length, no CUDA graphs): eager against compiled
              step "qwen3-8b pp512"; t=$(cap 120) && timeout $t chipbench run --backend cuda --model qwen3-8b \
                --workload pp512 --batch 1,16 --mode compiled,eager --rounds 3 --no-check --out "$o" 2>&1 | quiet
              python3 -c "import json,sys; [print(r['model'], r['workload'], r['batch'], r['exec_path'], r.get('prefill_path'), r.get('compile_flags'),
                r['status'], r.get('ttft_s_median'), r.get('prefill_compile_time_s'), r.get('tpot_s_median'), r.get('measured_mbu'),
                r.get('host_step_s'), r.get('host_busy_frac'), r.get('host_bound'), r.get('energy_meter'),
                (r.get('energy_check') or '')[:60], r.get('energy_per_output_token_j'), r.get('host_energy_meter'))
                for r in map(json.loads, open(sys.argv[1]))]" "$o"
              # issue 45: the lease's records as a reproduction bundle, verified here (the GPU records'
              # energy method, weights digests and every statistic re-derived offline)
              step "bundle"; chipbench bundle "$o" --out "$OUT/lease2-bundle.tar.gz" && chipbench verify "$OUT/lease2-bundle.tar.gz"; }
models()    { chipbench run --backend cuda --model qwen3-30b-a3b,qwen3.5-9b --workload pp512,tg128 \
                --rounds 3 --out "$OUT/runs.jsonl" 2>&1 | quiet; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
python3 -c "import torch, transformers, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
step "install (offline, no deps)"
if ls .whl/*.whl >/dev/null 2>&1; then  # what the image lacks (pydantic, jsonschema): .ci/device-wheels.sh, carried as .whl
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import pydantic" 2>/dev/null || { echo "pydantic is missing: run .ci/device-wheels.sh here and carry .whl"; exit 1; }
python3 -m pip install -q --no-deps --no-build-isolation -e . || { echo "editable install failed"; exit 1; }

sections=("$@"); [ ${#sections[@]} -eq 0 ] && sections=(tests selftest build suite overhead models)
for s in "${sections[@]}"; do step "$s"; "$s"; done
step "done"
