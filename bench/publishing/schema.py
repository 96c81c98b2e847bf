"""The declared schema of result records: every field's type, range, unit and meaning, in one place.

Records are validated with pydantic (strict types: no "1" for 1, no 1.5 for a count, no NaN or
infinity, no negative spread), so a bad value is refused with its field path instead of reaching
a table or a verdict. The same declaration documents the fields (docs/records.md) and is published as a
JSON Schema (`results/schema/record.schema.json`, `chipbench schema records`) so that others can
validate records without chipbench.

Version 2 added the trial, host-load and software-stack fields; version 1 records (which lack
them) are still read, as single trials.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from chipbench.measuring.metrics import METRICS
from chipbench.stats import STAT_NAMES

from chipbench.measuring.recordline import READABLE_VERSIONS, SCHEMA_VERSION  # noqa: F401  (the format's version)

NonNeg = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0)]  # shares may exceed 1: that is flagged, not refused
Text = Annotated[str, Field(min_length=1)]
Opt = lambda t: t | None  # noqa: E731  (a field that may be null: unknown, not measured)

# field -> (type, unit, meaning). Metric fields follow the pattern `<metric>_<stat>` and
# `<metric>_samples` (METRIC_FIELDS below); `env_device_*` holds adapter-specific device facts.
FIELDS: dict[str, tuple[Any, str, str]] = {
    "schema_version": (
        Literal[READABLE_VERSIONS],
        "",
        f"record format version (this is {SCHEMA_VERSION}; 1 is still read)",
    ),
    "record_id": (Text, "", "unique id of this record (one trial of one case)"),
    "status": (Literal["ok", "failed"], "", "ok, or failed (then `error` says why and metrics are empty)"),
    "error": (Opt(str), "", "why the case failed; null when it did not"),
    "traceback": (Opt(str), "", "failed cases only: the last frames of the error, for bug reports"),
    "backend": (Text, "", "adapter that ran the case (cpu, cuda, accelerator, or a plugin's name)"),
    "backend_kind": (Opt(str), "", "device family compared across runs (cpu, cuda, xpu, npu, ...)"),
    "backend_dist": (
        Opt(str),
        "",
        "the distribution that provided the adapter (chipbench for the built-ins, else the plugin's)",
    ),
    "backend_dist_version": (Opt(str), "", "that distribution's version"),
    "device_name": (Opt(str), "", "the device's own name for itself"),
    "model": (Text, "", "zoo name of the model"),
    "family": (Opt(str), "", "architecture family (qwen2, qwen3, qwen3_moe, qwen3_next, qwen3_5, qwen3_5_moe)"),
    "dtype": (
        Text,
        "",
        "weight and activation dtype (fp32, bf16, fp16; llama.cpp also q8_0, q6_K, q5_K_M, q4_K_M, q4_0; "
        "OpenVINO also NNCF's weight compressions int8_sym, int8_asym, int4_sym, int4_asym; "
        "unknown: an imported result whose file does not say)",
    ),
    "weights": (
        Opt(str),
        "",
        "random(seed=N, u8) for seeded random weights (random(seed=N): the older normal draw), local:<dir> for real weights",
    ),
    "weights_digest": (
        Opt(str),
        "",
        "BLAKE2b-256 of the weights the case ran, over every tensor of the model in order (name, dtype, shape, bytes), computed once per model, dtype, seed and generator (or local files) and cached; null where the backend does not expose its tensors (an engine, a server) or CHIPBENCH_WEIGHTS_DIGEST=0",
    ),
    "workload": (Text, "", "workload name in llama-bench style (pp512, tg128, tg128@d4096, pp512+tg128)"),
    "kind": (
        Literal["prefill", "decode", "generate", "serve"],
        "",
        "prefill, decode or generate; serve: one load level of a serving sweep (bench/measuring/serving.py)",
    ),
    "batch": (Positive, "sequences", "batch size B"),
    "prompt_tokens": (Opt(Positive), "tokens", "prompt length P per sequence (the context for decode workloads)"),
    "gen_tokens": (Opt(Positive), "tokens", "tokens generated per sequence, N (fixed; EOS ignored)"),
    "dtype_reason": (
        Opt(Text),
        "",
        "why the suite timed this dtype by default on this device, where it is not the suite's own (a CPU "
        "without bf16 matmul instructions: fp32); null when the dtype was asked for or is the suite's",
    ),
    "warmup_rounds": (Opt(Count), "rounds", "untimed rounds run first"),
    "warmup_tokens": (
        Opt(Positive),
        "tokens",
        "tokens each warmup round generated: the workload's, or its first 16 in a case whose rounds are sized "
        "(its pace scaled to a full round's)",
    ),
    "rounds": (Opt(Positive), "rounds", "timed rounds the statistics are over"),
    "rounds_rule": (
        Opt(Literal["fixed", "budget", "soak"]),
        "",
        "how their count was set: fixed (--rounds), budget (as many as fit the case's time budget at its "
        "warmup round's pace, between 5 and 10), soak (as many as filled --soak)",
    ),
    "rounds_reason": (Opt(Text), "", "the count and why: the budget, the warmup's pace, a bound reached"),
    "series_id": (Opt(str), "", "one invocation's id: the trials of one `--bench-repeats` run share it"),
    "trial_index": (Opt(Count), "", "this trial's number within its series (0-based)"),
    "trials_planned": (Opt(Positive), "trials", "trials the series asked for (--bench-repeats)"),
    "trial_process": (
        Opt(Literal["worker", "in-process"]),
        "",
        "worker: the trial ran in a fresh process; in-process: in the calling process",
    ),
    "ab_id": (
        Opt(str),
        "",
        "same-machine A/B (`chipbench ab`): the run's id, shared by both arms' trials; null otherwise",
    ),
    "ab_arm": (Opt(Literal["A", "B"]), "", "A/B: which arm this trial belongs to"),
    "ab_pair": (Opt(Count), "", "A/B: the pair this trial belongs to (0-based; one trial of each arm, back to back)"),
    "ab_position": (
        Opt(Literal[0, 1]),
        "",
        "A/B: 0 when this trial ran first in its pair, 1 when second (the order alternates: A B, B A, ...)",
    ),
    "ab_label": (
        Opt(str),
        "",
        "A/B: the arm's name (its label, or what it changes: a backend, mode, dtype or python=PATH)",
    ),
    "exec_path": (
        Opt(str),
        "",
        "how generation ran: eager (the harness's loop on transformers' forward) or compiled "
        "(a static KV cache, a torch.compile'd decode step, CUDA graphs on CUDA, and a compiled prefill)",
    ),
    "exec_note": (
        Opt(str),
        "",
        "why the mode asked for did not run as asked: a fallback to eager, or a compiled step "
        "that has graph breaks, skipped CUDA graphs or recompiled while timed, or a compiled case whose prefill "
        "ran eager, with the reason; null otherwise",
    ),
    "compile_time_s": (
        Opt(NonNeg),
        "s",
        "compiled: time to trace, compile and capture the decode step and to compile the "
        "prefill, apart from steady state",
    ),
    "prefill_path": (
        Opt(Literal["compiled", "eager"]),
        "",
        "compiled: how the prompt went in: compiled (a prefill "
        "compiled with a dynamic prompt length; a one-token prompt is a compiled decode step at position 0) "
        "or eager (a linear-attention hybrid, a prefill that did not compile, or a record made before "
        '2026-12-05); part of the path ("compiled, eager prefill"); null in eager mode',
    ),
    "prefill_compile_time_s": (
        Opt(NonNeg),
        "s",
        "compiled: the prefill's part of compile_time_s; null where no prefill compile was tried",
    ),
    "compiled_graphs": (
        Opt(Count),
        "graphs",
        "compiled: graphs torch.compile made of the decode step over the case (1: the "
        "whole step is one graph; 0: it ran eagerly; more: graph breaks, or recompiles of the step or the prefill "
        "while timed); null otherwise",
    ),
    "graph_breaks": (
        Opt(Count),
        "",
        "compiled: graph breaks in the decode step (each one returns to Python mid-step); null otherwise",
    ),
    "compile_flags": (
        Opt(str),
        "",
        "compiled: the TORCHINDUCTOR_* environment settings the step was built under that can "
        'change its kernels (e.g. "coordinate_descent_tuning=1, freezing=1"; caches and logs left out); '
        "part of the case's path, so tuned and default compiles are never pooled; null: inductor's defaults",
    ),
    "compile_cache": (
        Opt(str),
        "",
        "compiled: what inductor's on-disk FX graph cache gave the build: hit (the kernels "
        "were read back; compile_time_s is then mostly tracing), miss (compiled anew, as on a machine's "
        "first run), bypass, or a mix with counts; null where no graph reached inductor",
    ),
    "cuda_graphs": (
        Opt(Literal["captured", "skipped"]),
        "",
        "compiled on CUDA (mode reduce-overhead): whether inductor "
        "captured the step as CUDA graphs or skipped them (kernels then launch one by one); null where none were asked",
    ),
    "engine": (Opt(str), "", "the inference software that ran the model (transformers, llama.cpp, vllm, ...)"),
    "engine_version": (Opt(str), "", "its version"),
    "stack": (Opt(str), "", "the software stack in one line: engine, version and execution path (claims match on it)"),
    "parallel": (Opt(str), "", "parallel layout: none for one device; tpN / ppN when split"),
    "endpoint_rtt_s": (
        Opt(NonNeg),
        "s",
        "endpoint: median round trip of a small GET to the server on an open "
        "connection (the network's and HTTP stack's share of each request's TTFT); null elsewhere",
    ),
    "prefix_caching": (
        Opt(str),
        "",
        "how a prompt cache was kept from serving a round's or request's prompt (null: the adapter does not say)",
    ),
    "prefix_cached_fraction": (
        Opt(NonNeg),
        "",
        "an imported serving level: the share of its prompt tokens the server answered from its prefix cache "
        "(the tool's file says); above 0, TTFT timed no full prefill",
    ),
    "linear_attn_path": (
        Opt(str),
        "",
        "hybrid models: DeltaNet kernels used (fla... or the pure-torch fallback); null otherwise",
    ),
    "params_total": (Opt(Count), "parameters", "all parameters (tied embeddings once)"),
    "params_active": (Opt(Count), "parameters", "parameters used per token (top-k experts only)"),
    "weight_bytes": (Opt(Count), "bytes", "all weights in this dtype"),
    "active_weight_bytes": (Opt(Count), "bytes", "weights read per decode step in this dtype"),
    "kv_bytes_per_token": (Opt(Count), "bytes", "KV cache per token per sequence in this dtype"),
    "recurrent_state_bytes": (Opt(Count), "bytes", "DeltaNet recurrent plus conv state per sequence (hybrid models)"),
    "flops_per_token": (Opt(Count), "FLOP", "forward FLOPs for one token at the prompt's context length"),
    "build_time_s": (Opt(NonNeg), "s", "time to allocate the model and fill or load its weights"),
    "peak_mem_bytes": (
        Opt(Count),
        "bytes",
        "peak memory over the timed rounds (see peak_mem_kind); a split case (torchrun): the sum of every rank's",
    ),
    "peak_mem_kind": (Opt(str), "", "device_allocated_peak (torch allocator) or process_rss_peak (host RSS)"),
    "expected_mem_bytes": (
        Opt(Count),
        "bytes",
        "analytic: the weights plus every sequence's KV cache (and recurrent state) at its full length",
    ),
    "mem_vs_expected": (
        Opt(NonNeg),
        "fraction",
        "peak_mem_bytes / expected_mem_bytes: above 1 is the runtime's overhead "
        "(on the CPU the whole process, whose peak memory is its RSS)",
    ),
    "token_times_s": (
        Opt(list[list[NonNeg]]),
        "s",
        "raw timestamps: per round, when each step's tokens reached the host, from the request start",
    ),
    "host_load_avg_1m": (Opt(NonNeg), "processes", "the host's 1-minute load average when the trial's rounds started"),
    "host_other_cpu_frac": (
        Opt(NonNeg),
        "fraction",
        "CPU time used by other processes during the trial's rounds (warmup and timed), over wall time x logical CPUs (a split case's ranks on this host are not others; time the hypervisor stole is host_steal_frac, not this; until 2026-12-03 it was counted in both)",
    ),
    "host_steal_frac": (
        Opt(NonNeg),
        "fraction",
        "CPU time stolen by the hypervisor during the trial (where the kernel counts it)",
    ),
    "host_cpu_mhz": (Opt(NonNeg), "MHz", "mean CPU clock during the trial, where the kernel exposes it"),
    "host_loaded": (
        Opt(bool),
        "",
        "the trial ran on a loaded host (other processes or steal took a noticeable share, beyond the kernel counters' resolution of a 10 ms tick per CPU); null: unknown (a local server's process unseen, or a trial too short for the counters to tell)",
    ),
    "host_load_note": (Opt(str), "", "why the host counted as loaded, or what could not be read"),
    "telemetry_sources": (
        Opt(str),
        "",
        "what sampled the device during the timed rounds (nvml, rapl, psutil cpu_freq)",
    ),
    "telemetry_rate_hz": (Opt(NonNeg), "Hz", "the sampling rate"),
    "telemetry_samples": (Opt(Count), "samples", "samples taken during the timed rounds"),
    "tele_clock_mhz": (Opt(NonNeg), "MHz", "mean clock over the timed rounds: the GPU's SM clock, the CPU's clock"),
    "tele_mem_clock_mhz": (Opt(NonNeg), "MHz", "mean memory clock over the timed rounds"),
    "tele_power_w": (
        Opt(NonNeg),
        "W",
        "mean board power over the timed rounds; a split case (torchrun): every chip's, summed",
    ),
    "tele_temp_c_max": (Opt(float), "°C", "highest device temperature over the timed rounds"),
    "energy_j": (
        Opt(NonNeg),
        "J",
        "the device's energy over the timed rounds: its meter's rise (energy_meter), read at each round's edges; energy_scope says over what; null where not metered or not trusted (telemetry_not_metered says why), never zero; a split case: every chip's, summed",
    ),
    "energy_meter": (
        Opt(str),
        "",
        "what counted the device's joules: nvml-energy-counter (NVML's total-energy counter), nvml-power-integration (NVML's power integrated over the reads, for boards without the counter), rapl (the kernel's powercap counters), amdsmi-energy-counter (AMD SMI's accumulator), a plugin's own name, or none",
    ),
    "energy_domain": (
        Opt(str),
        "",
        "what that meter covers: device (the accelerator board), cpu-package, cpu-package+dram (the CPU as the device: its sockets and their memory), platform (psys)",
    ),
    "energy_sample_hz": (
        Opt(NonNeg),
        "Hz",
        "how often the meter was read in the background; each round's edges are read as well",
    ),
    "energy_check": (
        Opt(str),
        "",
        "the meter's check before the rounds, passed or failed with what was seen: the counter advanced, and the power it implied lay within 1.5 x the limit its domain states (5 kW where none is stated); a failed meter's energy is not recorded, nor energy that implies a power outside that bound over the rounds",
    ),
    "energy_scope": (
        Opt(Literal["rounds", "span"]),
        "",
        "rounds: energy_j is each timed round's own rise, summed, the gaps between rounds left out; span: rounds shorter than ten of the counter's steps, so the rise from the first round's start to the last round's end, gaps included",
    ),
    "energy_counter_period_s": (
        Opt(NonNeg),
        "s",
        "how often the energy counter moved, timed before the rounds (an energy figure is off by up to one step; 0.5: it did not move twice in 0.5 s; 1.0 for NVML power integration: its power reading is a one-second average)",
    ),
    "energy_per_token_j": (
        Opt(NonNeg),
        "J",
        "energy_j over the tokens the timed rounds produced (prompt tokens for ppN, generated tokens otherwise)",
    ),
    "energy_per_output_token_j": (
        Opt(NonNeg),
        "J",
        "energy_j over the generated tokens of the timed rounds (batch x generated tokens x rounds)",
    ),
    "energy_per_total_token_j": (
        Opt(NonNeg),
        "J",
        "energy_j over every token the timed rounds processed, the prompt's included (batch x (prompt + generated) x rounds): each round prefills its prompt",
    ),
    "host_energy_j": (
        Opt(NonNeg),
        "J",
        "the host's energy over the same rounds, beside the device's, from its own meter (host_energy_meter: RAPL's psys where the platform has it, else the CPU packages and their DRAM beside an accelerator; the CPU as the device: psys only); null where not metered, with why; a split case: once per host",
    ),
    "host_energy_meter": (Opt(str), "", "what counted the host's joules (as energy_meter), or none"),
    "host_energy_domain": (Opt(str), "", "what the host's meter covers (as energy_domain)"),
    "host_energy_sample_hz": (Opt(NonNeg), "Hz", "how often the host's meter was read in the background"),
    "host_energy_check": (Opt(str), "", "the host meter's check before the rounds (as energy_check)"),
    "host_energy_scope": (Opt(Literal["rounds", "span"]), "", "over what host_energy_j was summed (as energy_scope)"),
    "host_energy_counter_period_s": (Opt(NonNeg), "s", "how often the host's counter moved, timed before the rounds"),
    "host_energy_per_output_token_j": (Opt(NonNeg), "J", "host_energy_j over the generated tokens of the timed rounds"),
    "host_energy_per_total_token_j": (
        Opt(NonNeg),
        "J",
        "host_energy_j over every token the timed rounds processed, the prompt's included",
    ),
    "throttled_rounds": (
        Opt(Count),
        "rounds",
        "timed rounds during which the device reported a throttle reason (null: not metered)",
    ),
    "throttle_reasons": (
        Opt(str),
        "",
        "the throttle reasons reported (sw power cap, hw slowdown, sw/hw thermal, hw power brake)",
    ),
    "telemetry_not_metered": (
        Opt(str),
        "",
        "quantities nothing could read on this device, and why: not metered, never zero",
    ),
    "soak_s": (Opt(NonNeg), "s", "sustained mode (--soak): the time the timed rounds were asked to fill"),
    "soak_elapsed_s": (Opt(NonNeg), "s", "the time they took"),
    "soak_window_s": (
        Opt(NonNeg),
        "s",
        "the windows compared: a minute, or a third of the soak when it is shorter than two minutes",
    ),
    "soak_first_tok_per_s": (
        Opt(NonNeg),
        "tokens/s",
        "mean headline throughput of the rounds that started in the first window",
    ),
    "soak_last_tok_per_s": (Opt(NonNeg), "tokens/s", "the same for the rounds that ended in the last window"),
    "soak_change": (
        Opt(NonNeg),
        "fraction",
        "last over first: below 1, the device slowed down as it ran (heat, power, clocks)",
    ),
    "serve_concurrency": (
        Opt(Positive),
        "requests",
        "serve: the most requests in flight the load allowed (null: rate only)",
    ),
    "serve_rate_per_s": (
        Opt(NonNeg),
        "requests/s",
        "serve: Poisson arrival rate (null: sent as fast as the concurrency allowed)",
    ),
    "serve_requests": (Opt(Count), "requests", "serve: requests the level planned"),
    "serve_ok": (Opt(Count), "requests", "serve: requests that streamed exactly the tokens asked for"),
    "serve_failed": (Opt(Count), "requests", "serve: requests that failed (serve_errors says how)"),
    "serve_partial": (
        Opt(bool),
        "",
        "serve: some requests failed while others completed: the level's figures describe the completed ones "
        "only, the table marks it, and `chipbench serve` exits 1",
    ),
    "serve_not_sent": (Opt(Count), "requests", "serve: requests left unsent when the level's time bound was reached"),
    "serve_duration_s": (Opt(NonNeg), "s", "serve: the level's wall time, first send to last completion"),
    "serve_errors": (Opt(str), "", "serve: the distinct errors of the failed requests"),
    "request_per_s": (Opt(NonNeg), "requests/s", "serve: completed requests over the level's wall time"),
    "serve_output_tok_per_s": (
        Opt(NonNeg),
        "tokens/s",
        "serve: generated tokens of completed requests over the level's wall time (also the level's output_tok_per_s)",
    ),
    "tok_per_s_per_user": (Opt(NonNeg), "tokens/s", "serve: what one user sees, 1 / median TPOT"),
    "goodput_req_per_s": (Opt(NonNeg), "requests/s", "serve: requests meeting both latency limits, over the wall time"),
    "goodput_fraction": (
        Opt(NonNeg),
        "fraction",
        "serve: the share of the level's requests meeting both limits (of all it planned: unsent ones met none)",
    ),
    "slo_ttft_s": (Opt(NonNeg), "s", "serve: the TTFT limit of goodput (default MLPerf Llama-2-70B server: 2 s)"),
    "slo_tpot_s": (Opt(NonNeg), "s", "serve: the TPOT limit of goodput (default MLPerf Llama-2-70B server: 0.2 s)"),
    "serve_send_lag_median_s": (
        Opt(NonNeg),
        "s",
        "a serving level: the median wait of a request inside this client past its due time (its place in the "
        "rate's schedule, or with concurrency alone when its slot opened) before it was sent; the server never "
        "sees it",
    ),
    "serve_send_lag_p99_s": (Opt(NonNeg), "s", "the 99th percentile of that wait"),
    "serve_send_lag_max_s": (Opt(NonNeg), "s", "the longest such wait"),
    "ttft_from_due_p99_s": (
        Opt(NonNeg),
        "s",
        "99th percentile TTFT counted from each request's due time, not its send: the client's queueing included",
    ),
    "e2e_from_due_p99_s": (Opt(NonNeg), "s", "99th percentile E2E counted from each request's due time"),
    "client_capacity_tok_per_s": (
        Opt(NonNeg),
        "tokens/s",
        "a serving level: the streamed tokens/s this client drove against a mock server on this host (its "
        "capacity; a floor: the mock shares the host)",
    ),
    "client_capacity_share": (
        Opt(NonNeg),
        "",
        "the level's output tokens/s over that capacity (tokens, where a server may send several per chunk)",
    ),
    "client_bound": (Opt(bool), "", "the level used more than half the client's capacity: it measured the client too"),
    "client_capacity_note": (Opt(str), "", "how the client's capacity was measured, and when"),
    "client_cpu_cores": (
        Opt(NonNeg),
        "CPUs",
        "a serving level: the load generator's average CPU use over the level (chipbench's process, or a "
        "driver's tool and the children it waited for)",
    ),
    "server_cpu_cores": (
        Opt(NonNeg),
        "CPUs",
        "the average CPU use of the server over the level, where it runs on this host (null: not seen here)",
    ),
    "client_contends": (
        Opt(bool),
        "",
        "the client, taking 5% or more of the host's CPUs, and a server on the same host kept 90% or more of them "
        "busy: the client slowed the server (null: not judged, as for a driven level, whose tool's CPU time counts "
        "its start-up)",
    ),
    "client_cpu_note": (Opt(str), "", "the client's and the server's CPU use in words, and what it means"),
    "loadgen_scenario": (
        Opt(Literal["SingleStream", "Server", "Offline"]),
        "",
        "an MLPerf LoadGen scenario run on a chipbench backend (`chipbench loadgen`)",
    ),
    "loadgen_valid": (
        Opt(bool),
        "",
        "LoadGen's verdict on the run: its 'Result is' VALID, and every query answered with tokens (LoadGen counts "
        "an empty answer, a failed or unrun query, as completed; chipbench does not)",
    ),
    "loadgen_early_stopping": (Opt(str), "", "LoadGen's early-stopping verdict and its percentile estimate"),
    "loadgen_result": (
        Opt(str),
        "",
        "the scenario's result line in LoadGen's summary (a latency percentile, samples/s)",
    ),
    "loadgen_checks": (
        Opt(str),
        "",
        "LoadGen's other checks: minimum duration, minimum queries, performance constraints",
    ),
    "loadgen_recommendations": (Opt(str), "", "what LoadGen recommends, where the run was not valid"),
    "loadgen_log_dir": (Opt(str), "", "LoadGen's own logs (summary, detail, trace), kept beside the records"),
    "serve_driver": (
        Opt(Literal["builtin", "guidellm", "aiperf", "vllm-bench"]),
        "",
        "a serving level driven by another load tool (`chipbench serve --driver`), its result imported",
    ),
    "driver_log": (Opt(str), "", "that tool's output for the level, kept beside the records"),
    "serve_prompts": (
        Opt(str),
        "",
        "a driven level: which prompts the tool sent (chipbench's, salted, as its dataset)",
    ),
    "decode_bytes_per_step": (
        Opt(NonNeg),
        "bytes",
        "bytes a decode step reads by the common definition of MBU: active weights (an untied input embedding whole) plus every sequence's cache at the mean context",
    ),
    "decode_flops_per_step": (Opt(NonNeg), "FLOP", "FLOPs of a decode step for the whole batch at the mean context"),
    "prefill_bytes": (Opt(NonNeg), "bytes", "least bytes the prefill moves: all weights plus the KV cache it writes"),
    "prefill_flops": (
        Opt(NonNeg),
        "FLOP",
        "FLOPs of the prefill for the whole batch: every prompt token through the layers, the output head once per sequence (only the last position's logits are computed)",
    ),
    "achieved_gb_per_s": (Opt(NonNeg), "GB/s", "decode_bytes_per_step / median TPOT, 10^9 bytes/s"),
    "achieved_decode_tflops": (Opt(NonNeg), "TFLOP/s", "decode_flops_per_step / median TPOT"),
    "achieved_prefill_tflops": (Opt(NonNeg), "TFLOP/s", "prefill_flops / median TTFT"),
    "chip": (Opt(str), "", "spec row matched by device_name (results/chips.toml); null when none matches"),
    "chip_confidence": (Opt(str), "", "the spec row's confidence: A, B or ? (sources conflict)"),
    "ceiling_gb_per_s": (
        Opt(NonNeg),
        "GB/s",
        "measured: device memory bandwidth, the best of a copy (bytes read plus written) and a read-only sum (backends/ceilings.py); a split case: every torchrun rank's, measured at once, summed, or for an engine's own split one device's times env_chips",
    ),
    "ceiling_tflops": (
        Opt(NonNeg),
        "TFLOP/s",
        "measured: large matmul rate (x @ w.T) for this dtype: for bf16 and fp16 the better of the dtype's own product and fp32's, which computes the same product exactly (ceiling_matmul_dtype says which)",
    ),
    "ceiling_matmul_dtype": (
        Opt(str),
        "",
        "the product that set ceiling_tflops: this dtype's own, or fp32 where this device runs it faster (no native 16-bit product: torch's bf16 on an AVX2 CPU)",
    ),
    "ceiling_tflops_in_dtype": (
        Opt(NonNeg),
        "TFLOP/s",
        "this dtype's own product's best rate in the same rounds, beside ceiling_tflops; null for a type torch has no product of (an engine's quantised types, whose ceiling is bf16's, or fp32's where faster)",
    ),
    "ceiling_gb_per_s_median": (
        Opt(NonNeg),
        "GB/s",
        "the median round's bandwidth: the ceilings are the best of rounds over a window, and a median far below the best says the device's rate moved",
    ),
    "ceiling_tflops_median": (Opt(NonNeg), "TFLOP/s", "the median round's matmul rate"),
    "ceiling_beside_gb_per_s": (
        Opt(NonNeg),
        "GB/s",
        "measured right after this case's timed rounds (3 rounds; not with a window of 0): evidence beside the run's shared ceilings, which judge the shares",
    ),
    "ceiling_beside_tflops": (Opt(NonNeg), "TFLOP/s", "the matmul rate measured right after this case's timed rounds"),
    "ceiling_window_s": (
        Opt(NonNeg),
        "s",
        "how long the ceilings' rounds ran (default 3 s on a CPU, 1 s on an accelerator; --ceiling-window)",
    ),
    "ceiling_kept_from": (
        Opt(str),
        "",
        "when the shared ceilings were measured, if an earlier run on this machine measured them (kept a day, "
        "for the same device, host, software, dtype and window): null when this run measured them",
    ),
    "ceiling_revalidation": (
        Opt(NonNeg),
        "",
        "kept ceilings: this run's quick rounds (3, no window) over them, the lower of bandwidth and matmul; "
        "kept from 0.85 up (raised to the quick rounds' rate where that is higher), else measured again",
    ),
    "spec_check": (Opt(str), "", "set when the measured ceilings beat the spec row or miss it by half"),
    "spec_mbu": (
        Opt(Fraction),
        "fraction",
        "model bandwidth utilisation: achieved bytes/s over the spec bandwidth times env_chips (decode)",
    ),
    "measured_mbu": (Opt(Fraction), "fraction", "the same over the measured copy bandwidth"),
    "spec_decode_mfu": (Opt(Fraction), "fraction", "decode FLOP/s over the spec peak for this dtype"),
    "measured_decode_mfu": (Opt(Fraction), "fraction", "decode FLOP/s over the measured matmul rate"),
    "spec_prefill_mfu": (Opt(Fraction), "fraction", "prefill FLOP/s over the spec peak (not for tgN tests)"),
    "measured_prefill_mfu": (Opt(Fraction), "fraction", "prefill FLOP/s over the measured matmul rate"),
    "spec_best_tpot_s": (Opt(NonNeg), "s", "fastest TPOT the spec peaks allow: max(bytes / bandwidth, FLOPs / peak)"),
    "measured_best_tpot_s": (Opt(NonNeg), "s", "the same with the measured ceilings"),
    "spec_best_ttft_s": (Opt(NonNeg), "s", "fastest TTFT the spec peaks allow"),
    "measured_best_ttft_s": (Opt(NonNeg), "s", "the same with the measured ceilings"),
    "spec_best_decode_tok_per_s": (Opt(NonNeg), "tokens/s", "batch / spec_best_tpot_s: the decode roofline"),
    "measured_best_decode_tok_per_s": (Opt(NonNeg), "tokens/s", "batch / measured_best_tpot_s"),
    "timing_method": (
        Opt(str),
        "",
        "the clock the token times come from: device events in the stream (cross-checked "
        "against the host stamps) or the host clock after each token's copy to the host",
    ),
    "clock_disagreement_s": (
        Opt(NonNeg),
        "s",
        "device events: the largest spread, over a round, of host stamp minus "
        "device time (a near-constant lag is expected; beyond 1 ms or 5% the host stamps are used)",
    ),
    "host_step_s": (
        Opt(NonNeg),
        "s",
        "an asynchronous device (CUDA): the host's own work per decode step, its waits on the "
        "device left out (median over the rounds; null on the CPU, whose ops finish as they are called)",
    ),
    "host_busy_frac": (
        Opt(Annotated[float, Field(ge=0, le=1)]),
        "fraction",
        "the share of the decode span the host's own "
        "work filled (median over the rounds): near 1, the device waited for the host",
    ),
    "host_bound": (
        Opt(bool),
        "",
        "host_busy_frac >= 0.95: the device waited for the host, so the decode speed is the "
        "host's (launching kernels, taking delivery), not the chip's",
    ),
    "timing_selftest": (
        Opt(str),
        "",
        "the backend's timing self-test, run once per benchmark run before any number is "
        "reported (bench/measuring/selftest.py): passed, with the work left in flight after the last token",
    ),
    "roofline_flag": (
        Opt(str),
        "",
        "MEASUREMENT ERROR when a utilisation exceeds 100% (a quantised type's MFU against its float's yardstick: 200%): such a figure is not a result",
    ),
    "correct": (
        Opt(bool),
        "",
        "correctness gate: true, false (fast but wrong: flagged everywhere), null when not checked",
    ),
    "correctness_rel_err": (
        Opt(NonNeg),
        "fraction",
        "largest relative logits error against the CPU fp32 reference, ties aside",
    ),
    "correctness_tolerance": (
        Opt(NonNeg),
        "fraction",
        "the bound: max(dtype tolerance, 2 x the same dtype's error on the CPU)",
    ),
    "correctness_token_agreement": (
        Opt(Annotated[float, Field(ge=0, le=1)]),
        "fraction",
        "greedy tokens equal to the reference's under teacher forcing, ties counted equal",
    ),
    "correctness_ties": (
        Opt(Count),
        "positions",
        "positions excused as logit ties or held to the looser routing-tie bound",
    ),
    "correctness_reference": (
        Opt(str),
        "",
        "what the reference was: cpu fp32, N of M layers (depth-reduced when the host is too small)",
    ),
    "correctness_note": (Opt(str), "", "why the gate failed, or why it did not run"),
    "env_hostname": (Opt(str), "", "host name"),
    "env_os": (Opt(str), "", "operating system"),
    "env_python": (Opt(str), "", "Python version"),
    "env_torch": (Opt(str), "", "torch version"),
    "env_transformers": (Opt(str), "", "transformers version"),
    "env_cpu_model": (Opt(str), "", "host CPU model"),
    "env_cpu_cores": (Opt(Positive), "cores", "physical CPU cores"),
    "env_cpu_threads": (Opt(Positive), "threads", "logical CPUs"),
    "env_torch_threads": (Opt(Positive), "threads", "torch intra-op threads"),
    "env_runner": (
        Opt(str),
        "",
        "the CI runner's label (CHIPBENCH_RUNNER, set by the cross-runner workflow); null outside it",
    ),
    "env_world_size": (Opt(Positive), "processes", "ranks of the torchrun launch that ran the case (1: one process)"),
    "env_chips": (
        Opt(Positive),
        "chips",
        "the chips whose memory a case's decode step reads at once, whose peaks its roofline sums: 1; under torchrun one per rank on accelerators, one per host for CPU ranks; an engine's own split (vLLM tpN), N on accelerators",
    ),
    "env_host_memory_bytes": (Opt(Count), "bytes", "host RAM"),
    "env_device_count": (Opt(Count), "devices", "devices of this kind visible"),
    "env_device_memory_bytes": (Opt(Count), "bytes", "memory of the device used (host RAM for cpu)"),
    "env_driver": (Opt(str), "", "device driver version, when the adapter can read it (NVML for NVIDIA)"),
    "env_runtime": (Opt(str), "", "device runtime (cuda 13.0, rocm 6.4, torch x.y for cpu)"),
    "harness_version": (Opt(str), "", "chipbench version"),
    "git_commit": (Opt(str), "", "chipbench's git commit (+dirty for local changes), null outside git"),
    "timestamp_utc": (Opt(str), "", "when the case finished, ISO 8601 UTC"),
    "seed": (Opt(int), "", "seed of the random weights and the prompt ids"),
    "command": (Opt(str), "", "the command line that produced the record"),
    "import_tool": (
        Opt(Literal["llama-bench", "vllm-bench", "guidellm", "aiperf", "mlperf"]),
        "",
        "an imported record: the tool whose result file it was read from (`chipbench import`)",
    ),
    "import_tool_version": (Opt(str), "", "that tool's version or build, as its file says"),
    "import_file": (Opt(str), "", "the result file it was read from, as given"),
    "import_sha256": (Opt(str), "", "SHA-256 of that file"),
    "import_missing": (
        Opt(list[str]),
        "",
        "what the file does not say, left null rather than guessed (a metric, the device, the dtype, ...)",
    ),
    "import_note": (Opt(str), "", "what the import had to say about the file (lengths that vary, say)"),
    "rerun": (
        Opt(str),
        "",
        "the command line that runs exactly this case again, one trial (chipbench run; torchrun for a split case; chipbench serve for a serving level)",
    ),
}

# Documented, not declared: a family of fields whose names an adapter chooses.
PATTERN_FIELDS = {
    "env_device_*": (
        "",
        "adapter-specific device facts (compute capability, clocks, core counts; a CPU's matmul extensions as `isa` and the vector code torch dispatches to as `cpu_capability`)",
    )
}
DEVICE_FACT = str | int | float | bool | None
REQUIRED = ("schema_version", "record_id", "status", "backend", "model", "dtype", "workload", "kind", "batch")


def metric_field_types() -> dict[str, Any]:
    """`<metric>_<stat>` and `<metric>_samples` for every metric, typed."""
    out: dict[str, Any] = {}
    for m in METRICS:
        for s in STAT_NAMES:
            out[f"{m}_{s}"] = Opt(Count) if s == "n" else Opt(float) if s.startswith("ci95") else Opt(NonNeg)
        if m != "itl_s":
            out[f"{m}_samples"] = Opt(list[Opt(NonNeg)])
    return out


class _RecordBase(BaseModel):
    model_config = ConfigDict(
        strict=True,
        allow_inf_nan=False,
        extra="allow",
        json_schema_extra={
            "additionalProperties": False,
            "patternProperties": {"^env_device_": {"type": ["string", "number", "integer", "boolean", "null"]}},
        },
    )

    @model_validator(mode="after")
    def _extras_and_spreads(self):
        for key, value in (self.model_extra or {}).items():
            if not key.startswith("env_device_"):
                raise ValueError(
                    f"unknown field {key!r}: not in the record schema (see results/schema/record.schema.json)"
                )
            if not (value is None or isinstance(value, (str, int, float, bool))):
                raise ValueError(f"field {key!r}: device facts are single values, got {type(value).__name__}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"field {key!r}: not a finite number")
        for m in METRICS:
            lo, hi = getattr(self, f"{m}_ci95_low"), getattr(self, f"{m}_ci95_high")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"field {m}_ci95_low: {lo} is above {m}_ci95_high {hi}")
        return self


def _field(name: str, annotation):
    return (annotation, ...) if name in REQUIRED else (annotation, None)


RecordModel = create_model(
    "ChipbenchRecord",
    __base__=_RecordBase,
    __doc__="One chipbench result record: one trial of one case.",
    **{k: _field(k, t) for k, (t, _, _) in FIELDS.items()},
    **{k: (t, None) for k, t in metric_field_types().items()},
)


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(record)"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(err: ValidationError) -> str:
    """One line for a ValidationError: each bad field's path, what was wrong, and the value."""
    parts = []
    for e in err.errors()[:5]:
        msg = e["msg"].removeprefix("Value error, ")
        where = _where(e["loc"])
        if e["type"] == "missing":
            parts.append(f"field {where}: is required")
        elif e["type"] == "value_error" or not e["loc"]:
            parts.append(msg)
        else:
            parts.append(f"field {where}: {msg} (got {_shown(e.get('input'))})")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def validate(rec) -> None:
    """Raises ValueError with one line naming every bad field (up to five) of a record."""
    if not isinstance(rec, dict):
        raise ValueError(f"not a chipbench record (a JSON {type(rec).__name__}, not an object)")
    if "schema_version" not in rec:
        raise ValueError("not a chipbench record (no schema_version)")
    if rec["schema_version"] not in READABLE_VERSIONS or isinstance(rec["schema_version"], bool):
        raise ValueError(
            f"schema_version {_shown(rec['schema_version'])} is not supported; this chipbench reads "
            f"version(s) {', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        RecordModel.model_validate(rec)
    except ValidationError as e:
        raise ValueError(explain(e)) from None


def json_schema() -> dict:
    schema = RecordModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/chipbench/chipbench/results/schema/record.schema.json"
    return schema


def json_schema_text(schema: dict) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"
