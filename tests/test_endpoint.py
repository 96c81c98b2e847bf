"""The OpenAI-compatible endpoint backend, against a real llama.cpp server (llama-cpp-python[server])
that the test starts on the loopback address, and against hand-made streams."""

import pytest

import random
import re
import time

from chipbench.backends.openai_endpoint import (
    SALT_TOKENS,
    EndpointError,
    StreamResult,
    _chunk_tokens,
    check_counts,
    create,
    salted,
    single_token_words,
    text_prompt,
)
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload
from tests.conftest import SERVER_LOGS, free_port

MODEL = "tiny-qwen3"  # what the shared llama_server serves


@pytest.fixture(scope="module")
def server(llama_server):
    return llama_server


def case(url, workload="pp16+tg8", batch=1, rounds=3):
    return Case("openai:" + url, MODEL, "fp32", parse_workload(workload, batch=batch), warmup=1, rounds=rounds)


def test_a_case_streams_exactly_the_requested_tokens_through_the_server(server):
    backend = create("openai:" + server)
    assert backend.probe().available
    rec = run_case(backend, case(server), check=False)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["backend_kind"] == "endpoint" and rec["device_name"].startswith("endpoint 127.0.0.1:")
    # llama-cpp-python's server takes text prompts only, and streams no usage: counted by logprobs
    assert "text prompts" in rec["exec_path"] and "min_tokens" in rec["exec_path"]
    assert len(rec["token_times_s"]) == 3 and all(len(t) == 8 for t in rec["token_times_s"])
    assert rec["ttft_s_median"] > 0 and rec["tpot_s_median"] > 0
    assert 0 < rec["endpoint_rtt_s"] < 1.0  # a small GET on the loopback's open connection


def test_a_batch_is_concurrent_requests_each_stepped_when_the_last_delivers(server):
    rec = run_case(create("openai:" + server), case(server, batch=3, rounds=2), check=False)
    assert rec["status"] == "ok", rec.get("error")
    assert all(len(t) == 8 for t in rec["token_times_s"])


def test_a_server_that_stops_short_fails_the_case(server, monkeypatch):
    backend = create("openai:" + server)
    real = backend.request_body

    def short(handle, prompt, new_tokens):
        body = real(handle, prompt, new_tokens)
        body.update(max_tokens=new_tokens - 2, min_tokens=0)
        return body

    monkeypatch.setattr(backend, "request_body", short)
    rec = run_case(backend, case(server), check=False)
    assert rec["status"] == "failed"
    assert "carried 6 tokens" in rec["error"] and "for 8 requested" in rec["error"]


def test_the_text_prompt_is_one_token_per_word_on_the_server(server):
    import httpx

    from chipbench.models.zoo import get_model

    text = text_prompt(list(range(40)), get_model(MODEL).vocab)
    from tests.conftest import SERVER_KEY

    r = httpx.post(
        f"{server}/completions",
        json={"prompt": text, "max_tokens": 1, "temperature": 0},
        timeout=60,
        headers={"Authorization": f"Bearer {SERVER_KEY}"},
    )
    assert r.json()["usage"]["prompt_tokens"] == 40


def test_a_salted_prompt_keeps_its_length_and_all_but_its_first_tokens():
    vocab = 512
    ids = list(range(100, 140))
    for _ in range(20):
        s = salted(ids, vocab)
        assert len(s) == 40 and s[SALT_TOKENS:] == ids[SALT_TOKENS:] and all(0 <= t < vocab for t in s)
    assert len({tuple(salted(ids, vocab)[:SALT_TOKENS]) for _ in range(50)}) == 50  # fresh every call
    assert len(salted([7, 8], vocab)) == 2  # shorter than the salt: every token drawn
    text = text_prompt(ids, vocab)
    words = set(single_token_words(vocab))
    for _ in range(20):
        t = salted(text, vocab)
        assert t.count(" ") == 40 and t.endswith(text[len(text_prompt(ids[:SALT_TOKENS], vocab)) :])
        assert all(" " + w in words for w in t.split(" ")[1 : SALT_TOKENS + 1])
    assert salted(text_prompt([3, 4], vocab), vocab).count(" ") == 2


def _server_log_since(url: str, offset: int) -> str:
    with open(SERVER_LOGS[url]) as f:
        f.seek(offset)
        return f.read()


