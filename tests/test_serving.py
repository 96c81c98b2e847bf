"""Serving load: Poisson or fixed-concurrency requests against a real server, the serving metrics,
the sweep's records, table and curve; and the arithmetic on hand-made request timings."""

import pytest

from chipbench.errors import UsageError
from chipbench.measuring.serving import Load, LoadRun, RequestResult, peak_in_flight, serve_fields

MODEL = "tiny-qwen3"


def load(**kw):
    base = dict(prompt_tokens=16, gen_tokens=8, requests=4, concurrency=2)
    base.update(kw)
    return Load(**base)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(concurrency=None, rate=None), "needs a concurrency, a request rate, or both"),
        (dict(concurrency=0), "concurrency must be >= 1"),
        (dict(rate=-1.0), "request rate must be a finite number > 0"),
        (dict(gen_tokens=1), ">= 2 generated tokens"),
        (dict(requests=0), "requests must be >= 1"),
        (dict(max_duration_s=0), "max duration must be a finite number of seconds > 0"),
        (dict(max_duration_s=float("inf")), "max duration must be a finite number of seconds > 0"),
        (dict(rate=float("inf")), "request rate must be a finite number > 0"),
        (dict(slo_ttft_s=float("nan")), "the TTFT limit must be > 0 seconds"),
    ],
)
def test_bad_loads_are_refused_in_one_line(kw, message):
    with pytest.raises(UsageError, match=message):
        load(**kw).validate()


def test_poisson_arrivals_are_seeded_and_average_the_rate():
    times = load(requests=4000, rate=5.0, seed=1).send_times()
    assert times == load(requests=4000, rate=5.0, seed=1).send_times()
    assert times[0] == 0 and all(a <= b for a, b in zip(times, times[1:]))
    assert (times[-1] / (len(times) - 1)) == pytest.approx(0.2, rel=0.05)
    assert load(rate=None).send_times() == [0.0] * 4  # concurrency alone paces them


def test_each_request_gets_its_own_prompt():
    p = load(requests=8).prompts(512)
    assert p.shape == (8, 16) and len({tuple(r) for r in p.tolist()}) == 8


def test_level_figures_from_hand_made_timings():
    # two requests of 8 tokens: one fast (TTFT 0.1, TPOT 0.01), one over the TTFT limit (3 s)
    fast = RequestResult(0, 0.0, tuple(0.1 + 0.01 * i for i in range(8)))
    slow = RequestResult(1, 0.05, tuple(3.0 + 0.01 * i for i in range(8)))  # sent while the first ran
    bad = RequestResult(2, 0.6, (), error="EndpointError: boom")
    run = LoadRun(load(requests=4, slo_ttft_s=2.0, slo_tpot_s=0.2), [fast, slow, bad], not_sent=1, duration_s=3.57)
    f = serve_fields(run)
    assert (f["serve_requests"], f["serve_ok"], f["serve_failed"], f["serve_not_sent"]) == (4, 2, 1, 1)
    assert f["serve_output_tok_per_s"] == pytest.approx(16 / 3.57)
    assert f["request_per_s"] == pytest.approx(2 / 3.57)
    assert f["tok_per_s_per_user"] == pytest.approx(100.0)
    # of the four planned: the one left unsent at the time bound met no limit either
    assert f["goodput_req_per_s"] == pytest.approx(1 / 3.57) and f["goodput_fraction"] == pytest.approx(1 / 4)
    assert f["serve_errors"] == "EndpointError: boom"
    assert peak_in_flight(run) == 2
    assert f["serve_partial"] is True  # one failed while others completed: the level is partial
    assert serve_fields(LoadRun(run.load, [fast, slow], not_sent=0, duration_s=3.2))["serve_partial"] is False


def test_a_partial_level_is_marked_in_its_table_row():
    from chipbench.publishing.serving_view import table_rows
    from tests.records import make_record

    rec = make_record(workload="pp8+tg8")
    rec.update(kind="serve", serve_requests=4, serve_ok=2, serve_failed=2, serve_not_sent=0, serve_partial=True)
    [row] = table_rows([rec])
    assert row[6] == "2/4 PARTIAL"


