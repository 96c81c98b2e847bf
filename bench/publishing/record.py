"""Result records: one flat, versioned JSON object per case, appended to a JSON-lines file.

Each record is written and flushed (and fsynced) as soon as its case finishes, so an
interrupted run keeps every finished case. `load_records` reads any number of files or
directories into one pandas DataFrame. The fields are documented in FIELDS (and the README).
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import UsageError
from bench.measuring.metrics import METRICS
from bench.measuring.stats import STAT_NAMES

SCHEMA_VERSION = 1

# field -> (unit, meaning). Metric fields follow the pattern `<metric>_<stat>` and
# `<metric>_samples`, documented once in METRIC_FIELD_DOC.
FIELDS: dict[str, tuple[str, str]] = {
    "schema_version": ("", f"record format version (this is {SCHEMA_VERSION})"),
    "record_id": ("", "unique id of this record"),
    "status": ("", "ok, or failed (then `error` says why and metrics are empty)"),
    "error": ("", "why the case failed; null when it did not"),
    "traceback": ("", "failed cases only: the last frames of the error, for bug reports"),
    "backend": ("", "adapter that ran the case (cpu, cuda, accelerator, or a plugin's name)"),
    "backend_kind": ("", "device family compared across runs (cpu, cuda, xpu, npu, ...)"),
    "device_name": ("", "the device's own name for itself"),
    "model": ("", "zoo name of the model"),
    "family": ("", "architecture family (qwen2, qwen3, qwen3_moe, qwen3_next, qwen3_5, qwen3_5_moe)"),
    "dtype": ("", "weight and activation dtype (fp32, bf16, fp16)"),
    "weights": ("", "random(seed=N) for seeded random weights, local:<dir> for real weights"),
    "workload": ("", "workload name in llama-bench style (pp512, tg128, tg128@d4096, pp512+tg128)"),
    "kind": ("", "prefill, decode or generate"),
    "batch": ("sequences", "batch size B"),
    "prompt_tokens": ("tokens", "prompt length P per sequence (the context for decode workloads)"),
    "gen_tokens": ("tokens", "tokens generated per sequence, N (fixed; EOS ignored)"),
    "warmup_rounds": ("rounds", "untimed rounds run first"),
    "rounds": ("rounds", "timed rounds the statistics are over"),
    "exec_path": ("", "how generation ran (eager: the harness's loop on transformers' forward)"),
    "linear_attn_path": ("", "hybrid models: DeltaNet kernels used (fla... or the pure-torch fallback); null otherwise"),
    "params_total": ("parameters", "all parameters (tied embeddings once)"),
    "params_active": ("parameters", "parameters used per token (top-k experts only)"),
    "weight_bytes": ("bytes", "all weights in this dtype"),
    "active_weight_bytes": ("bytes", "weights read per decode step in this dtype"),
    "kv_bytes_per_token": ("bytes", "KV cache per token per sequence in this dtype"),
    "recurrent_state_bytes": ("bytes", "DeltaNet recurrent plus conv state per sequence (hybrid models)"),
    "flops_per_token": ("FLOP", "forward FLOPs for one token at the prompt's context length"),
    "build_time_s": ("s", "time to allocate the model and fill or load its weights"),
    "peak_mem_bytes": ("bytes", "peak memory over the timed rounds (see peak_mem_kind)"),
    "peak_mem_kind": ("", "device_allocated_peak (torch allocator) or process_rss_peak (host RSS)"),
    "token_times_s": ("s", "raw timestamps: per round, when each step's tokens reached the host, from the request start"),
    "decode_bytes_per_step": ("bytes", "least bytes a decode step reads: active weights plus every sequence's cache at the mean context"),
    "decode_flops_per_step": ("FLOP", "FLOPs of a decode step for the whole batch at the mean context"),
    "prefill_bytes": ("bytes", "least bytes the prefill moves: all weights plus the KV cache it writes"),
    "prefill_flops": ("FLOP", "FLOPs of the prefill for the whole batch"),
    "achieved_gb_per_s": ("GB/s", "decode_bytes_per_step / median TPOT, 10^9 bytes/s"),
    "achieved_decode_tflops": ("TFLOP/s", "decode_flops_per_step / median TPOT"),
    "achieved_prefill_tflops": ("TFLOP/s", "prefill_flops / median TTFT"),
    "chip": ("", "spec row matched by device_name (results/chips.toml); null when none matches"),
    "chip_confidence": ("", "the spec row's confidence: A, B or ? (sources conflict)"),
    "ceiling_gb_per_s": ("GB/s", "measured: device copy bandwidth, bytes read plus written (bench/ceilings.py)"),
    "ceiling_tflops": ("TFLOP/s", "measured: large matmul rate in this dtype"),
    "spec_check": ("", "set when the measured ceilings beat the spec row or miss it by half"),
    "spec_mbu": ("fraction", "model bandwidth utilisation: achieved bytes/s over the spec bandwidth (decode)"),
    "measured_mbu": ("fraction", "the same over the measured copy bandwidth"),
    "spec_decode_mfu": ("fraction", "decode FLOP/s over the spec peak for this dtype"),
    "measured_decode_mfu": ("fraction", "decode FLOP/s over the measured matmul rate"),
    "spec_prefill_mfu": ("fraction", "prefill FLOP/s over the spec peak (not for tgN tests)"),
    "measured_prefill_mfu": ("fraction", "prefill FLOP/s over the measured matmul rate"),
    "spec_best_tpot_s": ("s", "fastest TPOT the spec peaks allow: max(bytes / bandwidth, FLOPs / peak)"),
    "measured_best_tpot_s": ("s", "the same with the measured ceilings"),
    "spec_best_ttft_s": ("s", "fastest TTFT the spec peaks allow"),
    "measured_best_ttft_s": ("s", "the same with the measured ceilings"),
    "spec_best_decode_tok_per_s": ("tokens/s", "batch / spec_best_tpot_s: the decode roofline"),
    "measured_best_decode_tok_per_s": ("tokens/s", "batch / measured_best_tpot_s"),
    "roofline_flag": ("", "MEASUREMENT ERROR when a utilisation exceeds 100%: such a figure is not a result"),
    "correct": ("", "correctness gate: true, false (fast but wrong: flagged everywhere), null when not checked"),
    "correctness_rel_err": ("fraction", "largest relative logits error against the CPU fp32 reference, ties aside"),
    "correctness_tolerance": ("fraction", "the bound: max(dtype tolerance, 2 x the same dtype's error on the CPU)"),
    "correctness_token_agreement": ("fraction", "greedy tokens equal to the reference's under teacher forcing, ties counted equal"),
    "correctness_ties": ("positions", "positions excused as logit ties or held to the looser routing-tie bound"),
    "correctness_reference": ("", "what the reference was: cpu fp32, N of M layers (depth-reduced when the host is too small)"),
    "correctness_note": ("", "why the gate failed, or why it did not run"),
    "env_hostname": ("", "host name"),
    "env_os": ("", "operating system"),
    "env_python": ("", "Python version"),
    "env_torch": ("", "torch version"),
    "env_transformers": ("", "transformers version"),
    "env_cpu_model": ("", "host CPU model"),
    "env_cpu_cores": ("cores", "physical CPU cores"),
    "env_cpu_threads": ("threads", "logical CPUs"),
    "env_torch_threads": ("threads", "torch intra-op threads"),
    "env_host_memory_bytes": ("bytes", "host RAM"),
    "env_device_count": ("devices", "devices of this kind visible"),
    "env_device_memory_bytes": ("bytes", "memory of the device used (host RAM for cpu)"),
    "env_driver": ("", "device driver version, when the adapter can read it (NVML for NVIDIA)"),
    "env_runtime": ("", "device runtime (cuda 13.0, rocm 6.4, torch x.y for cpu)"),
    "env_device_*": ("", "adapter-specific device facts (compute capability, clocks, core counts)"),
    "harness_version": ("", "chipbench version"),
    "git_commit": ("", "chipbench's git commit (+dirty for local changes), null outside git"),
    "timestamp_utc": ("", "when the case finished, ISO 8601 UTC"),
    "seed": ("", "seed of the random weights and the prompt ids"),
    "command": ("", "the command line that produced the record"),
}

METRIC_FIELD_DOC = (
    "`<metric>_<stat>` for each metric in (" + ", ".join(METRICS) + ") and stat in ("
    + ", ".join(STAT_NAMES) + "); `<metric>_samples`: the per-round values (itl_s pools every "
    "inter-token gap of every round and has no per-round samples)"
)


def fields_markdown() -> str:
    """The README's table of record fields, made from FIELDS so the two never drift apart."""
    rows = [f"| `{k}` | {u} | {m.replace('|', '/')} |" for k, (u, m) in FIELDS.items()]
    return "\n".join(["| field | unit | meaning |", "|---|---|---|", *rows,
                      "| `<metric>_<stat>`, `<metric>_samples` | the metric's | see Metrics |"])


