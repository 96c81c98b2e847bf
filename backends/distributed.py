"""Tensor parallel through torch.distributed, as torchrun launches it: every rank runs the same
suite in lockstep (each generation step is a collective), the model is split by transformers'
own tensor-parallel plan (DistributedConfig(tp_plan="auto"): the plan each Qwen config ships), and
rank 0 alone writes records and prints. Rounds start after a barrier, so rank 0's clock starts
when every rank is ready. gloo on CPU (this is how the tests run it: two processes), NCCL on CUDA.

    torchrun --nproc-per-node 2 -m chipbench.cli run --backend cpu --model qwen3-0.6b

No home-made splitting: what transformers' plan cannot shard is its error, reported as the case's.
"""

from __future__ import annotations

import atexit
import os
import re

from chipbench.models.hf_export import export_dir
from chipbench.models.zoo import get_model

FIT_MARGIN = 0.9  # of a device's memory a shard may take (the rest: activations, runtime, fragmentation)


def world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_parallel() -> bool:
    return world_size() > 1


def local_world_size() -> int:
    """Ranks on this host (torchrun's LOCAL_WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "") or world_size()))
    except ValueError:
        return world_size()


def chips(kind: str, layout: str | None = None) -> int:
    """The chips whose memory a split case's decode step reads at once, for its roofline. Under
    torchrun: one per rank on an accelerator (each rank has its own device), one per host for CPU
    ranks, which share its sockets and memory. An engine's own split (`layout` such as "tp2pp2",
    vLLM's): its tensor-parallel size on accelerators (pipeline stages take turns: one stage's chips
    work at a time). 1 otherwise."""
    if is_parallel():
        return max(1, world_size() // local_world_size()) if kind == "cpu" else world_size()
    tp = re.match(r"tp(\d+)", layout or "")
    return int(tp.group(1)) if tp and kind != "cpu" else 1


def first_on_chip(kind: str) -> bool:
    """Whether this rank speaks for its chip's meters (power, energy): every rank on an accelerator
    (each has its own), the first rank of each host for CPU ranks (a package's RAPL counter is one
    for all the ranks on it: summed over them it would count the same joules twice)."""
    if not is_parallel() or kind != "cpu":
        return True
    return os.environ.get("LOCAL_RANK", "0") == "0"


def is_lead() -> bool:
    """The rank that writes records and prints (every process when not launched by torchrun)."""
    return rank() == 0


def init(device: str) -> None:
    """The process group for this launch, once: NCCL for CUDA devices, gloo otherwise."""
    if not is_parallel():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    # closed before the interpreter exits: a gloo group left to the interpreter's teardown aborted
    # the process at exit ("terminate called without an active exception") in 4 launches of 6 here,
    # after its work was done, and torchrun then failed the launch
    atexit.register(close)


def close() -> None:
    """The process group's end, every rank's last collective done (at exit; idempotent)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    if is_parallel() and dist.is_initialized():
        dist.barrier()


def gather(value) -> list:
    """`value` from every rank, in rank order ([value] in one process). Every rank must call it."""
    import torch.distributed as dist

    if not (is_parallel() and dist.is_initialized()):
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def lead(value):
    """Rank 0's `value` on every rank (`value` in one process). Every rank must call it. A choice made
    from a clock (how many rounds fit a budget, whether a probe lagged, how long a prompt to probe
    with) differs between ranks, and ranks that choose differently call different collectives: one
    rank waits for a step the other never takes, or gloo aborts on mismatched sizes. Rank 0's clock is
    the measurement's, so its choice is every rank's."""
    return gather(value)[0]


def total(value: int | float | None) -> int | float | None:
    """The sum of `value` over every rank (None when any rank has none); `value` in one process."""
    values = gather(value)
    return None if any(v is None for v in values) else sum(values)


def layout() -> str:
    return f"tp{world_size()}" if is_parallel() else "none"


