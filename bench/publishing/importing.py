"""Other tools' result files read as chipbench records (`chipbench import`), so that the reports,
comparisons, claims and the roofline judge the numbers people already have.

Each reader maps what its file says onto the published schema and nothing more: a figure the file
lacks is null and named in the record's `import_missing`, never guessed. The model is the file's
model id mapped to the zoo (or `--model`), the device and engine as far as the file names them (or
given). The stack, which claims match on, is the engine and its version, then the tool and its
version that measured it. The source file's SHA-256 and path are kept.

Formats: llama-bench (`-o json` or `-o jsonl`); vLLM's `vllm bench serve --save-result`
(`--save-detailed` keeps each request's TTFT and inter-token gaps, and the records then hold the
per-request statistics chipbench computes itself; without it, the file's own mean, median and
percentiles are taken as they are); GuideLLM's JSON report (one record per benchmark, each
request's TTFT, TPOT and E2E from its own timings: first and last token, request start); NVIDIA
AIPerf's `profile_export_aiperf.json` (with `profile_export.jsonl` beside it, each request's TTFT
and inter-chunk gaps, its token count the server's usage rather than AIPerf's own tokenizer's);
MLPerf LoadGen's `mlperf_log_summary.txt` (its verdict, early stopping, result line and latency
percentiles; the summary names neither model nor lengths, so `--model` and `--workload` say them).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from chipbench.errors import UsageError
from chipbench.measuring import env
from chipbench.measuring.loadgen import RESULT_KEY, read_summary
from chipbench.measuring.metrics import METRICS, Round
from chipbench.measuring.runner import Case, case_identity, metric_fields
from chipbench.measuring.workload import Workload, parse_workload
from chipbench.models.zoo import MODELS, get_model
from chipbench.stats import summarize

FORMATS = ("llama-bench", "vllm-bench", "guidellm", "aiperf", "mlperf")
MAX_BYTES = 256 * 2**20  # a result file larger than this is refused, not read into memory

# llama-bench's model type ends with the weights' type; chipbench's dtype names
_GGUF_TYPES = {
    "BF16": "bf16",
    "F16": "fp16",
    "F32": "fp32",
    "Q8_0": "q8_0",
    "Q6_K": "q6_K",
    "Q5_K - Medium": "q5_K_M",
    "Q4_K - Medium": "q4_K_M",
    "Q4_0": "q4_0",
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if size > MAX_BYTES:
        raise UsageError(f"{path}: {size} bytes; a result file is read up to {MAX_BYTES // 2**20} MiB")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path} as UTF-8 text: {e}") from None


def _json_values(text: str, path: Path) -> list:
    """The file's JSON value(s): one document, or JSON lines."""
    try:
        value = json.loads(text)
        return value if isinstance(value, list) else [value]
    except json.JSONDecodeError:
        pass
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UsageError(
                    f"{path}: line {i} is not JSON ({e.msg}); expected a JSON file or JSON lines"
                ) from None
    return out


def detect(values: list, path: Path) -> str:
    """The format of a file's JSON values, from the keys each tool writes."""
    first = values[0] if values and isinstance(values[0], dict) else {}
    if {"n_prompt", "n_gen", "avg_ts", "model_type"} <= first.keys():
        return "llama-bench"
    if {"request_throughput", "output_throughput", "mean_ttft_ms"} <= first.keys():
        return "vllm-bench"
    if "benchmarks" in first and "guidellm_version" in (first.get("metadata") or {}):
        return "guidellm"
    if "aiperf_version" in first and "input_config" in first:
        return "aiperf"
    raise UsageError(
        f"{path}: not a result file chipbench reads (llama-bench -o json/jsonl, vllm bench serve --save-result, "
        f"guidellm's JSON report, aiperf's profile_export_aiperf.json, MLPerf's mlperf_log_summary.txt); "
        f"give --from {'|'.join(FORMATS)} if it is one"
    )


def zoo_model(text: str | None, given: str | None, what: str) -> str:
    """The zoo name of a model named in a file ('qwen3 0.6B BF16', 'Qwen/Qwen3-8B', a path), or `given`."""
    if given:
        return get_model(given).name
    if text:
        key = re.sub(r"[^a-z0-9.]+", "", text.lower().rsplit("/", 1)[-1])
        full = [n for n in MODELS if not n.startswith("tiny-")]
        for name in sorted(full, key=len, reverse=True):  # the longest match first
            if re.sub(r"[^a-z0-9.]+", "", name) in key:
                return name
    raise UsageError(f"{what}: the file names no model of the zoo ({text!r}); give --model (chipbench list models)")


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _stats(name: str, values: list[float]) -> dict:
    return {f"{name}_{k}": v for k, v in summarize(values).items()} | {f"{name}_samples": values}


