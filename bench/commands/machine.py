"""This machine's commands: list models and backends, describe the machine, build a model, prove
the timing, measure the ceilings."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from chipbench.backends import distributed
from chipbench.backends.base import capability
from chipbench.backends.registry import discover, get_backend
from chipbench.commands.common import ceiling_window_option, chip_options, gib, use_ceiling_window
from chipbench.errors import UsageError
from chipbench.judging.chips import match_chip, resolve_chip
from chipbench.judging.roofline import check_spec
from chipbench.measuring import env
from chipbench.measuring.selftest import check_all
from chipbench.models.counts import facts
from chipbench.models.zoo import MODELS, get_model


def cmd_list(args) -> int:
    import pandas as pd

    if args.what in ("models", "all"):
        rows = []
        for s in MODELS.values():
            f = facts(s)
            rows.append(
                {
                    "model": s.name,
                    "family": s.family,
                    "layers": s.layers,
                    "hidden": s.hidden,
                    "params": f"{f.params_total / 1e9:.3f}B" if not s.tiny else f"{f.params_total / 1e3:.1f}K",
                    "active": f"{f.params_active / 1e9:.3f}B" if not s.tiny else f"{f.params_active / 1e3:.1f}K",
                    "bf16 weights": gib(f.weight_bytes("bf16")) if not s.tiny else "-",
                    "KV/token bf16": f"{f.kv_bytes_per_token('bf16') / 1024:g} KiB",
                    "state/seq": f"{(f.recurrent_state_bytes + f.conv_state_bytes('bf16')) / 2**20:.1f} MiB"
                    if s.is_hybrid
                    else "-",
                    "context": s.max_pos,
                }
            )
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            print(pd.DataFrame(rows).to_string(index=False))
    if args.what in ("backends", "all"):
        rows = [
            {
                "backend": n,
                "source": e.source,
                "version": e.origin()["backend_dist_version"],  # of the distribution that provides it
                "status": "available" if e.available else f"unavailable: {e.probe.reason}",
            }
            for n, e in discover().items()
        ]
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            if args.what == "all":
                print()  # after the models' table
            from chipbench.publishing.tables import plain_table

            print(plain_table(rows))  # left-aligned: reasons are sentences
    return 0


def cmd_env(args) -> int:
    out = {"host": env.host_facts(), "harness": env.provenance(0), "devices": {}}
    out["harness"].pop("seed")
    for name, e in discover().items():
        if e.available:
            try:
                out["devices"][name] = asdict(e.backend.info())
            except Exception as ex:  # a device that cannot describe itself is reported, not fatal
                out["devices"][name] = {"error": f"{type(ex).__name__}: {ex}"}
        else:
            out["devices"][name] = {"unavailable": e.probe.reason}
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_selftest(args) -> int:
    if args.long_prompt < 1:
        raise UsageError(f"--long-prompt must be a number of tokens >= 1, got {args.long_prompt}")
    entries = discover()
    names = args.backend.split(",") if args.backend else [n for n, e in entries.items() if e.available]
    backends = [get_backend(n, entries) for n in names]  # all names checked before any run
    bad = 0
    for name, backend in zip(names, backends):
        for check in check_all(
            backend, model=args.model, dtype=args.dtype, long_prompt=args.long_prompt, mode=args.mode
        ):
            print(f"{name}: {check.describe()}")
            bad += not check.passed
    return 1 if bad else 0


def cmd_build(args) -> int:
    import torch

    from chipbench.models.build import build_random, parse_dtype, refuse_host_build

    spec = get_model(args.model)
    dtype = parse_dtype(args.dtype)
    torch.empty(1, device=args.device)  # start the device runtime outside the timed build
    device = torch.device(args.device)
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    if device.type in ("cpu", "cuda"):  # weights that cannot fit: one line, not the OOM killer
        try:
            refuse_host_build(
                spec,
                args.dtype,
                None,
                "`chipbench build`",
                memory,
                "this host" if memory is None else torch.cuda.get_device_name(device),
            )
        except MemoryError as e:
            raise UsageError(str(e)) from None
    rss_before = _peak_rss_bytes()
    built = build_random(spec, dtype, args.device, seed=args.seed)
    rss_peak = _peak_rss_bytes()
    params = list(built.module.parameters())
    n = sum(p.numel() for p in params)
    weight_bytes = n * dtype.itemsize
    # a NaN or an infinity anywhere shows in a tensor's min or max: one pass, no mask the size of the
    # weights (isfinite().all() took 30 s and 3 GiB more for qwen3-8b on a 2-core CPU)
    finite = all(bool(torch.isfinite(t)) for p in params for t in torch.aminmax(p.detach()))
    rss = (
        f", host peak RSS {rss_peak / 2**30:.2f} GiB ({rss_before / 2**30:.2f} GiB before the build) for "
        f"{weight_bytes / 2**30:.2f} GiB of weights"
        if rss_peak
        else ""
    )
    print(
        f"{spec.name} {args.dtype} on {args.device}: {n:,} parameters built in "
        f"{built.build_time_s:.2f} s ({weight_bytes / 1e9 / built.build_time_s:.2f} GB/s){rss}, all finite: {finite}"
    )
    return 0 if finite else 1


def _peak_rss_bytes() -> int | None:
    """This process's peak resident set (Linux VmHWM), or None where the kernel does not say."""
    try:
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return None


