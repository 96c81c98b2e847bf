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

import math
import shlex
import textwrap
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import chipbench

from chipbench.backends import distributed
from chipbench.backends.ceilings import Ceilings, use_window, window_s
from chipbench.backends import registry
from chipbench.backends.registry import get_backend
from chipbench.judging.chips import resolve_chip
from chipbench.judging.trial import TrialJudge
from chipbench.measuring import env
from chipbench.measuring.metrics import HEADLINE
from chipbench.measuring.runner import (
    Case,
    beside_ceilings,
    ceiling_dtype,
    failed_record,
    measure_case,
    measure_ceilings,
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
from chipbench.publishing.progress import Progress, clock
from chipbench.publishing.report import summary_table
from chipbench.stash import Stash, age_text, use_fresh

# A timing self-test that passed is kept this long for the same adapter, device and software (the
# key: Session._selftest_key); --fresh proves it again.
SELFTEST_KEPT = "7 days"
SELFTESTS = Stash("selftest", 7 * 86400)
# The device's measured ceilings are kept a day for the same device, host and software, and each
# run checks them with 3 quick rounds: kept when that check reads at least KEEP_BELOW of them (and
# raised where it reads more), else measured again (--fresh: always).
CEILINGS = Stash("ceilings", 86400)
KEEP_BELOW = 0.85


# Where a run's time goes (the end line, and .ci/main_job.py): the rounds include each record's own
# work; the gate and the ceilings beside a case are their own stages.
STAGES = ("self-test", "ceilings", "build", "gate", "rounds")
WIDTH = 120  # the summary's width, unless --wide


def outcome_line(records: list[dict]) -> str:
    """A case's outcome in one line: its headline figure, rounds and verdict, or why it failed."""
    if not records:
        return "failed before any record"
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return f"FAILED: {str(records[0].get('error') or '')[:160]}"
    r = ok[-1]
    metric = HEADLINE.get(r.get("kind"), "decode_tok_per_s")
    value = r.get(f"{metric}_median")
    figure = f"{value:,.1f} {'t/s' if metric.endswith('tok_per_s') else metric}" if value is not None else "-"
    trials = f"{len(ok)} trials × " if len(records) > 1 else ""
    gate = {True: "correct", False: "INCORRECT", None: "unchecked"}[r.get("correct")]
    failed = f", {len(records) - len(ok)} trial(s) FAILED" if len(ok) < len(records) else ""
    return f"{figure}, {trials}{r.get('rounds')} rounds, {gate}{failed}"


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
    progress: Progress = field(default_factory=Progress)  # what a person watching sees (quiet by default)
    prefix: str = "--"  # how this entry point spells the suite's options ("--bench-" under pytest)
    wide: bool = False  # the summary's every column
    host: dict = field(default_factory=env.host_facts)
    records: list[dict] = field(default_factory=list)
    gates: dict = field(default_factory=dict)  # correctness verdicts, by judging.trial.gate_key
    ceilings: dict = field(default_factory=dict)  # (device kind, device, dtype) -> measured ceilings
    selftests: dict = field(default_factory=dict)  # (backend, timing loop) -> (status, text)
    loaded: tuple | None = None  # (key, backend, handle): consecutive cases on one model share it
    spent: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))  # seconds by stage
    started: float = field(default_factory=time.perf_counter)
    _open: list = field(default_factory=list, repr=False)  # the stages running now, innermost last

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
        progress: Progress | None = None,
        prefix: str = "--",
        fresh: bool = False,
        wide: bool = False,
    ) -> Session:
        """Plan the suite and open its record file; a bad option raises UsageError before anything runs.
        `progress`: the display (none when None; under torchrun rank 0 alone shows one)."""
        entries = registry.discover()
        planned = plan(opts, entries)
        use_window(ceiling_window)
        use_fresh(fresh)
        notes: list[str] = []
        spec_row = resolve_chip(chip, peak_gbps, peak_tflops, warn=notes.append)
        shown = progress if progress is not None and distributed.is_lead() else Progress()
        session = cls(planned, entries, RecordWriter(out), spec_row, check, opts.repeats, notes, shown, prefix, wide)
        shown.machine = session.machine_key()
        shown.plan([c.id for c in session.cases])
        return session

    def machine_key(self) -> dict:
        """The host and software facts that key what is kept between runs on this machine."""
        return {k: v for k, v in self.host.items() if k not in ("env_runner", "env_os")}

    @contextmanager
    def stage(self, name: str, text: str):
        """Time a stage of the run (STAGES) and show it. A stage inside another (the gate inside a
        case's rounds) is its own: the outer one's time is what the inner one did not take."""
        start = time.perf_counter()
        self._open.append(name)
        try:
            with self.progress.stage(text):
                yield
        finally:
            self._open.pop()
            took = time.perf_counter() - start
            self.spent[name] = self.spent.get(name, 0.0) + took
            if self._open:
                self.spent[self._open[-1]] -= took

    @property
    def cases(self) -> list[Case]:
        return [p.case for p in self.planned if p.case is not None and not p.skip_reason]

    # -- one case ------------------------------------------------------------------------------

    def run(self, case: Case, timer=timed_loop) -> list[dict]:
        """Every trial of `case`, each record written as soon as it exists. `timer(round, rounds,
        warmup)` runs the timed calls (a round in-process, a whole trial with repeats)."""
        self.progress.start_case(case.id)
        records: list[dict] = []
        try:
            records = self._run(case, timer)
        finally:
            self.progress.end_case(case.id, outcome_line(records))
        return records

    def _run(self, case: Case, timer) -> list[dict]:
        backend = get_backend(case.backend, self.entries)
        status, selftest = self.selftest_for(backend, case)
        if status != "passed":
            return [self._refused(backend, case, status, selftest)]
        ceilings = shared_ceilings(self.ceilings, backend, case.dtype, measure=self.kept_or_measured)
        judge = TrialJudge(ceilings, self.chip, self.check, self.gates, stage=self.stage)
        listener = self.progress

        def keep(rec: dict) -> None:
            rec["timing_selftest"] = selftest
            rec["dtype_reason"] = case.dtype_reason  # a worker's record is made without it
            self.keep(rec)

        if self.repeats > 1:
            self.release()  # the workers load their own copies: free this process's first
            series = Series(
                backend, case, self.repeats, entries=self.entries, host=self.host, judge=judge, on_record=keep
            )
            self.progress.phase("trial", self.repeats)

            def one_trial():
                self.progress.tick()
                return series.run_one()

            with self.stage("rounds", f"{self.repeats} trials in worker processes"):
                timer(one_trial, self.repeats, 0)
                return series.run_rest()  # a timer that ran fewer (pytest-benchmark disabled): the others
        origin = self.entries[case.backend].origin()
        try:
            handle = self.handle_for(backend, case)
        except Exception as e:  # the load failed (out of memory, say): the case fails, the run goes on
            self.release()
            rec = failed_record(case, e, {**origin, **self._device(backend)}, self.host, backend)
            rec.update(new_series().fields())
        else:
            with self.stage("rounds", ""):
                rec = measure_case(
                    backend,
                    case,
                    self.host,
                    new_series(),
                    origin,
                    judge=judge,
                    handle=handle,
                    timer=timer,
                    listener=listener,
                )
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
        stash_key = self._selftest_key(backend, case, loop)
        # under torchrun rank 0's stash on every rank: a rank that proves again alone waits forever
        kept = distributed.lead(SELFTESTS.get(stash_key) if stash_key else None)
        if kept is not None:  # passed on this backend, device and software lately: not proved again
            status, text = "passed", f"{kept[0]} (kept: {age_text(kept[1])}; the self-test is kept {SELFTEST_KEPT})"
            self.selftests[key] = (status, text)
            return status, text
        with self.stage(
            "self-test", f"timing self-test of {case.backend}" + (f" ({loop} loop)" if loop != "lock-step" else "")
        ):
            self.release()  # the self-test loads its own copies
            status, text = suite_check(backend, case.model, case.dtype, case.mode, probe_cache_len(case))
            self.release()  # what the self-test's copies left
        if status != "error":  # could not run on this model: the next case's model tries again
            self.selftests[key] = (status, text)
        if status == "passed" and stash_key:  # a failure is proved again every run
            SELFTESTS.put(stash_key, text)
        return status, text

    def _selftest_key(self, backend, case: Case, loop: str) -> dict | None:
        """What a self-test's verdict depends on: the adapter and its version, the device and its
        driver and runtime, the software under it, the loop, model and dtype it ran."""
        try:
            device = env.device_facts(backend.info())
        except Exception:  # a device that cannot describe itself is proved every run
            return None
        software = {k: self.host.get(k) for k in ("env_torch", "env_transformers", "env_python", "env_cpu_model")}
        return {
            "backend": case.backend,
            **self.entries[case.backend].origin(),
            **device,
            **software,
            "harness": env.provenance(0)["git_commit"] or chipbench.__version__,
            "loop": loop,
            "model": case.model,
            "dtype": case.dtype,
            "mode": case.mode,
            "cache_len": probe_cache_len(case),
        }

    def kept_or_measured(self, backend, dtype: str):
        """The device's ceilings: an earlier run's on this machine (CEILINGS) when a quick measurement
        now (3 rounds) reads at least KEEP_BELOW of them, raised to the quick rounds' rates where
        those are higher (a ceiling is the best rate seen: this VM's copy bandwidth read 0.9-1.6x of
        a 3 s window's best from one 3-round measurement to the next); else measured now over the
        window, and kept for the next run. A device slower now than then (a busy neighbour) is so
        measured again, and shares rest on today's machine."""
        with self.stage("ceilings", f"ceilings of {backend.name} in {dtype}"):
            return self._kept_or_measured(backend, dtype)

    def _kept_or_measured(self, backend, dtype: str):
        key = self._ceilings_key(backend, dtype)
        # rank 0's on every rank: the quick rounds and the measurement are every rank's at once (lockstep)
        kept = distributed.lead(CEILINGS.get(key) if key else None)
        if kept is not None:
            try:
                then = Ceilings(**kept[0])
                if not all(math.isfinite(x) and x > 0 for x in (then.bandwidth_gb_per_s, then.tflops)):
                    then = None  # not what a measurement gives: measured again
            except TypeError:  # kept by another version of the fields, or not numbers
                then = None
            quick = beside_ceilings(backend, dtype) if then else None
            if quick is not None:
                low = min(quick.bandwidth_gb_per_s / then.bandwidth_gb_per_s, quick.tflops / then.tflops)
                if low >= KEEP_BELOW:  # a ceiling is the best rate seen: quick rounds above it raise it
                    return replace(
                        then,
                        bandwidth_gb_per_s=max(then.bandwidth_gb_per_s, quick.bandwidth_gb_per_s),
                        tflops=max(then.tflops, quick.tflops),
                        kept_from=kept[1],
                        revalidation=round(low, 4),
                    )
        now = measure_ceilings(backend, dtype)
        if key and isinstance(now, Ceilings):
            CEILINGS.put(key, asdict(now))
        return now

    def _ceilings_key(self, backend, dtype: str) -> dict | None:
        try:
            device = env.device_facts(backend.info())
        except Exception:
            return None
        return {
            **device,
            **self.machine_key(),
            "dtype": ceiling_dtype(backend, dtype),
            "window_s": window_s(device["backend_kind"] or "cpu"),
        }

    def handle_for(self, backend, case: Case):
        """The case's loaded model: the previous case's when it is the same model, else a fresh load."""
        key = (case.backend, case.model, case.dtype, case.weights_dir, case.workload.seed, case.mode)
        if self.loaded and self.loaded[0] == key:
            return self.loaded[2]
        self.release()
        refuse_if_too_big(backend, case)
        with self.stage("build", f"loading {case.model} in {case.dtype}"):
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
        no spec row matched, matmul ceilings another dtype set. Unless `wide`, it all fits 120
        columns (the compact table, the lines wrapped)."""
        lines = [summary_table(self.records, wide=self.wide) if self.records else "no case ran"]
        lines += [f"skipped backend {p.label}: {p.skip_reason}" for p in self.planned if p.skip_reason]
        lines += self.notes + unmatched_devices(self.records, self.prefix) + widened_ceilings(self.records)
        if self.wide:
            return lines
        return [w for line in lines for part in line.split("\n") for w in (textwrap.wrap(part, WIDTH) or [""])]

    def saved_line(self) -> str:
        return f"{len(self.records)} record(s) appended to {self.writer.path}"

    def time_line(self) -> str:
        """Where the run's time went, by stage."""
        total = time.perf_counter() - self.started
        parts = [f"{name} {clock(self.spent.get(name, 0.0))}" for name in STAGES if self.spent.get(name, 0.0) >= 0.5]
        other = total - sum(self.spent.values())
        return f"took {clock(total)}: " + ", ".join(parts + [f"other {clock(max(other, 0.0))}"])

    def next_lines(self, comparison=None, compared: bool = False) -> list[str]:
        """The one or two commands that make sense after this run: its report, and what its evidence
        lacks (a machine that differs from its baseline's, a single trial per case, no comparison)."""
        if not self.records:
            return []
        path = shlex.quote(str(self.writer.path))
        steps = [f"chipbench report {path}   (the full table; --format md or html to publish)"]
        differs = [r for r in (comparison.rows if comparison is not None else []) if r["verdict"] == "machine differs"]
        failed = [r for r in self.records if r.get("status") != "ok" or r.get("correct") is False]
        if failed:
            steps.append(f"{failed[0].get('rerun') or 'chipbench run ...'}   (the first failing case, alone)")
        elif differs:
            steps.append(
                f"{self.prefix}repeats 3, a few runs, then chipbench baseline RUN...   (this machine's own "
                "baseline: its ceilings differ from the baseline's; or rerun when it is quiet)"
            )
        elif self.repeats < 2:
            steps.append(f"{self.prefix}repeats 3   (independent trials: what a baseline or a CI gate needs)")
        elif not compared:
            steps.append(f"chipbench compare {path} --baseline results/baselines   (ratios, intervals, verdicts)")
        return ["next:"] + [
            line
            for step in steps[:2]
            for line in textwrap.wrap(step, WIDTH, initial_indent="  ", subsequent_indent="    ")
        ]

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
