"""The pytest plugin: `pytest --benchmark` runs the benchmark suite on this machine's backends.

Registered through the `pytest11` entry point. Without `--benchmark` it does nothing, so plain
`pytest` runs only the project's own tests. With it, collection is replaced by the suite in
bench/benchmark_suite.py, one test per case, each timed through pytest-benchmark's fixture in
pedantic mode, with the harness's own metrics in `extra_info` and a record per case appended
to a JSON-lines file.
"""

from __future__ import annotations

import os
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
    g.addoption(
        "--bench-pytest-table",
        action="store_true",
        default=False,
        help="also print pytest-benchmark's own table (seconds per round); off unless asked",
    )


def _options(config):
    from chipbench.measuring.suite import suite_options

    return suite_options(lambda name: config.getoption("--bench-" + name))


def pytest_configure(config):
    if not config.getoption("--benchmark"):
        return  # a pytest run without --benchmark: the plugin changes nothing
    from chipbench import use_huge_pages

    use_huge_pages()
    from chipbench.backends import distributed
    from chipbench.publishing.record import default_path
    from chipbench.session import Session

    try:
        opts = _options(config)
        out = config.getoption("--bench-out") or default_path(results_dir(config) / "runs")
        session = Session.open(
            opts,
            out,
            chip=config.getoption("--bench-chip"),
            peak_gbps=config.getoption("--bench-peak-gbps"),
            peak_tflops=config.getoption("--bench-peak-tflops"),
            check=not config.getoption("--bench-no-check"),
            ceiling_window=config.getoption("--bench-ceiling-window"),
            progress=_progress(config),
            prefix="--bench-",
            fresh=config.getoption("--bench-fresh"),
            wide=config.getoption("--bench-wide"),
        )
    except UsageError as e:
        raise pytest.UsageError(str(e)) from None
    if not distributed.is_lead():
        _follow(config)
    setattr(config, _KEY, session)
    config.args[:] = [str(SUITE_FILE)]  # collect the suite, not the project's tests


def _progress(config):
    """The suite's progress display under pytest: on the terminal pytest started on (a copy of its
    stderr taken now, before any test's output is captured), live when that is a terminal, a line
    per stage when it is a log; none with -q. While it shows, pytest's own per-test letters give way
    to each case's outcome line (a failure is still pytest's: the summary lists it)."""
    from chipbench.publishing.progress import Progress

    if config.get_verbosity() < 0:
        return Progress()
    try:
        stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    except OSError:
        return Progress()
    live = stream.isatty() and os.environ.get("TERM") != "dumb"
    config.add_cleanup(stream.close)
    return Progress(stream, live=live)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    """A suite case's letter (".", "s") gives way to its outcome line while the progress shows."""
    session = getattr(config, _KEY, None)
    if session is None or session.progress.quiet or config.get_verbosity() != 0:
        return None
    if report.when == "call" and report.passed:
        return "passed", "", "PASSED"
    if report.when == "setup" and report.skipped:  # a backend this machine lacks: the summary says why
        return "skipped", "", "SKIPPED"
    return None


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
    session = getattr(metafunc.config, _KEY, None)
    if session is None or "chipbench_case" not in metafunc.fixturenames:
        return
    params = [
        pytest.param(p.case, id=p.label, marks=[pytest.mark.skip(reason=p.skip_reason)] if p.skip_reason else [])
        for p in session.planned
    ]
    metafunc.parametrize("chipbench_case", params)


@pytest.fixture
def chipbench_suite(request):
    session = getattr(request.config, _KEY, None)
    if session is None:
        pytest.skip("the chipbench suite runs only under `pytest --benchmark`")
    return session


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    from chipbench.measuring import env

    session = getattr(config, _KEY, None)
    machine_info["chipbench"] = dict(session.host if session else env.host_facts())
    entries = session.entries if session else {}
    machine_info["chipbench"]["backends"] = {
        n: ("available" if e.available else e.probe.reason) for n, e in entries.items()
    }


def pytest_sessionstart(session):
    """pytest-benchmark's own table (seconds per round, "OPS") repeats the suite's cases in other
    units: shown only when asked for, with --bench-pytest-table or an option of its own that needs it."""
    config = session.config
    suite = getattr(config, _KEY, None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if suite is not None and reporter is not None and not suite.progress.quiet and config.get_verbosity() == 0:
        reporter.showfspath = False  # "bench/benchmark_suite.py ....": each case's outcome line says more
    bench = getattr(config, "_benchmarksession", None)
    if suite is None or bench is None:
        return
    o = config.option
    asked = o.bench_pytest_table or getattr(o, "benchmark_verbose", False)
    asked = asked or getattr(o, "benchmark_histogram", None) or getattr(o, "benchmark_compare", None)
    if not asked:
        bench.quiet = True


def pytest_sessionfinish(session):
    suite = getattr(session.config, _KEY, None)
    if suite is not None:
        suite.release()
        suite.progress.close()


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, _KEY, None)
    if session is None:
        return
    from chipbench.backends import distributed

    if not distributed.is_lead():  # rank 0 prints the launch's results (see _follow)
        return
    terminalreporter.section("chipbench results")
    for line in session.summary_lines():
        terminalreporter.write_line(line)
    comparison = None
    if session.records:
        terminalreporter.write_line(session.saved_line())
        comparison = _compare_with_baseline(terminalreporter, config, session.records, session.wide)
    if config.get_verbosity() >= 0:
        terminalreporter.write_line(session.time_line())
        for line in session.next_lines(comparison, compared=comparison is not None):
            terminalreporter.write_line(line)


def _compare_with_baseline(tr, config, records, wide: bool = False):
    """The run beside its best baseline: a short line per case (the whole table with
    --bench-wide); the comparison, or None when there was none."""
    from chipbench.judging.compare import best_baseline, compare_records
    from chipbench.publishing.record import read_records
    from chipbench.publishing.report import render_comparison

    path = config.getoption("--bench-baseline") or baselines_dir(config)
    if not Path(path).exists():
        return None
    try:
        base, across = best_baseline(records, read_records(path, on_error="skip", warn=tr.write_line))
    except Exception as e:  # a broken baseline never costs the run its results
        tr.write_line(f"baseline comparison skipped: {e}")
        return None
    tr.section("chipbench vs baseline")
    if not base:
        tr.write_line(f"no baseline in {path} matches these cases")
        return None
    result = compare_records(records, base, across_devices=across)
    devices = sorted({r["base_device"] for r in result.rows})
    tr.write_line(
        f"baseline: {path} (device: {', '.join(devices)})"
        + (" - no baseline on this device: shown across devices, for information only" if across else "")
    )
    tr.write_line(render_comparison(result, "md" if wide else "text", None, show_unmatched=False).rstrip("\n"))
    return result
