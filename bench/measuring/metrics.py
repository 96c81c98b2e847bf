"""Metrics of one generation round, from the harness's own per-token timestamps.

Definitions (shared/reference/measurement.md), per request of batch B, prompt P, N generated:
  TTFT  start -> first token visible on the host (prefill plus the first sample)   lower is better
  E2E   start -> last token visible on the host                                    lower is better
  TPOT  (E2E - TTFT) / (N - 1), the first token excluded (vLLM's definition)       lower is better
  ITL   each gap between consecutive tokens                                        lower is better
  prefill throughput  B * P / TTFT                                                 higher is better
  decode throughput   B * (N - 1) / (E2E - TTFT)                                   higher is better
  output throughput   B * N / E2E                                                  higher is better
"""

from __future__ import annotations

from dataclasses import dataclass

from chipbench.measuring.workload import Workload

# metric name -> (unit, True when higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "ttft_s": ("s", False),
    "tpot_s": ("s", False),
    "e2e_s": ("s", False),
    "itl_s": ("s", False),
    "prefill_tok_per_s": ("tokens/s", True),
    "decode_tok_per_s": ("tokens/s", True),
    "output_tok_per_s": ("tokens/s", True),
}

DEFINITIONS: dict[str, str] = {
    "ttft_s": "time to first token: request start until the first token is on the host (prefill + first sample)",
    "tpot_s": "time per output token: (E2E - TTFT) / (N - 1), first token excluded (vLLM's definition)",
    "e2e_s": "request start until the last token is on the host",
    "itl_s": "every gap between consecutive tokens, pooled over the rounds",
    "prefill_tok_per_s": "B x P / TTFT",
    "decode_tok_per_s": "B x (N - 1) / (E2E - TTFT)",
    "output_tok_per_s": "B x N / E2E",
}

# the metric a workload kind is judged by (summary tables lead with it)
HEADLINE = {
    "prefill": "prefill_tok_per_s",
    "decode": "decode_tok_per_s",
    "generate": "output_tok_per_s",
    "serve": "output_tok_per_s",
}  # a serving level: its aggregate output tokens/s


@dataclass(frozen=True)
class Round:
    """One timed generation: token_times_s[i] is when step i's tokens were ready, in seconds after
    the request started, on the clock `timing_method` names (the host's, or the device's own)."""

    token_times_s: tuple[float, ...]
    peak_mem_bytes: int | None = None
    peak_mem_kind: str | None = None
    timing_method: str = "host"  # host | device events
    clock_disagreement_s: float | None = None  # device events: spread of (host stamp - device time)
    # an asynchronous device: the host's own work per decode step (its waits on the device left out),
    # and the share of the decode span it filled (near 1: the device waited for the host)
    host_step_s: float | None = None
    host_busy_frac: float | None = None


def round_metrics(r: Round, w: Workload) -> dict[str, float | None]:
    t = r.token_times_s
    n = len(t)
    ttft, e2e = t[0], t[-1]
    decode_span = e2e - ttft
    m = {
        "ttft_s": ttft,
        "e2e_s": e2e,
        "prefill_tok_per_s": w.batch * w.prompt_tokens / ttft if ttft > 0 else None,
        "output_tok_per_s": w.batch * n / e2e if e2e > 0 else None,
        "tpot_s": decode_span / (n - 1) if n > 1 else None,
        "decode_tok_per_s": w.batch * (n - 1) / decode_span if n > 1 and decode_span > 0 else None,
    }
    return m


def inter_token_latencies(r: Round) -> list[float]:
    t = r.token_times_s
    return [b - a for a, b in zip(t, t[1:])]
