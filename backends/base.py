"""The Backend contract: what an adapter must do, and nothing it must not (it never computes metrics).

A backend is any object with these methods; adapters need not inherit from anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Called once per generated step with the batch's token ids, after they are visible on the host.
# The harness timestamps each call: that is the only clock a measurement uses.
TokenCallback = Callable[[Sequence[int]], None]


@dataclass(frozen=True)
class Probe:
    available: bool
    reason: str = ""  # why it cannot run; empty when available

    @classmethod
    def ok(cls) -> "Probe":
        return cls(True, "")

    @classmethod
    def no(cls, reason: str) -> "Probe":
        return cls(False, reason)


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # adapter name, e.g. "cuda"
    kind: str  # the device family compared across runs: "cpu", "cuda", "xpu", "npu", ...
    device_name: str  # as the device reports it, e.g. "NVIDIA H100 80GB HBM3"
    device_count: int = 1
    memory_bytes: int | None = None  # device memory (host RAM for cpu)
    driver: str | None = None
    runtime: str | None = None  # e.g. "cuda 13.0", "rocm 6.4"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    """What one generation call leaves behind (tokens are also streamed through the callback)."""

    tokens: list[list[int]]  # [step][batch]
    peak_mem_bytes: int | None  # peak memory during the call, or None when not measurable
    peak_mem_kind: str | None = None  # what was measured: device_allocated_peak, process_rss_peak
    # Per step, seconds from the request's start to that step's tokens, on the device's own clock
    # (events recorded in the stream), when the adapter has one; the harness cross-checks them
    # against its host stamps and uses them only when the two agree.
    device_times_s: list[float] | None = None
    # True when the host queued each step before it waited for the previous step's tokens (the
    # device never idled on the host's round trip); False: host and device in lock step
    ran_ahead: bool = False
    # Per step, seconds the host spent blocked on the device before it had that step's tokens, when
    # the device runs asynchronously to the host (None on the CPU, whose ops finish as they are
    # called): the harness reads the host's own work per step from it (runner.host_step)
    host_waits_s: list[float] | None = None


@runtime_checkable
class Backend(Protocol):
    name: str

    def probe(self) -> Probe:
        """Cheap: may import modules but never initialises a device it does not need; never raises."""

    def info(self) -> DeviceInfo: ...

    def supported_dtypes(self) -> tuple[str, ...]: ...

    def load(self, spec, dtype: str, *, seed: int, weights_dir: str | None = None):
        """Build or load the model on the device; returns an opaque handle for generate()."""

    def prompt(self, handle, ids) -> Any:
        """Move prompt ids (a CPU int64 tensor [batch, tokens]) to the device, outside the clock."""

    def generate(self, handle, prompt, new_tokens: int, on_token: TokenCallback) -> Generation:
        """Greedy prefill + decode of exactly `new_tokens` steps (EOS ignored).

        Calls `on_token` once per step, only once that step's tokens are on the host.
        """

    def synchronize(self) -> None:
        """Wait until all queued device work is done (used by the timing self-test)."""

    def close(self, handle) -> None: ...
