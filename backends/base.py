"""The Backend contract: what an adapter must do, and nothing it must not (it never computes metrics).

A backend is any object with the methods of `Backend` below; adapters need not inherit from
anything. Everything else the harness may ask of a backend, or read from the handle its load()
returns, is declared once in `OPTIONAL`, each with its default: the harness reads those through
`capability()` alone, never by probing attributes of its own accord, so this file is the whole
contract a vendor reads (docs/backends.md shows the same table, made from it).
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

    def info(self) -> DeviceInfo:
        """The device's facts and software versions (DeviceInfo); called after probe() said it can run."""

    def supported_dtypes(self) -> tuple[str, ...]:
        """The dtypes it runs (fp32, bf16, fp16; an engine's quantised types)."""

    def load(self, spec, dtype: str, *, seed: int, weights_dir: str | None = None):
        """Build or load the model on the device; returns a handle for generate() with the facts
        `weights`, `linear_attn_path` and `build_time_s` (and any of OPTIONAL's handle facts)."""

    def prompt(self, handle, ids) -> Any:
        """Move prompt ids (a CPU int64 tensor [batch, tokens]) to the device, outside the clock."""

    def generate(self, handle, prompt, new_tokens: int, on_token: TokenCallback) -> Generation:
        """Greedy prefill + decode of exactly `new_tokens` steps (EOS ignored).

        Calls `on_token` once per step, only once that step's tokens are on the host.
        """

    def synchronize(self) -> None:
        """Wait until all queued device work is done (used by the timing self-test)."""

    def close(self, handle) -> None:
        """Free the handle's memory: the next case loads its own model."""


# --- optional capabilities: every one the harness uses, with its default ---------------------------


@dataclass(frozen=True)
class Capability:
    name: str
    of: str  # "backend", or "handle": the object load() returned
    default: Any  # what the harness assumes when the adapter does not have it
    meaning: str


def _eager_only() -> tuple[str, ...]:
    return ("eager",)


def _any_model(spec) -> str | None:
    return None


