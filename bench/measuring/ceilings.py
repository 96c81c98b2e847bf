"""Measured ceilings: what this device actually sustains, in the benchmark dtype.

Two numbers, as shared/reference/chips.md prescribes: memory bandwidth, the better of a large
device-to-device copy (bytes read plus bytes written, over the time) and a large fp32 sum (bytes
read over the time: what a decode step mostly does; a copy understates it where writes cost a
read first), and a large matrix product (2 * n^3 FLOPs over the time). Each is the best of its
repeats: a ceiling is what the device can do, and on a shared machine the median run already
carries its neighbours' share.
They are the roofline of a device with no spec row, and a check on the spec sheet of one with
a row: a device that beats its sheet, or misses it badly, is flagged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from models.build import parse_dtype

BEATS = 1.05  # a measured ceiling above 105% of the sheet: wrong row, or a wrong sheet
MISSES = 0.5  # below 50%: the sheet is not what this device delivers


@dataclass(frozen=True)
class Ceilings:
    device: str
    dtype: str
    bandwidth_gb_per_s: float  # the better of copy ((read + written) bytes / s) and read (sum), 10^9
    tflops: float  # matmul, 10^12 FLOP/s
    copy_bytes: int
    matmul_n: int


STRETCH_S = 0.02  # each timed stretch lasts at least this long (see _timed)
MAX_CALLS = 100


def _timed(fn, sync, repeats: int) -> float:
    """The best time of one call over `repeats` timed stretches, after one warmup. A stretch queues
    enough calls back to back to last STRETCH_S before its one synchronisation: a 2 GiB copy takes
    about a millisecond on an HBM GPU, and the launch and the wait (tens of microseconds, paid once
    per stretch) would otherwise be a few percent of the bandwidth, which then flatters every MBU
    measured against it. On a CPU one call already lasts longer than a stretch."""
    fn()
    sync()  # warm up: allocation, kernel selection, clocks
    start = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - start
    calls = max(1, min(MAX_CALLS, math.ceil(STRETCH_S / max(once, 1e-9))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def _copy_time(n_elems: int, dtype, device: str, sync, repeats: int, gen) -> float:
    src = torch.empty(n_elems, dtype=dtype, device=device)
    src.fill_(0.5 + float(torch.rand(1, generator=gen)))  # on the device; not zeros: zeros can run faster
    dst = torch.empty_like(src)
    return _timed(lambda: dst.copy_(src), sync, repeats)  # both buffers freed on return


def _read_time(mib: int, device: str, sync, repeats: int) -> tuple[int, float]:
    """A read-only pass: the sum of a large fp32 tensor (vectorised adds keep it memory-bound)."""
    src = torch.full((mib * 2**20 // 4,), 0.25, dtype=torch.float32, device=device)
    return src.numel() * 4, _timed(lambda: src.sum(), sync, repeats)


def measure(device: str, dtype: str, sync, copy_mib: int | None = None, matmul_n: int | None = None,
            repeats: int = 5) -> Ceilings:
    on_cpu = device == "cpu"
    copy_mib = copy_mib or (512 if on_cpu else 2048)
    matmul_n = matmul_n or (2048 if on_cpu else 8192)
    t = parse_dtype(dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    n_elems = copy_mib * 2**20 // t.itemsize
    copy_s = _copy_time(n_elems, t, device, sync, repeats, gen)
    read_bytes, read_s = _read_time(copy_mib, device, sync, repeats)
    bandwidth = max(2 * n_elems * t.itemsize / copy_s, read_bytes / read_s)
    a = torch.randn(matmul_n, matmul_n, generator=gen).to(device=device, dtype=t)
    b = torch.randn(matmul_n, matmul_n, generator=gen).to(device=device, dtype=t)
    mm_s = _timed(lambda: a @ b, sync, repeats)
    return Ceilings(device, dtype, bandwidth_gb_per_s=bandwidth / 1e9,
                    tflops=2 * matmul_n**3 / mm_s / 1e12, copy_bytes=2 * n_elems * t.itemsize,
                    matmul_n=matmul_n)


def check_spec(ceilings: Ceilings, chip) -> str | None:
    """A sentence when the measured ceilings contradict the spec row, else None."""
    notes = []
    pairs = (("memory bandwidth", ceilings.bandwidth_gb_per_s, chip.bandwidth_gb_per_s, "GB/s"),
             (f"{ceilings.dtype} matmul", ceilings.tflops,
              (chip.peak_flops(ceilings.dtype) or 0) / 1e12 or None, "TFLOP/s"))
    for what, measured, spec, unit in pairs:
        if not spec:
            continue
        if measured > BEATS * spec:
            notes.append(f"measured {what} {measured:.0f} {unit} beats the {chip.name} sheet's {spec:g}: "
                         "wrong spec row or a wrong sheet")
        elif measured < MISSES * spec:
            notes.append(f"measured {what} {measured:.0f} {unit} is under half the {chip.name} sheet's {spec:g}")
    return "; ".join(notes) or None