def load_tensor_parallel(spec, dtype: str, seed: int, layers: int | None, device: str):
    """`spec`'s seeded weights split over this launch's ranks by transformers' tensor-parallel plan:
    the model directory (chipbench.models.hf_export) loaded with DistributedConfig(tp_plan="auto")."""
    import transformers

    from chipbench.models.build import parse_dtype

    init(device)
    path = export_dir(spec, dtype, seed, layers) if is_lead() else None
    barrier()  # rank 0 writes the directory once; the others wait for it, then find it in the cache
    if path is None:
        path = export_dir(spec, dtype, seed, layers)
    kwargs = {"dtype": parse_dtype(dtype)}
    try:
        from transformers.distributed import DistributedConfig

        kwargs["distributed_config"] = DistributedConfig(tp_plan="auto", tp_size=world_size())
    except ImportError:  # older transformers: the standalone argument
        kwargs.update(tp_plan="auto", tp_size=world_size())
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    model.eval()
    return model, path


def fit_advice(
    needed_bytes: int, device_bytes: int | None, sizes=(2, 4, 8, 16, 32, 64), what: str = "weights and cache"
) -> str | None:
    """When a model does not fit one device: which tensor-parallel sizes would, from the analytic
    bytes (`what` they count) over the device memory. None when it fits. (Ranks on one host share
    its memory: for a CPU the split is over hosts.)"""
    if not device_bytes or needed_bytes <= FIT_MARGIN * device_bytes:
        return None
    fits = [n for n in sizes if needed_bytes / n <= FIT_MARGIN * device_bytes]
    gib = 2**30
    head = (
        f"needs {needed_bytes / gib:.1f} GiB ({what}), more than {FIT_MARGIN:.0%} of one device's "
        f"{device_bytes / gib:.1f} GiB"
    )
    if not fits:
        return head + f"; not even tp{sizes[-1]} would fit"
    return head + (
        f"; split it: tp{fits[0]} ({needed_bytes / fits[0] / gib:.1f} GiB per device, or per host "
        f"for a CPU) or more, launched with torchrun --nproc-per-node {fits[0]}"
    )


def check_tokens(model_name: str, dtype: str = "fp32", new_tokens: int = 8, seed: int = 0) -> dict:
    """Greedy tokens and teacher-forced logits of the tensor-parallel model against the single-process
    model, on every rank (each builds the single-process copy itself; rank 0's answer is printed)."""
    import torch

    from chipbench.backends import torch_loop
    from chipbench.models.build import build_random, parse_dtype

    spec = get_model(model_name)
    model, _ = load_tensor_parallel(spec, dtype, seed, None, "cpu")
    prompt = torch.randint(0, spec.vocab, (2, 16), generator=torch.Generator().manual_seed(seed + 1))
    barrier()
    split = torch_loop.generate(model, prompt, new_tokens, lambda t: None)
    one = build_random(spec, parse_dtype(dtype), "cpu", seed=seed).module
    single = torch_loop.generate(one, prompt, new_tokens, lambda t: None)
    seq = torch.randint(0, spec.vocab, (1, 24), generator=torch.Generator().manual_seed(seed + 2))
    a, b = (torch_loop.teacher_forced_logits(m, seq, 16) for m in (model, one))  # tokens alone can tie
    rel = float(((a - b).norm(dim=-1) / b.norm(dim=-1)).max())
    return {
        "world_size": world_size(),
        "layout": layout(),
        "tp_tokens": split,
        "single_tokens": single,
        "identical": split == single,
        "logits_rel_err": rel,
    }


if __name__ == "__main__":  # torchrun --nproc-per-node N -m chipbench.backends.distributed MODEL[,MODEL...] [DTYPE]
    import json
    import sys

    for name in sys.argv[1].split(","):  # one launch for several models: a JSON line each
        out = check_tokens(name, sys.argv[2] if len(sys.argv) > 2 else "fp32")
        if is_lead():
            print(json.dumps({"model": name, **out}), flush=True)
    close()
