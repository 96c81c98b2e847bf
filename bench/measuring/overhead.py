"""Does the harness measure the chip, or itself? One run, one model, interleaved rounds:

1. decode tokens/s of the harness's own loop vs transformers' `generate()` (greedy, fixed
   length, EOS ignored, same prompt): the harness's loop must not be slower;
2. decode tokens/s the harness reports (its clock, its callbacks, its contract checks) vs a
   bare hand-written loop timed from outside (one clock read before and after, nothing else):
   the harness's overhead must be within 2%.

Run-to-run noise can exceed 2% (eager decode on a GPU is bound by the host launching kernels,
and a shared host jitters), so the paired comparison says "unresolved" when its interval is
wider than the question. The overhead is then also measured directly, in the same process:
the harness's per-token work (the token callback with its clock read and contract check, and
the loop's bookkeeping) timed over many calls, as a share of the measured TPOT.

Decode tokens/s here is (N - 1) / (time of the last token - time of the first), for every
method alike. Run: python -m chipbench.measuring.overhead --backend cpu --model qwen3-0.6b --dtype bf16
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch

from chipbench.backends import torch_loop
from chipbench.backends.registry import get_backend
from chipbench.errors import UsageError
from chipbench.measuring.runner import Case, CaseRun
from chipbench.stats import summarize
from chipbench.measuring.workload import Workload


def harness_round(run: CaseRun) -> float:
    r = run.round()
    t = r.token_times_s
    return (len(t) - 1) / (t[-1] - t[0])


@torch.inference_mode()
def bare_round(model, prompt, n, sync) -> float:
    """The same prefill + decode steps with nothing around them; clock read outside the loop."""
    token, cache = torch_loop.prefill(model, prompt)
    token.tolist()
    start = time.perf_counter()
    for _ in range(n - 1):
        token = torch_loop.decode_one_token(model, token, cache)
        token.tolist()  # the host must see each token, as in any real generation loop
    sync()
    return (n - 1) / (time.perf_counter() - start)


@torch.inference_mode()
def generate_round(model, prompt, n, sync) -> float:
    """transformers' generate(), timed from its first token to its last via a streamer."""
    stamps: list[float] = []

    class Stamp:
        def put(self, value):
            stamps.append(time.perf_counter())

        def end(self):
            pass

    model.generate(
        prompt,
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        streamer=Stamp(),
        attention_mask=torch.ones_like(prompt),
    )
    sync()
    t = stamps[1:]  # the streamer's first put is the prompt itself
    return (len(t) - 1) / (t[-1] - t[0])


def per_token_harness_cost_s(batch: int, calls: int = 20000) -> float:
    """Seconds the harness adds per token: its callback (clock read, contract check) plus the
    loop's bookkeeping of the step, timed over many calls with host ints as a backend hands them."""
    from chipbench.measuring.runner import _stamping

    stamps: list[float] = []
    steps: list[list[int]] = []
    on_token = _stamping(stamps, time.perf_counter, batch)
    tokens = list(range(batch))
    start = time.perf_counter()
    for _ in range(calls):
        on_token(tokens)
        steps.append(tokens)
    return (time.perf_counter() - start) / calls


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cpu")
    p.add_argument("--model", default="qwen3-0.6b")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--tokens", type=int, default=64, help="generated tokens per round")
    p.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds of each method")
    args = p.parse_args(argv)
    try:
        backend = get_backend(args.backend)
        case = Case(
            args.backend, args.model, args.dtype, Workload("generate", args.prompt, args.tokens), rounds=args.rounds
        )
        run = CaseRun(backend, case)
        run.setup()
    except UsageError as e:
        print(f"overhead: error: {e}", file=sys.stderr)
        return 2
    model, prompt, sync = run.handle.module, run.prompt, backend.synchronize
    methods = {
        "harness": lambda: harness_round(run),
        "bare loop": lambda: bare_round(model, prompt, args.tokens, sync),
        "generate()": lambda: generate_round(model, prompt, args.tokens, sync),
    }
    for fn in methods.values():  # warm up every path once
        fn()
    rates: dict[str, list[float]] = {k: [] for k in methods}
    order = list(methods)
    shuffle = random.Random(0).shuffle
    for _ in range(args.rounds):
        shuffle(order)  # no method always runs first (or right after another) in a round
        for name in order:
            rates[name].append(methods[name]())
    run.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    # Ratios are paired within a round, so slow drift of the machine cancels out.
    vs_generate = summarize([h / g for h, g in zip(rates["harness"], rates["generate()"])])
    vs_bare = summarize([h / b for h, b in zip(rates["harness"], rates["bare loop"])])
    info = backend.info()
    print(
        f"{args.model} {args.dtype} on {info.device_name} ({args.backend}), prompt {args.prompt}, "
        f"{args.tokens} tokens, {args.rounds} interleaved rounds; decode tokens/s, median [min, max]:"
    )
    for k, v in rates.items():
        print(f"  {k:11s} {med[k]:9.2f}  [{min(v):.2f}, {max(v):.2f}]")
    # Verdicts honour the noise: "slower" only when the whole 95% interval is below 1.
    g, b = vs_generate, vs_bare
    slower = g["ci95_high"] < 1
    print(
        f"harness loop / generate(): {g['mean']:.3f}x, 95% CI [{g['ci95_low']:.3f}, {g['ci95_high']:.3f}]"
        f" (paired rounds) -> {'SLOWER' if slower else 'not slower: OK'}"
    )
    lo, hi = (1 - b["ci95_high"]) * 100, (1 - b["ci95_low"]) * 100
    paired = "within 2%" if hi <= 2 else ("over 2%" if lo > 2 else "unresolved at this noise")
    print(
        f"harness overhead vs bare loop: {(1 - b['mean']) * 100:+.2f}%, 95% CI [{lo:+.2f}%, {hi:+.2f}%]"
        f" (paired rounds) -> {paired}"
    )
    cost = per_token_harness_cost_s(prompt.shape[0])
    tpot = 1 / med["harness"]
    direct = cost / tpot
    print(
        f"harness work per token, measured directly: {cost * 1e6:.2f} us = {direct * 100:.4f}% of "
        f"the {tpot * 1e3:.2f} ms TPOT -> {'OK' if direct <= 0.02 else 'TOO HIGH'} (must be within 2%)"
    )
    return 0 if not slower and direct <= 0.02 and paired != "over 2%" else 1


if __name__ == "__main__":
    sys.exit(main())
