"""One suite session: what `chipbench run` and `pytest --benchmark` both run.

A session plans the cases from the suite's options, and runs each: the backend's timing self-test
first (once per backend and generation loop; a backend that fails it reports no number), the
device's measured ceilings (once per device and dtype, shared by the backends on it), then one
trial in this process on a model shared with the previous case when it is the same, or K trials
in worker processes (`repeats`). Every record is judged (roofline, correctness gate, once per
backend, model, dtype and path) and written as soon as it exists; a case that fails becomes a
failed record and the next one runs.

The two entry points differ only in who times the rounds (`timer`: pytest-benchmark's pedantic
mode, or a plain loop) and where the lines go.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from chipbench.backends import distributed
from chipbench.backends.ceilings import use_window
from chipbench.backends import registry
from chipbench.backends.registry import get_backend
from chipbench.judging.chips import resolve_chip
from chipbench.judging.trial import TrialJudge
from chipbench.measuring import env
from chipbench.measuring.runner import (
    Case,
    failed_record,
    measure_case,
    new_series,
    refuse_if_too_big,
    shared_ceilings,
    timed_loop,
)
from chipbench.measuring.selftest import probe_cache_len, suite_check, timing_loop
from chipbench.measuring.suite import Planned, SuiteOptions, plan
from chipbench.measuring.trials import Series
from chipbench.models.zoo import get_model
from chipbench.publishing.record import RecordWriter
from chipbench.publishing.report import summary_table


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Session:
    """What the suite shares across its cases: the plan, the writer, the verdicts and measurements
    made once per run, and the one model kept loaded."""

    planned: list[Planned]
    entries: dict
    writer: RecordWriter
    chip: object = None  # a spec row the user chose; None: match each device by its name
    check: bool = True
    repeats: int = 1  # independent trials per case
    notes: list[str] = field(default_factory=list)  # lines for the summary (a chip option's warning)
    say: object = _stderr  # progress lines; under torchrun rank 0 alone speaks
    prefix: str = "--"  # how this entry point spells the suite's options ("--bench-" under pytest)
    host: dict = field(default_factory=env.host_facts)
    records: list[dict] = field(default_factory=list)
    gates: dict = field(default_factory=dict)  # correctness verdicts, by judging.trial.gate_key
    ceilings: dict = field(default_factory=dict)  # (device kind, device, dtype) -> measured ceilings
    selftests: dict = field(default_factory=dict)  # (backend, timing loop) -> (status, text)
    loaded: tuple | None = None  # (key, backend, handle): consecutive cases on one model share it

    @classmethod
    def open(
        cls,
        opts: SuiteOptions,
        out: str,
        *,
        chip: str | None = None,
        peak_gbps: float | None = None,
        peak_tflops: float | None = None,
        check: bool = True,
        ceiling_window: float | None = None,
        say=_stderr,
        prefix: str = "--",
    ) -> Session:
        """Plan the suite and open its record file; a bad option raises UsageError before anything runs."""
        entries = registry.discover()
        planned = plan(opts, entries)
        use_window(ceiling_window)
        notes: list[str] = []
        spec_row = resolve_chip(chip, peak_gbps, peak_tflops, warn=notes.append)
        speak = say if distributed.is_lead() else (lambda line: None)
        return cls(planned, entries, RecordWriter(out), spec_row, check, opts.repeats, notes, speak, prefix)

    @property
    def cases(self) -> list[Case]:
        return [p.case for p in self.planned if p.case is not None and not p.skip_reason]

    # -- one case ------------------------------------------------------------------------------

    def run(self, case: Case, timer=timed_loop) -> list[dict]:
        """Every trial of `case`, each record written as soon as it exists. `timer(round, rounds,
        warmup)` runs the timed calls (a round in-process, a whole trial with repeats)."""
        backend = get_backend(case.backend, self.entries)
        status, selftest = self.selftest_for(backend, case)
        if status != "passed":
            return [self._refused(backend, case, status, selftest)]
        self.say(f"running {case.id}" + (f" ({self.repeats} trials)" if self.repeats > 1 else "") + " ...")
        judge = TrialJudge(shared_ceilings(self.ceilings, backend, case.dtype), self.chip, self.check, self.gates)

        def keep(rec: dict) -> None:
            rec["timing_selftest"] = selftest
            self.keep(rec)

        if self.repeats > 1:
            self.release()  # the workers load their own copies: free this process's first
            series = Series(
                backend, case, self.repeats, entries=self.entries, host=self.host, judge=judge, on_record=keep
            )
            timer(series.run_one, self.repeats, 0)
            return series.run_rest()  # a timer that ran fewer (pytest-benchmark disabled): the others
        origin = self.entries[case.backend].origin()
        try:
            handle = self.handle_for(backend, case)
        except Exception as e:  # the load failed (out of memory, say): the case fails, the run goes on
            self.release()
            rec = failed_record(case, e, {**origin, **self._device(backend)}, self.host, backend)
            rec.update(new_series().fields())
        else:
            rec = measure_case(backend, case, self.host, new_series(), origin, judge=judge, handle=handle, timer=timer)
            if rec["status"] != "ok":
                self.release()  # free the device (after an OOM, say) before the next case
        keep(rec)
        return [rec]

    @staticmethod
    def _device(backend) -> dict:
        try:
            return env.device_facts(backend.info())
        except Exception:  # a device that cannot describe itself: its record says less, the run goes on
            return {}

    def _refused(self, backend, case: Case, status: str, selftest: str) -> dict:
        why = (
            "timing self-test failed, so no number from this backend is reported"
            if status == "failed"
            else "timing self-test could not run, so this case reports no number"
        )
        rec = failed_record(case, f"{why}: {selftest}", self.entries[case.backend].origin(), self.host, backend)
        rec.update(new_series().fields(), timing_selftest=selftest)
        self.keep(rec)
        return rec

    def keep(self, rec: dict) -> None:
        self.writer.write(rec)
        self.records.append(rec)

    # -- what a run measures once --------------------------------------------------------------

    def selftest_for(self, backend, case: Case) -> tuple[str, str]:
        """The backend's timing self-test, once per run and generation loop (on the first case's
        model and dtype that it can run on): (passed | failed | error, text)."""
        loop = timing_loop(backend, case.mode)
        key = (case.backend, loop)  # each loop the run times is proved once
        if key in self.selftests:
            return self.selftests[key]
        self.say(f"timing self-test of {case.backend}" + (f" ({loop} loop)" if loop != "lock-step" else "") + " ...")
        self.release()  # the self-test loads its own copies
        status, text = suite_check(backend, case.model, case.dtype, case.mode, probe_cache_len(case))
        self.release()  # what the self-test's copies left
        if status != "error":  # could not run on this model: the next case's model tries again
            self.selftests[key] = (status, text)
        return status, text

    def handle_for(self, backend, case: Case):
        """The case's loaded model: the previous case's when it is the same model, else a fresh load."""
        key = (case.backend, case.model, case.dtype, case.weights_dir, case.workload.seed, case.mode)
        if self.loaded and self.loaded[0] == key:
            return self.loaded[2]
        self.release()
        refuse_if_too_big(backend, case)
        handle = backend.load(get_model(case.model), case.dtype, seed=case.workload.seed, **case.load_kwargs())
        self.loaded = (key, backend, handle)
        return handle

    def release(self) -> None:
        if self.loaded:
            self.loaded[1].close(self.loaded[2])
            self.loaded = None
        # A CPU case's peak memory is the process's resident set: memory the allocator kept from an
        # earlier model (another backend's, the self-test's) would count in the next case's peak.
        env.release_host_memory()

    # -- the end -------------------------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        """The results table and what a reader needs beside it: skipped backends, the notes, devices
        no spec row matched, matmul ceilings another dtype set."""
        lines = [summary_table(self.records) if self.records else "no case ran"]
        lines += [f"skipped backend {p.label}: {p.skip_reason}" for p in self.planned if p.skip_reason]
        return lines + self.notes + unmatched_devices(self.records, self.prefix) + widened_ceilings(self.records)

    def saved_line(self) -> str:
        return f"{len(self.records)} record(s) appended to {self.writer.path}"

    def exit_code(self) -> int:
        return 0 if all(r["status"] == "ok" for r in self.records) else 1


def widened_ceilings(records) -> list[str]:
    """A line per device and dtype whose matmul ceiling another dtype's product set (fp32's for a
    16-bit dtype the device has no fast product for: chipbench.backends.ceilings), so a reader of its
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


def unmatched_devices(records, prefix: str = "--") -> list[str]:
    """A line per device no spec row matched. The table has accelerators and no server CPUs, so a
    CPU is pointed at peaks from its own sheet, never at a row of the table."""
    unmatched = [r for r in records if r.get("status") == "ok" and r.get("chip") is None]
    cpus = {r.get("device_name") for r in unmatched if r.get("backend_kind") == "cpu"}
    return [
        f"no spec row matches {n!r} (results/chips.toml): its roofline rests on measured ceilings only; "
        + (
            f"the table has no server CPUs: give its sheet's {prefix}peak-gbps / {prefix}peak-tflops"
            if n in cpus
            else f"name the chip with {prefix}chip or give {prefix}peak-gbps / {prefix}peak-tflops"
        )
        for n in sorted({r.get("device_name") for r in unmatched}, key=str)
    ]
