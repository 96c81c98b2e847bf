"""The commands that read records: report, compare, merge, baseline, schema, claims."""

from __future__ import annotations

import sys
from pathlib import Path

from chipbench.commands.common import outputs, add_filters, emit, record_filters
from chipbench.errors import UsageError
from chipbench.judging.chips import resolve_chip
from chipbench.options import split_list
from chipbench.publishing import serving_view
from chipbench.publishing.report import compact_summary, render_comparison


def cmd_report(args) -> int:
    from chipbench.publishing import tables
    from chipbench.publishing.record import read_records

    outputs(args.out, args.paths)
    records = read_records(*args.paths, on_error=args.on_error)
    if args.cost_at is not None and not 0 < args.cost_at < 1e6:
        raise UsageError(f"--cost-at must be a positive tokens/s per user, got {args.cost_at}")
    prices = price_basis(args)
    table = tables.build(records, split_list(args.metrics), record_filters(args), prices=prices)
    md = tables.to_markdown(table, args.transpose)

    serving = serving_view.to_markdown(table.records, prices, args.cost_at)
    if serving:
        md += "\n\n## Serving\n\n" + serving
    if args.format == "md":
        text = md
    elif args.format == "csv":
        text = tables.to_csv(table)
    elif args.format == "json":
        text = tables.to_json(table)
    else:
        from chipbench.publishing.html_page import to_html

        text = to_html(table, args.transpose, cost_at=args.cost_at)
    emit(text, args.out, args.github_summary, md)
    return 0


def cmd_compare(args) -> int:
    from chipbench.judging.compare import compare_records
    from chipbench.publishing.record import read_records
    from chipbench.publishing.tables import check_metrics

    outputs(args.out, [*args.runs, *args.baseline])
    if args.fail_below is not None and not 0 < args.fail_below <= 1:
        raise UsageError(f"--fail-below must be a ratio in (0, 1], e.g. 0.95; got {args.fail_below}")
    metrics = list(check_metrics(split_list(args.metrics))) or None
    if metrics and {"roofline", "check"} & set(metrics):
        raise UsageError(
            "roofline and check are not measured metrics; compare headline, ttft_s, tpot_s, e2e_s or a throughput"
        )
    keep = record_filters(args).keep
    run = [r for r in read_records(*args.runs, on_error=args.on_error) if keep(r)]
    base = [r for r in read_records(*args.baseline, on_error=args.on_error) if keep(r)]
    gate_metrics = list(check_metrics(split_list(args.gate_metrics))) or None
    if gate_metrics and {"roofline", "check"} & set(gate_metrics):
        raise UsageError(
            "roofline and check are not measured metrics; gate headline, ttft_s, tpot_s, e2e_s or a throughput"
        )
    result = compare_records(
        run, base, metrics, args.fail_below, across_devices=args.across == "devices", gate_metrics=gate_metrics
    )
    if not result.rows and args.if_unmatched == "note":  # CI over runners: no baseline for them yet
        note = (
            f"No baseline matches the run's {len(result.unmatched_run)} case(s) on the same device: "
            "nothing to compare or gate."
        )
        emit(note, args.out, args.github_summary, note)
        return 0
    if not result.rows:
        hint = "" if args.across else " and device; --across devices compares one device with another"
        raise UsageError(
            f"the baseline matches none of the run's {len(result.unmatched_run)} case(s) (cases match "
            f"by model, dtype, workload, batch, backend and its device kind, execution path{hint})"
        )
    text = render_comparison(result, shown_format(args), args.fail_below, args.unmatched)
    md = render_comparison(result, "md", args.fail_below, args.unmatched)
    emit(text, args.out, args.github_summary, md)
    if result.failed:
        print(
            f"chipbench: {len(result.failed)} gated row(s) significantly below {args.fail_below} of the baseline",
            file=sys.stderr,
        )
        return 1
    return 0


def shown_format(args) -> str:
    """--format, or when none was given: plain text on a terminal, Markdown into a file or a pipe."""
    if args.format:
        return args.format
    return "text" if not args.out and sys.stdout.isatty() else "md"


def cmd_merge(args) -> int:
    """Combine records from several runners into one file (each record once) and tabulate them."""

    from chipbench.judging.cases import Account, dedupe
    from chipbench.publishing import tables
    from chipbench.publishing.record import RecordWriter, read_records

    if Path(args.out).exists():
        raise UsageError(f"{args.out} exists; merge writes a new file and never overwrites one")
    outputs(args.out, args.paths)
    account = Account()
    merged = dedupe(read_records(*args.paths, on_error=args.on_error), account)
    writer = RecordWriter(args.out, inputs=args.paths)
    for rec in merged:
        rec.pop("source_file", None)
        writer.write(rec)
    account.used = len(merged)
    md = tables.to_markdown(tables.build(merged))
    print(
        f"merged {len(merged)} record(s) from {len(args.paths)} path(s) into {args.out}; " + account.line("input"),
        file=sys.stderr,
    )
    emit(md, None, args.github_summary)
    return 0


