"""Running one case: load, warm up, time rounds, turn timestamps into a record.

The harness owns the clock: a timestamp is taken when the backend hands over each step's
tokens (already on the host), relative to a start stamped just before the generation call.
Adapters only execute. A case that fails (out of memory, a crash inside the model, a backend
that returns the wrong number of tokens) becomes a failed record; the suite goes on.
"""

from __future__ import annotations

import math
import shlex
import statistics
import time
import traceback
from dataclasses import dataclass, field
from typing import Protocol

from chipbench.backends import distributed
from chipbench.backends.base import Backend, capability
from chipbench.measuring import env, hostload, telemetry
from chipbench.measuring.metrics import HEADLINE, METRICS, Round, inter_token_latencies, round_metrics
from chipbench.measuring.recordline import SCHEMA_VERSION, new_record_id
from chipbench.measuring.workload import Workload, prompt_ids
from chipbench.models.counts import DTYPE_BYTES, facts, flops_per_token
from chipbench.models.zoo import get_model
from chipbench.stats import summarize


class BackendContractError(RuntimeError):
    """The backend broke the Backend contract (wrong token count, tokens not on the host)."""


class NothingTimed(RuntimeError):
    """The timer ran no round (pytest-benchmark disabled runs the function once, as a warmup)."""


class Judge(Protocol):
    """What judges a trial's ok record while its model is still loaded: the roofline fields and the
    correctness gate. It comes from the layer above (chipbench.judging.trial.TrialJudge), so that
    measuring never imports judging. A worker process rebuilds it from `spec()`."""

    check: bool  # whether it runs the correctness gate

    def __call__(self, rec: dict, run: CaseRun) -> None: ...

    def spec(self) -> dict: ...

    def without_gate(self) -> Judge: ...


def timed_loop(round_fn, rounds: int, warmup: int) -> None:
    """The plain timer: `warmup` untimed rounds, then `rounds` timed ones (pytest --benchmark swaps
    in pytest-benchmark's pedantic mode, which calls `round_fn` the same way)."""
    for _ in range(warmup + rounds):
        round_fn()


@dataclass(frozen=True)
class Case:
    backend: str
    model: str
    dtype: str
    workload: Workload
    warmup: int = 1
    rounds: int = 5
    weights_dir: str | None = None
    mode: str = "eager"  # execution mode asked for: eager, or compiled (static cache, compiled decode)
    soak_s: float | None = None  # sustained mode: time rounds for at least this long (rounds is then a minimum)
    budget_s: float | None = None  # sized rounds: as many as fit this time at the warmup's pace (rounds: the most)
    dtype_reason: str | None = None  # why the suite chose this dtype by default on this device (not asked for)

    @property
    def id(self) -> str:
        suffix = "" if self.mode == "eager" else f"-{self.mode}"
        return f"{self.backend}-{self.model}-{self.dtype}-{self.workload.name}-b{self.workload.batch}{suffix}"

    def load_kwargs(self) -> dict:
        """backend.load()'s keywords: the mode only when it is not the default, so adapters that
        know only eager need not accept it."""
        kw = {"weights_dir": self.weights_dir}
        if self.mode != "eager":
            kw["mode"] = self.mode
        return kw


@dataclass(frozen=True)
class Trial:
    """Which trial of a series a record is: a series is one invocation's K independent trials of a
    case (`--bench-repeats K`), each with its own model load, warmup and rounds."""

    series_id: str
    index: int = 0
    planned: int = 1
    process: str = "in-process"  # or "worker": a fresh process of its own

    def fields(self) -> dict:
        return {
            "series_id": self.series_id,
            "trial_index": self.index,
            "trials_planned": self.planned,
            "trial_process": self.process,
        }


def new_series() -> Trial:
    return Trial(new_record_id())


def stack_fields(backend, handle, mode: str | None = None) -> dict:
    """The software stack that ran the case: engine, version, execution path, parallel layout."""

    def fact(name):
        return capability(handle, name) or capability(backend, name)

    engine, version = fact("engine"), fact("engine_version")
    path = fact("exec_path") or mode
    parallel = fact("parallel") or "none"
    return {
        "engine": engine,
        "engine_version": version,
        "exec_path": path,
        "parallel": parallel,
        "prefix_caching": fact("prefix_caching"),
        "endpoint_rtt_s": fact("endpoint_rtt_s"),
        "weights_digest": capability(handle, "weights_digest"),
        "stack": " ".join(str(x) for x in (engine, version, path, parallel if parallel != "none" else None) if x)
        or None,
    }