def metric_fields() -> set[str]:
    names = {f"{m}_{s}" for m in METRICS for s in STAT_NAMES}
    names |= {f"{m}_samples" for m in METRICS if m != "itl_s"}
    return names


def is_documented(field: str) -> bool:
    if field in FIELDS or field in metric_fields():
        return True
    return field.startswith("env_device_")


def new_record_id() -> str:
    import uuid

    return uuid.uuid4().hex


def _clean(value):
    """JSON has no NaN or infinity: a non-finite number is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def default_path(root: str | Path = "results/runs") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{stamp}-{socket.gethostname()}.jsonl"


class RecordWriter:
    """Appends records to a JSON-lines file, flushing and syncing each one to disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write(self, record: dict) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.count += 1


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix in (".jsonl", ".json")))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"no such file or directory: {str(p)!r}")
    return out


def _check(rec, where: str) -> dict:
    if not isinstance(rec, dict) or "schema_version" not in rec:
        raise UsageError(f"{where}: not a chipbench record (no schema_version)")
    if rec["schema_version"] != SCHEMA_VERSION:
        raise UsageError(f"{where}: schema_version {rec['schema_version']} is not supported; "
                         f"this chipbench reads version {SCHEMA_VERSION}")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise UsageError(f"{where}: record lacks the field(s) {', '.join(missing)}")
    return rec


