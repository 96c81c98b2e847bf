"""Serving load: requests sent to a server that batches (an OpenAI-compatible endpoint) at a fixed
concurrency or with Poisson arrivals at a given rate, as vLLM's `bench serve` and MLPerf's server
scenario do, with the standard serving metrics per load level.

Each request has its own seeded prompt, its first tokens salted by the endpoint so that a
server's prefix cache cannot turn repeats into free work (MLPerf's TEST04 concern), and asks for
exactly N tokens; its chunks are stamped on arrival (the clock is the client's, like vLLM's), on
connections opened before the level, so no TTFT holds a handshake. Per request: TTFT, TPOT, ITL
and E2E from those stamps. Per level: request and output-token throughput over the level's wall time
(first send to last completion), tokens/s per user (1 / TPOT), and goodput: requests per second
that met the TTFT and TPOT limits (by default MLPerf's Llama-2-70B server limits).

Bounded in count and time: at most `requests` are sent, none after `max_duration_s`, and every
request has the endpoint's own timeout. A failed request is counted and named, never dropped.
"""

from __future__ import annotations

import math
import shlex
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from chipbench.backends.base import capability
from chipbench.errors import UsageError
from chipbench.measuring import env
from chipbench.measuring.metrics import Round
from chipbench.measuring.workload import Workload
from chipbench.models.zoo import get_model

# MLPerf Inference Llama-2-70B server scenario latency limits (TTFT p99 2 s, TPOT p99 200 ms)
DEFAULT_SLO_TTFT_S = 2.0
DEFAULT_SLO_TPOT_S = 0.2
MAX_OPENED = 256  # connections opened before a level: its concurrency, or its requests where it has none


