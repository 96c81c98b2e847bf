"""Self-test: does a backend's timing wait for the device?

A backend that hands tokens to the harness before the device has produced them (an async
kernel launch timed on the host clock: pitfall 1 of measurement.md) makes every latency look
small. The check: right after the last token callback, wait for the device. If the backend
waited, nothing is left in flight and the wait is instant; if it did not, the wait lasts about
as long as the work it skipped. A lag above a quarter of the median inter-token gap fails.

Two probes, because a missing wait hides in different places: several decode steps from a
short prompt, and one step after a long prompt, where the device (not the host launching
kernels) is the bottleneck. transformers' forward syncs implicitly at the start of each step,
so in launch-bound decode a missing wait shows only on the last token, and barely; a long
prefill makes it plain.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from chipbench.backends import distributed
from chipbench.backends.base import Backend, capability
from chipbench.measuring.workload import Workload, prompt_ids
from chipbench.models.zoo import get_model

LAG_FRACTION = 0.25  # of the median inter-token gap
LAG_FLOOR_S = 0.002  # below this a lag is host jitter, whatever the gap
# A clock that does not wait leaves the same work in flight every time; a host that was preempted
# between the last token and the sync (a loaded 2-core runner) leaves a lag once. The timed probe
# runs up to this many times and passes on the first that shows no lag: a backend fails only when
# every attempt does.
ATTEMPTS = 3


@dataclass(frozen=True)
class TimingCheck:
    passed: bool
    lag_s: float  # device work still in flight after the last token was "visible"
    median_gap_s: float
    e2e_s: float
    prompt_tokens: int
    new_tokens: int
    mode: str = "eager"
    lags_s: tuple[float, ...] = ()  # every attempt's lag, in order (the last is lag_s)
    first_s: float = 0.0  # the first token's time: the prompt's prefill

    def describe(self) -> str:
        verdict = "waits for the device" if self.passed else "DOES NOT wait for the device"
        steps = (
            f"{self.new_tokens} tokens; median token gap {self.median_gap_s * 1e3:.2f} ms, "
            if self.new_tokens > 1
            else "1 token, no gap: its step is the yardstick; "
        )
        return (
            f"timing {verdict}: {self.lag_s * 1e3:.2f} ms of work left after the last token "
            f"({self.mode + ', ' if self.mode != 'eager' else ''}prompt {self.prompt_tokens}, "
            f"{steps}e2e {self.e2e_s * 1e3:.1f} ms"
            + (
                f"; attempts' lags {', '.join(f'{x * 1e3:.2f}' for x in self.lags_s)} ms"
                if len(self.lags_s) > 1
                else ""
            )
            + ")"
        )


def timing_loop(backend: Backend, mode: str) -> str:
    """The generation loop a case in `mode` times: "run-ahead" where the backend queues each step
    before it waits for the previous step's tokens, else "lock-step". Each loop needs its own proof."""
    ahead = capability(backend, "runs_ahead")
    return "run-ahead" if ahead is not None and ahead(mode) else "lock-step"


# The long probe's prompt: as long as the device prefills in about LONG_PROBE_S (paced by the decode
# probe's 32-token prefill), between LONG_MIN and the model's 2048. A backend that does not wait
# leaves that whole prefill in flight, so a second of work shows as a lag 250 times the 2 ms floor;
# 2,048 tokens of bf16 on a CPU without native bf16 took 93 s, twice (warmup and probe), for the
# same proof.
LONG_PROBE_S = 1.0
LONG_MIN = 128
LONG_STEP = 64


def check_all(
    backend: Backend,
    model: str = "qwen3-0.6b",
    dtype: str = "bf16",
    long_prompt: int = 2048,
    mode: str = "eager",
    cache_len: int | None = None,
    long_probe_s: float | None = LONG_PROBE_S,
) -> list[TimingCheck]:
    """The decode probe (in `mode`) and the long-prefill probe; the backend passes when both do.
    The prefill probe runs eager: a prefill's time is the loop's first delivery, the same wait in
    either mode (the decode probe's first token proves it in `mode`), and compiling a static cache
    for the probe's long prompt would be compiled for nothing. Eager, both probes share one load.
    `long_probe_s`: the long prompt is sized to about this much prefill (None: `long_prompt` itself)."""
    spec = get_model(model)
    shared = backend.load(spec, dtype, seed=0) if mode == "eager" else None
    try:
        decode = check_timing_waits(
            backend, model, dtype, new_tokens=16, prompt_tokens=32, mode=mode, cache_len=cache_len, handle=shared
        )
        # rank 0's size on every rank of a split model: each rank's clock sizes it a little differently,
        # and ranks prefilling different lengths exchange tensors of different sizes (gloo aborts)
        long = (
            long_prompt if long_probe_s is None else distributed.lead(sized_prompt(decode, long_prompt, long_probe_s))
        )
        prefill = check_timing_waits(backend, model, dtype, new_tokens=1, prompt_tokens=long, handle=shared)
    finally:
        if shared is not None:
            backend.close(shared)
    return [decode, prefill]