OPTIONAL: tuple[Capability, ...] = (
    Capability(
        "supported_modes",
        "backend",
        _eager_only,
        "supported_modes() -> execution modes it runs (eager, compiled); default eager only",
    ),
    Capability(
        "model_unsupported",
        "backend",
        _any_model,
        "model_unsupported(spec) -> why it cannot run this model, or None; default: any model",
    ),
    Capability(
        "ceilings",
        "backend",
        None,
        "ceilings(dtype) -> Ceilings: measures the device's memory bandwidth and matmul rate, the roofline's "
        "measured yardstick; default: none measured (the spec sheet alone)",
    ),
    Capability(
        "ceiling_dtype",
        "backend",
        None,
        "ceiling_dtype(dtype) -> the float dtype whose matmul its ceilings(dtype) measure (a quantised type's: the "
        "one its products run in); cases on one device and ceiling dtype share one yardstick; default: dtype",
    ),
    Capability(
        "prepare",
        "backend",
        None,
        "prepare(handle, batch, tokens, prompt_tokens) -> compile seconds or None: builds what a case needs "
        "(static caches, compiled steps) outside the clock",
    ),
    Capability(
        "before_round",
        "backend",
        None,
        "before_round(): called right before each timed round starts (tensor parallel: a barrier of the ranks)",
    ),
    Capability(
        "runs_ahead",
        "backend",
        None,
        "runs_ahead(mode) -> whether generate() queues each step before it waits for the last one; the timing "
        "self-test then proves that loop; default lock-step",
    ),
    Capability(
        "telemetry_sources",
        "backend",
        None,
        "telemetry_sources() -> samplers of the device's power, clocks and memory during the rounds; default none",
    ),
    Capability(
        "host_processes",
        "backend",
        None,
        "host_processes() -> pids on this host doing the backend's work (a local server), so their CPU time is "
        "not read as a neighbour's load",
    ),
    Capability(
        "reference_model",
        "backend",
        None,
        "reference_model(spec, dtype, seed, layers) -> the fp32 torch model the correctness gate compares "
        "with, where the backend's weights are not transformers' (an engine's export)",
    ),
    Capability(
        "teacher_forced_logits",
        "backend",
        None,
        "teacher_forced_logits(handle, ids, prompt_tokens) -> logits of every position, for the correctness "
        "gate; without it the gate compares greedy tokens only",
    ),
    Capability("teacher_forced_kind", "backend", "logits", "what teacher_forced_logits returns: logits or logprobs"),
    Capability(
        "compile_facts",
        "backend",
        None,
        "compile_facts(handle) -> the record's compiled_graphs, graph_breaks, cuda_graphs, compile_flags, "
        "compile_cache, prefill_path fields (and a note)",
    ),
    Capability(
        "open_connections",
        "backend",
        None,
        "open_connections(handle, n): opens n connections before a serving level, outside its clock",
    ),
    Capability(
        "stream_one",
        "backend",
        None,
        "stream_one(handle, prompt, new_tokens, on_chunk, check, deadline) -> one streamed request of a serving "
        "load (`chipbench serve`), ended by `deadline` (a time.perf_counter() time: the level's bound); default: "
        "the backend cannot serve loads",
    ),
    Capability(
        "fresh_process",
        "backend",
        True,
        "False when a trial cannot run in a fresh worker process found by name (the trial then runs in-process)",
    ),
    Capability(
        "default_dtypes",
        "backend",
        None,
        "() -> (dtypes, why) the suite times by default on this device where they differ from the suite's "
        "own default, or None (a CPU without bf16 matmul instructions: fp32); default: the suite's",
    ),
    Capability(
        "short_warmup",
        "backend",
        False,
        "True when a warmup of a few decode steps leaves the backend as warm as a whole round: no state "
        "that grows with the round and outlives it (a persistent KV cache, a caching allocator); a sized case "
        "then warms up on its first 16 tokens (chipbench.measuring.runner.warmup_tokens); default: whole rounds",
    ),
    Capability("exec_path", "handle", None, "how this handle generates (eager, compiled, ...); default the mode asked"),
    Capability("exec_note", "handle", None, "why the mode asked for did not run as asked (a fallback), for the record"),
    Capability("file_bytes", "handle", None, "the bytes of an engine's real weight file, beside the nominal count"),
    Capability(
        "kv_cache_dtype",
        "handle",
        None,
        "the dtype the runtime keeps its key/value cache in where it is not the case's own (a DTYPE_BYTES name): "
        "the record's kv_bytes_per_token and the roofline count its bytes",
    ),
    Capability("engine", "handle", None, "the inference software (on the handle or the backend)"),
    Capability("engine_version", "handle", None, "its version (on the handle or the backend)"),
    Capability("parallel", "handle", None, "the parallel layout when split: tpN / ppN (on the handle or the backend)"),
    Capability(
        "prefix_caching",
        "handle",
        None,
        "how no round reuses another's prompt state (on the handle or the backend); null: the adapter does not say",
    ),
    Capability("endpoint_rtt_s", "handle", None, "an endpoint's round trip, the network's share of each TTFT"),
    Capability(
        "weights_digest",
        "handle",
        None,
        "the digest of the weights the case ran (chipbench.models.build.weights_digest or file_digest: "
        "'blake2b-256:<hex>'), recorded and bundled; null: the adapter cannot see its tensors",
    ),
)
_BY_NAME = {c.name: c for c in OPTIONAL}


def capability(obj, name: str):
    """The adapter's (or its handle's) optional capability `name`, or its declared default. The one
    place the harness reads an optional capability: a name not declared in OPTIONAL is a bug."""
    return getattr(obj, name, _BY_NAME[name].default)


def contract_markdown() -> str:
    """docs/backends.md's table of the contract, made from the declarations above."""
    lines = ["| name | of | default | meaning |", "|---|---|---|---|"]
    required = [m for m in Backend.__dict__ if not m.startswith("_") and callable(Backend.__dict__[m])]
    lines += [
        f"| `{m}` | backend | required | {(getattr(Backend, m).__doc__ or '').split(chr(10))[0].strip() or '-'} |"
        for m in required
    ]
    for c in OPTIONAL:
        default = {_eager_only: "eager only", _any_model: "any model"}.get(c.default, repr(c.default))
        lines.append(f"| `{c.name}` | {c.of} | {default} | {c.meaning.replace('|', '/')} |")
    return "\n".join(lines)
