"""A run's processes end with it: a trial's worker dies with the run that started it, however the
run ends (SIGKILL included), it has a deadline of its own, and the records finished before the end
are whole."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from chipbench.judging.trial import TrialJudge
from chipbench.measuring.runner import Case, new_series
from chipbench.measuring.trials import DEADLINE_ENV, run_in_worker
from chipbench.measuring.workload import parse_workload


def _wait_for(what, check, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {seconds:g} s")


def _workers(pid: int) -> list:
    try:
        return [c for c in psutil.Process(pid).children() if "chipbench.worker" in " ".join(c.cmdline())]
    except psutil.Error:  # a child that ended while it was read
        return []


def test_a_killed_run_takes_its_worker_with_it():
    """SIGKILL runs no code of the run's own: the kernel's parent-death signal ends the worker. Its
    case would run for minutes; without the signal it outlives the run (checked by hand: still
    running 5 s after the kill)."""
    parent = (
        "from chipbench.judging.trial import TrialJudge\n"
        "from chipbench.measuring.runner import Case, new_series\n"
        "from chipbench.measuring.trials import run_in_worker\n"
        "from chipbench.measuring.workload import parse_workload\n"
        "case = Case('cpu', 'tiny-qwen3', 'fp32', parse_workload('tg64'), rounds=100000)\n"
        "run_in_worker(case, new_series(), TrialJudge(check=False))\n"
    )
    run = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        [worker] = _wait_for("the worker", lambda: _workers(run.pid), 120)
        _wait_for("the worker's rounds", lambda: worker.cpu_times().user > 5, 120)  # past its start, in its rounds
        run.kill()
        run.wait(10)
        _, alive = psutil.wait_procs([worker], timeout=5)
        assert alive == [], f"the worker outlived the run: {alive}"
    finally:
        if run.poll() is None:
            run.kill()
        for w in _workers(run.pid):
            w.kill()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_stopped_run_keeps_its_finished_records(tmp_path, how):
    """Stopped during its second trial: the first trial's record is whole, the worker is gone; on
    SIGTERM the run stops as on Ctrl-C, kills the worker and says what it kept."""
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "chipbench.cli", "run", "--backend", "cpu", "--model", "tiny-qwen3", "--dtype",
           "fp32", "--workload", "tg64", "--rounds", "40", "--repeats", "2", "--no-check", "--ceiling-window", "0",
           "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for("the first trial's record", lambda: out.exists() and out.read_text().endswith("\n"), 300)
        workers = _wait_for("the second trial's worker", lambda: _workers(run.pid), 60)
        run.send_signal(getattr(signal, how))
        code = run.wait(30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], f"worker(s) outlived the run: {alive}"
    finally:
        if run.poll() is None:
            run.kill()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1 and records[0]["status"] == "ok" and records[0]["trial_process"] == "worker"
    if how == "SIGTERM":
        assert code == 143 and "stopped by SIGTERM; finished records were kept" in run.stderr.read()


def test_a_worker_past_its_deadline_is_killed_and_its_trial_recorded_as_failed(monkeypatch):
    monkeypatch.setenv(DEADLINE_ENV, "1.5")
    case = Case("cpu", "tiny-qwen3", "fp32", parse_workload("tg64"), rounds=100000)
    started = time.monotonic()
    rec = run_in_worker(case, new_series(), TrialJudge(check=False))
    assert time.monotonic() - started < 30
    assert rec["status"] == "failed" and "ran past its deadline of 1.5 s" in rec["error"]


def test_a_bad_deadline_is_one_line(monkeypatch):
    from chipbench.errors import UsageError
    from chipbench.measuring.trials import worker_deadline_s

    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv(DEADLINE_ENV, bad)
        with pytest.raises(UsageError, match=DEADLINE_ENV):
            worker_deadline_s()


def test_a_process_not_started_by_a_run_arms_nothing(monkeypatch):
    """die_with_parent leaves a process alone unless a run started it, and never passes the run's
    pid on to that process's own children."""
    from chipbench.measuring import env

    monkeypatch.delenv(env.PARENT_ENV, raising=False)
    env.die_with_parent()  # returns: nothing to do
    code = (
        "from chipbench.measuring import env; import os; env.die_with_parent(); print(os.environ.get(env.PARENT_ENV))"
    )
    run = [sys.executable, "-c", code]
    mine = subprocess.run(run, env={**os.environ, env.PARENT_ENV: str(os.getpid())}, capture_output=True, text=True)
    assert mine.returncode == 0 and mine.stdout.strip() == "None", mine.stderr  # armed, and not passed on
    gone = subprocess.run(run, env={**os.environ, env.PARENT_ENV: "1"}, capture_output=True, text=True)
    assert gone.returncode == 3, gone.stderr  # its parent is not process 1: the run it names has ended
