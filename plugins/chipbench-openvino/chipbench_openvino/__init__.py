"""Intel OpenVINO as a chipbench backend, shipped as its own distribution (chipbench-openvino).

It uses chipbench's public plugin contract only:
- `chipbench.backends.base`: the Probe, DeviceInfo and Generation types a backend returns;
- `chipbench.errors.UsageError`: bad input, said in one line;
- `chipbench.models.build.build_random`: the harness's seeded weights, so the correctness gate can
  check this runtime against the CPU fp32 reference of the same weights;
- `chipbench.backends.sensors`: the CPU's clock and RAPL meters, for the record's telemetry;
- `chipbench.stash.cache_root`: where exported models are kept.

The model is the harness's own build, exported once with OpenVINO's converter
(chipbench_openvino.export): one graph that takes the new tokens and their positions, keeps every
layer's key and value cache as OpenVINO state between calls, and returns the logits. Each round
starts from empty caches; prefill runs it on the prompt, each decode step on one token. The harness owns the clock:
a step's tokens are handed over the moment OpenVINO's synchronous infer() returns them, so each
timestamp covers the step's whole work. The exported model is cached by the weights' digest, the
OpenVINO version and this plugin's export code.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import psutil

from chipbench.backends.base import DeviceInfo, Generation, Probe
from chipbench.errors import UsageError

INSTALL_HINT = "openvino is not installed: pip install ./plugins/chipbench-openvino (it brings openvino)"
# fp32, bf16: weights and inference in that precision. The compressed ones are NNCF's weight
# compression modes (chipbench_openvino.export): the weights in int8 or int4, the products computed
# in the device's inference precision (recorded), offered where NNCF is installed.
FLOATS = ("fp32", "bf16")
COMPRESSIONS = ("int8_sym", "int8_asym", "int4_sym", "int4_asym")
COMPRESS_HINT = "weight compression needs NNCF: pip install './plugins/chipbench-openvino[compress]'"
_STATUS = Path("/proc/self/status")


@dataclass
class OpenVinoModel:
    compiled: object  # openvino.CompiledModel
    request: object  # its InferRequest
    spec: object  # the chipbench model spec
    dtype: str
    weights: str
    build_time_s: float
    exec_path: str
    layers: int
    kv_heads: int
    head_dim: int
    kv_dtype: object  # numpy dtype of the caches
    engine: str = "openvino"
    engine_version: str | None = None
    linear_attn_path: str | None = None
    exec_note: str | None = None
    weights_digest: str | None = None
    file_bytes: int | None = None  # compressed: the IR's weight file, scales and zero points included
    kv_cache_dtype: str | None = None  # what OpenVINO keeps the caches in, read from its runtime graph
    prefix_caching = "none: every round starts from empty key and value caches"


def _version() -> str | None:
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


class OpenVinoBackend:
    name = "openvino"
    engine = "openvino"
    prefix_caching = "none: every round starts from empty key and value caches"

    def __init__(self, device: str = "CPU"):
        self.device = device

    @property
    def engine_version(self) -> str | None:
        return _version()

    def probe(self) -> Probe:
        if importlib.util.find_spec("openvino") is None:
            return Probe.no(INSTALL_HINT)
        try:
            import openvino as ov

            devices = ov.Core().available_devices
        except Exception as e:  # a probe never raises
            return Probe.no(f"OpenVINO cannot start: {type(e).__name__}: {e}")
        if self.device not in devices:
            return Probe.no(
                f"OpenVINO has no {self.device} device here (it has: {', '.join(devices) or 'none'}; "
                f"${DEVICE_ENV} picks one)"
            )
        return Probe.ok()

    def info(self) -> DeviceInfo:
        import openvino as ov

        core = ov.Core()
        name = str(core.get_property(self.device, "FULL_DEVICE_NAME")).strip()
        caps = core.get_property(self.device, "OPTIMIZATION_CAPABILITIES")
        return DeviceInfo(
            backend=self.name,
            kind="cpu" if self.device == "CPU" else self.device.split(".")[0].lower(),  # GPU.1: gpu
            device_name=name,
            memory_bytes=psutil.virtual_memory().total if self.device == "CPU" else None,
            runtime=f"openvino {_version()} {self.device}",
            extra={"openvino_capabilities": ", ".join(map(str, caps))},
        )

    def supported_dtypes(self) -> tuple[str, ...]:
        return FLOATS + (COMPRESSIONS if importlib.util.find_spec("nncf") is not None else ())

    def supported_modes(self) -> tuple[str, ...]:
        return ("eager",)  # OpenVINO compiles its own graph; there is no eager/compiled choice to make

    def telemetry_sources(self) -> list:
        from chipbench.backends.sensors import CpuClock, Rapl

        return [CpuClock(), Rapl(), Rapl("host_energy_j", Rapl.PSYS)] if self.device == "CPU" else []

    def ceilings(self, dtype: str, **rounds):
        """The CPU's measured copy bandwidth and matmul rate, the roofline's yardstick: the same
        device OpenVINO runs on, measured by chipbench's own CPU probe, its matmul in the precision
        the products run in (a compressed dtype's: bf16 where the CPU has it, as OpenVINO chooses)."""
        if self.device != "CPU":
            return None
        from chipbench.backends.ceilings import measure

        return measure("cpu", self.ceiling_dtype(dtype), lambda: None, **rounds)

    def ceiling_dtype(self, dtype: str) -> str:
        """The precision a case's products run in: its own for fp32 and bf16; a compressed dtype's
        is OpenVINO's inference precision on this CPU (bf16 where it has it), so its cases share that
        yardstick. Where OpenVINO quantises activations on the fly, its products with compressed
        weights may run as int8 (VNNI, AMX): their MFU against this yardstick is then not a share
        of a bf16 peak, and chipbench flags it only past 200% (exec_path says when they are)."""
        if dtype in FLOATS:
            return dtype
        import openvino as ov

        caps = ov.Core().get_property(self.device, "OPTIMIZATION_CAPABILITIES")
        return "bf16" if "BF16" in map(str, caps) else "fp32"

    def load(self, spec, dtype: str, *, seed: int, weights_dir: str | None = None, layers: int | None = None):
        from chipbench_openvino.export import compile_model

        if weights_dir:
            raise UsageError("the OpenVINO plugin runs the harness's seeded weights only; --weights is not for it")
        if dtype not in self.supported_dtypes():
            hint = f" ({COMPRESS_HINT})" if dtype in COMPRESSIONS else ""
            raise UsageError(
                f"backend 'openvino' cannot run dtype {dtype!r}; it runs: {', '.join(self.supported_dtypes())}{hint}"
            )
        start = time.perf_counter()
        made = compile_model(spec, dtype, seed, layers, self.device)
        _reset_rss_peak()  # the export's torch model is gone: the peak from here on is the runtime's
        precision = _type_name(made.compiled.get_property("INFERENCE_PRECISION_HINT"))
        if made.compression:
            group = _property(made.compiled, "DYNAMIC_QUANTIZATION_GROUP_SIZE")  # a CPU property
            weights = f"{dtype} weights by NNCF {_nncf_version()} ({made.compression})"
            weights += f", activations quantised on the fly in groups of {group}" if group else ""
        else:
            weights = f"{dtype} weights uncompressed"
        return OpenVinoModel(
            compiled=made.compiled,
            request=made.compiled.create_infer_request(),
            spec=spec,
            dtype=dtype,
            weights=f"random(seed={seed}) exported to OpenVINO IR" + (" (cached)" if made.cached else ""),
            build_time_s=time.perf_counter() - start,
            exec_path=f"{self.device}, inference precision {precision}, {weights}, "
            f"key/value caches kept as {made.cache_dtype or 'unstated-precision'} OpenVINO state",
            layers=made.layers,
            kv_heads=spec.kv_heads,
            head_dim=spec.head_dim,
            kv_dtype=made.kv_dtype,
            engine_version=_version(),
            weights_digest=made.digest,
            file_bytes=made.weight_file_bytes if made.compression else None,
            kv_cache_dtype=made.cache_dtype,
        )

    def prompt(self, handle: OpenVinoModel, ids) -> np.ndarray:
        return np.asarray(ids.cpu().numpy() if hasattr(ids, "cpu") else ids, dtype=np.int64)

    def _start(self, handle: OpenVinoModel, batch: int) -> None:
        """Empty key and value caches for `batch` sequences: every round starts from nothing."""
        shape = (batch, handle.kv_heads, 0, handle.head_dim)
        for state in handle.request.query_state():
            state.state = ov_tensor(np.zeros(shape, handle.kv_dtype))

    def _step(self, handle: OpenVinoModel, ids: np.ndarray, start: int) -> np.ndarray:
        """One run of the graph on `ids` at positions from `start`: logits [batch, tokens, vocab]."""
        batch, n = ids.shape
        positions = np.ascontiguousarray(np.broadcast_to(np.arange(start, start + n, dtype=np.int64), (batch, n)))
        return handle.request.infer([np.ascontiguousarray(ids), positions])[0]

    def generate(self, handle: OpenVinoModel, prompt: np.ndarray, new_tokens: int, on_token) -> Generation:
        batch, length = prompt.shape
        _reset_rss_peak()  # each round's peak its own: not the load's, nor a correctness gate's between cases
        self._start(handle, batch)
        tokens = np.argmax(self._step(handle, prompt, 0)[:, -1], axis=-1).astype(np.int64)
        steps = [tokens.tolist()]
        on_token(steps[-1])
        for i in range(1, new_tokens):
            tokens = np.argmax(self._step(handle, tokens[:, None], length + i - 1)[:, -1], axis=-1).astype(np.int64)
            steps.append(tokens.tolist())
            on_token(steps[-1])
        return Generation(tokens=steps, peak_mem_bytes=_rss_peak(), peak_mem_kind="process_rss_peak")

    def reference_model(self, spec, dtype: str, seed: int, layers: int | None):
        """The correctness gate's floor for a compressed dtype: a torch fp32 model of the harness's
        build carrying the compressed weights as OpenVINO decompresses them (None for fp32 and bf16:
        the gate then uses torch's model in that dtype)."""
        if dtype not in COMPRESSIONS:
            return None
        import torch

        from chipbench.models.build import build_random
        from chipbench_openvino.export import decompressed, export

        weights = decompressed(export(spec, dtype, seed, layers).model)
        model = build_random(spec, torch.float32, "cpu", seed=seed, layers=layers).module
        params = dict(model.named_parameters())
        missing = set(weights) - set(params)
        if missing:
            raise RuntimeError(f"compressed weights with no torch parameter: {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, array in weights.items():
                params[name].copy_(torch.from_numpy(array).reshape(params[name].shape))
        return model

    def teacher_forced_logits(self, handle: OpenVinoModel, ids, prompt_tokens: int):
        """Logits [K, vocab] at each position after the prompt, feeding `ids` through the same prefill
        and cached decode steps generation uses (the correctness gate's input)."""
        import torch

        ids = self.prompt(handle, ids)
        self._start(handle, 1)
        rows = [self._step(handle, ids[:, :prompt_tokens], 0)[0, -1]]
        for i in range(prompt_tokens, ids.shape[1] - 1):
            rows.append(self._step(handle, ids[:, i : i + 1], i)[0, -1])
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def synchronize(self) -> None:
        pass  # infer() returns when its outputs are ready

    def close(self, handle: OpenVinoModel | None) -> None:
        if handle is not None:
            handle.request = handle.compiled = None


def _property(compiled, name: str):
    """A compiled model's property, or None where its device has no such property."""
    try:
        return compiled.get_property(name)
    except Exception:  # OpenVINO raises a RuntimeError for a property the device does not know
        return None


def _type_name(value) -> str:
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _nncf_version() -> str | None:
    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError:
        return None


def ov_tensor(array: np.ndarray):
    import openvino as ov

    return ov.Tensor(array)


def _reset_rss_peak() -> None:
    """Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_peak() -> int:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


DEVICE_ENV = "CHIPBENCH_OPENVINO_DEVICE"  # OpenVINO's device name: CPU (the default), GPU, GPU.1, NPU


def create() -> OpenVinoBackend:
    return OpenVinoBackend(os.environ.get(DEVICE_ENV, "").strip() or "CPU")
