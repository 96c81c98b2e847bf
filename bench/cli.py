"""The `chipbench` command: list models and backends, describe this machine, run the suite.

Bad input prints one line (what was wrong, what is valid) and exits 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from chipbench.errors import UsageError
from chipbench.measuring.suite_options import add_suite_options
from chipbench.measuring.workload import WORKLOAD_HELP
from chipbench.backends.base import capability


def _gib(n) -> str:
    return f"{n / 1e9:.2f} GB" if n else "-"


def cmd_list(args) -> int:
    import pandas as pd

    from chipbench.backends.registry import discover
    from chipbench.models.counts import facts
    from chipbench.models.zoo import MODELS

    if args.what in ("models", "all"):
        rows = []
        for s in MODELS.values():
            f = facts(s)
            rows.append(
                {
                    "model": s.name,
                    "family": s.family,
                    "layers": s.layers,
                    "hidden": s.hidden,
                    "params": f"{f.params_total / 1e9:.3f}B" if not s.tiny else f"{f.params_total / 1e3:.1f}K",
                    "active": f"{f.params_active / 1e9:.3f}B" if not s.tiny else f"{f.params_active / 1e3:.1f}K",
                    "bf16 weights": _gib(f.weight_bytes("bf16")) if not s.tiny else "-",
                    "KV/token bf16": f"{f.kv_bytes_per_token('bf16') / 1024:g} KiB",
                    "state/seq": f"{(f.recurrent_state_bytes + f.conv_state_bytes('bf16')) / 2**20:.1f} MiB"
                    if s.is_hybrid
                    else "-",
                    "context": s.max_pos,
                }
            )
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            print(pd.DataFrame(rows).to_string(index=False))
    if args.what in ("backends", "all"):
        rows = [
            {
                "backend": n,
                "source": e.source,
                "status": "available" if e.available else f"unavailable: {e.probe.reason}",
            }
            for n, e in discover().items()
        ]
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            if args.what == "all":
                print()  # after the models' table
            from chipbench.publishing.tables import plain_table

            print(plain_table(rows))  # left-aligned: reasons are sentences
    return 0


def cmd_env(args) -> int:
    from dataclasses import asdict

    from chipbench.backends.registry import discover
    from chipbench.measuring import env

    out = {"host": env.host_facts(), "harness": env.provenance(0), "devices": {}}
    out["harness"].pop("seed")
    for name, e in discover().items():
        if e.available:
            try:
                out["devices"][name] = asdict(e.backend.info())
            except Exception as ex:  # a device that cannot describe itself is reported, not fatal
                out["devices"][name] = {"error": f"{type(ex).__name__}: {ex}"}
        else:
            out["devices"][name] = {"unavailable": e.probe.reason}
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_run(args) -> int:
    from chipbench.backends.registry import discover
    from chipbench.measuring import distributed, env
    from chipbench.publishing.record import RecordWriter, default_path
    from chipbench.publishing.report import summary_table
    from chipbench.measuring.runner import failed_record, new_series, run_case
    from chipbench.measuring.selftest import probe_cache_len, suite_check, timing_loop
    from chipbench.measuring.trials import run_trials
    from chipbench.measuring.suite import SuiteOptions, parse_ints, plan, split_list

    use_ceiling_window(args)

    def say(*text, **kw) -> None:  # under torchrun rank 0 alone prints, as it alone writes records
        if distributed.is_lead():
            print(*text, **kw)

    opts = SuiteOptions(
        backends=split_list(args.backend),
        models=split_list(args.model),
        dtypes=split_list(args.dtype),
        workloads=split_list(args.workload),
        batches=parse_ints(args.batch, "batch sizes") or (1,),
        rounds=args.rounds,
        warmup=args.warmup,
        seed=args.seed,
        weights_dir=args.weights,
        repeats=args.repeats,
        modes=split_list(args.mode),
        soak_s=args.soak,
    )
    entries = discover()
    planned = plan(opts, entries)
    writer = RecordWriter(args.out or default_path())
    from chipbench.judging.chips import resolve_chip
    from chipbench.measuring.runner import shared_ceilings

    chip = resolve_chip(
        args.chip, args.peak_gbps, args.peak_tflops, warn=lambda m: say(f"chipbench: {m}", file=sys.stderr)
    )
    host = env.host_facts()
    records, ceilings, selftests = [], {}, {}
    for p in planned:
        if p.skip_reason:
            say(f"skipped backend {p.label}: {p.skip_reason}", file=sys.stderr)
            continue
        backend = entries[p.case.backend].backend
        loop = timing_loop(backend, p.case.mode)  # each loop the run times is proved once
        if (p.case.backend, loop) in selftests:
            status, selftest = selftests[(p.case.backend, loop)]
        else:
            say(
                f"timing self-test of {p.case.backend}" + (f" ({loop} loop)" if loop != "lock-step" else "") + " ...",
                file=sys.stderr,
                flush=True,
            )
            status, selftest = suite_check(backend, p.case.model, p.case.dtype, p.case.mode, probe_cache_len(p.case))
            if status != "error":  # could not run on this model: the next case's model tries again
                selftests[(p.case.backend, loop)] = (status, selftest)
        if status != "passed":
            why = (
                "timing self-test failed, so no number from this backend is reported"
                if status == "failed"
                else "timing self-test could not run, so this case reports no number"
            )
            rec = failed_record(p.case, f"{why}: {selftest}", entries[p.case.backend].origin(), host, backend)
            rec.update(new_series().fields(), timing_selftest=selftest)
            writer.write(rec)
            records.append(rec)
            continue
        device_ceilings = shared_ceilings(ceilings, backend, p.case.dtype)
        say(
            f"running {p.label}" + (f" ({args.repeats} trials)" if args.repeats > 1 else "") + " ...",
            file=sys.stderr,
            flush=True,
        )

        def keep(rec: dict, selftest=selftest) -> None:
            rec["timing_selftest"] = selftest
            writer.write(rec)
            records.append(rec)

        if args.repeats > 1:
            run_trials(
                backend,
                p.case,
                args.repeats,
                entries=entries,
                host=host,
                ceilings=device_ceilings,
                chip=chip,
                check=not args.no_check,
                on_record=keep,
            )
        else:
            keep(
                run_case(
                    backend,
                    p.case,
                    host,
                    device_ceilings,
                    check=not args.no_check,
                    chip=chip,
                    origin=entries[p.case.backend].origin(),
                )
            )
    if records:
        say(summary_table(records))
    say(f"{len(records)} record(s) appended to {writer.path}", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in records) else 1


def cmd_ab(args) -> int:
    from chipbench.judging.cases import Account
    from chipbench.judging.paired import ab_rows, row_dicts
    from chipbench.publishing.ab_view import to_markdown
    from chipbench.publishing.record import read_records

    metrics = split_metrics(args.metrics)
    if args.margin is not None and not 0 < args.margin < 1:
        raise UsageError(f"--margin must be a fraction between 0 and 1 (0.05 is ±5%), got {args.margin}")
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
    _emit(text, args.report, args.github_summary)
    return 130 if interrupted else rc


def split_metrics(text: str) -> tuple[str, ...]:
    from chipbench.measuring.metrics import METRICS

    out = tuple(m.strip() for m in text.split(",") if m.strip())
    for m in out:
        if m != "headline" and m not in METRICS:
            raise UsageError(f"unknown metric {m!r}; valid: headline, {', '.join(METRICS)}")
    return out or ("headline",)


def _run_ab(args) -> tuple[list[dict], int, bool]:
    from chipbench.backends.registry import discover
    from chipbench.judging.chips import resolve_chip
    from chipbench.measuring import env
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
            chip=chip,
            check=not args.no_check,
            write=lambda r: (writer.write(r), records.append(r)),
        )
    except KeyboardInterrupt:
        interrupted = True
        print("chipbench: interrupted; the pairs that finished are compared below", file=sys.stderr)
    print(f"{len(records)} record(s) appended to {writer.path}", file=sys.stderr)
    return records, (0 if all(r["status"] == "ok" for r in records) else 1), interrupted


def _emit(text: str, out: str | None, github_summary: bool, markdown: str | None = None) -> None:
    """Write `text` to --out (or stdout); with --github-summary also append the markdown to
    the file GitHub Actions names in $GITHUB_STEP_SUMMARY."""
    import os
    from pathlib import Path

    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if github_summary:
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if not target:
            raise UsageError("--github-summary needs $GITHUB_STEP_SUMMARY (set by GitHub Actions) to name a file")
        with open(target, "a", encoding="utf-8") as f:
            f.write((markdown if markdown is not None else text) + "\n")


def _filters(args):
    from chipbench.options import split_list
    from chipbench.publishing.tables import Filters

    return Filters(
        models=split_list(args.model),
        backends=split_list(args.backend),
        workloads=split_list(args.workload),
        dtypes=split_list(args.dtype),
    )


def cmd_report(args) -> int:
    from chipbench.publishing import tables
    from chipbench.publishing.record import read_records
    from chipbench.options import split_list

    records = read_records(*args.paths, on_error=args.on_error)
    table = tables.build(records, split_list(args.metrics), _filters(args))
    md = tables.to_markdown(table, args.transpose)
    from chipbench.publishing import serving_view

    serving = serving_view.to_markdown(table.records)
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

        text = to_html(table, args.transpose)
    _emit(text, args.out, args.github_summary, md)
    return 0


def cmd_compare(args) -> int:
    from chipbench.judging.compare import compare_records
    from chipbench.publishing.record import read_records
    from chipbench.publishing.report import render_comparison
    from chipbench.options import split_list
    from chipbench.publishing.tables import check_metrics

    if args.fail_below is not None and not 0 < args.fail_below <= 1:
        raise UsageError(f"--fail-below must be a ratio in (0, 1], e.g. 0.95; got {args.fail_below}")
    metrics = list(check_metrics(split_list(args.metrics))) or None
    if metrics and {"roofline", "check"} & set(metrics):
        raise UsageError(
            "roofline and check are not measured metrics; compare headline, ttft_s, tpot_s, e2e_s or a throughput"
        )
    keep = _filters(args).keep
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
        _emit(note, args.out, args.github_summary, note)
        return 0
    if not result.rows:
        hint = "" if args.across else " and device; --across devices compares one device with another"
        raise UsageError(
            f"the baseline matches none of the run's {len(result.unmatched_run)} case(s) (cases match "
            f"by model, dtype, workload, batch, backend and its device kind, execution path{hint})"
        )
    text = render_comparison(result, args.format, args.fail_below, args.unmatched)
    md = render_comparison(result, "md", args.fail_below, args.unmatched)
    _emit(text, args.out, args.github_summary, md)
    if result.failed:
        print(
            f"chipbench: {len(result.failed)} gated row(s) significantly below {args.fail_below} of the baseline",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_merge(args) -> int:
    """Combine records from several runners into one file (each record once) and tabulate them."""
    from pathlib import Path

    from chipbench.judging.cases import Account, dedupe
    from chipbench.publishing import tables
    from chipbench.publishing.record import RecordWriter, read_records

    if Path(args.out).exists():
        raise UsageError(f"{args.out} exists; merge writes a new file and never overwrites one")
    account = Account()
    merged = dedupe(read_records(*args.paths, on_error=args.on_error), account)
    writer = RecordWriter(args.out)
    for rec in merged:
        rec.pop("source_file", None)
        writer.write(rec)
    account.used = len(merged)
    md = tables.to_markdown(tables.build(merged))
    print(
        f"merged {len(merged)} record(s) from {len(args.paths)} path(s) into {args.out}; " + account.line("input"),
        file=sys.stderr,
    )
    _emit(md, None, args.github_summary)
    return 0


def noise_rows(records: list[dict], threshold: float = 0.95) -> list[dict]:
    """Per case: trials and invocations, the headline statistic, the noise at each level, and the
    smallest regression a gate at `threshold` against this baseline would catch."""
    from chipbench import stats
    from chipbench.judging import cases
    from chipbench.judging.compare import CEILING_FIELDS, MACHINE_MOVED, SOFTWARE, baseline_power, bound_by, device_rate

    power = {p["case"]: p for p in baseline_power(records, threshold)}
    rows = []
    for key, recs in cases.group(records).items():
        good = cases.ok(recs)
        if not good:
            rows.append(
                {
                    "case": " ".join(map(str, key[:-1])),
                    "device": key[-1],
                    "trials": 0,
                    "note": f"every trial failed: {recs[-1].get('error')}",
                }
            )
            continue
        p = power[key]
        noise = p["noise"]
        rows.append(
            {
                "case": " ".join(map(str, key[:-1])),
                "device": key[-1],
                "metric": p["metric"],
                "trials": f"{p['trials']} in {p['invocations']}",
                "value": p["value"],
                "trial spread": f"{stats.relative(math.sqrt(noise.trial_var)):.1%}" if noise.trial_var else "-",
                "drift": f"{stats.relative(math.sqrt(noise.drift_var)):.1%}"
                + ("" if noise.drift_known else " (prior)"),
                f"detects at {threshold:g}": f"{p['mdr']:.1%}" if p["mdr"] is not None else "no gate (1 trial)",
                "more": p["mdr_more"],
                "loaded": cases.loaded_trials(good),
                "failed": len(recs) - len(good),
                "wrong": sum(r.get("correct") is False for r in good),
            }
        )
        metric = p["metric"]
        bound = bound_by(metric, good[-1].get("kind"))
        unit = CEILING_FIELDS[bound][2] if bound else None
        seen = [v for v in (device_rate(r, bound)[0] for r in good if bound) if v]  # as compare reads them
        rows[-1]["device ceiling"] = f"{min(seen):.3g}-{max(seen):.3g} {unit}" if seen else "-"
        rows[-1]["machine moved"] = bool(seen) and max(seen) > MACHINE_MOVED * min(seen)
        isas = {
            r.get("env_device_isa")
            for r in good
            if r.get("backend_kind") == "cpu" and r.get("env_device_isa") is not None
        }
        rows[-1]["cpus"] = len(isas) or "-"  # CPUs of this name by their matmul extensions: over 1, other machines
        mixed = [
            f"{label} x{n}"
            for label, key in SOFTWARE
            if (n := len({str(r[key]) for r in good if r.get(key) is not None})) > 1
        ]
        rows[-1]["software"] = ", ".join(mixed) or "one"  # versions pooled: their spread is not noise alone
    return rows


def cmd_baseline(args) -> int:
    """A baseline file from repeated runs: every record once, with the regression each case's gate can catch."""
    from pathlib import Path

    from chipbench.judging.cases import Account, dedupe
    from chipbench.judging.compare import MACHINE_MOVED
    from chipbench.publishing.record import RecordWriter, read_records
    from chipbench.publishing.tables import plain_table

    if args.out and Path(args.out).exists():
        raise UsageError(f"{args.out} exists; a baseline is written to a new file, never over an old one")
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
            print(f"  {r['case']} ({r['device']}): {r['more']}")
    moved = [r for r in rows if r.get("machine moved")]
    if moved:
        print(
            f"{len(moved)} case(s) whose device measured its own ceiling more than {MACHINE_MOVED - 1:.0%} apart "
            "across these runs (device ceiling): their drift includes the machine's moves, so a gate against "
            "them is looser than the software alone would make it",
            file=sys.stderr,
        )
    mixed = [r for r in rows if isinstance(r.get("cpus"), int) and r["cpus"] > 1]
    if mixed:
        print(
            f"{len(mixed)} case(s) pool trials from CPUs of one name that reported other matmul extensions "
            "(env_device_isa; cpus): other machines, whose spread is not this machine's noise; make the baseline "
            "from runs on one of them",
            file=sys.stderr,
        )
    versions = [r for r in rows if r.get("software") not in (None, "one")]
    if versions:
        print(
            f"{len(versions)} case(s) pool trials made with other software (software: "
            f"{'; '.join(sorted({r['software'] for r in versions}))}): their noise includes what the versions "
            "change, so a gate against them is looser than one release's noise; make the baseline from one",
            file=sys.stderr,
        )
    wrong = [r for r in rows if r.get("wrong")]
    if wrong:
        print(
            f"{len(wrong)} case(s) with a trial that failed the correctness gate: compare finds no baseline for "
            "them (fast but wrong is not a reference); make the baseline from runs that pass it",
            file=sys.stderr,
        )
    drift_unknown = [r for r in rows if str(r.get("drift", "")).endswith("(prior)")]
    if drift_unknown:
        print(
            f"{len(drift_unknown)} case(s) made in one invocation: the drift between invocations is not measured, "
            "so a gate assumes the prior; make the baseline from several runs (`chipbench run --repeats 3` more "
            "than once, or `python -m chipbench.measuring.aa`)",
            file=sys.stderr,
        )
    if args.out:
        writer = RecordWriter(args.out)
        for rec in records:
            rec.pop("source_file", None)
            writer.write(rec)
        print(f"wrote {writer.count} record(s) to {args.out}", file=sys.stderr)
    return 0


