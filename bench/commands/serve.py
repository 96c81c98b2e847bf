"""`chipbench serve`: a serving load sweep against an OpenAI-compatible server."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

from chipbench.backends.base import capability
from chipbench.backends.openai_endpoint import salted, text_prompt
from chipbench.backends.registry import discover, get_backend
from chipbench.commands.common import chip_options
from chipbench.errors import UsageError
from chipbench.judging.chips import resolve_chip
from chipbench.measuring import drivers, hostload
from chipbench.measuring.workload import Workload
from chipbench.measuring import env
from chipbench.models.zoo import get_model
from chipbench.options import parse_ints, split_list
from chipbench.publishing import serving_view
from chipbench.publishing.tables import terminal_safe


def _levels(args) -> list:
    """The sweep's load levels: every concurrency level with every request rate, each checked."""
    from chipbench.measuring.serving import Load

    concurrency = parse_ints(args.concurrency, "concurrency levels")
    try:
        rates = tuple(float(x) for x in split_list(args.rate))
    except ValueError:
        raise UsageError(
            f"--rate takes requests per second, comma-separated (e.g. 0.5,1,2); got {args.rate!r}"
        ) from None
    if args.repeats < 1:
        raise UsageError(f"repeats must be >= 1, got {args.repeats}")
    return [
        Load(
            args.prompt, args.gen, args.requests, c, r, args.seed, args.max_duration, args.slo_ttft, args.slo_tpot
        ).validate()
        for c in (concurrency or (None,))
        for r in (rates or (None,))
    ]


def cmd_serve(args) -> int:
    """A serving sweep: one record per load level (concurrency x rate), written as each finishes."""

    from chipbench.judging.trial import add_roofline
    from chipbench.measuring import capacity as client
    from chipbench.measuring.runner import new_series
    from chipbench.measuring.serving import serve_record
    from chipbench.publishing.record import RecordWriter, default_path

    if args.client_capacity:  # what this client can drive here, against a mock server: the table, no sweep
        measured = client.measure()
        print(client.table(measured))
        print(
            f"capacity: {measured['tok_per_s']:.0f} streamed tokens/s, {measured['request_per_s']:.1f} requests/s "
            f"(best at concurrency {measured['at_concurrency']}); a level past {client.CLIENT_BOUND_SHARE:.0%} "
            "of it is flagged client-bound",
            file=sys.stderr,
        )
        return 0
    if not args.backend or not args.model:
        raise UsageError("serve needs --backend openai:URL and --model (or --client-capacity alone)")
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
    levels = _levels(args)
    chip = resolve_chip(
        args.chip, args.peak_gbps, args.peak_tflops, warn=lambda m: print(f"chipbench: {m}", file=sys.stderr)
    )
    writer = RecordWriter(args.out or default_path())
    if args.driver != "builtin":
        records = _driven(args, backend, entries, levels, chip, writer)
        return _finish(records)
    print("measuring what this client can drive (a mock server on this host) ...", file=sys.stderr, flush=True)
    capacity, made = client.kept_or_measured()
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
                lambda rec: add_roofline(rec, None, chip),
                warmup=args.warmup,
                trial=replace(series, index=k),
            )
            if rec["status"] == "ok":
                rec.update(client.level_fields(rec, capacity, made))
            writer.write(rec)
            records.append(rec)
    return _finish(records)


def _driven(args, backend, entries, levels, chip, writer) -> list[dict]:
    """Each level driven by another load tool (--driver), its result file imported as the level's record."""
    from chipbench.judging.trial import add_roofline
    from chipbench.measuring.runner import Case, failed_record
    from chipbench.models.gguf_export import tokenizer_dir
    from chipbench.publishing.importing import import_file

    prefix = drivers.prefix_for(args.driver, args.driver_bin)
    spec = get_model(args.model)
    handle = backend.load(spec, args.dtype, seed=args.seed)  # the served model's id and engine
    model_id, engine = handle.model_id, handle.engine
    backend.close(handle)
    device = {**entries[args.backend].origin(), **env.device_facts(backend.info())}
    host = env.host_facts()
    root = Path(str(writer.path)).with_suffix("")
    pids = hostload.case_pids(backend)  # the server's processes on this host, if it runs here
    records = []
    for load in levels:
        for k in range(args.repeats):
            out = root / f"{args.driver}-{load.name.replace('@', '-')}-{k}"
            print(f"serving {load.name} with {args.driver} ({load.requests} requests) ...", file=sys.stderr, flush=True)
            texts = [salted(text_prompt(row, spec.vocab), spec.vocab) for row in load.prompts(spec.vocab).tolist()]
            before, cpu_before = hostload.sample(pids), hostload.client_sample(pids)
            dr = drivers.run(args.driver, prefix, backend.url, model_id, load, out, str(tokenizer_dir()), texts)
            # the tool's CPU time counts once it has been waited for (it has: drivers.run waits)
            cpu_after, after = hostload.client_sample(pids), hostload.sample(pids)
            host_load = hostload.facts(before, after)
            if dr.error is None:
                try:
                    got = import_file(dr.result, None, args.model, None, engine, args.dtype)
                except UsageError as e:
                    dr.error, got = f"{args.driver}'s result could not be read: {e}", []
            if dr.error is not None:
                wl = Workload("generate", load.prompt_tokens, load.gen_tokens, batch=load.concurrency or load.requests)
                rec = failed_record(Case(args.driver, args.model, args.dtype, wl), dr.error, device, host)
                rec.update(kind="serve", workload=f"pp{load.prompt_tokens}+tg{load.gen_tokens} {load.name}")
                got = [rec]
            for rec in got:
                rec.update({k: v for k, v in device.items() if rec.get(k) is None})
                if rec.get("import_missing") and rec.get("device_name"):
                    rec["import_missing"] = [m for m in rec["import_missing"] if m != "device_name"] or None
                rec.update(serve_driver=args.driver, driver_log=str(dr.log), rerun=shlex.join(dr.command))
                rec.update(host_load)
                rec.update(hostload.client_fields(cpu_before, cpu_after, rec.get("serve_duration_s") or dr.wall_s))
                rec["serve_prompts"] = "chipbench's seeded prompts as text, each salted (the tool's dataset file)"
                if rec["status"] == "ok":
                    add_roofline(rec, None, chip)
                writer.write(rec)
                records.append(rec)
    return records