@dataclass(frozen=True)
class Load:
    prompt_tokens: int
    gen_tokens: int
    requests: int
    concurrency: int | None = None  # most requests in flight; None: no limit but the request count
    rate: float | None = None  # Poisson arrivals per second; None: send as fast as concurrency allows
    seed: int = 0
    max_duration_s: float = 600.0
    slo_ttft_s: float = DEFAULT_SLO_TTFT_S
    slo_tpot_s: float = DEFAULT_SLO_TPOT_S

    def validate(self) -> "Load":
        for what, v in (
            ("prompt tokens", self.prompt_tokens),
            ("generated tokens", self.gen_tokens),
            ("requests", self.requests),
        ):
            if v < 1:
                raise UsageError(f"{what} must be >= 1, got {v}")
        if self.gen_tokens < 2:
            raise UsageError("a serving load needs >= 2 generated tokens per request (TPOT needs two)")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate is not None and not 0 < self.rate < math.inf:
            raise UsageError(f"request rate must be a finite number > 0 per second, got {self.rate}")
        if self.concurrency is None and self.rate is None:
            raise UsageError("a serving load needs a concurrency, a request rate, or both")
        if not 0 < self.max_duration_s < math.inf:
            raise UsageError(f"max duration must be a finite number of seconds > 0, got {self.max_duration_s}")
        for what, v in (("the TTFT limit", self.slo_ttft_s), ("the TPOT limit", self.slo_tpot_s)):
            if not v > 0:  # NaN fails too; infinity is no limit
                raise UsageError(f"{what} must be > 0 seconds, got {v}")
        return self

    @property
    def name(self) -> str:
        parts = ([f"c{self.concurrency}"] if self.concurrency else []) + ([f"r{self.rate:g}"] if self.rate else [])
        return f"serve@{'-'.join(parts)}"

    def prompts(self, vocab: int) -> torch.Tensor:
        """One distinct seeded prompt per request [requests, prompt_tokens]."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.randint(0, vocab, (self.requests, self.prompt_tokens), generator=g)

    def send_times(self) -> list[float]:
        """When each request is due, in seconds from the start: Poisson arrivals (seeded exponential
        gaps) at the rate, or all at once (the concurrency limit then paces them)."""
        if not self.rate:
            return [0.0] * self.requests
        gaps = np.random.default_rng(self.seed).exponential(1.0 / self.rate, self.requests)
        return list(np.cumsum(gaps) - gaps[0])


@dataclass
class RequestResult:
    index: int
    sent_s: float  # when it was sent, from the load's start
    token_times_s: tuple[float, ...] = ()  # each token's arrival, from the request's send
    error: str | None = None
    # when it was due, from the load's start: its arrival by the rate's schedule, or (concurrency alone)
    # when its slot opened; sent_s - due_s is its wait inside this client, which the server never sees
    due_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class LoadRun:
    load: Load
    results: list[RequestResult] = field(default_factory=list)
    not_sent: int = 0  # requests left unsent when the time bound was reached
    duration_s: float = 0.0


JOIN_SLACK_S = 5.0  # past the level's bound, a request thread gets this long to notice it before it is left


def run_load(backend, handle, load: Load, clock=time.perf_counter) -> LoadRun:
    """Send the load through `backend` (which has stream_one, like the endpoint backend)."""
    load.validate()
    prompts = backend.prompt(handle, load.prompts(handle.spec.vocab))
    gate = threading.BoundedSemaphore(load.concurrency or load.requests)
    run = LoadRun(load)
    lock = threading.Lock()
    threads = []
    start = clock()
    bound = start + load.max_duration_s  # no request runs past it: the level's wall time is bounded
    closed = []  # set once the level is over

    def one(i: int, due: float) -> None:
        sent = clock()  # in its own thread, right before the request: a late thread start is client queueing
        res = RequestResult(i, sent - start, due_s=due - start)
        try:
            stamps: list[float] = []
            backend.stream_one(
                handle, prompts[i], load.gen_tokens, on_chunk=lambda t, n: stamps.extend([t] * n), deadline=bound
            )  # a coalesced chunk: n equal stamps
            res.token_times_s = tuple(t - sent for t in stamps)
        except Exception as e:  # counted and named in the record
            res.error = f"{type(e).__name__}: {e}"
        finally:
            gate.release()
        with lock:
            if not closed:  # a request left at the bound was counted as cancelled already
                run.results.append(res)

    for i, due in enumerate(load.send_times()):
        wait = min(start + due, bound) - clock()  # a request due after the bound is not waited for
        if wait > 0:
            time.sleep(wait)
        if not gate.acquire(timeout=max(0.0, start + load.max_duration_s - clock())):
            run.not_sent = load.requests - i
            break
        if clock() - start > load.max_duration_s:
            gate.release()
            run.not_sent = load.requests - i
            break
        # due: its place in the rate's schedule, or with concurrency alone the moment its slot opened
        t = threading.Thread(target=one, args=(i, start + due if load.rate else clock()), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:  # each request ends by the bound; a backend that overruns it is not waited for
        t.join(timeout=max(0.0, bound + JOIN_SLACK_S - clock()))
    with lock:
        finished = {r.index for r in run.results}
        closed.append(True)
        for i, t in enumerate(threads):
            if t.is_alive() and i not in finished:
                run.results.append(
                    RequestResult(
                        i, 0.0, error=f"still running at the level's bound of {load.max_duration_s:g} s: cancelled"
                    )
                )
    ends = [r.sent_s + r.token_times_s[-1] for r in run.results if r.ok and r.token_times_s]
    run.duration_s = max(ends, default=clock() - start)
    run.results.sort(key=lambda r: r.index)
    return run


def serve_fields(run: LoadRun) -> dict:
    """The level's record fields beyond the per-request metrics."""
    load = run.load
    ok = [r for r in run.results if r.ok]
    failed = [r for r in run.results if not r.ok]
    out_tokens = sum(len(r.token_times_s) for r in ok)
    dur = run.duration_s or None

    def tpot(r):
        t = r.token_times_s
        return (t[-1] - t[0]) / (len(t) - 1)

    good = [r for r in ok if r.token_times_s[0] <= load.slo_ttft_s and tpot(r) <= load.slo_tpot_s]
    scheduled = [r for r in ok if r.due_s is not None]
    lags = [max(0.0, r.sent_s - r.due_s) for r in scheduled]
    tpots = sorted(tpot(r) for r in ok)
    median_tpot = float(np.median(tpots)) if tpots else None
    return {
        "serve_concurrency": load.concurrency,
        "serve_rate_per_s": load.rate,
        "serve_requests": len(run.results) + run.not_sent,
        "serve_ok": len(ok),
        "serve_failed": len(failed),
        "serve_partial": bool(failed) and bool(ok),  # some requests failed, others completed
        "serve_not_sent": run.not_sent,
        "serve_duration_s": run.duration_s,
        "serve_errors": "; ".join(sorted({r.error for r in failed}))[:2000] or None,
        "request_per_s": len(ok) / dur if dur else None,
        "serve_output_tok_per_s": out_tokens / dur if dur else None,
        "tok_per_s_per_user": 1.0 / median_tpot if median_tpot else None,
        "goodput_req_per_s": len(good) / dur if dur else None,
        # of every request the level planned: one left unsent at the time bound met no limit either
        "goodput_fraction": len(good) / (len(run.results) + run.not_sent) if run.results or run.not_sent else None,
        "slo_ttft_s": load.slo_ttft_s,
        "slo_tpot_s": load.slo_tpot_s,
        # the client's own queueing: how long each request waited here past its due time before it was
        # sent, and its latencies counted from the due time (what a user of the schedule saw)
        "serve_send_lag_median_s": _pct(lags, 50),
        "serve_send_lag_p99_s": _pct(lags, 99),
        "serve_send_lag_max_s": max(lags) if lags else None,
        "ttft_from_due_p99_s": _pct([lag + r.token_times_s[0] for lag, r in zip(lags, scheduled)], 99),
        "e2e_from_due_p99_s": _pct([lag + r.token_times_s[-1] for lag, r in zip(lags, scheduled)], 99),
    }


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def rounds_of(run: LoadRun) -> list[Round]:
    """Each completed request as a round of one sequence: the per-request metrics are then the
    harness's usual ones (TTFT, TPOT, E2E, ITL over every gap)."""
    return [Round(r.token_times_s) for r in run.results if r.ok]