@dataclass
class CaseRun:
    """A case's loaded state between rounds (pytest-benchmark's pedantic mode calls `round`)."""

    backend: Backend
    case: Case
    handle: object = None
    prompt: object = None
    rounds_done: list[Round] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # each round's start and end
    clock_notes: set = field(default_factory=set)
    compile_time_s: float | None = None
    sampler: object = None  # telemetry.Sampler: read at each round's edges, outside its clock
    rounds_rule: tuple[int, str] | None = None  # sized rounds: (count, why), set after the warmup
    listener: object = None  # told of each phase of rounds and each round (chipbench.publishing.progress)

    def phase(self, name: str, count: int) -> None:
        if self.listener is not None:
            self.listener.phase(name, count)

    def setup(self, handle=None) -> None:
        """Load the model (or take `handle`, one already loaded for this case) and the prompt, and
        in compiled mode build the static cache and compile the step, outside every timed round."""
        spec = get_model(self.case.model)
        w = self.case.workload.validate(spec.max_pos, spec.name)
        if handle is None:
            refuse_if_too_big(self.backend, self.case)
        self.handle = handle or self.backend.load(spec, self.case.dtype, seed=w.seed, **self.case.load_kwargs())
        self.prompt = self.backend.prompt(self.handle, prompt_ids(w, spec.vocab))
        prepare = capability(self.backend, "prepare")
        if prepare is not None:
            self.compile_time_s = prepare(self.handle, w.batch, w.prompt_tokens + w.gen_tokens, w.prompt_tokens)

    def round(self, tokens: int | None = None) -> Round:
        """One timed generation (of `tokens` tokens: a short warmup; default the workload's); returns
        (and keeps) its per-token timestamps."""
        if self.listener is not None:
            self.listener.tick()
        w = self.case.workload
        tokens = tokens or w.gen_tokens
        stamps: list[float] = []
        clock = time.perf_counter
        on_token = _stamping(stamps, clock, w.batch)
        ready = capability(self.backend, "before_round")
        if ready is not None:
            ready()  # tensor parallel: every rank at the line before rank 0's clock starts
        if self.sampler is not None:
            self.sampler.read_now()  # the energy counter at the round's start
        start = clock()
        gen = self.backend.generate(self.handle, self.prompt, tokens, on_token)
        if self.sampler is not None:
            self.sampler.read_now()  # and at its end
        if len(stamps) != tokens or len(gen.tokens) != tokens:
            raise BackendContractError(
                f"backend {self.backend.name!r} produced {len(stamps)} token steps, the "
                f"{'workload' if tokens == w.gen_tokens else 'warmup round'} asked for exactly {tokens} (EOS must be ignored)"
            )
        host = tuple(t - start for t in stamps)
        step_s, busy = host_step(host, getattr(gen, "host_waits_s", None))
        r = Round(host, gen.peak_mem_bytes, gen.peak_mem_kind, host_step_s=step_s, host_busy_frac=busy)
        device = getattr(gen, "device_times_s", None)
        if device:
            agree, spread = clocks_agree(host, device)
            self.clock_notes.add(
                None
                if agree
                else f"device events disagreed with the host stamps by {spread * 1e3:.2f} ms: host stamps used"
            )
            r = Round(
                tuple(device) if agree else host,
                gen.peak_mem_bytes,
                gen.peak_mem_kind,
                "device events" if agree else "host",
                spread,
                step_s,
                busy,
            )
        if getattr(gen, "ran_ahead", False):
            self.clock_notes.add("the host queued each step before it waited for the previous step's tokens")
        self.rounds_done.append(r)
        self.windows.append((start, stamps[-1]))
        return r

    def tokens_per_round(self) -> int:
        """What a round produced, for energy per token: prompt tokens for a prefill test,
        generated tokens otherwise."""
        w = self.case.workload
        return w.batch * (w.prompt_tokens if w.kind == "prefill" else w.gen_tokens)

    def close(self) -> None:
        self.backend.close(self.handle)
        self.handle = self.prompt = None
        env.release_host_memory()  # so that the next case's resident-set peak does not hold this one's model


