from bench.measuring.ceilings import measure
sync = lambda: None
for i in range(6):
    w = measure("cpu", "bf16", sync)                   # the suite's: best over a 3 s window
    b = measure("cpu", "bf16", sync, repeats=3, window=0)  # the beside one: 3 rounds
    print(f"window {w.bandwidth_gb_per_s:6.1f} GB/s {w.tflops:5.2f} TF | 3 rounds {b.bandwidth_gb_per_s:6.1f} GB/s {b.tflops:5.2f} TF | ratio {b.bandwidth_gb_per_s/w.bandwidth_gb_per_s:.2f} {b.tflops/w.tflops:.2f}", flush=True)