def peak_in_flight(run: LoadRun) -> int:
    """The most requests that were in flight at once (sends and completions as events)."""
    events = []
    for r in run.results:
        end = r.sent_s + (r.token_times_s[-1] if r.token_times_s else 0.0)
        events += [(r.sent_s, 1), (end, -1)]
    peak = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return max(1, peak)


def serve_rerun(backend_name: str, model: str, dtype: str, load: Load, warmup: int) -> str:
    """The `chipbench serve` line that runs exactly this load level again."""

    args = ["chipbench", "serve", "--backend", backend_name, "--model", model, "--dtype", dtype]
    args += ["--concurrency", str(load.concurrency)] if load.concurrency is not None else []
    args += ["--rate", f"{load.rate:g}"] if load.rate is not None else []
    args += [
        "--requests",
        str(load.requests),
        "--prompt",
        str(load.prompt_tokens),
        "--gen",
        str(load.gen_tokens),
        "--max-duration",
        f"{load.max_duration_s:g}",
        "--slo-ttft",
        f"{load.slo_ttft_s:g}",
        "--slo-tpot",
        f"{load.slo_tpot_s:g}",
        "--warmup",
        str(warmup),
        "--seed",
        str(load.seed),
    ]
    return shlex.join(args)


def level_record(case, name: str, load: Load, backend, handle, run, device: dict, host_load: dict, host: dict, judge):
    """A finished level's record: the case's identity, the stack, the serving figures and the
    per-request metrics, ok when any request completed (`judge`: its roofline)."""
    from chipbench.measuring.runner import case_identity, metric_fields, stack_fields
    from chipbench.stats import summarize

    ok_rounds = rounds_of(run)
    fields = serve_fields(run)
    rec = case_identity(case)
    rec.update(
        kind="serve",
        workload=name,
        batch=load.concurrency or peak_in_flight(run),
        rounds=max(1, len(ok_rounds)),
        weights=handle.weights,
        build_time_s=handle.build_time_s,
        compile_time_s=None,
        exec_note=None,
        linear_attn_path=None,
    )
    rec.update(stack_fields(backend, handle))
    rec.update(device)
    rec.update(fields)
    rec.update(host_load)
    if not ok_rounds:
        rec.update(status="failed", error=f"no request completed: {fields['serve_errors']}")
    else:
        rec.update(status="ok", error=None)
        rec.update(metric_fields(ok_rounds, Workload("generate", load.prompt_tokens, load.gen_tokens)))
        # the level's throughput is the aggregate over its wall time, not a per-request figure
        agg = fields["serve_output_tok_per_s"]
        rec.update({f"output_tok_per_s_{k}": v for k, v in summarize([agg]).items()}, output_tok_per_s_samples=[agg])
        rec["timing_method"] = "host clock: each streamed chunk stamped on arrival at the client"
        if judge is not None:
            judge(rec)
    rec.update(correct=None, correctness_note="not checked: a serving load runs the server's own weights")
    rec.update(host)
    rec.update(env.provenance(load.seed))
    return rec


