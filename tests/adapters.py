"""Backends that break the contract on purpose, each wrapping the real CPU adapter.

They prove that the harness notices: a clock that does not wait, a short output, device
tensors handed to the clock, a crash inside the model.
"""

import threading

import torch

from chipbench.backends import torch_loop
from chipbench.backends.base import Generation
from chipbench.backends.cpu import create as create_cpu


class Wrapped:
    """Delegates everything to the CPU adapter; subclasses override generate()."""

    def __init__(self, name="wrapped"):
        self.inner = create_cpu()
        self.name = name

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def generate(self, handle, prompt, new_tokens, on_token):
        return self.inner.generate(handle, prompt, new_tokens, on_token)


class LazyClock(Wrapped):
    """Hands each token to the clock before computing it, like an async launch timed on the host.

    The work runs in a background thread; synchronize() waits for it, as a device sync would.
    """

    def __init__(self):
        super().__init__("lazy")
        self.worker = None

    def generate(self, handle, prompt, new_tokens, on_token):
        self.synchronize()
        for _ in range(new_tokens):
            on_token([0] * prompt.shape[0])  # "visible" before any work was done
        self.worker = threading.Thread(
            target=lambda: torch_loop.generate(handle.module, prompt, new_tokens, lambda t: None)
        )
        self.worker.start()
        return Generation([[0] * prompt.shape[0]] * new_tokens, None)

    def synchronize(self):
        if self.worker is not None:
            self.worker.join()
            self.worker = None


class StopsEarly(Wrapped):
    def generate(self, handle, prompt, new_tokens, on_token):
        return self.inner.generate(handle, prompt, new_tokens - 1, on_token)


class DeviceTensorTokens(Wrapped):
    def generate(self, handle, prompt, new_tokens, on_token):
        on_token(torch.zeros(prompt.shape[0], dtype=torch.long))
        return Generation([[0]] * new_tokens, None)


class CrashesOn(Wrapped):
    """Runs out of memory on one model, works on the others."""

    def __init__(self, model):
        super().__init__("crashy")
        self.model = model

    def generate(self, handle, prompt, new_tokens, on_token):
        if handle.spec.name == self.model:
            raise torch.OutOfMemoryError("simulated: tried to allocate 80.00 GiB")
        return self.inner.generate(handle, prompt, new_tokens, on_token)


class Hangs(Wrapped):
    """A generate call that never returns (vLLM 0.32's CPU engine after a failed step spun so)."""

    def __init__(self):
        super().__init__("hangs")

    def generate(self, handle, prompt, new_tokens, on_token):
        threading.Event().wait()


class NoisyLogits(Wrapped):
    """Perturbs its logits by `relative` noise: fast, plausible, and wrong."""

    def __init__(self, relative=0.05, nan=False):
        super().__init__("noisy")
        self.relative, self.nan = relative, nan

    def teacher_forced_logits(self, handle, ids, prompt_tokens):
        logits = self.inner.teacher_forced_logits(handle, ids, prompt_tokens)
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(logits.shape, generator=gen) * logits.norm(dim=-1, keepdim=True) / logits.shape[-1] ** 0.5
        logits = logits + self.relative * noise
        if self.nan:
            logits[-1, 0] = float("nan")
        return logits


class DeviceClock(Wrapped):
    """Reports per-step device times, as an adapter with stream events would: here the CPU's own
    steps, a fixed 0.1 ms before the host sees them, or (honest=False) times of something else."""

    def __init__(self, honest: bool = True):
        super().__init__("deviceclock")
        self.honest = honest

    def generate(self, handle, prompt, new_tokens, on_token):
        import dataclasses
        import time

        t0, seen = time.perf_counter(), []

        def stamp(tokens):
            seen.append(time.perf_counter() - t0 - 1e-4)
            on_token(tokens)

        gen = self.inner.generate(handle, prompt, new_tokens, stamp)
        times = seen if self.honest else [i * 1e-6 for i in range(len(seen))]
        return dataclasses.replace(gen, device_times_s=times)
