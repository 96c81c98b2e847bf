#!/bin/bash
# issue 44 Show: one load, four drivers, the same llama-server on 127.0.0.1:8932
cd /work/main; . .venv/bin/activate
OUT=${OUT:-/tmp/show}
COMMON="--backend openai:http://127.0.0.1:8932/v1 --model qwen3-0.6b --dtype bf16 --concurrency 2 --requests 16 --prompt 64 --gen 32 --seed 0 --max-duration 60"
chipbench serve $COMMON --out $OUT/builtin.jsonl > $OUT/builtin.log 2>&1
chipbench serve $COMMON --driver vllm-bench --driver-bin "/tmp/vllm-venv/bin/python /work/main/tests/fixtures/import/vllm_cli.py" --out $OUT/vllm-bench.jsonl > $OUT/vllm-bench.log 2>&1
chipbench serve $COMMON --driver guidellm --driver-bin /tmp/gl-venv/bin/guidellm --out $OUT/guidellm.jsonl > $OUT/guidellm.log 2>&1
chipbench serve $COMMON --driver aiperf --driver-bin /tmp/ap-venv/bin/aiperf --out $OUT/aiperf.jsonl > $OUT/aiperf.log 2>&1
chipbench serve --client-capacity > $OUT/client-capacity.txt 2>&1