# Device events are used when they agree with the host stamps: the host sees each token a little
# after the device made it (the copy to the host, the callback), by a near-constant amount; a spread
# beyond this (or a device time after the host's) means the events timed something else.
CLOCK_SPREAD_S = 1e-3
CLOCK_SPREAD_FRACTION = 0.05


def clocks_agree(host: tuple[float, ...], device: list[float]) -> tuple[bool, float]:
    """Whether per-step device times fit the host stamps; and the spread of host - device."""
    if len(device) != len(host):
        return False, float("inf")
    lags = [h - d for h, d in zip(host, device)]
    spread = max(lags) - min(lags)
    return (min(lags) >= -CLOCK_SPREAD_S and spread <= max(CLOCK_SPREAD_S, CLOCK_SPREAD_FRACTION * host[-1])), spread


# A decode whose host was busy for this share of every step or more had a device that waited for
# the host: its speed is the host's (launching kernels, taking delivery), not the chip's.
HOST_BOUND_FRAC = 0.95


def host_step(stamps: tuple[float, ...], waits: list[float] | None) -> tuple[float | None, float | None]:
    """The host's own work per decode step and the share of the decode span it filled, from the
    host stamps and the host's waits on an asynchronous device (Generation.host_waits_s): each
    interval between two stamps is the host's work plus its wait for the device, so where the
    waits vanish the device was idle, waiting for the host. (None, None) without waits or decode
    steps."""
    n = len(stamps)
    if not waits or len(waits) != n or n < 2 or stamps[-1] <= stamps[0]:
        return None, None
    span = stamps[-1] - stamps[0]
    own = min(span, max(0.0, span - sum(waits[1:])))
    return own / (n - 1), own / span


def host_fields(timed: list[Round]) -> dict:
    """host_step_s (median over the rounds) and host_bound: whether the host's own work filled the
    decode steps (HOST_BOUND_FRAC), so that the device waited for the host; None where unmeasured."""
    measured = [r for r in timed if r.host_step_s is not None]
    if not measured:
        return {"host_step_s": None, "host_busy_frac": None, "host_bound": None}
    frac = statistics.median(r.host_busy_frac for r in measured)
    return {
        "host_step_s": statistics.median(r.host_step_s for r in measured),
        "host_busy_frac": frac,
        "host_bound": frac >= HOST_BOUND_FRAC,
    }


def timing_fields(timed: list[Round], notes: set) -> dict:
    """Which clock timed the rounds, and how well the device's agreed with the host's."""
    methods = sorted({r.timing_method for r in timed})
    spreads = [r.clock_disagreement_s for r in timed if r.clock_disagreement_s is not None]
    text = {
        "host": "host clock: stamped when each step's tokens were copied to the host",
        "device events": "device events recorded in the stream after each step, read after one wait at "
        "the end, cross-checked against the host stamps",
    }
    note = "; ".join(sorted(n for n in notes if n))
    return {
        "timing_method": " + ".join(text[m] for m in methods) + (f" ({note})" if note else ""),
        "clock_disagreement_s": max(spreads) if spreads else None,
    }


def _stamping(stamps: list[float], clock, batch: int):
    def on_token(tokens) -> None:
        stamps.append(clock())  # first: nothing the harness does may delay the stamp
        if len(tokens) != batch or not all(isinstance(t, int) for t in tokens):
            raise BackendContractError(
                f"on_token got {type(tokens).__name__} of {len(tokens)} items; the contract is "
                f"{batch} host ints per step (device tensors would let the clock run ahead)"
            )

    return on_token


