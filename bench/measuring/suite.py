"""Planning a benchmark suite: which cases run on which backends, validated before anything runs.

Shared by the pytest plugin and the CLI, so both accept the same names and say the same thing
about bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

from chipbench.backends.registry import Entry, add_endpoints
from chipbench.errors import UsageError
from chipbench.measuring.runner import ROUNDS_MAX, Case
from chipbench.measuring.workload import parse_workload
from chipbench.options import parse_ints, split_list  # noqa: F401  (callers import them from here too)
from chipbench.backends.torch_device import MODES
from chipbench.models.build import check_weights_dir
from chipbench.models.counts import RUN_DTYPES
from chipbench.models.zoo import get_model
from chipbench.backends.base import capability

# Sensible defaults per backend when the user names no model / dtype / workload / mode.
# CPU: a llama-bench-like pp512 / tg128 on qwen3-0.6b that completes in minutes on a laptop, eager.
# GPUs: qwen3-8b, the model of the published H20 / A100 speed tables (chips.md), eager and compiled
# side by side: eager decode at batch 1 times the host launching kernels one by one, compiled (CUDA
# graphs) times the chip, and a claim about the chip needs the second; the pair shows the gap.
# Rounds: unless --rounds fixes them, each case times as many as fit its budget at its warmup round's
# pace, between ROUNDS_MIN and ROUNDS_MAX (chipbench.measuring.runner.budget_rounds): a CPU's tg128
# round can take 13 s and its pp512 round 0.5 s, so a fixed count spends minutes on one case and too
# few rounds on another.
DEFAULT_SUITE = {
    "cpu": dict(
        models=("qwen3-0.6b",), dtypes=("bf16",), workloads=("pp512", "tg128"), budget_s=12.0, modes=("eager",)
    ),
    "cuda": dict(
        models=("qwen3-8b",), dtypes=("bf16",), workloads=("pp512", "tg128"), budget_s=10.0, modes=("eager", "compiled")
    ),
}
FIXED_ROUNDS = 5  # a soak's minimum rounds
FALLBACK_SUITE = dict(
    models=("qwen3-0.6b",), dtypes=("bf16",), workloads=("pp512", "tg128"), budget_s=12.0, modes=("eager",)
)


@dataclass(frozen=True)
class SuiteOptions:
    backends: tuple[str, ...] = ()  # empty: every available backend
    models: tuple[str, ...] = ()  # empty: the backend's default
    dtypes: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    batches: tuple[int, ...] = (1,)
    rounds: int | None = None  # None: the backend's default
    warmup: int = 1
    seed: int = 0
    weights_dir: str | None = None
    repeats: int = 1  # independent trials per case, each a fresh load (in a fresh process where it can be)
    modes: tuple[str, ...] = ()  # execution modes; empty: the backend's default
    soak_s: float | None = None  # sustained mode: rounds for at least this many seconds


def suite_options(value: Callable[[str], Any]) -> SuiteOptions:
    """The suite's options as either entry point was given them: `value(name)` is the option of
    that name in measuring/suite_options.py (chipbench run's --name, pytest's --bench-name)."""
    return SuiteOptions(
        backends=split_list(value("backend")),
        models=split_list(value("model")),
        dtypes=split_list(value("dtype")),
        workloads=split_list(value("workload")),
        batches=parse_ints(value("batch"), "batch sizes") or (1,),
        rounds=value("rounds"),
        warmup=value("warmup"),
        seed=value("seed"),
        weights_dir=value("weights"),
        repeats=value("repeats"),
        modes=split_list(value("mode")),
        soak_s=value("soak"),
    )


@dataclass(frozen=True)
class Planned:
    case: Case | None
    skip_reason: str | None = None  # set for a backend that cannot run here
    label: str = ""


def _positive(value: int, what: str) -> int:
    if value < 1:
        raise UsageError(f"{what} must be >= 1, got {value}")
    return value


def plan(opts: SuiteOptions, entries: dict[str, Entry]) -> list[Planned]:
    """Every case of the suite; raises UsageError (one line) on any bad name or value."""
    workloads = _check_options(opts)
    _check_backends(opts, entries)
    planned: list[Planned] = []
    for name in opts.backends or tuple(entries):
        entry = entries[name]
        if not entry.available:
            planned.append(Planned(None, entry.probe.reason, label=name))
            continue
        planned += _plan_backend(name, entry, opts, entries, workloads)
    if not opts.backends and not any(p.case for p in planned) and any(e.available for e in entries.values()):
        why = "; ".join(
            f"{p.label.split(' ')[0]}: {p.skip_reason}"
            for p in planned
            if entries.get(p.label.split(" ")[0]) and entries[p.label.split(" ")[0]].available
        )
        raise UsageError(f"no available backend can run this suite: {why}")
    return planned


def _check_options(opts: SuiteOptions) -> list:
    """The options' values and names, checked before anything runs; the workloads parsed."""
    for b in opts.batches:
        _positive(b, "batch size")
    if opts.rounds is not None:
        _positive(opts.rounds, "rounds")
    _positive(opts.repeats, "repeats")
    if opts.soak_s is not None and not opts.soak_s > 0:
        raise UsageError(f"soak must be a number of seconds > 0, got {opts.soak_s}")
    if opts.warmup < 0:
        raise UsageError(f"warmup rounds must be >= 0, got {opts.warmup}")
    for m in opts.models:
        get_model(m)
    for d in opts.dtypes:
        if d not in RUN_DTYPES:
            raise UsageError(f"unknown dtype {d!r}; valid dtypes: {', '.join(RUN_DTYPES)}")
    for m in opts.modes:
        if m not in MODES:
            raise UsageError(f"unknown execution mode {m!r}; valid modes: {', '.join(MODES)}")
    if opts.weights_dir is not None and not str(opts.weights_dir).strip():
        raise UsageError("the weights directory is empty; give a local directory holding the model's *.safetensors")
    if opts.weights_dir and len(opts.models) > 1:
        raise UsageError("a weights directory holds one model's weights: name exactly one model")
    return [parse_workload(w) for w in opts.workloads]


