from bench.measuring.ceilings import measure
sync = lambda: None
for i in range(8):
    w = measure("cpu", "bf16", sync)
    b = measure("cpu", "bf16", sync, repeats=3, window=0)
    print(f"window best {w.bandwidth_gb_per_s:5.1f} median {w.bandwidth_gb_per_s_median:5.1f} | 3-round best {b.bandwidth_gb_per_s:5.1f} median {b.bandwidth_gb_per_s_median:5.1f} | best3/best {b.bandwidth_gb_per_s/w.bandwidth_gb_per_s:.2f} best3/median {b.bandwidth_gb_per_s/w.bandwidth_gb_per_s_median:.2f}", flush=True)
