"""Any OpenAI-compatible server as a backend: `--bench-backend openai:URL` (URL up to /v1).

vLLM serve, SGLang, llama.cpp's servers, a vendor's cloud endpoint on a chip that runs no PyTorch:
the harness streams completions from it and stamps each streamed chunk as it arrives. The server
runs its own weights: name the served model's zoo name (`--bench-model`) so the roofline knows its
bytes, and `--bench-chip` for the hardware behind it; the correctness gate cannot check it.

Fixed output lengths: every request asks for exactly N tokens (max_tokens = min_tokens = N,
ignore_eos, temperature 0); the tokens served are counted and a count other than N fails the case.
What the server accepts is found once, at load, with a small request:
- prompts as token ids (vLLM, SGLang, llama.cpp's own server) or, where refused, as text built
  from single-token words chosen by the seeded ids (so it tokenises to exactly the prompt length;
  the served prompt length is checked where the server reports it);
- the fixed-length controls it takes (a field it rejects is dropped, and the record says which ran);
- how tokens are counted: the usage the stream reports, or, where it reports none, per-chunk
  logprobs (one entry per token even when a chunk's text is empty).
A batch of B is B concurrent requests; step i is done when every request has streamed its i-th token.

No request is served from the server's prompt cache (vLLM and SGLang cache prefixes by default,
llama.cpp's servers keep each slot's last prompt): the first tokens of every request, warmup, check
and timed round alike, are drawn fresh from the OS's entropy, so no request shares a prefix with any
request before it, in this run or in an earlier run against the same server. A case's requests
reuse the keep-alive connections its warmup opened, so a round's TTFT holds no TCP or TLS handshake
(a serving level has its concurrency's worth opened before it starts: open_connections).
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from chipbench.backends.base import DeviceInfo, Generation, Probe, TokenCallback
from chipbench.backends.sensors import server_pids
from chipbench.errors import UsageError
from chipbench.models.counts import RUN_DTYPES, facts

PREFIX = "openai:"
TIMEOUT_S = 600.0  # one request; a stuck server fails the case rather than hanging the suite
FIXED_LENGTH = ("min_tokens", "ignore_eos")  # asked for on every request the server accepts them on
SALT_TOKENS = 4  # each request's first prompt tokens, drawn fresh: 1 in vocab**4 that two share a prefix
_SALT = random.SystemRandom()  # not the seed: a rerun must not find its prompts in the server's cache


API_KEY_ENV = "CHIPBENCH_API_KEY"  # a server's key, sent as a bearer token; read here only, never recorded


def _client(timeout: float = TIMEOUT_S):
    import httpx

    key = os.environ.get(API_KEY_ENV)
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=10.0),
        trust_env=False,
        headers={"Authorization": f"Bearer {key}"} if key else None,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )


class EndpointError(RuntimeError):
    """The server answered something other than a well-formed completion stream."""


@dataclass
class StreamResult:
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (arrival, tokens in the chunk)
    usage: dict | None = None
    finish_reason: str | None = None
    text: str = ""

    @property
    def tokens(self) -> int:
        return sum(n for _, n in self.chunks)


LINE_CAP_BYTES = 1 << 20  # one server-sent event line; a completion chunk is a few hundred bytes
GRACE_S = 5.0  # after the requested tokens: time to read the rest (usage, [DONE]) before the read stops
GRACE_LINES = 64


def stream_completion(
    client, url: str, body: dict, on_chunk=None, clock=time.perf_counter, deadline: float | None = None
) -> StreamResult:
    """POST a streaming completion and read its server-sent events; each chunk is stamped on arrival
    (before it is parsed). `on_chunk(arrival, tokens)` is called for every chunk that carries tokens.

    Bounded whatever the server does: the whole request ends by `deadline` (a `clock()` time; default
    TIMEOUT_S from now), however slowly its bytes drip; a line longer than LINE_CAP_BYTES is an error,
    never read whole; once the requested tokens (max_tokens) have arrived, the rest (the usage, [DONE])
    is read for at most GRACE_S or GRACE_LINES lines, so a stream that never ends is left."""
    import httpx

    deadline = clock() + TIMEOUT_S if deadline is None else deadline
    left = deadline - clock()
    if left <= 0:
        raise EndpointError("the request's deadline passed before it was sent")
    timeout = httpx.Timeout(left, connect=min(10.0, left))  # each read: a silent server is bounded too
    want = body.get("max_tokens")
    out = StreamResult()
    with client.stream("POST", f"{url}/completions", json=body, timeout=timeout) as r:
        if r.status_code != 200:
            text = _head(r, deadline, clock)
            raise EndpointError(f"HTTP {r.status_code}: {text[:300]}")
        done, grace = False, None
        for line in _lines(r, deadline, clock):
            arrival = clock()
            if grace is not None and (arrival > grace[0] or grace[1] <= 0):
                break  # the tokens asked for are in, and the server keeps sending: stop reading
            if grace is not None:
                grace[1] -= 1
            if done or not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                continue
            try:
                chunk = json.loads(data)
            except (json.JSONDecodeError, RecursionError):
                raise EndpointError(f"the stream sent a line that is not JSON: {data[:120]!r}") from None
            if not isinstance(chunk, dict):
                raise EndpointError(f"the stream sent a line that is not a JSON object: {data[:120]!r}")
            if chunk.get("error"):
                raise EndpointError(f"the server reported an error mid-stream: {str(chunk['error'])[:300]}")
            if isinstance(chunk.get("usage"), dict):
                out.usage = chunk["usage"]
            choices = chunk.get("choices") or []
            if not isinstance(choices, list):
                raise EndpointError(f"the stream sent choices that are not a list: {data[:120]!r}")
            for choice in choices:
                if not isinstance(choice, dict):
                    raise EndpointError(f"the stream sent a choice that is not a JSON object: {data[:120]!r}")
                n = _chunk_tokens(choice)
                out.text += str(choice.get("text") or "")
                out.finish_reason = choice.get("finish_reason") or out.finish_reason
                if n:
                    out.chunks.append((arrival, n))
                    if on_chunk:
                        on_chunk(arrival, n)
            if grace is None and isinstance(want, int) and out.tokens >= want:
                grace = [min(deadline, arrival + GRACE_S), GRACE_LINES]
    return out


def _lines(r, deadline: float, clock):
    """The response's lines, read in whatever pieces the network brings; the deadline is checked at
    every piece (a server that drips a byte at a time cannot hold a request past it), and a line
    past LINE_CAP_BYTES is an error before it is held whole."""
    buf = bytearray()
    for piece in r.iter_bytes():
        if clock() > deadline:
            raise EndpointError("the request ran past its deadline (the stream was still coming)")
        buf += piece
        while (end := buf.find(b"\n")) >= 0:
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            yield line.decode("utf-8", "replace")
        if len(buf) > LINE_CAP_BYTES:
            raise EndpointError(f"the stream sent a line longer than {LINE_CAP_BYTES} bytes")
    if buf:
        yield bytes(buf).decode("utf-8", "replace")


def _head(r, deadline: float, clock) -> str:
    """The start of an error response's body, read under the same bounds."""
    buf = bytearray()
    for piece in r.iter_bytes():
        buf += piece
        if len(buf) > 4096 or clock() > deadline:
            break
    return bytes(buf).decode("utf-8", "replace")


