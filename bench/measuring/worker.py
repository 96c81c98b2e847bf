"""A trial's worker process: `python -m chipbench.measuring.worker` reads one trial's spec (JSON) on
stdin, runs it in this fresh process (model load, warmup, rounds) and prints its record on one
line starting with chipbench.measuring.trials.MARK. Started by bench/measuring/trials.py only."""

from __future__ import annotations

import json
import sys


def main() -> int:
    from chipbench import use_huge_pages

    use_huge_pages()  # before torch: a worker started by other means than the suite gets it too
    from chipbench.backends.registry import discover
    from chipbench.judging.chips import Chip
    from chipbench.measuring.ceilings import Ceilings
    from chipbench.measuring.runner import Case, Trial, run_case
    from chipbench.measuring.trials import MARK
    from chipbench.measuring.workload import Workload
    from chipbench.measuring.recordline import record_json

    spec = json.loads(sys.stdin.read())
    case = Case(**{**spec["case"], "workload": Workload(**spec["case"]["workload"])})
    entry = discover((case.backend,)).get(case.backend)
    if entry is None or not entry.available:
        reason = "unknown backend" if entry is None else entry.probe.reason
        print(f"backend {case.backend!r} is not available in the worker process: {reason}", file=sys.stderr)
        return 3
    ceilings = Ceilings(**spec["ceilings"]) if spec["ceilings"] else None
    chip = Chip(**spec["chip"]) if spec["chip"] else None
    rec = run_case(entry.backend, case, None, ceilings, spec["check"], chip, Trial(**spec["trial"]), entry.origin())
    sys.stdout.write(MARK + record_json(rec) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
