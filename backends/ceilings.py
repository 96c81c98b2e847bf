"""Measured ceilings: what this device actually sustains, in the benchmark dtype.

Two numbers, as shared/reference/chips.md prescribes: memory bandwidth, the better of a large
device-to-device copy (bytes read plus bytes written, over the time) and a large fp32 sum (bytes
read over the time: what a decode step mostly does; a copy understates it where writes cost a
read first), and a large matrix product (2 * n^3 FLOPs over the time). Each is the best of its
samples: a ceiling is what the device can do, and on a shared machine the median run already
carries its neighbours' share.

The samples are taken in rounds (a copy, a sum and a matmul, each timed over a short stretch) for
a window of seconds, not in one burst: a shared VM's rates move in spells of seconds (this
project's 2-core Xeon VM ran its bf16 matmul at 1.56, then 0.63 TFLOP/s for four seconds, then
1.54 again), and a ceiling taken in a tenth of a second can land in a slow spell, which then
flatters every utilisation measured against it. The median of the rounds is kept beside the best,
so a reader sees how steady the device was while it was measured.

The buffers must outsize the caches, or the bandwidth is the cache's: 2 GiB on an accelerator
(an H100's L2 is 50 MB, an MI300X's Infinity Cache 256 MB); on a CPU 512 MiB, or four times the
last-level cache where that is larger (an EPYC 9684X holds 1152 MB of L3 per socket, and a sum
spread over its cores reads each core complex's share from its own 96 MB).

The matrix product is the one a decoder's projections make, `linear(x, w)` (x @ w.T): on this
project's AMD EPYC VM (AVX2, no AVX-512) torch's bf16 `a @ b` with both operands row-major runs at
1.0-1.2 GFLOP/s on one core, 9-10 GFLOP/s with the second transposed as nn.Linear's weight is, so
the plain product understated the rate the model's own layers reach ninefold. Its size is the
largest of 256, 512, ... up to 2048 on a CPU (8192 on an accelerator) whose call stays under
MATMUL_CALL_S: where a dtype has no fast path, a fixed 2048 would cost minutes per ceiling and
measure no higher rate (this project's 2-core AMD EPYC VM, AVX2 without AVX-512, ran a 2048 row-
major bf16 `a @ b` in 58 s, 0.3 GFLOP/s on two cores, against 1.3 GFLOP/s at 512; fp32 ran at 98
GFLOP/s). The size taken is recorded (matmul_n).

A 16-bit float product can always be computed as an fp32 one: its values widen to fp32 exactly,
and fp32 is what a bf16 or fp16 product accumulates in. So the matmul ceiling of bf16 and fp16 is
the better of the dtype's own product and fp32's, and the record says which set it
(ceiling_matmul_dtype) beside the dtype's own rate (ceiling_tflops_in_dtype). Where a chip runs
16-bit products natively (tensor cores, AMX, AVX-512 BF16) its own product wins; where it does not,
the dtype's own product measures a software fallback, not the chip: on this project's AVX2 EPYC VM
torch's bf16 linear ran at 21 GFLOP/s and fp32's at 156-183, and llama.cpp, which widens bf16 to fp32
itself, prefilled qwen3-0.6b at 105 GFLOP/s, which read as 506% of a bf16-only ceiling
(results/measurements/2026-12-06-cpu-avx2-ceilings/).

They are the roofline of a device with no spec row, and a check on the spec sheet of one with
a row (chipbench.judging.roofline.check_spec): a device that beats its sheet, or misses it badly,
is flagged.
"""

from __future__ import annotations

import glob
import math
import os
import statistics
import time
from dataclasses import dataclass

import torch

from chipbench.errors import UsageError
from chipbench.models.build import parse_dtype

UNSTEADY = 1.25  # best over median of the rounds above this: the device's rate moved while measured

WINDOW_ENV = "CHIPBENCH_CEILING_WINDOW_S"
CPU_WINDOW_S = 3.0  # a host's cores and memory are shared with its neighbours: spells of seconds
DEVICE_WINDOW_S = 1.0  # an accelerator's rates hold steady; the rounds still cover its clock ramp


CPU_COPY_MIB = 512
LLC_TIMES = 4  # a CPU buffer at least this many times the last-level cache


def last_level_cache_bytes(root: str = "/sys/devices/system/cpu") -> int | None:
    """The host's last-level cache in all, each shared instance counted once (sysfs); None unknown."""

    def read(index: str, name: str) -> str:
        with open(os.path.join(index, name)) as f:
            return f.read().strip()

    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    caches: dict[tuple[int, str], int] = {}  # (level, the CPUs sharing it) -> bytes: each instance once
    for index in glob.glob(os.path.join(root, "cpu[0-9]*", "cache", "index[0-9]*")):
        try:
            if read(index, "type") == "Instruction":
                continue
            size = read(index, "size")
            nbytes = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
            caches[(int(read(index, "level")), read(index, "shared_cpu_list"))] = nbytes
        except (OSError, ValueError, IndexError):
            continue
    if not caches:
        return None
    top = max(level for level, _ in caches)
    return sum(n for (level, _), n in caches.items() if level == top)


