"""The main job's wall time and where it went: `python .ci/main_job.py [PYTEST OPTIONS]`.

Runs `pytest --benchmark` (the README's main job) in this process, with each of the suite
session's stages wrapped in a stopwatch, and prints the wall time split by stage:

  start      python, pytest and chipbench imported, the suite planned
  self-test  each backend's timing self-test (chipbench.measuring.selftest)
  ceilings   the device's measured ceilings, once per device and dtype, and the few rounds beside
             each case (chipbench.backends.ceilings)
  build      loading each case's model: random weights built, an engine's GGUF written and loaded
  gate       the correctness gate (the CPU fp32 reference and the backend's teacher-forced logits)
  rounds     the warmup and timed rounds, and the record's own work
  end        the summary, the comparison with the baseline, pytest's report

A benchmark script, not a test: it prints figures for a person to read. It wraps names the
session looks up at call time, so it measures the main job as the README runs it. With
`--json FILE` it also writes the figures.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager

T0 = time.perf_counter()

import pytest  # noqa: E402

import chipbench.judging.trial as trial  # noqa: E402
import chipbench.session as session  # noqa: E402

spent: dict[str, float] = defaultdict(float)
_open: list[str] = []  # the stages running now, innermost last: a nested stage's time is its own


@contextmanager
def stage(name: str):
    start = time.perf_counter()
    _open.append(name)
    try:
        yield
    finally:
        _open.pop()
        took = time.perf_counter() - start
        spent[name] += took
        if _open:
            spent[_open[-1]] -= took  # the outer stage's share is what the inner did not take


def wrap(owner, attr: str, name: str) -> None:
    inner = getattr(owner, attr)

    def timed(*a, **k):
        with stage(name):
            return inner(*a, **k)

    setattr(owner, attr, timed)


wrap(session, "suite_check", "self-test")
for owner, attr in ((session, "shared_ceilings"), (trial, "beside_ceilings")):
    wrap(owner, attr, "ceilings")
for attr in ("refresh_ceilings",):  # where a session revalidates cached ceilings (absent before it did)
    if hasattr(session, attr):
        wrap(session, attr, "ceilings")
wrap(trial, "gate_check", "gate")
wrap(session.Session, "handle_for", "build")
wrap(session, "measure_case", "rounds")  # the gate and the ceilings beside it are taken out (nested)


def main(argv: list[str]) -> int:
    out = None
    if "--json" in argv:
        i = argv.index("--json")
        out = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
    started = {}
    original_open = session.Session.open.__func__

    def opened(cls, *a, **k):
        s = original_open(cls, *a, **k)
        started["t"] = time.perf_counter()
        return s

    session.Session.open = classmethod(opened)
    code = pytest.main(["--benchmark", "-p", "no:cacheprovider", *argv])
    wall = time.perf_counter() - T0
    spent["start"] = started.get("t", T0) - T0
    staged = sum(v for k, v in spent.items())
    spent["end"] = wall - staged
    print(f"\nmain job (pytest --benchmark {' '.join(argv)}): {wall:.1f} s wall, exit {int(code)}")
    for name in ("start", "self-test", "ceilings", "build", "gate", "rounds", "end"):
        print(f"  {name:<10} {spent.get(name, 0.0):7.1f} s  {100 * spent.get(name, 0.0) / wall:5.1f} %")
    if out:
        with open(out, "w") as f:
            json.dump({"wall_s": wall, "exit": int(code), "args": argv, "stages_s": dict(spent)}, f, indent=1)
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