def cmd_baseline(args) -> int:
    """A baseline file from repeated runs: every record once, with the regression each case's gate can catch."""

    from chipbench.judging.baseline import baseline_warnings, noise_rows
    from chipbench.judging.cases import Account, dedupe
    from chipbench.publishing.record import RecordWriter, read_records
    from chipbench.publishing.tables import plain_table, terminal_safe

    if args.out and Path(args.out).exists():
        raise UsageError(f"{args.out} exists; a baseline is written to a new file, never over an old one")
    outputs(args.out, args.runs)
    account = Account()
    records = dedupe(read_records(*args.runs, on_error=args.on_error), account)
    account.failed = sum(1 for r in records if r.get("status") != "ok")
    account.used = len(records) - account.failed
    if not 0 < args.fail_below <= 1:
        raise UsageError(f"--fail-below must be a ratio in (0, 1], e.g. 0.95; got {args.fail_below}")
    rows = noise_rows(records, args.fail_below)
    for row in rows:
        row["value"] = float(f"{row['value']:.4g}") if isinstance(row.get("value"), float) else row.get("value")
    print(plain_table([{k: v for k, v in r.items() if k != "more"} for r in rows]))
    print(account.line("records"))
    print(
        f"detects at {args.fail_below:g}: the smallest regression of each case's headline metric that "
        f"`chipbench compare --fail-below {args.fail_below:g}` against this baseline catches with 80% probability, "
        "for a new run of one invocation with as many trials as one of these, all cases gated together (Holm)"
    )
    for r in rows:
        if r.get("more"):
            print(terminal_safe(f"  {r['case']} ({r['device']}): {r['more']}"))
    for line in baseline_warnings(rows):
        print(terminal_safe(line), file=sys.stderr)
    if args.out:
        writer = RecordWriter(args.out, inputs=args.runs)
        for rec in records:
            rec.pop("source_file", None)
            writer.write(rec)
        print(f"wrote {writer.count} record(s) to {args.out}", file=sys.stderr)
    return 0


def cmd_schema(args) -> int:
    from chipbench.judging.claims import claims_json_schema
    from chipbench.publishing.schema import json_schema, json_schema_text

    outputs(args.out)
    text = json_schema_text(json_schema() if args.what == "records" else claims_json_schema())
    emit(text, args.out, False)
    return 0


def cmd_claims(args) -> int:
    from chipbench.judging.cases import Account
    from chipbench.judging.claims import check_all, load_claims
    from chipbench.publishing.claims_view import render
    from chipbench.publishing.record import read_records

    outputs(args.out, [args.file, *args.runs])
    claims = load_claims(args.file)
    records = read_records(*args.runs, on_error=args.on_error) if args.runs else []
    account = Account()
    verdicts = check_all(claims, records, account)
    emit(render(verdicts, shown_format(args), account), args.out, args.github_summary, render(verdicts, "md", account))
    return 0


def add_report(sub) -> None:
    s = sub.add_parser("report", help="tables of records: GitHub markdown, CSV, JSON, or HTML with charts")
    s.add_argument("paths", nargs="+", metavar="PATH", help="JSON-lines records, pytest-benchmark JSON, or directories")
    s.add_argument("--format", choices=("md", "csv", "json", "html"), default="md")
    s.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    s.add_argument("--transpose", action="store_true", help="one row per device, cases across")
    s.add_argument(
        "--metrics",
        default="headline,ttft_s,tpot_s,roofline,check,n",
        help="comma-separated; headline: the test's own throughput, roofline: MBU / MFU, check: the correctness gate",
    )
    add_filters(s)
    price_options(s)
    s.add_argument(
        "--cost-at",
        type=float,
        metavar="TOK_S_USER",
        help="serving curves: their cost interpolated at this many tokens/s per user (InferenceX's interactivity)",
    )
    s.set_defaults(fn=cmd_report)


def price_options(s) -> None:
    """The prices a cost uses: results/prices.toml, or another file, and overrides."""
    s.add_argument("--prices", metavar="FILE", help="prices file (default results/prices.toml)")
    s.add_argument("--provider", help="the provider kind whose device prices apply (default: the file's)")
    s.add_argument("--region", help="the electricity price's region (default: the file's)")
    s.add_argument(
        "--price-hour",
        "--price",
        dest="price_hour",
        type=float,
        metavar="USD",
        help="one $/device-hour for every device, overriding the file (--price: the same)",
    )
    s.add_argument("--price-kwh", type=float, metavar="USD", help="$/kWh, overriding the file's region")