def _chunk_tokens(choice: dict) -> int:
    """Tokens a streamed choice carries: its ids or logprobs entries when the server sends them (one
    per token, even for a token whose text is an incomplete UTF-8 sequence), else one per chunk with
    text (or with no finish reason: a token whose text is still held back)."""
    ids = choice.get("token_ids") or choice.get("tokens")
    if isinstance(ids, list) and ids:
        return len(ids)
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list):
        return len(lp["tokens"])
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        return len(lp["content"])
    return 1 if (choice.get("text") or choice.get("finish_reason") is None) else 0


# --- prompts as text that tokenises to exactly the prompt length -------------------------------

_WORDS: dict[int, list[str]] = {}


def single_token_words(vocab: int) -> list[str]:
    """Words that are one Qwen token each, with their leading space (' the', ' of', ...), under the
    vocabulary the GGUF export writes for `vocab` rows (a tiny model's keeps only the merges among
    its tokens, so a word in it may still not be reachable): checked by running that BPE."""
    if vocab not in _WORDS:
        from tokenizers import Tokenizer, models, pre_tokenizers

        from chipbench.models.gguf_export import qwen_vocab

        v = qwen_vocab(vocab)
        bpe = Tokenizer(
            models.BPE(vocab={t: i for i, t in enumerate(v.tokens)}, merges=[tuple(m.split(" ", 1)) for m in v.merges])
        )
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        words = [t for t in v.tokens if re.fullmatch("\u0120[a-z]{2,}", t)]
        words = [" " + t[1:] for t in words if len(bpe.encode(" " + t[1:]).ids) == 1]
        if len(words) < 8:
            raise UsageError(f"too few single-token words below id {vocab} to make text prompts")
        _WORDS[vocab] = words
    return _WORDS[vocab]


