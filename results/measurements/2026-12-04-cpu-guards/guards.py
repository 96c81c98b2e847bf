"""Per-step time of the harness's compiled decode step: StaticDecoder.call (guard checks skipped) against
the compiled step called directly (guards checked every call), alternated in one process, CPU."""
import statistics, sys, time
import torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from backends import torch_loop
from models.build import build_random
from models.zoo import get_model

model_name, steps, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = get_model(model_name)
m = build_random(spec, torch.bfloat16, "cpu", seed=0).module
dec = torch_loop.build_static_decoder(m, 1, 8 + steps, "cpu", lambda: None)
prompt = torch.randint(0, spec.vocab, (1, 8))
skipping = dec.call
checking = lambda token, position: dec.step(token, position)
def run():
    stamps = []
    toks = torch_loop.generate_static(dec, prompt, steps, lambda t: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[0]) / (steps - 1), toks
base_tokens = run()[1]
res = {"guards checked": [], "guards skipped": []}
for i in range(reps):
    for name in (("guards checked", "guards skipped") if i % 2 == 0 else ("guards skipped", "guards checked")):
        dec.call = checking if name == "guards checked" else skipping
        t, toks = run()
        assert toks == base_tokens
        res[name].append(t)
print(f"torch {torch.__version__}, {model_name} bf16 batch 1, {steps} tokens a round, {reps} rounds each, alternated")
for k, v in res.items():
    print(f"{k}: median step {statistics.median(v)*1e3:.3f} ms  ({', '.join(f'{x*1e3:.3f}' for x in v)})")
print("recompiles", dec.recompiles, dec.facts())
