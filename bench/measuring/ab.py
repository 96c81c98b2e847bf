"""Same-machine A/B (`chipbench ab`): two arms' trials interleaved on one machine.

An arm is the suite's options with some of them changed: a backend, an execution mode, a dtype,
inductor settings for a compiled step (set in its trials' environment as TORCHINDUCTOR_*), or
another Python interpreter (a virtual environment with other versions of torch, transformers or an
engine installed, with this checkout's dependencies). Each pair runs one fresh-process
trial of each arm back to back, in alternating order (A B, B A, A B, ...; `--order fixed` keeps
A first), so slow drift and a noisy neighbour hit both arms, and the position within a pair
cancels out over an even number of pairs. Every trial's record is written as soon as it finishes,
with ab_id, ab_arm, ab_pair and ab_label, so `chipbench ab --from FILE` re-reads a run (or the part
of it that finished) and bench/judging/paired.py gives the paired ratio with its interval.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict, ValidationError

from chipbench.errors import UsageError
from chipbench.measuring import env as env_facts
from chipbench.measuring.metrics import HEADLINE
from chipbench.measuring.recordline import new_record_id
from chipbench.measuring.selftest import probe_cache_len, suite_check, timing_loop

ARM_KEYS = ("backend", "mode", "dtype", "inductor", "python", "label")
ORDERS = ("alternate", "fixed")


class ArmSpec(BaseModel):
    """What an arm changes; whatever it leaves out comes from the common options."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: str | None = None
    mode: str | None = None
    dtype: str | None = None
    inductor: str | None = None  # inductor settings, name[:value]+...: e.g. freezing+coordinate_descent_tuning
    python: str | None = None  # another interpreter: the software versions under test
    label: str | None = None