def stack_line(engine: str | None, version: str | None, tool: str) -> str:
    """The record's stack, which claims match on: the engine that ran the model and its version (as
    far as the file or --engine names them), then the tool that measured it."""
    return " ".join(x for x in (engine or "(engine not named)", version) if x) + f" (measured by {tool})"


def _base(case: Case, source: dict, device: dict, stack: dict) -> dict:
    rec = case_identity(case)
    rec.update(status="ok", error=None, rounds=None, warmup_rounds=None, warmup_tokens=None)
    rec.update(device)
    rec.update(stack)
    rec.update(source)
    rec.update(env.provenance(case.workload.seed))
    rec["rerun"] = None
    return rec


def _missing(rec: dict, names: list[str]) -> None:
    rec["import_missing"] = sorted(set(rec.get("import_missing") or []) | set(names)) or None


def _serve_workload(prompt: int, gen: int, conc, rate) -> str:
    """A serving level's name, as chipbench serve names its own: pp64+tg32 serve@c2-r0.5 (serve@unbounded:
    every request sent at once, vllm bench's default)."""
    parts = ([f"c{conc}"] if conc else []) + ([f"r{rate:g}"] if rate else [])
    return f"pp{prompt}+tg{gen} serve@" + ("-".join(parts) or "unbounded")


def _unknown_dtype(rec: dict, dtype: str | None, missing: list[str]) -> None:
    """A file that does not say the served weights' type: dtype "unknown", the byte counts that follow
    from it null, and named."""
    if not dtype:
        rec.update(dict.fromkeys(_DTYPE_FIELDS), dtype="unknown")
        missing.append("dtype")


# --- llama-bench -----------------------------------------------------------------------------


def llama_bench(values: list, source: dict, model: str | None, device: str | None) -> list[dict]:
    """One record per llama-bench test (a model, a pp or tg size, its settings): its repetitions are
    the rounds. pp: TTFT is the prompt's time, prefill tokens/s its rate; tg: the n_gen single-token
    decode calls' rate is the decode tokens/s, and TPOT its inverse (llama-bench times no first token)."""
    out = []
    for i, t in enumerate(values):
        if not isinstance(t, dict):
            raise UsageError(f"{source['import_file']}: test {i} is not a JSON object")
        n_prompt, n_gen, depth = (int(t.get(k) or 0) for k in ("n_prompt", "n_gen", "n_depth"))
        samples = [s for s in (map(_finite, t.get("samples_ns") or [])) if s and s > 0]
        if not samples:
            raise UsageError(f"{source['import_file']}: test {i} has no timed repetitions (samples_ns)")
        model_type = str(t.get("model_type") or "")
        name = zoo_model(model_type or t.get("model_filename"), model, source["import_file"])
        quant = next((v for k, v in _GGUF_TYPES.items() if model_type.upper().endswith(" " + k.upper())), None)
        if quant is None:
            raise UsageError(f"{source['import_file']}: weight type of {model_type!r} is not one chipbench names")
        if n_gen and n_prompt:
            w = Workload("generate", n_prompt, n_gen)
        elif n_gen:
            w = Workload("decode", max(1, depth), n_gen)
        else:
            w = Workload("prefill", n_prompt, 1)
        case = Case("llama-bench", name, quant, w, rounds=len(samples))
        cpu, gpu = t.get("cpu_info"), t.get("gpu_info")
        on_gpu = bool(gpu) and int(t.get("n_gpu_layers") or 0) > 0 and "CPU" != str(t.get("backends"))
        dev = {
            "device_name": device or (gpu if on_gpu else cpu),
            "backend_kind": "gpu" if on_gpu else "cpu",
            "env_cpu_model": cpu,
            "env_cpu_threads": t.get("n_threads"),
        }
        version = f"build {t.get('build_number')} ({t.get('build_commit')})"
        stack = {
            "engine": "llama.cpp",
            "engine_version": str(t.get("build_commit") or ""),
            "exec_path": "ggml " + str(t.get("backends") or "").lower(),
            "stack": stack_line("llama.cpp", str(t.get("build_commit") or ""), f"llama-bench {version}"),
            "import_tool_version": version,
        }
        rec = _base(case, source, dev, stack)
        rec["rounds"] = len(samples)
        secs = [s / 1e9 for s in samples]
        missing = ["itl_s", "peak_mem_bytes"]
        if w.kind == "prefill":
            rec.update(_stats("ttft_s", secs) | _stats("e2e_s", secs))
            rec.update(_stats("prefill_tok_per_s", [n_prompt / s for s in secs]))
            missing += ["tpot_s", "decode_tok_per_s"]
        elif w.kind == "decode":
            rec.update(_stats("decode_tok_per_s", [n_gen / s for s in secs]))
            rec.update(_stats("tpot_s", [s / n_gen for s in secs]))
            rec.update(_stats("output_tok_per_s", [n_gen / s for s in secs]) | _stats("e2e_s", secs))
            missing += ["ttft_s", "prefill_tok_per_s"]
        else:
            rec.update(_stats("e2e_s", secs) | _stats("output_tok_per_s", [n_gen / s for s in secs]))
            missing += ["ttft_s", "tpot_s", "prefill_tok_per_s", "decode_tok_per_s"]
        rec.update({f"{m}_n": 0 for m in missing if m in METRICS and f"{m}_n" not in rec})
        rec["timing_method"] = "llama-bench's own clock around each repetition (samples_ns)"
        rec["timestamp_utc"] = t.get("test_time") or rec.get("timestamp_utc")
        _missing(rec, missing)
        out.append(rec)
    return out


