import os
import socket
import subprocess
import sys
import time

import pytest

pytest_plugins = ["pytester"]


def pytest_configure(config):
    """In the project's tests, the measured ceilings take the minimum rounds, not a window of seconds,
    in every suite the tests run (and in their subprocesses): the window is for judging a real run,
    not for checking that one works (tests/test_roofline.py measures over a window on purpose).
    pytest loads this file for `pytest --benchmark` in the project root too (testpaths): the main
    command keeps its window. Nor does a test reuse a timing self-test, ceilings or a correctness
    reference an earlier run kept (chipbench.stash): each proves its own, as a fresh machine would;
    the tests of keeping them turn this off."""
    if not config.getoption("--benchmark", default=False):
        os.environ.setdefault("CHIPBENCH_CEILING_WINDOW_S", "0")
        os.environ.setdefault("CHIPBENCH_FRESH", "1")


@pytest.fixture(scope="session")
def cpu():
    from chipbench.backends.cpu import create

    return create()


SERVER_LOGS: dict[str, str] = {}  # a test server's URL -> its log file
SERVER_KEY = "chipbench-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's Python server (llama-cpp-python[server]) on 127.0.0.1 serving the seeded tiny-qwen3
    in fp32, queueing concurrent requests rather than interrupting them; stopped after the session."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    from chipbench.backends.openai_endpoint import API_KEY_ENV, create
    from chipbench.models import gguf_export
    from chipbench.models.zoo import get_model

    os.environ.setdefault("CHIPBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    os.environ[API_KEY_ENV] = SERVER_KEY  # the server wants a key, as a cloud endpoint does
    path = gguf_export.export(get_model("tiny-qwen3"), "fp32", 0).path
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "8192",
            "--n_threads",
            "1",
            "--interrupt_requests",
            "False",
            "--api_key",
            SERVER_KEY,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # its log read as it goes
    url = f"http://127.0.0.1:{port}/v1"
    SERVER_LOGS[url] = log.name
    deadline = time.monotonic() + 60
    try:
        while not create("openai:" + url).probe().available:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not start: see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
