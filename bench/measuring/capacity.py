"""What this client can drive on this machine: chipbench's own serving client (the endpoint backend
and run_load, as `chipbench serve` runs them) against a mock server that computes nothing
(chipbench.measuring.mockserver), at rising concurrency. Its best streamed tokens/s is the client's
capacity; a serving level that uses more than CLIENT_BOUND_SHARE of it measured the client as much
as the server, and is flagged "client-bound" (users of other load tools report a client capped by
its own read buffer at 10x below the server).

The mock shares this machine with the client, so the figure is a floor of the client's capacity:
on a 2-core host the two take turns on the cores. Kept for a day per host and software
(chipbench.stash), measured again with --fresh.
"""

from __future__ import annotations

import platform
import time

from chipbench import stash
from chipbench.backends.openai_endpoint import create
from chipbench.measuring import env
from chipbench.measuring.mockserver import MockServer
from chipbench.measuring.serving import Load, run_load, serve_fields
from chipbench.models.zoo import get_model

CLIENT_BOUND_SHARE = 0.5  # a level past half of the client's capacity is client-bound
LEVELS = (1, 4, 16, 64)
GEN_TOKENS = 256
PROMPT_TOKENS = 16
LEVEL_BOUND_S = 30.0
KEPT = stash.Stash("client-capacity", lifetime_s=86400)


def measure(levels: tuple[int, ...] = LEVELS, gen_tokens: int = GEN_TOKENS) -> dict:
    """The client's capacity: at each concurrency, requests/s, streamed tokens/s (one per chunk) and
    bytes/s over the level's wall time; the best of them, and the level that gave it."""
    rows = []
    with MockServer() as mock:
        backend = create("openai:" + mock.url)
        handle = backend.load(get_model("qwen3-0.6b"), "bf16", seed=0)
        try:
            for c in levels:
                load = Load(
                    PROMPT_TOKENS, gen_tokens, requests=max(8, 2 * c), concurrency=c, max_duration_s=LEVEL_BOUND_S
                )
                chunks, sent = mock.chunks, mock.bytes
                t0 = time.perf_counter()
                run = run_load(backend, handle, load)
                wall = time.perf_counter() - t0
                f = serve_fields(run)
                rows.append(
                    {
                        "concurrency": c,
                        "request_per_s": f["request_per_s"],
                        "tok_per_s": (mock.chunks - chunks) / wall,
                        "bytes_per_s": (mock.bytes - sent) / wall,
                        "failed": f["serve_failed"],
                        "send_lag_p99_s": f["serve_send_lag_p99_s"],
                    }
                )
        finally:
            backend.close(handle)
    best = max(rows, key=lambda r: r["tok_per_s"])
    return {
        "tok_per_s": best["tok_per_s"],
        "request_per_s": max(r["request_per_s"] or 0.0 for r in rows),
        "bytes_per_s": best["bytes_per_s"],
        "at_concurrency": best["concurrency"],
        "levels": rows,
        "gen_tokens": gen_tokens,
    }


def _key() -> dict:
    import httpx  # the serving client's library: only where a serving load runs

    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "chipbench": env.git_commit(),
    }


def kept_or_measured() -> tuple[dict, str | None]:
    """(capacity, when it was made if kept): this host's capacity from the last day, or measured now."""
    kept = KEPT.get(_key())
    if kept is not None:
        return kept[0], kept[1]
    value = measure()
    KEPT.put(_key(), value)
    return value, None


def level_fields(rec: dict, capacity: dict | None, made: str | None = None) -> dict:
    """A serving level's share of the client's capacity, and whether that makes it client-bound."""
    if not capacity or not capacity.get("tok_per_s"):
        return {"client_capacity_tok_per_s": None, "client_capacity_share": None, "client_bound": None}
    rate = rec.get("serve_output_tok_per_s")
    share = rate / capacity["tok_per_s"] if rate else None
    return {
        "client_capacity_tok_per_s": capacity["tok_per_s"],
        "client_capacity_share": share,
        "client_bound": share > CLIENT_BOUND_SHARE if share is not None else None,
        "client_capacity_note": (
            f"this client drove {capacity['tok_per_s']:.0f} streamed tokens/s ({capacity['request_per_s']:.1f} req/s) "
            f"against a mock server on this host at concurrency {capacity['at_concurrency']}"
            + (f" (kept: {stash.age_text(made)})" if made else "")
            + f"; client-bound past {CLIENT_BOUND_SHARE:.0%} of it"
        ),
    }


def table(capacity: dict) -> str:
    lines = ["concurrency  req/s  tokens/s  MB/s  failed  send lag p99 ms"]
    for r in capacity["levels"]:
        lag = r["send_lag_p99_s"]
        lines.append(
            f"{r['concurrency']:>11}  {r['request_per_s'] or 0:5.1f}  {r['tok_per_s']:8.0f}  {r['bytes_per_s'] / 1e6:4.1f}"
            f"  {r['failed']:>6}  {lag * 1e3 if lag is not None else float('nan'):15.1f}"
        )
    return "\n".join(lines)
