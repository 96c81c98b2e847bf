"""Other load tools as the load generator of `chipbench serve --driver`: GuideLLM, NVIDIA AIPerf and
vLLM's `vllm bench serve` run one load level each against the same server, with chipbench's
lengths, concurrency or rate, request count, seed and time bound, and their result files are then
imported (chipbench.publishing.importing), so one command gives the same records from any driver.
Where chipbench's own client would be the bottleneck (chipbench.measuring.capacity), a tool with
its own worker processes drives the load.

The tools are not chipbench's dependencies: each is found on PATH (guidellm, aiperf, vllm) or
given as a command prefix (`--driver-bin`, e.g. another environment's interpreter and script). They
send chipbench's own prompts: its seeded prompt ids as text of exactly the prompt length (one
Qwen token a word), each salted with fresh first words as chipbench's own client salts them, so
that a server's prefix cache cannot answer them (a tool's own synthetic prompts, sent again, were
answered from llama.cpp's prompt cache: results/measurements/2026-12-07-serve-drivers/), written
as each tool's dataset file; the tools count tokens with chipbench's local Qwen tokenizer files.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chipbench.errors import UsageError

if TYPE_CHECKING:
    from chipbench.measuring.serving import Load

DRIVERS = ("builtin", "guidellm", "aiperf", "vllm-bench")
EXECUTABLE = {"guidellm": "guidellm", "aiperf": "aiperf", "vllm-bench": "vllm"}
RESULT = {"guidellm": "guidellm.json", "aiperf": "profile_export_aiperf.json", "vllm-bench": "vllm-bench.json"}
START_SLACK_S = 120.0  # a tool's own start (imports, tokenizer, workers) on top of the level's bound


def prefix_for(driver: str, given: str | None) -> list[str]:
    """The command that starts `driver`: the given prefix, else its executable on PATH."""
    if given:
        return shlex.split(given)
    found = shutil.which(EXECUTABLE[driver])
    if not found:
        raise UsageError(
            f"driver {driver!r} needs {EXECUTABLE[driver]!r} on PATH (pip install "
            f"{ {'vllm-bench': 'vllm', 'guidellm': 'guidellm', 'aiperf': 'aiperf'}[driver] }) or --driver-bin COMMAND"
        )
    return [found]


def server_root(url: str) -> str:
    """http://host:port from an OpenAI base URL (http://host:port/v1)."""
    return url[: -len("/v1")] if url.rstrip("/").endswith("/v1") else url.rstrip("/")


DATASET = {"guidellm": "prompts.jsonl", "aiperf": "prompts.jsonl", "vllm-bench": "prompts.jsonl"}


def write_prompts(driver: str, out: Path, prompts: list[str], load: "Load") -> Path:
    """chipbench's prompts as the tool's dataset file: one line per request, with its lengths."""
    rows = {
        "guidellm": lambda p: {
            "prompt": p,
            "prompt_tokens_count": load.prompt_tokens,
            "output_tokens_count": load.gen_tokens,
        },
        "aiperf": lambda p: {"text": p, "output_length": load.gen_tokens},
        "vllm-bench": lambda p: {"prompt": p, "output_tokens": load.gen_tokens},
    }[driver]
    path = out / DATASET[driver]
    path.write_text("".join(json.dumps(rows(p)) + "\n" for p in prompts))
    return path


