"""Independent trials of a case (`--bench-repeats K`), each in a fresh process where it can be.

One process that loads a model once and times its rounds sees one state of the machine: one
allocation layout, one set of clocks, one neighbour. Its rounds scatter less than separate runs
do, so an interval built from them alone calls drift a regression. A trial is therefore a fresh
model load, warmup and timed rounds, run like pyperf's workers in a process of its own
(`python -m chipbench.worker`), and its record is written as soon as it finishes. The
spread between trials is what verdicts use (bench/judging/cases.py).

A backend runs its trials in workers when a fresh process can find it by name (a built-in or an
installed plugin) and it does not say `fresh_process = False`; otherwise each trial still gets its
own load, warmup and rounds, in this process, and the record says so (`trial_process`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

from chipbench.backends import distributed
from chipbench.backends.base import capability
from chipbench.errors import UsageError
from chipbench.measuring import env as env_facts
from chipbench.measuring.runner import Case, Judge, Trial, failed_record, measure_case, new_series

MARK = "CHIPBENCH-RECORD "  # the worker's record line on stdout; anything else there is noise
GATE_PREFIX = "correct"  # the correctness gate's fields: checked once per series, in trial 0


def can_use_workers(name: str, backend, entries: dict) -> bool:
    if distributed.is_parallel():  # a torchrun launch's ranks run every trial together, in-process
        return False
    entry = entries.get(name)
    return entry is not None and entry.backend is backend and capability(backend, "fresh_process")


def worker_spec(case: Case, trial: Trial, judge: Judge | None) -> dict:
    return {
        "case": {**asdict(case), "workload": asdict(case.workload)},
        "trial": asdict(trial),
        "judge": judge.spec() if judge is not None else None,
    }


def project_root() -> str:
    """The checkout whose bench/, models/ and backends/ folders are the chipbench package."""
    return str(Path(__file__).resolve().parents[2])


# Another interpreter has no chipbench installed: this maps the package onto the checkout's folders
# (as pyproject.toml's package-dir does) and runs the module, so only that environment's own
# torch, transformers and engines are measured.
_CHECKOUT = """
import importlib.util, os, runpy, sys
root, module = sys.argv[1], sys.argv[2]
folders = {"chipbench": "bench", "chipbench.models": "models", "chipbench.backends": "backends"}
class Checkout:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in folders:
            d = os.path.join(root, folders[name])
            return importlib.util.spec_from_file_location(
                name, os.path.join(d, "__init__.py"), submodule_search_locations=[d])
sys.meta_path.insert(0, Checkout)
sys.argv[:] = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def python_command(python: str | None, module: str, *args: str) -> list[str]:
    """`python -m module args`: under this interpreter as is, under another through the checkout."""
    if _is_ours(python):
        return [sys.executable, "-m", module, *args]
    return [python, "-c", _CHECKOUT, project_root(), module, *args]


def _is_ours(python: str | None) -> bool:
    # a virtual environment is known by its interpreter's path, not the binary it links to (every
    # venv's python may link to the same one): compare paths without resolving links
    return python is None or os.path.abspath(python) == os.path.abspath(sys.executable)


def worker_env(python: str | None = None) -> dict:
    """The worker's environment. Under this interpreter it sees the modules this process sees
    (plugins found on a path added at run time too); under another interpreter (`python`, e.g. a
    virtual environment with other versions of torch or transformers) only this checkout is added,
    so that interpreter's own packages are the ones measured (python_command maps the package)."""
    if _is_ours(python):
        return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


DEADLINE_ENV = "CHIPBENCH_TRIAL_DEADLINE_S"
DEADLINE_S = 3600.0  # a trial's worker is killed past this (plus a sustained case's soak)


