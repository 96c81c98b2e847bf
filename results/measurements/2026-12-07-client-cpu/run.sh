#!/bin/bash
# issue 44: why did the load tools read a 15-18% higher TPOT than chipbench's client against the same
# llama-server (results/measurements/2026-12-07-serve-drivers/chipbench-prompts/)? Each client's own
# CPU use, recorded per level (client_cpu_cores, server_cpu_cores, client_contends), in two passes:
#   shared: server (2 threads) and client on the same 2 CPUs, as before;
#   apart:  server pinned to CPU 1 (1 thread), client (and the tool it runs) pinned to CPU 0.
# If the gap is the clients' CPU use, it shows in the shared pass and goes in the apart one.
set -u
cd /work/main; . .venv/bin/activate
OUT=${OUT:-/tmp/client-cpu}; mkdir -p $OUT
BIN=/tmp/lb/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin
GGUF=/root/.cache/chipbench/gguf/qwen3-0.6b-s0-bf16-1c44e56b6723e098.gguf
COMMON="--backend openai:http://127.0.0.1:8932/v1 --model qwen3-0.6b --dtype bf16 --concurrency 2 --requests 16 --prompt 64 --gen 32 --seed 0 --max-duration 120"
VLLM="/tmp/vllm-venv/bin/python /work/main/tests/fixtures/import/vllm_cli.py"
for pass in shared apart; do
  if [ $pass = shared ]; then SRV=""; CLI=""; T=2; else SRV="taskset -c 1"; CLI="taskset -c 0"; T=1; fi
  $SRV $BIN/llama-server -m $GGUF --host 127.0.0.1 --port 8932 -t $T -np 2 -c 4096 > $OUT/$pass-server.log 2>&1 &
  SPID=$!
  for i in $(seq 60); do curl -sf http://127.0.0.1:8932/health > /dev/null && break; sleep 1; done
  $CLI chipbench serve $COMMON --out $OUT/$pass-builtin.jsonl > $OUT/$pass-builtin.log 2>&1
  $CLI chipbench serve $COMMON --driver guidellm --driver-bin /tmp/gl-venv/bin/guidellm --out $OUT/$pass-guidellm.jsonl > $OUT/$pass-guidellm.log 2>&1
  $CLI chipbench serve $COMMON --driver vllm-bench --driver-bin "$VLLM" --out $OUT/$pass-vllm-bench.jsonl > $OUT/$pass-vllm-bench.log 2>&1
  kill $SPID; wait $SPID 2>/dev/null
done