# Fields without which a record cannot be matched or tabulated.
REQUIRED = ("record_id", "status", "backend", "model", "dtype", "workload", "kind", "batch")


def _from_pytest_benchmark(data: dict, path: Path, warn) -> list[dict]:
    """Records embedded in a pytest-benchmark JSON file (--benchmark-json / --benchmark-autosave)."""
    out, foreign = [], 0
    for i, bench in enumerate(data.get("benchmarks", [])):
        rec = (bench.get("extra_info") or {}).get("chipbench_record")
        if rec is None:
            foreign += 1
            continue
        out.append(_check(rec, f"{path}: benchmark {i} ({bench.get('name', '?')})"))
    if foreign:
        warn(f"{path}: {foreign} benchmark(s) without a chipbench record (another suite's) left out")
    return out


def _read_file(path: Path, on_error: str, warn) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        if not isinstance(data, dict) or "benchmarks" not in data:
            raise UsageError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
        return _from_pytest_benchmark(data, path, warn)
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{lineno}: not a JSON record ({e.msg})") from None
            records.append(_check(rec, f"{path}:{lineno}"))
        except UsageError as e:
            if on_error != "skip":
                raise
            warn(f"skipped {e}")
    return records


def read_records(*paths: str | Path, on_error: str = "fail", warn=None) -> list[dict]:
    """Records from JSON-lines files, pytest-benchmark JSON files and directories of either.

    on_error="fail" raises a UsageError naming the file and line of the first bad record;
    "skip" leaves bad lines out and reports each through `warn` (stderr by default).
    """
    import sys

    warn = warn or (lambda msg: print(f"chipbench: {msg}", file=sys.stderr))
    files = _files(paths)
    if not files:
        raise UsageError(f"no record files (*.jsonl, *.json) in {', '.join(map(str, paths))}")
    records = []
    for path in files:
        for rec in _read_file(path, on_error, warn):
            rec["source_file"] = str(path)
            records.append(rec)
    if not records:
        raise UsageError(f"no records in {', '.join(map(str, files))} (empty, or every line was skipped)")
    return records


def load_records(*paths: str | Path, on_error: str = "fail"):
    """Every record in the given files and directories (JSON lines or pytest-benchmark JSON) as
    one DataFrame, with a `source_file` column."""
    import pandas as pd

    return pd.DataFrame(read_records(*paths, on_error=on_error))