def cmd_schema(args) -> int:
    from chipbench.judging.claims import claims_json_schema
    from chipbench.publishing.schema import json_schema, json_schema_text

    text = json_schema_text(json_schema() if args.what == "records" else claims_json_schema())
    _emit(text, args.out, False)
    return 0


def cmd_claims(args) -> int:
    from chipbench.judging.cases import Account
    from chipbench.judging.claims import check_all, load_claims
    from chipbench.publishing.claims_view import render
    from chipbench.publishing.record import read_records

    claims = load_claims(args.file)
    records = read_records(*args.runs, on_error=args.on_error) if args.runs else []
    account = Account()
    verdicts = check_all(claims, records, account)
    _emit(render(verdicts, args.format, account), args.out, args.github_summary, render(verdicts, "md", account))
    return 0


def cmd_selftest(args) -> int:
    from chipbench.backends.registry import discover, get_backend
    from chipbench.measuring.selftest import check_all

    entries = discover()
    names = args.backend.split(",") if args.backend else [n for n, e in entries.items() if e.available]
    backends = [get_backend(n, entries) for n in names]  # all names checked before any run
    bad = 0
    for name, backend in zip(names, backends):
        for check in check_all(
            backend, model=args.model, dtype=args.dtype, long_prompt=args.long_prompt, mode=args.mode
        ):
            print(f"{name}: {check.describe()}")
            bad += not check.passed
    return 1 if bad else 0


