"""MLPerf LoadGen scenarios on chipbench's backends: a backend that generates (torch, llama.cpp, vLLM,
a plugin) is LoadGen's system under test, and LoadGen issues the queries: SingleStream (one after
another), Server (Poisson arrivals at a target rate, with TTFT and TPOT limits) or Offline (all
at once). Each query is one of chipbench's seeded prompts generating exactly N tokens; its first
token is reported to LoadGen as it arrives (FirstTokenComplete), the whole answer with its token
count. LoadGen's own logs are kept beside the records; its validity, its early-stopping verdict and
its result line go into the record beside chipbench's per-token statistics of the same queries.

The backend runs one query at a time (a local backend is one stream); queries LoadGen issues while
one runs wait in a queue, and that wait is in their latency, as LoadGen counts it.

Needs `pip install mlcommons-loadgen` (the loadgen extra).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chipbench.errors import UsageError
from chipbench.measuring.metrics import Round
from chipbench.measuring.workload import Workload, prompt_ids

SCENARIOS = ("SingleStream", "Server", "Offline")
STOP_WAIT_S = 5.0  # an interrupted run waits this long for LoadGen to end
EMPTY = np.zeros(0, dtype=np.int64)  # the answer of a failed or unrun query


@dataclass(frozen=True)
class LoadGenCase:
    scenario: str
    prompt_tokens: int
    gen_tokens: int
    samples: int = 16  # the query sample library: this many distinct seeded prompts
    qps: float | None = None  # Server: the target arrival rate; Offline: the expected rate (sizes its one query)
    min_duration_s: float = 10.0
    min_queries: int = 8
    ttft_limit_s: float = 2.0  # Server: MLPerf's Llama-2-70B limits by default
    tpot_limit_s: float = 0.2
    seed: int = 0
    # the run's bound: LoadGen issues no query past it, and a query still waiting then is answered
    # empty, unrun (counted as failed), so that a slow or stuck system under test ends the run within
    # this bound plus the query in flight
    max_duration_s: float = 600.0
    # the query in flight at the bound gets this long more (None: a quarter of the bound, at least
    # 60 s); past it every open query is answered empty, so the run ends by hard_end_s whatever the
    # backend does
    grace_s: float | None = None

    def validate(self) -> "LoadGenCase":
        if self.scenario not in SCENARIOS:
            raise UsageError(f"unknown LoadGen scenario {self.scenario!r}; valid: {', '.join(SCENARIOS)}")
        if self.scenario == "Server" and not (self.qps and self.qps > 0):
            raise UsageError("the Server scenario needs a target rate: --qps > 0 queries per second")
        if self.gen_tokens < 2 or self.prompt_tokens < 1 or self.samples < 1 or self.min_queries < 1:
            raise UsageError("LoadGen needs >= 1 prompt token, >= 2 generated tokens, >= 1 sample and >= 1 query")
        if not 0 < self.min_duration_s < 86400:
            raise UsageError(f"the minimum duration must be between 0 and a day, got {self.min_duration_s} s")
        if not self.min_duration_s <= self.max_duration_s < 86400:
            raise UsageError(
                f"the maximum duration must be at least the minimum ({self.min_duration_s:g} s) and under a day, "
                f"got {self.max_duration_s:g} s"
            )
        if self.grace_s is not None and not 0 < self.grace_s < 86400:
            raise UsageError(f"the grace for the query in flight must be between 0 and a day, got {self.grace_s} s")
        return self

    @property
    def hard_end_s(self) -> float:
        """When the run ends whatever the backend does, from its start."""
        grace = self.grace_s if self.grace_s is not None else max(60.0, self.max_duration_s / 4)
        return self.max_duration_s + grace

    @property
    def name(self) -> str:
        rate = f"@q{self.qps:g}" if self.scenario == "Server" else ""
        return f"pp{self.prompt_tokens}+tg{self.gen_tokens} loadgen-{self.scenario.lower()}{rate}"


@dataclass
class QueryResult:
    index: int
    issued_s: float  # when LoadGen issued it, from the test's start
    started_s: float  # when the backend began it
    token_times_s: tuple[float, ...] = ()  # each token's arrival, from its issue
    error: str | None = None


@dataclass
class LoadGenRun:
    results: list[QueryResult] = field(default_factory=list)
    duration_s: float = 0.0
    summary: dict = field(default_factory=dict)
    log_dir: str = ""


def settings_for(lg, case: LoadGenCase):
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, case.scenario)
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = int(case.min_duration_s * 1000)
    s.min_query_count = case.min_queries
    s.max_duration_ms = int(case.max_duration_s * 1000)
    s.use_token_latencies = case.scenario == "Server"
    s.ttft_latency = int(case.ttft_limit_s * 1e9)
    s.tpot_latency = int(case.tpot_limit_s * 1e9)
    if case.scenario == "Server":
        s.server_target_qps = case.qps
    if case.scenario == "Offline" and case.qps:  # LoadGen issues max(min queries, this rate x min duration) samples
        s.offline_expected_qps = case.qps
    s.sample_index_rng_seed = s.schedule_rng_seed = s.qsl_rng_seed = case.seed
    return s


def run(backend, handle, case: LoadGenCase, log_dir: Path, clock=time.perf_counter) -> LoadGenRun:
    """Run LoadGen's test of `case` against the loaded `handle`; its logs are written to `log_dir`.

    LoadGen runs in a thread of its own while this one watches the clock, so that the run ends by
    its hard end whatever the backend does: past `case.hard_end_s` every query still open (waiting,
    or in a generate call that has not returned) is answered empty and recorded as failed, and LoadGen
    finishes. Ctrl-C and SIGTERM reach this thread too: open queries are answered, LoadGen ends, and
    the interrupt goes on. A generate call that never returns is left in its (daemon) thread; its
    answer, should it come, is dropped."""
    try:
        import mlperf_loadgen as lg
    except ImportError:
        raise UsageError("LoadGen is not installed: pip install mlcommons-loadgen (or chipbench[loadgen])") from None
    case.validate()
    library = Workload("generate", case.prompt_tokens, case.gen_tokens, batch=case.samples, seed=case.seed)
    ids = prompt_ids(library, handle.spec.vocab)
    prompts = [backend.prompt(handle, ids[i : i + 1]) for i in range(case.samples)]
    out = LoadGenRun(log_dir=str(log_dir))
    pending: queue.Queue = queue.Queue()
    # the queries issued and not yet answered, by LoadGen's id: each is answered exactly once, by the
    # backend's thread or by this one at the hard end (re-entrant: LoadGen may issue from inside a call)
    lock = threading.RLock()
    open_queries: dict[int, tuple[object, float]] = {}
    stopping = threading.Event()  # interrupted: every query is answered at once, unrun and unrecorded
    start = clock()

    def answer(sample, result: QueryResult, tokens: np.ndarray) -> bool:
        with lock:
            if open_queries.pop(sample.id, None) is None:
                return False  # answered already, at the hard end or on an interrupt
            if not stopping.is_set():
                out.results.append(result)
            lg.QuerySamplesComplete(
                [lg.QuerySampleResponse(sample.id, tokens.ctypes.data, tokens.nbytes, int(tokens.size))]
            )
            return True

    def answer_open(why: str) -> None:
        with lock:
            now = clock()
            for sample, issued in list(open_queries.values()):
                res = QueryResult(sample.index, issued - start, now - start, error=why)
                answer(sample, res, EMPTY)

    def serve() -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            sample, issued = item
            with lock:
                if sample.id not in open_queries:
                    continue
            if stopping.is_set():
                answer(sample, QueryResult(sample.index, issued - start, clock() - start, error="interrupted"), EMPTY)
                continue
            began = clock()
            stamps: list[float] = []

            def on_token(tokens, sample=sample, stamps=stamps) -> None:
                stamps.append(clock())
                if len(stamps) == 1:
                    first = np.array(tokens, dtype=np.int64)
                    with lock:
                        if sample.id in open_queries:
                            lg.FirstTokenComplete(
                                [lg.QuerySampleResponse(sample.id, first.ctypes.data, first.nbytes, 1)]
                            )

            res = QueryResult(sample.index, issued - start, began - start)
            try:
                if began - start > case.max_duration_s:
                    raise TimeoutError(f"not run: the run's bound of {case.max_duration_s:g} s had passed")
                gen = backend.generate(handle, prompts[sample.index], case.gen_tokens, on_token)
                tokens = np.array([t[0] for t in gen.tokens], dtype=np.int64)
                res.token_times_s = tuple(t - issued for t in stamps)
            except Exception as e:  # a failed query is answered empty and counted, never left hanging
                res.error = f"{type(e).__name__}: {e}"
                tokens = EMPTY
            answer(sample, res, tokens)

    def issue(samples) -> None:
        now = clock()
        with lock:
            for s in samples:
                open_queries[s.id] = (s, now)
            if stopping.is_set():
                answer_open("interrupted")
                return
        for s in samples:
            pending.put((s, now))

    worker = threading.Thread(target=serve, name="chipbench-loadgen-sut", daemon=True)
    worker.start()
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(case.samples, case.samples, lambda s: None, lambda s: None)
    logs = lg.LogSettings()
    log_dir.mkdir(parents=True, exist_ok=True)
    logs.log_output.outdir = str(log_dir)
    logs.log_output.copy_summary_to_stdout = False
    finished = threading.Event()
    failure: list[BaseException] = []

    def test() -> None:
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings_for(lg, case), logs)
        except BaseException as e:  # handed to the watching thread
            failure.append(e)
        finally:
            finished.set()

    tester = threading.Thread(target=test, name="chipbench-loadgen", daemon=True)
    tester.start()
    hard_end = False
    try:
        while not finished.wait(0.2):
            if clock() - start > case.hard_end_s:  # and any LoadGen issues after it
                hard_end = True
                answer_open(
                    f"TimeoutError: unanswered at the run's hard end, {case.hard_end_s:g} s (its bound of "
                    f"{case.max_duration_s:g} s and {case.hard_end_s - case.max_duration_s:g} s for the query in "
                    "flight): the backend's generate did not return"
                )
    except BaseException as e:  # Ctrl-C or SIGTERM: each query answered at once, LoadGen ends by its minimums
        stopping.set()
        until = time.monotonic() + STOP_WAIT_S
        while True:
            answer_open("interrupted")
            if finished.wait(0.1) or time.monotonic() > until:
                break
        if not finished.is_set():  # its minimum duration is further off: it is left to the process's end
            e.leaves_threads = "LoadGen's test (its minimum duration had not passed)"
        raise
    finally:
        out.duration_s = clock() - start
        pending.put(None)
        worker.join(timeout=1 if hard_end or stopping.is_set() else 60)
        if finished.is_set():  # never under a LoadGen still running
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
    if failure:
        raise failure[0]
    out.summary = read_summary(log_dir / "mlperf_log_summary.txt")
    return out


_LINE = re.compile(r"^\s*([^:=]+?)\s*:\s*(.+?)\s*$")
# the result line of each scenario's summary: SingleStream's percentile latency, Server's completed
# samples (or tokens) per second, Offline's samples per second
RESULT_KEY = re.compile(
    r"^(\d+(\.\d+)?th percentile latency \(ns\)|Completed (samples|tokens) per second|Samples per second|Tokens per second)$"
)


def read_summary(path: Path) -> dict:
    """LoadGen's summary as {key: value} (its 'Result is', its validity checks, its statistics), and
    its recommendations under "recommendations"."""
    if not path.is_file():
        return {}
    out: dict = {}
    advice: list[str] = []
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Recommendations:":
            for x in lines[i + 1 :]:  # its own bullet lines, up to the next block
                if not x.startswith(" * "):
                    break
                advice.append(x.strip(" *"))
            continue
        m = _LINE.match(line)
        if m and not line.startswith("="):
            out.setdefault(m.group(1), m.group(2))
    out["recommendations"] = advice
    return out


def rounds_of(run: LoadGenRun) -> list[Round]:
    return [Round(r.token_times_s) for r in run.results if r.error is None and r.token_times_s]


def record_fields(run: LoadGenRun, case: LoadGenCase) -> dict:
    s = run.summary
    ok = [r for r in run.results if r.error is None and r.token_times_s]
    waits = [max(0.0, r.started_s - r.issued_s) for r in ok]
    tokens = sum(len(r.token_times_s) for r in ok)
    valid = s.get("Result is")
    result_key = next((k for k in s if RESULT_KEY.match(k)), None)  # the summary's first: the scenario's metric
    estimate = next((f"{k.lstrip('* ')}: {v}" for k, v in s.items() if "Early stopping" in k and "estimate" in k), None)
    empty = len(run.results) - len(ok)  # answered with no tokens: failed, or unrun past the bound
    checks = [
        f"{k.strip()}: {s[k]}" for k in s if k.strip().endswith("satisfied") and k.strip() != "Early stopping satisfied"
    ]
    if empty and valid is not None:  # LoadGen counts an empty answer as a completed query
        checks.append(
            f"chipbench: {empty} of {len(run.results)} queries answered empty (failed, or unrun past the bound), "
            f"which LoadGen counted as completed: its {valid} does not stand"
        )
    return {
        "loadgen_scenario": case.scenario,
        "loadgen_valid": None if valid is None else valid.upper() == "VALID" and not empty,
        "loadgen_early_stopping": "; ".join(
            x for x in (s.get("Early stopping satisfied") or s.get("Early Stopping satisfied"), estimate) if x
        )
        or None,
        "loadgen_result": f"{result_key}: {s[result_key]}" if result_key else None,
        "loadgen_log_dir": run.log_dir,
        "loadgen_checks": "; ".join(checks) or None,
        "loadgen_recommendations": "; ".join(s.get("recommendations") or []) or None,
        "serve_requests": len(run.results),
        "serve_ok": len(ok),
        "serve_failed": len(run.results) - len(ok),
        "serve_partial": len(ok) < len(run.results) and bool(ok),
        "serve_errors": "; ".join(sorted({r.error for r in run.results if r.error}))[:2000] or None,
        "serve_duration_s": run.duration_s,
        "serve_rate_per_s": case.qps if case.scenario == "Server" else None,
        "request_per_s": len(ok) / run.duration_s if run.duration_s else None,
        "serve_output_tok_per_s": tokens / run.duration_s if run.duration_s else None,
        "serve_send_lag_median_s": float(np.median(waits)) if waits else None,
        "serve_send_lag_p99_s": float(np.percentile(waits, 99)) if waits else None,
        "serve_send_lag_max_s": max(waits) if waits else None,
        "slo_ttft_s": case.ttft_limit_s if case.scenario == "Server" else None,
        "slo_tpot_s": case.tpot_limit_s if case.scenario == "Server" else None,
    }
