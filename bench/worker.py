"""A trial's worker process: `python -m chipbench.worker` reads one trial's spec (JSON) on stdin,
runs it in this fresh process (model load, warmup, rounds), judges it as the run's own judge would
(chipbench.judging.trial) and prints its record on one line starting with
chipbench.measuring.trials.MARK. Started by bench/measuring/trials.py only; an entry point, so it
sits above every room it uses."""

from __future__ import annotations

import json
import sys

from chipbench import use_huge_pages
from chipbench.backends.registry import discover
from chipbench.measuring import env
from chipbench.measuring.recordline import record_json
from chipbench.measuring.workload import Workload


def main() -> int:
    env.die_with_parent()
    use_huge_pages()  # before torch: a worker started by other means than the suite gets it too
    from chipbench.judging.trial import TrialJudge
    from chipbench.measuring.runner import Case, Trial, measure_case
    from chipbench.measuring.trials import MARK

    spec = json.loads(sys.stdin.read())
    case = Case(**{**spec["case"], "workload": Workload(**spec["case"]["workload"])})
    entry = discover((case.backend,)).get(case.backend)
    if entry is None or not entry.available:
        reason = "unknown backend" if entry is None else entry.probe.reason
        print(f"backend {case.backend!r} is not available in the worker process: {reason}", file=sys.stderr)
        return 3
    judge = TrialJudge.from_spec(spec["judge"]) if spec["judge"] else None
    rec = measure_case(entry.backend, case, None, Trial(**spec["trial"]), entry.origin(), judge=judge)
    sys.stdout.write(MARK + record_json(rec) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