def cmd_build(args) -> int:
    import torch

    from chipbench.models.build import build_random, parse_dtype, refuse_host_build
    from chipbench.models.zoo import get_model

    spec = get_model(args.model)
    dtype = parse_dtype(args.dtype)
    torch.empty(1, device=args.device)  # start the device runtime outside the timed build
    device = torch.device(args.device)
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    if device.type in ("cpu", "cuda"):  # weights that cannot fit: one line, not the OOM killer
        try:
            refuse_host_build(
                spec,
                args.dtype,
                None,
                "`chipbench build`",
                memory,
                "this host" if memory is None else torch.cuda.get_device_name(device),
            )
        except MemoryError as e:
            raise UsageError(str(e)) from None
    rss_before = _peak_rss_bytes()
    built = build_random(spec, dtype, args.device, seed=args.seed)
    rss_peak = _peak_rss_bytes()
    params = list(built.module.parameters())
    n = sum(p.numel() for p in params)
    weight_bytes = n * dtype.itemsize
    # a NaN or an infinity anywhere shows in a tensor's min or max: one pass, no mask the size of the
    # weights (isfinite().all() took 30 s and 3 GiB more for qwen3-8b on a 2-core CPU)
    finite = all(bool(torch.isfinite(t)) for p in params for t in torch.aminmax(p.detach()))
    rss = (
        f", host peak RSS {rss_peak / 2**30:.2f} GiB ({rss_before / 2**30:.2f} GiB before the build) for "
        f"{weight_bytes / 2**30:.2f} GiB of weights"
        if rss_peak
        else ""
    )
    print(
        f"{spec.name} {args.dtype} on {args.device}: {n:,} parameters built in "
        f"{built.build_time_s:.2f} s ({weight_bytes / 1e9 / built.build_time_s:.2f} GB/s){rss}, all finite: {finite}"
    )
    return 0 if finite else 1


