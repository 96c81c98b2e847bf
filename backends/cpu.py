"""The CPU adapter: PyTorch on the host's cores."""

from __future__ import annotations

import functools
import os
import platform
import resource
from pathlib import Path

import psutil
import torch

from chipbench.backends.base import DeviceInfo, Probe
from chipbench.backends.sensors import CpuClock, Rapl
from chipbench.backends.torch_device import DeviceOps, TorchBackend

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# Instruction-set extensions a matmul or an attention kernel may use, as the kernel names them (x86,
# then Arm): two CPUs with one marketing name ("Intel(R) Xeon(R) Processor" on a VM) can differ in
# them, and a bf16 matmul with AMX runs several times faster than without.
MATMUL_ISA = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
    "sme",
)


@functools.cache
def _cpu_info() -> dict:
    """py-cpuinfo's facts, once per process: it starts a subprocess each call (~0.2 s)."""
    try:
        import cpuinfo

        return cpuinfo.get_cpu_info() or {}
    except Exception:
        return {}


def cpu_model() -> str:
    """The CPU's marketing name (py-cpuinfo), falling back to the platform's processor string."""
    return _cpu_info().get("brand_raw") or platform.processor() or platform.machine()


def matmul_isa() -> str | None:
    """The MATMUL_ISA extensions this CPU reports, space-separated in that order; None where its
    flags cannot be read."""
    flags = set(_cpu_info().get("flags") or ())
    return " ".join(f for f in MATMUL_ISA if f in flags) if flags else None


# bf16 matmul in hardware: x86's AVX-512 BF16 and AMX, Arm's BF16 extension (the "bf16" flag)
BF16_MATMUL = ("avx512_bf16", "amx_bf16", "bf16")


def default_dtype(isa: str | None = None) -> tuple[str, str] | None:
    """fp32 and why on a CPU whose flags show no bf16 matmul instructions: torch's bf16 matmul is a
    software conversion there, and the suite would time that code, not the chip (on this project's
    AVX2 EPYC its bf16 matmul ceiling was 0.021 TFLOP/s against 0.187 in fp32, and one bf16 pp512
    round of qwen3-0.6b took 22 s). None (the suite's bf16) where bf16 is in hardware or the flags
    cannot be read."""
    isa = matmul_isa() if isa is None else isa
    if not isa or set(isa.split()) & set(BF16_MATMUL):
        return None
    return (
        "fp32",
        f"fp32 by default: this CPU reports no bf16 matmul instructions ({', '.join(BF16_MATMUL)}; it has: "
        f"{isa}), so torch's bf16 here is a software conversion; --dtype bf16 times it anyway",
    )


def _reset_rss_peak() -> None:
    # Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM).
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def _rss_peak_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # lifetime peak on Linux


def _capability() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # an older torch, or a build without it
        return None


def _info() -> DeviceInfo:
    return DeviceInfo(
        backend="cpu",
        kind="cpu",
        device_name=cpu_model(),
        device_count=1,
        memory_bytes=psutil.virtual_memory().total,
        driver=None,
        runtime=f"torch {torch.__version__}",
        # core and thread counts are in the host facts; thp_alloc: torch's CPU tensors on huge pages
        # isa: the matmul extensions the CPU reports; cpu_capability: the vector code ATen dispatches to
        extra={
            "arch": platform.machine(),
            "thp_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "0") == "1",
            "isa": matmul_isa(),
            "cpu_capability": _capability(),
        },
    )


def create() -> TorchBackend:
    ops = DeviceOps(
        device="cpu",
        probe=Probe.ok,
        info=_info,
        dtypes=lambda: ("fp32", "bf16", "fp16"),
        synchronize=lambda: None,  # CPU ops run synchronously in the calling thread
        reset_peak_memory=_reset_rss_peak,
        peak_memory_bytes=_rss_peak_bytes,
        peak_memory_kind="process_rss_peak",
        telemetry=_telemetry,
        compile_refuses=compile_refuses,
        default_dtype=default_dtype,
    )
    return TorchBackend("cpu", ops)


# torch 2.11's and 2.12's inductor generate CPU code for the DeltaNet hybrids' decode step (Qwen3-Next,
# Qwen3.5: the linear-attention layers through transformers' torch fallbacks) that writes past a heap
# buffer: glibc aborts ("corrupted size vs. prev_size", "invalid fastbin entry") or the process
# segfaults, and every case after it is lost with it. Seen here on all three tiny hybrids, fp32 and
# bf16, with both releases, and gone with vectorisation off (cpp.simdlen=1), so it is the vectorised
# code; torch 2.13 compiles and runs the same step with eager's tokens. Releases before 2.11 were not
# tried, so they are kept out too. Dense and MoE families compile on all of these.
HYBRID_COMPILE_MIN_TORCH = (2, 13)


def compile_refuses(spec, version: str | None = None) -> str | None:
    """Why `spec` runs eager in compiled mode on the CPU with this torch; None: it compiles."""
    from torch.torch_version import TorchVersion

    version = TorchVersion(version or torch.__version__)
    if spec.is_hybrid and version < HYBRID_COMPILE_MIN_TORCH:
        need = ".".join(map(str, HYBRID_COMPILE_MIN_TORCH))
        return (
            f"torch {version}'s inductor corrupts memory in the CPU code of {spec.family}'s linear-attention "
            f"decode step (a process abort; seen with torch 2.11 and 2.12), so it is not compiled on torch "
            f"below {need}"
        )
    return None


def _telemetry() -> list:
    return [CpuClock(), Rapl(), Rapl("host_energy_j", Rapl.PSYS)]