def refuse_if_too_big(backend, case: Case) -> None:
    """A model (weights and cache) that cannot fit the device is refused before loading, with the
    tensor-parallel sizes that would fit (the share of each rank under torchrun)."""

    try:
        memory = backend.info().memory_bytes
        needed = case_identity(case)["expected_mem_bytes"]
    except Exception:  # no memory figure, or no analytic counts: nothing to say
        return
    if memory and needed:
        advice = distributed.fit_advice(needed // distributed.world_size(), memory)
        if advice:
            raise MemoryError(f"{case.model} {case.dtype} {advice}")


def case_identity(case: Case) -> dict:
    spec = get_model(case.model)
    w = case.workload
    f = facts(spec)
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": new_record_id(),
        "backend": case.backend,
        "model": spec.name,
        "family": spec.family,
        "dtype": case.dtype,
        "workload": w.name,
        "kind": w.kind,
        "batch": w.batch,
        "prompt_tokens": w.prompt_tokens,
        "gen_tokens": w.gen_tokens,
        "dtype_reason": case.dtype_reason,
        "warmup_rounds": case.warmup,
        "warmup_tokens": case.workload.gen_tokens if case.warmup else None,  # a short warmup: set by measure_case
        "rounds": case.rounds,
        "params_total": f.params_total,
        "params_active": f.params_active,
        "weight_bytes": f.weight_bytes(case.dtype),
        "active_weight_bytes": f.active_weight_bytes(case.dtype),
        "kv_bytes_per_token": f.kv_bytes_per_token(case.dtype),
        "recurrent_state_bytes": f.recurrent_state_bytes + f.conv_state_bytes(case.dtype),
        "flops_per_token": flops_per_token(spec, w.prompt_tokens),
        "expected_mem_bytes": f.weight_bytes(case.dtype)
        + w.batch
        * (
            w.total_tokens * f.kv_bytes_per_token(case.dtype) + f.recurrent_state_bytes + f.conv_state_bytes(case.dtype)
        ),
    }


def measure_ceilings(backend, dtype: str):
    """The backend's measured ceilings, or None when it cannot measure them (or fails to)."""
    measure = capability(backend, "ceilings")
    if measure is None:
        return None
    try:
        return measure(dtype)
    except Exception:  # a ceiling we cannot measure leaves the spec row, never costs the run
        return None


def beside_ceilings(backend, dtype: str):
    """A few rounds of the ceilings right after a case's timed rounds, on the device it ran on: the
    run's shared ceilings were measured minutes earlier, and a shared host's rates move in spells
    longer than their window (results/measurements/2026-12-03-cpu-ceiling-window/). Kept as
    evidence beside the shared yardstick, never in its place (engines side by side share one).
    None when the backend cannot measure them, when its ceilings take no rounds (a plugin's
    `ceilings(dtype)`), when they fail, or when the window is 0 (the minimum: no rounds beside
    cases)."""
    from chipbench.backends.ceilings import BESIDE_ROUNDS, window_s

    measure = capability(backend, "ceilings")
    if measure is None or window_s("cpu") == 0:
        return None
    try:
        return measure(dtype, window=0, repeats=BESIDE_ROUNDS)
    except Exception:  # a TypeError from a plugin's one-argument ceilings(), or a failed measurement
        return None


def device_key(backend) -> tuple:
    """The device a backend runs on: its kind and name (torch's cpu adapter and llama.cpp share the
    host's cores and memory; cuda and an engine offloading to the GPU share the GPU)."""
    try:
        info = backend.info()
        return (info.kind, info.device_name)
    except Exception:  # no facts: the backend is its own device
        return ("backend", backend.name)


def ceiling_dtype(backend, dtype: str) -> str:
    """The dtype the backend's ceilings for a case in `dtype` measure their matmul in (its
    ceiling_dtype capability), else `dtype` itself."""
    mapping = capability(backend, "ceiling_dtype")
    try:
        return str(mapping(dtype)) if mapping is not None else dtype
    except Exception:  # a plugin's mapping that fails keys by the case's dtype, as before it had one
        return dtype


def shared_ceilings(cache: dict, backend, dtype: str, measure=None):
    """The measured ceilings of the device `backend` runs on, measured once per run and dtype and
    shared by every backend on that device: two engines side by side on one chip are judged against
    one yardstick (on a shared host, two measurements a minute apart can differ by a quarter, and
    each engine's MBU would then rest on its own). A backend that cannot measure them (vLLM) gets
    those another backend measured on its device in this run, if any. `cache` maps (kind, device,
    dtype) to them, the dtype being the one the ceilings' matmul runs in (ceiling_dtype): llama.cpp's
    q4_0 and OpenVINO's int4_asym both compute in bf16 on this CPU, and are judged against the bf16
    yardstick. `measure(backend, dtype)`: how they are had (measure_ceilings by default)."""
    key = (*device_key(backend), ceiling_dtype(backend, dtype))
    if capability(backend, "ceilings") is None:
        return cache.get(key)
    if cache.get(key) is None:  # not yet measured, or the last backend could not measure them
        cache[key] = (measure or measure_ceilings)(backend, dtype)
    return cache[key]