def _peak_rss_bytes() -> int | None:
    """This process's peak resident set (Linux VmHWM), or None where the kernel does not say."""
    try:
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return None


def ceiling_window_option(s) -> None:
    s.add_argument(
        "--ceiling-window",
        type=float,
        metavar="SECONDS",
        help="how long the measured ceilings' rounds run: their best round is the ceiling (default 3 "
        "on a CPU, 1 on an accelerator, or $CHIPBENCH_CEILING_WINDOW_S; 0: five rounds at the "
        "start, none beside each case)",
    )


def use_ceiling_window(args) -> None:
    from chipbench.measuring.ceilings import use_window

    use_window(getattr(args, "ceiling_window", None))


def chip_options(s) -> None:
    s.add_argument("--chip", help="the chip's spec row (results/chips.toml) instead of matching the device's name")
    s.add_argument("--peak-gbps", type=float, help="peak memory bandwidth, for a chip with no spec row")
    s.add_argument("--peak-tflops", type=float, help="peak dense bf16/fp16 TFLOP/s, for a chip with no spec row")


def cmd_ceilings(args) -> int:
    """Measured ceilings per backend, beside the spec row the device matches (or the one named)."""
    from dataclasses import asdict

    from chipbench.backends.registry import discover, get_backend
    from chipbench.measuring import distributed
    from chipbench.measuring.ceilings import check_spec
    from chipbench.judging.chips import match_chip, resolve_chip
    from chipbench.models.build import parse_dtype

    parse_dtype(args.dtype)
    use_ceiling_window(args)
    entries = discover()
    names = args.backend.split(",") if args.backend else [n for n, e in entries.items() if e.available]
    backends = [get_backend(n, entries) for n in names]
    chosen = resolve_chip(
        args.chip,
        args.peak_gbps,
        args.peak_tflops,
        warn=lambda m: distributed.is_lead() and print(f"chipbench: {m}", file=sys.stderr),
    )
    out = []
    for name, backend in zip(names, backends):
        measure = capability(backend, "ceilings")
        if measure is None:
            out.append({"backend": name, "error": "this backend cannot measure ceilings"})
            continue
        c = measure(args.dtype)
        info = backend.info()
        device = info.device_name
        chip = chosen or match_chip(device)
        out.append(
            {
                "backend": name,
                **asdict(c),
                "device_name": device,
                "unsteady": c.unsteady(),
                "chip": chip.name if chip else None,
                "spec_gb_per_s": chip.bandwidth_gb_per_s if chip else None,
                "spec_tflops": (chip.peak_flops(args.dtype) or 0) / 1e12 or None if chip else None,
                "spec_check": check_spec(c, chip, distributed.chips(info.kind))
                if chip
                else f"no spec row matches {device!r}: these measured ceilings are its roofline",
            }
        )
    if not distributed.is_lead():  # under torchrun every rank measures at once; rank 0 prints their sum
        return 0
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for o in out:
            if "error" in o:
                print(f"{o['backend']}: {o['error']}")
                continue
            spec = (
                f"; spec {o['chip']}: {o['spec_gb_per_s'] or '?'} GB/s, {o['spec_tflops'] or '?'} TFLOP/s"
                if o["spec_gb_per_s"] or o["spec_tflops"]
                else ""
            )
            print(
                f"{o['backend']} ({o['device_name']}): memory {o['bandwidth_gb_per_s']:.1f} GB/s (best of copy and read; "
                f"median round {o['bandwidth_gb_per_s_median']:.1f}), {o['dtype']} matmul {o['tflops']:.3g} TFLOP/s "
                f"(n={o['matmul_n']}; median round {o['tflops_median']:.3g}"
                + (
                    f"; as {o['matmul_dtype']}, faster here than {o['dtype']}'s own {o['tflops_in_dtype']:.3g}"
                    if o.get("matmul_dtype") not in (None, o["dtype"])
                    else ""
                )
                + f"), best of {o['rounds']} rounds in "
                f"{o['window_s']:.1f} s{spec}"
                + (f"\n  {o['spec_check']}" if o["spec_check"] else "")
                + "".join(f"\n  unsteady: {u}" for u in o["unsteady"])
            )
    return 0