# --- vLLM bench serve ---------------------------------------------------------------------------


def _request_rounds(r: dict) -> list[Round] | None:
    """Each successful request's token times from --save-detailed's ttfts and itls: the first token at
    its TTFT, each next one an inter-token gap later (chunks of several tokens: vLLM splits them)."""
    ttfts, itls = r.get("ttfts"), r.get("itls")
    if not isinstance(ttfts, list) or not isinstance(itls, list) or len(ttfts) != len(itls):
        return None
    rounds = []
    for first, gaps in zip(ttfts, itls):
        first = _finite(first)
        if not first or first <= 0 or not isinstance(gaps, list):
            continue  # a failed request: vLLM writes a zero TTFT and no gaps
        times = [first]
        for g in gaps:
            g = _finite(g)
            if g is None or g < 0:
                break
            times.append(times[-1] + g)
        else:
            rounds.append(Round(tuple(times)))
    return rounds


# case_identity's fields that follow from the weights' type: null where the file does not say it
_DTYPE_FIELDS = (
    "weight_bytes",
    "active_weight_bytes",
    "kv_bytes_per_token",
    "recurrent_state_bytes",
    "expected_mem_bytes",
)


def vllm_bench(
    values: list, source: dict, model: str | None, device: str | None, engine: str | None, dtype: str | None
) -> list[dict]:
    out = []
    for r in values:
        if not isinstance(r, dict):
            raise UsageError(f"{source['import_file']}: not a vllm bench serve result object")
        name = zoo_model(r.get("model_id") or r.get("tokenizer_id"), model, source["import_file"])
        completed = int(r.get("completed") or 0)
        ins, outs = r.get("input_lens") or [], r.get("output_lens") or []
        prompt = round(r["total_input_tokens"] / completed) if completed and r.get("total_input_tokens") else None
        gen = round(r["total_output_tokens"] / completed) if completed and r.get("total_output_tokens") else None
        if not prompt or not gen or gen < 2:
            raise UsageError(f"{source['import_file']}: no completed request with 2 or more output tokens")
        conc = r.get("max_concurrency")
        rate = _finite(r.get("request_rate"))
        w = Workload("generate", prompt, gen, batch=int(conc) if conc else max(1, completed))
        case = Case("vllm-bench", name, dtype or "bf16", w, rounds=completed)
        dev = {"device_name": device, "backend_kind": None}
        tool_version = r.get("vllm_version") or r.get("version")
        stack = {
            "engine": engine,  # the file's "backend" is the client's request format, not the server's engine
            "engine_version": None,
            "exec_path": f"{r.get('endpoint_type') or r.get('backend') or 'openai'} stream (vllm bench serve)",
            "stack": stack_line(engine, None, f"vllm bench serve {tool_version or '(version not in the file)'}"),
            "import_tool_version": tool_version,
        }
        rec = _base(case, source, dev, stack)
        missing = (
            ["peak_mem_bytes", "engine_version"] + ([] if device else ["device_name"]) + ([] if engine else ["engine"])
        )
        _unknown_dtype(rec, dtype, missing)  # vllm bench does not know the server's weights' type
        rec.update(
            kind="serve",
            workload=_serve_workload(prompt, gen, conc, rate),
            serve_concurrency=int(conc) if conc else None,
            serve_rate_per_s=rate,
            serve_requests=int(r.get("num_prompts") or completed + int(r.get("failed") or 0)),
            serve_ok=completed,
            serve_failed=int(r.get("failed") or 0),
            serve_partial=bool(r.get("failed")) and completed > 0,
            serve_errors="; ".join(sorted({_last_line(e) for e in r.get("errors") or [] if e}))[:2000] or None,
            serve_duration_s=_finite(r.get("duration")),
            request_per_s=_finite(r.get("request_throughput")),
            serve_output_tok_per_s=_finite(r.get("output_throughput")),
            goodput_req_per_s=_finite(r.get("request_goodput")),
            rounds=completed,
        )
        if len(set(ins)) > 1 or len(set(outs)) > 1:
            rec["import_note"] = (
                f"request lengths vary: input {min(ins)}-{max(ins)}, output {min(outs)}-{max(outs)} tokens; "
                f"the workload names their means"
            )
        rounds = _request_rounds(r)
        if rounds:
            rec.update(metric_fields(rounds, Workload("generate", prompt, gen)))
            rec["tok_per_s_per_user"] = 1 / rec["tpot_s_median"] if rec["tpot_s_median"] else None
            rec["token_times_s"] = None  # per-request times are in the source file; the record keeps the statistics
            rec["timing_method"] = "vllm bench serve's client clock: each request's TTFT and inter-token gaps"
        else:
            for metric, key in (("ttft_s", "ttft"), ("tpot_s", "tpot"), ("itl_s", "itl"), ("e2e_s", "e2el")):
                rec[f"{metric}_mean"] = _ms(r.get(f"mean_{key}_ms"))
                rec[f"{metric}_median"] = _ms(r.get(f"median_{key}_ms"))
                rec[f"{metric}_stdev"] = _ms(r.get(f"std_{key}_ms"))
                rec[f"{metric}_p90"] = _ms(r.get(f"p90_{key}_ms"))
                rec[f"{metric}_p99"] = _ms(r.get(f"p99_{key}_ms"))
                rec[f"{metric}_n"] = completed
            missing += ["per-request times (vllm bench serve --save-detailed)", "ci95 of every latency"]
            rec["timing_method"] = "vllm bench serve's client clock (its own statistics, no per-request times)"
        agg = rec["serve_output_tok_per_s"]
        if agg:
            rec.update(
                {f"output_tok_per_s_{k}": v for k, v in summarize([agg]).items()}, output_tok_per_s_samples=[agg]
            )
        rec["correct"], rec["correctness_note"] = None, "not checked: an imported result runs the server's own weights"
        _missing(rec, missing)
        out.append(rec)
    return out