def price_basis(args, required: bool = False):
    """The prices of the options; None when the default file is absent (no cost column) and none was asked for."""
    from chipbench.judging.prices import PRICES_FILE, load_basis

    asked = args.prices or args.provider or args.region or args.price_hour is not None or args.price_kwh is not None
    if not asked and not required and not PRICES_FILE.is_file():
        return None
    return load_basis(args.prices, args.provider, args.region, args.price_hour, args.price_kwh)


def add_compare(sub) -> None:
    s = sub.add_parser("compare", help="compare runs with baselines: ratios, 95%% CIs, verdicts, a CI gate")
    s.add_argument("runs", nargs="+", metavar="RUN")
    s.add_argument("--baseline", nargs="+", required=True, metavar="BASE")
    s.add_argument(
        "--metrics",
        default="headline,ttft_s,tpot_s",
        help="comma-separated; default: the test's own throughput, TTFT and TPOT",
    )
    s.add_argument(
        "--fail-below",
        type=float,
        metavar="RATIO",
        help="exit 1 when a gated row is significantly below RATIO of the baseline (e.g. 0.95; one-sided, "
        "Holm over every gated row)",
    )
    s.add_argument(
        "--gate-metrics",
        default="",
        metavar="M,...",
        help="metrics the gate tests (default: headline, each case's own throughput, where --metrics shows "
        "it, else the metrics --metrics names); others are shown, not gated",
    )
    s.add_argument("--unmatched", action="store_true", help="list cases present on one side only")
    s.add_argument(
        "--if-unmatched",
        choices=("error", "note"),
        default="error",
        help="when no baseline case matches: an error (default), or a note and exit 0 (CI over "
        "runners that have no baseline yet)",
    )
    s.add_argument(
        "--across",
        choices=("devices",),
        help="devices: compare each run device with every baseline device of the same case (deliberate; never gates)",
    )
    s.add_argument(
        "--format",
        choices=("text", "md", "csv", "json", "html"),
        default=None,
        help="text: a short line per case (the default on a terminal); md: every metric (the default elsewhere)",
    )
    s.add_argument("--out", metavar="FILE")
    add_filters(s)
    s.set_defaults(fn=cmd_compare)


def cmd_import(args) -> int:
    """Other tools' result files as chipbench records, judged against the chip's sheet (the roofline)."""
    from chipbench.judging.trial import add_roofline
    from chipbench.publishing.importing import import_file
    from chipbench.publishing.record import RecordWriter, default_path

    out = Path(args.out) if args.out else default_path()
    outputs(str(out), args.paths)
    chip = resolve_chip(args.chip, args.peak_gbps, args.peak_tflops, warn=lambda line: print(line, file=sys.stderr))
    records, refused = [], []
    for path in args.paths:
        try:
            got = import_file(path, args.fmt, args.model, args.device, args.engine, args.dtype, args.workload)
        except UsageError as e:  # one file that cannot be read costs no other file its records
            refused.append(path)
            print(f"chipbench: {e}", file=sys.stderr)
            continue
        for rec in got:
            if rec["dtype"] != "unknown":  # the bytes a token moves follow from the weights' type
                add_roofline(rec, chip=chip)
        records += got
        print(f"{path}: {len(got)} record(s) from {got[0]['import_tool']}", file=sys.stderr)
    if not records:
        return 2
    writer = RecordWriter(out)
    for rec in records:
        writer.write(rec)
    print(compact_summary(records))
    missing = sorted({m for r in records for m in (r.get("import_missing") or [])})
    if missing:
        print(f"not in the file(s), left null: {', '.join(missing)}", file=sys.stderr)
    print(f"{len(records)} record(s) appended to {out}", file=sys.stderr)
    return 2 if refused else 0


def add_import(sub) -> None:
    from chipbench.publishing.importing import FORMATS

    s = sub.add_parser(
        "import",
        help="read other tools' result files (llama-bench, vllm bench serve, guidellm, aiperf, mlperf) as records",
    )
    s.add_argument("paths", nargs="+", metavar="FILE")
    s.add_argument("--from", dest="fmt", choices=FORMATS, default=None, help="the file's tool (default: detected)")
    s.add_argument("--model", default=None, help="the zoo model, where the file's model id does not name one")
    s.add_argument("--device", default=None, help="the device, where the file does not name it")
    s.add_argument("--engine", default=None, help="the serving engine, where the file does not name it")
    s.add_argument("--dtype", default=None, help="the weights' type, where the file does not say it")
    s.add_argument("--workload", default=None, help="ppP+tgN: the lengths, where the file does not say them (MLPerf)")
    s.add_argument("--chip", default=None, help="the chip's spec row (results/chips.toml) for the roofline")
    s.add_argument("--peak-gbps", type=float, default=None, help="the chip's peak memory bandwidth, GB/s")
    s.add_argument("--peak-tflops", type=float, default=None, help="the chip's peak dense bf16 TFLOP/s")
    s.add_argument(
        "--out", default=None, metavar="FILE", help="the records file (default: results/runs/<time>-<host>.jsonl)"
    )
    s.set_defaults(fn=cmd_import)