def _log_size(url: str) -> int:
    time.sleep(0.2)  # the server's last lines of the request before
    with open(SERVER_LOGS[url]) as f:
        return f.seek(0, 2)


def test_no_round_warmup_or_check_is_served_from_the_servers_prompt_cache(server, monkeypatch):
    """llama.cpp's server keeps the last prompt's state and skips whatever prefix a new request
    shares with it ("full prompt already cached", "N prefix-match hit" in its log): the same prompt
    every round would time no prefill at all. Salted requests share nothing with the one before."""
    import chipbench.backends.openai_endpoint as ep
    from chipbench.measuring.selftest import check_all

    monkeypatch.setattr(ep, "_SALT", random.Random(0))  # the test's draws fixed; a run's come from the OS
    start = _log_size(server)
    backend = create("openai:" + server)
    rec = run_case(backend, case(server, workload="pp64+tg4", rounds=3), check=False)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["prefix_caching"].startswith("each request's first prompt tokens drawn fresh")
    check_all(backend, model=MODEL, dtype="fp32", long_prompt=256)  # the self-test's warmup and timed probes
    log = _server_log_since(server, start)
    assert log.count("POST /v1/completions") >= 8  # capabilities, warmup, 3 rounds, self-test probes
    assert "full prompt already cached" not in log
    hits = [int(n) for n in re.findall(r"(\d+) prefix-match hit", log)]
    assert all(n < SALT_TOKENS for n in hits), hits


def test_timed_requests_reuse_the_warmups_connections(server):
    """Each timed request on a keep-alive connection the warmup opened: a TCP (or TLS) handshake
    inside TTFT would time the network's round trips, not the server."""
    start = _log_size(server)
    rec = run_case(create("openai:" + server), case(server, batch=2, rounds=3), check=False)
    assert rec["status"] == "ok", rec.get("error")
    time.sleep(0.2)
    ports = re.findall(r"127\.0\.0\.1:(\d+) - \"POST /v1/completions", _server_log_since(server, start))
    timed = ports[-2 * 4 :]  # the warmup's and the three rounds' requests, two streams each
    assert len(set(timed)) <= 2, timed


def test_a_server_that_runs_another_model_size_fails_the_case(server):
    """The roofline and the claims judge an endpoint case by the named model's bytes: where the server
    says what it runs (llama.cpp's server lists meta.n_params and n_embd), another size fails."""
    from chipbench.models.counts import facts
    from chipbench.models.zoo import get_model

    backend = create("openai:" + server)
    assert backend.probe().available
    rec = run_case(backend, case(server), check=False)  # llama-cpp-python's server lists no meta
    assert rec["status"] == "ok" and "does not say their size: tiny-qwen3 assumed" in rec["weights"]
    listed = backend._models[0]
    backend._models = [{**listed, "meta": {"n_params": 596_049_920, "n_embd": 1024}}]  # a qwen3-0.6b
    rec = run_case(backend, case(server), check=False)
    assert rec["status"] == "failed", rec["weights"]
    assert (
        "runs a model of 0.596B parameters, hidden 1024" in rec["error"]
        and "tiny-qwen3 has 0.107M, hidden 64" in rec["error"]
    )
    backend._models = [{**listed, "meta": {"n_params": facts(get_model(MODEL)).params_total, "n_embd": 64}}]
    rec = run_case(backend, case(server), check=False)
    assert rec["status"] == "ok" and "by the server's meta, as tiny-qwen3" in rec["weights"]


def test_a_server_that_wants_a_key_gets_it_from_the_environment_and_never_in_a_record(server, monkeypatch):
    from chipbench.backends.openai_endpoint import API_KEY_ENV
    from tests.conftest import SERVER_KEY

    rec = run_case(create("openai:" + server), case(server), check=False)  # the session's server wants a key
    assert rec["status"] == "ok" and SERVER_KEY not in repr(rec)
    monkeypatch.delenv(API_KEY_ENV)
    reason = create("openai:" + server).probe().reason
    assert "refused the request (401)" in reason and "set $CHIPBENCH_API_KEY" in reason
    monkeypatch.setenv(API_KEY_ENV, "wrong")
    assert "it refused the key in $CHIPBENCH_API_KEY" in create("openai:" + server).probe().reason


