"""Planning a benchmark suite: which cases run on which backends, validated before anything runs.

Shared by the pytest plugin and the CLI, so both accept the same names and say the same thing
about bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from chipbench.backends.registry import Entry, add_endpoints
from chipbench.errors import UsageError
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload
from chipbench.options import parse_ints, split_list  # noqa: F401  (callers import them from here too)
from chipbench.backends.torch_device import MODES
from chipbench.models.build import DTYPES, check_weights_dir
from chipbench.models.gguf_export import DTYPES as ENGINE_DTYPES
from chipbench.models.zoo import get_model
from chipbench.backends.base import capability

# Sensible defaults per backend when the user names no model / dtype / workload / mode.
# CPU: a llama-bench-like pp512 / tg128 on qwen3-0.6b that completes in minutes on a laptop, eager.
# GPUs: qwen3-8b, the model of the published H20 / A100 speed tables (chips.md), eager and compiled
# side by side: eager decode at batch 1 times the host launching kernels one by one, compiled (CUDA
# graphs) times the chip, and a claim about the chip needs the second; the pair shows the gap.
DEFAULT_SUITE = {
    "cpu": dict(models=("qwen3-0.6b",), dtypes=("bf16",), workloads=("pp512", "tg128"), rounds=5, modes=("eager",)),
    "cuda": dict(
        models=("qwen3-8b",), dtypes=("bf16",), workloads=("pp512", "tg128"), rounds=5, modes=("eager", "compiled")
    ),
}
FALLBACK_SUITE = dict(
    models=("qwen3-0.6b",), dtypes=("bf16",), workloads=("pp512", "tg128"), rounds=5, modes=("eager",)
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
    known_dtypes = (*DTYPES, *(d for d in ENGINE_DTYPES if d not in DTYPES))
    for d in opts.dtypes:
        if d not in known_dtypes:
            raise UsageError(f"unknown dtype {d!r}; valid dtypes: {', '.join(known_dtypes)}")
    workloads = [parse_workload(w) for w in opts.workloads]
    for m in opts.modes:
        if m not in MODES:
            raise UsageError(f"unknown execution mode {m!r}; valid modes: {', '.join(MODES)}")
    add_endpoints(entries, opts.backends)  # openai:URL names a server, not an installed adapter
    for name in opts.backends:
        if name not in entries:
            raise UsageError(f"unknown backend {name!r}; known backends: {', '.join(entries)}")
        if not entries[name].available:  # asked for by name: a runner without it must not pass green
            usable = [n for n, e in entries.items() if e.available]
            raise UsageError(
                f"backend {name!r} was asked for but is unavailable here: {entries[name].probe.reason} "
                f"(available: {', '.join(usable) or 'none'}; leave --bench-backend out to run "
                "every available one)"
            )

    chosen = opts.backends or tuple(entries)
    planned: list[Planned] = []

    def runs_elsewhere(name: str, what: str, x) -> bool:
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

    for name in chosen:
        entry = entries[name]
        if not entry.available:
            planned.append(Planned(None, entry.probe.reason, label=name))
            continue
        defaults = DEFAULT_SUITE.get(name, FALLBACK_SUITE)
        models = opts.models or defaults["models"]
        dtypes = opts.dtypes or defaults["dtypes"]
        runnable = entry.backend.supported_dtypes()
        has_modes = capability(entry.backend, "supported_modes")()
        modes = opts.modes or tuple(m for m in defaults["modes"] if m in has_modes) or ("eager",)
        named = name in opts.backends
        for what, asked, can in (("dtype", dtypes, runnable), ("mode", modes, has_modes)):
            for x in asked:
                if x in can:
                    continue
                if named and not runs_elsewhere(name, what, x):  # asked for by name, and no other runs it
                    raise UsageError(f"backend {name!r} cannot run {what} {x!r}; it runs: {', '.join(can)}")
                # every available backend: another one runs it; say so in the plan, never drop it silently
                planned.append(
                    Planned(None, f"cannot run {what} {x!r} (it runs: {', '.join(can)})", label=f"{name} {what} {x}")
                )
        dtypes = tuple(d for d in dtypes if d in runnable)
        modes_here = tuple(m for m in modes if m in has_modes)
        wls = workloads or [parse_workload(w) for w in defaults["workloads"]]
        rounds = opts.rounds or defaults["rounds"]
        if opts.weights_dir and len(models) != 1:
            raise UsageError("a weights directory holds one model's weights: name exactly one model")
        unsupported = capability(entry.backend, "model_unsupported")
        for m in models:
            why = unsupported(get_model(m))
            if why and named and not runs_elsewhere(name, "model", m):
                raise UsageError(f"backend {name!r} cannot run model {m!r}: {why}")
            if why:
                planned.append(Planned(None, f"cannot run model {m!r}: {why}", label=f"{name} model {m}"))
        models = tuple(m for m in models if not unsupported(get_model(m)))
        for m in models:
            spec = get_model(m)
            for w in wls:
                w.validate(spec.max_pos, spec.name)
            if opts.weights_dir:
                check_weights_dir(spec, opts.weights_dir)
        for m in models:
            for d in dtypes:
                for w in wls:
                    for b in opts.batches:
                        for mode in modes_here:
                            wl = replace(w, batch=b, seed=opts.seed)
                            case = Case(
                                name,
                                m,
                                d,
                                wl,
                                warmup=opts.warmup,
                                rounds=rounds,
                                weights_dir=opts.weights_dir,
                                mode=mode,
                                soak_s=opts.soak_s,
                            )
                            planned.append(Planned(case, label=case.id))
    if not opts.backends and not any(p.case for p in planned) and any(e.available for e in entries.values()):
        why = "; ".join(
            f"{p.label.split(' ')[0]}: {p.skip_reason}"
            for p in planned
            if entries.get(p.label.split(" ")[0]) and entries[p.label.split(" ")[0]].available
        )
        raise UsageError(f"no available backend can run this suite: {why}")
    return planned