def _finish(records: list[dict]) -> int:
    print(serving_view.to_markdown(records) or "no serving level produced a record")
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(terminal_safe(f"chipbench: {r['workload']} failed: {r.get('error')}"), file=sys.stderr)
    partial = [r for r in records if r["status"] == "ok" and r.get("serve_partial")]
    for r in partial:
        print(
            terminal_safe(
                f"chipbench: {r['workload']} PARTIAL: {r['serve_failed']} of {r['serve_requests']} requests failed "
                f"({r.get('serve_errors')}); its figures describe the {r['serve_ok']} that completed"
            ),
            file=sys.stderr,
        )
    for r in records:
        if r.get("client_bound"):
            print(
                f"chipbench: {r['workload']} CLIENT-BOUND: {r['client_capacity_share']:.0%} of what this client can "
                f"drive ({r['client_capacity_tok_per_s']:.0f} tokens/s): the figures measure the client as much as "
                "the server; drive it with more client processes or another load tool",
                file=sys.stderr,
            )
    for r in records:
        if r.get("client_contends"):
            print(terminal_safe(f"chipbench: {r['workload']} CLIENT CONTENDS: {r['client_cpu_note']}"), file=sys.stderr)
    return 1 if failed or partial else 0


def add_serve(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="a serving load sweep against an OpenAI-compatible server: TTFT / TPOT / ITL / "
        "E2E percentiles, throughput and goodput per concurrency or request rate",
    )
    s.add_argument("--backend", help="the server: openai:URL (e.g. openai:http://127.0.0.1:8000/v1)")
    s.add_argument("--model", help="the zoo name of the model the server runs (for its byte counts)")
    s.add_argument(
        "--driver",
        choices=drivers.DRIVERS,
        default="builtin",
        help="the load generator: chipbench's own client (builtin), or guidellm, aiperf or vllm bench serve run for "
        "each level, their results imported (default builtin)",
    )
    s.add_argument("--driver-bin", metavar="COMMAND", help="the driver's command, where it is not on PATH (a prefix)")
    s.add_argument(
        "--client-capacity",
        action="store_true",
        help="measure only what this client can drive on this host (a mock server), and print it",
    )
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


