import json, statistics as st, re
from scipy import stats
rows={}
for kind in ("short","full"):
    for l in open(f"results/measurements/2026-12-07-short-warmup/{kind}.jsonl"):
        r=json.loads(l)
        if r.get("status")!="ok": print("failed", r.get("error")); continue
        s=r["e2e_s_samples"]; ratio=s[0]/st.median(s[1:])
        m=re.search(r"round's ([\d.]+) s", r.get("rounds_reason") or "")
        est=float(m.group(1)) if m else None
        rows.setdefault((r["backend"],kind),[]).append((ratio, st.median(s), est, r["rounds"], r.get("warmup_tokens")))
for k,v in sorted(rows.items()):
    print(k, "first/median(rest):", [f"{x[0]:.3f}" for x in v], "median round s:", [f"{x[1]:.2f}" for x in v], "paced:", [x[2] for x in v], "rounds", [x[3] for x in v], "wtok", v[0][4])
for b in ("cpu","llamacpp"):
    a=[x[0] for x in rows.get((b,"short"),[])]; c=[x[0] for x in rows.get((b,"full"),[])]
    if len(a)>1 and len(c)>1:
        print(b, "mean ratio short", st.mean(a), "full", st.mean(c), "MWU p", stats.mannwhitneyu(a,c).pvalue, "t p", stats.ttest_ind(a,c, equal_var=False).pvalue)