def text_prompt(ids: list[int], vocab: int) -> str:
    words = single_token_words(vocab)
    return "".join(words[i % len(words)] for i in ids)


def salted(prompt: list[int] | str, vocab: int) -> list[int] | str:
    """`prompt` with its first SALT_TOKENS tokens (or single-token words) replaced by fresh random
    ones, the length kept: a prefix cache matches from a prompt's first token, so a request salted
    this way finds nothing of an earlier request's prompt in it (MLPerf's TEST04 concern)."""
    if isinstance(prompt, list):
        k = min(SALT_TOKENS, len(prompt))
        return [_SALT.randrange(vocab) for _ in range(k)] + prompt[k:]
    starts, pos = [], prompt.find(" ")  # every word begins with its space
    while pos >= 0 and len(starts) <= SALT_TOKENS:
        starts.append(pos)
        pos = prompt.find(" ", pos + 1)
    k = min(SALT_TOKENS, len(starts))
    rest = prompt[starts[k] :] if k < len(starts) else ""
    words = single_token_words(vocab)
    return "".join(_SALT.choice(words) for _ in range(k)) + rest


# --- which model the server runs ---------------------------------------------------------------

PARAMS_TOLERANCE = 0.02  # a checkpoint's count differs from the architecture's by rounding, not by a size


def _params(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.3f}M"


def served_weights(spec, listed: dict) -> str:
    """The record's `weights` for a served model, checked against `spec` where the server says what
    it runs (llama.cpp's server lists `meta`: n_params, n_embd): the roofline and every claim judge the
    case by the named model's bytes, so a server running another size fails the case here."""

    meta = listed.get("meta") if isinstance(listed.get("meta"), dict) else {}
    n_params, n_embd = meta.get("n_params"), meta.get("n_embd")
    if not isinstance(n_params, int) or n_params <= 0:
        return f"served by the endpoint (its own weights; the server does not say their size: {spec.name} assumed)"
    want = facts(spec).params_total
    if abs(n_params - want) > PARAMS_TOLERANCE * want or (isinstance(n_embd, int) and n_embd != spec.hidden):
        raise EndpointError(
            f"the server runs a model of {_params(n_params)} parameters"
            + (f", hidden {n_embd}" if n_embd else "")
            + f" ({listed.get('id')}); {spec.name} has {_params(want)}, hidden {spec.hidden}: name the served "
            "model's zoo name (chipbench list models), so that the roofline counts its bytes"
        )
    return (
        f"served by the endpoint (its own weights: {_params(n_params)} parameters by the server's meta, as {spec.name})"
    )


# --- the backend --------------------------------------------------------------------------------


@dataclass
class Served:
    spec: object
    dtype: str
    model_id: str  # the served model's name, as the server lists it
    prompt_format: str  # "token ids" or "text"
    controls: tuple[str, ...]  # fixed-length fields the server accepted
    count_method: str  # "usage" or "logprobs"
    weights: str = "served by the endpoint (its own weights)"
    build_time_s: float = 0.0
    exec_path: str = ""
    engine: str = "openai-compatible server"
    engine_version: str | None = None
    linear_attn_path: str | None = None
    exec_note: str | None = None
    client: object = None  # one httpx client (thread-safe) for the handle's life: its connections kept alive
    endpoint_rtt_s: float | None = None  # median round trip of a small GET on a kept-alive connection
    prefix_caching: str = (
        "each request's first prompt tokens drawn fresh, so none shares a prefix with an "
        "earlier request (the server's cache setting is its own)"
    )