def cmd_serve(args) -> int:
    """A serving sweep: one record per load level (concurrency x rate), written as each finishes."""
    from dataclasses import replace

    from chipbench.backends.registry import discover, get_backend
    from chipbench.judging.chips import resolve_chip
    from chipbench.measuring import env
    from chipbench.measuring.runner import new_series
    from chipbench.measuring.serving import Load, serve_record
    from chipbench.options import parse_ints, split_list
    from chipbench.publishing import serving_view
    from chipbench.publishing.record import RecordWriter, default_path
    from chipbench.models.zoo import get_model

    entries = discover((args.backend,))
    backend = get_backend(args.backend, entries)
    if capability(backend, "stream_one") is None:
        raise UsageError(
            f"backend {args.backend!r} cannot take a serving load: serving goes through a server "
            "that batches, named openai:URL (e.g. openai:http://127.0.0.1:8000/v1)"
        )
    get_model(args.model)
    if args.dtype not in backend.supported_dtypes():
        raise UsageError(f"unknown dtype {args.dtype!r}; valid: {', '.join(backend.supported_dtypes())}")
    concurrency = parse_ints(args.concurrency, "concurrency levels")
    try:
        rates = tuple(float(x) for x in split_list(args.rate))
    except ValueError:
        raise UsageError(
            f"--rate takes requests per second, comma-separated (e.g. 0.5,1,2); got {args.rate!r}"
        ) from None
    if args.repeats < 1:
        raise UsageError(f"repeats must be >= 1, got {args.repeats}")
    levels = [
        Load(
            args.prompt, args.gen, args.requests, c, r, args.seed, args.max_duration, args.slo_ttft, args.slo_tpot
        ).validate()
        for c in (concurrency or (None,))
        for r in (rates or (None,))
    ]
    chip = resolve_chip(
        args.chip, args.peak_gbps, args.peak_tflops, warn=lambda m: print(f"chipbench: {m}", file=sys.stderr)
    )
    writer = RecordWriter(args.out or default_path())
    host, records = env.host_facts(), []
    for load in levels:
        series = replace(new_series(), planned=args.repeats)
        for k in range(args.repeats):
            print(
                f"serving {load.name} ({load.requests} requests, pp{load.prompt_tokens}+tg{load.gen_tokens})"
                + (f" trial {k + 1}/{args.repeats}" if args.repeats > 1 else "")
                + " ...",
                file=sys.stderr,
                flush=True,
            )
            rec = serve_record(
                backend,
                args.model,
                args.dtype,
                load,
                host,
                entries[args.backend].origin(),
                chip,
                warmup=args.warmup,
                trial=replace(series, index=k),
            )
            writer.write(rec)
            records.append(rec)
    print(serving_view.to_markdown(records) or "no serving level produced a record")
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"chipbench: {r['workload']} failed: {r.get('error')}", file=sys.stderr)
    return 1 if failed and len(failed) == len(records) else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chipbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="models with their facts; backends with availability")
    s.add_argument("what", nargs="?", choices=("all", "models", "backends"), default="all")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("env", help="this machine's devices and software versions, as JSON")
    s.set_defaults(fn=cmd_env)

    s = sub.add_parser("run", help="run the benchmark suite without pytest (same options)")
    add_suite_options(s.add_argument, "--")  # declared once: pytest --benchmark has them as --bench-*
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser(
        "serve",
        help="a serving load sweep against an OpenAI-compatible server: TTFT / TPOT / ITL / "
        "E2E percentiles, throughput and goodput per concurrency or request rate",
    )
    s.add_argument("--backend", required=True, help="the server: openai:URL (e.g. openai:http://127.0.0.1:8000/v1)")
    s.add_argument("--model", required=True, help="the zoo name of the model the server runs (for its byte counts)")
    s.add_argument("--dtype", default="bf16", help="the dtype the server runs it in, as you know it (default bf16)")
    s.add_argument("--concurrency", help="comma-separated levels of requests in flight (e.g. 1,2,4,8)")
    s.add_argument("--rate", help="comma-separated Poisson request rates per second (with or without --concurrency)")
    s.add_argument("--requests", type=int, default=32, help="requests per level (default 32)")
    s.add_argument("--prompt", type=int, default=128, help="prompt tokens per request (default 128)")
    s.add_argument("--gen", type=int, default=64, help="generated tokens per request, fixed (default 64)")
    s.add_argument(
        "--max-duration",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="no request is sent after this long into a level (default 600)",
    )
    s.add_argument(
        "--slo-ttft", type=float, default=2.0, metavar="SECONDS", help="goodput's TTFT limit (default 2, MLPerf)"
    )
    s.add_argument(
        "--slo-tpot", type=float, default=0.2, metavar="SECONDS", help="goodput's TPOT limit (default 0.2, MLPerf)"
    )
    s.add_argument("--warmup", type=int, default=1, help="untimed requests before each level (default 1)")
    s.add_argument("--repeats", type=int, default=1, help="trials per level (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", metavar="FILE", help="JSON-lines file (default results/runs/<time>-<host>.jsonl)")
    chip_options(s)
    s.set_defaults(fn=cmd_serve)

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

    s = sub.add_parser("ceilings", help="measure this machine's copy bandwidth and matmul rate per backend")
    s.add_argument("--backend", help="comma-separated backends (default: every available one)")
    s.add_argument("--dtype", default="bf16", help="fp32, bf16 or fp16 (default bf16)")
    s.add_argument("--json", action="store_true")
    chip_options(s)
    ceiling_window_option(s)
    s.set_defaults(fn=cmd_ceilings)

    def filters(s):
        s.add_argument("--model", help="comma-separated models to keep")
        s.add_argument("--backend", help="comma-separated backends to keep")
        s.add_argument("--workload", help="comma-separated workloads to keep")
        s.add_argument("--dtype", help="comma-separated dtypes to keep")
        s.add_argument(
            "--on-error",
            choices=("fail", "skip"),
            default="fail",
            help="a malformed record: stop with its file and line (fail) or warn and skip it",
        )
        s.add_argument("--github-summary", action="store_true", help="also append the markdown to $GITHUB_STEP_SUMMARY")

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
    filters(s)
    s.set_defaults(fn=cmd_report)

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
    s.add_argument("--format", choices=("md", "csv", "json", "html"), default="md")
    s.add_argument("--out", metavar="FILE")
    filters(s)
    s.set_defaults(fn=cmd_compare)

    s = sub.add_parser("merge", help="merge records from several runners into one file and table")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--out", required=True, metavar="FILE", help="the merged JSON-lines file (must not exist)")
    s.set_defaults(model=None, backend=None, workload=None, dtype=None)
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    s.add_argument("--github-summary", action="store_true")
    s.set_defaults(fn=cmd_merge)

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

    s = sub.add_parser("schema", help="the JSON Schema of records or of claims files")
    s.add_argument("what", choices=("records", "claims"))
    s.add_argument("--out", metavar="FILE")
    s.set_defaults(fn=cmd_schema)

    s = sub.add_parser("claims", help="check chip / model claims: physics, then measured runs")
    s.add_argument("file", help="a claims TOML file (see results/claims.toml)")
    s.add_argument("runs", nargs="*", default=[], metavar="RUN", help="records that can confirm or refute the claims")
    s.add_argument("--format", choices=("md", "json"), default="md")
    s.add_argument("--out", metavar="FILE")
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    s.add_argument("--github-summary", action="store_true")
    s.set_defaults(fn=cmd_claims)

    s = sub.add_parser("selftest", help="prove each backend's timing waits for the device")
    s.add_argument("--backend", help="comma-separated backends (default: every available one)")
    s.add_argument("--model", default="qwen3-0.6b")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--long-prompt", type=int, default=2048, help="prompt of the prefill probe")
    s.add_argument(
        "--mode",
        default="eager",
        choices=("eager", "compiled"),
        help="execution mode of the decode probe (compiled runs ahead of the host on CUDA)",
    )
    s.set_defaults(fn=cmd_selftest)

    s = sub.add_parser("build", help="build a model's random weights and report the build time")
    s.add_argument("model")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--device", default="cpu")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_build)
    return p


def main(argv: list[str] | None = None) -> int:
    from chipbench import use_huge_pages

    use_huge_pages()
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except UsageError as e:
        print(f"chipbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chipbench: interrupted; finished records were kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