def _last_line(text) -> str:
    """A traceback's last line (its exception), or the text."""
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _ms(x) -> float | None:
    x = _finite(x)
    return x / 1e3 if x is not None else None


# --- GuideLLM ------------------------------------------------------------------------------------


def _guidellm_request(q: dict) -> tuple[float, float, float, int, int] | None:
    """(TTFT, TPOT, E2E, prompt tokens, output tokens) of one completed request from its timings: the
    request's start, its first and last token (chipbench's definitions: TPOT over the tokens after
    the first, E2E to the last token; GuideLLM's own TPOT divides the whole latency)."""
    t = (q.get("info") or {}).get("timings") or {}
    start, first, last = (_finite(t.get(k)) for k in ("request_start", "first_token_iteration", "last_token_iteration"))
    n, p = q.get("output_tokens"), q.get("prompt_tokens")
    if None in (start, first, last) or not isinstance(n, int) or n < 2 or first < start or last < first:
        return None
    return first - start, (last - first) / (n - 1), last - start, int(p or 0), n


def _request_model(q: dict) -> str | None:
    try:
        return json.loads(q.get("request_args") or "{}").get("body", {}).get("model")
    except (json.JSONDecodeError, AttributeError):
        return None


def guidellm(doc: dict, source: dict, model, device, engine, dtype) -> list[dict]:
    version = (doc.get("metadata") or {}).get("guidellm_version")
    spec = ((doc.get("config") or {}).get("spec") or {}).get("backend") or {}
    out = []
    for i, b in enumerate(doc.get("benchmarks") or []):
        reqs = b.get("requests") or {}
        done = [x for x in map(_guidellm_request, reqs.get("successful") or []) if x]
        if not done:
            raise UsageError(f"{source['import_file']}: benchmark {i} has no completed request with 2 or more tokens")
        ttft, tpot, e2e, prompts, outs = (list(c) for c in zip(*done))
        first = (reqs.get("successful") or [{}])[0]
        name = zoo_model(spec.get("model") or _request_model(first), model, source["import_file"])
        strategy = (b.get("config") or {}).get("strategy") or {}
        kind = strategy.get("type_")
        conc = strategy.get("streams") if kind == "concurrent" else 1 if kind == "synchronous" else None
        rate = _finite(strategy.get("rate")) if kind in ("constant", "poisson") else None
        prompt, gen = round(sum(prompts) / len(prompts)), round(sum(outs) / len(outs))
        w = Workload("generate", prompt, gen, batch=int(conc) if conc else len(done))
        case = Case("guidellm", name, dtype or "bf16", w, rounds=len(done))
        stack = {
            "engine": engine,
            "engine_version": None,
            "exec_path": f"openai {spec.get('request_format') or 'http'} stream (guidellm {kind})",
            "stack": stack_line(engine, None, f"guidellm {version or '(version not in the file)'}"),
            "import_tool_version": version,
        }
        rec = _base(case, source, {"device_name": device, "backend_kind": None}, stack)
        missing = ["itl_s", "peak_mem_bytes", "engine_version"] + [
            k for k, v in (("device_name", device), ("engine", engine)) if not v
        ]
        _unknown_dtype(rec, dtype, missing)
        duration = _finite(b.get("duration"))
        errored, incomplete = len(reqs.get("errored") or []), len(reqs.get("incomplete") or [])
        tokens = sum(outs)
        rec.update(
            kind="serve",
            workload=_serve_workload(prompt, gen, conc, rate),
            serve_concurrency=int(conc) if conc else None,
            serve_rate_per_s=rate,
            serve_requests=len(done) + errored + incomplete,
            serve_ok=len(done),
            serve_failed=errored + incomplete,
            serve_partial=bool(errored or incomplete),
            serve_duration_s=duration,
            request_per_s=len(done) / duration if duration else None,
            serve_output_tok_per_s=tokens / duration if duration else None,
            rounds=len(done),
        )
        rec.update(_stats("ttft_s", ttft) | _stats("tpot_s", tpot) | _stats("e2e_s", e2e))
        rec.update(_stats("prefill_tok_per_s", [p / t for p, t in zip(prompts, ttft) if t > 0]))
        rec.update(_stats("decode_tok_per_s", [1 / t for t in tpot if t > 0]), itl_s_n=0)
        rec["tok_per_s_per_user"] = 1 / rec["tpot_s_median"] if rec["tpot_s_median"] else None
        if rec["serve_output_tok_per_s"]:
            agg = rec["serve_output_tok_per_s"]
            rec.update(
                {f"output_tok_per_s_{k}": v for k, v in summarize([agg]).items()}, output_tok_per_s_samples=[agg]
            )
        notes = []
        if len(set(prompts)) > 1 or len(set(outs)) > 1:
            notes.append(
                f"request lengths vary: input {min(prompts)}-{max(prompts)}, output {min(outs)}-{max(outs)} tokens; "
                f"the workload names their means"
            )
        cached = sum(int(q.get("cached_tokens") or 0) for q in reqs.get("successful") or [])
        if cached:  # the server's prefix cache answered part of the prompts: TTFT timed no full prefill
            share = cached / max(1, sum(prompts))
            notes.append(
                f"the server answered {share:.0%} of the prompt tokens from its prefix cache ({cached} of {sum(prompts)}): "
                "TTFT is not a full prefill"
            )
            rec["prefix_cached_fraction"] = share
        rec["import_note"] = "; ".join(notes) or None
        rec["timing_method"] = "GuideLLM's client clock: each request's start, first and last token"
        rec["correct"], rec["correctness_note"] = None, "not checked: an imported result runs the server's own weights"
        _missing(rec, missing)
        out.append(rec)
    return out