def _ceilings_line(o: dict) -> str:
    """One backend's measured ceilings as the terminal shows them."""
    if "error" in o:
        return f"{o['backend']}: {o['error']}"
    spec = (
        f"; spec {o['chip']}: {o['spec_gb_per_s'] or '?'} GB/s, {o['spec_tflops'] or '?'} TFLOP/s"
        if o["spec_gb_per_s"] or o["spec_tflops"]
        else ""
    )
    widened = (
        f"; as {o['matmul_dtype']}, faster here than {o['dtype']}'s own {o['tflops_in_dtype']:.3g}"
        if o.get("matmul_dtype") not in (None, o["dtype"])
        else ""
    )
    return (
        f"{o['backend']} ({o['device_name']}): memory {o['bandwidth_gb_per_s']:.1f} GB/s (best of copy and read; "
        f"median round {o['bandwidth_gb_per_s_median']:.1f}), {o['dtype']} matmul {o['tflops']:.3g} TFLOP/s "
        f"(n={o['matmul_n']}; median round {o['tflops_median']:.3g}{widened}), best of {o['rounds']} rounds in "
        f"{o['window_s']:.1f} s{spec}"
        + (f"\n  {o['spec_check']}" if o["spec_check"] else "")
        + "".join(f"\n  unsteady: {u}" for u in o["unsteady"])
    )


def cmd_ceilings(args) -> int:
    """Measured ceilings per backend, beside the spec row the device matches (or the one named)."""

    from chipbench.models.build import parse_dtype

    parse_dtype(args.dtype)
    use_ceiling_window(args)
    entries = discover()
    names = args.backend.split(",") if args.backend else [n for n, e in entries.items() if e.available]
    backends = [get_backend(n, entries) for n in names]
    chosen = resolve_chip(
        args.chip,
        args.peak_gbps,
        args.peak_tflops,
        warn=lambda m: distributed.is_lead() and print(f"chipbench: {m}", file=sys.stderr),
    )
    out = []
    for name, backend in zip(names, backends):
        measure = capability(backend, "ceilings")
        if measure is None:
            out.append({"backend": name, "error": "this backend cannot measure ceilings"})
            continue
        c = measure(args.dtype)
        info = backend.info()
        device = info.device_name
        chip = chosen or match_chip(device)
        out.append(
            {
                "backend": name,
                **asdict(c),
                "device_name": device,
                "unsteady": c.unsteady(),
                "chip": chip.name if chip else None,
                "spec_gb_per_s": chip.bandwidth_gb_per_s if chip else None,
                "spec_tflops": (chip.peak_flops(args.dtype) or 0) / 1e12 or None if chip else None,
                "spec_check": check_spec(c, chip, distributed.chips(info.kind))
                if chip
                else f"no spec row matches {device!r}: these measured ceilings are its roofline",
            }
        )
    if not distributed.is_lead():  # under torchrun every rank measures at once; rank 0 prints their sum
        return 0
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for o in out:
            print(_ceilings_line(o))
    return 0


def add_list(sub) -> None:
    s = sub.add_parser("list", help="models with their facts; backends with availability")
    s.add_argument("what", nargs="?", choices=("all", "models", "backends"), default="all")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_list)


def add_env(sub) -> None:
    s = sub.add_parser("env", help="this machine's devices and software versions, as JSON")
    s.set_defaults(fn=cmd_env)


def add_ceilings(sub) -> None:
    s = sub.add_parser("ceilings", help="measure this machine's copy bandwidth and matmul rate per backend")
    s.add_argument("--backend", help="comma-separated backends (default: every available one)")
    s.add_argument("--dtype", default="bf16", help="fp32, bf16 or fp16 (default bf16)")
    s.add_argument("--json", action="store_true")
    chip_options(s)
    ceiling_window_option(s)
    s.set_defaults(fn=cmd_ceilings)


def add_selftest(sub) -> None:
    s = sub.add_parser("selftest", help="prove each backend's timing waits for the device")
    s.add_argument("--backend", help="comma-separated backends (default: every available one)")
    s.add_argument("--model", default="qwen3-0.6b")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--long-prompt", type=int, default=2048, help="prompt of the prefill probe")
    s.add_argument(
        "--mode",
        default="eager",
        choices=("eager", "compiled"),
        help="execution mode of the decode probe (compiled runs ahead of the host on CUDA)",
    )
    s.set_defaults(fn=cmd_selftest)


def add_build(sub) -> None:
    s = sub.add_parser("build", help="build a model's random weights and report the build time")
    s.add_argument("model")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--device", default="cpu")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_build)
