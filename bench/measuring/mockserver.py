"""A mock OpenAI-compatible completions server that computes nothing: each streamed request gets its
`max_tokens` tokens at a chosen rate per request (or as fast as the socket takes them), with the
usage an OpenAI server reports. Against it, chipbench's own client is the only work, so what it
drives is the client's capacity on this machine (chipbench.measuring.capacity).

One asyncio loop in a daemon thread, HTTP/1.1 with keep-alive and chunked event streams; bounded:
a request body over MAX_BODY bytes or a header block over MAX_HEADERS lines is refused and the
connection closed. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import threading

MAX_BODY = 1 << 20
MAX_HEADERS = 100
TOKEN_TEXT = " x"


class MockServer:
    """`with MockServer(tok_per_s=None) as m:` serves at `m.url` (an OpenAI base URL ending in /v1);
    `m.chunks` and `m.bytes` count what it streamed."""

    def __init__(self, tok_per_s: float | None = None, model: str = "chipbench-mock"):
        if tok_per_s is not None and not tok_per_s > 0:
            raise ValueError(f"the mock's token rate must be > 0 per second, got {tok_per_s}")
        self.tok_per_s = tok_per_s
        self.model = model
        self.chunks = 0
        self.bytes = 0
        self.requests = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> "MockServer":
        self._thread = threading.Thread(target=self._run, name="chipbench-mock-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0) or not self.url:
            raise RuntimeError("the mock server did not start within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024))
            port = self._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}/v1"
        finally:
            self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader, writer) -> bool:
        """One request on a kept-alive connection; False when the connection is done."""
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            key, _, value = h.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        else:
            await self._send(writer, 431, {"error": {"message": f"more than {MAX_HEADERS} header lines"}}, close=True)
            return False
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            await self._send(writer, 413, {"error": {"message": f"a body over {MAX_BODY} bytes"}}, close=True)
            return False
        body = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0].rstrip("/")
        if method == "GET" and path in ("/health", "/v1/health"):  # the readiness probe load tools send first
            await self._send(writer, 200, {"status": "ok"})
        elif method == "GET" and path.endswith("/models"):
            await self._send(
                writer, 200, {"object": "list", "data": [{"id": self.model, "owned_by": "chipbench-mock"}]}
            )
        elif method == "POST" and path.endswith("/completions"):
            try:
                req = json.loads(body or b"{}")
                n = int(req.get("max_tokens") or 16)
                prompt = req.get("prompt")
            except (ValueError, TypeError, AttributeError):
                await self._send(writer, 400, {"error": {"message": "the body is not a completion request"}})
                return True
            prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt or "").split())
            self.requests += 1
            if req.get("stream"):
                await self._stream(writer, n, prompt_tokens)
            else:
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
                choice = {"text": TOKEN_TEXT * n, "index": 0, "finish_reason": "length"}
                await self._send(writer, 200, {"object": "text_completion", "choices": [choice], "usage": usage})
        else:
            await self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}})
        return headers.get("connection", "").lower() != "close"

    async def _send(self, writer, status: int, payload: dict, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()

    async def _stream(self, writer, n: int, prompt_tokens: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        gap = 1.0 / self.tok_per_s if self.tok_per_s else 0.0
        for i in range(n):
            last = i == n - 1
            choice = {"text": TOKEN_TEXT, "index": 0, "finish_reason": "length" if last else None}
            await self._event(writer, {"object": "text_completion", "choices": [choice]})
            if gap and not last:
                await asyncio.sleep(gap)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        await self._event(writer, {"object": "text_completion", "choices": [], "usage": usage}, count=False)
        await self._event(writer, None, count=False)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _event(self, writer, payload: dict | None, count: bool = True) -> None:
        data = b"data: " + (json.dumps(payload).encode() if payload is not None else b"[DONE]") + b"\n\n"
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()
        if count:
            self.chunks += 1
        self.bytes += len(data)