def add_merge(sub) -> None:
    s = sub.add_parser("merge", help="merge records from several runners into one file and table")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--out", required=True, metavar="FILE", help="the merged JSON-lines file (must not exist)")
    s.set_defaults(model=None, backend=None, workload=None, dtype=None)
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    s.add_argument("--github-summary", action="store_true")
    s.set_defaults(fn=cmd_merge)


def add_baseline(sub) -> None:
    s = sub.add_parser(
        "baseline", help="make a baseline from repeated runs and print the regression each case's gate can catch"
    )
    s.add_argument("runs", nargs="+", metavar="RUN", help="records of runs made with --bench-repeats (or several runs)")
    s.add_argument("--out", metavar="FILE", help="the baseline JSON-lines file to write (must not exist)")
    s.add_argument(
        "--fail-below",
        type=float,
        default=0.95,
        metavar="RATIO",
        help="the gate's threshold the detectable regressions are given for (default 0.95)",
    )
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    s.set_defaults(fn=cmd_baseline)


def add_schema(sub) -> None:
    s = sub.add_parser("schema", help="the JSON Schema of records or of claims files")
    s.add_argument("what", choices=("records", "claims"))
    s.add_argument("--out", metavar="FILE")
    s.set_defaults(fn=cmd_schema)


def add_claims(sub) -> None:
    s = sub.add_parser("claims", help="check chip / model claims: physics, then measured runs")
    s.add_argument("file", help="a claims TOML file (see results/claims.toml)")
    s.add_argument("runs", nargs="*", default=[], metavar="RUN", help="records that can confirm or refute the claims")
    s.add_argument(
        "--format",
        choices=("text", "md", "json"),
        default=None,
        help="text: the default on a terminal; md: the default elsewhere",
    )
    s.add_argument("--out", metavar="FILE")
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    s.add_argument("--github-summary", action="store_true")
    s.set_defaults(fn=cmd_claims)


def cmd_bundle(args) -> int:
    from chipbench.publishing import bundle

    out = Path(args.out)
    outputs(str(out), [*args.runs, *(args.baseline or []), *([args.claims] if args.claims else [])])
    manifest = bundle.make(args.runs, out, args.baseline or [], args.claims, args.sign, argv=sys.argv)
    print(
        f"wrote {out}: {manifest['records']} record(s)"
        + (f", {manifest['baseline_records']} baseline record(s)" if manifest["baseline_records"] else "")
        + f", {len(manifest['files'])} files"
        + (", signed" if args.sign else "")
        + f"; check it with: chipbench verify {out}",
        file=sys.stderr,
    )
    return 0


def cmd_verify(args) -> int:
    from chipbench.publishing import bundle
    from chipbench.publishing.tables import terminal_safe

    report = bundle.verify(Path(args.file), args.key)
    print("\n".join(terminal_safe(line) for line in report.lines))
    return 0 if report.ok else 1


def cmd_keygen(args) -> int:
    from chipbench.publishing import bundle

    private, public = bundle.keygen(Path(args.out))
    print(
        f"wrote the private key {private} (keep it) and the public key {public} (give it to verifiers)", file=sys.stderr
    )
    return 0


def add_bundle(sub) -> None:
    s = sub.add_parser(
        "bundle", help="one archive of records, raw timestamps, environment and digests that anyone can verify offline"
    )
    s.add_argument("runs", nargs="+", metavar="RUN", help="JSON-lines records, pytest-benchmark JSON, or directories")
    s.add_argument("--out", required=True, metavar="FILE", help="the bundle to write (a .tar.gz)")
    s.add_argument("--baseline", nargs="+", metavar="BASE", help="baseline records: the comparison is bundled too")
    s.add_argument("--claims", metavar="FILE", help="a claims file: its verdicts are bundled too")
    s.add_argument("--sign", metavar="KEY", help="sign the manifest with this Ed25519 private key (chipbench keygen)")
    s.set_defaults(fn=cmd_bundle)


def add_verify(sub) -> None:
    s = sub.add_parser("verify", help="re-derive every number of a bundle offline and check its digests and signature")
    s.add_argument("file", help="a bundle (chipbench bundle)")
    s.add_argument("--key", metavar="PUB", help="the signer's Ed25519 public key (PEM): the signature must be its")
    s.set_defaults(fn=cmd_verify)


def add_keygen(sub) -> None:
    s = sub.add_parser("keygen", help="a new Ed25519 key pair for signing bundles")
    s.add_argument("--out", required=True, metavar="FILE", help="the private key; the public key is FILE.pub")
    s.set_defaults(fn=cmd_keygen)
