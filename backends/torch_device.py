"""One adapter implementation for every device PyTorch drives; cpu, cuda and the generic
accelerator adapter differ only in the small DeviceOps they pass in (probe, facts, sync, memory)."""

from __future__ import annotations

import gc
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from chipbench.backends import distributed, torch_loop
from chipbench.backends.base import DeviceInfo, Generation, Probe, TokenCallback
from chipbench.errors import UsageError
from chipbench.models.counts import facts


@dataclass(frozen=True)
class DeviceOps:
    device: str  # torch device string, e.g. "cuda" (the current CUDA device) or "cpu"
    probe: Callable[[], Probe]
    info: Callable[[], DeviceInfo]
    dtypes: Callable[[], tuple[str, ...]]
    synchronize: Callable[[], None]
    reset_peak_memory: Callable[[], None]
    peak_memory_bytes: Callable[[], int | None]
    peak_memory_kind: str  # what peak_memory_bytes measures, for the record
    # Why compiled mode falls back to eager on this device; None: torch.compile runs here
    compile_unsupported: str | None = None
    # Why compiled mode falls back to eager for one model here (a known fault of this torch's compiler
    # with that family on this device); None: it compiles
    compile_refuses: Callable[[object], str | None] = lambda spec: None
    # telemetry sources (chipbench.measuring.telemetry) for this device; none: nothing is metered
    telemetry: Callable[[], list] = lambda: []
    # a timing event of this device's stream (e.g. torch.cuda.Event(enable_timing=True)); None: the
    # device has no clock of its own to offer, and the harness's host stamps are the times
    event: Callable[[], object] | None = None
    # the dtype the suite should time by default on this device and why, where it is not the suite's
    # (a CPU without bf16 matmul instructions: fp32); None: the suite's default
    default_dtype: Callable[[], tuple[str, str] | None] = lambda: None


@dataclass
class LoadedModel:
    module: torch.nn.Module
    spec: object  # chipbench.models.zoo.ModelSpec
    dtype: str
    weights: str
    build_time_s: float
    exec_path: str  # how generation runs, recorded so eager and compiled numbers never mix
    linear_attn_path: str | None  # hybrid models: "fla" kernels or the pure-torch fallback
    engine: str = "transformers"  # the software that runs the model: transformers' modules
    engine_version: str | None = None
    exec_note: str | None = None  # why the requested mode did not run (a fallback), if it did not
    decoder: object = None  # compiled: the static cache and compiled step (torch_loop.StaticDecoder)
    parallel: str = "none"  # tpN when split over a torchrun launch's N ranks
    weights_digest: str | None = None  # chipbench.models.build.weights_digest of the weights as built


MODES = ("eager", "compiled")


def linear_attention_path(spec) -> str | None:
    if not spec.is_hybrid:
        return None
    fla = importlib.util.find_spec("fla") is not None
    conv = importlib.util.find_spec("causal_conv1d") is not None
    return "fla+causal_conv1d" if fla and conv else ("fla" if fla else "torch")