def rerun_command(case: Case, compile_flags: str | None = None) -> str:
    """The command line that runs exactly this case again, one trial: backend, model, dtype,
    workload, batch, mode, warmup, rounds (or the soak), seed and local weights; under torchrun,
    with the launch's process count; the inductor settings a compiled step was built under
    (`compile_flags`) as the environment they came from. Options that change only how it is judged
    (--chip, peaks) are left out."""

    w = case.workload
    args = [
        "run",
        "--backend",
        case.backend,
        "--model",
        case.model,
        "--dtype",
        case.dtype,
        "--workload",
        w.name,
        "--batch",
        str(w.batch),
        "--mode",
        case.mode,
        "--warmup",
        str(case.warmup),
        "--seed",
        str(w.seed),
    ]
    args += [] if case.budget_s and not case.soak_s else ["--rounds", str(case.rounds)]  # sized: sized again
    args += ["--soak", f"{case.soak_s:g}"] if case.soak_s else []
    args += ["--weights", case.weights_dir] if case.weights_dir else []
    head = (
        ["torchrun", "--nproc-per-node", str(distributed.world_size()), "-m", "chipbench.cli"]
        if distributed.is_parallel()
        else ["chipbench"]
    )
    flags = [
        f"TORCHINDUCTOR_{kv.split('=', 1)[0].upper()}={kv.split('=', 1)[1]}"
        for kv in (compile_flags or "").split(", ")
        if "=" in kv
    ]
    command = shlex.join(head + args)
    return f"{shlex.join(flags)} {command}" if flags else command


def build_record(run: CaseRun, timed: list[Round], device: dict, host: dict) -> dict:
    case, w = run.case, run.case.workload
    rec = case_identity(case)
    file_bytes = capability(run.handle, "file_bytes")
    if file_bytes and rec["weight_bytes"]:  # an engine's real tensor bytes beat the nominal figure
        scale = file_bytes / rec["weight_bytes"]
        rec["expected_mem_bytes"] += file_bytes - rec["weight_bytes"]
        rec.update(weight_bytes=file_bytes, active_weight_bytes=int(rec["active_weight_bytes"] * scale))
    kv_dtype = capability(run.handle, "kv_cache_dtype")
    if kv_dtype in DTYPE_BYTES and rec["kv_bytes_per_token"] is not None:  # the cache as the runtime keeps it
        kv = facts(get_model(case.model)).kv_bytes_per_token_per_dtype_byte * DTYPE_BYTES[kv_dtype]
        rec["expected_mem_bytes"] += w.batch * w.total_tokens * (kv - rec["kv_bytes_per_token"])
        rec["kv_bytes_per_token"] = kv
    compiled = capability(run.backend, "compile_facts")  # read before the gate, which may rebuild the step
    compile_fields = {
        "compiled_graphs": None,
        "graph_breaks": None,
        "cuda_graphs": None,
        "compile_flags": None,
        "compile_cache": None,
        "prefill_path": None,
        "prefill_compile_time_s": None,
        **(compiled(run.handle) if compiled else {}),
    }
    notes = [n for n in (capability(run.handle, "exec_note"), compile_fields.pop("note", None)) if n]
    rec.update(
        status="ok",
        error=None,
        weights=run.handle.weights,
        linear_attn_path=run.handle.linear_attn_path,
        build_time_s=run.handle.build_time_s,
        compile_time_s=run.compile_time_s,
        exec_note="; ".join(notes) or None,
        **compile_fields,
    )
    rec.update(stack_fields(run.backend, run.handle))
    rec.update(device)
    rec["env_chips"] = distributed.chips(rec.get("backend_kind"), rec["parallel"]) if rec["parallel"] != "none" else 1
    rec.update(metric_fields(timed, w))
    if rec["parallel"] != "none":  # a split case holds memory on every rank: the whole against the whole estimate
        rec["peak_mem_bytes"] = distributed.total(rec["peak_mem_bytes"])
    rec["rounds"] = len(timed)  # what ran: more than asked for in sustained mode
    rec.update(timing_fields(timed, run.clock_notes))
    rec.update(host_fields(timed))
    if rec["peak_mem_bytes"] and rec.get("expected_mem_bytes"):
        rec["mem_vs_expected"] = rec["peak_mem_bytes"] / rec["expected_mem_bytes"]
    rec.update(host)
    rec.update(env.provenance(w.seed), rerun=rerun_command(case, rec.get("compile_flags")))
    return rec


