"""The pytest plugin: `pytest --benchmark` runs the benchmark suite on this machine's backends.

Registered through the `pytest11` entry point. Without `--benchmark` it does nothing, so plain
`pytest` runs only the project's own tests. With it, collection is replaced by the suite in
bench/benchmark_suite.py, one test per case, each timed through pytest-benchmark's fixture in
pedantic mode, with the harness's own metrics in `extra_info` and a record per case appended
to a JSON-lines file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chipbench.errors import UsageError
from chipbench.measuring.suite_options import add_suite_options

SUITE_FILE = Path(__file__).with_name("benchmark_suite.py")
_KEY = "_chipbench"


def pytest_addoption(parser):
    g = parser.getgroup("chipbench", "chipbench: LLM inference benchmarks")
    g.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        help="run the chipbench benchmark suite (instead of the collected tests)",
    )
    add_suite_options(g.addoption, "--bench-")  # the suite's options: declared once, chipbench run has them too
    g.addoption(
        "--bench-baseline",
        default=None,
        metavar="PATH",
        help="records to compare the run with at the end (default: results/baselines)",
    )


def _options(config):
    from chipbench.measuring.suite import SuiteOptions, parse_ints, split_list

    o = config.getoption
    return SuiteOptions(
        backends=split_list(o("--bench-backend")),
        models=split_list(o("--bench-model")),
        dtypes=split_list(o("--bench-dtype")),
        workloads=split_list(o("--bench-workload")),
        batches=parse_ints(o("--bench-batch"), "batch sizes") or (1,),
        rounds=o("--bench-rounds"),
        warmup=o("--bench-warmup"),
        seed=o("--bench-seed"),
        weights_dir=o("--bench-weights"),
        repeats=o("--bench-repeats"),
        modes=split_list(o("--bench-mode")),
        soak_s=o("--bench-soak"),
    )


class SuiteState:
    """What the suite shares across its tests: the plan, the writer, a one-model cache."""

    def __init__(self, planned, writer, entries, check: bool = True, repeats: int = 1):
        from chipbench.measuring import env

        self.check = check
        self.repeats = repeats  # independent trials per case (--bench-repeats)
        self.chip = None  # a spec row the user chose; None: match each device by its name
        self.gates: dict = {}  # (backend, model, dtype, seed) -> correctness fields, once per session
        self.planned = planned
        self.entries = entries
        self.writer = writer
        self.records: list[dict] = []
        self.host = env.host_facts()
        self.loaded = None  # (key, backend, handle): consecutive cases on one model share it
        self.ceilings: dict = {}  # (device kind, device, dtype) -> measured ceilings, once per session
        self.selftests: dict = {}  # (backend, timing loop) -> (status, text): the timing self-test, once per session

    def selftest_for(self, backend, case) -> tuple[str, str]:
        """The backend's timing self-test, once per run and generation loop (on the first case's
        model and dtype that it can run on): (passed | failed | error, text)."""
        from chipbench.measuring.selftest import probe_cache_len, suite_check, timing_loop

        key = (case.backend, timing_loop(backend, case.mode))  # each loop the run times is proved once
        if key in self.selftests:
            return self.selftests[key]
        self.release()  # the self-test loads its own copies
        status, text = suite_check(backend, case.model, case.dtype, case.mode, probe_cache_len(case))
        self.release()  # what the self-test's copies left
        if status != "error":
            self.selftests[key] = (status, text)
        return status, text

    def record(self, rec: dict) -> None:
        self.writer.write(rec)
        self.records.append(rec)

    def correctness_for(self, backend, case, handle) -> dict:
        from chipbench.measuring.runner import correctness

        if not self.check:
            return {"correct": None, "correctness_note": "not checked (--bench-no-check)"}
        key = (case.backend, case.model, case.dtype, case.workload.seed, case.weights_dir, case.mode)
        if key not in self.gates:
            self.gates[key] = correctness(backend, case, handle, self.host.get("env_host_memory_bytes") or 0)
        return self.gates[key]

    def ceilings_for(self, backend, case):
        from chipbench.measuring.runner import shared_ceilings

        return shared_ceilings(self.ceilings, backend, case.dtype)

    def handle_for(self, backend, case):
        from chipbench.models.zoo import get_model

        key = (case.backend, case.model, case.dtype, case.weights_dir, case.workload.seed, case.mode)
        if self.loaded and self.loaded[0] == key:
            return self.loaded[2]
        self.release()
        handle = backend.load(get_model(case.model), case.dtype, seed=case.workload.seed, **case.load_kwargs())
        self.loaded = (key, backend, handle)
        return handle

    def release(self):
        from chipbench.judging.correctness import release_host_memory

        if self.loaded:
            self.loaded[1].close(self.loaded[2])
            self.loaded = None
        # A CPU case's peak memory is the process's resident set: memory the allocator kept from an
        # earlier model (another backend's, the self-test's) would count in the next case's peak.
        release_host_memory()


def pytest_configure(config):
    if not config.getoption("--benchmark"):
        return  # a pytest run without --benchmark: the plugin changes nothing
    from chipbench import use_huge_pages

    use_huge_pages()
    from chipbench.backends.registry import discover
    from chipbench.publishing.record import RecordWriter, default_path
    from chipbench.judging.chips import resolve_chip
    from chipbench.measuring.ceilings import use_window
    from chipbench.measuring.suite import plan

    notes: list[str] = []
    try:
        opts = _options(config)
        entries = discover()
        planned = plan(opts, entries)
        use_window(config.getoption("--bench-ceiling-window"))
        chip = resolve_chip(
            config.getoption("--bench-chip"),
            config.getoption("--bench-peak-gbps"),
            config.getoption("--bench-peak-tflops"),
            warn=notes.append,
        )
    except UsageError as e:
        raise pytest.UsageError(str(e)) from None
    from chipbench.measuring import distributed

    if not distributed.is_lead():
        _follow(config)
    out = config.getoption("--bench-out") or default_path(results_dir(config) / "runs")
    state = SuiteState(
        planned, RecordWriter(out), entries, check=not config.getoption("--bench-no-check"), repeats=opts.repeats
    )
    state.chip, state.notes = chip, notes
    setattr(config, _KEY, state)
    config.args[:] = [str(SUITE_FILE)]  # collect the suite, not the project's tests


class _SuiteModule(pytest.Module):
    """The suite, imported by its package name (chipbench.benchmark_suite), not by its path: in a
    checkout the file lies in bench/, and a path import would load it as a second package."""

    def _getobj(self):
        import importlib

        return importlib.import_module("chipbench.benchmark_suite")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    if getattr(parent.config, _KEY, None) is not None and module_path == SUITE_FILE:
        return _SuiteModule.from_parent(parent, path=module_path)
    return None


def _follow(config) -> None:
    """A rank other than 0 under torchrun: it runs every case in lockstep with rank 0 (each step is
    a collective), but rank 0's record is the measurement. So this rank prints no results of its own
    (its timings are not the record's) and writes no file: pytest-benchmark's JSON, saves and
    histograms are rank 0's alone, or one launch would leave one result per rank, or two ranks
    writing one --benchmark-json path at once. Its failures still print."""
    o = config.option
    o.verbose = min(o.verbose, -2)  # no header, no per-test lines: the dots and the outcome line remain
    o.benchmark_quiet, o.benchmark_verbose = True, False
    o.benchmark_json = o.benchmark_save = o.benchmark_autosave = o.benchmark_histogram = None
    o.benchmark_compare, o.benchmark_compare_fail = [], None  # rank 0 compares, with its own timings


def results_dir(config) -> Path:
    """Where results/ is: under pytest's rootdir when pytest found the project's configuration
    there, else under the directory pytest was run from. pytest picks its rootdir before it knows
    plugin options, so a value given as `--bench-out /elsewhere/x.jsonl` (or `--benchmark-json
    /elsewhere/b.json`) makes /elsewhere the rootdir, with no configuration found."""
    return (Path(config.rootpath) if config.inipath is not None else Path(config.invocation_params.dir)) / "results"


def baselines_dir(config) -> Path:
    """The baselines a run is compared with by default: results/baselines where results/ is, else
    this chipbench checkout's committed ones."""
    from chipbench import PROJECT_ROOT

    here = results_dir(config) / "baselines"
    return here if here.exists() else PROJECT_ROOT / "results" / "baselines"


def pytest_generate_tests(metafunc):
    state = getattr(metafunc.config, _KEY, None)
    if state is None or "chipbench_case" not in metafunc.fixturenames:
        return
    params = [
        pytest.param(p.case, id=p.label, marks=[pytest.mark.skip(reason=p.skip_reason)] if p.skip_reason else [])
        for p in state.planned
    ]
    metafunc.parametrize("chipbench_case", params)


@pytest.fixture
def chipbench_suite(request):
    state = getattr(request.config, _KEY, None)
    if state is None:
        pytest.skip("the chipbench suite runs only under `pytest --benchmark`")
    return state


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    from chipbench.measuring import env

    state = getattr(config, _KEY, None)
    machine_info["chipbench"] = dict(state.host if state else env.host_facts())
    entries = state.entries if state else {}
    machine_info["chipbench"]["backends"] = {
        n: ("available" if e.available else e.probe.reason) for n, e in entries.items()
    }


def pytest_sessionfinish(session):
    state = getattr(session.config, _KEY, None)
    if state is not None:
        state.release()


def pytest_terminal_summary(terminalreporter, config):
    state = getattr(config, _KEY, None)
    if state is None:
        return
    from chipbench.measuring import distributed
    from chipbench.publishing.report import summary_table

    if not distributed.is_lead():  # rank 0 prints the launch's results (see _follow)
        return

    tr = terminalreporter
    tr.section("chipbench results")
    if state.records:
        tr.write_line(summary_table(state.records))
        tr.write_line(f"\n{len(state.records)} record(s) appended to {state.writer.path}")
    else:
        tr.write_line("no case ran")
    for p in state.planned:
        if p.skip_reason:
            tr.write_line(f"skipped backend {p.label}: {p.skip_reason}")
    for note in getattr(state, "notes", []) + _unmatched_devices(state.records) + _widened_ceilings(state.records):
        tr.write_line(note)
    if state.records:
        _compare_with_baseline(tr, config, state.records)


def _widened_ceilings(records) -> list[str]:
    """A line per device and dtype whose matmul ceiling another dtype's product set (fp32's for a
    16-bit dtype the device has no fast product for: chipbench.measuring.ceilings), so a reader of its
    MFU knows what it is against, and why its 16-bit cases run as they do."""
    seen = {}
    for r in records:
        wide = r.get("ceiling_matmul_dtype")
        if r.get("status") == "ok" and wide and wide != r.get("dtype") and r.get("ceiling_tflops_in_dtype"):
            seen.setdefault(
                (r.get("device_name"), r["dtype"], wide), (r["ceiling_tflops"], r["ceiling_tflops_in_dtype"])
            )
    return [
        f"{device!r}: the {dtype} matmul ceiling is {wide}'s product, {best:.3g} TFLOP/s, which computes a {dtype} "
        f"product exactly and ran faster here than torch's own {dtype} product ({own:.3g}): this device has no "
        f"fast {dtype} product in torch, and every {dtype} MFU above is against {wide}'s rate"
        for (device, dtype, wide), (best, own) in sorted(seen.items(), key=str)
    ]


def _unmatched_devices(records) -> list[str]:
    """A line per device no spec row matched. The table has accelerators and no server CPUs, so a
    CPU is pointed at peaks from its own sheet, never at a row of the table."""
    unmatched = [r for r in records if r.get("status") == "ok" and r.get("chip") is None]
    cpus = {r.get("device_name") for r in unmatched if r.get("backend_kind") == "cpu"}
    return [
        f"no spec row matches {n!r} (results/chips.toml): its roofline rests on measured ceilings only; "
        + (
            "the table has no server CPUs: give its sheet's --bench-peak-gbps / --bench-peak-tflops"
            if n in cpus
            else "name the chip with --bench-chip or give --bench-peak-gbps / --bench-peak-tflops"
        )
        for n in sorted({r.get("device_name") for r in unmatched}, key=str)
    ]


def _compare_with_baseline(tr, config, records) -> None:
    from chipbench.judging.compare import best_baseline, compare_records
    from chipbench.publishing.record import read_records
    from chipbench.publishing.report import render_comparison

    path = config.getoption("--bench-baseline") or baselines_dir(config)
    if not Path(path).exists():
        return
    try:
        base, across = best_baseline(records, read_records(path, on_error="skip", warn=tr.write_line))
    except Exception as e:  # a broken baseline never costs the run its results
        tr.write_line(f"baseline comparison skipped: {e}")
        return
    tr.section("chipbench vs baseline")
    if not base:
        tr.write_line(f"no baseline in {path} matches these cases")
        return
    result = compare_records(records, base, across_devices=across)
    devices = sorted({r["base_device"] for r in result.rows})
    tr.write_line(
        f"baseline: {path} (device: {', '.join(devices)})"
        + (" - no baseline on this device: shown across devices, for information only" if across else "")
    )
    tr.write_line(render_comparison(result, "md", None, show_unmatched=False))