def cmd_loadgen(args) -> int:
    """One MLPerf LoadGen scenario with a chipbench backend as the system under test."""
    from chipbench.judging.trial import add_roofline
    from chipbench.measuring import loadgen
    from chipbench.measuring.runner import Case, case_identity, failed_record, metric_fields, stack_fields
    from chipbench.publishing.record import RecordWriter, default_path

    case = loadgen.LoadGenCase(
        args.scenario,
        args.prompt,
        args.gen,
        args.samples,
        args.qps,
        args.min_duration,
        args.min_queries,
        args.slo_ttft,
        args.slo_tpot,
        args.seed,
        args.max_duration,
        args.grace,
    ).validate()
    entries = discover((args.backend,))
    backend = get_backend(args.backend, entries)
    spec = get_model(args.model)
    if args.dtype not in backend.supported_dtypes():
        raise UsageError(f"unknown dtype {args.dtype!r}; valid: {', '.join(backend.supported_dtypes())}")
    chip = resolve_chip(
        args.chip, args.peak_gbps, args.peak_tflops, warn=lambda m: print(f"chipbench: {m}", file=sys.stderr)
    )
    writer = RecordWriter(args.out or default_path())
    logs = Path(str(writer.path)).with_suffix("") / f"loadgen-{case.scenario.lower()}"
    wl = Workload("generate", case.prompt_tokens, case.gen_tokens, batch=1, seed=case.seed)
    ident = Case(args.backend, spec.name, args.dtype, wl, rounds=case.min_queries)
    device = {**entries[args.backend].origin(), **env.device_facts(backend.info())}
    host = env.host_facts()
    handle = measured = None
    print(f"LoadGen {case.scenario} on {args.backend} {spec.name} {args.dtype} ...", file=sys.stderr, flush=True)
    try:
        handle = backend.load(spec, args.dtype, seed=case.seed)
        run = loadgen.run(backend, handle, case, logs)
        rec = case_identity(ident)
        rec.update(kind="serve", workload=case.name, status="ok", error=None)
        rec.update(stack_fields(backend, handle))
        rec.update(device)
        measured = loadgen.record_fields(run, case)
        rec.update(measured)
        rounds = loadgen.rounds_of(run)
        if not rounds:
            raise RuntimeError(f"no query completed: {rec['serve_errors']}")
        rec.update(metric_fields(rounds, wl), rounds=len(rounds), token_times_s=None)
        rec["tok_per_s_per_user"] = 1 / rec["tpot_s_median"] if rec.get("tpot_s_median") else None
        rec["timing_method"] = (
            "host clock: each token stamped as the backend delivered it, from LoadGen's issue of its query"
        )
        rec["correct"], rec["correctness_note"] = (
            None,
            "not checked here: chipbench run gates this backend, model and dtype",
        )
        add_roofline(rec, None, chip)
    except UsageError:
        raise
    except Exception as e:  # the scenario fails as a record with its reason
        rec = failed_record(ident, e, device, host, backend)
        rec.update(kind="serve", workload=case.name)
        if measured:  # every query failed: how many, and why, stay in the record
            rec.update(measured)
    finally:
        if handle is not None:
            backend.close(handle)
    rec.update(host)
    rec.update(env.provenance(case.seed))
    writer.write(rec)
    print(serving_view.to_markdown([rec]) or "", flush=True)
    if rec["status"] != "ok":
        print(terminal_safe(f"chipbench: LoadGen {case.scenario} failed: {rec.get('error')}"), file=sys.stderr)
        return 1
    print(
        f"LoadGen {case.scenario}: {'VALID' if rec['loadgen_valid'] else 'INVALID' if rec['loadgen_valid'] is False else 'no result'}"
        f"; {rec['loadgen_result'] or '-'}; early stopping satisfied: {rec['loadgen_early_stopping'] or '-'}; "
        f"{rec['loadgen_checks'] or ''}"
        + (f"; LoadGen recommends: {rec['loadgen_recommendations']}" if rec["loadgen_recommendations"] else "")
        + f"; logs in {logs}",
        file=sys.stderr,
    )
    return 0 if rec["loadgen_valid"] else 1


def add_loadgen(sub) -> None:
    from chipbench.measuring.serving import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S

    s = sub.add_parser(
        "loadgen", help="an MLPerf LoadGen scenario (SingleStream, Server, Offline) on a chipbench backend"
    )
    s.add_argument("--backend", required=True, help="a backend that generates (cpu, cuda, llamacpp, vllm, a plugin)")
    s.add_argument("--model", required=True, help="the zoo model")
    s.add_argument("--dtype", default="bf16")
    s.add_argument("--scenario", required=True, choices=("SingleStream", "Server", "Offline"))
    s.add_argument(
        "--qps",
        type=float,
        help="Server: the target query rate per second; Offline: the expected rate (sizes its query)",
    )
    s.add_argument("--samples", type=int, default=16, help="distinct seeded prompts in the sample library (default 16)")
    s.add_argument("--prompt", type=int, default=64, help="prompt tokens per query (default 64)")
    s.add_argument("--gen", type=int, default=32, help="generated tokens per query, fixed (default 32)")
    s.add_argument("--min-duration", type=float, default=10.0, help="LoadGen's minimum duration, s (default 10)")
    s.add_argument("--min-queries", type=int, default=8, help="LoadGen's minimum query count (default 8)")
    s.add_argument(
        "--max-duration",
        type=float,
        default=600.0,
        help="the run's bound, s: LoadGen issues nothing past it and queries still waiting are answered unrun, "
        "counted as failed (default 600); the query in flight gets --grace more, then the run ends whatever "
        "the backend does",
    )
    s.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long past --max-duration the query in flight may take (default: a quarter of the bound, "
        "at least 60 s)",
    )
    s.add_argument("--slo-ttft", type=float, default=DEFAULT_SLO_TTFT_S, help="Server: the TTFT limit, s (default 2)")
    s.add_argument("--slo-tpot", type=float, default=DEFAULT_SLO_TPOT_S, help="Server: the TPOT limit, s (default 0.2)")
    s.add_argument("--seed", type=int, default=0)
    chip_options(s)
    s.add_argument("--out", metavar="FILE", help="JSON-lines file (default results/runs/<time>-<host>.jsonl)")
    s.set_defaults(fn=cmd_loadgen)