def worker_deadline_s(case: Case | None = None) -> float:
    """How long a trial's worker may run before it is killed and the trial recorded as failed:
    $CHIPBENCH_TRIAL_DEADLINE_S, else an hour, plus a sustained case's soak time."""
    text = os.environ.get(DEADLINE_ENV)
    try:
        base = float(text) if text else DEADLINE_S
    except ValueError:
        raise UsageError(f"${DEADLINE_ENV} must be a number of seconds, got {text!r}") from None
    if not base > 0 or base == float("inf"):
        raise UsageError(f"${DEADLINE_ENV} must be a finite number of seconds > 0, got {text!r}")
    return base + ((case.soak_s or 0) if case is not None else 0)


def run_in_worker(
    case: Case,
    trial: Trial,
    judge: Judge | None = None,
    origin: dict | None = None,
    host: dict | None = None,
    python: str | None = None,
    env: dict | None = None,
) -> dict:
    """One trial in a fresh Python process (this interpreter, or `python`; `env`: variables set for
    it on top of this one's, e.g. an A/B arm's inductor settings); a worker that dies leaves a
    failed record saying how."""
    spec = worker_spec(case, trial, judge)
    deadline = worker_deadline_s(case)
    try:
        proc = subprocess.run(
            python_command(python, "chipbench.worker"),
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            env={**worker_env(python), **(env or {}), env_facts.PARENT_ENV: str(os.getpid())},
            timeout=deadline,
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        why = f"the worker process ran past its deadline of {deadline:g} s (${DEADLINE_ENV}) and was killed"
        rec = failed_record(case, why, dict(origin or {}), host or {})
        rec.update(trial.fields())
        return rec
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no output"
    why = f"the worker process exited with status {proc.returncode} before writing its record: {tail}"
    rec = failed_record(case, why, dict(origin or {}), host or {})
    rec.update(trial.fields())
    return rec


class Series:
    """One invocation's `repeats` trials of a case; `run_one()` runs the next and hands its record to
    `on_record` (the writer) as soon as it finishes, so an interrupted series keeps every finished trial."""

    def __init__(
        self,
        backend,
        case: Case,
        repeats: int,
        *,
        entries: dict,
        host: dict | None = None,
        judge: Judge | None = None,
        on_record=None,
        python: str | None = None,
        env: dict | None = None,
    ):
        self.backend, self.case, self.repeats, self.python, self.env = backend, case, repeats, python, env
        self.workers = can_use_workers(case.backend, backend, entries)
        if python is not None and not self.workers:
            raise UsageError(
                f"backend {case.backend!r} runs its trials in this process, so it cannot run them "
                f"under another interpreter ({python})"
            )
        if env and not self.workers:
            raise UsageError(
                f"backend {case.backend!r} runs its trials in this process, so it cannot run them "
                f"under other settings ({', '.join(f'{k}={v}' for k, v in env.items())})"
            )
        entry = entries.get(case.backend)
        self.origin = entry.origin() if entry is not None else None
        self.trial = replace(new_series(), planned=repeats, process="worker" if self.workers else "in-process")
        self.host, self.judge, self.on_record = host, judge, on_record
        self.check = judge is not None and judge.check
        self.records: list[dict] = []
        self.gate: dict | None = None

    def run_one(self) -> dict:
        trial = replace(self.trial, index=len(self.records))
        first_check = self.check and self.gate is None
        judge = self.judge if first_check or self.judge is None else self.judge.without_gate()
        if self.workers:
            rec = run_in_worker(self.case, trial, judge, self.origin, self.host, self.python, self.env)
        else:
            rec = measure_case(self.backend, self.case, self.host, trial, self.origin, judge=judge)
        if first_check and rec.get("status") == "ok":
            self.gate = {k: v for k, v in rec.items() if k.startswith(GATE_PREFIX)}
        elif self.check and self.gate is not None:
            rec.update(self.gate)  # the gate is a property of backend, model, dtype and seed: once per series
        if self.on_record is not None:
            self.on_record(rec)
        self.records.append(rec)
        return rec

    def run_rest(self) -> list[dict]:
        while len(self.records) < self.repeats:
            self.run_one()
        return self.records


def run_trials(backend, case: Case, repeats: int, **kw) -> list[dict]:
    """`repeats` independent trials of `case` (keywords as Series)."""
    return Series(backend, case, repeats, **kw).run_rest()
