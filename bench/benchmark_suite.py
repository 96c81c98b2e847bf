"""The benchmark suite `pytest --benchmark` collects: one test per planned case (bench/plugin.py).

With one trial per case (the default), each test loads the model (shared with the previous case
when it is the same) and times its rounds through pytest-benchmark's pedantic mode, one round a
generation. With `--bench-repeats K`, each of the K trials is a fresh model load, warmup and
rounds in a worker process (bench/measuring/trials.py), and pytest-benchmark times the trials
(one of its rounds is one whole trial); the harness's own per-token metrics are in the records
either way. Every trial's record is appended as soon as it finishes; a failing case is recorded
as failed, with its reason, before the test fails, and the other cases still run.
"""

import pytest

from chipbench.measuring import hostload, telemetry
from chipbench.measuring.metrics import HEADLINE
from chipbench.measuring.runner import (
    CaseRun,
    build_record,
    failed_record,
    new_series,
    soak_fields,
    soak_rounds,
    soak_unfilled,
)


def test_case(chipbench_case, chipbench_suite, benchmark):
    case, state = chipbench_case, chipbench_suite
    refused, selftest = _selftest(case, state)
    if refused is not None:
        pytest.fail(f"{case.id}: {refused['error']}", pytrace=False)

    def keep(rec: dict) -> None:
        rec["timing_selftest"] = selftest
        state.record(rec)

    records = _trials(case, state, benchmark, keep) if state.repeats > 1 else [_one_trial(case, state, benchmark, keep)]
    failed = [r for r in records if r["status"] != "ok"]
    _extra_info(benchmark, case, records, state)
    if failed:
        pytest.fail(f"{case.id}: {len(failed)} of {len(records)} trial(s) failed: {failed[0]['error']}", pytrace=False)


def _selftest(case, state) -> tuple[dict | None, str]:
    """(a failed record or None, the self-test's text): no number is reported from a backend
    whose timing self-test failed, nor from a case whose model the self-test could not run on."""
    from chipbench.backends.registry import get_backend

    backend = get_backend(case.backend, state.entries)
    status, text = state.selftest_for(backend, case)
    if status == "passed":
        return None, text
    why = (
        "timing self-test failed, so no number from this backend is reported"
        if status == "failed"
        else "timing self-test could not run, so this case reports no number"
    )
    rec = failed_record(case, f"{why}: {text}", state.entries[case.backend].origin(), state.host, backend)
    rec.update(new_series().fields(), timing_selftest=text)
    state.record(rec)
    return rec, text


def _one_trial(case, state, benchmark, keep) -> dict:
    """The case in this process: the loaded model is shared with the previous case when it is the same."""
    from chipbench.backends.registry import get_backend
    from chipbench.measuring import env

    backend = get_backend(case.backend, state.entries)
    trial = new_series()
    device = state.entries[case.backend].origin()
    run = CaseRun(backend, case)
    try:
        device.update(env.device_facts(backend.info()))
        run.setup(handle=state.handle_for(backend, case))
        pids = hostload.case_pids(backend)
        before = hostload.sample(pids)
        sampler = run.sampler = telemetry.sampler_for(backend).start()
        try:
            if case.soak_s:  # sustained: warm up first, then rounds that fill the soak
                for _ in range(case.warmup):
                    run.round()
                run.rounds_done.clear()
                benchmark.pedantic(run.round, rounds=soak_rounds(case, run.windows), warmup_rounds=0, iterations=1)
                while soak_unfilled(case, run.windows, case.warmup):  # the rest of the time: in the record,
                    run.round()  # not in pytest-benchmark's stats, whose round count was fixed up front
            else:
                benchmark.pedantic(run.round, rounds=case.rounds, warmup_rounds=case.warmup, iterations=1)
        finally:
            sampler.stop()
        load = hostload.facts(before, hostload.sample(pids))
        timed = run.rounds_done if case.soak_s else run.rounds_done[case.warmup :]
        if not timed:  # --benchmark-disable runs the function once, as a warmup would
            pytest.skip("pytest-benchmark is disabled: nothing was timed, no record written")
        record = build_record(run, timed, device, state.host, state.ceilings_for(backend, case), state.chip)
        record.update(load)
        windows = run.windows[case.warmup :]
        record.update(sampler.summary(windows, run.tokens_per_round() * len(windows)))
        record.update(soak_fields(case, timed, windows))
        record.update(state.correctness_for(backend, case, run.handle))
    except Exception as e:
        state.release()  # free the device (after an OOM, say) before the next case
        record = failed_record(case, e, device, state.host, backend)
    record.update(trial.fields())
    keep(record)
    return record


def _trials(case, state, benchmark, keep) -> list[dict]:
    """K independent trials, each a fresh load in a worker process; pytest-benchmark times each trial."""
    from chipbench.backends.registry import get_backend
    from chipbench.measuring.trials import Series

    backend = get_backend(case.backend, state.entries)
    state.release()  # the workers load their own copies: free this process's first
    series = Series(
        backend,
        case,
        state.repeats,
        entries=state.entries,
        host=state.host,
        ceilings=state.ceilings_for(backend, case),
        chip=state.chip,
        check=state.check,
        on_record=keep,
    )
    benchmark.pedantic(series.run_one, rounds=state.repeats, warmup_rounds=0, iterations=1)
    return series.run_rest()  # under --benchmark-disable pedantic ran one trial: run the others


def _extra_info(benchmark, case, records, state) -> None:
    """Every trial's whole record (`chipbench report` reads --benchmark-json files), and the headline
    figures of the last ok trial for pytest-benchmark's own tables."""
    benchmark.extra_info.update(
        {"chipbench_records": records, "trials": len(records), "records_file": str(state.writer.path)}
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
