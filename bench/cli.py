"""The `chipbench` command: run the suite, judge its records, check claims, describe this machine.

It parses and calls: each command lives in chipbench.commands.

Bad input prints one line (what was wrong, what is valid) and exits 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from chipbench import use_huge_pages
from chipbench.commands import ab, machine, results, serve, suite
from chipbench.errors import UsageError
from chipbench.measuring import env
from chipbench.publishing.outputs import OutputError

# every command and the function that declares it, in the order `chipbench --help` lists them
COMMANDS = (
    machine.add_list,
    machine.add_env,
    suite.add_run,
    serve.add_serve,
    serve.add_loadgen,
    ab.add_ab,
    machine.add_ceilings,
    results.add_report,
    results.add_compare,
    results.add_merge,
    results.add_import,
    results.add_baseline,
    results.add_schema,
    results.add_claims,
    results.add_bundle,
    results.add_verify,
    results.add_keygen,
    machine.add_selftest,
    machine.add_build,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chipbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM: stopped like Ctrl-C (a trial's worker is killed, finished records are kept)."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    env.die_with_parent()  # started by a run (another interpreter's self-test): it ends with the run
    use_huge_pages()
    args = parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: SIGTERM keeps its handler
        previous = None
    try:
        return args.fn(args)
    except UsageError as e:
        print(f"chipbench: error: {e}", file=sys.stderr)
        return 2
    except OutputError as e:  # a full disk, a read-only file system: what was kept is said
        print(f"chipbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"chipbench: {how}; finished records were kept", file=sys.stderr)
        code = 143 if isinstance(e, Terminated) else 130
        left = getattr(e, "leaves_threads", None)
        if left:  # native threads that cannot be joined (LoadGen's): the process ends here, not in their teardown
            print(f"chipbench: {left} was still running; it ends with the process", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