# --- AIPerf ---------------------------------------------------------------------------------------


def _aiperf_value(metrics: dict, name: str):
    m = metrics.get(name)
    return m.get("value") if isinstance(m, dict) else None


def _aiperf_requests(path: Path) -> tuple[list[Round], list[int], list[int], list[int], str | None]:
    """Each completed request of AIPerf's per-request file as a round (its first token at its TTFT, a
    token per chunk after it, where the chunks are as many as the server's usage counts), and AIPerf's
    own output-token counts beside the server's."""
    rounds, served, counted, prompts = [], [], [], []
    if not path.is_file():
        return rounds, served, counted, prompts, None
    for line in read_text(path).splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{path}: a line that is not JSON") from None
        if not isinstance(r, dict) or r.get("error"):
            continue
        m = r.get("metrics") or {}
        ttft, gaps = _finite(_aiperf_value(m, "time_to_first_token")), _aiperf_value(m, "inter_chunk_latency")
        n = _aiperf_value(m, "usage_completion_tokens")
        if not ttft or not isinstance(gaps, list) or not isinstance(n, int) or len(gaps) + 1 != n:
            continue  # chunks that carry several tokens (or no usage): no per-token times to be had
        times = [ttft / 1e3]
        for g in gaps:
            times.append(times[-1] + (_finite(g) or 0.0) / 1e3)
        rounds.append(Round(tuple(times)))
        served.append(n)
        counted.append(_aiperf_value(m, "output_sequence_length"))
        prompt = _aiperf_value(m, "usage_prompt_tokens") or _aiperf_value(m, "input_sequence_length")
        if isinstance(prompt, int):
            prompts.append(prompt)
    return rounds, served, counted, prompts, sha256(path)


