#!/bin/bash
cd /work/main; . .venv/bin/activate
for i in 1 2 3 4; do
  chipbench run -q --backend cpu,llamacpp --workload tg128 --no-check --ceiling-window 0 --out results/measurements/2026-12-07-short-warmup/short.jsonl
  chipbench run -q --backend cpu,llamacpp --workload tg128 --no-check --ceiling-window 0 --rounds 5 --out results/measurements/2026-12-07-short-warmup/full.jsonl
done
echo done > results/measurements/2026-12-07-short-warmup/done
