"""Records of one suite from different entry points or versions, compared: the same fields, and the
same value in every field a run does not measure (its case, verdicts, provenance's shape).

    python .ci/same_records.py FIRST.jsonl OTHER.jsonl...

Each OTHER file is compared with FIRST record by record (matched by workload and batch); it prints
the fields only one side has and the unmeasured fields whose values differ. Timings, memory,
ceilings, load, ids and times are measured, so they are compared by key only."""

import json
import sys

MEASURED_PREFIX = (
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "itl_s",
    "output_tok_per_s",
    "prefill_tok_per_s",
    "decode_tok_per_s",
    "token_times",
    "ceiling_",
    "achieved_",
    "mbu",
    "mfu",
    "host_",
    "env_host_load",
    "peak_mem",
    "mem_vs",
    "power",
    "energy",
    "clock",
    "cpu_",
    "build_time",
    "compile_time",
    "record_id",
    "timestamp",
    "trial_series",
    "env_git",
    "harness_",
    "env_time",
    "rerun",
    "load_",
    "spec_",
    "measured_",
    "roofline_flag",
    "telemetry",
    "throttle",
    "steal",
    "other_",
    "timing_selftest",
    "env_cpu_freq",
    "gpu_",
    "samples",
    "j_per",
    "tokens_per_j",
    "env_started",
    "env_finished",
    "traceback",
)


def load(p):
    return {(r["workload"], r["batch"]): r for r in map(json.loads, open(p))}


def measured(k):
    return any(k.startswith(x) or x in k for x in MEASURED_PREFIX) or k.endswith(
        ("_median", "_mean", "_p90", "_p99", "_stdev", "_ci_low", "_ci_high", "_samples", "_min", "_max", "_iqr", "_cv")
    )


files = sys.argv[1:]
sets = {f: load(f) for f in files}
ref = files[0]
for f in files[1:]:
    for key, r in sets[ref].items():
        o = sets[f].get(key)
        if o is None:
            print(f"{f}: no record for {key}")
            continue
        only_ref, only_o = sorted(set(r) - set(o)), sorted(set(o) - set(r))
        diff = sorted(k for k in set(r) & set(o) if r[k] != o[k] and not measured(k))
        print(f"{ref} vs {f} {key}: keys {len(r)}/{len(o)}; only in first {only_ref}; only in second {only_o}")
        for k in diff:
            print(f"    {k}: {str(r[k])[:90]!r} -> {str(o[k])[:90]!r}")