def test_no_server_at_the_address_is_a_reason_and_asked_by_name_an_error():
    from chipbench.backends.registry import discover
    from chipbench.errors import UsageError
    from chipbench.measuring.suite import SuiteOptions, plan

    url = f"openai:http://127.0.0.1:{free_port()}/v1"
    assert "no OpenAI-compatible server answered" in create(url).probe().reason
    with pytest.raises(UsageError, match="was asked for but is unavailable here: no OpenAI-compatible server"):
        plan(SuiteOptions(backends=(url,), models=(MODEL,)), discover())
    assert "not an http(s) URL" in create("openai:ftp://x").probe().reason


def test_chunk_token_counts_from_ids_logprobs_or_text():
    assert _chunk_tokens({"text": "ab", "token_ids": [1, 2]}) == 2
    assert _chunk_tokens({"text": "", "logprobs": {"tokens": [""]}}) == 1  # an incomplete UTF-8 token
    assert _chunk_tokens({"text": "a", "finish_reason": None}) == 1
    assert _chunk_tokens({"text": "", "finish_reason": "length"}) == 0  # the closing chunk


def test_served_counts_must_match_the_request():
    ok = StreamResult(chunks=[(0.1, 1)] * 4, usage={"completion_tokens": 4, "prompt_tokens": 8})
    check_counts(ok, 4, "usage", 8)
    with pytest.raises(EndpointError, match="generated 3 tokens, the workload asked for exactly 4"):
        check_counts(StreamResult(chunks=[(0.1, 1)] * 3, usage={"completion_tokens": 3}), 4, "usage", 8)
    with pytest.raises(EndpointError, match="carried 3 tokens in 2 chunks for 4 requested"):  # coalesced
        check_counts(StreamResult(chunks=[(0.1, 2), (0.2, 1)], usage=None), 4, "logprobs", 8)
    with pytest.raises(EndpointError, match="ended early .* --interrupt_requests False"):  # cut off, not coalesced
        check_counts(StreamResult(chunks=[(0.1, 1)], usage=None, finish_reason=None), 4, "logprobs", 8)
    with pytest.raises(EndpointError, match="tokenised the prompt to 9 tokens, the workload has 8"):
        check_counts(
            StreamResult(chunks=[(0.1, 1)] * 4, usage={"completion_tokens": 4, "prompt_tokens": 9}), 4, "usage", 8
        )


def test_a_prompt_the_server_tokenises_to_another_length_fails_the_case(server, monkeypatch):
    import chipbench.backends.openai_endpoint as ep

    real = ep.text_prompt
    monkeypatch.setattr(ep, "text_prompt", lambda ids, vocab: real(ids, vocab) + " se")  # 2 tokens here
    rec = run_case(create("openai:" + server), case(server), check=False)
    assert rec["status"] == "failed" and "tokenised the prompt to 18 tokens, the workload has 16" in rec["error"]


def test_a_server_on_this_host_is_the_cases_own_work_not_a_neighbours_load(server):
    """The server's CPU time is the case's: found by its listening port, so a local server does not
    flag every trial as run on a loaded host."""
    import psutil

    pids = create("openai:" + server).host_processes()
    assert pids and any("llama_cpp.server" in " ".join(psutil.Process(p).cmdline()) for p in pids)


def test_a_serving_levels_connections_are_all_open_before_it_starts():
    """open_connections(n) leaves n keep-alive connections in the client's pool, every time: each
    GET holds its connection until all n have one (before, a GET that finished first handed its
    connection to the next, and a level opened the missing ones inside its timed TTFT)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from chipbench.backends.openai_endpoint import _client

    ports = []

    class Models(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self):
            ports.append(self.client_address[1])
            body = b'{"data": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = create(f"openai:http://127.0.0.1:{httpd.server_address[1]}/v1")
        for _ in range(10):
            ports.clear()
            handle = SimpleNamespace(client=_client())
            endpoint.open_connections(handle, 6)
            opened = set(ports)
            assert len(opened) == 6, ports
            handle.client.get(f"{endpoint.url}/models")  # a later request finds one of them open
            assert ports[-1] in opened and len(set(ports)) == 6
            handle.client.close()
    finally:
        httpd.shutdown()