def test_a_concurrency_sweep_against_the_server(llama_server, tmp_path):
    import json

    from chipbench.cli import main
    from chipbench.publishing.record import read_records

    out = tmp_path / "serve.jsonl"
    rc = main(
        [
            "serve",
            "--backend",
            "openai:" + llama_server,
            "--model",
            MODEL,
            "--dtype",
            "fp32",
            "--concurrency",
            "1,2",
            "--requests",
            "4",
            "--prompt",
            "16",
            "--gen",
            "8",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    recs = read_records(str(out))  # schema-validated
    assert [r["workload"] for r in recs] == ["pp16+tg8 serve@c1", "pp16+tg8 serve@c2"]
    for r in recs:
        assert r["status"] == "ok" and r["kind"] == "serve" and r["serve_ok"] == 4
        assert r["serve_output_tok_per_s"] > 0 and r["ttft_s_n"] == 4 and r["itl_s_n"] == 4 * 7
        assert r["output_tok_per_s_median"] == r["serve_output_tok_per_s"]
        assert r["prefix_caching"].startswith("each request's first prompt tokens drawn fresh")
        assert r["correct"] is None
        assert r["host_other_cpu_frac"] is not None  # the host's load over the level, the server's work not in it
        assert r["server_cpu_cores"] > 0 and r["client_cpu_cores"] > 0  # the server on this host, and the client
    assert recs[1]["batch"] == 2
    json.dumps(recs)
    import shlex

    from chipbench.cli import parser

    for r, level in zip(recs, ("1", "2")):  # each level's rerun is the serve line of that level alone
        head, *argv = shlex.split(r["rerun"])
        a = parser().parse_args(argv)
        assert (head, a.command, a.backend, a.model, a.dtype, a.concurrency, a.rate) == (
            "chipbench",
            "serve",
            "openai:" + llama_server,
            MODEL,
            "fp32",
            level,
            None,
        )
        assert (a.requests, a.prompt, a.gen, a.seed) == (4, 16, 8, 0)


def test_a_rate_level_and_its_time_bound(llama_server):
    from chipbench.backends.openai_endpoint import create
    from chipbench.measuring.serving import serve_record

    backend = create("openai:" + llama_server)
    assert backend.probe().available
    rec = serve_record(backend, MODEL, "fp32", load(concurrency=None, rate=50.0, requests=6), {}, warmup=0)
    assert rec["status"] == "ok" and rec["serve_ok"] == 6 and rec["workload"] == "pp16+tg8 serve@r50"
    # a bound too short for the level: what was not sent is counted, never silently dropped
    rec = serve_record(
        backend, MODEL, "fp32", load(concurrency=1, rate=1.0, requests=50, max_duration_s=1.5), {}, warmup=0
    )
    assert rec["serve_not_sent"] > 0 and rec["serve_requests"] == 50
    assert rec["serve_ok"] + rec["serve_failed"] + rec["serve_not_sent"] == 50


def test_the_report_shows_the_serving_table_and_curve(llama_server, tmp_path):
    from chipbench.cli import main

    out = tmp_path / "serve.jsonl"
    assert (
        main(
            [
                "serve",
                "--backend",
                "openai:" + llama_server,
                "--model",
                MODEL,
                "--dtype",
                "fp32",
                "--concurrency",
                "1,3",
                "--requests",
                "3",
                "--prompt",
                "8",
                "--gen",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["report", str(out), "--out", str(md)]) == 0
    text = md.read_text()
    assert "## Serving" in text and "serve@c3" in text and "tok/s/user" in text
    assert main(["report", str(out), "--format", "html", "--out", str(page)]) == 0
    html = page.read_text()
    assert "<h2>Serving</h2>" in html and "Output tokens/s against tokens/s per user" in html


def test_serving_needs_a_server_backend():
    from chipbench.cli import main

    assert main(["serve", "--backend", "cpu", "--model", MODEL, "--concurrency", "1"]) == 2


def test_a_level_that_cannot_run_is_a_failed_record_that_says_how_to_rerun_it():
    from chipbench.measuring.serving import serve_record

    class Gone:
        name = "openai:http://127.0.0.1:9/v1"

        def info(self):
            raise ConnectionError("the server went away")

    rec = serve_record(Gone(), MODEL, "fp32", load(concurrency=2), {}, warmup=0)
    assert rec["status"] == "failed" and "the server went away" in rec["error"]
    assert rec["rerun"].startswith("chipbench serve --backend openai:http://127.0.0.1:9/v1 ")  # not `chipbench run`
    assert "--concurrency 2" in rec["rerun"]


def test_a_levels_requests_find_their_connections_open(llama_server, monkeypatch):
    """Every request of a level on a connection opened before the level (no TCP or TLS handshake in
    the first requests' TTFT): read from the server's access log, by the client's port."""
    import re
    import time

    from chipbench.backends.openai_endpoint import create
    from chipbench.measuring import env
    from chipbench.measuring.serving import serve_record
    from tests.conftest import SERVER_LOGS

    with open(SERVER_LOGS[llama_server]) as f:
        start = f.seek(0, 2)
    rec = serve_record(
        create("openai:" + llama_server), MODEL, "fp32", load(requests=6, concurrency=3), env.host_facts(), warmup=1
    )
    assert rec["status"] == "ok" and rec["serve_ok"] == 6, rec.get("error")
    time.sleep(0.2)
    with open(SERVER_LOGS[llama_server]) as f:
        f.seek(start)
        lines = re.findall(r"127\.0\.0\.1:(\d+) - \"(GET|POST) (\S+)", f.read())
    level = [port for port, verb, path in lines[-6:]]  # the level's six streamed completions
    assert all(verb == "POST" for _, verb, _ in lines[-6:])
    opened_before = {port for port, _, _ in lines[:-6]}
    assert set(level) <= opened_before, (level, lines)


def test_a_requests_wait_inside_the_client_is_counted_from_its_due_time():
    # due at 0.0 and 0.1, sent at 0.0 and 2.0 (the second waited for the first's slot): 1.9 s in the client
    first = RequestResult(0, 0.0, tuple(0.1 + 0.01 * i for i in range(8)), due_s=0.0)
    queued = RequestResult(1, 2.0, tuple(0.1 + 0.01 * i for i in range(8)), due_s=0.1)
    f = serve_fields(LoadRun(load(rate=10.0), [first, queued], duration_s=2.2))
    assert f["serve_send_lag_max_s"] == pytest.approx(1.9)
    assert f["ttft_from_due_p99_s"] == pytest.approx(1.9 + 0.1, rel=0.02)  # the server's TTFT was 0.1 for both
    assert f["e2e_from_due_p99_s"] > 2.0  # where the server's own E2E was 0.17 s for both


def test_a_schedule_faster_than_one_slot_shows_as_client_queueing_not_server_latency():
    import time
    from types import SimpleNamespace

    from chipbench.measuring.serving import run_load

    class Slow:  # a server that answers every request in 0.05 s, one at a time (concurrency 1)
        def prompt(self, handle, ids):
            return ids

        def stream_one(self, handle, prompt, n, on_chunk, deadline):
            for _ in range(n):
                time.sleep(0.05 / n)
                on_chunk(time.perf_counter(), 1)

    run = run_load(Slow(), SimpleNamespace(spec=SimpleNamespace(vocab=64)), load(requests=6, rate=200.0, concurrency=1))
    f = serve_fields(run)
    assert f["serve_ok"] == 6
    # due every 5 ms on average, served every 50 ms: the last waits about 0.25 s in this client
    assert f["serve_send_lag_max_s"] > 0.15
    assert f["e2e_from_due_p99_s"] > 0.15 + 0.05  # each request's own E2E stayed about 0.05 s


def test_the_clients_capacity_is_measured_against_a_mock_server():
    from chipbench.measuring import capacity

    measured = capacity.measure(levels=(1, 4), gen_tokens=32)
    assert [r["concurrency"] for r in measured["levels"]] == [1, 4]
    assert all(r["failed"] == 0 and r["tok_per_s"] > 0 for r in measured["levels"])
    assert measured["tok_per_s"] == max(r["tok_per_s"] for r in measured["levels"]) and measured["bytes_per_s"] > 0
    assert "concurrency" in capacity.table(measured).splitlines()[0]
    flags = capacity.level_fields({"serve_output_tok_per_s": 0.6 * measured["tok_per_s"]}, measured)
    assert flags["client_bound"] is True and flags["client_capacity_share"] == pytest.approx(0.6)
    assert (
        capacity.level_fields(
            {"serve_output_tok_per_s": 10.0}, {"tok_per_s": 1000.0, "request_per_s": 5.0, "at_concurrency": 4}
        )["client_bound"]
        is False
    )
    assert capacity.level_fields({"serve_output_tok_per_s": 10.0}, None)["client_bound"] is None


def test_a_level_past_half_the_clients_capacity_is_flagged_client_bound(tmp_path, monkeypatch, capsys):
    from chipbench.cli import main
    from chipbench.measuring.mockserver import MockServer
    from chipbench.publishing.record import read_records

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path / "cache"))  # the capacity measured once, then kept
    monkeypatch.delenv("CHIPBENCH_FRESH", raising=False)
    args = ["serve", "--model", "qwen3-0.6b", "--prompt", "16", "--warmup", "0"]
    # tokens as fast as the client reads them: the client is the bottleneck. At concurrency 1, where
    # the capacity is usually measured best on 2 cores, the level reads 0.94-1.12 of it; at 4 it
    # read 0.67-0.83, close enough to 0.5 that a busy spell failed it once in three runs
    with MockServer() as instant:
        out = tmp_path / "instant.jsonl"
        assert (
            main(
                [
                    *args,
                    "--backend",
                    "openai:" + instant.url,
                    "--concurrency",
                    "1",
                    "--requests",
                    "16",
                    "--gen",
                    "128",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    (rec,) = read_records(out)
    assert rec["client_bound"] is True and rec["client_capacity_share"] > 0.5, rec["client_capacity_note"]
    assert "CLIENT-BOUND" in capsys.readouterr().err
    with MockServer(tok_per_s=20) as slow:  # 20 tokens/s per request: far below what the client drives
        out = tmp_path / "slow.jsonl"
        assert (
            main(
                [
                    *args,
                    "--backend",
                    "openai:" + slow.url,
                    "--concurrency",
                    "1",
                    "--requests",
                    "2",
                    "--gen",
                    "8",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    (rec,) = read_records(out)
    assert rec["client_bound"] is False and rec["client_capacity_share"] < 0.1
    assert "(kept: made" in rec["client_capacity_note"]  # the second sweep reused the first's measurement
    assert rec["serve_send_lag_p99_s"] is not None
    assert rec["server_cpu_cores"] is None and "inside the client's own process" in rec["client_cpu_note"], rec[
        "client_cpu_note"
    ]


@pytest.mark.parametrize(
    "client, server, wall, contends, said",
    [
        (5.0, 15.0, 10.0, True, "used 0.50 of this host's 2 CPUs beside the server's 1.50: they contended"),
        (1.0, 10.0, 10.0, False, "used 0.10 of this host's 2 CPUs beside the server's 1.00"),
        # measured here: chipbench's client at 0.01 CPUs beside a 2-thread llama-server at 1.97 slowed nothing
        (0.1, 19.7, 10.0, False, "used 0.01 of this host's 2 CPUs beside the server's 1.97"),
        (0.2, 0.4, 0.5, None, "a level of 0.50 s"),
        (1.0, None, 10.0, None, "used 0.10 of this host's 2 CPUs; the server is not on this host"),
    ],
)
def test_a_client_and_server_that_fill_the_hosts_cpus_are_said_to_contend(
    monkeypatch, client, server, wall, contends, said
):
    """On one host the load generator takes CPU time the server would use: a level whose client and
    server kept 90% of the CPUs busy measured the server slowed by its own client."""
    import psutil

    from chipbench.measuring import hostload

    monkeypatch.setattr(psutil, "cpu_count", lambda *a, **k: 2)
    note = None if server is not None else "the server is not on this host: no CPUs shared"
    before = hostload.ClientSample(100.0, 3.0, None if server is None else 7.0, note)
    after = hostload.ClientSample(100.0 + wall, 3.0 + client, None if server is None else 7.0 + server, note)
    out = hostload.client_fields(before, after)
    assert out["client_contends"] is contends and said in out["client_cpu_note"]
    assert out["client_cpu_cores"] == pytest.approx(client / wall)


def test_a_driven_levels_server_use_is_over_the_load_and_its_tool_is_not_judged(monkeypatch):
    """A load tool's wall holds its start-up (tens of seconds of imports while the server idles): the
    server's use is taken over the load the tool timed, and the tool's CPU time, start-up included,
    says nothing of contention during the load."""
    import psutil

    from chipbench.measuring import hostload

    monkeypatch.setattr(psutil, "cpu_count", lambda *a, **k: 2)
    before, after = hostload.ClientSample(0.0, 1.0, 5.0), hostload.ClientSample(30.0, 7.0, 41.0)
    out = hostload.client_fields(before, after, load_s=20.0)
    assert out["server_cpu_cores"] == pytest.approx(1.8) and out["client_cpu_cores"] == pytest.approx(0.2)
    assert out["client_contends"] is None and "start-up included" in out["client_cpu_note"]