def sized_prompt(decode: TimingCheck, most: int, seconds: float) -> int:
    """A prompt the device prefills in about `seconds`, at the pace of the decode probe's prefill
    (its first token), between LONG_MIN and `most` tokens, in steps of LONG_STEP."""
    if decode.first_s <= 0:
        return most
    tokens = int(decode.prompt_tokens / decode.first_s * seconds) // LONG_STEP * LONG_STEP
    return max(min(LONG_MIN, most), min(most, tokens))


def check_timing_waits(
    backend: Backend,
    model: str = "tiny-qwen3",
    dtype: str = "fp32",
    new_tokens: int = 16,
    prompt_tokens: int = 32,
    mode: str = "eager",
    cache_len: int | None = None,
    handle=None,
) -> TimingCheck:
    """`cache_len` (compiled): the static cache's length, at least the probe's; the first case's
    length makes the probe's compile the one that case then finds in inductor's cache. `handle`: a
    model already loaded (eager) that the caller closes."""
    spec = get_model(model)
    w = Workload("generate", prompt_tokens, new_tokens)
    own = handle is None
    if own:
        handle = backend.load(spec, dtype, seed=0, **({"mode": mode} if mode != "eager" else {}))
    try:
        prepare = capability(backend, "prepare")
        if mode != "eager" and cache_len and prepare is not None:
            prepare(handle, 1, max(cache_len, prompt_tokens + new_tokens), prompt_tokens=1)  # the decode step only
        prompt = backend.prompt(handle, prompt_ids(w, spec.vocab))
        backend.generate(handle, prompt, new_tokens, lambda t: None)  # warm up
        backend.synchronize()
        lags: list[float] = []
        for _ in range(ATTEMPTS):
            stamps, start, lag = _timed_generation(backend, handle, prompt, new_tokens)
            lags.append(lag)
            last = stamps[-1]
            gaps = [b - a for a, b in zip(stamps, stamps[1:])] or [last - start]  # one step: its e2e
            median_gap = statistics.median(gaps)
            # a split model's timing waits when every rank's does; the ranks try again together (each
            # attempt's generation is collective, so one rank cannot retry alone)
            passed = all(distributed.gather(lag <= max(LAG_FRACTION * median_gap, LAG_FLOOR_S)))
            if passed:  # host jitter does not recur; work left in flight does
                break
    finally:
        if own:
            backend.close(handle)
    return TimingCheck(
        passed, lag, median_gap, last - start, prompt_tokens, new_tokens, mode, tuple(lags), stamps[0] - start
    )


def _timed_generation(backend: Backend, handle, prompt, new_tokens: int) -> tuple[list[float], float, float]:
    """(token stamps, start, the lag from the last stamp until the device is idle)."""
    stamps: list[float] = []
    start = time.perf_counter()
    backend.generate(handle, prompt, new_tokens, lambda t: stamps.append(time.perf_counter()))
    last = stamps[-1]
    backend.synchronize()
    return stamps, start, time.perf_counter() - last


def probe_cache_len(case) -> int | None:
    """A batch-1 case's static cache length: a compiled self-test probe on it compiles the step that
    case then finds in inductor's cache (a compile of a large model can take minutes)."""
    return case.workload.total_tokens if case.workload.batch == 1 else None


def suite_check(
    backend: Backend, model: str, dtype: str, mode: str = "eager", cache_len: int | None = None
) -> tuple[str, str]:
    """The self-test a benchmark run performs once per backend and timing loop before reporting
    any number from it: both probes on the run's own model and dtype (a long prompt that fits the
    model); the decode probe in `mode` where that mode runs ahead of the host (timing_loop), on a
    static cache of `cache_len` (the first case's, at batch 1) when given.

    Returns (status, text): status "passed", "failed" (the timing does not wait: no number from
    this backend may be reported) or "error" (it could not run on this model: no proof yet, so
    this case reports nothing, and the next case's model tries again)."""
    spec = get_model(model)
    probe_mode = mode if timing_loop(backend, mode) == "run-ahead" else "eager"
    try:
        checks = check_all(
            backend,
            model=model,
            dtype=dtype,
            long_prompt=min(2048, spec.max_pos - 2),
            mode=probe_mode,
            cache_len=cache_len,
        )
    except Exception as e:  # a self-test that cannot run proves nothing
        return "error", f"could not run on {model} {dtype}: {type(e).__name__}: {e}"
    passed = all(c.passed for c in checks)
    worst = max(checks, key=lambda c: c.lag_s)
    text = (
        ("passed" if passed else "FAILED") + ": " + "; ".join(c.describe() for c in checks if not passed or c is worst)
    )
    if probe_mode != "eager":
        text += f" (decode probe {probe_mode}, {timing_loop(backend, mode)} loop)"
    return ("passed" if passed else "failed"), text