def aiperf(doc: dict, source: dict, model, device, engine, dtype) -> list[dict]:
    config = doc.get("input_config") or {}
    names = [m.get("name") for m in (config.get("models") or {}).get("items") or [] if isinstance(m, dict)]
    name = zoo_model(names[0] if names else None, model, source["import_file"])
    phase = next((p for p in config.get("phases") or [] if p.get("kind") == "profiling"), {})
    prompts = ((config.get("datasets") or [{}])[0].get("prompts") or {}) if config.get("datasets") else {}
    isl, osl = (prompts.get("isl") or {}).get("mean"), (prompts.get("osl") or {}).get("mean")
    rounds, served, counted, asked, detail = _aiperf_requests(
        Path(source["import_file"]).with_name("profile_export.jsonl")
    )
    gen = round(sum(served) / len(served)) if served else (round(osl) if osl else None)
    # the server's count of each prompt where the requests say it (a dataset file has no isl to read)
    prompt = round(sum(asked) / len(asked)) if asked else (round(isl) if isl else None)
    if not prompt or not gen or gen < 2:
        raise UsageError(f"{source['import_file']}: no input and output lengths in the file's input_config")
    conc = phase.get("concurrency")
    rate = _finite(phase.get("request_rate"))
    count = int((doc.get("completed_request_count") or {}).get("avg") or len(rounds) or 0)
    w = Workload("generate", prompt, gen, batch=int(conc) if conc else max(1, count))
    case = Case("aiperf", name, dtype or "bf16", w, rounds=count)
    version = doc.get("aiperf_version")
    stack = {
        "engine": engine,
        "engine_version": None,
        "exec_path": f"openai {(config.get('endpoint') or {}).get('type') or 'http'} stream (aiperf)",
        "stack": stack_line(engine, None, f"aiperf {version or '(version not in the file)'}"),
        "import_tool_version": version,
    }
    rec = _base(case, source, {"device_name": device, "backend_kind": None}, stack)
    missing = ["peak_mem_bytes", "engine_version"] + [
        k for k, v in (("device_name", device), ("engine", engine)) if not v
    ]
    _unknown_dtype(rec, dtype, missing)
    duration = _finite((doc.get("benchmark_duration") or {}).get("avg"))
    total = _finite((doc.get("total_output_tokens") or {}).get("avg"))
    errors = sum(int(e.get("count") or 0) for e in doc.get("error_summary") or [] if isinstance(e, dict))
    rec.update(
        kind="serve",
        workload=_serve_workload(prompt, gen, conc, rate),
        serve_concurrency=int(conc) if conc else None,
        serve_rate_per_s=rate,
        serve_requests=count + errors,
        serve_ok=count,
        serve_failed=errors,
        serve_partial=bool(errors and count),
        serve_duration_s=duration,
        request_per_s=_finite((doc.get("request_throughput") or {}).get("avg")),
        rounds=count,
    )
    if rounds:
        rec.update(metric_fields(rounds, Workload("generate", prompt, gen)))
        rec["token_times_s"] = None  # per-request times are in the source files; the record keeps the statistics
        rec["serve_output_tok_per_s"] = sum(served) / duration if duration else None
        rec["timing_method"] = "AIPerf's client clock: each request's TTFT and inter-chunk gaps (one token a chunk)"
        notes = [f"per-request times from profile_export.jsonl (sha256 {detail})"]
        if any(c != s for c, s in zip(counted, served)):
            notes.append(
                f"AIPerf's own tokenizer counted {min(counted)}-{max(counted)} output tokens where the server's usage "
                f"says {min(served)}-{max(served)}: the server's counts are used"
            )
        rec["import_note"] = "; ".join(notes)
    else:
        for metric, key in (
            ("ttft_s", "time_to_first_token"),
            ("itl_s", "inter_token_latency"),
            ("e2e_s", "request_latency"),
        ):
            stats = doc.get(key) or {}
            rec.update(
                {
                    f"{metric}_{k}": _ms(stats.get(a))
                    for k, a in (("mean", "avg"), ("median", "p50"), ("p90", "p90"), ("p99", "p99"), ("stdev", "std"))
                }
            )
            rec[f"{metric}_n"] = count
        rec["serve_output_tok_per_s"] = total / duration if total and duration else None
        missing += ["per-request times (profile_export.jsonl beside the file)", "tpot_s", "ci95 of every latency"]
        rec["timing_method"] = "AIPerf's client clock (its own statistics, no per-request times)"
    if rec["serve_output_tok_per_s"]:
        agg = rec["serve_output_tok_per_s"]
        rec.update({f"output_tok_per_s_{k}": v for k, v in summarize([agg]).items()}, output_tok_per_s_samples=[agg])
    rec["tok_per_s_per_user"] = 1 / rec["tpot_s_median"] if rec.get("tpot_s_median") else None
    rec["correct"], rec["correctness_note"] = None, "not checked: an imported result runs the server's own weights"
    _missing(rec, missing)
    return [rec]


