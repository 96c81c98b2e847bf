"""The ceilings measured 16 times, alternating a window of 0 (five rounds, the old behaviour) and of
3 s (this commit's CPU default), bf16 on the host: how far each estimate of the same ceiling scatters."""

import datetime
import json
import statistics as st

from bench.measuring.ceilings import measure

rows = []
print("started", datetime.datetime.utcnow().isoformat(timespec="seconds"))
for i in range(8):
    for w in (0.0, 3.0):
        c = measure("cpu", "bf16", lambda: None, window=w)
        rows.append(dict(i=i, window=w, bw=c.bandwidth_gb_per_s, bw_med=c.bandwidth_gb_per_s_median, tf=c.tflops,
                         tf_med=c.tflops_median, rounds=c.rounds, secs=c.window_s))
        print(json.dumps(rows[-1]))
for w in (0.0, 3.0):
    r = [x for x in rows if x["window"] == w]
    for k in ("bw", "tf"):
        v = [x[k] for x in r]
        print(f"window {w}: {k} best-of-window: min {min(v):.3g} median {st.median(v):.3g} max {max(v):.3g}  "
              f"max/min {max(v)/min(v):.2f}")
print("ended", datetime.datetime.utcnow().isoformat(timespec="seconds"))
