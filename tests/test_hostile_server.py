"""A hostile OpenAI-compatible server on 127.0.0.1: whatever it does (never ends its stream, drips a
byte at a time, sends a line of megabytes, answers HTTP 500, closes mid-stream, sends the wrong
number of tokens, waits before its first byte), every request ends within its deadline, with a
result or an error saying why, and a serving level ends within its bound with every request
counted."""

import http.server
import json
import threading
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipbench.backends.openai_endpoint import EndpointError, check_counts, stream_completion
from chipbench.measuring.serving import Load, run_load
from tests.test_fuzz import FUZZ

DEADLINE_S = 1.5
SLACK_S = 1.5  # a bound is met within this (a network read's granularity, thread start-up)


def chunk(n: int = 1) -> bytes:
    return b"data: " + json.dumps({"choices": [{"text": "x", "logprobs": {"tokens": ["x"] * n}}]}).encode() + b"\n\n"


def behave(kind, w):
    """Write the response body for `kind` to `w` (the headers are sent)."""
    if kind == "never ends":
        while True:
            w.write(chunk())
            w.flush()
            time.sleep(0.01)
    elif kind == "drips":
        for b in chunk() * 100:
            w.write(bytes([b]))
            w.flush()
            time.sleep(0.2)
    elif kind == "huge line":
        w.write(b"data: " + b"x" * (3 << 20))
    elif kind == "closes mid-stream":
        w.write(chunk() + chunk()[:10])
    elif kind == "too few tokens":
        w.write(chunk() + chunk() + b"data: [DONE]\n\n")
    elif kind == "not json":
        w.write(b"data: {oops\n\n")
    elif kind == "json list":
        w.write(b"data: [1, 2]\n\n")


class Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        kind = self.server.kind
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if kind == "slow first byte":
            time.sleep(DEADLINE_S + 3)
        if kind == "http 500":
            body = b'{"error": "internal"}'
            self.send_response(500)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        try:
            behave(kind, self.wfile)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


BATTERY = {
    "never ends": "for 4 requested",  # the tokens asked for arrive, the read stops soon after, the count fails it
    "drips": "deadline",
    "huge line": "longer than",
    "http 500": "HTTP 500",
    "closes mid-stream": "",  # an incomplete body: httpx's error, or a short stream caught by the count
    "too few tokens": "2 tokens in 2 chunks for 4 requested",
    "slow first byte": "",  # httpx's read timeout, set to the deadline
    "not json": "not JSON",
    "json list": "not a JSON object",
}


@pytest.mark.parametrize("kind", list(BATTERY))
def test_every_request_to_a_hostile_server_ends_within_its_deadline(server, kind):
    server.kind = kind
    started = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        try:
            r = stream_completion(
                client, f"http://127.0.0.1:{server.server_port}/v1", {"max_tokens": 4}, deadline=started + DEADLINE_S
            )
            check_counts(r, 4, "logprobs", None)
            outcome = "ok"
        except (EndpointError, httpx.HTTPError) as e:
            outcome = f"{type(e).__name__}: {e}"
    took = time.perf_counter() - started
    assert took < DEADLINE_S + SLACK_S, f"{kind}: {took:.1f} s"
    assert outcome != "ok" and BATTERY[kind] in outcome, outcome


class Stuck:
    """A serving backend whose requests ignore their deadline and never end."""

    def prompt(self, handle, ids):
        return [list(map(int, row)) for row in ids]

    def stream_one(self, handle, prompt, new_tokens, on_chunk=None, check=True, deadline=None):
        on_chunk(time.perf_counter(), 1)
        time.sleep(3600)


def test_a_level_ends_within_its_bound_and_counts_what_it_cancelled(monkeypatch):
    from types import SimpleNamespace

    from chipbench.measuring import serving

    monkeypatch.setattr(serving, "JOIN_SLACK_S", 0.5)
    load = Load(8, 4, 6, 2, None, 0, 1.0, 2.0, 0.2)  # 6 requests, 2 in flight, 1 s bound
    started = time.perf_counter()
    run = run_load(Stuck(), SimpleNamespace(spec=SimpleNamespace(vocab=64)), load)
    assert time.perf_counter() - started < 1.0 + 0.5 + SLACK_S
    assert len(run.results) == 2 and run.not_sent == 4
    assert all("still running at the level's bound of 1 s: cancelled" in r.error for r in run.results)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                lambda v: b"data: " + json.dumps(v).encode() + b"\n\n",
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                    lambda inner: (
                        st.lists(inner, max_size=3)
                        | st.dictionaries(
                            st.sampled_from(
                                [
                                    "choices",
                                    "usage",
                                    "error",
                                    "text",
                                    "logprobs",
                                    "tokens",
                                    "token_ids",
                                    "finish_reason",
                                    "content",
                                ]
                            ),
                            inner,
                            max_size=3,
                        )
                    ),
                    max_leaves=10,
                ),
            ),
            st.just(b"data: [DONE]\n\n"),
        ),
        max_size=8,
    )
)
def test_any_event_stream_is_a_result_or_one_endpoint_error(pieces):
    """Fuzzed server-sent events (random bytes, any JSON shape, [DONE] anywhere): the reader returns
    a result or raises EndpointError, never anything else."""

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(pieces))

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        try:
            r = stream_completion(client, "http://fuzz.test/v1", {"max_tokens": 4})
        except EndpointError:
            pass  # one line, named: the case fails with it
        else:
            assert r.tokens >= 0 and isinstance(r.text, str)


class Through:
    """A serving backend that streams from the hostile server, as the endpoint backend does."""

    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}/v1"

    def prompt(self, handle, ids):
        return [list(map(int, row)) for row in ids]

    def stream_one(self, handle, prompt, new_tokens, on_chunk=None, check=True, deadline=None):
        with httpx.Client(timeout=600) as client:
            r = stream_completion(client, self.url, {"max_tokens": new_tokens}, on_chunk=on_chunk, deadline=deadline)
        check_counts(r, new_tokens, "logprobs", None)
        return r


@pytest.mark.parametrize("kind, says", [("drips", "deadline"), ("http 500", "HTTP 500"), ("never ends", "requested")])
def test_a_level_against_a_hostile_server_ends_in_its_bound_with_every_request_counted(server, kind, says):
    from types import SimpleNamespace

    from chipbench.measuring.serving import serve_fields

    server.kind = kind
    load = Load(8, 4, 4, 2, None, 0, DEADLINE_S, 2.0, 0.2)  # 4 requests, 2 in flight, the level's bound 1.5 s
    started = time.perf_counter()
    run = run_load(Through(server.server_port), SimpleNamespace(spec=SimpleNamespace(vocab=64)), load)
    assert time.perf_counter() - started < DEADLINE_S + 5.0 + SLACK_S  # the bound, and the join's slack at most
    fields = serve_fields(run)
    assert fields["serve_ok"] == 0 and fields["serve_failed"] + fields["serve_not_sent"] == 4
    assert says in fields["serve_errors"], fields["serve_errors"]
