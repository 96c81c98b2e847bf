"""The benchmark suite `pytest --benchmark` collects: one test per planned case (bench/plugin.py).

Each test hands its case to the run's session (chipbench.session), the same one `chipbench run`
drives, with pytest-benchmark's pedantic mode as the timer: with one trial per case (the default)
one of its rounds is one generation, on a model shared with the previous case when it is the same;
with `--bench-repeats K` one of its rounds is one whole trial in a worker process. The harness's
own per-token metrics are in the records either way. Every record is appended as soon as it
exists; a failing case is recorded as failed, with its reason, before the test fails, and the
other cases still run.
"""

import pytest

from chipbench.measuring.metrics import HEADLINE
from chipbench.measuring.runner import NothingTimed


def test_case(chipbench_case, chipbench_suite, benchmark):
    case, session = chipbench_case, chipbench_suite

    def pedantic(call, rounds: int, warmup: int) -> None:
        benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup, iterations=1)

    try:
        records = session.run(case, timer=pedantic)
    except NothingTimed:  # --benchmark-disable runs the function once, as a warmup would
        pytest.skip("pytest-benchmark is disabled: nothing was timed, no record written")
    if records[0]["status"] != "ok" and records[0]["error"].startswith("timing self-test"):
        pytest.fail(f"{case.id}: {records[0]['error']}", pytrace=False)  # the session refused the case
    failed = [r for r in records if r["status"] != "ok"]
    _extra_info(benchmark, case, records, session)
    if failed:
        pytest.fail(f"{case.id}: {len(failed)} of {len(records)} trial(s) failed: {failed[0]['error']}", pytrace=False)


def _extra_info(benchmark, case, records, session) -> None:
    """Every trial's whole record (`chipbench report` reads --benchmark-json files), and the headline
    figures of the last ok trial for pytest-benchmark's own tables."""
    benchmark.extra_info.update(
        {"chipbench_records": records, "trials": len(records), "records_file": str(session.writer.path)}
    )
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return
    record, headline = ok[-1], HEADLINE[case.workload.kind]
    benchmark.extra_info.update(
        {
            "record_id": record["record_id"],
            **{k: record[k] for k in ("backend", "device_name", "model", "dtype", "workload", "batch")},
            **{f"{m}_median": record[f"{m}_median"] for m in (headline, "ttft_s", "tpot_s", "e2e_s")},
            "peak_mem_bytes": record["peak_mem_bytes"],
        }
    )