def _check_backends(opts: SuiteOptions, entries: dict[str, Entry]) -> None:
    """Every backend named exists and is available here (an endpoint's URL added as one)."""
    add_endpoints(entries, opts.backends)  # openai:URL names a server, not an installed adapter
    for name in opts.backends:
        if name not in entries:
            raise UsageError(f"unknown backend {name!r}; known backends: {', '.join(entries)}")
        if not entries[name].available:  # asked for by name: a runner without it must not pass green
            usable = [n for n, e in entries.items() if e.available]
            raise UsageError(
                f"backend {name!r} was asked for but is unavailable here: {entries[name].probe.reason} "
                f"(available: {', '.join(usable) or 'none'}; leave the backend option out to run "
                "every available one)"
            )


def _runs_elsewhere(opts: SuiteOptions, entries: dict[str, Entry], name: str, what: str, x) -> bool:
    """Whether another named backend runs `x`: then this one skips it rather than refusing the run."""
    for other in opts.backends:
        b = entries[other].backend
        if other == name or not entries[other].available:
            continue
        if what == "dtype" and x in b.supported_dtypes():
            return True
        if what == "mode" and x in capability(b, "supported_modes")():
            return True
        if what == "model" and not capability(b, "model_unsupported")(get_model(x)):
            return True
    return False


def _plan_backend(name: str, entry: Entry, opts: SuiteOptions, entries: dict, workloads: list) -> list[Planned]:
    """One available backend's cases, and a skip line for each model, dtype or mode it cannot run
    (an error instead when the backend was named and no other named one runs it)."""
    defaults = DEFAULT_SUITE.get(name, FALLBACK_SUITE)
    named = name in opts.backends
    # a dtype chipbench cannot count or gate is not run, whatever the backend offers
    runnable = tuple(d for d in entry.backend.supported_dtypes() if d in RUN_DTYPES)
    has_modes = capability(entry.backend, "supported_modes")()
    unsupported = capability(entry.backend, "model_unsupported")
    chooser = capability(entry.backend, "default_dtypes")
    chosen = None if opts.dtypes or chooser is None else chooser()
    dtypes = opts.dtypes or (chosen[0] if chosen else defaults["dtypes"])
    dtype_reason = chosen[1] if chosen else None
    modes = opts.modes or tuple(m for m in defaults["modes"] if m in has_modes) or ("eager",)
    why_not = {
        "dtype": {d: None if d in runnable else f"it runs: {', '.join(runnable)}" for d in dtypes},
        "mode": {m: None if m in has_modes else f"it runs: {', '.join(has_modes)}" for m in modes},
        "model": {m: unsupported(get_model(m)) for m in opts.models or defaults["models"]},
    }
    planned = []
    for what, reasons in why_not.items():
        for x, why in reasons.items():
            if not why:
                continue
            if named and not _runs_elsewhere(opts, entries, name, what, x):  # named, and no other runs it
                raise UsageError(
                    f"backend {name!r} cannot run {what} {x!r}: {why}"
                    if what == "model"
                    else f"backend {name!r} cannot run {what} {x!r}; {why}"
                )
            # every available backend: another one runs it; say so in the plan, never drop it silently
            text = f"cannot run {what} {x!r}: {why}" if what == "model" else f"cannot run {what} {x!r} ({why})"
            planned.append(Planned(None, text, label=f"{name} {what} {x}"))
    ok = {what: tuple(x for x, why in reasons.items() if not why) for what, reasons in why_not.items()}
    if opts.weights_dir and len(why_not["model"]) != 1:
        raise UsageError("a weights directory holds one model's weights: name exactly one model")
    wls = workloads or [parse_workload(w) for w in defaults["workloads"]]
    for m in ok["model"]:
        spec = get_model(m)
        for w in wls:
            w.validate(spec.max_pos, spec.name)
        if opts.weights_dir:
            check_weights_dir(spec, opts.weights_dir)
    sized = opts.rounds is None and not opts.soak_s
    for m, d, w, b, mode in product(ok["model"], ok["dtype"], wls, opts.batches, ok["mode"]):
        case = Case(
            name,
            m,
            d,
            replace(w, batch=b, seed=opts.seed),
            warmup=opts.warmup,
            rounds=opts.rounds or (ROUNDS_MAX if sized else FIXED_ROUNDS),
            weights_dir=opts.weights_dir,
            mode=mode,
            soak_s=opts.soak_s,
            budget_s=defaults["budget_s"] if sized else None,
            dtype_reason=dtype_reason,
        )
        planned.append(Planned(case, label=case.id))
    return planned