def metric_fields(timed: list[Round], w: Workload) -> dict:
    """Every metric's statistics and samples, peak memory and the raw timestamps of the rounds."""
    out: dict = {}
    per_round = [round_metrics(r, w) for r in timed]
    for name in METRICS:
        if name == "itl_s":
            values = [g for r in timed for g in inter_token_latencies(r)]
        else:
            values = [m[name] for m in per_round]
            out[f"{name}_samples"] = values
        out.update({f"{name}_{k}": v for k, v in summarize(values).items()})
    peaks = [r.peak_mem_bytes for r in timed if r.peak_mem_bytes is not None]
    out["peak_mem_bytes"] = max(peaks) if peaks else None
    kinds = {r.peak_mem_kind for r in timed if r.peak_mem_kind}
    out["peak_mem_kind"] = kinds.pop() if len(kinds) == 1 else None
    out["token_times_s"] = [list(r.token_times_s) for r in timed]
    return out


def split_power(rec: dict, tokens: int, output_tokens: int | None = None, total_tokens: int | None = None) -> dict:
    """A split case's power and energy over every chip it ran on (each rank meters its own device;
    CPU ranks on one host share one package counter, read once; the host's meter is read once per
    host), so that joules per token count the whole case, not rank 0's share of it. Every rank must
    call it (lockstep)."""
    mine = distributed.first_on_chip(rec.get("backend_kind"))
    host_first = distributed.first_on_chip("cpu")
    energy = distributed.total(rec.get("energy_j") if mine else 0.0)
    host = distributed.total(rec.get("host_energy_j") if host_first else 0.0)
    power = distributed.total(rec.get("tele_power_w") if mine else 0.0)

    def per(value, n):
        return value / n if value is not None and n else None

    return {
        "energy_j": energy,
        "tele_power_w": power,
        "energy_per_token_j": per(energy, tokens),
        "energy_per_output_token_j": per(energy, output_tokens),
        "energy_per_total_token_j": per(energy, total_tokens),
        "host_energy_j": host,
        "host_energy_per_output_token_j": per(host, output_tokens),
        "host_energy_per_total_token_j": per(host, total_tokens),
    }


# pytest-benchmark's pedantic mode needs its round count up front: a sustained case's count is the
# soak over the warmup's pace, slowed by this margin (a warmup faster than the timed rounds would
# otherwise overshoot the soak: 163 s for a 125 s soak was measured so), and soak_unfilled tops up
# whatever time is left.
SOAK_PACE_MARGIN = 1.25


def soak_rounds(case: Case, warmup_windows: list[tuple[float, float]]) -> int:
    """Timed rounds to run up front: the case's rounds, or in sustained mode at most as many as
    fill the soak at the warmup's pace with a margin (the caller tops up until the time is up)."""
    if not case.soak_s:
        return case.rounds
    pace = max((end - start for start, end in warmup_windows[-1:]), default=0.0)
    return max(case.rounds, math.floor(case.soak_s / (pace * SOAK_PACE_MARGIN)) if pace > 0 else case.rounds)


# Sized rounds (the default suite's): the warmup round is a pilot whose pace sets how many timed rounds
# fit the case's budget, between these bounds. The count is fixed before the first timed round and
# depends on no timed value, so the rounds are a fixed-size sample and their t interval keeps its
# coverage; stopping when the interval looks tight would not (its width is itself an estimate).
# pytest-benchmark's pedantic mode needs the count up front too.
ROUNDS_MIN = 5  # the fewest a sized case times: the fixed count before sizing, so no interval gets wider
ROUNDS_MAX = 10


# A sized case's warmup round generates at most this many tokens where its backend says a few decode
# steps warm it as a whole round would (capability short_warmup: torch on the CPU). Torch's eager tg128
# warmup was the main job's largest untimed cost (12-17 s on a 2-core CPU); its pace is scaled to a full
# round's for sizing. llama.cpp keeps whole rounds: after a 16-token warmup its first timed tg128 round
# ran 1.14x the others' median (0.99x after a whole one; results/measurements/2026-12-07-short-warmup/).
# Prefill rounds keep their full warmup: a shorter prompt would warm other matrix shapes.
WARMUP_TOKENS = 16


def warmup_tokens(case: Case, backend=None) -> int:
    """Tokens each warmup round of `case` generates: the workload's, or WARMUP_TOKENS for a sized case
    (the default suite's) that generates more on a backend whose warmup may be short."""
    n = case.workload.gen_tokens
    short = case.budget_s and not case.soak_s and backend is not None and capability(backend, "short_warmup")
    return min(n, WARMUP_TOKENS) if short else n


