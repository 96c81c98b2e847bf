"""The CUDA adapter: NVIDIA GPUs, and any stack that presents itself as torch.cuda (ROCm does).

NVML is optional: driver facts come from nvidia-ml-py when it is installed and working, and
are left empty otherwise (AMD, vendor stacks, containers without the library).
"""

from __future__ import annotations

import torch

from chipbench.backends.base import DeviceInfo, Probe
from chipbench.backends.sensors import AmdSmi, Nvml, Rapl
from chipbench.backends.torch_device import DeviceOps, TorchBackend


def _probe() -> Probe:
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return Probe.no(f"this torch build ({torch.__version__}) has no CUDA or ROCm support")
    if not torch.cuda.is_available():
        return Probe.no("torch has CUDA support but sees no CUDA device")
    return Probe.ok()


def _runtime() -> str:
    hip = getattr(torch.version, "hip", None)
    return f"rocm {hip}" if hip else f"cuda {torch.version.cuda}"


def _uuid(index: int) -> str | None:
    """The device's UUID as torch gives it (bare hex; NVML adds GPU- or MIG-), where it has one."""
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return str(uuid) if uuid is not None else None


def _nvml_driver(index: int) -> tuple[str | None, dict]:
    """The driver version (machine-wide) and this card's power limit and top clocks, each where NVML
    can read it; nothing when nvidia-ml-py or NVML is missing."""
    try:
        import pynvml

        from chipbench.backends.sensors import nvml_handle

        pynvml.nvmlInit()
    except Exception:
        return None, {}
    extra: dict = {}
    try:
        driver = _try(pynvml.nvmlSystemGetDriverVersion)
        try:
            handle = nvml_handle(pynvml, index, _uuid(index))
        except Exception:  # which card is ours is unknown: no per-card facts rather than another's
            return driver, extra
        facts = {
            "power_limit_w": lambda: pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000,
            "sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "mem_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM),
        }
        for name, read in facts.items():
            value = _try(read)
            if value is not None:
                extra[name] = value
        return driver, extra
    finally:
        pynvml.nvmlShutdown()


def _try(read):
    try:
        return read()
    except Exception:  # not supported on this card (a MIG slice has no power limit of its own)
        return None


def _info() -> DeviceInfo:
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    driver, extra = _nvml_driver(index)
    extra.update({"compute_capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count})
    return DeviceInfo(
        backend="cuda",
        kind="cuda",
        device_name=props.name,
        device_count=torch.cuda.device_count(),
        memory_bytes=props.total_memory,
        driver=driver,
        runtime=_runtime(),
        extra=extra,
    )


def _dtypes() -> tuple[str, ...]:
    return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")


def create() -> TorchBackend:
    ops = DeviceOps(
        device="cuda",  # the current device: cuda:0, or cuda:LOCAL_RANK under torchrun (distributed.init sets it)
        probe=_probe,
        info=_info,
        dtypes=_dtypes,
        synchronize=torch.cuda.synchronize,
        reset_peak_memory=torch.cuda.reset_peak_memory_stats,
        peak_memory_bytes=torch.cuda.max_memory_allocated,
        peak_memory_kind="device_allocated_peak",
        telemetry=_telemetry,
        event=lambda: torch.cuda.Event(enable_timing=True),
    )
    return TorchBackend("cuda", ops)


def _telemetry() -> list:
    """NVML on NVIDIA, AMD SMI on ROCm; the host's RAPL beside either (host_energy_j)."""
    index = torch.cuda.current_device()
    host = Rapl("host_energy_j", Rapl.HOST)
    if getattr(torch.version, "hip", None):
        return [AmdSmi(index, _bdf(index)), host]
    return [Nvml(index, _uuid(index)), host]


def _bdf(index: int) -> str | None:
    """The device's PCI address as domain:bus:device, where torch reports it."""
    props = torch.cuda.get_device_properties(index)
    parts = [getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device")]
    return None if None in parts else f"{parts[0]:04x}:{parts[1]:02x}:{parts[2]:02x}"
