"""`chipbench run`: the benchmark suite without pytest, through the one suite session."""

from __future__ import annotations

import os
import sys

from chipbench.backends import distributed
from chipbench.measuring.suite_options import add_suite_options
from chipbench.publishing.progress import Progress


def cmd_run(args) -> int:
    from chipbench.measuring.suite import suite_options
    from chipbench.publishing.record import default_path
    from chipbench.session import Session

    opts = suite_options(lambda name: getattr(args, name))
    session = Session.open(
        opts,
        args.out or default_path(),
        chip=args.chip,
        peak_gbps=args.peak_gbps,
        peak_tflops=args.peak_tflops,
        check=not args.no_check,
        ceiling_window=args.ceiling_window,
        progress=Progress(sys.stderr, live=_terminal(sys.stderr), quiet=args.quiet),
        fresh=args.fresh,
        wide=args.wide,
    )
    try:
        for case in session.cases:
            session.run(case)
    finally:
        session.release()
        session.progress.close()
    if distributed.is_lead():
        print("\n".join(session.summary_lines()))
        print(session.saved_line(), file=sys.stderr)
        if not args.quiet:
            print("\n".join([session.time_line(), *session.next_lines()]), file=sys.stderr)
    return session.exit_code()


def _terminal(stream) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def add_run(sub) -> None:
    s = sub.add_parser("run", help="run the benchmark suite without pytest (same options)")
    add_suite_options(s.add_argument, "--")  # declared once: pytest --benchmark has them as --bench-*
    s.add_argument("-q", "--quiet", action="store_true", help="no progress lines, no time or next-step lines")
    s.set_defaults(fn=cmd_run)
