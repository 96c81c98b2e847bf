"""Where a compiled decode step's time goes: a device-side breakdown for issue 9's MBU gap.

Runs the harness's own compiled decode (torch_loop's static cache and compiled step, as a
`chipbench run --mode compiled` case does; by default tg128's shape, so that inductor's on-disk cache
of a run before it on the machine serves the compile) on a seeded random model, then:
- times the steps with the device's events, without the profiler (the step time), both as the
  harness calls the step (dynamo's guard check skipped) and with the check on every call,
  generations alternated;
- profiles the same generation (torch.profiler, CUDA activity) and sums the kernels per step: their
  count, their time, the time left over (the device idle between kernels, or waiting for the host),
  the matrix kernels' share and the bandwidth they reached on the step's weight bytes, and the top
  kernels by time.

Usage (on the GPU machine; on the CPU it runs, with CPU ops instead of kernels, as a smoke test):
    python .ci/decode_profile.py --model qwen3-8b --batch 1
Not a benchmark: one process, no ceilings, no gate. The figures go with a case's record.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chipbench.backends import torch_loop  # noqa: E402
from chipbench.models.build import build_random  # noqa: E402
from chipbench.models.counts import decode_step_bytes  # noqa: E402
from chipbench.models.zoo import get_model  # noqa: E402

MATRIX = re.compile(r"gemv|gemm|cutlass|xmma|sm90|nvjet|matmul|_mm_|splitk", re.I)


def kernel_time_us(e) -> float:
    """A profiler average's own device time in microseconds, whatever this torch calls it."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(e, name):
            return float(getattr(e, name))
    return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen3-8b")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--prompt", type=int, default=1)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--rounds", type=int, default=5, help="timed generations per way of calling the step")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    event = (lambda: torch.cuda.Event(enable_timing=True)) if cuda else None
    spec = get_model(args.model)
    model = build_random(spec, torch.bfloat16, device, seed=0).module
    tokens = args.prompt + args.steps
    # as the harness builds a tg case's decoder: a prefill compiled only for prompts longer than one token
    # (a cold dynamic-shape compile of qwen3-8b's prefill would take much of the profile's time cap)
    dec = torch_loop.build_static_decoder(model, args.batch, tokens, device, sync, prefill=args.prompt > 1)
    prompt = torch.randint(0, spec.vocab, (args.batch, args.prompt), device=device)
    print(
        f"{args.model} bf16 batch {args.batch} on {torch.cuda.get_device_name() if cuda else 'cpu'}: "
        f"compile {dec.compile_time_s:.1f} s, {dec.facts()}",
        flush=True,
    )

    def generate(mark=None):
        return torch_loop.generate_static(dec, prompt, args.steps, lambda t: None, mark, fence=event)

    def step_time() -> float:
        """The median decode step of one generation: device events on a GPU, the host clock on the CPU."""
        marks = []
        if cuda:
            start = event()
            start.record()
            generate(lambda: (marks.append(event()), marks[-1].record()))
            sync()
            times = [start.elapsed_time(e) / 1e3 for e in marks]
            return statistics.median(b - a for a, b in zip(times[1:], times[2:]))
        import time

        t = time.perf_counter()
        generate()
        return (time.perf_counter() - t) / args.steps

    generate()  # warm: the static cache's first fill, the graph's first replays
    skipping, checking = dec.call, dec.step  # StaticDecoder.call skips dynamo's guard check; the step itself checks it
    ways = {"guards skipped (the harness)": [], "guards checked": []}
    for i in range(args.rounds):  # alternated, so that a drift of the machine falls on both
        for way in list(ways) if i % 2 == 0 else list(ways)[::-1]:
            dec.call = skipping if way.startswith("guards skipped") else checking
            ways[way].append(step_time())
    dec.call = skipping
    floor_bytes = decode_step_bytes(spec, "bf16", tokens, args.batch)
    for way, times in ways.items():
        step_s = statistics.median(times)
        print(
            f"step {step_s * 1e3:.3f} ms, {way} (median of {len(times)} generations; each {', '.join(f'{t * 1e3:.3f}' for t in times)}); "
            f"{floor_bytes / 1e9:.2f} GB of weights and cache a step: {floor_bytes / step_s / 1e12:.2f} TB/s",
            flush=True,
        )
    step_s = statistics.median(ways["guards skipped (the harness)"])

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        generate()
        sync()
    from torch.autograd import DeviceType

    # the device's own events (kernels, copies, memsets); a CPU op's row also counts its kernels' time
    averages = (
        [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA and kernel_time_us(e) > 0]
        if cuda
        else list(prof.key_averages())
    )
    if not cuda:
        for e in sorted(averages, key=lambda e: -e.self_cpu_time_total)[: args.top]:
            print(f"  {e.self_cpu_time_total / args.steps:9.1f} us/step  {e.count / args.steps:6.1f}x  {e.key[:90]}")
        return 0
    steps = args.steps  # the prefill's kernels are in the profile too: a per-step share over-counts a little
    total = sum(kernel_time_us(e) for e in averages) / steps
    count = sum(e.count for e in averages) / steps
    matrix = [e for e in averages if MATRIX.search(e.key)]
    matrix_us = sum(kernel_time_us(e) for e in matrix) / steps
    print(
        f"kernels a step: {count:.0f}, {total / 1e3:.3f} ms of kernel time "
        f"({total / 1e3 / (step_s * 1e3):.0%} of the step; the rest: the device idle between kernels)"
    )
    print(
        f"matrix kernels: {sum(e.count for e in matrix) / steps:.0f} a step, {matrix_us / 1e3:.3f} ms: "
        f"{floor_bytes / (matrix_us / 1e6) / 1e12:.2f} TB/s over the step's bytes if they read them all; "
        f"other kernels {(total - matrix_us) / 1e3:.3f} ms"
    )
    print(f"top {args.top} kernels by device time (per step: us, launches, us each):")
    for e in sorted(averages, key=lambda e: -kernel_time_us(e))[: args.top]:
        t, n = kernel_time_us(e) / steps, e.count / steps
        print(f"  {t:9.1f} us  {n:6.1f}x  {t / n if n else 0:7.2f} us  {e.key[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
