"""The harness's seeded model, exported to OpenVINO once and cached by content.

The graph (one, for prefill and decode alike) takes input_ids [batch, n], position_ids [batch, n]
and, per layer, the key and value caches [batch, kv_heads, past, head_dim] in fp32; it returns the
logits [batch, n, vocab] in fp32 and every layer's caches grown by the n new tokens. At load, each
cache's input and output become one of OpenVINO's states (make_stateful), kept between calls. A bf16 model
keeps bf16 weights and computes in bf16 inside; its caches cross the boundary as fp32 (numpy has no
bfloat16). It is traced from transformers' own Qwen modules by OpenVINO's converter
(openvino.convert_model) and saved as IR under chipbench's cache folder, keyed by the weights'
digest, the dtype, the OpenVINO version and this file's source.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPORT_VERSION = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
PRECISION = {"fp32": "f32", "bf16": "bf16"}


@dataclass
class Compiled:
    compiled: object
    layers: int
    kv_dtype: object
    digest: str | None
    cached: bool


def _cache_dir() -> Path:
    from chipbench.stash import cache_root

    return cache_root() / "openvino"


def _step_module(model, dtype):
    import torch
    from transformers import DynamicCache

    layers = model.config.num_hidden_layers

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, position_ids, past):
            cache = DynamicCache(config=self.model.config)
            for i in range(layers):  # the caches given, as the layers' own (no lazy empty start)
                layer = cache.layers[i]
                layer.keys, layer.values = past[2 * i].to(dtype), past[2 * i + 1].to(dtype)
                layer.is_initialized, layer.device, layer.dtype = True, past[0].device, dtype
            out = self.model(input_ids=input_ids, position_ids=position_ids, past_key_values=cache, use_cache=True)
            grown = []
            for i in range(layers):
                grown += [out.past_key_values.layers[i].keys.float(), out.past_key_values.layers[i].values.float()]
            return out.logits.float(), tuple(grown)

    return Step(), layers


def make_stateful(ov_model, layers: int) -> None:
    """Turns each layer's cache input and grown-cache output into one state OpenVINO keeps between
    calls (its own transformation, as optimum-intel applies it): a decode step then passes one token
    and its position, not every cache in and out. The graph keeps one output, the logits."""
    from openvino._offline_transformations import apply_make_stateful_transformation

    pairs = {}
    for k in range(2 * layers):
        past, present = ov_model.inputs[2 + k], ov_model.outputs[1 + k]
        past.get_tensor().set_names({f"past.{k}"})
        present.get_tensor().set_names({f"present.{k}"})
        pairs[f"past.{k}"] = f"present.{k}"
    apply_make_stateful_transformation(ov_model, pairs)


def compile_model(spec, dtype: str, seed: int, layers_limit: int | None, device: str) -> Compiled:
    import openvino as ov
    import torch

    from chipbench.models.build import build_random

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    built = build_random(spec, torch_dtype, "cpu", seed=seed, layers=layers_limit)
    model = built.module.eval()
    layers = model.config.num_hidden_layers
    key = hashlib.blake2b(
        json.dumps([spec.name, dtype, seed, layers_limit, built.digest, ov.__version__, EXPORT_VERSION]).encode(),
        digest_size=16,
    ).hexdigest()
    where = _cache_dir() / f"{spec.name}-{dtype}-s{seed}-{key}"
    xml = where / "model.xml"
    cached = xml.is_file() and built.digest is not None  # without a digest the cache cannot be trusted
    core = ov.Core()
    if cached:
        ov_model = core.read_model(xml)
    else:
        step, _ = _step_module(model, torch_dtype)
        batch, past, n = 2, 3, 4
        example = (
            torch.randint(0, spec.vocab, (batch, n)),
            torch.arange(past, past + n).expand(batch, n),
            tuple(torch.zeros(batch, spec.kv_heads, past, spec.head_dim) for _ in range(2 * layers)),
        )
        with torch.no_grad():
            ov_model = ov.convert_model(step, example_input=example)
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / "model.part.xml"
        ov.save_model(ov_model, tmp, compress_to_fp16=False)  # the weights as built, not halved
        tmp.with_suffix(".bin").replace(where / "model.bin")
        tmp.replace(xml)
    digest = built.digest  # the tensors the export was made from, as the harness built them
    del built, model
    gc.collect()
    try:  # the torch build's pages back to the OS, so the process's resident set is the runtime's
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
    make_stateful(ov_model, layers)
    config = {"INFERENCE_PRECISION_HINT": PRECISION[dtype], "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(ov_model, device, config)
    return Compiled(compiled, layers, np.float32, digest, cached)