def serve_record(
    backend,
    model: str,
    dtype: str,
    load: Load,
    host: dict,
    origin: dict | None = None,
    judge=None,
    warmup: int = 1,
    trial=None,
) -> dict:
    """One load level on `backend` as one record (kind "serve"), ok when any request completed;
    failed requests are counted in it. A level that cannot run at all is a failed record. `judge`
    adds the roofline fields to an ok level's record (chipbench.judging.trial.add_roofline)."""

    from chipbench.measuring.runner import Case, failed_record, new_series

    load.validate()
    trial = trial or new_series()
    wl = Workload(
        "generate", load.prompt_tokens, load.gen_tokens, batch=load.concurrency or load.requests, seed=load.seed
    )
    case = Case(backend.name, model, dtype, wl, warmup=warmup, rounds=load.requests)
    name = f"pp{load.prompt_tokens}+tg{load.gen_tokens} {load.name}"
    device = dict(origin or {})
    handle = None
    try:
        spec = get_model(model)
        device.update(env.device_facts(backend.info()))
        handle = backend.load(spec, dtype, seed=load.seed)
        if warmup:  # untimed requests first: connections, the server's first-request costs
            from dataclasses import replace

            run_load(backend, handle, replace(load, requests=warmup, concurrency=1, rate=None, seed=load.seed + 1))
        opener = capability(backend, "open_connections")
        if opener is not None:  # the level's first requests then pay no handshake in their TTFT
            opener(handle, min(load.concurrency or load.requests, load.requests, MAX_OPENED))
        from chipbench.measuring import hostload

        pids = hostload.case_pids(backend)  # a server on this host works for the load, it is no neighbour
        before, cpu_before = hostload.sample(pids), hostload.client_sample(pids)
        run = run_load(backend, handle, load)
        cpu = hostload.client_fields(cpu_before, hostload.client_sample(pids))
        host_load = {**hostload.facts(before, hostload.sample(pids)), **cpu}
        rec = level_record(case, name, load, backend, handle, run, device, host_load, host, judge)
    except Exception as e:  # the level fails, the sweep goes on
        rec = failed_record(case, e, device, host, backend)
        rec.update(kind="serve", workload=name, traceback=traceback.format_exc(limit=8))
    finally:
        if handle is not None:
            backend.close(handle)
    rec.update(trial.fields(), rerun=serve_rerun(backend.name, model, dtype, load, warmup))
    return rec