def full_round_pace(case: Case, warm: Round | None) -> float:
    """A full round's duration estimated from a warmup round: its first token, then its decode steps'
    pace for all of the workload's steps (the round itself where it was full); 0 without a round."""
    if warm is None or not warm.token_times_s:
        return 0.0
    times, n = warm.token_times_s, case.workload.gen_tokens
    if len(times) >= n or len(times) < 2:
        return times[-1]
    return times[0] + (times[-1] - times[0]) / (len(times) - 1) * (n - 1)


def budget_rounds(case: Case, pace: float, warm_tokens: int | None = None) -> tuple[int, str]:
    """(timed rounds, why) for a sized case, from a full round's pace (full_round_pace) estimated from
    a warmup of `warm_tokens` tokens (default: a whole round)."""
    lo, hi = ROUNDS_MIN, max(ROUNDS_MIN, case.rounds)
    if pace <= 0 or not case.warmup:
        return lo, f"{lo}: the fewest (no warmup round to pace the {case.budget_s:g} s budget by)"
    fit = math.floor(case.budget_s / pace)
    n = min(hi, max(lo, fit))
    bound = " (the fewest)" if n == lo and fit < lo else " (the most)" if n == hi and fit > hi else ""
    part = warm_tokens is not None and warm_tokens < case.workload.gen_tokens
    seen = f"a round's {pace:.3g} s at the pace of the warmup's {warm_tokens} tokens" if part else None
    return n, f"{n}{bound}: the {case.budget_s:g} s budget at " + (seen or f"the warmup round's {pace:.3g} s")


def sized_rounds(case: Case, warm: Round | None, warm_tokens: int) -> tuple[int, str]:
    """budget_rounds at the pace of the warmup round `warm`; under torchrun rank 0's count on every
    rank (each rank's warmup paces differently, and a rank that times one round more waits forever
    in that round's collectives)."""
    return distributed.lead(budget_rounds(case, full_round_pace(case, warm), warm_tokens))


def rounds_fields(case: Case, rule: tuple[int, str] | None, timed: int) -> dict:
    """How the count of timed rounds was set: fixed (--rounds), sized (the budget) or a soak."""
    if case.soak_s:
        return {"rounds_rule": "soak", "rounds_reason": f"{timed}: as many as filled the {case.soak_s:g} s soak"}
    if case.budget_s and rule is not None:
        return {"rounds_rule": "budget", "rounds_reason": rule[1]}
    return {"rounds_rule": "fixed", "rounds_reason": f"{timed}: as asked (--rounds)"}


def soak_unfilled(case: Case, windows: list[tuple[float, float]], first: int) -> bool:
    """Sustained mode: whether the timed rounds (windows[first:]) have not yet filled the soak."""
    return bool(case.soak_s) and len(windows) > first and windows[-1][1] - windows[first][0] < case.soak_s


def soak_fields(case: Case, timed: list[Round], windows: list[tuple[float, float]]) -> dict:
    """Sustained mode: the headline throughput of the first minute against the last minute (the
    first and last third when the soak is shorter than two minutes)."""
    if not case.soak_s or not windows:
        return {}
    w = case.workload
    metric = HEADLINE[w.kind]
    values = [round_metrics(r, w)[metric] for r in timed]
    t0, t_end = windows[0][0], windows[-1][1]
    elapsed = t_end - t0
    span = 60.0 if elapsed >= 120 else elapsed / 3
    first = [v for v, (start, _) in zip(values, windows) if start - t0 < span and v]
    last = [v for v, (_, end) in zip(values, windows) if t_end - end < span and v]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    a, b = mean(first), mean(last)
    return {
        "soak_s": case.soak_s,
        "soak_elapsed_s": elapsed,
        "soak_window_s": span,
        "soak_first_tok_per_s": a,
        "soak_last_tok_per_s": b,
        "soak_change": b / a if a and b else None,
    }


def failed_record(case: Case, error: BaseException | str, device: dict, host: dict, backend=None) -> dict:
    rec = case_identity(case)
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}".strip()
    rec.update(status="failed", error=text)
    rec.update(stack_fields(backend, None, case.mode))
    rec.update(device)
    rec.update(host)
    if rec.get("exec_path") == "compiled":  # a failed trial stays in the cell of the compile it tried
        from chipbench.backends.torch_loop import inductor_flags

        rec["compile_flags"] = inductor_flags()
        rec["prefill_path"] = "compiled"  # what it tried: the path_key of its siblings that ran
    rec.update(env.provenance(case.workload.seed), rerun=rerun_command(case, rec.get("compile_flags")))
    return rec