def command(
    driver: str,
    prefix: list[str],
    url: str,
    model_id: str,
    load: Load,
    out: Path,
    tokenizer: str,
    prompts: list[str] | None = None,
) -> list[str]:
    """The tool's command line for one load level, its results written under `out`; `prompts`:
    chipbench's, written as the tool's dataset file (None: the tool's own synthetic prompts)."""
    root = server_root(url)
    p, g, n = str(load.prompt_tokens), str(load.gen_tokens), str(load.requests)
    data = write_prompts(driver, out, prompts, load) if prompts and driver in DATASET else None
    if driver == "guidellm":
        if load.concurrency and load.rate:
            raise UsageError("guidellm drives a concurrency or a rate, not both at once: give one of them")
        profile = (
            {"kind": "concurrent", "streams": load.concurrency}
            if load.concurrency
            else {"kind": "poisson", "rate": load.rate}
        )
        scenario = {
            "spec": {
                "backend": {
                    "kind": "openai_http",
                    "target": root,
                    "model": model_id,
                    "request_format": "/v1/completions",
                },
                "profile": profile,
                "data": [
                    {"kind": "json_file", "path": str(data)}
                    if data
                    else {
                        "kind": "synthetic_text",
                        "prompt_tokens": load.prompt_tokens,
                        "output_tokens": load.gen_tokens,
                    }
                ],
                "tokenizer": {"kind": "huggingface_auto", "model": tokenizer},
                "constraints": [
                    {"kind": "max_requests", "count": load.requests},
                    {"kind": "max_duration", "seconds": load.max_duration_s},
                ],
                "seed": {"kind": "static", "value": load.seed},
                "outputs": [{"kind": "json", "path": str(out / RESULT[driver])}],
            }
        }
        (out / "guidellm-scenario.json").write_text(json.dumps(scenario, indent=1))
        return [*prefix, "run", "--scenario", str(out / "guidellm-scenario.json"), "--disable-console-interactive"]
    if driver == "aiperf":
        args = [*prefix, "profile", "--model", model_id, "--url", root, "--endpoint-type", "completions", "--streaming"]
        args += ["--concurrency", str(load.concurrency)] if load.concurrency else []
        args += ["--request-rate", f"{load.rate:g}"] if load.rate else []
        args += ["--request-count", n]
        if data:
            args += ["--input-file", str(data), "--custom-dataset-type", "single_turn"]
        else:
            args += ["--prompt-input-tokens-mean", p, "--prompt-input-tokens-stddev", "0"]
        args += ["--output-tokens-mean", g, "--output-tokens-stddev", "0", "--extra-inputs", "ignore_eos:true"]
        # no --benchmark-duration: with it AIPerf issues requests until the duration ends, whatever the count
        # (a 16-request level ran 7 minutes); the level's bound is this process's kill (run())
        return args + [
            "--tokenizer",
            tokenizer,
            "--random-seed",
            str(load.seed),
            "--artifact-dir",
            str(out),
            "--ui-type",
            "none",
        ]
    if driver == "vllm-bench":
        args = [*prefix, "bench", "serve", "--backend", "openai", "--base-url", root, "--endpoint", "/v1/completions"]
        args += ["--model", model_id, "--tokenizer", tokenizer]
        if data:
            args += ["--dataset-name", "custom", "--dataset-path", str(data), "--custom-output-len", g]
            args += ["--skip-chat-template", "--disable-shuffle"]
        else:
            args += ["--dataset-name", "random", "--random-input-len", p, "--random-output-len", g]
        args += ["--num-prompts", n, "--seed", str(load.seed)]
        args += ["--max-concurrency", str(load.concurrency)] if load.concurrency else []
        args += ["--request-rate", f"{load.rate:g}"] if load.rate else []
        args += ["--ignore-eos", "--temperature", "0", "--save-result", "--save-detailed"]
        return args + ["--result-dir", str(out), "--result-filename", RESULT[driver]]
    raise UsageError(f"unknown driver {driver!r}; valid: {', '.join(DRIVERS)}")


@dataclass
class DriverRun:
    driver: str
    command: list[str]
    result: Path
    log: Path
    returncode: int | None
    wall_s: float
    error: str | None = None


def run(
    driver: str,
    prefix: list[str],
    url: str,
    model_id: str,
    load: Load,
    out: Path,
    tokenizer: str,
    prompts: list[str] | None = None,
) -> DriverRun:
    """Run the tool for one level, bounded by the level's time plus the tool's start; its output in
    `out`/driver.log. A tool that overruns is killed with its process group."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(driver, prefix, url, model_id, load, out, tokenizer, prompts)
    log = out / "driver.log"
    bound = load.max_duration_s + START_SLACK_S
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())
        try:
            code = proc.wait(timeout=bound)
            error = None if code == 0 else f"{driver} exited {code} (its output: {log})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code, error = None, f"{driver} ran past the level's bound of {bound:g} s and was killed (its output: {log})"
    result = out / RESULT[driver]
    if error is None and not result.is_file():
        error = f"{driver} wrote no {result.name} (its output: {log})"
    return DriverRun(driver, cmd, result, log, code, time.perf_counter() - t0, error)
