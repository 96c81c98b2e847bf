"""The benchmark suite `pytest --benchmark` collects: one test per planned case (bench/plugin.py).

Each test loads the model (shared with the previous case when it is the same), times its rounds
through pytest-benchmark's pedantic mode, and appends a record. A failing case is recorded as
failed, with its reason, before the test fails; the other cases still run.
"""

import pytest

from bench.measuring.metrics import HEADLINE
from bench.measuring.runner import CaseRun, build_record, failed_record


def test_case(chipbench_case, chipbench_suite, benchmark):
    from backends.registry import get_backend
    from bench.measuring import env

    case, state = chipbench_case, chipbench_suite
    backend = get_backend(case.backend, state.entries)
    device = {}
    run = CaseRun(backend, case)
    try:
        device = env.device_facts(backend.info())
        run.setup(handle=state.handle_for(backend, case))
        benchmark.pedantic(run.round, rounds=case.rounds, warmup_rounds=case.warmup, iterations=1)
        timed = run.rounds_done[case.warmup:]
        if not timed:  # --benchmark-disable runs the function once, as a warmup would
            pytest.skip("pytest-benchmark is disabled: nothing was timed, no record written")
        record = build_record(run, timed, device, state.host, state.ceilings_for(backend, case), state.chip)
        record.update(state.correctness_for(backend, case, run.handle))
    except Exception as e:
        state.release()  # free the device (after an OOM, say) before the next case
        record = failed_record(case, e, device, state.host)
        state.writer.write(record)
        state.records.append(record)
        pytest.fail(f"{case.id} failed: {record['error']}", pytrace=False)
    state.writer.write(record)
    state.records.append(record)
    headline = HEADLINE[case.workload.kind]
    benchmark.extra_info.update({
        "chipbench_record": record,  # the whole record: `chipbench report` reads --benchmark-json files
        "record_id": record["record_id"],
        "records_file": str(state.writer.path),
        **{k: record[k] for k in ("backend", "device_name", "model", "dtype", "workload", "batch")},
        **{f"{m}_median": record[f"{m}_median"] for m in
           (headline, "ttft_s", "tpot_s", "e2e_s")},
        "peak_mem_bytes": record["peak_mem_bytes"],
    })