def cpu_copy_mib(llc_bytes: int | None, ram_bytes: int | None) -> int:
    """The CPU probe's buffer: CPU_COPY_MIB, or LLC_TIMES the last-level cache where that is larger,
    within an eighth of the host's memory (the copy holds two buffers)."""
    mib = max(CPU_COPY_MIB, math.ceil(LLC_TIMES * (llc_bytes or 0) / 2**20))
    return min(mib, max(CPU_COPY_MIB, (ram_bytes or 0) // 8 // 2**20))


@dataclass(frozen=True)
class Ceilings:
    device: str
    dtype: str
    bandwidth_gb_per_s: float  # the better of copy ((read + written) bytes / s) and read (sum), 10^9
    tflops: float  # matmul, 10^12 FLOP/s
    copy_bytes: int
    matmul_n: int
    bandwidth_gb_per_s_median: float | None = None  # the median round's, beside the best
    tflops_median: float | None = None
    window_s: float | None = None  # how long the rounds took
    rounds: int | None = None
    ranks: int = 1  # under torchrun: the ranks whose ceilings, measured at once, are summed here
    matmul_dtype: str | None = None  # the product that set tflops: `dtype`'s own, or fp32's where faster (WIDER)
    tflops_in_dtype: float | None = None  # `dtype`'s own product's best rate, beside tflops
    kept_from: str | None = None  # when these were measured, if an earlier run's (chipbench.session)
    revalidation: float | None = None  # kept ones: this run's quick rounds over them, the lower of the two

    @classmethod
    def summed(cls, parts: list["Ceilings"]) -> "Ceilings":
        """Every rank's ceilings, measured at the same time, as one: what the ranks of a split case
        can move and compute together (on one host they contend for its memory as the case does;
        on separate GPUs each adds its own). The fewest rounds and the longest window are kept."""
        first = parts[0]

        def total(name):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else sum(values)

        return cls(
            first.device,
            first.dtype,
            bandwidth_gb_per_s=total("bandwidth_gb_per_s"),
            tflops=total("tflops"),
            copy_bytes=first.copy_bytes,
            matmul_n=first.matmul_n,
            bandwidth_gb_per_s_median=total("bandwidth_gb_per_s_median"),
            tflops_median=total("tflops_median"),
            window_s=max((p.window_s for p in parts if p.window_s is not None), default=None),
            rounds=min((p.rounds for p in parts if p.rounds is not None), default=None),
            ranks=sum(p.ranks for p in parts),
            matmul_dtype=first.matmul_dtype,
            tflops_in_dtype=total("tflops_in_dtype"),
        )

    def unsteady(self) -> list[str]:
        """A phrase per ceiling whose best round beat its median round by more than UNSTEADY."""
        out = []
        for what, best, median, unit in (
            ("memory bandwidth", self.bandwidth_gb_per_s, self.bandwidth_gb_per_s_median, "GB/s"),
            (f"{self.matmul_dtype or self.dtype} matmul", self.tflops, self.tflops_median, "TFLOP/s"),
        ):
            if median and best > UNSTEADY * median:
                over = (
                    " over"
                    + (f" {self.rounds} rounds" if self.rounds else "")
                    + (f" in {self.window_s:.1f} s" if self.window_s else "")
                )
                out.append(f"{what} best {best:.3g}, median {median:.3g} {unit}" + (over if over != " over" else ""))
        return out


def window_s(device: str, value: float | str | None = None) -> float:
    """How long the ceilings' rounds run: `value` when given, else $CHIPBENCH_CEILING_WINDOW_S, else
    CPU_WINDOW_S on the host and DEVICE_WINDOW_S on an accelerator. 0 takes the minimum rounds only,
    and none beside each case (chipbench.measuring.runner.beside_ceilings)."""
    raw = value if value is not None else os.environ.get(WINDOW_ENV) or None
    if raw is None:
        return CPU_WINDOW_S if device == "cpu" else DEVICE_WINDOW_S
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UsageError(f"the ceilings' window ({WINDOW_ENV} or --ceiling-window) must be seconds >= 0, got {raw!r}")
    return seconds


def use_window(value: float | None) -> None:
    """Sets this process's window (an option's value; None keeps the environment's or the default),
    through the environment so that every backend's measure() and any child process see it."""
    if value is not None:
        os.environ[WINDOW_ENV] = repr(window_s("cpu", value))
    else:
        window_s("cpu")  # a bad $CHIPBENCH_CEILING_WINDOW_S is refused now, not swallowed mid-run


BESIDE_ROUNDS = 3  # the rounds measured right after each case's timed rounds (chipbench.measuring.runner)


WIDER = {"bf16": "fp32", "fp16": "fp32"}  # a product of these dtypes is exact in the wider one (see above)
MATMUL_SMALLEST = 256
MATMUL_CALL_S = 0.5  # the ceilings' matmul doubles its size while the next size's call (8x) stays under this
linear = torch.nn.functional.linear  # x @ w.T: a decoder's every projection has this layout


def matmul_size(device: str, dtype: torch.dtype, sync, largest: int, call_s: float = MATMUL_CALL_S) -> int:
    """The ceilings' matmul size: from MATMUL_SMALLEST, doubled while the next size's call (8x the
    work) would take under `call_s`, up to `largest`. A slow path stops early: its rate does not
    rise with the size, only its cost."""
    n = min(MATMUL_SMALLEST, largest)
    gen = torch.Generator(device="cpu").manual_seed(0)
    while n < largest:
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        linear(a, a)
        sync()  # warm up: kernel selection, packing buffers
        start = time.perf_counter()
        linear(a, a)
        sync()
        if 8 * (time.perf_counter() - start) >= call_s:
            break
        n *= 2
    return min(n, largest)


STRETCH_S = 0.02  # each timed stretch lasts at least this long (see _Probe)
MAX_CALLS = 100
FILL_BITS = 0x3F003F00  # as fp32 0.50096; each 16-bit half 0x3F00 is bf16 0.5, fp16 1.75: no zeros, no denormals


class _Probe:
    """One kind of call, timed in stretches. A stretch queues enough calls back to back to last
    STRETCH_S before its one synchronisation: a 2 GiB copy takes about a millisecond on an HBM GPU,
    and the launch and the wait (tens of microseconds, paid once per stretch) would otherwise be a
    few percent of the bandwidth, which then flatters every MBU measured against it. On a CPU one
    call already lasts longer than a stretch."""

    def __init__(self, fn, sync):
        self.fn, self.sync = fn, sync
        fn()
        sync()  # warm up: allocation, kernel selection, clocks
        start = time.perf_counter()
        fn()
        sync()
        once = time.perf_counter() - start
        self.calls = max(1, min(MAX_CALLS, math.ceil(STRETCH_S / max(once, 1e-9))))

    def time(self) -> float:
        """Seconds per call over one stretch."""
        start = time.perf_counter()
        for _ in range(self.calls):
            self.fn()
        self.sync()
        return (time.perf_counter() - start) / self.calls


def measure(
    device: str,
    dtype: str,
    sync,
    copy_mib: int | None = None,
    matmul_n: int | None = None,
    repeats: int = 5,
    window: float | None = None,
) -> Ceilings:
    """The device's ceilings from rounds of a copy, a read and a matmul: at least `repeats` rounds,
    and rounds until `window` seconds have passed (window_s() when None)."""
    window = window_s(device, window)
    on_cpu = device == "cpu"
    if not copy_mib and on_cpu:
        import psutil

        copy_mib = cpu_copy_mib(last_level_cache_bytes(), psutil.virtual_memory().total)
    copy_mib = copy_mib or 2048
    t = parse_dtype(dtype)
    largest = 2048 if on_cpu else 8192
    sizes = {dtype: matmul_n or matmul_size(device, t, sync, largest)}
    if dtype in WIDER:
        wide = WIDER[dtype]
        sizes[wide] = matmul_n or matmul_size(device, parse_dtype(wide), sync, largest)
    nbytes = copy_mib * 2**20
    words = torch.empty(nbytes // 4, dtype=torch.int32, device=device)
    words.fill_(FILL_BITS)  # on the device; one buffer is the copy's source and the sum's input
    src, read = words.view(t), words.view(torch.float32)
    dst = torch.empty_like(src)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def product(name: str, n: int) -> _Probe:
        a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=parse_dtype(name)) for _ in range(2))
        return _Probe(lambda: linear(a, b), sync)

    memory = (_Probe(lambda: dst.copy_(src), sync), _Probe(lambda: read.sum(), sync))
    products = {name: product(name, n) for name, n in sizes.items()}
    bandwidth = []  # per round: bytes/s (the better of copy and read)
    rates: dict[str, list[float]] = {name: [] for name in sizes}  # per round and product: FLOP/s
    start = time.perf_counter()
    while len(bandwidth) < repeats or time.perf_counter() - start < window:
        copy_s, read_s = (p.time() for p in memory)
        bandwidth.append(max(2 * nbytes / copy_s, nbytes / read_s))
        for name, p in products.items():
            rates[name].append(2 * sizes[name] ** 3 / p.time())
    best = max(rates, key=lambda name: max(rates[name]))
    flops = [max(r) for r in zip(*rates.values())]  # each round's better product
    return Ceilings(
        device,
        dtype,
        bandwidth_gb_per_s=max(bandwidth) / 1e9,
        tflops=max(flops) / 1e12,
        copy_bytes=2 * nbytes,
        matmul_n=sizes[best],
        bandwidth_gb_per_s_median=statistics.median(bandwidth) / 1e9,
        tflops_median=statistics.median(flops) / 1e12,
        window_s=time.perf_counter() - start,
        rounds=len(bandwidth),
        matmul_dtype=best,
        tflops_in_dtype=max(rates[dtype]) / 1e12,
    )