class OpenAIEndpoint:
    engine = "openai-compatible server"

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.name = PREFIX + url
        self._models: list[dict] | None = None
        self._server: str | None = None

    def _list_models(self) -> list[dict]:
        with _client(10.0) as c:
            r = c.get(f"{self.url}/models")
            r.raise_for_status()
            self._server = r.headers.get("server")
            return r.json().get("data") or []

    @property
    def exec_path(self) -> str:
        return "openai completions stream"

    def probe(self) -> Probe:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            return Probe.no(
                f"{self.url!r} is not an http(s) URL (give the server's base, e.g. openai:http://127.0.0.1:8000/v1)"
            )
        try:
            import httpx  # noqa: F401
        except ImportError:
            return Probe.no("httpx is not installed")
        try:
            self._models = self._list_models()
        except Exception as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                return Probe.no(
                    f"the server at {self.url} refused the request ({status}): "
                    + (
                        f"it refused the key in ${API_KEY_ENV}"
                        if os.environ.get(API_KEY_ENV)
                        else f"it wants an API key: set ${API_KEY_ENV} (sent as a bearer token, never recorded)"
                    )
                )
            return Probe.no(f"no OpenAI-compatible server answered at {self.url}/models: {type(e).__name__}: {e}")
        if not self._models:
            return Probe.no(f"the server at {self.url} lists no models")
        return Probe.ok()

    def info(self) -> DeviceInfo:
        host = urlparse(self.url).netloc
        ids = [m.get("id") for m in self._models or []]
        return DeviceInfo(
            backend=self.name,
            kind="endpoint",
            device_name=f"endpoint {host}",
            device_count=1,
            runtime=self._server,
            extra={"url": self.url, "served_models": ", ".join(map(str, ids))},
        )

    def host_processes(self) -> list[int] | None:
        """The server's processes when it runs on this host: its CPU time is the case's work, not a
        neighbour's load ([] for a server elsewhere; None for one here whose process is not visible)."""

        parsed = urlparse(self.url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return server_pids(parsed.hostname or "", port)

    def supported_dtypes(self) -> tuple[str, ...]:
        return RUN_DTYPES  # what the server runs: as the user says

    def supported_modes(self) -> tuple[str, ...]:
        return ("eager",)

    def load(self, spec, dtype: str, *, seed: int, weights_dir: str | None = None, layers: int | None = None) -> Served:
        if layers is not None:
            raise TypeError("an endpoint serves its own model: no depth-reduced copy")
        models = self._models if self._models is not None else self._list_models()
        if not models:
            raise EndpointError(f"the server at {self.url} lists no models")
        model_id = str(models[0].get("id"))
        owner = models[0].get("owned_by")
        weights = served_weights(spec, models[0])
        fmt, controls, method = self._capabilities(model_id, spec.vocab)
        path = f"openai completions stream, {fmt} prompts, {'+'.join(controls) or 'max_tokens only'}"
        client = _client()
        return Served(
            spec,
            dtype,
            model_id,
            fmt,
            controls,
            method,
            weights=weights,
            exec_path=path,
            engine=f"openai-compatible server ({owner or self._server or 'unknown'})",
            engine_version=self._version() or self._server,
            client=client,
            endpoint_rtt_s=self._round_trip(client),
        )

    def open_connections(self, handle: Served, n: int) -> None:
        """`n` keep-alive connections opened before a serving level (a small GET each, at once), so
        that its first requests' TTFT holds no handshake, as every later request's holds none. Each
        GET keeps its connection until all `n` have one: a GET that finished first would hand its
        connection to the next, and the level would open the missing ones itself (seen in CI)."""
        if handle.client is None or n < 2:
            return
        together = threading.Barrier(n)

        def get():
            try:
                with handle.client.stream("GET", f"{self.url}/models") as r:
                    together.wait(timeout=10)  # held, its body unread, until every GET has a connection
                    r.read()  # read to its end, the connection goes back to the pool, kept alive
            except Exception:
                together.abort()  # a connection not opened now is opened by its request: no harm to the level

        threads = [threading.Thread(target=get, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _round_trip(self, client, tries: int = 5) -> float | None:
        """The network's and the HTTP stack's share of every request: the median time of a small GET
        (the model list) on a connection already open, as each timed request finds its own."""
        times = []
        try:
            client.get(f"{self.url}/models").raise_for_status()  # opens the connection, untimed
            for _ in range(tries):
                t = time.perf_counter()
                client.get(f"{self.url}/models").raise_for_status()
                times.append(time.perf_counter() - t)
        except Exception:
            return None  # not offered twice: the record says not measured
        return statistics.median(times)

    def _version(self) -> str | None:
        """The serving software's version where it tells it (vLLM and SGLang answer GET /version)."""
        root = self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url
        try:
            with _client(5.0) as c:
                r = c.get(f"{root}/version")
            if r.status_code == 200 and isinstance(r.json(), dict) and r.json().get("version"):
                return str(r.json()["version"])
        except Exception:
            pass  # not offered: the HTTP server header stands in
        return None

    def _capabilities(self, model_id: str, vocab: int) -> tuple[str, tuple[str, ...], str]:
        """One small request per question: token-id prompts, fixed-length fields, stream usage."""
        base = {
            "model": model_id,
            "max_tokens": 2,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        controls = {"min_tokens": 2, "ignore_eos": True}
        fmt = "token ids"
        with _client(60.0) as c:
            for _ in range(4):
                body = {
                    **base,
                    **controls,
                    "prompt": [1, 2, 3] if fmt == "token ids" else text_prompt([1, 2, 3], vocab),
                }
                try:
                    res = stream_completion(c, self.url, body)
                    break
                except EndpointError as e:
                    text = str(e)
                    if not text.startswith("HTTP "):  # a refusal names the field (some servers answer 500)
                        raise
                    rejected = [k for k in controls if k in text]
                    if rejected:
                        for k in rejected:
                            controls.pop(k)
                    elif fmt == "token ids" and "prompt" in text:
                        fmt = "text"
                    elif "stream_options" in text and "stream_options" in base:
                        base.pop("stream_options")
                    else:
                        raise
            else:
                raise EndpointError("the server refused every form of a small completion request")
        method = "usage" if res.usage and "completion_tokens" in res.usage else "logprobs"
        return fmt, tuple(controls), method

    def prompt(self, handle: Served, ids) -> list:
        rows = ids.tolist()
        prompts = rows if handle.prompt_format == "token ids" else [text_prompt(r, handle.spec.vocab) for r in rows]
        if handle.count_method != "usage":  # the stream will not report the prompt's length: check it here
            self.check_prompt_lengths(handle, prompts, len(rows[0]))
        return prompts

    def check_prompt_lengths(self, handle: Served, prompts: list, expected: int) -> None:
        """One non-streamed one-token request per prompt, outside the clock: the server's usage must
        count exactly the workload's prompt length. Salted like every request, so the check leaves
        nothing in the server's cache that a timed request could find."""
        with _client() as c:
            for p in prompts:
                r = c.post(
                    f"{self.url}/completions",
                    json={
                        "model": handle.model_id,
                        "prompt": salted(p, handle.spec.vocab),
                        "max_tokens": 1,
                        "temperature": 0,
                    },
                )
                if r.status_code != 200:
                    raise EndpointError(f"HTTP {r.status_code}: {r.text[:300]}")
                got = (r.json().get("usage") or {}).get("prompt_tokens")
                if got is not None and got != expected:
                    raise EndpointError(f"the server tokenised the prompt to {got} tokens, the workload has {expected}")

    def request_body(self, handle: Served, prompt, new_tokens: int) -> dict:
        """The request for `prompt`, its first tokens salted (a few microseconds, in the clock like the
        JSON encoding of the body)."""
        body = {
            "model": handle.model_id,
            "prompt": salted(prompt, handle.spec.vocab),
            "max_tokens": new_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if "min_tokens" in handle.controls:
            body["min_tokens"] = new_tokens
        if "ignore_eos" in handle.controls:
            body["ignore_eos"] = True
        if handle.count_method == "logprobs":
            body["logprobs"] = 1
        return body

    def generate(self, handle: Served, prompt: list, new_tokens: int, on_token: TokenCallback) -> Generation:
        """B concurrent streams; step i is handed to the harness when the last of them delivers it."""
        events: queue.Queue = queue.Queue()
        results: list = [None] * len(prompt)

        def worker(i, p):
            try:
                results[i] = self.stream_one(
                    handle, p, new_tokens, on_chunk=lambda t, n: events.put((i, n)), check=False
                )
            except Exception as e:  # handed to the harness's thread, which fails the case
                results[i] = e
            events.put((i, None))

        threads = [threading.Thread(target=worker, args=(i, p), daemon=True) for i, p in enumerate(prompt)]
        for t in threads:
            t.start()
        counts, done, handed = [0] * len(prompt), 0, 0
        steps: list[list[int]] = []
        while done < len(prompt):
            i, n = events.get()
            if n is None:
                done += 1
                continue
            counts[i] += n
            while handed < min(counts) and handed < new_tokens:
                on_token([-1] * len(prompt))  # the server sends text, not ids: -1 marks an unknown id
                steps.append([-1] * len(prompt))
                handed += 1
        for t in threads:
            t.join()
        for i, r in enumerate(results):
            if isinstance(r, Exception):
                raise r
            check_counts(r, new_tokens, handle.count_method, self.expected_prompt(handle, prompt[i]))
        return Generation(tokens=steps, peak_mem_bytes=None, peak_mem_kind=None)

    def stream_one(
        self, handle: Served, prompt, new_tokens: int, on_chunk=None, check: bool = True, deadline: float | None = None
    ) -> StreamResult:
        """One streamed request, each chunk stamped on arrival, ended by `deadline` (a
        time.perf_counter() time); with `check`, the served counts are checked against the request
        (a mismatch raises EndpointError)."""
        body = self.request_body(handle, prompt, new_tokens)
        if handle.client is not None:
            r = stream_completion(handle.client, self.url, body, on_chunk=on_chunk, deadline=deadline)
        else:
            with _client() as c:
                r = stream_completion(c, self.url, body, on_chunk=on_chunk, deadline=deadline)
        if check:
            check_counts(r, new_tokens, handle.count_method, self.expected_prompt(handle, prompt))
        return r

    @staticmethod
    def expected_prompt(handle: Served, prompt) -> int:
        return len(prompt) if isinstance(prompt, list) else prompt.count(" ")  # one word, one token

    def synchronize(self) -> None:
        pass

    def close(self, handle) -> None:
        if getattr(handle, "client", None) is not None:
            handle.client.close()
            handle.client = None


def check_counts(r: StreamResult, new_tokens: int, method: str, prompt_tokens: int | None) -> None:
    """The served token counts against the request; any mismatch fails the case."""
    usage = r.usage or {}
    served = usage.get("completion_tokens")
    if served is not None and served != new_tokens:
        raise EndpointError(
            f"the server generated {served} tokens, the workload asked for exactly {new_tokens} "
            f"(finish reason {r.finish_reason!r}: it may not honour min_tokens / ignore_eos)"
        )
    if r.tokens != new_tokens:
        how = f"usage says {served}" if served is not None else f"counted by {method}"
        early = (
            f"; it ended early (finish reason {r.finish_reason!r}): a server that stops a request when "
            "another arrives does this (llama-cpp-python's server unless started with --interrupt_requests "
            "False)"
            if r.tokens < new_tokens and r.finish_reason != "length"
            else ""
        )
        raise EndpointError(
            f"the stream carried {r.tokens} tokens in {len(r.chunks)} chunks for {new_tokens} "
            f"requested ({how}): per-token times cannot be had{early}"
        )
    got = usage.get("prompt_tokens")
    if got is not None and prompt_tokens is not None and got != prompt_tokens:
        raise EndpointError(f"the server tokenised the prompt to {got} tokens, the workload has {prompt_tokens}")


def create(name: str) -> OpenAIEndpoint:
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        raise UsageError(
            f"an endpoint backend is named openai:URL (e.g. openai:http://127.0.0.1:8000/v1), got {name!r}"
        )
    return OpenAIEndpoint(name[len(PREFIX) :])
