"""Would compiling the prefill (gpt-fast's recipe: torch.compile, dynamic shapes, no CUDA graphs)
make compiled mode's ppN differ from eager? A probe, not a benchmark: one process, the harness's
own static cache and output head, eager and compiled calls interleaved, the best of each.

    python results/measurements/2026-12-05-cpu-compiled-prefill-probe/probe.py qwen3-0.6b
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from transformers import StaticCache  # noqa: E402

from backends import torch_loop  # noqa: E402
from models.build import build_random  # noqa: E402
from models.zoo import get_model  # noqa: E402

name = sys.argv[1] if len(sys.argv) > 1 else "qwen3-0.6b"
m = build_random(get_model(name), torch.bfloat16, "cpu", seed=0).module
cache = StaticCache(config=m.config, max_cache_len=600)
kw = torch_loop._cache_kwarg(m)


def prefill(prompt, positions):
    out = m.model(input_ids=prompt, position_ids=positions, use_cache=True, **{kw: cache})
    return torch_loop._head(m, out.last_hidden_state)


compiled = torch.compile(prefill, dynamic=True)
print(f"{name} bf16 batch 1, torch {torch.__version__}, {torch.get_num_threads()} threads")
with torch.inference_mode():
    for n in (512, 128, 512):
        p = torch.randint(0, m.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(n))
        pos = torch.arange(n).expand(1, n)
        cache.reset()
        t = time.perf_counter()
        compiled(p, pos)
        first = time.perf_counter() - t
        times = {"eager": [], "compiled": []}
        for _ in range(5):
            for way, fn in (("eager", prefill), ("compiled", compiled)):
                cache.reset()
                t = time.perf_counter()
                y = fn(p, pos)
                times[way].append(time.perf_counter() - t)
                if way == "eager":
                    ye = y
        same = bool((y.argmax(-1) == ye.argmax(-1)).all())
        e, c = min(times["eager"]), min(times["compiled"])
        print(f"prompt {n}: first compiled call {first:.2f} s; best of 5: eager {e * 1e3:.1f} ms, compiled "
              f"{c * 1e3:.1f} ms, {e / c:.2f}x; same next token: {same}")
from torch._dynamo.utils import counters  # noqa: E402

print("graphs", counters["stats"].get("unique_graphs"), "graph breaks", sum(counters["graph_break"].values()))