# --- MLPerf LoadGen ------------------------------------------------------------------------------

_PCT = re.compile(r"^(\d+(?:\.\d+)?) percentile (latency|first token latency|time to output token) \(ns\)$")
_METRIC = {"latency": "e2e_s", "first token latency": "ttft_s", "time to output token": "tpot_s"}


def mlperf(path: Path, source: dict, model, device, engine, dtype, workload: str | None) -> list[dict]:
    s = read_summary(path)
    scenario = s.get("Scenario")
    if not scenario:
        raise UsageError(f"{path}: an MLPerf summary without its Scenario line")
    if not model or not workload:
        raise UsageError(
            f"{path}: an MLPerf summary names neither the model nor the prompt and output lengths: give --model "
            "and --workload ppP+tgN"
        )
    w = parse_workload(workload)
    if w.kind != "generate":
        raise UsageError(f"--workload for an MLPerf summary is ppP+tgN (prompt and output tokens), got {workload!r}")
    name = get_model(model).name
    detail = path.with_name("mlperf_log_detail.txt")
    version = None
    if detail.is_file():
        m = re.search(r'"key": "loadgen_version", "value": "([^"]+)"', read_text(detail))
        version = m.group(1) if m else None
    qps = _finite(_float(s.get("target_qps"))) if scenario == "Server" else None
    case = Case("mlperf", name, dtype or "bf16", w, rounds=1)
    stack = {
        "engine": engine,
        "engine_version": None,
        "exec_path": f"LoadGen {scenario} ({s.get('SUT name') or 'SUT'})",
        "stack": stack_line(engine, None, f"MLPerf LoadGen {version or '(version not in the logs)'}"),
        "import_tool_version": version,
    }
    rec = _base(case, source, {"device_name": device, "backend_kind": None}, stack)
    missing = ["peak_mem_bytes", "engine_version", "per-query times", "ci95 of every latency"]
    missing += [k for k, v in (("device_name", device), ("engine", engine)) if not v]
    _unknown_dtype(rec, dtype, missing)
    result_key = next((k for k in s if RESULT_KEY.match(k)), None)
    estimate = next((f"{k.lstrip('* ')}: {v}" for k, v in s.items() if "Early stopping" in k and "estimate" in k), None)
    valid = s.get("Result is")
    rate = _float(
        s.get("Completed samples per second") or s.get("Samples per second") or s.get("QPS w/o loadgen overhead")
    )
    rec.update(
        kind="serve",
        workload=f"{w.name} loadgen-{scenario.lower()}" + (f"@q{qps:g}" if qps else ""),
        loadgen_scenario=scenario if scenario in ("SingleStream", "Server", "Offline") else None,
        loadgen_valid=None if valid is None else valid.upper() == "VALID",
        loadgen_early_stopping="; ".join(x for x in (s.get("Early stopping satisfied"), estimate) if x) or None,
        loadgen_result=f"{result_key}: {s[result_key]}" if result_key else None,
        loadgen_checks="; ".join(
            f"{k.strip()}: {s[k]}"
            for k in s
            if k.strip().endswith("satisfied") and k.strip() != "Early stopping satisfied"
        )
        or None,
        loadgen_recommendations="; ".join(s.get("recommendations") or []) or None,
        loadgen_log_dir=str(path.parent),
        serve_rate_per_s=qps,
        request_per_s=rate,
        serve_output_tok_per_s=_float(s.get("Completed tokens per second") or s.get("Tokens per second")),
        rounds=None,
    )
    for key, value in s.items():
        m = _PCT.match(key)
        v = _float(value)
        if not m or v is None:
            continue
        metric, q = _METRIC[m.group(2)], float(m.group(1))
        stat = {50.0: "median", 90.0: "p90", 99.0: "p99"}.get(q)
        if stat:
            rec[f"{metric}_{stat}"] = v / 1e9
    for metric, label in (("e2e_s", "latency"), ("ttft_s", "First Token latency"), ("tpot_s", "Time per Output Token")):
        mean = _float(s.get(f"Mean {label} (ns)"))
        rec[f"{metric}_mean"] = mean / 1e9 if mean is not None else rec.get(f"{metric}_mean")
    if rec.get("tpot_s_median"):
        rec["tok_per_s_per_user"] = 1 / rec["tpot_s_median"]
    if rec.get("serve_output_tok_per_s"):
        agg = rec["serve_output_tok_per_s"]
        rec.update({f"output_tok_per_s_{k}": v for k, v in summarize([agg]).items()}, output_tok_per_s_samples=[agg])
    rec["timing_method"] = "LoadGen's clock: from each query's issue (its summary's statistics, no per-query times)"
    rec["correct"], rec["correctness_note"] = None, "not checked: an imported result"
    _missing(rec, missing)
    return [rec]