class TorchBackend:
    """A Backend (see chipbench.backends.base) running the harness's own loop through PyTorch on one device."""

    engine = "transformers"
    prefix_caching = "none kept: every round starts from an empty KV cache"

    def __init__(self, name: str, ops: DeviceOps):
        self.name = name
        self.ops = ops

    @property
    def engine_version(self) -> str:
        import transformers

        return transformers.__version__

    def probe(self) -> Probe:
        try:
            return self.ops.probe()
        except Exception as e:  # a probe never raises: a broken runtime is a reason, not a crash
            return Probe.no(f"{type(e).__name__}: {e}")

    def info(self) -> DeviceInfo:
        distributed.init(self.ops.device)  # under torchrun: this rank's own device, not the first one
        return self.ops.info()

    def supported_dtypes(self) -> tuple[str, ...]:
        return self.ops.dtypes()

    def telemetry_sources(self) -> list:
        """What can be sampled on this device while it runs (clocks, power, energy, throttling)."""
        return self.ops.telemetry()

    def supported_modes(self) -> tuple[str, ...]:
        """Execution modes a case may ask for (a device that cannot compile runs eager and says why)."""
        return MODES

    def load(
        self,
        spec,
        dtype: str,
        *,
        seed: int,
        weights_dir: str | None = None,
        layers: int | None = None,
        mode: str = "eager",
    ) -> LoadedModel:
        from chipbench.models.build import build_random, load_local, parse_dtype

        valid = self.supported_dtypes()
        if dtype not in valid:
            raise UsageError(f"backend {self.name!r} cannot run dtype {dtype!r}; it runs: {', '.join(valid)}")
        torch_dtype = parse_dtype(dtype)
        if layers is None:
            self._refuse_if_too_big(spec, dtype)
        self.ops.synchronize()  # start the device runtime first: build time is the model's alone
        if distributed.is_parallel():
            built = self._load_split(spec, dtype, seed, layers, weights_dir)
        elif weights_dir:
            built = load_local(spec, weights_dir, torch_dtype, self.ops.device)
        else:
            built = build_random(spec, torch_dtype, self.ops.device, seed=seed, layers=layers)
        self.ops.synchronize()
        path, note = mode, None
        refused = mode == "compiled" and (self.ops.compile_unsupported or self.ops.compile_refuses(spec))
        if refused:
            path, note = "eager", f"compiled mode asked for, ran eager: {refused}"
        if mode == "compiled" and distributed.is_parallel():
            path, note = "eager", "compiled mode asked for, ran eager: the tensor-parallel model is not compiled here"
        return LoadedModel(
            built.module,
            spec,
            dtype,
            built.weights,
            built.build_time_s,
            exec_path=path,
            linear_attn_path=linear_attention_path(spec),
            engine=self.engine,
            engine_version=self.engine_version,
            exec_note=note,
            parallel=distributed.layout(),
            weights_digest=getattr(built, "digest", None),
        )

    def _refuse_if_too_big(self, spec, dtype: str) -> None:
        """Weights that cannot fit this device (this rank's share under torchrun) are refused before
        anything is allocated, with the tensor-parallel sizes that would fit."""

        try:
            memory = self.ops.info().memory_bytes
        except Exception:
            return
        advice = distributed.fit_advice(
            facts(spec).weight_bytes(dtype) // distributed.world_size(), memory, what="weights alone"
        )
        if advice:
            raise MemoryError(f"{spec.name} {dtype} {advice}")

    def _load_split(self, spec, dtype: str, seed: int, layers: int | None, weights_dir: str | None):
        """Under torchrun: the model split by transformers' tensor-parallel plan over the ranks."""

        from chipbench.models.build import WEIGHTS_SCHEME, BuiltModel, parse_dtype

        if weights_dir:
            raise UsageError(
                "tensor parallel runs the seeded weights here; real weights: load them with "
                "transformers' tp_plan yourself"
            )
        start = time.perf_counter()
        module, where = distributed.load_tensor_parallel(spec, dtype, seed, layers, self.ops.device)
        return BuiltModel(
            module,
            spec,
            parse_dtype(dtype),
            f"random(seed={seed}, {WEIGHTS_SCHEME}) via {where}",
            time.perf_counter() - start,
        )

    @property
    def parallel(self) -> str:
        return distributed.layout()

    def default_dtypes(self) -> tuple[tuple[str, ...], str] | None:
        """(dtypes, why) the suite times by default on this device where they differ from its own
        per-backend default; None: no opinion."""
        picked = self.ops.default_dtype()
        return ((picked[0],), picked[1]) if picked else None

    @property
    def short_warmup(self) -> bool:
        """On the CPU each round's cache is new and every large tensor is mapped from the OS afresh
        (glibc: no caching allocator), so 16 decode steps warm what a whole round does; measured,
        torch's tg128 first timed round against the rest's median: 0.95 after a 16-token warmup, 0.94
        after a whole one (results/measurements/2026-12-07-short-warmup/). On an accelerator the
        caching allocator would meet the longer round's larger blocks only in the first timed round."""
        return self.name == "cpu"

    def before_round(self) -> None:
        """Every rank ready before rank 0 starts its clock (a no-op in one process)."""
        distributed.barrier()

    def prepare(self, handle: LoadedModel, batch: int, tokens: int, prompt_tokens: int | None = None) -> float | None:
        """Compiled mode: a static cache for `batch` sequences of `tokens`, the decode step compiled
        for it and, for prompts of `prompt_tokens` > 1 (None: not known, so compiled), the prefill
        (reused when it fits). Returns the compile / capture time; None in eager."""
        if handle.exec_path != "compiled":
            return None
        long_prompt = prompt_tokens is None or prompt_tokens > 1
        if handle.decoder is None or not handle.decoder.fits(batch, tokens):
            handle.decoder = None  # free the old cache first
            handle.decoder = torch_loop.build_static_decoder(
                handle.module, batch, tokens, self.ops.device, self.ops.synchronize, prefill=long_prompt
            )
        elif long_prompt:  # a decoder built for one-token prompts, now asked for longer ones
            torch_loop.add_prefill(handle.decoder, self.ops.device, self.ops.synchronize)
        return handle.decoder.compile_time_s

    def runs_ahead(self, mode: str) -> bool:
        """Whether generation in `mode` runs one step ahead of the host (torch_loop.run_steps):
        compiled, on a device with stream events, where a replayed graph launches in microseconds
        and the device, not the host's round trip, should set the pace. Eager stays in lock step,
        as transformers' own loop runs. The timing self-test proves each loop separately."""
        return mode == "compiled" and self.ops.event is not None and not self.ops.compile_unsupported

    def compile_facts(self, handle: LoadedModel) -> dict:
        """Compiled mode: what the decode step became (graphs, graph breaks, CUDA graphs) and,
        under "note", how it fell short of one whole (captured) graph; {} in eager."""
        if handle.exec_path != "compiled" or handle.decoder is None:
            return {}
        return {**handle.decoder.facts(), "note": handle.decoder.problems()}

    def prompt(self, handle: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
        t = ids.to(self.ops.device)
        self.ops.synchronize()
        return t

    def generate(
        self, handle: LoadedModel, prompt: torch.Tensor, new_tokens: int, on_token: TokenCallback
    ) -> Generation:
        self.ops.reset_peak_memory()
        if handle.exec_path == "compiled":
            # what the case's own prepare() built serves; a new decoder here compiles no prefill (the
            # self-test's decode probe, whose long prompt only fills the cache)
            self.prepare(handle, prompt.shape[0], prompt.shape[1] + new_tokens, prompt_tokens=1)
        events, mark, start = [], None, None
        if self.ops.event is not None:  # the device's own clock: an event after each step, in the stream
            start = self.ops.event()
            start.record()

            def mark():
                events.append(self.ops.event())
                events[-1].record()

        ahead = self.runs_ahead(handle.exec_path)
        waits = [] if self.ops.event is not None else None  # an asynchronous device: its waits tell host from device
        if handle.exec_path == "compiled":
            steps = torch_loop.generate_static(
                handle.decoder, prompt, new_tokens, on_token, mark, fence=self.ops.event if ahead else None, waits=waits
            )
        else:
            steps = torch_loop.generate(handle.module, prompt, new_tokens, on_token, mark, waits=waits)
        device_times = None
        if events:
            events[-1].synchronize()  # one wait at the end: every event has happened by then
            device_times = [start.elapsed_time(e) / 1e3 for e in events]  # elapsed_time is in ms
        return Generation(
            tokens=steps,
            peak_mem_bytes=self.ops.peak_memory_bytes(),
            peak_mem_kind=self.ops.peak_memory_kind,
            device_times_s=device_times,
            ran_ahead=ahead,
            host_waits_s=waits,
        )

    def synchronize(self) -> None:
        self.ops.synchronize()

    def teacher_forced_logits(self, handle: LoadedModel, ids: torch.Tensor, prompt_tokens: int) -> torch.Tensor:
        """Logits at each position after the prompt, fed `ids` through this device's own
        prefill and decode path, compiled or eager as the case runs (the correctness gate's input)."""
        ids = ids.to(self.ops.device)
        if handle.exec_path == "compiled":
            if handle.decoder is None or ids.shape[1] > handle.decoder.max_len:  # else: what the case built
                # rebuilt longer for the gate: with a compiled prefill only where the case had one
                tried = handle.decoder is not None and handle.decoder.prefill_tried
                self.prepare(handle, 1, ids.shape[1], prompt_tokens if tried else 1)
            return torch_loop.teacher_forced_logits_static(handle.decoder, ids, prompt_tokens)
        return torch_loop.teacher_forced_logits(handle.module, ids, prompt_tokens)

    def ceilings(self, dtype: str, **rounds):
        """This device's measured copy bandwidth and matmul rate in `dtype` (chipbench.backends.ceilings;
        `rounds`: its window and repeats)."""
        from chipbench.backends.ceilings import Ceilings, measure

        if not distributed.is_parallel():
            return measure(self.ops.device, dtype, self.ops.synchronize, **rounds)
        # A split case's decode step reads every rank's shard at once, so its roofline is every
        # rank's ceilings measured at once, summed: on one host the ranks contend for its memory as
        # the case does; on separate GPUs each adds its own. Every rank must come here (lockstep).
        distributed.init(self.ops.device)
        distributed.barrier()
        try:
            mine = measure(self.ops.device, dtype, self.ops.synchronize, **rounds)
        except Exception as e:  # told to every rank, so that none waits in the gather below
            mine = f"rank {distributed.rank()}: {type(e).__name__}: {e}"
        parts = distributed.gather(mine)
        failed = [p for p in parts if isinstance(p, str)]
        if failed:
            raise RuntimeError("a rank could not measure its ceilings: " + "; ".join(failed))
        return Ceilings.summed(parts)

    def close(self, handle: LoadedModel | None) -> None:
        if handle is not None:
            handle.module = handle.decoder = None

        gc.collect()
        if self.ops.device.startswith("cuda") and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