def parse_arm(text: str, which: str) -> ArmSpec:
    """`KEY=VALUE[,KEY=VALUE...]` (keys: backend, mode, dtype, python, label); an empty text changes nothing."""
    fields: dict[str, str] = {}
    for item in (x.strip() for x in (text or "").split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not value:
            raise UsageError(
                f"--{which.lower()}: {item!r} is not KEY=VALUE; keys: {', '.join(ARM_KEYS)} "
                "(e.g. mode=compiled,dtype=fp32)"
            )
        if key in fields:
            raise UsageError(f"--{which.lower()}: {key} is given twice")
        fields[key] = value
    try:
        arm = ArmSpec(**fields)
    except ValidationError as e:
        bad = ", ".join(str(err["loc"][0]) for err in e.errors())
        raise UsageError(f"--{which.lower()}: unknown key {bad}; valid keys: {', '.join(ARM_KEYS)}") from None
    if arm.inductor is not None:
        inductor_env(arm.inductor, which)  # checked now: a bad name is one line before anything runs
    if arm.python is not None:
        path = os.path.abspath(os.path.expanduser(arm.python))  # links kept: a venv's python is one
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise UsageError(
                f"--{which.lower()}: python={arm.python} is not an executable file; give the "
                "interpreter of the environment to test, e.g. python=/path/to/venv/bin/python"
            )
        arm = arm.model_copy(update={"python": path})
    return arm


def inductor_env(text: str, which: str = "B") -> dict[str, str]:
    """An arm's inductor settings as its trials' environment: `freezing+coordinate_descent_tuning`
    or `max_autotune:1` gives TORCHINDUCTOR_FREEZING=1 and so on (value 1 where none is given).
    A name must be a setting inductor reads from the environment (its config module names
    TORCHINDUCTOR_<NAME>) and one that can change the kernels (a cache, log or worker setting
    cannot, and would leave both arms' compiled paths the same)."""
    from chipbench.backends.torch_loop import NEUTRAL_FLAG

    env = {}
    for item in text.split("+"):
        name, _, value = item.strip().partition(":")
        name, value = name.strip().lower(), value.strip() or "1"
        var = f"TORCHINDUCTOR_{name.upper()}"
        eg = "e.g. inductor=freezing or inductor=coordinate_descent_tuning+freezing"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise UsageError(f"--{which.lower()}: inductor={text}: {item.strip()!r} is not a setting name; {eg}")
        if var not in _inductor_env_names():
            raise UsageError(
                f"--{which.lower()}: inductor={text}: {name} is not a setting inductor reads from the "
                f"environment (no {var} in this torch's inductor config); {eg}"
            )
        if NEUTRAL_FLAG.search(var):
            raise UsageError(
                f"--{which.lower()}: inductor={text}: {name} does not change the compiled kernels (a "
                f"cache, log or worker setting), so both arms would run the same path; {eg}"
            )
        if var in env:
            raise UsageError(f"--{which.lower()}: inductor={text}: {name} is given twice")
        env[var] = value
    return env


def _inductor_env_names() -> set[str]:
    """The TORCHINDUCTOR_* variables this torch's inductor config reads."""

    import torch._inductor.config as config

    return set(re.findall(r"TORCHINDUCTOR_[A-Z0-9_]+", inspect.getsource(config)))


def _inherited_flags() -> str:
    """What an arm that sets no inductor settings compiles with: this environment's, or the defaults."""
    from chipbench.backends.torch_loop import inductor_flags

    return (inductor_flags() or "default").replace(", ", "+").replace("=", ":")


def arm_label(arm: ArmSpec, other: ArmSpec, common: dict[str, str]) -> str:
    """The arm's name in tables: its own label, else its values of the keys either arm changes
    (the common value where only the other arm changes it)."""
    if arm.label:
        return arm.label
    compiled = (arm.mode or common["mode"]) == "compiled"  # inductor settings mean nothing to another mode
    keys = [
        k
        for k in ("backend", "mode", "dtype", "inductor", "python")
        if (getattr(arm, k) or getattr(other, k)) and (k != "inductor" or compiled)
    ]
    parts = [
        f"{k}={getattr(arm, k) or common[k]}" if k in ("python", "inductor") else getattr(arm, k) or common[k]
        for k in keys
    ]
    return " ".join(parts) or "as the other arm (A/A)"


@dataclass(frozen=True)
class Arm:
    name: str  # A or B
    spec: ArmSpec
    label: str
    backend: str
    mode: str
    dtype: str


def selftest_elsewhere(python: str, backend: str, model: str, dtype: str, mode: str = "eager") -> tuple[str, str]:
    """The timing self-test under another interpreter (its own torch): `chipbench selftest` there
    (`mode`: the decode probe's, for a loop that runs ahead of the host)."""
    from chipbench.measuring.trials import python_command, worker_deadline_s, worker_env

    try:
        proc = subprocess.run(
            python_command(
                python,
                "chipbench.cli",
                "selftest",
                "--backend",
                backend,
                "--model",
                model,
                "--dtype",
                dtype,
                "--long-prompt",
                "256",
                "--mode",
                mode,
            ),
            capture_output=True,
            text=True,
            env={**worker_env(python), env_facts.PARENT_ENV: str(os.getpid())},
            timeout=worker_deadline_s(),
        )
    except subprocess.TimeoutExpired:
        return "error", f"could not run under {python}: the self-test ran past {worker_deadline_s():g} s"
    lines = (proc.stdout.strip() or proc.stderr.strip() or "no output").splitlines()
    text = " | ".join(lines[-3:])
    if proc.returncode == 0:
        return "passed", f"passed under {python}: {text}"
    if proc.returncode == 1:
        return "failed", f"FAILED under {python}: {text}"
    return "error", f"could not run under {python} (exit {proc.returncode}): {text}"


def plan_arms(common, a: ArmSpec, b: ArmSpec, entries: dict) -> tuple[list[Arm], list[tuple]]:
    """Both arms' cases, paired by model, workload and batch; any bad name or value raises UsageError."""

    from chipbench.measuring.suite import plan

    defaults = {
        "backend": common.backends[0],
        "mode": common.modes[0],
        "dtype": common.dtypes[0],
        "python": sys.executable,
        "inductor": _inherited_flags(),
    }
    arms, cases = [], []
    for name, spec, other in (("A", a, b), ("B", b, a)):
        backend, mode, dtype = (
            spec.backend or defaults["backend"],
            spec.mode or defaults["mode"],
            spec.dtype or defaults["dtype"],
        )
        try:
            planned = plan(replace(common, backends=(backend,), modes=(mode,), dtypes=(dtype,)), entries)
        except UsageError as e:
            raise UsageError(f"arm {name}: {e}") from None
        if spec.inductor and mode != "compiled":
            raise UsageError(
                f"arm {name}: inductor={spec.inductor} changes a compiled step, and this arm runs mode "
                f"{mode}: add mode=compiled to the arm, or give --mode compiled"
            )
        skipped = [p for p in planned if p.case is None]
        if skipped:
            raise UsageError(f"arm {name}: {skipped[0].label}: {skipped[0].skip_reason}")
        arms.append(Arm(name, spec, arm_label(spec, other, defaults), backend, mode, dtype))
        cases.append([p.case for p in planned])
    if len(cases[0]) != len(cases[1]):
        raise UsageError(f"the arms plan {len(cases[0])} and {len(cases[1])} cases: give --model and --workload")
    pairs = list(zip(*cases))
    for ca, cb in pairs:
        if (ca.model, ca.workload.name, ca.workload.batch) != (cb.model, cb.workload.name, cb.workload.batch):
            raise UsageError(f"the arms plan different cases ({ca.id} against {cb.id}): give --model and --workload")
    return arms, pairs


def run_ab(
    arms: list[Arm],
    case_pairs: list[tuple],
    pairs: int,
    order: str,
    *,
    entries: dict,
    host: dict,
    judge_for=None,
    write=None,
    log=None,
) -> list[dict]:
    """Run every case's `pairs` pairs, interleaved; each record goes to `write` as soon as it exists.
    `judge_for(ceilings)`: the judge of a case measured against those ceilings (the run's
    chipbench.judging.trial.TrialJudge; None: records unjudged)."""
    run = _ABRun(arms, pairs, order, entries, host, judge_for, write, log)
    for ca, cb in case_pairs:
        run.case(ca, cb)
    return run.records


class _ABRun:
    """One `chipbench ab` invocation: its id, its records, the self-tests and ceilings it measured."""

    def __init__(self, arms, pairs, order, entries, host, judge_for, write, log):
        self.arms, self.pairs, self.order, self.entries, self.host = arms, pairs, order, entries, host
        self.judge_for, self.write = judge_for, write
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.ab_id = new_record_id()
        self.records: list[dict] = []
        self.selftests: dict[tuple, tuple[str, str]] = {}
        self.ceilings: dict[tuple, object] = {}
        self.current: dict = {}  # the A/B fields of the trial now running

    def keep(self, rec: dict) -> None:
        rec.update(ab_id=self.ab_id, **self.current)
        if self.write is not None:
            self.write(rec)
        self.records.append(rec)

    def case(self, ca, cb) -> None:
        """One case's pairs: both arms' self-tests, then the pairs in turn; an arm refused by its
        self-test leaves every pair out, with its reason, and the other arm is not run."""
        series, refused, arm_selftest = {}, {}, {}
        for arm, case in zip(self.arms, (ca, cb)):
            status, text = self.selftest(arm, case)
            self.current["timing_selftest"] = arm_selftest[arm.name] = text
            if status != "passed":
                refused[arm.name] = (
                    "timing self-test failed, so no number from this arm is reported"
                    if status == "failed"
                    else "timing self-test could not run"
                ) + f": {text}"
                continue
            series[arm.name] = self.series(arm, case)
        if refused:
            for arm, case in zip(self.arms, (ca, cb)):
                if arm.name in refused:
                    self.refuse(arm, case, refused[arm.name], arm_selftest[arm.name])
            self.log(
                f"{ca.model} {ca.workload.name} b{ca.workload.batch}: arm {' and '.join(refused)} refused; "
                "the other arm is not run (no pair could be complete)"
            )
            return
        for i in range(self.pairs):
            turn = self.arms if self.order == "fixed" or i % 2 == 0 else self.arms[::-1]
            for position, arm in enumerate(turn):
                self.current.update(
                    ab_arm=arm.name, ab_pair=i, ab_label=arm.label, ab_position=position,
                    timing_selftest=arm_selftest[arm.name],
                )  # fmt: skip
                rec = series[arm.name].run_one()
                value = rec.get(f"{_headline(rec)}_median")
                self.log(
                    f"pair {i + 1}/{self.pairs} {arm.name} ({arm.label}) {(ca if arm.name == 'A' else cb).id}: "
                    + (
                        f"{value:.2f} {_headline(rec)}"
                        if rec.get("status") == "ok" and value is not None
                        else f"failed: {rec.get('error')}"
                    )
                )

    def selftest(self, arm, case) -> tuple[str, str]:
        """The arm's timing self-test, once per backend, interpreter, model, dtype and loop."""

        backend = self.entries[case.backend].backend
        loop = timing_loop(backend, case.mode)  # the same checkout decides the loop under any interpreter
        key = (case.backend, arm.spec.python, case.model, case.dtype, loop)
        if key not in self.selftests:
            where = f" under {arm.spec.python}" if arm.spec.python else ""
            self.log(
                f"timing self-test of {case.backend}{where} on {case.model} {case.dtype}"
                + (f" ({loop} loop)" if loop != "lock-step" else "")
                + " ..."
            )
            probe = case.mode if loop == "run-ahead" else "eager"
            self.selftests[key] = (
                selftest_elsewhere(arm.spec.python, case.backend, case.model, case.dtype, probe)
                if arm.spec.python
                else suite_check(backend, case.model, case.dtype, case.mode, probe_cache_len(case))
            )
        return self.selftests[key]

    def series(self, arm, case):
        from chipbench.measuring.runner import shared_ceilings
        from chipbench.measuring.trials import Series

        backend = self.entries[case.backend].backend
        judge = self.judge_for(shared_ceilings(self.ceilings, backend, case.dtype)) if self.judge_for else None
        return Series(
            backend,
            case,
            self.pairs,
            entries=self.entries,
            host=self.host,
            judge=judge,
            on_record=self.keep,
            python=arm.spec.python,
            env=inductor_env(arm.spec.inductor, arm.name) if arm.spec.inductor else None,
        )

    def refuse(self, arm, case, why: str, selftest: str) -> None:
        """Every pair of a refused arm is left out, and says why."""
        from chipbench.measuring.runner import failed_record, new_series

        trial = new_series()
        entry = self.entries[case.backend]
        for i in range(self.pairs):
            rec = failed_record(case, why, entry.origin(), self.host, entry.backend)
            rec.update(trial.fields(), trial_index=i, trials_planned=self.pairs)
            self.current.update(
                ab_arm=arm.name, ab_pair=i, ab_label=arm.label, ab_position=None, timing_selftest=selftest
            )
            self.keep(rec)


def _headline(rec: dict) -> str:
    return HEADLINE.get(rec.get("kind"), "output_tok_per_s")
