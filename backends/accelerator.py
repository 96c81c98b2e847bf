"""The generic adapter: whatever device PyTorch exposes through `torch.accelerator`
(Intel xpu, Apple mps, Ascend npu via torch_npu, PrivateUse1 vendor devices).

Vendor device extensions register themselves with torch's backend autoloading, so this adapter
imports no vendor SDK. CUDA and ROCm devices are left to the `cuda` adapter, which knows more
about them.
"""

from __future__ import annotations

import torch

from chipbench.backends.base import DeviceInfo, Probe
from chipbench.backends.torch_device import DeviceOps, TorchBackend

_LEFT_TO_CUDA = {"cuda"}


def _device_type() -> str | None:
    acc = getattr(torch, "accelerator", None)
    if acc is None or not acc.is_available():
        return None
    return acc.current_accelerator().type


def _probe() -> Probe:
    if getattr(torch, "accelerator", None) is None:
        return Probe.no(f"torch {torch.__version__} has no torch.accelerator API (needs >= 2.6)")
    kind = _device_type()
    if kind is None:
        return Probe.no("torch.accelerator reports no accelerator on this machine")
    if kind in _LEFT_TO_CUDA:
        return Probe.no(f"the accelerator is {kind}: measured by the 'cuda' adapter instead")
    return Probe.ok()


def _memory(fn: str):
    def call(*args):
        f = getattr(torch.accelerator, fn, None)
        return f(*args) if f is not None else None

    return call


def _info() -> DeviceInfo:
    kind = _device_type() or "unknown"
    module = getattr(torch, kind, None)
    name = kind
    if module is not None and hasattr(module, "get_device_name"):
        try:
            name = module.get_device_name()
        except Exception:
            pass
    total = None
    try:
        total = torch.accelerator.get_memory_info()[1]
    except Exception:
        pass
    return DeviceInfo(
        backend="accelerator",
        kind=kind,
        device_name=name,
        device_count=torch.accelerator.device_count(),
        memory_bytes=total,
        runtime=f"torch {torch.__version__}",
    )


def create() -> TorchBackend:
    kind = None
    try:
        kind = _device_type()
    except Exception:
        pass
    ops = DeviceOps(
        device=kind or "cpu",  # only used once probe() said the accelerator is there
        probe=_probe,
        info=_info,
        dtypes=lambda: ("fp32", "bf16", "fp16"),
        synchronize=lambda: torch.accelerator.synchronize(),
        reset_peak_memory=lambda: _memory("reset_peak_memory_stats")(),
        peak_memory_bytes=lambda: _memory("max_memory_allocated")(),
        peak_memory_kind="device_allocated_peak",
        compile_unsupported="torch.compile is verified by chipbench on cpu and cuda only; this adapter "
        "runs other torch accelerators eager",
    )
    return TorchBackend("accelerator", ops)
