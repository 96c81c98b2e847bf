"""Hand-made records with known timings, built the way the runner builds real ones."""

import numpy as np

from chipbench.measuring.metrics import Round
from chipbench.publishing.record import SCHEMA_VERSION, new_record_id
from chipbench.measuring.runner import metric_fields
from chipbench.measuring.workload import parse_workload


def make_record(
    model="qwen3-8b",
    workload="tg32",
    device="Chip A",
    backend="cuda",
    kind_of_device="cuda",
    ttft_s=0.05,
    tpot_s=0.02,
    spread=0.01,
    rounds=5,
    seed=0,
    status="ok",
    **extra,
):
    """Rounds whose TTFT and TPOT scatter by `spread` (relative) around the given values."""
    w = parse_workload(workload)
    rng = np.random.default_rng(seed)
    timed = []
    for _ in range(rounds):
        first = ttft_s * (1 + spread * rng.standard_normal())
        step = tpot_s * (1 + spread * rng.standard_normal())
        timed.append(Round(tuple(first + i * step for i in range(w.gen_tokens)), 10**9, "device_allocated_peak"))
    rec = {
        "schema_version": SCHEMA_VERSION,
        "record_id": new_record_id(),
        "status": status,
        "error": None,
        "backend": backend,
        "backend_kind": kind_of_device,
        "device_name": device,
        "model": model,
        "family": "qwen3",
        "dtype": "bf16",
        "workload": w.name,
        "kind": w.kind,
        "batch": w.batch,
        "prompt_tokens": w.prompt_tokens,
        "gen_tokens": w.gen_tokens,
        "exec_path": "eager",
        "engine": "transformers",
        "engine_version": "5.23",
        "stack": "transformers 5.23 eager",
        "timestamp_utc": "2026-11-22T00:00:00+00:00",
        "env_torch": "2.13",
        "env_transformers": "5.23",
        "env_runtime": "cuda 13.0",
        "env_driver": "580",
        "env_cpu_model": "Host CPU",
        "env_cpu_cores": 16,
        "harness_version": "0.1.0",
        "git_commit": None,
    }
    if status == "ok":
        rec.update(metric_fields(timed, w))
    rec.update(extra)
    return rec


def make_trials(k, tpot_s=0.02, drift=0.01, spread=0.005, seed=0, device="Chip A", **extra):
    """k independent trials of one case (one series): each trial's true TPOT drifts by `drift`
    (relative, between runs), its rounds scatter by `spread` around it."""
    rng = np.random.default_rng(seed)
    series = new_record_id()
    return [
        make_record(
            tpot_s=tpot_s * (1 + drift * rng.standard_normal()),
            spread=spread,
            seed=seed * 1000 + i,
            device=device,
            series_id=series,
            trial_index=i,
            trials_planned=k,
            trial_process="worker",
            **extra,
        )
        for i in range(k)
    ]
