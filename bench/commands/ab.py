"""`chipbench ab`: same-machine A/B, trials interleaved, the paired ratio."""

from __future__ import annotations

import json
import sys

from chipbench.backends.registry import discover
from chipbench.commands.common import outputs, ceiling_window_option, chip_options, emit, use_ceiling_window
from chipbench.errors import UsageError
from chipbench.judging.chips import resolve_chip
from chipbench.measuring import env
from chipbench.measuring.metrics import METRICS
from chipbench.measuring.workload import WORKLOAD_HELP


def cmd_ab(args) -> int:
    from chipbench.judging.cases import Account
    from chipbench.judging.paired import ab_rows, row_dicts
    from chipbench.publishing.ab_view import to_markdown
    from chipbench.publishing.record import read_records

    metrics = split_metrics(args.metrics)
    if args.margin is not None and not 0 < args.margin < 1:
        raise UsageError(f"--margin must be a fraction between 0 and 1 (0.05 is ±5%), got {args.margin}")
    outputs(args.report, args.from_paths or [], "--report")
    if not args.from_paths:
        outputs(args.out, [args.report] if args.report else [])
    interrupted = False
    if args.from_paths:
        if args.a or args.b:
            raise UsageError("--from re-reads finished A/B records; leave --a / --b out with it")
        records = read_records(*args.from_paths)
        rc = 0
    else:
        records, rc, interrupted = _run_ab(args)
    account = Account()
    rows = ab_rows(records, metrics, args.margin, account)
    if args.from_paths and not rows:
        raise UsageError("no A/B records (records with ab_id, ab_arm and ab_pair) in " + ", ".join(args.from_paths))
    text = (
        json.dumps({"rows": row_dicts(rows), "records": account.__dict__}, indent=1) + "\n"
        if args.json
        else to_markdown(rows, args.margin, account)
    )
    if args.report:  # the table on the terminal as well as in the file
        sys.stdout.write(text)
    emit(text, args.report, args.github_summary)
    return 130 if interrupted else rc


def split_metrics(text: str) -> tuple[str, ...]:
    out = tuple(m.strip() for m in text.split(",") if m.strip())
    for m in out:
        if m != "headline" and m not in METRICS:
            raise UsageError(f"unknown metric {m!r}; valid: headline, {', '.join(METRICS)}")
    return out or ("headline",)


def _run_ab(args) -> tuple[list[dict], int, bool]:
    from chipbench.measuring.ab import parse_arm, plan_arms, run_ab
    from chipbench.measuring.suite import SuiteOptions, parse_ints, split_list
    from chipbench.publishing.record import RecordWriter, default_path

    use_ceiling_window(args)
    a, b = parse_arm(args.a or "", "A"), parse_arm(args.b or "", "B")
    if not args.model:
        raise UsageError("name the model to compare with --model (e.g. --model qwen3-0.6b)")
    if args.pairs < 2:
        raise UsageError(f"--pairs must be 2 or more (an interval needs two pairs), got {args.pairs}")
    entries = discover()
    backend = args.backend or ("cuda" if "cuda" in entries and entries["cuda"].available else "cpu")
    common = SuiteOptions(
        backends=(backend,),
        models=split_list(args.model),
        dtypes=(args.dtype,),
        workloads=split_list(args.workload),
        batches=parse_ints(args.batch, "batch sizes") or (1,),
        rounds=args.rounds,
        warmup=args.warmup,
        seed=args.seed,
        repeats=args.pairs,
        modes=(args.mode,),
    )
    arms, case_pairs = plan_arms(common, a, b, entries)
    chip = resolve_chip(
        args.chip, args.peak_gbps, args.peak_tflops, warn=lambda m: print(f"chipbench: {m}", file=sys.stderr)
    )
    writer = RecordWriter(args.out or default_path())
    print(
        f"A/B: A = {arms[0].label}, B = {arms[1].label}; {len(case_pairs)} case(s) x {args.pairs} pairs, "
        f"{args.order} order; records to {writer.path}",
        file=sys.stderr,
        flush=True,
    )
    from chipbench.judging.trial import TrialJudge

    records: list[dict] = []
    interrupted = False
    try:
        run_ab(
            arms,
            case_pairs,
            args.pairs,
            args.order,
            entries=entries,
            host=env.host_facts(),
            # each arm gates itself (arms may differ in interpreter or settings): no verdicts shared
            judge_for=lambda ceilings: TrialJudge(ceilings, chip, not args.no_check),
            write=lambda r: (writer.write(r), records.append(r)),
        )
    except KeyboardInterrupt:
        interrupted = True
        print("chipbench: interrupted; the pairs that finished are compared below", file=sys.stderr)
    print(f"{len(records)} record(s) appended to {writer.path}", file=sys.stderr)
    return records, (0 if all(r["status"] == "ok" for r in records) else 1), interrupted


def add_ab(sub) -> None:
    s = sub.add_parser(
        "ab",
        help="same-machine A/B: two backends, modes, dtypes or Python environments, "
        "trials interleaved, the paired speed ratio with its 95%% interval",
    )
    s.add_argument(
        "--a",
        metavar="KEY=VALUE,...",
        help="what arm A changes: backend, mode, dtype, inductor "
        "(settings of a compiled step, joined by +, e.g. freezing+cpp_weight_prepack:0), python "
        "(another environment's interpreter), label; e.g. mode=eager",
    )
    s.add_argument("--b", metavar="KEY=VALUE,...", help="what arm B changes; e.g. mode=compiled or dtype=fp32")
    s.add_argument(
        "--backend", help="both arms' backend unless an arm changes it (default: cuda where available, else cpu)"
    )
    s.add_argument("--model", help="comma-separated zoo models (required to run)")
    s.add_argument("--dtype", default="bf16", help="both arms' dtype unless an arm changes it (default bf16)")
    s.add_argument("--mode", default="eager", help="both arms' execution mode unless an arm changes it (default eager)")
    s.add_argument("--workload", default="tg128", help=f"comma-separated: {WORKLOAD_HELP} (default tg128)")
    s.add_argument("--batch", default="1", help="comma-separated batch sizes")
    s.add_argument(
        "--pairs", type=int, default=6, help="pairs of trials per case, each trial a fresh process (default 6)"
    )
    s.add_argument(
        "--order",
        choices=("alternate", "fixed"),
        default="alternate",
        help="alternate: A B, B A, A B, ... (default); fixed: A B every time",
    )
    s.add_argument("--rounds", type=int, help="timed rounds per trial (default: per backend)")
    s.add_argument("--warmup", type=int, default=1, help="untimed warmup rounds per trial (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--metrics",
        default="headline",
        help="comma-separated metrics to compare (default headline: the workload's own throughput)",
    )
    s.add_argument("--margin", type=float, help="also test equivalence: is B within ±MARGIN of A (e.g. 0.05)?")
    s.add_argument("--out", metavar="FILE", help="JSON-lines records (default results/runs/<time>-<host>.jsonl)")
    s.add_argument(
        "--from",
        dest="from_paths",
        nargs="+",
        metavar="PATH",
        help="compare the A/B records in these files instead of running",
    )
    s.add_argument("--report", metavar="FILE", help="also write the comparison here")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--github-summary", action="store_true", help="also append the table to $GITHUB_STEP_SUMMARY")
    s.add_argument("--no-check", action="store_true", help="skip the correctness gate (verdicts then say unchecked)")
    chip_options(s)
    ceiling_window_option(s)
    s.set_defaults(fn=cmd_ab)