def measure_case(
    backend: Backend,
    case: Case,
    host: dict | None = None,
    trial: Trial | None = None,
    origin: dict | None = None,
    judge: Judge | None = None,
    handle=None,
    timer=timed_loop,
    listener=None,
) -> dict:
    """Run `case` on `backend` as one trial (load, warmup, timed rounds) and return its record, ok
    or failed, with the host's load around it; `judge` adds its verdicts while the model is loaded.
    `origin`: the adapter's distribution and version. `handle`: a model already loaded for this case
    (the caller keeps it; otherwise it is loaded here and closed at the end). `timer(round, rounds,
    warmup)` runs the rounds; `listener` is told of them (phase(name, count), tick() per round).
    Raises NothingTimed when the timer ran none."""
    host = host if host is not None else env.host_facts()
    trial = trial or new_series()
    device: dict = dict(origin or {})
    run = CaseRun(backend, case, listener=listener)
    try:
        device.update(env.device_facts(backend.info()))
        run.setup(handle=handle)
        pids = hostload.case_pids(backend)  # a local server's: its work is the case's, not a neighbour's
        before = hostload.sample(pids)  # the host's load over the rounds (not the build or compile)
        sampler = run.sampler = telemetry.sampler_for(backend).start()
        try:
            if case.soak_s:  # sustained: warm up first, then rounds until the time is up
                run.phase("warmup", case.warmup)
                timed_loop(run.round, 0, case.warmup)
                run.rounds_done.clear()
                run.phase("soak", soak_rounds(case, run.windows))
                timer(run.round, soak_rounds(case, run.windows), 0)
                # the rest of the time, in the record; rank 0's clock says when it is up (lockstep)
                while distributed.lead(soak_unfilled(case, run.windows, case.warmup)):
                    run.round()
                timed = list(run.rounds_done)
            elif case.budget_s:  # sized: the warmup is the pilot, its pace sets the count before any is timed
                run.phase("warmup", case.warmup)
                warm_tokens = warmup_tokens(case, backend)
                timed_loop(lambda: run.round(warm_tokens), 0, case.warmup)
                warm = run.rounds_done[-1] if run.rounds_done else None
                run.rounds_done.clear()
                run.rounds_rule = sized_rounds(case, warm, warm_tokens)
                run.phase("timed", run.rounds_rule[0])
                timer(run.round, run.rounds_rule[0], 0)
                timed = list(run.rounds_done)
                if len(timed) < run.rounds_rule[0]:  # pytest-benchmark disabled ran one, as a warmup
                    timed = []
            else:
                run.phase("warmup and timed", case.warmup + case.rounds)
                timer(run.round, case.rounds, case.warmup)
                timed = run.rounds_done[case.warmup :]
        finally:
            sampler.stop()
        if not timed:
            raise NothingTimed("the timer ran no round: nothing was timed, no record")
        load = hostload.facts(before, hostload.sample(pids))  # before the record's own work (the ceilings beside it)
        rec = build_record(run, timed, device, host)
        rec.update(load)
        windows = run.windows[case.warmup :]
        w, n = case.workload, len(windows)
        per_token = dict(output_tokens=w.batch * w.gen_tokens * n, total_tokens=w.batch * w.total_tokens * n)
        rec.update(sampler.summary(windows, run.tokens_per_round() * n, **per_token))
        if rec["parallel"] != "none":
            rec.update(split_power(rec, run.tokens_per_round() * n, **per_token))
        rec.update(soak_fields(case, timed, windows))
        rec.update(rounds_fields(case, run.rounds_rule, len(timed)))
        if case.budget_s and not case.soak_s and case.warmup:
            rec["warmup_tokens"] = warm_tokens
        if judge is not None:
            judge(rec, run)
    except NothingTimed:
        raise
    except Exception as e:  # the case fails, the suite goes on
        rec = failed_record(case, e, device, host, backend)
        rec["traceback"] = traceback.format_exc(limit=8)
    finally:
        if handle is None:
            run.close()
    rec.update(trial.fields())
    return rec