def _float(x) -> float | None:
    try:
        return _finite(float(str(x).split()[0]))
    except (TypeError, ValueError, IndexError):
        return None


# --- the command's entry ------------------------------------------------------------------------


def import_file(
    path: str | Path,
    fmt: str | None = None,
    model: str | None = None,
    device: str | None = None,
    engine: str | None = None,
    dtype: str | None = None,
    workload: str | None = None,
) -> list[dict]:
    """The records of one result file (`fmt` detected when None); `model`, `device`, `engine`,
    `dtype`: what the file does not say (a file that says it keeps its own where it names one)."""
    path = Path(path)
    text = read_text(path)
    if fmt == "mlperf" or (fmt is None and "MLPerf Results Summary" in text[:400]):
        source = {"import_tool": "mlperf", "import_file": str(path), "import_sha256": sha256(path)}
        return mlperf(path, source, model, device, engine, dtype, workload)
    values = _json_values(text, path)
    if not values:
        raise UsageError(f"{path}: no results in it")
    fmt = fmt or detect(values, path)
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; chipbench reads: {', '.join(FORMATS)}")
    source = {"import_tool": fmt, "import_file": str(path), "import_sha256": sha256(path)}
    if fmt == "llama-bench":
        return llama_bench(values, source, model, device)
    if fmt == "guidellm":
        return [r for doc in values for r in guidellm(doc, source, model, device, engine, dtype)]
    if fmt == "aiperf":
        return [r for doc in values for r in aiperf(doc, source, model, device, engine, dtype)]
    return vllm_bench(values, source, model, device, engine, dtype)
