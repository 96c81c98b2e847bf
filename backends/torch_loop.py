"""The harness's own generation loops on a transformers model's forward (not `generate()`).

gpt-fast style: prefill and decode_one_token are separate named steps. Greedy, fixed length,
EOS ignored. Each step's tokens are copied to the host before the callback, so a timestamp
taken in the callback can never precede the device work that produced the token. On a device
with stream events the host queues step i+1 before it waits for token i (run_steps), so the
device does not idle while the host takes delivery and launches the next step.

Two execution paths, recorded as `exec_path` so their numbers are never mixed:
- eager: transformers' forward one kernel at a time, with a dynamic KV cache;
- compiled: a static KV cache sized for the request, a decode step compiled with torch.compile
  (inductor; on CUDA with graph capture, mode "reduce-overhead") and a prefill compiled with the
  prompt length dynamic (one graph for every prompt of two tokens or more; no CUDA graphs, which
  would record one graph per length; a one-token prompt is a decode step at position 0; the
  linear-attention hybrids' prefill stays eager, see full_attention_only). The
  compile / capture time is measured when both are built, apart from steady state (gpt-fast's
  split, and its --compile_prefill).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
from dataclasses import dataclass, field

import torch

from chipbench.backends.base import TokenCallback


def _cache_kwarg(model) -> str:
    """transformers renamed the forward's cache argument (past_key_values -> cache) in 5.x."""
    params = inspect.signature(model.model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _head(model, hidden: torch.Tensor) -> torch.Tensor:
    """The output head on the last position's hidden state, made contiguous: with transformers'
    logits_to_keep the head gets a strided 3-D slice, and torch's CPU matmul then copies the whole
    (tied) vocabulary matrix per call: 1.3 s of a 1.4 s qwen3-0.6b prefill on a 2-core CPU."""
    return model.lm_head(hidden[:, -1].contiguous())


def forward_last(model, input_ids: torch.Tensor, cache=None, position_ids=None):
    """Logits [batch, vocab] of the last position only, and the cache (the model makes the right
    kind, hybrid layers included, when None is given)."""
    kw = _cache_kwarg(model)
    out = model.model(input_ids=input_ids, position_ids=position_ids, use_cache=True, **{kw: cache})
    return _head(model, out.last_hidden_state), out[kw] if kw in out else cache


def prefill(model, prompt: torch.Tensor):
    """Run the prompt [batch, tokens] through the model; returns (next token [batch], cache)."""
    logits, cache = forward_last(model, prompt)
    return logits.argmax(dim=-1), cache


def decode_one_token(model, token: torch.Tensor, cache):
    """One decode step for the batch's last tokens [batch]; returns the next tokens [batch]."""
    logits, _ = forward_last(model, token[:, None], cache)
    return logits.argmax(dim=-1)


@torch.inference_mode()
def generate(
    model,
    prompt: torch.Tensor,
    new_tokens: int,
    on_token: TokenCallback,
    mark=None,
    fence=None,
    waits: list | None = None,
) -> list[list[int]]:
    """`mark()`, when given, is called once a step's tokens are queued on the device, before the copy
    to the host (the adapter records a device event there). `fence`, `waits`: see run_steps."""
    state = {}

    def first():
        token, state["cache"] = prefill(model, prompt)
        return token

    return run_steps(
        first, lambda token, i: decode_one_token(model, token, state["cache"]), new_tokens, on_token, mark, fence, waits
    )


def run_steps(
    first, step, new_tokens: int, on_token: TokenCallback, mark=None, fence=None, waits: list | None = None
) -> list[list[int]]:
    """The generation loop: `first()` queues the prefill and returns its tokens [batch] (on the
    device), `step(token, i)` queues decode step i on the last tokens and returns the next ones.
    Every step's tokens reach `on_token` as host ints, in order, once they exist.

    Without `fence` (a device that runs each op to completion, or one with no stream events), the
    host copies each step's tokens before it queues the next step: host and device in lock step.
    With `fence` (a factory of the device's stream events) the loop runs one step ahead: it queues
    step i+1, then waits for token i (copied to pinned host memory in stream order, behind a
    fence), so the device never idles while the host takes delivery, stamps the clock and launches
    the next step: the device is measured, not the round trip to the host.

    `waits`, when given, gets the seconds the host spent blocked on the device before each step's
    tokens were in its hands, in step order: on an asynchronous device, a step's time less its
    wait is the host's own work (queueing, taking delivery); a step with no wait had a device that
    was waiting for the host."""
    mark = mark or (lambda: None)
    steps: list[list[int]] = []
    clock = time.perf_counter

    def take(get, *args) -> list[int]:
        if waits is None:
            return get(*args)
        t = clock()
        host = get(*args)
        waits.append(clock() - t)
        return host

    def deliver(host: list[int]) -> None:
        on_token(host)
        steps.append(host)

    token = first()
    mark()
    if fence is None:
        deliver(take(token.tolist))  # device -> host copy: blocks until the token exists
        for i in range(new_tokens - 1):
            token = step(token, i)
            mark()
            deliver(take(token.tolist))
        return steps
    pending = _copy_to_host(token, fence)
    for i in range(new_tokens - 1):
        token = step(token, i)  # queued behind the previous step; its input never leaves the device
        mark()
        ready = _copy_to_host(token, fence)
        deliver(take(_wait, pending))  # token i: the device is already working on step i+1
        pending = ready
    deliver(take(_wait, pending))
    return steps


def _copy_to_host(token: torch.Tensor, fence):
    host = token.to("cpu", non_blocking=True)  # pinned memory, filled in stream order
    done = fence()
    done.record()
    return host, done


def _wait(pending) -> list[int]:
    host, done = pending
    done.synchronize()  # the copy (and so the step before it) has finished
    return host.tolist()


@torch.inference_mode()
def teacher_forced_logits(model, ids: torch.Tensor, prompt_tokens: int) -> torch.Tensor:
    """Logits [K, vocab] (fp32, CPU) at each of the K positions after the prompt, feeding the given
    ids rather than the model's own choices, through the same prefill + cached decode steps that
    generation uses. ids: [1, prompt_tokens + K]."""
    last, cache = forward_last(model, ids[:, :prompt_tokens])
    logits = [last[0].float().cpu()]
    for i in range(prompt_tokens, ids.shape[1] - 1):
        last, _ = forward_last(model, ids[:, i : i + 1], cache)
        logits.append(last[0].float().cpu())
    return torch.stack(logits)


# --- compiled: a static cache and a compiled decode step ------------------------------------


@dataclass
class StaticDecoder:
    """A static KV cache for `batch` sequences of up to `max_len` tokens, and the decode step
    compiled for exactly that shape."""

    model: torch.nn.Module
    cache: object  # transformers.StaticCache
    step: object  # compiled (token [batch, 1], position [batch, 1]) -> logits [batch, vocab]
    batch: int
    max_len: int
    compile_time_s: float  # tracing, compiling and (CUDA) graph capture, measured at build
    mode: str  # the torch.compile mode used
    graphs: int = 1  # graphs dynamo made of the step at build (1: the whole step is one graph)
    breaks: dict = field(default_factory=dict)  # graph-break reason -> count, at build
    cudagraph_skips: int | None = None  # reduce-overhead: graphs inductor would not capture; None: no CUDA graphs asked
    cudagraph_reasons: list = field(default_factory=list)  # inductor's "skipping cudagraphs due to ..." lines
    recompiles: int = 0  # graphs compiled after the build, while generating (their time was in a round)
    flags: str | None = None  # inductor settings from the environment that change the code it makes (compile_flags)
    fx_cache: str | None = None  # what inductor's on-disk FX graph cache gave the build (compile_cache)
    prefill: object = (
        None  # compiled (prompt [batch, n], positions [batch, n]) -> logits [batch, vocab], n dynamic; None: eager
    )
    prefill_compile_time_s: float | None = None  # the prefill's part of compile_time_s
    prefill_graphs: int = 0  # graphs dynamo made of the prefill at build
    prefill_breaks: dict = field(default_factory=dict)  # the prefill's graph-break reason -> count, at build
    prefill_failed: str | None = None  # why the prefill runs eager: its compile failed (the error's first line)
    prefill_ran: str | None = None  # how the last generation's prompt went in: "compiled" or "eager" (None: none yet)
    prefill_tried: bool = False  # whether the prefill's compile was tried (add_prefill)
    fx_counts: tuple = (0, 0, 0)  # the FX graph cache's hits, misses and bypasses over the compiles (fx_cache)

    def fits(self, batch: int, tokens: int) -> bool:
        return batch == self.batch and tokens <= self.max_len

    def call(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One decode step, without dynamo's guard checks where they can only say yes.

        Dynamo checks its guards on every call of a compiled function: for this step, every
        parameter and cache tensor it closes over, about 1 ms a step for qwen3-0.6b on a 2-core Xeon
        (0.15 ms for tiny-qwen3), host time that a step replayed in a few hundred microseconds on a
        GPU cannot hide. A step that is one graph, with no graph break, has one compiled entry,
        checked at the build, and the same inputs of the same shapes and strides at every call, so
        its calls skip the checks (torch.compiler.set_stance(skip_guard_eval_unsafe=True)). Should
        the step need compiling again (its code dropped by a reset), dynamo refuses under that
        stance before running anything, and the call is made again with its guards: the compile
        happens and is counted as a recompile, as before. A step in pieces, or a torch without the
        option, keeps its guards."""
        if self.graphs == 1 and not self.breaks:
            try:
                stance = torch.compiler.set_stance(skip_guard_eval_unsafe=True)  # set now; the block's end restores it
            except (AttributeError, TypeError):  # a torch without the option
                return self.step(token, position)
            try:
                with stance:
                    return self.step(token, position)
            except RuntimeError as e:
                if "skip_guard_eval_unsafe" not in str(e):
                    raise
        return self.step(token, position)

    def facts(self) -> dict:
        """What the compiled step became, for the record: torch.compile may quietly run less than
        the mode promises (graph breaks return to Python mid-step; a skipped CUDA graph launches
        kernels one by one; a recompile puts compile time into a timed round)."""
        cuda_graphs = None if self.cudagraph_skips is None else ("skipped" if self.cudagraph_skips else "captured")
        return {
            "compiled_graphs": self.graphs + self.recompiles,
            "graph_breaks": sum(self.breaks.values()),
            "cuda_graphs": cuda_graphs,
            "compile_flags": self.flags,
            "compile_cache": self.fx_cache,
            "prefill_path": self.prefill_ran or ("compiled" if self.prefill is not None else "eager"),
            "prefill_compile_time_s": self.prefill_compile_time_s,
        }

    def problems(self) -> str | None:
        """One line on how the compiled step falls short of one whole graph (captured on CUDA), or None."""
        said = []
        if self.graphs == 0:
            said.append("torch.compile made no graph of the decode step: it ran eagerly")
        if self.breaks:
            why = "; ".join(
                f"{n}x {reason[:120]}" for reason, n in sorted(self.breaks.items(), key=lambda kv: -kv[1])[:3]
            )
            said.append(f"the decode step has {sum(self.breaks.values())} graph break(s) ({why})")
        if self.cudagraph_skips:
            why = "; ".join(r[:160] for r in self.cudagraph_reasons[:2]) or "TORCH_LOGS=cudagraphs says why"
            said.append(
                f"inductor skipped CUDA graphs for {self.cudagraph_skips} graph(s) ({why}): kernels launch one by one"
            )
        if self.prefill_failed:
            said.append(f"the prefill did not compile ({self.prefill_failed[:200]}): it ran eager")
        elif self.prefill_ran == "eager" and not full_attention_only(self.model):
            said.append(HYBRID_PREFILL)
        elif self.prefill is not None and (self.prefill_graphs != 1 or self.prefill_breaks):
            said.append(
                f"the compiled prefill is {self.prefill_graphs} graphs with "
                f"{sum(self.prefill_breaks.values())} graph break(s)"
            )
        if self.recompiles:
            said.append(
                f"the compiled steps recompiled {self.recompiles} time(s) after their build: a round "
                "that recompiled timed the compiler too"
            )
        return "; ".join(said) or None


def fx_cache_counts() -> tuple[int, int, int]:
    """Inductor's on-disk FX graph cache, process-wide: graphs read back (hit), compiled and stored
    (miss), and compiled without it (bypass: a graph the cache cannot key, or the cache off)."""
    from torch._dynamo.utils import counters

    c = counters["inductor"]
    return (
        int(c.get("fxgraph_cache_hit", 0)),
        int(c.get("fxgraph_cache_miss", 0)),
        int(c.get("fxgraph_cache_bypass", 0)),
    )


def cache_outcome(before: tuple[int, int, int], after: tuple[int, int, int]) -> str | None:
    """What the FX graph cache gave one build, from the counts around it: "hit" (every graph's
    kernels were read back: the compile time is mostly tracing), "miss" (compiled anew, as in a
    fresh machine's first run), a mix with its counts, or None where no graph went to inductor."""
    hit, miss, bypass = (a - b for a, b in zip(after, before))
    if hit + miss + bypass == 0:
        return None
    if not miss and not bypass:
        return "hit"
    if not hit and not bypass:
        return "miss"
    if not hit and not miss:
        return "bypass"
    return ", ".join(f"{n} {name}" for n, name in ((hit, "hit"), (miss, "miss"), (bypass, "bypass")) if n)


def compile_counters() -> tuple[int, dict, int]:
    """torch.compile's process-wide counters: graphs dynamo compiled, graph breaks by reason, and
    graphs inductor refused to capture as CUDA graphs (deltas around a build say what it made)."""
    from torch._dynamo.utils import counters

    return (
        int(counters["stats"].get("unique_graphs", 0)),
        dict(counters["graph_break"]),
        int(counters["inductor"].get("cudagraph_skips", 0)),
    )


class _SkipLines(logging.Handler):
    """Collects inductor's "skipping cudagraphs due to ..." warnings while a step compiles."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


# TORCHINDUCTOR_* settings that leave the generated code as it is: caches, logs, the compile's own
# workers. Any other one (FREEZING, COORDINATE_DESCENT_TUNING, MAX_AUTOTUNE, ...) may change the kernels.
NEUTRAL_FLAG = re.compile(r"CACHE|COMPILE_THREADS|WORKER|TRACE|DEBUG|LOG")


def inductor_flags(environ=None) -> str | None:
    """The TORCHINDUCTOR_* environment settings that can change the kernels inductor makes, as
    "name=value" (lower case, the prefix dropped), comma-separated and sorted; None when there are
    none. A compiled step built under them is other code than the default's: its path says so
    (cases.path_key), so that tuned and default compiles are never pooled."""
    env = os.environ if environ is None else environ
    pairs = sorted(
        f"{k[len('TORCHINDUCTOR_') :].lower()}={v}"
        for k, v in env.items()
        if k.startswith("TORCHINDUCTOR_") and not NEUTRAL_FLAG.search(k)
    )
    return ", ".join(pairs) or None


def compile_mode(device: str) -> str:
    """CUDA graphs where the device has them (reduce-overhead), inductor's default elsewhere."""
    return "reduce-overhead" if device.startswith("cuda") else "default"


@torch.inference_mode()
def build_static_decoder(
    model, batch: int, max_len: int, device: str, synchronize, prefill: bool = True
) -> StaticDecoder:
    """Allocate the static cache, compile the decode step and (with `prefill`: prompts longer than
    one token will come) the prefill, timing the compile (and capture) by running each on a dummy
    request until it is warm."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=max_len)
    kw = _cache_kwarg(model)

    def step(token, position):
        out = model.model(input_ids=token, position_ids=position, use_cache=True, **{kw: cache})
        return _head(model, out.last_hidden_state)

    mode = compile_mode(device)
    # Each decoder compiles the same `step` code with new closure tensors, which dynamo counts as a
    # recompile: past its limit (8) it would run the step eagerly, and a ninth case in one process
    # would be "compiled" in name only. A reset drops the old decoder's code and CUDA graph pool.
    torch.compiler.reset()
    compiled = torch.compile(step, mode=mode, dynamic=False)
    graphs0, breaks0, skips0 = compile_counters()
    cache0 = fx_cache_counts()
    skip_lines = _SkipLines()
    log = _cudagraphs_log()
    level = log.level if log else None
    if log:
        log.addHandler(skip_lines)
        log.setLevel(logging.WARNING)  # torch keeps its log artifacts off unless TORCH_LOGS names them
    try:
        start = time.perf_counter()
        # an eager one-token prefill first: transformers allocates a static cache's tensors on its first use
        token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        _prefill_call(lambda p, pos: _eager_prefill(model, cache, p, pos), cache, token)
        for i in range(3):  # reduce-overhead records its CUDA graph on a later call than the first
            compiled(token, torch.full((batch, 1), 1 + i, dtype=torch.long, device=device))
        synchronize()
        step_s = time.perf_counter() - start
    finally:
        if log:
            log.removeHandler(skip_lines)
            log.setLevel(level)
    graphs, breaks, skips = compile_counters()
    dec = StaticDecoder(
        model,
        cache,
        compiled,
        batch,
        max_len,
        step_s,
        mode,
        graphs=graphs - graphs0,
        breaks=_new(breaks, breaks0),
        cudagraph_skips=skips - skips0 if mode == "reduce-overhead" else None,
        cudagraph_reasons=skip_lines.lines,
        flags=inductor_flags(),
    )
    _count_cache(dec, cache0)
    if prefill:
        add_prefill(dec, device, synchronize)
    return dec


def _count_cache(dec: StaticDecoder, before: tuple[int, int, int]) -> None:
    """Adds what inductor's FX graph cache gave since `before` to the decoder's compile_cache."""
    dec.fx_counts = tuple(a + n - b for a, n, b in zip(dec.fx_counts, fx_cache_counts(), before))
    dec.fx_cache = cache_outcome((0, 0, 0), dec.fx_counts)


@torch.inference_mode()
def add_prefill(dec: StaticDecoder, device: str, synchronize) -> None:
    """Compile the decoder's prefill once (a case whose prompt is one token needs none: a decode
    step at position 0 is its prefill), adding its time to the decoder's compile time. A model with
    linear-attention layers keeps the eager prefill (full_attention_only)."""
    if dec.prefill_tried or dec.max_len < 2 or not full_attention_only(dec.model):
        return
    dec.prefill_tried = True
    model, cache, kw = dec.model, dec.cache, _cache_kwarg(dec.model)

    def prefill(prompt, positions):  # the step's code; its own compiled function, dynamic in the prompt length
        out = model.model(input_ids=prompt, position_ids=positions, use_cache=True, **{kw: cache})
        return _head(model, out.last_hidden_state)

    cache0 = fx_cache_counts()
    _compile_prefill(dec, torch.compile(prefill), device, synchronize)
    dec.compile_time_s += dec.prefill_compile_time_s
    _count_cache(dec, cache0)


def _new(counts: dict, before: dict) -> dict:
    return {k: n - before.get(k, 0) for k, n in counts.items() if n > before.get(k, 0)}


# The dummy prompt the prefill compiles on (its length is marked dynamic: one graph serves all).
WARM_PROMPT = 16


def _compile_prefill(dec: StaticDecoder, compiled, device: str, synchronize) -> None:
    """Compile the prefill with the prompt length marked dynamic (one graph for every prompt length;
    dynamo raises rather than quietly specialising it), by running it on a dummy prompt. A prefill
    that does not compile runs eager, and the decoder says why."""
    graphs0, breaks0, _ = compile_counters()
    start = time.perf_counter()
    try:
        _prefill_call(
            compiled, dec.cache, torch.zeros(dec.batch, min(dec.max_len, WARM_PROMPT), dtype=torch.long, device=device)
        )
        synchronize()
    except Exception as e:  # dynamo / inductor refused this model's prefill: the eager one still works
        dec.prefill_failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".strip()
    else:
        dec.prefill = compiled
    dec.prefill_compile_time_s = time.perf_counter() - start
    graphs, breaks, _ = compile_counters()
    dec.prefill_graphs, dec.prefill_breaks = graphs - graphs0, _new(breaks, breaks0)


def _prefill_call(fn, cache, prompt: torch.Tensor) -> torch.Tensor:
    """`fn` (eager or compiled) on the prompt and its positions, into a reset cache. The prompt is
    copied here, under inference mode, as the build's dummy was: a prompt made outside it carries
    another dispatch key set, which dynamo's guards tell apart (the prefill would compile again)."""
    cache.reset()
    prompt = prompt.clone(memory_format=torch.contiguous_format)
    b, n = prompt.shape
    positions = torch.arange(n, device=prompt.device).expand(b, n)
    if n > 1:  # a length of 1 is always specialised
        torch._dynamo.mark_dynamic(prompt, 1)
        torch._dynamo.mark_dynamic(positions, 1)
    return fn(prompt, positions)


def full_attention_only(model) -> bool:
    """Whether every layer is full attention. Then a one-token prompt into an empty cache is the
    same computation as a decode step at position 0, and one prefill graph with a dynamic length
    serves every prompt. Not so for the DeltaNet hybrids' linear-attention layers: on an empty cache
    they take their prefill path, which the compiled step was not built for, and that path loops
    over 64-token chunks in Python, so dynamo compiles another graph for every chunk count (and for
    prompts under the convolution's 4 tokens): about 70 s each for tiny-qwen3.5 on a 2-core CPU."""
    kinds = getattr(model.config, "layer_types", None) or ["full_attention"]
    return all(k == "full_attention" for k in kinds)


HYBRID_PREFILL = (
    "a linear-attention model's prefill runs eager in compiled mode (its chunked path "
    "unrolls a Python loop per 64-token chunk: a graph for every prompt length band)"
)


def _cudagraphs_log():
    try:
        from torch._inductor.cudagraph_utils import cudagraphs_log

        return cudagraphs_log
    except Exception:  # another torch: the count alone still says whether graphs were skipped
        return None


def _static_prefill(dec: StaticDecoder, prompt: torch.Tensor) -> torch.Tensor:
    """The prompt into a reset static cache; logits of its last position. A prompt of one token is
    exactly a decode step at position 0 where every layer is full attention (the compiled step); a
    longer one goes through the compiled prefill. Eager where neither applies (a linear-attention
    hybrid) or the prefill did not compile; `dec.prefill_ran` says which ran."""
    n = prompt.shape[1]
    if n == 1 and full_attention_only(dec.model):
        dec.prefill_ran = "compiled"
        dec.cache.reset()
        return dec.call(prompt.clone(memory_format=torch.contiguous_format), _position(dec, 0, prompt.device))
    if n == 1 or dec.prefill is None:
        dec.prefill_ran = "eager"
        model = dec.model
        return _prefill_call(lambda p, pos: _eager_prefill(model, dec.cache, p, pos), dec.cache, prompt)
    dec.prefill_ran = "compiled"
    return _prefill_call(dec.prefill, dec.cache, prompt)


def _eager_prefill(model, cache, prompt, positions):
    out = model.model(input_ids=prompt, position_ids=positions, use_cache=True, **{_cache_kwarg(model): cache})
    return _head(model, out.last_hidden_state)


def _position(dec: StaticDecoder, pos: int, device) -> torch.Tensor:
    return torch.full((dec.batch, 1), pos, dtype=torch.long, device=device)


@torch.inference_mode()
def generate_static(
    dec: StaticDecoder,
    prompt: torch.Tensor,
    new_tokens: int,
    on_token: TokenCallback,
    mark=None,
    fence=None,
    waits: list | None = None,
) -> list[list[int]]:
    n = prompt.shape[1]
    graphs = compile_counters()[0]
    steps = run_steps(
        lambda: _static_prefill(dec, prompt).argmax(dim=-1),
        lambda token, i: dec.call(token[:, None], _position(dec, n + i, prompt.device)).argmax(dim=-1),
        new_tokens,
        on_token,
        mark,
        fence,
        waits,
    )
    dec.recompiles += compile_counters()[0] - graphs
    return steps


@torch.inference_mode()
def teacher_forced_logits_static(dec: StaticDecoder, ids: torch.Tensor, prompt_tokens: int) -> torch.Tensor:
    """As teacher_forced_logits, through the compiled step (ids replicated over its batch)."""
    ids = ids.expand(dec.batch, -1)
    ran = dec.prefill_ran  # what generation ran stays what the decoder says
    logits = [_static_prefill(dec, ids[:, :prompt_tokens])[0].float().cpu()]
    dec.prefill_ran = ran
    for i in range(prompt_tokens, ids.shape[1] - 1):
        # the tokens as generation gives them (a fresh [batch] tensor, unsqueezed): a slice of ids has
        # other strides, which the step's guards tell apart (it used to compile the step again)
        out = dec.call(ids[:, i].clone(memory_format=torch.contiguous_format)[:, None], _position(dec, i, ids.device))
        logits.append(out[0].float().cpu())  # copied before the next replay reuses the buffer
    return torch.stack(logits)
